"""Evaluation reports (report.json + report.md + PNGs) and `synthdata compare REPORT... [out=DIR]`.

`write_report` turns the metrics of `synthdata.metrics.miou` into a JSON file with every number,
a Markdown page a person reads (per-class table, confusion matrix, IoU bars, predictions), and
the PNGs it embeds. `main` compares several reports class by class.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from synthdata.core.atomic import write_json_atomic, write_text_atomic
from synthdata.core.contract import ClassInfo
from synthdata.core.palette import colorize
from synthdata.core.visualize import save_image_grid


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend, imported on first use."""
    import matplotlib  # noqa: PLC0415  (matplotlib is slow to import; only plots need it)

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt  # noqa: PLC0415  (matplotlib is slow to import; only plots need it)

    return plt


def json_safe(value: Any) -> Any:
    """NaN -> null, numpy -> python, so report.json is strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(value: Any, scale: float = 100.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:.1f}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path) -> Path:
    """Row-normalised confusion matrix (rows: ground truth) as a PNG."""
    plt = pyplot()
    m = np.asarray(matrix, dtype=np.float64)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                if norm[i, j] >= 0.01:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=5,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_iou_bars(series: dict[str, list[float | None]], names: list[str], path: Path, title: str) -> Path:
    """Grouped per-class IoU bars, one group per class and one colour per run."""
    plt = pyplot()
    n = max(1, len(series))
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(names) * n + 2), 4))
    x = np.arange(len(names))
    for k, (label, values) in enumerate(series.items()):
        vals = [np.nan if v is None else 100 * v for v in values]
        ax.bar(x + (k - (n - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    if n > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_prediction_grid(examples: list[dict[str, np.ndarray]], classes: ClassInfo, path: Path) -> Path:
    """One row per example: image | ground truth | prediction (palette colours, ignore black)."""
    rows = []
    for ex in examples:
        gt = colorize(ex["layout"], classes.palette, classes.ignore_index)
        pred = colorize(ex["pred"], classes.palette, classes.ignore_index)
        rows.extend([ex["image"], gt, pred])
    save_image_grid(rows, path, 3)
    return Path(path)


def write_report(
    out_dir: str | os.PathLike,
    *,
    title: str,
    metrics: dict[str, Any],
    classes: ClassInfo,
    info: dict[str, Any],
    images: dict[str, str | os.PathLike] | None = None,
) -> tuple[Path, Path]:
    """Write `report.json`, `report.md`, `confusion_matrix.png` and `per_class_iou.png`.

    `metrics`: the dict of `ConfusionMatrix.compute()` (an "examples" entry becomes
    `predictions.png`); `info`: recipe, checkpoint, data sources, protocol, versions...;
    `images`: extra PNGs (caption -> path) to embed, copied into `out_dir` when elsewhere.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(classes.names)
    metrics = dict(metrics)
    examples = metrics.pop("examples", None)
    pictures: dict[str, str] = {}
    if "matrix" in metrics:
        pictures["Confusion matrix"] = plot_confusion(np.array(metrics["matrix"]), names, out / "confusion_matrix.png").name
    if "per_class_iou" in metrics:
        pictures["Per-class IoU"] = plot_iou_bars({title: metrics["per_class_iou"]}, names, out / "per_class_iou.png", title).name
    if examples:
        pictures["Predictions (image | ground truth | prediction)"] = save_prediction_grid(
            examples, classes, out / "predictions.png").name
    for caption, src in (images or {}).items():
        src = Path(src)
        if src.resolve().parent != out.resolve():
            shutil.copyfile(src, out / src.name)
        pictures[caption] = src.name

    report = {"title": title, "metrics": metrics, "classes": classes.to_dict(), "info": info,
              "images": pictures}
    json_path = out / "report.json"
    write_json_atomic(json_path, json_safe(report), allow_nan=False)
    md_path = out / "report.md"
    write_text_atomic(md_path, _markdown(title, metrics, names, info, pictures))
    return json_path, md_path


def _markdown(title: str, metrics: dict[str, Any], names: list[str], info: dict[str, Any], pictures: dict[str, str]) -> str:
    lines = [f"# {title}", ""]
    lines += ["| metric | value (%) |", "| --- | --- |"]
    for key in ("miou", "pixel_accuracy", "mean_class_accuracy", "fw_iou"):
        if key in metrics:
            lines.append(f"| {key} | {_fmt(metrics[key])} |")
    lines.append("")
    if "per_class_iou" in metrics:
        acc = metrics.get("per_class_accuracy") or [None] * len(names)
        lines += ["| class | IoU (%) | accuracy (%) |", "| --- | --- | --- |"]
        lines += [f"| {n} | {_fmt(i)} | {_fmt(a)} |" for n, i, a in zip(names, metrics["per_class_iou"], acc)]
        lines.append("")
    protocol = info.get("protocol")
    if protocol:
        lines += ["## Protocol", ""] + [f"- {k}: {v}" for k, v in protocol.items()] + [""]
    summary = {k: v for k, v in info.items() if k != "protocol" and not isinstance(v, (dict, list))}
    # flat mappings (versions, samples per source, filtered fractions) read well as one line
    flat = {k: v for k, v in info.items() if k != "protocol" and isinstance(v, dict) and v
            and not any(isinstance(x, (dict, list)) for x in v.values())}
    if summary or flat:
        lines += ["## Run", ""] + [f"- {k}: {v}" for k, v in summary.items()]
        lines += [f"- {k}: " + ", ".join(f"{a}={_short(b)}" for a, b in v.items()) for k, v in flat.items()]
        lines.append("")
    for caption, name in pictures.items():
        lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
    lines.append("All numbers, the recipe and versions are in report.json.")
    return "\n".join(lines) + "\n"


