"""The report of `synthdata study`: RUN_DIR/study/report.md + report.json + PNGs.

Per variant: mIoU mean +- std over seeds; the paired difference to the baseline per seed (the
same seed, the same evaluation images) with a t-interval over seeds and a per-image paired
bootstrap interval; per-class differences; samples seen (the "equal steps" and "equal real
samples" readings); the time it cost; one verdict line; and each pair of variants against each other,
paired the same way. Refine variants (SegGAN after training)
also show their segmenter and refinement steps, the refinement's own gain and the paired
difference to their control: the same segmenter trained as many steps more without refinement.
Every cell is checked against what it recorded when it finished (`cells.verify_cell`), and cells
made by different code versions, machines or label filters are flagged.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthdata.core.atomic import write_json_atomic, write_text_atomic
from synthdata.core.code_version import version_label
from synthdata.data.shards import manifest_classes, read_manifest
from synthdata.experiments.cells import verify_cell
from synthdata.experiments.plan import cell_id, shorter_run
from synthdata.metrics.intervals import Interval, paired_bootstrap, t_interval
from synthdata.metrics.layout_check import check_layouts, read_layout_check
from synthdata.metrics.layout_stats import NEAR_COPIES
from synthdata.metrics.report import json_safe, pyplot

if TYPE_CHECKING:
    from synthdata.experiments.plan import Plan

INTERVAL_RULE = (
    "Verdicts use the {conf}% t-interval over seeds of the paired differences (variant minus baseline, "
    "same seed, same evaluation images): it contains the run-to-run variation of training, which is what "
    "changes when you train again, so 'pays' means the gain is larger than retraining noise. The per-image "
    "bootstrap keeps the trained models fixed and resamples only the evaluation images; it is narrower and "
    "answers a smaller question (do these particular models differ on images like these), so it is shown "
    "but not used for verdicts, except with a single seed, where no t-interval exists (said on that line)."
)


def _image_scores(result: dict[str, Any]) -> dict[str, float]:
    """Per-image mIoU: the mean of the image's per-class IoUs over classes in its prediction or ground truth."""
    out = {}
    for item in result.get("per_image", []):
        values = [v for v in item["per_class_iou"] if v is not None and not math.isnan(v)]
        out[str(item["id"])] = float(np.mean(values)) if values else math.nan
    return out


def verdict(iv: Interval) -> str:
    if not iv.defined:
        return "no interval (one image or one seed)"
    if iv.lo > 0:
        return "pays"
    if iv.hi < 0:
        return "does not pay (hurts)"
    return "does not pay (no difference shown: the interval contains 0)"


def _points(iv: Interval | None) -> str:
    if iv is None:
        return "-"
    if not iv.defined:
        return f"{100 * iv.mean:+.1f} [-]"
    return f"{100 * iv.mean:+.1f} [{100 * iv.lo:+.1f}, {100 * iv.hi:+.1f}]"


