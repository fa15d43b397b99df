"""Every key of a study, computed here: its generator runs, its productions, its cells'
fingerprints and the segmenters cells share. `SCHEMA` names this set of rules; the run dir
records the schema of its keys in `study/keys.json`, with the run folders an upgrade kept under
older keys (`runs`). What a run dir holds of an older schema is upgraded, explicitly, by
`study_migration.migrate` before the study runs; nothing here accepts an older form.

- generator run: the recipe seed, the resolved `data`, `stages`, `train` sections (less the keys no
  result depends on: `core.result_keys`), the stages trained and the subset's ids;
- production run: its generator run's key and the resolved `produce` section;
- cell: its recipe at its seed, `seg.synthetic` as a path inside the run dir relative to it (a
  moved run dir resumes); a real-only cell leaves out the sections only generators read, so a
  study that adds variants reuses its baseline;
- segmenter: what a cell's segment run depends on (cells with equal keys train one segmenter).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthdata.core.atomic import write_json_atomic
from synthdata.core.contract import ConfigError
from synthdata.core.recipe import Recipe
from synthdata.core.result_keys import generator_settings, result_tree

if TYPE_CHECKING:
    from synthdata.experiments.plan import Cell

# 1: run dirs from before keys.json (cells matched any of their historical fingerprints);
# 2: one key per run and cell, the rules above
SCHEMA = 2
KEYS_FILE = Path("study") / "keys.json"
# a path inside the study's run dir, as fingerprints hold it (the run dir may move)
RUN_DIR_TOKEN = "$RUN_DIR"
# Recipe sections that only generators, production and refinement read. A real-only cell does not
# depend on them, so a study that adds variants with other generator settings reuses its baseline.
GENERATOR_SECTIONS = ("stages", "train", "produce", "refine", "translate", "export", "demo")


def digest(tree: Any) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:12]


def generator_key(seed: int, tree: dict[str, Any], stages: list[str], subset_ids: list[str] | None, *,
                  steps: bool = True) -> str:
    """A generator run's key from the variant's result tree (`result_tree`); `steps=False`: its
    budget ladder's key (the same for runs that differ only in `train.steps`)."""
    return digest({"seed": seed, **generator_settings(tree, steps=steps), "trained": stages, "subset_ids": subset_ids})


def production_key(generator: str | None, tree: dict[str, Any]) -> str:
    return digest({"generators": generator, "produce": tree["produce"]})


def in_run_dir(cell: "Cell", value: Any) -> Any:
    """`value` with a path inside the study's run dir as `$RUN_DIR/relative/path` (others unchanged)."""
    if not isinstance(value, str):
        return value
    try:
        inside = Path(value).relative_to(cell.study_run_dir)
    except ValueError:
        return value
    return f"{RUN_DIR_TOKEN}/{inside.as_posix()}"


def cell_tree(cell: "Cell", recipe: Recipe, *, segmenter_only: bool = False, tree: dict[str, Any] | None = None,
              synthetic: Any = None) -> dict[str, Any]:
    """The cell's recipe at its seed (`tree`: that result tree, made otherwise), `seg.synthetic` as
    `synthetic` (default: relative to the run dir where inside it); `segmenter_only`: less the
    generator sections."""
    tree = tree if tree is not None else result_tree(dataclasses.replace(recipe, seed=cell.seed))
    tree["study"] = None
    tree["seg"]["synthetic"] = synthetic if synthetic is not None else in_run_dir(cell, cell.overrides.get("seg.synthetic"))
    if segmenter_only:
        # online copy-paste reads the paste options and the bank's settings during segmenter training
        online = {"produce": {k: v for k, v in tree["produce"].items() if k.startswith("copy_paste_")},
                  "composite": tree["stages"]["image"]["composite"]} if recipe.seg.online_copy_paste else None
        tree.update({section: None for section in GENERATOR_SECTIONS})
        if online is not None:
            tree["online_copy_paste"] = online
    return tree


def is_real_only(cell: "Cell") -> bool:
    return cell.production is None and cell.refine is None


def cell_fingerprint(cell: "Cell", recipe: Recipe) -> str:
    """What a finished cell's result depends on."""
    return digest(cell_tree(cell, recipe, segmenter_only=is_real_only(cell)))


def segmenter_key(cell: "Cell", recipe: Recipe) -> str:
    """What a cell's segment run depends on: cells with equal keys train the same segmenter (the
    seed, seg.*, data and eval alike, and the same production run), so a refine cell can refine
    another cell's segmenter instead of training its own."""
    return digest({"recipe": cell_tree(cell, recipe, segmenter_only=True), "production": cell.production})


def read_keys(run_dir: Path) -> dict[str, Any]:
    """RUN_DIR/study/keys.json: `{"schema": N, "runs": {"generators/KEY": FOLDER, ...}}`; a run dir
    without it is of schema 1 (or new). A schema newer than this code's stops with one line."""
    path = run_dir / KEYS_FILE
    if not path.is_file():
        return {"schema": 1, "runs": {}}
    try:
        keys = json.loads(path.read_text())
        schema = int(keys["schema"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a study keys file ({e}); restore it or use a new run_dir") from e
    if schema > SCHEMA:
        raise ConfigError(f"{path}: schema {schema} was written by a newer synthdata than this one (schema "
                          f"{SCHEMA}); upgrade synthdata to resume this study")
    return {"runs": {}, **keys, "schema": schema}


def write_keys(run_dir: Path, runs: dict[str, str], upgrades: list[dict[str, Any]] | None = None) -> None:
    """keys.json: this schema, the run folders kept under older keys, and the upgrades made so far."""
    keys: dict[str, Any] = {"schema": SCHEMA, "runs": dict(sorted(runs.items()))}
    if upgrades:
        keys["upgrades"] = upgrades
    write_json_atomic(run_dir / KEYS_FILE, keys, allow_nan=False)


def run_folder(runs: dict[str, str], kind: str, key: str) -> str:
    """The folder of run `key` under RUN_DIR/`kind` (generators | productions): its key, or the
    older key an upgrade found it under."""
    return runs.get(f"{kind}/{key}", key)


__all__ = ["GENERATOR_SECTIONS", "KEYS_FILE", "RUN_DIR_TOKEN", "SCHEMA", "cell_fingerprint", "cell_tree", "digest",
           "generator_key", "in_run_dir", "is_real_only", "production_key", "read_keys", "run_folder",
           "segmenter_key", "write_keys"]