def write_metrics_report(
    out_dir: str | os.PathLike,
    *,
    title: str,
    metrics: dict[str, Any],
    info: dict[str, Any],
    classes: ClassInfo | None = None,
    images: dict[str, str | os.PathLike] | None = None,
) -> tuple[Path, Path]:
    """`report.json` + `report.md` for metrics that are not a confusion matrix (FID, KID,
    layout statistics): every top-level scalar in a table, nested values in the JSON only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, str] = {}
    for caption, src in (images or {}).items():
        src = Path(src)
        if src.resolve().parent != out.resolve():
            shutil.copyfile(src, out / src.name)
        pictures[caption] = src.name
    class_dict = classes.to_dict() if classes is not None else {"classes": [], "palette": [], "ignore_index": 255}
    report = {"title": title, "metrics": metrics, "classes": class_dict, "info": info, "images": pictures}
    json_path = out / "report.json"
    write_json_atomic(json_path, json_safe(report), allow_nan=False)
    lines = [f"# {title}", "", "| metric | value |", "| --- | --- |"]
    for key, value in metrics.items():
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            lines.append(f"| {key} | {value:.6g} |")
    lines.append("")
    summary = {k: v for k, v in info.items() if not isinstance(v, (dict, list))}
    if summary:
        lines += ["## Run", ""] + [f"- {k}: {v}" for k, v in summary.items()] + [""]
    for caption, name in pictures.items():
        lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
    lines.append("All numbers are in report.json.")
    md_path = out / "report.md"
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return json_path, md_path


# --------------------------------------------------------------------------------------------
# synthdata compare REPORT... [out=DIR]
# --------------------------------------------------------------------------------------------


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """A report.json (or a folder holding one); a missing or malformed file names the path."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        raise FileNotFoundError(f"report not found: {p}")
    try:
        report = json.loads(p.read_text())
    except ValueError as e:
        raise ValueError(f"{p} is not valid JSON: {e}") from e
    if "metrics" not in report or "classes" not in report:
        raise ValueError(f"{p} is not a synthdata report (no metrics/classes)")
    report["_path"] = str(p)
    return report


def compare_reports(reports: list[dict[str, Any]], out_dir: str | os.PathLike) -> Path:
    """`compare.md` (per-class IoU of every run and the last minus the first) + `compare.png`."""
    names = reports[0]["classes"]["classes"]
    for r in reports[1:]:
        if r["classes"]["classes"] != names:
            raise ValueError(f"{r['_path']} has other classes than {reports[0]['_path']}; cannot compare")
    labels = []
    for r in reports:
        label = r.get("title") or Path(r["_path"]).parent.name
        labels.append(label if label not in labels else f"{label} ({Path(r['_path']).parent.name})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ious = [r["metrics"].get("per_class_iou") or [None] * len(names) for r in reports]
    first, last = ious[0], ious[-1]

    def diff(a: Any, b: Any) -> str:
        return "-" if a is None or b is None else f"{100 * (b - a):+.1f}"

    header = "| class | " + " | ".join(labels) + " | difference |"
    lines = [f"# Comparison of {len(reports)} runs", "", header, "|" + " --- |" * (len(labels) + 2)]
    for c, name in enumerate(names):
        lines.append(f"| {name} | " + " | ".join(_fmt(v[c]) for v in ious) + f" | {diff(first[c], last[c])} |")
    for key in ("miou", "pixel_accuracy", "mean_class_accuracy", "fw_iou"):
        vals = [r["metrics"].get(key) for r in reports]
        lines.append(f"| **{key}** | " + " | ".join(_fmt(v) for v in vals) + f" | {diff(vals[0], vals[-1])} |")
    lines += ["", "IoU in %; difference = last run minus first run.", "",
              "Reports: " + ", ".join(r["_path"] for r in reports), "", "![per-class IoU](compare.png)", ""]
    plot_iou_bars(dict(zip(labels, ious)), names, out / "compare.png", "per-class IoU")
    md = out / "compare.md"
    write_text_atomic(md, "\n".join(lines))
    return md