def summarize(plan: "Plan") -> dict[str, Any]:
    """Every number of the report from the cells' result.json files (missing cells are listed)."""
    study = plan.recipe.study
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in plan.variants}
    missing = []
    for cell in plan.cells:
        if cell.result_path.is_file():
            results[cell.variant][cell.seed] = json.loads(cell.result_path.read_text())
        else:
            missing.append(f"{cell.variant} seed {cell.seed}")
    seconds = {}
    for kind, runs in (("generators", plan.generators), ("productions", plan.productions)):
        for key in runs:
            marker = plan.run_dir / kind / key / "done.json"
            seconds[f"{kind}/{key}"] = json.loads(marker.read_text())["seconds"] if marker.is_file() else None
    own = dict(seconds)
    for key in plan.generators:  # a run continued from a shorter one (a budget ladder) cost both
        donor = key
        while own[f"generators/{key}"] is not None and (donor := shorter_run(plan, donor)):
            seconds[f"generators/{key}"] += own[f"generators/{donor}"] or 0.0
    checks = {key: _layout_check(plan, p) for key, p in plan.productions.items()}
    cell_checks = _cell_checks(plan, results)
    bad = {(f["variant"], f["seed"]) for f in cell_checks["failed"].values()}
    base = results[study.baseline]
    classes = next((r["classes"] for rs in results.values() for r in rs.values()), [])
    rows = []
    for name in plan.variants:
        mine = results[name]
        mious = [mine[s]["miou"] for s in sorted(mine)]
        per_class = np.array([[np.nan if v is None else v for v in mine[s]["per_class_iou"]] for s in sorted(mine)], float)
        refined = {s: r["refine"] for s, r in mine.items() if r.get("refine")}
        row: dict[str, Any] = {
            "variant": name, "overrides": plan.variants[name], "seeds": sorted(mine),
            "miou": {str(s): mine[s]["miou"] for s in sorted(mine)},
            "miou_mean": float(np.mean(mious)) if mious else None,
            "miou_std": float(np.std(mious, ddof=1)) if len(mious) > 1 else (0.0 if mious else None),
            "per_class_iou_mean": [None if not np.isfinite(c).any() else float(np.nanmean(c)) for c in per_class.T],
            "steps": sorted({mine[s]["steps"] for s in mine}),
            "samples": {src: float(np.mean([mine[s]["source_counts"].get(src, 0) for s in mine])) if mine else 0
                        for src in ("real", "synthetic")},
            "refine_steps": sorted({r["steps"] for r in refined.values()}),
            # training-loop seconds (no start-up, no evaluation), comparable across in-process and worker runs
            "segment_seconds": float(np.mean([mine[s]["train_seconds"] or mine[s]["wall_seconds"] for s in mine]))
            if mine else None,
        }
        shared = [f"productions/{k}" for k, p in plan.productions.items() if name in p["used_by"]]
        shared += [f"generators/{k}" for k, g in plan.generators.items() if name in g["used_by"]]
        row["shared_runs"] = shared
        row["generation_seconds"] = sum(seconds[k] or 0.0 for k in shared)
        if refined:  # refinement reads real samples too: refine steps x its batch
            row["samples"]["real"] += float(np.mean([r["steps"] * r["batch_size"] for r in refined.values()]))
            row["refine"] = {"batch_size": sorted({r["batch_size"] for r in refined.values()}),
                             "miou_before_mean": float(np.mean([r["miou_before"] for r in refined.values()])),
                             "gain": t_interval([mine[s]["miou"] - r["miou_before"] for s, r in sorted(refined.items())],
                                                study.confidence)}
        if name != study.baseline:
            paired = [s for s in sorted(mine) if s in base]
            row["paired_seeds"] = paired
            if paired:
                diffs = [mine[s]["miou"] - base[s]["miou"] for s in paired]
                row["differences"] = {str(s): d for s, d in zip(paired, diffs)}
                row["t_interval"] = t_interval(diffs, study.confidence)
                row["bootstrap"] = _bootstrap([mine[s] for s in paired], [base[s] for s in paired], study)
                pc = np.array([[np.nan if v is None else v for v in mine[s]["per_class_iou"]] for s in paired], float)
                pb = np.array([[np.nan if v is None else v for v in base[s]["per_class_iou"]] for s in paired], float)
                with np.errstate(all="ignore"):
                    row["per_class_difference"] = [None if math.isnan(v) else float(v)
                                                   for v in np.nanmean(pc - pb, axis=0)] if np.isfinite(pc - pb).any() \
                        else [None] * len(classes)
                # per class, over the seeds where both cells score it (a class absent from the val split has no IoU)
                row["per_class_t_interval"] = [
                    t_interval(d[np.isfinite(d)], study.confidence) if np.isfinite(d).any() else None
                    for d in (pc - pb).T]
                use = row["t_interval"] if row["t_interval"].defined else row["bootstrap"]
                row["verdict_interval"] = "t over seeds" if use is row["t_interval"] else "paired bootstrap over images"
                row["verdict"] = verdict(use) if use is not None else "no interval"
                row["verdict_line"] = f"{name}: {_points(use)} mIoU: {row['verdict']}" + (
                    "" if use is row["t_interval"] else " (one seed: per-image bootstrap interval)")
                warnings = [w for k in plan.productions if name in plan.productions[k]["used_by"]
                            for w in (checks[k] or {}).get("warnings", [])]
                flagged = sum(not w.startswith(NEAR_COPIES) for w in warnings)
                if flagged:
                    row["verdict_line"] += f"; its layouts lose, merge or misplace {flagged} classes (see 'Produced layouts vs real')"
                if len(warnings) > flagged:
                    row["verdict_line"] += "; its layouts are near copies of each other"
                row["verdict_line"] += _failed_cells_note(name, study.baseline, paired, bad)
        rows.append(row)
    for row in rows:  # refined vs the same segmenter trained as many steps more without refining
        row["controls"] = [_against(row["variant"], other, results, study, bad)
                           for other in plan.controls.get(row["variant"], [])]
    # every pair of variants, the later one in the file minus the earlier one (which of two recipes to keep)
    others = [name for name in plan.variants if name != study.baseline]
    between = [_against(later, earlier, results, study, bad) | {"variant": later}
               for i, earlier in enumerate(others) for later in others[i + 1:]]
    machines = [json.loads(m) for m in sorted({json.dumps(r["machine"], sort_keys=True) for rs in results.values()
                                               for r in rs.values() if r.get("machine")})]
    # cells made before label maps were resized with pixel centres aligned recorded no filters
    label_filters = sorted({(r.get("resize_filters") or {}).get("labels", "nearest")
                            for rs in results.values() for r in rs.values()})
    versions = Counter(version_label(r["code_version"]) for rs in results.values() for r in rs.values()
                       if r.get("code_version"))
    unknown = sum(1 for rs in results.values() for r in rs.values() if not r.get("code_version"))
    return {"rows": rows, "between": between, "classes": classes, "missing": missing, "run_seconds": seconds,
            "cell_checks": cell_checks, "code_versions": dict(sorted(versions.items())), "code_unknown": unknown,
            "code_warning": mixed_code_warning(versions) if len(versions) > 1 else None,
            "code_note": unknown_code_note(unknown, sum(versions.values())) if unknown else None,
            "machines": machines, "machines_warning": mixed_machines_warning(machines) if len(machines) > 1 else None,
            "label_filters": label_filters,
            "labels_warning": mixed_labels_warning(label_filters) if len(label_filters) > 1 else None,
            "confidence": study.confidence, "baseline": study.baseline,
            "layout_checks": {k: c for k, c in checks.items() if c is not None}}


