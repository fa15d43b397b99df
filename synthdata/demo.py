"""`synthdata demo [run_dir=DIR demo.budget=tiny|small|full]`: the whole pipeline on the toy world.

Trains the layout, depth and image stages on a small labelled subset of the toy world, produces
synthetic shards, trains the same segmenter on real data alone and on real + synthetic data,
evaluates both, and writes `DIR/report.md`. Every stage is an ordinary synthdata command run
in-process; rerunning reuses finished stages (each command resumes or skips completed work).
"""

from __future__ import annotations

from synthdata import produce, segment, train
from synthdata.core.entry import run_main
from synthdata.core.visualize import save_grid
from synthdata.data.readers import make_reader
from synthdata.inspection import main as inspect_main
from synthdata.metrics import fid, fidelity, layout_stats
from synthdata.metrics.inception import FIDWeightsError, resolve_weights
from synthdata.metrics.report import compare_reports, read_report

if __name__ == "__main__" and not __package__:  # run as a file: import the package, never sibling files
    import os
    import sys

    _pkg = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_pkg)] + [p for p in sys.path if os.path.abspath(p or ".") != _pkg]

import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from synthdata.core.contract import ConfigError
from synthdata.core.recipe_loading import parse_command_line


@dataclass(frozen=True)
class Budget:
    """Sizes and step counts of one demo budget."""

    height: int
    width: int
    real_train: int  # labelled toy scenes the generators and segmenters may learn from
    val: int  # held-out toy scenes for every evaluation
    layout_steps: int
    depth_steps: int
    image_steps: int
    samples: int  # synthetic samples produced
    shard_size: int
    seg_steps: int
    gen_channels: int  # ngf/ndf of the generators
    batch_size: int
    image_discriminators: int  # scales of the image stage's multi-scale discriminator


BUDGETS = {
    # CI: seconds; proves that every stage runs and the report is written, nothing else
    "tiny": Budget(32, 64, 16, 16, 3, 3, 3, 48, 16, 4, 8, 4, 1),
    # the README's main command: under 15 minutes on a 2-core CPU (stage speeds measured with
    # `python tools/bench_train.py speed`, see docs/benchmarks.md)
    "small": Budget(64, 128, 64, 128, 400, 150, 400, 1024, 256, 400, 24, 8, 1),
    # a longer run for a machine with a GPU or more time
    "full": Budget(128, 256, 256, 256, 5000, 3000, 6000, 20000, 500, 4000, 64, 16, 2),
}


def recipe_overrides(budget: Budget, recipe_seed: int) -> list[str]:
    """The toy recipe at the budget's sizes, shared by every command the demo runs."""
    c = budget.gen_channels
    return [
        "recipe=toy",
        f"seed={recipe_seed}",
        f"data.height={budget.height}",
        f"data.width={budget.width}",
        f"data.split_sizes={{train: {budget.real_train}, val: {budget.val}, test: {budget.val}}}",
        f"stages.layout.ngf={c}", f"stages.layout.ndf={c}",
        f"stages.depth.ngf={c}", f"stages.depth.ndf={c}",
        f"stages.image.ngf={c}", f"stages.image.ndf={c}",
        f"stages.image.num_discriminators={budget.image_discriminators}",
        f"train.batch_size={budget.batch_size}",
        f"seg.batch_size={budget.batch_size}",
        f"seg.steps={budget.seg_steps}",
        f"seg.val_every={budget.seg_steps}",
        f"seg.checkpoint_every={budget.seg_steps}",
        f"produce.num_samples={budget.samples}",
        f"produce.shard_size={budget.shard_size}",
    ]


