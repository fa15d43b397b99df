"""`synthdata demo [run_dir=DIR demo.budget=tiny|small|full]`: the whole pipeline on the toy world.

Trains the layout, depth and image stages on a small labelled subset of the toy world, produces
GAN samples (pictures, layout statistics, fidelity, FID), then runs a small `synthdata study`:
real only vs the best variant measured so far (real layouts + copy-paste textured with real
pixels, half of every batch), a few seeds each, and writes `DIR/report.md` with the paired
difference and its intervals. Every stage is an ordinary synthdata command run in-process;
rerunning reuses finished stages (each command resumes or skips completed work).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

from synthdata import produce, train
from synthdata.commands import evaluate_fid, evaluate_fidelity, evaluate_layouts
from synthdata.commands.demo_budgets import BUDGETS, Budget
from synthdata.commands.demo_report import fmt, interval_sentence, write_demo_report
from synthdata.commands.inspection import main as inspect_main
from synthdata.core.atomic import write_json_atomic
from synthdata.core.contract import ConfigError
from synthdata.core.entry import run_main
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import parse_command_line
from synthdata.core.visualize import save_grid
from synthdata.data.readers import make_reader
from synthdata.experiments.study import make_plan, run_study
from synthdata.metrics.inception import FIDWeightsError, resolve_weights

# The best synthetic variant measured on the toy world so far (docs/studies.md, "Study: composite
# copy-paste on the toy world"; the same entry as recipes/studies/toy-composite.yaml): real layouts
# with class-aware copy-paste of 3 objects, textured with real pixels from the segment bank (no
# generator is trained for it), half of every segmenter batch. Six pastes, CamVid-10%'s best, were
# no better at this budget over 10 seeds ("Six pastes at the demo's budget").
BEST_VARIANT = "copy-paste composite 0.5"
STUDY_VARIANTS = {BEST_VARIANT: {"seg.synthetic_ratio": 0.5, "produce.layouts": "real",
                                 "produce.copy_paste": 3, "stages.image.arch": "composite"}}


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


def study_overrides(budget: Budget) -> list[str]:
    """The segmenter comparison as a study: real only vs the best variant, one job at a time in this process."""
    return [f"study.variants={json.dumps(STUDY_VARIANTS)}", f"study.seeds={budget.seeds}", "study.workers=1"]


class Timer:
    """Wall time per demo stage, kept in DIR/demo_timings.json so reruns can report it (the rows
    are this run's stages; a stage that took under half its earlier time was reused)."""

    def __init__(self, path: Path):
        self.path = path
        self.earlier: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}
        self.rows: dict[str, dict[str, Any]] = {}

    def run(self, name: str, fn: Callable[[], int]) -> None:
        start = time.perf_counter()
        code = fn()
        seconds = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"demo stage '{name}' failed with exit code {code}")
        previous = self.earlier.get(name)
        reused = previous is not None and seconds < 0.5 * previous["seconds"]
        self.rows[name] = {"seconds": previous["seconds"] if reused else round(seconds, 1), "reused": reused}
        write_json_atomic(self.path, self.rows)


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
    shards = gen_dir / "shards-gan"  # not generators/shards, where earlier demos put 1,024 GAN samples
    gan_args = [f"produce.num_samples={budget.gan_samples}", f"produce.out={shards}"]
    study_recipe, _ = parse_command_line(common + study_overrides(budget))
    plan = make_plan(study_recipe, run_dir / "comparison")  # checks the variant before anything trains
    baseline = next(c for c in plan.cells if c.variant == study_recipe.study.baseline and c.seed == plan.seeds[0])
    total = 8

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
    step(5, f"producing {budget.gan_samples} synthetic samples with the trained generators")
    timer.run("produce GAN samples", lambda: produce.main(common + gan_args + [f"run_dir={gen_dir}"]))
    step(6, f"segmenter study: real only vs {BEST_VARIANT} ({budget.samples} samples), "
            f"{budget.seeds} seeds x {budget.seg_steps} steps each")
    timer.run("segmenter study", lambda: _study(study_recipe, plan.run_dir))
    step(7, "evaluating the GAN samples: layout statistics and fidelity")
    timer.run("layout statistics", lambda: evaluate_layouts.main(
        common + ["real=recipe:train", f"fake={shards}", f"out={run_dir / 'eval' / 'layouts'}"]))
    timer.run("fidelity", lambda: evaluate_fidelity.main(
        common + [f"shards={shards}", f"out={run_dir / 'eval' / 'fidelity'}",
                  f"segmenter={baseline.run_dir / 'checkpoints' / 'segmenter' / 'latest.pt'}"]))
    fid_line = _maybe_fid(common, shards, run_dir, timer)
    step(8, "writing the report")
    _contact_sheet(shards, run_dir / "pictures" / "synthetic_samples.png")
    (production,) = plan.productions.values()
    _contact_sheet(Path(production["shards"]), run_dir / "pictures" / "composite_samples.png")
    study = json.loads((plan.study_dir / "report.json").read_text())
    study_command = "synthdata study " + " ".join(shlex.quote(c) for c in common + study_overrides(budget))
    report = write_demo_report(
        run_dir, budget_name=budget_name, budget=budget, variant=BEST_VARIANT, plan=plan, study=study,
        timings=timer.rows, fid_line=fid_line, reproduce=[
            "Every stage is a synthdata command with these recipe settings (SETTINGS):", "",
            "```", " ".join(shlex.quote(c) for c in common), "```", "",
            f"(stages: `synthdata train SETTINGS stage=layout|depth|image run_dir={gen_dir} train.steps=N`; "
            f"their samples: `synthdata produce SETTINGS run_dir={gen_dir} {' '.join(gan_args)}`); the comparison:",
            "",
            "```", f"{study_command} run_dir={shlex.quote(str(plan.run_dir))}", "```"])
    rows = {r["variant"]: r for r in study["summary"]["rows"]}
    print(f"\ndemo report: {report}")
    for name, extra in ((study_recipe.study.baseline, f"{budget.real_train} real scenes"),
                        (BEST_VARIANT, f"+{budget.samples} synthetic samples, ratio 0.5")):
        r = rows[name]
        print(f"  {name}: mIoU {fmt(r['miou_mean'])} +- {fmt(r['miou_std'])}% over {len(r['seeds'])} seeds "
              f"({budget.seg_steps} steps, {extra})")
    print(f"  difference: {interval_sentence(rows[BEST_VARIANT], study['summary']['confidence'])}")
    print(f"  total time {sum(r['seconds'] for r in timer.rows.values()):.0f} s")
    return report


def _study(recipe: Recipe, run_dir: Path) -> int:
    summary = run_study(recipe, run_dir)
    for job, reason in summary["failed"].items():
        print(f"  failed {job}: {reason}", file=sys.stderr)
    return 1 if summary["failed"] else 0


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
    timer.run("FID", lambda: evaluate_fid.main(common + ["real=recipe:val", f"fake={shards}", f"out={out}"]))
    value = json.loads((out / "report.json").read_text())["metrics"].get("fid")
    return f"FID (images, synthetic vs held-out real): {value:.2f}" if value is not None else "FID: see eval/fid"


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"run_dir": "runs/demo"})
    run_demo(Path(str(args["run_dir"])), recipe.demo.budget, recipe.seed, recipe.demo.real_train)
    return 0


def main(argv: list[str] | None = None) -> int:

    return run_main(_main, argv)

