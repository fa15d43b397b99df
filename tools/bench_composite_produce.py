"""Production CPU cost per sample: composite texturing vs the SPADE image stage, same sizes.

    OMP_NUM_THREADS=1 python tools/bench_composite_produce.py recipe=toy data.height=128 data.width=256 \\
        stages.image.ngf=64 [num_samples=32] [batch_size=16] [bank=64] [precisions=no,bf16|none] [key.sub=value ...]

Every variant runs the production loop (`ShardGenerator.generate`: layouts, quality checks,
texturing, conversion to the data contract) on one thread and then encodes the samples as a
shard would (PNG level 1); rates are samples per CPU second of this process
(`time.process_time`), so other jobs on the machine do not count. Variants:

- `spade fp32|bf16`: layout GAN -> depth stage -> SPADE image stage (random weights at the
  recipe's size: speed does not depend on the weights), as `tools/bench_produce.py`;
- `composite, generated layouts`: the same layout GAN, image and depth from the segment bank;
- `composite, real layouts + copy-paste`: training layouts, flipped, `produce.copy_paste` (default
  3) objects pasted with their own pixels; nothing trained at all.

The bank is built once from `bank` toy training scenes (its build time is printed, not counted).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import torch  # noqa: E402
from bench_produce import random_run_dir  # noqa: E402

from synthdata.core.recipe_loading import parse_command_line  # noqa: E402
from synthdata.core.runtime import benchmark_allocator, cpu_model  # noqa: E402
from synthdata.data.readers import make_reader  # noqa: E402
from synthdata.data.shards import encode_sample  # noqa: E402
from synthdata.generation.layout_sources import GeneratedLayouts, RealLayouts  # noqa: E402
from synthdata.generation.production import ShardGenerator  # noqa: E402
from synthdata.generation.quality_controls import QualityControls  # noqa: E402
from synthdata.generation.sampler import load_pipeline  # noqa: E402
from synthdata.texturing.copy_paste import ObjectPool  # noqa: E402
from synthdata.texturing.pipeline import composite_pipeline  # noqa: E402

ARGUMENTS = {"num_samples": 32, "batch_size": 16, "bank": 64, "precisions": "no,bf16", "copy_paste": 3}


def cost(pipeline, source, recipe, n: int, batch_size: int) -> tuple[float, float, float]:
    """CPU seconds per sample to generate (after a one-batch warm-up) and to encode, and the mean
    number of layout components per sample (composite texturing's work; 0 for SPADE)."""
    generator = ShardGenerator(pipeline, source, QualityControls(num_classes=pipeline.classes.num_classes),
                               seed=recipe.seed, prefix="bench", batch_size=batch_size, device="cpu")
    generator.generate(0, min(batch_size, n))
    start = time.process_time()
    samples = generator.generate(1, n)
    generate = (time.process_time() - start) / n
    start = time.process_time()
    for sample in samples:
        encode_sample(sample, png_compression=1, depth_scale=pipeline.depth_scale)
    components = sum(len(s["meta"].get("sources", [])) for s in samples) / n
    return generate, (time.process_time() - start) / n, components


def main(argv: list[str] | None = None) -> int:
    recipe, args = parse_command_line(sys.argv[1:] if argv is None else argv, ARGUMENTS)
    n, batch_size = int(args["num_samples"]), int(args["batch_size"])
    recipe.data.split_sizes = {**recipe.data.split_sizes, "train": int(args["bank"])}
    if recipe.data.classes is None:  # the random stages get the reader's classes, as the bank does
        recipe.data.classes = list(make_reader(recipe.data, recipe.data.train_split).classes.names)
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)  # waiting OpenMP threads spin, which would count as CPU time
    cv2.setNumThreads(1)
    size = f"{recipe.data.height}x{recipe.data.width}"
    print(f"bench_composite_produce: {size}, {n} samples, batch {batch_size}, 1 thread, bank of {args['bank']} "
          f"toy scenes ({cpu_model()}, {benchmark_allocator()})\n")
    print("| size | variant | components/sample | CPU ms/sample: generate | encode | samples/s per core |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = random_run_dir(recipe, Path(tmp) / "run")
            rows = []
            for precision in str(args["precisions"]).split(","):  # YAML reads a bare `no` as False
                if precision.strip().lower() in ("", "none", "skip"):  # precisions=none: composite only
                    continue
                name = "fp32" if precision.strip().lower() in ("no", "false", "fp32") else precision.strip()
                spade = load_pipeline(run_dir, device="cpu", autocast=name == "bf16")
                rows.append((f"spade {name}", spade, GeneratedLayouts(spade)))
            recipe.stages.image.arch = "composite"
            start = time.process_time()
            composite = composite_pipeline(recipe, run_dir, base=load_pipeline(run_dir, device="cpu"),
                                           progress=False)
            build = time.process_time() - start
            rows.append(("composite, generated layouts", composite, GeneratedLayouts(composite)))
            real = RealLayouts(make_reader(recipe.data, recipe.data.train_split), height=recipe.data.height,
                               width=recipe.data.width, copy_paste=int(args["copy_paste"]),
                               pool=ObjectPool.from_bank(composite.bank))
            real.pool  # noqa: B018  (built before timing)
            rows.append((f"composite, real layouts + copy-paste {args['copy_paste']}", composite, real))
            for name, pipeline, source in rows:
                gen, enc, comps = cost(pipeline, source, recipe, n, batch_size)
                print(f"| {size} | {name} | {comps:.0f} | {1e3 * gen:.1f} | {1e3 * enc:.1f} | {1 / (gen + enc):.1f} |",
                      flush=True)
            base = composite.base
            base.layouts_from_seeds(list(range(batch_size)))
            start = time.process_time()
            for first in range(0, n, batch_size):
                base.layouts_from_seeds(list(range(first, min(n, first + batch_size))))
            print(f"\nof which the layout GAN (random weights, fp32): {1e3 * (time.process_time() - start) / n:.1f} "
                  "ms/sample in the generated-layout rows")
            print(f"\nbank: {len(composite.bank)} segments, built in {build:.1f} s CPU (rendering the toy "
                  f"scenes included), not counted above")
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