class Timer:
    """Wall time per demo stage, kept in DIR/demo_timings.json so reruns can report it."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, fn: Callable[[], int]) -> None:
        start = time.perf_counter()
        code = fn()
        seconds = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"demo stage '{name}' failed with exit code {code}")
        previous = self.rows.get(name)
        reused = previous is not None and seconds < 0.5 * previous["seconds"]
        self.rows[name] = {"seconds": previous["seconds"] if reused else round(seconds, 1), "reused": reused}
        self.path.write_text(json.dumps(self.rows, indent=1))


def run_demo(run_dir: Path, budget_name: str, recipe_seed: int = 0, real_train: int | None = None) -> Path:

    if budget_name not in BUDGETS:
        raise ConfigError(f"demo.budget must be one of {', '.join(BUDGETS)}, got '{budget_name}'")
    budget = BUDGETS[budget_name]
    if real_train is not None:
        budget = dataclasses.replace(budget, real_train=real_train)
    run_dir.mkdir(parents=True, exist_ok=True)
    common = recipe_overrides(budget, recipe_seed)
    timer = Timer(run_dir / "demo_timings.json")
    gen_dir = run_dir / "generators"
    shards = gen_dir / "shards"
    seg_real, seg_mixed = run_dir / "segment-real", run_dir / "segment-real+synthetic"
    total = 9

    def step(i: int, text: str) -> None:
        print(f"\n[demo {i}/{total}] {text}", flush=True)

    step(1, f"toy world: {budget.real_train} labelled training scenes, {budget.val} held-out scenes")
    timer.run("real data picture", lambda: _real_grid(common, run_dir / "pictures" / "real_scenes.png"))
    for i, stage in enumerate(("layout", "depth", "image"), start=2):
        steps = getattr(budget, f"{stage}_steps")
        step(i, f"training the {stage} stage for {steps} steps")
        timer.run(f"train {stage}", lambda s=stage, n=steps: train.main(
            common + [f"stage={s}", f"run_dir={gen_dir}", f"train.steps={n}",
                      f"train.sample_every={max(n // 2, 1)}", f"train.checkpoint_every={n}"]))
    step(5, f"producing {budget.samples} synthetic samples")
    timer.run("produce", lambda: produce.main(common + [f"run_dir={gen_dir}"]))
    # the same generated layouts textured with real pixels (segment bank, no image stage), for the pictures
    composite_shards = gen_dir / "shards-composite"
    timer.run("produce composite (pictures)", lambda: produce.main(common + [
        f"run_dir={gen_dir}", "stages.image.arch=composite", "stages.image.composite.missing=fill",
        f"produce.out={composite_shards}", "produce.num_samples=8", "produce.shard_size=8"]))
    step(6, f"training a segmenter on real data only ({budget.seg_steps} steps)")
    timer.run("segment real only", lambda: segment.main(common + [f"run_dir={seg_real}"]))
    step(7, f"training the same segmenter on real + synthetic data ({budget.seg_steps} steps)")
    timer.run("segment real + synthetic", lambda: segment.main(
        common + [f"run_dir={seg_mixed}", f"seg.synthetic={shards}", "seg.synthetic_ratio=0.5"]))
    step(8, "evaluating the synthetic data: layout statistics and fidelity")
    timer.run("layout statistics", lambda: layout_stats.main(
        common + ["real=recipe:train", f"fake={shards}", f"out={run_dir / 'eval' / 'layouts'}"]))
    timer.run("fidelity", lambda: fidelity.main(
        common + [f"shards={shards}", f"segmenter={seg_real / 'checkpoints' / 'segmenter' / 'latest.pt'}",
                  f"out={run_dir / 'eval' / 'fidelity'}"]))
    fid_line = _maybe_fid(common, shards, run_dir, timer)
    step(9, "writing the report")
    reports = [read_report(seg_real / "report" / "report.json"), read_report(seg_mixed / "report" / "report.json")]
    compare_md = compare_reports(reports, run_dir / "compare")
    _contact_sheet(shards, run_dir / "pictures" / "synthetic_samples.png")
    _contact_sheet(composite_shards, run_dir / "pictures" / "composite_samples.png")
    report = write_demo_report(run_dir, budget_name, budget, common, reports, compare_md, timer.rows, fid_line)
    real, mixed = (r["metrics"]["miou"] for r in reports)
    print(f"\ndemo report: {report}")
    print(f"  real only:        mIoU {100 * real:.1f}% ({budget.seg_steps} steps, {budget.real_train} real scenes)")
    print(f"  real + synthetic: mIoU {100 * mixed:.1f}% (+{budget.samples} synthetic samples, ratio 0.5)")
    print(f"  difference:       {100 * (mixed - real):+.1f} mIoU points; total time {sum(r['seconds'] for r in timer.rows.values()):.0f} s")
    return report


def _real_grid(common: list[str], path: Path) -> int:

    recipe, _ = parse_command_line(common)
    reader = make_reader(recipe.data, "train")
    save_grid([reader[i] for i in range(min(8, len(reader)))], reader.classes, path)
    return 0


def _contact_sheet(shards: Path, path: Path) -> None:

    if inspect_main([str(shards), "n=8", f"out={path}"]) != 0:
        raise RuntimeError(f"could not inspect {shards}")


def _maybe_fid(common: list[str], shards: Path, run_dir: Path, timer: Timer) -> str:

    try:
        resolve_weights(None)
    except FIDWeightsError as e:
        return f"FID skipped: {e}"
    out = run_dir / "eval" / "fid"
    timer.run("FID", lambda: fid.main(common + ["real=recipe:val", f"fake={shards}", f"out={out}"]))
    value = json.loads((out / "report.json").read_text())["metrics"].get("fid")
    return f"FID (images, synthetic vs held-out real): {value:.2f}" if value is not None else "FID: see eval/fid"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def write_demo_report(run_dir: Path, budget_name: str, budget: Budget, common: list[str],
                      reports: list[dict[str, Any]], compare_md: Path, timings: dict[str, dict[str, Any]],
                      fid_line: str) -> Path:
    layouts = json.loads((run_dir / "eval" / "layouts" / "report.json").read_text())["metrics"]
    fidelity = json.loads((run_dir / "eval" / "fidelity" / "report.json").read_text())["metrics"]
    real, mixed = reports
    names = real["classes"]["classes"]
    lines = [
        f"# synthdata demo ({budget_name} budget)",
        "",
        f"The toy world stands in for a real dataset: {budget.real_train} labelled scenes at "
        f"{budget.height}x{budget.width} for training, {budget.val} held-out scenes for evaluation. "
        f"The generators learned from the {budget.real_train} scenes only; the same segmenter was trained "
        f"for {budget.seg_steps} steps on real data alone and on real + {budget.samples} synthetic samples "
        "(half of every batch synthetic).",
        "",
        "## Segmentation on held-out scenes (IoU %)",
        "",
        "| class | real only | real + synthetic | difference |",
        "| --- | --- | --- | --- |",
    ]
    for c, name in enumerate(names):
        a, b = real["metrics"]["per_class_iou"][c], mixed["metrics"]["per_class_iou"][c]
        diff = "-" if a is None or b is None else f"{100 * (b - a):+.1f}"
        lines.append(f"| {name} | {_fmt(a)} | {_fmt(b)} | {diff} |")
    for key in ("miou", "pixel_accuracy"):
        a, b = real["metrics"][key], mixed["metrics"][key]
        lines.append(f"| **{key}** | {_fmt(a)} | {_fmt(b)} | {100 * (b - a):+.1f} |")
    lines += [
        "",
        f"Full reports: [real only](segment-real/report/report.md), "
        f"[real + synthetic](segment-real+synthetic/report/report.md), [comparison]({compare_md.relative_to(run_dir)}).",
        "",
        "![per-class IoU](compare/compare.png)",
        "",
        "## Synthetic data quality",
        "",
        f"- Layout statistics: Jensen-Shannon divergence of class pixel frequencies, synthetic vs real: "
        f"{layouts.get('js_pixel_frequency', float('nan')):.4f} ([report](eval/layouts/report.md)).",
        f"- Fidelity: the real-only segmenter re-segments the synthetic images with mIoU "
        f"{_fmt(fidelity.get('miou'))}% and pixel accuracy {_fmt(fidelity.get('pixel_accuracy'))}% against their "
        "own layouts ([report](eval/fidelity/report.md)).",
        f"- {fid_line}",
        "",
        "## Pictures",
        "",
        "Real training scenes (image | layout | depth):",
        "",
        "![real](pictures/real_scenes.png)",
        "",
        "Produced synthetic samples (image | layout | depth):",
        "",
        "![synthetic](pictures/synthetic_samples.png)",
        "",
        "Generated layouts textured with real pixels instead (`stages.image.arch=composite`: segments of the "
        "training scenes from a segment bank, no image stage; shown for comparison, not used for training here):",
        "",
        "![composite](pictures/composite_samples.png)",
        "",
    ]
    for stage in ("layout", "depth", "image"):
        grids = sorted((run_dir / "generators" / "samples" / stage).glob("step-*.png"))
        if grids:
            lines += [f"Training samples of the {stage} stage ({grids[-1].stem}):", "",
                      f"![{stage}]({grids[-1].relative_to(run_dir)})", ""]
    lines += ["Confusion matrices: [real only](segment-real/report/confusion_matrix.png), "
              "[real + synthetic](segment-real+synthetic/report/confusion_matrix.png).", "",
              "## Pipeline timing", "", "| stage | seconds | |", "| --- | --- | --- |"]
    for name, row in timings.items():
        lines.append(f"| {name} | {row['seconds']:.1f} | {'reused from an earlier run' if row['reused'] else ''} |")
    lines += [f"| **total** | {sum(r['seconds'] for r in timings.values()):.1f} | |", "",
              "## Reproduce", "", "Every stage is a synthdata command with these recipe settings:", "",
              "```", " ".join(shlex.quote(c) for c in common), "```", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"run_dir": "runs/demo"})
    run_demo(Path(str(args["run_dir"])), recipe.demo.budget, recipe.seed, recipe.demo.real_train)
    return 0


def main(argv: list[str] | None = None) -> int:

    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
