"""Production throughput: generation alone, generation + shard writing with and without overlap,
in fp32 and bf16 autocast.

    python tools/bench_produce.py [run_dir=DIR] [num_samples=256] [batch_size=32] [shard_size=64]
        [precisions=no,bf16] [encode_workers=2] [repeats=3 (0: CPU costs only)] [recipe=toy] [key.sub=value ...]

Without `run_dir`, stages with random weights at the recipe's size are used (speed does not
depend on the weights). Configurations are measured in interleaved rounds and the best of
`repeats` is printed, since other jobs sharing the CPU only ever slow a round down.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from synthdata.core.recipe import Recipe  # noqa: E402
from synthdata.core.recipe_loading import parse_command_line, recipe_to_dict  # noqa: E402
from synthdata.core.runtime import benchmark_allocator, cpu_model  # noqa: E402
from synthdata.generation.layout_sources import GeneratedLayouts  # noqa: E402
from synthdata.generation.production import ShardGenerator, produce_shards  # noqa: E402
from synthdata.generation.quality_controls import QualityControls  # noqa: E402
from synthdata.generation.shard_plan import shard_sizes  # noqa: E402

ARGUMENTS = {"run_dir": None, "num_samples": 256, "batch_size": 32, "shard_size": 64,
             "precisions": "no,bf16", "encode_workers": 2, "repeats": 3}


def random_run_dir(recipe: Recipe, folder: Path) -> Path:
    """Stage checkpoints with random weights, so the benchmark needs no training."""
    from synthdata.core.checkpoint import portable_checkpoint, save_atomic
    from synthdata.core.contract import ClassInfo
    from synthdata.core.palette import default_palette
    from synthdata.generation import stages

    names = tuple(recipe.data.classes or [f"class{i}" for i in range(8)])
    classes = ClassInfo(names, default_palette(len(names)), recipe.data.ignore_index)
    torch.manual_seed(0)
    for stage in stages.STAGES:
        spec = stages.stage_spec(stage, recipe, num_classes=len(names), use_depth=True, max_depth=80.0)
        model = spec.build_generator()
        save_atomic(
            portable_checkpoint(kind=f"generator-{stage}", model=model.state_dict(), step=0,
                                recipe=recipe_to_dict(recipe), classes=classes, arch=spec.to_dict()),
            folder / "checkpoints" / stage / "latest.pt",
        )
    return folder


class NullWriter:
    """Accepts shards and drops them: measures generation alone."""

    def is_complete(self, index: int) -> bool:
        return False

    def write_shard(self, index: int, samples: list) -> bool:
        return True

    def flush(self) -> None:
        pass


def measure(pipeline, recipe: Recipe, sizes: list[int], batch_size: int, writer, overlap: bool) -> float:
    generator = ShardGenerator(
        pipeline, GeneratedLayouts(pipeline), QualityControls(num_classes=pipeline.classes.num_classes),
        seed=recipe.seed, prefix="bench", batch_size=batch_size, device=pipeline.device,
    )
    generator.generate(0, min(batch_size, sizes[0]))  # warm-up: lazy init, allocator, kernels
    start = time.perf_counter()
    stats = produce_shards(generator, writer, list(enumerate(sizes)), overlap=overlap, progress=False)
    return stats["samples"] / (time.perf_counter() - start)


def cpu_costs(pipeline, recipe: Recipe, n: int, batch_size: int) -> tuple[float, float]:
    """CPU seconds per sample (one thread) to generate and to encode: unlike wall-clock rates,
    barely affected by other jobs on the machine."""
    from synthdata.data.shards import encode_sample

    generator = ShardGenerator(
        pipeline, GeneratedLayouts(pipeline), QualityControls(num_classes=pipeline.classes.num_classes),
        seed=recipe.seed, prefix="bench", batch_size=batch_size, device=pipeline.device,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # waiting OpenMP threads spin, which would count as CPU time
    try:
        generator.generate(0, min(batch_size, n))
        start = time.process_time()
        samples = generator.generate(1, n)
        generate = (time.process_time() - start) / n
    finally:
        torch.set_num_threads(threads)
    start = time.process_time()
    for sample in samples:
        encode_sample(sample, png_compression=1, depth_scale=pipeline.depth_scale)
    return generate, (time.process_time() - start) / n


def main(argv: list[str] | None = None) -> int:
    from synthdata.data.shard_writer import ShardWriter
    from synthdata.generation.sampler import load_pipeline

    recipe, args = parse_command_line(sys.argv[1:] if argv is None else argv, ARGUMENTS)
    sizes = shard_sizes(int(args["num_samples"]), int(args["shard_size"]))
    batch_size = int(args["batch_size"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"bench_produce: {recipe.data.height}x{recipe.data.width}, {sum(sizes)} samples in {len(sizes)} shards, "
          f"batch {batch_size}, device {device}, torch threads {torch.get_num_threads()}, "
          f"{cpu_model()}, {benchmark_allocator()}")
    precisions = ("no" if args["precisions"] is False else str(args["precisions"])).split(",")  # YAML: bare no is false
    rows = {"generate only": False, "write, serial": True, "write, overlapped": True}
    best: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args["run_dir"]) if args["run_dir"] else random_run_dir(recipe, Path(tmp) / "run")
        pipelines = {p: load_pipeline(run_dir, device=device, autocast=p == "bf16") for p in precisions}
        for round_ in range(int(args["repeats"])):
            for precision, pipeline in pipelines.items():
                for name, writes in rows.items():
                    writer = NullWriter()
                    if writes:
                        writer = ShardWriter(Path(tmp) / f"shards-{round_}-{precision}-{name}", prefix="bench",
                                             shard_size=int(args["shard_size"]), classes=pipeline.classes,
                                             recipe=recipe_to_dict(recipe), depth_scale=pipeline.depth_scale,
                                             encode_workers=int(args["encode_workers"]))
                    rate = measure(pipeline, recipe, sizes, batch_size, writer, overlap=name != "write, serial")
                    if writes:
                        writer.close()
                    best[(precision, name)] = max(rate, best.get((precision, name), 0.0))
        for precision, pipeline in pipelines.items():
            gen, enc = cpu_costs(pipeline, recipe, min(sum(sizes), 4 * batch_size), batch_size)
            print(f"  {precision:>4}  CPU per sample: generate {1e3 * gen:.1f} ms, encode {1e3 * enc:.1f} ms "
                  f"(overlap can hide at most {100 * enc / (gen + enc):.0f}% of the serial time)")
        for (precision, name), rate in best.items():
            print(f"  {precision:>4}  {name:<18} {rate:8.2f} samples/s (best of {args['repeats']})")
        for precision in precisions if best else []:  # repeats=0: CPU costs only
            gain = best[(precision, "write, overlapped")] / best[(precision, "write, serial")]
            print(f"  {precision}: overlapped writing is {gain:.2f}x the serial rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
