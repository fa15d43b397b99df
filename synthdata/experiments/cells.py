"""A study's cells (variant x seed, `plan.Cell`; their keys: `study_keys`): the result.json
written from a segment run's report or, for refine variants, from the refined segmenter's report
beside the scores of the segmenter it refined (`segment.json`, or the result of the cell that
trained it), with the schema of its keys, the code version that made it and checksums of itself
and its checkpoint (`verify_cell`); atomic JSON markers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from synthdata.core.atomic import write_json_atomic
from synthdata.core.code_version import code_version
from synthdata.core.recipe import Recipe
from synthdata.core.run_dir import remove_inside
from synthdata.data.shards import sha256_file
from synthdata.experiments.plan import Cell, cell_id
from synthdata.experiments.study_keys import RUN_DIR_TOKEN, SCHEMA, cell_fingerprint, in_run_dir


def done_marker(path: Path, info: dict[str, Any]) -> Callable[[float], None]:
    def done(seconds: float) -> None:
        write_json_atomic(path, {**info, "seconds": round(seconds, 2)}, allow_nan=False)
    return done


# --------------------------------------------------------------------------------------------
# What a finished cell recorded, checked
# --------------------------------------------------------------------------------------------

RESULT_CHECKSUM = "result_sha256"


def result_checksum(result: dict[str, Any]) -> str:
    """sha256 of a result's canonical JSON (sorted keys, no spaces), less its own checksum."""
    tree = json.loads(json.dumps({k: v for k, v in result.items() if k != RESULT_CHECKSUM}, allow_nan=False))
    return hashlib.sha256(json.dumps(tree, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def write_result(path: Path, result: dict[str, Any]) -> None:
    """result.json (or segment.json) with the checksum of what it holds, written in the same file."""
    write_json_atomic(path, {**result, RESULT_CHECKSUM: result_checksum(result)}, allow_nan=False)


def checkpoint_path(cell: Cell, result: dict[str, Any]) -> Path:
    """The checkpoint a result scores: recorded relative to the cell, or (cells from before it was
    recorded) the segmenter's latest.pt, the refined one for refine cells."""
    recorded = result.get("checkpoint")
    if recorded:
        return Path(recorded) if Path(recorded).is_absolute() else cell.run_dir / recorded
    return cell.run_dir / "checkpoints" / ("refine" if result.get("refine") else "segmenter") / "latest.pt"


def verify_cell(cell: Cell, result: dict[str, Any]) -> tuple[list[str], bool]:
    """(what does not match what the cell recorded when it finished, whether its result.json could be
    checked): its checkpoint must exist with the recorded sha256, and result.json must hold the
    checksum written with it (cells from before that checksum: not verifiable)."""
    problems = []
    checkpoint = checkpoint_path(cell, result)
    shown = in_run_dir(cell, str(checkpoint)).replace(f"{RUN_DIR_TOKEN}/", "")
    if result.get("checkpoint_sha256"):
        if not checkpoint.is_file():
            problems.append(f"its checkpoint {shown} is missing")
        elif sha256_file(checkpoint) != result["checkpoint_sha256"]:
            problems.append(f"its checkpoint {shown} is not the one it scored (sha256 differs from the recorded one)")
    recorded = result.get(RESULT_CHECKSUM)
    if recorded is not None and recorded != result_checksum(result):
        problems.append("result.json was changed after it was written (its checksum does not match)")
    return problems, recorded is not None


def scores(cell: Cell, recipe: Recipe, report_dir: Path, seconds: float) -> dict[str, Any]:
    """A cell's result from the report in `report_dir` (a segment or refine run's evaluation)."""
    report = json.loads((report_dir / "report.json").read_text())
    metrics, info = report["metrics"], report["info"]
    per_image = metrics.get("image_iou", {}).get("per_image", [])
    return {
        "variant": cell.variant, "seed": cell.seed, "fingerprint": cell_fingerprint(cell, recipe),
        "miou": metrics["miou"], "pixel_accuracy": metrics.get("pixel_accuracy"),
        "per_class_iou": metrics.get("per_class_iou"), "classes": report["classes"]["classes"],
        "per_image": [{"id": p["id"], "per_class_iou": p["per_class_iou"]} for p in per_image],
        "steps": info.get("steps"), "batch_size": info.get("batch_size"),
        "source_counts": info.get("source_counts", {}), "train_seconds": info.get("train_seconds"),
        "wall_seconds": round(seconds, 2), "checkpoint_sha256": info.get("checkpoint_sha256"),
        "checkpoint": _inside_cell(cell, info.get("checkpoint")),
        "overrides": cell.overrides, "machine": info.get("machine"),
        "resize_filters": info.get("protocol", {}).get("resize_filters"),
        "code_version": code_version(), "schema": SCHEMA,
    }


def _inside_cell(cell: Cell, path: str | None) -> str | None:
    """A path as the cell records it: relative to the cell's folder where inside it."""
    if not path:
        return path
    try:
        return Path(path).relative_to(cell.run_dir).as_posix()
    except ValueError:
        return str(path)


def drop_training_states(run_dir: Path) -> None:
    """A finished cell's trainers never resume (the study skips it; other keys make another cell),
    so only their latest.pt stays: a Unet-resnet18 cell kept 438 MiB (du), now 56. Only the
    trainers' own folders are touched: a symbolic link in the cell (to a folder of photos, say)
    is never followed, and nothing outside the cell is deleted (`remove_inside`)."""
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_symlink() or not checkpoints.is_dir():
        return
    for trainer in sorted(checkpoints.iterdir()):
        if trainer.is_symlink() or not trainer.is_dir():
            continue
        for entry in sorted(trainer.iterdir()):
            # state/, state.previous/, state.tmp/, and previous.pt left by runs before `finish()`
            if entry.name.startswith("state") or entry.name == "previous.pt":
                remove_inside(entry, run_dir)


def segment_result(cell: Cell, recipe: Recipe) -> Callable[[float], None]:
    def done(seconds: float) -> None:
        write_result(cell.segment_path, scores(cell, recipe, cell.run_dir / "report", seconds))
        drop_training_states(cell.run_dir)
    return done


def cell_result(cell: Cell, recipe: Recipe) -> Callable[[float], None]:
    """Writes result.json: the segmenter's scores, or for refine cells the refined segmenter's,
    with the segmenter's steps and samples and the refinement's steps beside them."""
    def done(seconds: float) -> None:
        if cell.refine is None:
            write_result(cell.result_path, scores(cell, recipe, cell.run_dir / "report", seconds))
            drop_training_states(cell.run_dir)
            return
        before = json.loads(cell.before_path.read_text())
        result = scores(cell, recipe, cell.run_dir / "refine" / "after", seconds)
        cfg = recipe.refine
        refine = {"steps": result["steps"], "batch_size": cfg.batch_size, "lambda_content": cfg.lambda_content,
                  "lambda_adv": cfg.lambda_adv, "lr": cfg.lr, "miou_before": before["miou"],
                  "train_seconds": result["train_seconds"], "wall_seconds": result["wall_seconds"]}
        refine["segmenter_cell"] = cell_id(cell.segmenter_cell) if cell.segmenter_cell is not None else None
        result.update({k: before[k] for k in ("steps", "batch_size", "source_counts")}, refine=refine,
                      train_seconds=(before["train_seconds"] or 0) + (refine["train_seconds"] or 0),
                      wall_seconds=round(before["wall_seconds"] + seconds, 2))
        write_result(cell.result_path, result)
        drop_training_states(cell.run_dir)
    return done
