"""Generator training benchmarks: step throughput per stage (fp32 vs bf16 autocast), and what a
trained run is worth against untrained generators of the same architecture.

    python tools/bench_train.py speed [steps=30] [warmup=5] [precisions=no,bf16] [recipe=toy] [key.sub=value ...]
    python tools/bench_train.py quality run_dir=DIR [num_layouts=512] [split=val]

`speed` trains every stage of the recipe in a temporary run dir: `warmup` steps (start-up, first
checkpoint), then resumes to `warmup + steps` and reports the resumed run's it/s (it includes one
checkpoint and one sample grid at the end). `quality` reads a trained run dir (e.g. the demo's
`generators/`) and reports, on held-out scenes of the run's recipe:
- layout stage: Jensen-Shannon divergence of class pixel frequencies, generated vs real;
- depth and image stages: mean L1 to the ground truth given the ground-truth layout (and depth),
  in [0, 1] units (images) or normalised depth, for the trained EMA generator, an untrained one
  (the same architecture with its initial weights) and the per-pixel mean of the training split.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from synthdata.core.recipe_loading import load_recipe, parse_command_line  # noqa: E402

SPEED_ARGUMENTS = {"steps": 30, "warmup": 5, "precisions": "no,bf16"}
QUALITY_ARGUMENTS = {"run_dir": None, "num_layouts": 512, "split": "val", "batch_size": 32}


def speed(argv: list[str]) -> None:
    from synthdata.core.runtime import configure_threads
    from synthdata.generation import stages
    from synthdata.generation.training import train_stage

    recipe, args = parse_command_line(argv, SPEED_ARGUMENTS)
    warmup, steps = int(args["warmup"]), int(args["steps"])
    threads = configure_threads()  # what train_stage's accelerator chooses, counted now (not the default)
    print(f"recipe {recipe.name} at {recipe.data.height}x{recipe.data.width}, batch {recipe.train.batch_size}, "
          f"torch {torch.__version__}, {threads} threads; {steps} timed steps after {warmup}")
    print("| stage | precision | it/s | samples/s |")
    print("| --- | --- | --- | --- |")
    precisions = "no" if args["precisions"] is False else str(args["precisions"])  # YAML: bare no is false
    for precision in precisions.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            for stage in stages.STAGES:
                if stage == "depth" and not recipe.data.has_depth:
                    continue  # no depth data, no depth stage (layout -> image)
                for total in (warmup, warmup + steps):
                    r, _ = parse_command_line(argv + [f"train.steps={total}", f"train.checkpoint_every={total}",
                                                      f"train.sample_every={total}",
                                                      f"train.mixed_precision={precision}"], SPEED_ARGUMENTS)
                    summary = train_stage(r, stage=stage, run_dir=tmp)
                ips = summary["it_per_s"]
                print(f"| {stage} | {precision} | {ips:.2f} | {ips * recipe.train.batch_size:.1f} |", flush=True)


def _batches(reader, batch_size: int, with_depth: bool) -> list[dict[str, torch.Tensor]]:
    """Every sample of `reader` once, unaugmented, as the loader's dict batches."""
    from synthdata.data.loader import Source, make_loader

    loader = make_loader(Source(reader=reader, name="bench"), batch_size=batch_size, augment=False, shuffle=False,
                         with_depth=with_depth, rank=0, world_size=1)
    return list(loader)


def _stage_l1(spec: Any, G: torch.nn.Module, batches: list[dict[str, torch.Tensor]],
              mean_target: torch.Tensor | None = None) -> float:
    """Mean L1 between generator output (or `mean_target`) and the target, over known pixels;
    `spec`: the stage's `StageSpec`."""
    total, count = 0.0, 0.0
    gen = torch.Generator().manual_seed(0)
    for batch in batches:
        inp = spec.inputs(batch, spec.noise(len(batch["layout"]), gen, "cpu"))
        with torch.inference_mode():
            out = mean_target.expand_as(inp.target) if mean_target is not None else spec.generate(G, inp).float()
        err = (out - inp.target).abs()
        mask = torch.ones_like(err) if inp.mask is None else inp.mask.expand_as(err).float()
        total += float((err * mask).sum())
        count += float(mask.sum())
    scale = 0.5  # outputs live in [-1, 1]: half the distance is the L1 in [0, 1] units
    return scale * total / max(count, 1.0)


def quality(argv: list[str]) -> None:
    from synthdata.core.runtime import seed_step
    from synthdata.data.readers import make_reader
    from synthdata.generation import stages
    from synthdata.generation.sampler import load_pipeline
    from synthdata.metrics.layout_stats import js_divergence, layout_statistics

    _, args = parse_command_line(["recipe=toy"] + argv, QUALITY_ARGUMENTS)
    if not args["run_dir"]:
        raise SystemExit("quality needs run_dir=DIR (a run with trained stages)")
    run_dir = Path(str(args["run_dir"]))
    recipe = load_recipe(str(run_dir / "recipe.yaml"))
    pipe = load_pipeline(run_dir, device="cpu")
    val, train = make_reader(recipe.data, str(args["split"])), make_reader(recipe.data, "train")
    num_classes, bs = pipe.classes.num_classes, int(args["batch_size"])
    print(f"run {run_dir}: {recipe.data.height}x{recipe.data.width}, {len(train)} training scenes, "
          f"{len(val)} held-out scenes ({args['split']})")

    real = layout_statistics((val[i]["layout"] for i in range(len(val))), num_classes=num_classes)
    n = int(args["num_layouts"])
    seeds = list(range(10_000, 10_000 + n))
    fake = np.concatenate([pipe.layouts_from_seeds(seeds[i:i + bs]).numpy() for i in range(0, n, bs)])
    layout_spec = pipe.generator("layout")[1]
    seed_step(recipe.seed, layout_spec.stage_id)
    untrained = layout_spec.build_generator().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        z = torch.randn(n, layout_spec.z_dim, generator=gen)
        rand = torch.cat([layout_spec.generate(untrained, stages.StageInputs(None, None, None, z[i:i + bs]))
                          .argmax(1) for i in range(0, n, bs)]).numpy()
    js_trained = js_divergence(real["pixel_frequency"], layout_statistics(fake, num_classes=num_classes)["pixel_frequency"])
    js_untrained = js_divergence(real["pixel_frequency"], layout_statistics(rand, num_classes=num_classes)["pixel_frequency"])
    print(f"layout: JS divergence of class pixel frequencies vs {len(val)} held-out layouts: "
          f"trained {js_trained:.4f}, untrained {js_untrained:.4f} ({n} generated layouts each)")

    with_depth = pipe.has_depth
    val_batches = _batches(val, bs, with_depth)
    train_batches = _batches(train, bs, with_depth)
    print("| stage | L1 trained (EMA) | L1 untrained | L1 of the training mean |")
    print("| --- | --- | --- | --- |")
    for stage in ("depth", "image"):
        if stage == "depth" and not with_depth:
            continue
        G, spec = pipe.generator(stage)
        seed_step(recipe.seed, spec.stage_id)  # the initial weights training started from
        G0 = spec.build_generator().eval()
        targets = [spec.inputs(b, None).target for b in train_batches]
        mean_target = torch.cat(targets).mean(0, keepdim=True)
        row = [_stage_l1(spec, G, val_batches), _stage_l1(spec, G0, val_batches),
               _stage_l1(spec, G, val_batches, mean_target)]
        print(f"| {stage} | " + " | ".join(f"{v:.4f}" for v in row) + " |", flush=True)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("speed", "quality"):
        raise SystemExit(__doc__)
    (speed if argv[0] == "speed" else quality)(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
