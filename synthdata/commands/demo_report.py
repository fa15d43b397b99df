"""DIR/report.md of `synthdata demo` (synthdata/commands/demo.py runs the pipeline, this writes the page):
the segmenter study's table and intervals (from its report.json and cell results), the quality
of the GAN samples, pictures, timing and the commands that reproduce it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthdata.core.atomic import write_text_atomic

if TYPE_CHECKING:
    from synthdata.commands.demo_budgets import Budget
    from synthdata.experiments.plan import Plan


def fmt(value: float | None) -> str:
    """A fraction as a percentage with one decimal, '-' for None."""
    return "-" if value is None else f"{100 * value:.1f}"


def _bounds(iv: dict[str, Any] | None) -> str | None:
    """`[-1.7, +1.4]` (mIoU points) from an Interval's dict in the study's report.json; None if undefined."""
    if not iv or iv.get("lo") is None or iv.get("hi") is None:
        return None
    return f"[{100 * iv['lo']:+.1f}, {100 * iv['hi']:+.1f}]"


def _interval(iv: dict[str, Any] | None) -> str:
    """`-0.1 [-1.7, +1.4]`, `-0.1 [-]` (one seed) or `-`."""
    return "-" if not iv else f"{100 * iv['mean']:+.1f} {_bounds(iv) or '[-]'}"


def interval_sentence(row: dict[str, Any], confidence: float) -> str:
    """A study row's paired difference to the baseline with both intervals and the verdict, in one line."""
    conf = round(100 * confidence)
    t, boot = row.get("t_interval"), row.get("bootstrap")
    seeds = len(row.get("paired_seeds", []))
    if not t:
        return f"no paired difference ({seeds} paired seeds finished)"
    over_seeds = (f"{conf}% interval over seeds {_bounds(t)}" if _bounds(t)
                  else f"no interval over seeds with {seeds} seed")
    return (f"{100 * t['mean']:+.1f} mIoU points ({seeds} seeds, paired by seed), {over_seeds}, "
            f"{conf}% per-image bootstrap interval {_bounds(boot) or '[-]'}; verdict: {row.get('verdict', '-')}")


def _per_class(plan: Plan) -> dict[str, list[float | None]]:
    """Mean IoU per class over the finished seeds of each arm (None where a class never scored)."""
    out = {}
    for name in plan.variants:
        results = [json.loads(c.result_path.read_text()) for c in plan.cells
                   if c.variant == name and c.result_path.is_file()]
        values = np.array([[np.nan if v is None else v for v in r["per_class_iou"]] for r in results], float)
        with np.errstate(all="ignore"):
            means = np.nanmean(values, axis=0) if len(values) else np.array([])
        out[name] = [None if np.isnan(v) else float(v) for v in means]
    return out


def _study_timings(plan: Plan) -> list[tuple[str, float | None]]:
    """Seconds of each job inside the study (its own markers; shown, not added to the total)."""
    rows: list[tuple[str, float | None]] = []
    for kind, runs, label in (("generators", plan.generators, "segment bank (`train stage=image`, composite)"),
                              ("productions", plan.productions, f"produce {plan.recipe.produce.num_samples} "
                                                                "composite samples")):
        for key in runs:
            marker = plan.run_dir / kind / key / "done.json"
            rows.append((label, json.loads(marker.read_text())["seconds"] if marker.is_file() else None))
    for cell in plan.cells:
        seconds = json.loads(cell.result_path.read_text())["wall_seconds"] if cell.result_path.is_file() else None
        rows.append((f"segmenter, {cell.variant}, seed {cell.seed}", seconds))
    return rows