def _layout_check(plan: "Plan", production: dict[str, Any]) -> dict[str, Any] | None:
    """A finished production's layout check; made here for productions from before it existed."""
    shards = Path(production["shards"])
    check = read_layout_check(shards)
    if check is None and (shards / "manifest.json").is_file():
        check = check_layouts(plan.resolved[production["used_by"][0]], shards, manifest_classes(read_manifest(shards)))
    return check


def _cell_checks(plan: "Plan", results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Each finished cell against what it recorded when it finished: `{"failed": {cell id: {variant,
    seed, problems, line}}, "checked", "unverifiable" (result.json from before its checksum), "note"}`."""
    failed, checked, unverifiable = {}, 0, 0
    for cell in plan.cells:
        result = results[cell.variant].get(cell.seed)
        if result is None:
            continue
        problems, verifiable = verify_cell(cell, result)
        checked += 1
        unverifiable += not verifiable
        if problems:
            failed[cell_id(cell)] = {"variant": cell.variant, "seed": cell.seed, "problems": problems,
                                     "line": f"**Warning: {cell_id(cell)} ({cell.variant} seed {cell.seed}) does not "
                                             f"match what it recorded when it finished**: {'; '.join(problems)}. "
                                             "What it reports can no longer be traced to its training: delete "
                                             "the cell's folder and rerun it."}
    note = (f"{unverifiable} of {checked} cells finished before result.json recorded its own checksum: their "
            "results are not verifiable (their checkpoints are checked)." if unverifiable else None)
    return {"failed": failed, "checked": checked, "unverifiable": unverifiable, "note": note}


def _failed_cells_note(name: str, control: str, paired: list[int], bad: set[tuple[str, int]]) -> str:
    """`; N of the cells it compares fail their checks (...)` for a verdict line, or ""."""
    failing = [f"{v} seed {s}" for s in paired for v in (name, control) if (v, s) in bad]
    if not failing:
        return ""
    many = len(failing) > 1
    return (f"; {len(failing)} of the cells it compares {'do' if many else 'does'} not match what "
            f"{'they' if many else 'it'} recorded ({', '.join(failing)}): see 'Checks of the cells'")


def _against(name: str, control: str, results: dict[str, dict[int, dict[str, Any]]], study,
             bad: set[tuple[str, int]] = frozenset()) -> dict[str, Any]:
    """Paired difference `name` minus `control` by seed (t over seeds, per-image bootstrap) and a verdict."""
    mine, theirs = results[name], results[control]
    paired = [s for s in sorted(mine) if s in theirs]
    out: dict[str, Any] = {"control": control, "paired_seeds": paired}
    if paired:
        out["t_interval"] = t_interval([mine[s]["miou"] - theirs[s]["miou"] for s in paired], study.confidence)
        out["bootstrap"] = _bootstrap([mine[s] for s in paired], [theirs[s] for s in paired], study)
        use = out["t_interval"] if out["t_interval"].defined else out["bootstrap"]
        out["verdict"] = verdict(use) if use is not None else "no interval"
        out["verdict_line"] = f"{name} vs {control}: {_points(use)} mIoU: {out['verdict']}" + (
            "" if use is out["t_interval"] else " (one seed: per-image bootstrap interval)") + _failed_cells_note(
            name, control, paired, bad)
    return out


def _bootstrap(mine: list[dict[str, Any]], base: list[dict[str, Any]], study) -> Interval | None:
    a_scores, b_scores = [_image_scores(r) for r in mine], [_image_scores(r) for r in base]
    ids = sorted(b_scores[0]) if b_scores and b_scores[0] else []
    if not ids or any(set(s) != set(ids) for s in a_scores + b_scores):
        return None  # not the same evaluation images: no paired bootstrap
    a = np.array([[s[i] for i in ids] for s in a_scores])
    b = np.array([[s[i] for i in ids] for s in b_scores])
    try:
        return paired_bootstrap(a, b, n_boot=study.bootstrap, seed=0, confidence=study.confidence)
    except ValueError:
        return None


def _plots(summary: dict[str, Any], out: Path) -> dict[str, str]:
    plt = pyplot()
    rows = [r for r in summary["rows"] if r["miou"]]
    pictures = {}
    if rows:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.5))
        for x, row in enumerate(rows):
            values = [100 * v for v in row["miou"].values()]
            ax.scatter([x] * len(values), values, color="0.6", s=14, zorder=2)
            ax.errorbar([x], [100 * row["miou_mean"]], yerr=[100 * row["miou_std"]], fmt="o", color="C0",
                        capsize=4, zorder=3)
        ax.set_xticks(range(len(rows)), [r["variant"] for r in rows], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("val mIoU (%)")
        ax.set_title("mIoU per variant: seeds (grey), mean +- std (blue)")
        fig.tight_layout()
        fig.savefig(out / "miou.png", dpi=120)
        plt.close(fig)
        pictures["mIoU per variant"] = "miou.png"
    compared = [r for r in rows if r.get("differences")]
    if compared:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(compared) + 2), 3.5))
        for x, row in enumerate(compared):
            diffs = [100 * d for d in row["differences"].values()]
            ax.scatter([x - 0.1] * len(diffs), diffs, color="0.5", s=14, zorder=2)
            for iv, dx, colour, label in ((row["t_interval"], -0.1, "C0", "t over seeds"),
                                           (row["bootstrap"], 0.1, "C1", "bootstrap over images")):
                if iv is not None and iv.defined:
                    ax.errorbar([x + dx], [100 * iv.mean], yerr=[[100 * (iv.mean - iv.lo)], [100 * (iv.hi - iv.mean)]],
                                fmt="o", color=colour, capsize=4, label=label if x == 0 else None)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(compared)), [r["variant"] for r in compared], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("mIoU difference to baseline (points)")
        ax.set_title(f"paired differences, {round(100 * summary['confidence'])}% intervals")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "differences.png", dpi=120)
        plt.close(fig)
        pictures["Paired differences to the baseline"] = "differences.png"
        names = summary["classes"]
        fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(names) * max(1, len(compared)) / 2 + 3), 3.8))
        width = 0.8 / len(compared)
        for k, row in enumerate(compared):
            values = [0.0 if v is None else 100 * v for v in row["per_class_difference"]]
            ax.bar(np.arange(len(names)) + (k - (len(compared) - 1) / 2) * width, values, width, label=row["variant"])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("IoU difference (points)")
        ax.set_title("per-class IoU difference to the baseline (mean over seeds)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "per_class_difference.png", dpi=120)
        plt.close(fig)
        pictures["Per-class difference"] = "per_class_difference.png"
    return pictures


def _plain(value: Any) -> Any:
    """Intervals (at any depth) as dicts, for report.json."""
    if isinstance(value, Interval):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _fmt(value: float | None, scale: float = 100.0, digits: int = 1) -> str:
    return "-" if value is None else f"{scale * value:.{digits}f}"


def _per_class_lines(summary: dict[str, Any]) -> list[str]:
    """One row per class: the baseline's IoU, each variant's paired difference with its t-interval over seeds."""
    base = next(r for r in summary["rows"] if r["variant"] == summary["baseline"])
    compared = [r for r in summary["rows"] if r.get("per_class_t_interval")]
    if not compared or not base["per_class_iou_mean"]:
        return []
    conf = round(100 * summary["confidence"])
    lines = ["## Per-class IoU", "",
             f"The baseline's IoU per class (mean over seeds) and each variant's difference to it in IoU points "
             f"[{conf}% t over seeds, paired by seed]; '-' where the class has no IoU (absent from the evaluation "
             "images). A class-level interval is one of many read at once: a hint, not a verdict.", "",
             f"| class | {base['variant']} | " + " | ".join(r["variant"] for r in compared) + " |",
             "| --- | --- |" + " --- |" * len(compared)]
    for c, name in enumerate(summary["classes"]):
        cells = [_points(r["per_class_t_interval"][c]) for r in compared]
        lines.append(f"| {name} | {_fmt(base['per_class_iou_mean'][c])} | " + " | ".join(cells) + " |")
    return lines + [""]


def _between_lines(summary: dict[str, Any]) -> list[str]:
    """Each pair of variants, paired by seed: which of two synthetic recipes to keep."""
    pairs = [p for p in summary["between"] if "t_interval" in p]
    if not pairs:
        return []
    conf = round(100 * summary["confidence"])
    lines = ["## Between variants", "",
             "Each variant minus each variant listed before it, paired by seed like the verdicts (the same seed, "
             "the same evaluation images). These are further comparisons read beside the verdicts: with many pairs "
             "one interval may leave 0 by chance, so a choice between recipes deserves a question declared before "
             "the study runs.", "",
             f"| variant | minus | seeds | difference [{conf}% t over seeds] | difference [{conf}% bootstrap over images] |",
             "| --- | --- | --- | --- | --- |"]
    for p in pairs:
        lines.append(f"| {p['variant']} | {p['control']} | {len(p['paired_seeds'])} | {_points(p['t_interval'])} | "
                     f"{_points(p['bootstrap'])} |")
    return lines + [""]


def _refine_lines(plan: "Plan", summary: dict[str, Any]) -> list[str]:
    """The SegGAN section: per refine variant its steps, the refinement's own gain, its control."""
    rows = [r for r in summary["rows"] if r["variant"] in plan.controls]
    if not rows:
        return []
    lines = ["## SegGAN refinement", "",
             "Refine variants train the segmenter, then fine-tune it with SegGAN's loss through the frozen image "
             "stage (`synthdata refine`); the refined segmenter is the cell's result. The fair control is the same "
             "segmenter trained as many steps more without refinement: a variant with `seg.steps` raised by "
             "`refine.steps` (and the same other seg.* keys and synthetic data).", ""]
    for row in rows:
        recipe = plan.resolved[row["variant"]]
        seg_steps, steps = recipe.seg.steps, recipe.refine.steps
        line = (f"- {row['variant']}: segmenter {seg_steps} steps, then {steps} SegGAN steps (batch "
                f"{recipe.refine.batch_size}, lambda_C {recipe.refine.lambda_content:g}, lambda_A "
                f"{recipe.refine.lambda_adv:g})")
        if row.get("refine"):
            line += (f"; mIoU {_fmt(row['refine']['miou_before_mean'])} before refinement, {_fmt(row['miou_mean'])} "
                     f"after ({_points(row['refine']['gain'])} by refining)")
        for c in row["controls"]:
            line += f"; vs {c['control']} ({seg_steps + steps} steps, no refinement): " + (
                f"{_points(c.get('t_interval'))}: {c['verdict']}" if "verdict" in c else "not run yet")
        if not row["controls"]:
            line += (f"; no control in this study: add a variant with `seg.steps: {seg_steps + steps}` and this "
                     "variant's other seg.* keys to compare at equal steps")
        lines.append(line + ".")
    return lines + [""]


def _layout_check_lines(plan: "Plan", summary: dict[str, Any]) -> list[str]:
    """Each production's layouts against the real training layouts (`metrics.layout_check`)."""
    checks = summary["layout_checks"]
    if not checks:
        return []
    lines = ["## Produced layouts vs real", "",
             "The first few hundred layouts of each production against as many real training layouts: objects "
             "(connected components) and classes per layout, the Jensen-Shannon divergence of class pixel "
             "frequencies, and each class that produced layouts hold less than half as often as real ones, or in less "
             "than half as many objects (a collapsed layout generator; more objects, which copy-paste adds on purpose, "
             "are never flagged); and whether produced layouts are near copies of each other (two differ in less than "
             "half as many pixels as two real ones).",
             "", "| production | used by | objects per layout, real / produced | classes per layout, real / produced | "
             "JS | flags: near copies, classes lost, merged or misplaced |", "| --- | --- | --- | --- | --- | --- |"]
    for key, check in checks.items():
        used_by = ", ".join(plan.productions[key]["used_by"])
        if "skipped" in check:
            lines.append(f"| {key} | {used_by} | - | - | - | skipped: {check['skipped']} |")
            continue
        s = check["summary"]
        lines.append(f"| {key} | {used_by} | {s['components_per_image_real']:.1f} / {s['components_per_image_fake']:.1f} | "
                     f"{s['classes_per_image_real']:.1f} / {s['classes_per_image_fake']:.1f} | "
                     f"{s['js_pixel_frequency']:.3f} | {'; '.join(check['warnings']) or 'none'} |")
    return lines + [""]


def mixed_machines_warning(machines: list[dict[str, str]]) -> str:
    """One line for a study whose cells ran on different machines (a run dir resumed elsewhere)."""
    names = "; ".join(f"{m.get('cpu')} ({m.get('cpu_capability')}, {m.get('device')})" for m in machines)
    return (f"**Warning: the cells ran on {len(machines)} machines** ({names}). The same seed trains another "
            "segmenter on another CPU (kernels round differently), so cells paired by seed across machines are "
            "not pairs: rerun the study's cells on one machine (delete the other machine's cell folders).")


def mixed_code_warning(versions: Counter) -> str:
    """One line for a study whose cells were made by different versions of synthdata."""
    names = "; ".join(f"{label}: {count} cells" for label, count in sorted(versions.items()))
    return (f"**Warning: the cells were made by {len(versions)} code versions** ({names}). A change of code can "
            "change what the same seed trains, so cells paired by seed across versions may differ by the code as "
            "well as by the data: rerun the cells of the other versions (delete their folders) under one version.")


def unknown_code_note(unknown: int, known: int) -> str:
    """One line for cells finished before cells recorded the code version that made them."""
    return (f"{unknown} of {unknown + known} cells finished before cells recorded the code version that made them: "
            "which code made them is unknown" + (" (not counted in the comparison of code versions)." if known else "."))


def _check_lines(summary: dict[str, Any]) -> list[str]:
    """The section on what the cells recorded: per cell what does not match, and what cannot be told."""
    checks = summary["cell_checks"]
    if not checks["checked"]:
        return []
    lines = ["## Checks of the cells", ""]
    lines += [f"- {f['line']}" for f in checks["failed"].values()]
    fine, sealed = checks["checked"] - len(checks["failed"]), checks["checked"] - checks["unverifiable"]
    lines.append(f"- {fine} of {checks['checked']} cells match what they recorded when they finished (each "
                 f"checkpoint against its recorded sha256; result.json against its own checksum in {sealed} cells).")
    lines += [f"- {note}" for note in (checks["note"], summary["code_note"]) if note]
    versions = summary["code_versions"]
    if versions:
        lines.append("- Code versions: " + "; ".join(f"{label} ({count} cells)" for label, count in versions.items()) + ".")
    return lines + [""]


def mixed_labels_warning(filters: list[str]) -> str:
    """One line for a study whose cells saw label maps resized by different filters (a run dir
    resumed across the fix that aligned them with their images)."""
    return (f"**Warning: the cells' label maps were resized with {len(filters)} filters** ({', '.join(filters)}). "
            "`nearest` shifted them by about half a pixel against their images (docs/studies.md, "
            "'Label maps were half a pixel off their images'), so such cells are not pairs: delete the "
            "`nearest` cells' folders and rerun them.")


def write_study_report(plan: "Plan") -> Path:
    """RUN_DIR/study/report.md, report.json and the PNGs; returns the Markdown path."""
    out = plan.study_dir
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(plan)
    for line in [f["line"] for f in summary["cell_checks"]["failed"].values()] + [summary["cell_checks"]["note"]]:
        if line:
            print(f"study report: {line.replace('**', '')}", file=sys.stderr)
    pictures = _plots(summary, out)
    recipe, conf = plan.recipe, round(100 * summary["confidence"])
    seg = recipe.seg
    subset = recipe.data.subset
    lines = [f"# Study: {recipe.name}, {len(plan.variants) - 1} variants vs {summary['baseline']}, "
             f"{len(plan.seeds)} seeds", "",
             f"Segmenter {seg.model.arch}-{seg.model.encoder} from {seg.model.encoder_weights or 'random init'}, "
             f"batch {seg.batch_size}, lr {seg.lr}, {seg.schedule} schedule, the same augmentation and evaluation "
             f"({recipe.data.val_split} split at {recipe.eval.height or recipe.data.height}x"
             f"{recipe.eval.width or recipe.data.width}) for every cell; seeds {plan.seeds}. "
             f"Labelled training data: {recipe.data.reader} {recipe.data.train_split}"
             + (f", subset `{subset}` (every stage, generators included, sees only it)" if subset is not None else "")
             + ".", "",
             "## Verdicts", ""]
    lines += [f"- {r['verdict_line']}" for r in summary["rows"] if "verdict_line" in r]
    lines += [f"- {c['verdict_line']}" for r in summary["rows"] for c in r["controls"] if "verdict_line" in c]
    lines += [f"- {summary[w]}" for w in ("code_warning", "machines_warning", "labels_warning") if summary[w]]
    lines += [""] + _check_lines(summary)
    lines += [INTERVAL_RULE.format(conf=conf), "",
              "## Table", "",
              f"| variant | seeds | mIoU mean +- std | difference [{conf}% t over seeds] | "
              f"difference [{conf}% bootstrap over images] | steps | refine steps | real samples | "
              "synthetic samples | train s / seed | generation s (shared) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary["rows"]:
        lines.append(
            f"| {r['variant']} | {len(r['seeds'])} | {_fmt(r['miou_mean'])} +- {_fmt(r['miou_std'])} | "
            f"{_points(r.get('t_interval'))} | {_points(r.get('bootstrap'))} | "
            f"{', '.join(map(str, r['steps'])) or '-'} | {', '.join(map(str, r['refine_steps'])) or '-'} | "
            f"{r['samples']['real']:.0f} | {r['samples']['synthetic']:.0f} | "
            f"{_fmt(r['segment_seconds'], 1, 0)} | {r['generation_seconds']:.0f} |")
    lines += ["", "Differences are mIoU points (variant minus baseline, paired by seed); the bootstrap is over "
              "per-image mIoU (each image's mean IoU over the classes in its prediction or ground truth). "
              "Read 'equal steps' across rows with the same steps; 'equal real samples' from the real-samples "
              "column (a variant that spends part of each batch on synthetic data sees fewer real samples; "
              "SegGAN refinement adds its steps x its batch). Steps are the segmenter's; refine steps come after them.",
              ""]
    lines += _per_class_lines(summary)
    lines += _between_lines(summary)
    lines += _refine_lines(plan, summary)
    if plan.generators or plan.productions:
        lines += ["## Shared generator and production runs", "", "| run | used by | seconds |", "| --- | --- | --- |"]
        for kind, runs in (("generators", plan.generators), ("productions", plan.productions)):
            for key, run in runs.items():
                s = summary["run_seconds"].get(f"{kind}/{key}")
                donor = shorter_run(plan, key) if kind == "generators" else None
                continued = f" (with generators/{donor}, which it continued)" if donor and s is not None else ""
                lines.append(f"| {kind}/{key} | {', '.join(run['used_by'])} | {'-' if s is None else f'{s:.0f}'}{continued} |")
        lines.append("")
    lines += _layout_check_lines(plan, summary)
    if summary["missing"]:
        lines += ["## Missing cells", "", "Not finished (failed or not run yet): " + ", ".join(summary["missing"]), ""]
    lines += ["## Variants", ""] + [f"- {name}: `{json.dumps(o)}`" for name, o in plan.variants.items()] + [""]
    for caption, name in pictures.items():
        lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    data = {"title": lines[0][2:], "summary": summary, "interval_rule": INTERVAL_RULE.format(conf=conf),
            "seeds": plan.seeds, "pictures": pictures}
    write_json_atomic(out / "report.json", json_safe(_plain(data)), allow_nan=False)
    return out / "report.md"
