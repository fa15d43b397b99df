"""A study's cells (variant x seed): where they live, their fingerprints (paths inside the run dir
relative to it, so a moved run dir resumes), and the result.json written from a segment run's
report or, for refine variants, from the refined segmenter's report beside the scores of the
segmenter it refined (`segment.json`, or the result of the cell that trained it), with the code
version that made it and checksums of itself and its checkpoint (`verify_cell`); atomic JSON markers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from synthdata.core.atomic import write_json_atomic
from synthdata.core.code_version import code_version
from synthdata.core.recipe import Recipe
from synthdata.core.result_keys import result_tree
from synthdata.core.run_dir import remove_inside
from synthdata.data.shards import sha256_file

# a path inside the study's run dir, as fingerprints hold it (the run dir may move)
RUN_DIR_TOKEN = "$RUN_DIR"


def digest(tree: Any) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Cell:
    variant: str
    seed: int
    run_dir: Path
    overrides: dict[str, Any]
    production: str | None  # production key, None for real-only cells
    # refine variants: {"overrides": refine.* keys, "generator": image stage checkpoint, "run": generator key
    # or None, "segmenter_cell": the cell whose segmenter it refines, None: its own segment job}
    refine: dict[str, Any] | None = None

    @property
    def study_run_dir(self) -> Path:
        """The study's run dir (cells live in RUN_DIR/cells/VARIANT/seed-S)."""
        return self.run_dir.parents[2]

    @property
    def result_path(self) -> Path:
        return self.run_dir / "result.json"

    @property
    def segment_path(self) -> Path:
        """Refine cells: the segment job's result (before refinement)."""
        return self.run_dir / "segment.json"

    @property
    def segmenter_cell(self) -> Cell | None:
        """Refine cells: the cell whose segmenter they refine (None: their own segment job's)."""
        return (self.refine or {}).get("segmenter_cell")

    @property
    def segmenter_dir(self) -> Path:
        """Refine cells: the run dir of the segmenter they refine."""
        return self.segmenter_cell.run_dir if self.segmenter_cell is not None else self.run_dir

    @property
    def before_path(self) -> Path:
        """Refine cells: the scores of the segmenter they refine."""
        return self.segmenter_cell.result_path if self.segmenter_cell is not None else self.segment_path


def slug(name: str) -> str:
    """A variant's folder name under RUN_DIR/cells: its letters, digits and `_.+-`, never `.` or
    `..` (a variant named `..` wrote its cells beside `cells/`) nor a hidden name."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-.") or "variant"


def cell_id(cell: Cell) -> str:
    return f"cells/{slug(cell.variant)}/seed-{cell.seed}"


def done_marker(path: Path, info: dict[str, Any]) -> Callable[[float], None]:
    def done(seconds: float) -> None:
        write_json_atomic(path, {**info, "seconds": round(seconds, 2)}, allow_nan=False)
    return done


# Recipe sections that only generators, production and refinement read. A real-only cell does not
# depend on them, so a study that adds variants with other generator settings reuses its baseline.
_GENERATOR_SECTIONS = ("stages", "train", "produce", "refine", "translate", "export", "demo")


def in_run_dir(cell: Cell, value: Any) -> Any:
    """`value` with a path inside the study's run dir as `$RUN_DIR/relative/path` (others unchanged)."""
    if not isinstance(value, str):
        return value
    try:
        inside = Path(value).relative_to(cell.study_run_dir)
    except ValueError:
        return value
    return f"{RUN_DIR_TOKEN}/{inside.as_posix()}"


def _cell_tree(cell: Cell, recipe: Recipe, *, segmenter_only: bool = False, before_unlisted: bool = False,
               synthetic: Any = None) -> dict[str, Any]:
    """The cell's recipe at its seed, `seg.synthetic` as `synthetic` (default: relative to the run
    dir where inside it); `segmenter_only`: less the generator sections."""
    tree = result_tree(dataclasses.replace(recipe, seed=cell.seed), before_unlisted=before_unlisted)
    tree["study"] = None
    tree["seg"]["synthetic"] = synthetic if synthetic is not None else in_run_dir(cell, cell.overrides.get("seg.synthetic"))
    if segmenter_only:
        # online copy-paste reads the paste options and the bank's settings during segmenter training
        online = {"produce": {k: v for k, v in tree["produce"].items() if k.startswith("copy_paste_")},
                  "composite": tree["stages"]["image"]["composite"]} if recipe.seg.online_copy_paste else None
        tree.update({section: None for section in _GENERATOR_SECTIONS})
        if online is not None:
            tree["online_copy_paste"] = online
    return tree


def _fingerprints(cell: Cell, recipe: Recipe, made_with: dict[str, Any] | None = None) -> tuple[str, ...]:
    """(this cell's fingerprint, the whole recipe's at the cell's seed, the whole recipe's before the
    `ADDED_UNLISTED` keys), then the same with the shards' absolute path, as cells recorded before
    fingerprints held paths relative to the run dir: at the run dir's place now, and at the place
    the cell was made (from `made_with`, the overrides it recorded: the same production, elsewhere).
    The first leaves out the generator sections for cells that train on real data only; the others
    are what such cells, and any cell before those keys, recorded."""
    real_only = cell.production is None and cell.refine is None
    shards = cell.overrides.get("seg.synthetic")
    places: list[Any] = [None]  # None: relative to the run dir
    if isinstance(shards, str) and in_run_dir(cell, shards) != shards:
        places.append(shards)
        then = (made_with or {}).get("seg.synthetic")
        tail = PurePosixPath(in_run_dir(cell, shards)).parts[1:]  # productions/KEY/shards
        if isinstance(then, str) and then != shards and Path(then).parts[-len(tail):] == tail:
            places.append(then)
    out: list[str] = []
    for place in places:
        whole = digest(_cell_tree(cell, recipe, synthetic=place))
        legacy = digest(_cell_tree(cell, recipe, before_unlisted=True, synthetic=place))
        first = digest(_cell_tree(cell, recipe, segmenter_only=True, synthetic=place)) if real_only else whole
        out += [first, whole, legacy]
    return tuple(out)


def segmenter_key(cell: Cell, recipe: Recipe) -> str:
    """What a cell's segment run depends on: cells with equal keys train the same segmenter (the
    seed, seg.*, data and eval alike, and the same production run), so a refine cell can refine
    another cell's segmenter instead of training its own."""
    return digest({"recipe": _cell_tree(cell, recipe, segmenter_only=True), "production": cell.production})


def cell_fingerprint(cell: Cell, recipe: Recipe) -> str:
    """What a finished cell's result depends on."""
    return _fingerprints(cell, recipe)[0]


def matches_fingerprint(cell: Cell, recipe: Recipe, recorded: str | None,
                        made_with: dict[str, Any] | None = None) -> bool:
    """Whether a finished cell's recorded fingerprint is this cell's; real-only cells finished before
    the generator sections were left out recorded the whole recipe's, which still counts, and so
    does one recorded with the absolute path of the cell's shards (`made_with`: the overrides the
    cell recorded, which name where the run dir was when it was made)."""
    return recorded in _fingerprints(cell, recipe, made_with)


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
        "code_version": code_version(),
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