def write_demo_report(run_dir: Path, *, budget_name: str, budget: Budget, variant: str, plan: Plan,
                      study: dict[str, Any], timings: dict[str, dict[str, Any]], fid_line: str,
                      reproduce: list[str]) -> Path:
    """DIR/report.md. `study`: the study's report.json; `variant`: the synthetic arm's name;
    `timings`: the demo's stages (the study's jobs are listed under its row); `reproduce`: Markdown lines."""
    layouts = json.loads((run_dir / "eval" / "layouts" / "report.json").read_text())["metrics"]
    fidelity = json.loads((run_dir / "eval" / "fidelity" / "report.json").read_text())["metrics"]
    summary = study["summary"]
    rows = {r["variant"]: r for r in summary["rows"]}
    base_name, conf = summary["baseline"], round(100 * summary["confidence"])
    study_dir = plan.study_dir.relative_to(run_dir)
    cell_dir = {c.variant: c.run_dir.relative_to(run_dir) for c in plan.cells if c.seed == plan.seeds[0]}
    lines = [
        f"# synthdata demo ({budget_name} budget)",
        "",
        f"The toy world stands in for a real dataset: {budget.real_train} labelled scenes at "
        f"{budget.height}x{budget.width} for training, {budget.val} held-out scenes for evaluation. "
        f"The generators learned from the {budget.real_train} scenes only. The same segmenter was trained "
        f"for {budget.seg_steps} steps on real data alone and on real + {budget.samples} synthetic samples "
        f"of the best variant measured so far (**{variant}**: real layouts with copy-paste of 3 objects, "
        "textured with real pixels from a segment bank; half of every batch synthetic), "
        f"with {len(plan.seeds)} seeds each (seeds {plan.seeds}): a small `synthdata study`.",
        "",
        "## Does the synthetic data pay? (held-out scenes)",
        "",
        f"**{variant} minus {base_name}: {interval_sentence(rows[variant], summary['confidence'])}.**",
        "",
        f"| arm | seeds | mIoU % mean +- std | mIoU per seed | difference [{conf}% t over seeds] | "
        f"difference [{conf}% bootstrap over images] | real / synthetic samples | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["rows"]:
        per_seed = ", ".join(fmt(v) for v in r["miou"].values()) or "-"
        lines.append(f"| {r['variant']} | {len(r['seeds'])} | {fmt(r['miou_mean'])} +- {fmt(r['miou_std'])} | "
                     f"{per_seed} | {_interval(r.get('t_interval'))} | {_interval(r.get('bootstrap'))} | "
                     f"{r['samples']['real']:.0f} / {r['samples']['synthetic']:.0f} | {r.get('verdict', '-')} |")
    lines += ["", study.get("interval_rule", ""), "",
              f"Full study report: [{study_dir}/report.md]({study_dir}/report.md). Per-class IoU % (mean over seeds):",
              "", f"| class | {base_name} | {variant} | difference |", "| --- | --- | --- | --- |"]
    per_class = _per_class(plan)
    for c, name in enumerate(summary["classes"]):
        a, b = per_class[base_name][c], per_class[variant][c]
        lines.append(f"| {name} | {fmt(a)} | {fmt(b)} | {'-' if a is None or b is None else f'{100 * (b - a):+.1f}'} |")
    lines.append("")
    for caption, name in study.get("pictures", {}).items():
        lines += [f"![{caption}]({study_dir}/{name})", ""]
    lines += [
        f"Confusion matrices (seed {plan.seeds[0]}): [{base_name}]({cell_dir[base_name]}/report/confusion_matrix.png), "
        f"[{variant}]({cell_dir[variant]}/report/confusion_matrix.png).",
        "",
        "## Generated data quality (layout GAN, depth and image SPADE stages)",
        "",
        f"The trained generators produced {budget.gan_samples} samples. They do not train the segmenter: GAN "
        "layouts + SPADE at ratio 0.5 lowered the toy mIoU in every study so far (docs/studies.md).",
        "",
        f"- Layout statistics: Jensen-Shannon divergence of class pixel frequencies, generated vs real: "
        f"{layouts.get('js_pixel_frequency', float('nan')):.4f} ([report](eval/layouts/report.md)).",
        f"- Fidelity: the real-only segmenter (seed {plan.seeds[0]}) re-segments the generated images with mIoU "
        f"{fmt(fidelity.get('miou'))}% and pixel accuracy {fmt(fidelity.get('pixel_accuracy'))}% against their "
        "own layouts ([report](eval/fidelity/report.md)).",
        f"- {fid_line}",
        "",
        "## Pictures",
        "",
        "Real training scenes (image | layout | depth):",
        "",
        "![real](pictures/real_scenes.png)",
        "",
        "Samples of the trained generators, layout GAN -> depth SPADE -> image SPADE (image | layout | depth):",
        "",
        "![synthetic](pictures/synthetic_samples.png)",
        "",
        f"The synthetic arm's samples ({variant}: real layouts + copy-paste, real pixels; image | layout | depth):",
        "",
        "![composite](pictures/composite_samples.png)",
        "",
    ]
    for stage in ("layout", "depth", "image"):
        grids = sorted((run_dir / "generators" / "samples" / stage).glob("step-*.png"))
        if grids:
            lines += [f"Training samples of the {stage} stage ({grids[-1].stem}):", "",
                      f"![{stage}]({grids[-1].relative_to(run_dir)})", ""]
    lines += ["## Pipeline timing", "", "| stage | seconds | |", "| --- | --- | --- |"]
    for name, row in timings.items():
        lines.append(f"| {name} | {row['seconds']:.1f} | {'reused from an earlier run' if row['reused'] else ''} |")
        if name == "segmenter study":
            lines += [f"| &nbsp;&nbsp;of which: {job} | {'-' if s is None else f'{s:.1f}'} | inside the study row |"
                      for job, s in _study_timings(plan)]
    lines += [f"| **total** | {sum(r['seconds'] for r in timings.values()):.1f} | |", "", "## Reproduce", ""]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines + reproduce + [""]))
    return path
