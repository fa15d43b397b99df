"""Upgrading a study's run dir to the key schema of this code (`study_keys.SCHEMA`), once.

Schema 1 is every run dir made before `study/keys.json` existed. Its runs and cells may carry
keys of older rules, which lookups used to accept on every run:
- generator runs keyed before `core.result_keys.ADDED_UNLISTED` keys existed (their tree without
  those keys), and the production runs made from them;
- finished cells (result.json, and segment.json of refine cells) recording the fingerprint of the
  whole recipe (real-only cells from before they left out the generator sections), of the recipe
  before the `ADDED_UNLISTED` keys, or with the shards' absolute path (at the run dir's place now,
  or at the place the cell was made, which its recorded overrides name).

`migrate` finds each planned run folder that exists only under its older key and records it in
keys.json's `runs` (no folder is moved: a worker of a killed study may still use it), rewrites each
finished cell's recorded fingerprint of an older form to this schema's (keeping the old one under
`migrated`; a result whose checksum matched is sealed again, one that did not keeps its mismatch,
so the report still flags it), and writes keys.json. A cell recorded under none of the forms is left
as it is: the study then refuses it as made with another recipe, as before.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Callable

from synthdata.core.atomic import write_json_atomic
from synthdata.core.result_keys import result_tree
from synthdata.experiments.cells import RESULT_CHECKSUM, result_checksum
from synthdata.experiments.plan import Cell
from synthdata.experiments.study_keys import (
    SCHEMA,
    cell_fingerprint,
    cell_tree,
    digest,
    generator_key,
    in_run_dir,
    is_real_only,
    production_key,
    read_keys,
    write_keys,
)

if TYPE_CHECKING:
    from synthdata.core.recipe import Recipe
    from synthdata.experiments.plan import Plan


def older_run_folders(plan: "Plan") -> dict[str, str]:
    """`{"generators/KEY": OLDER_KEY, "productions/KEY": OLDER_KEY}` for planned runs that exist
    only under the key from before the `ADDED_UNLISTED` keys."""
    runs: dict[str, str] = {}
    for name, keys in plan.run_keys.items():
        if keys["generator"] is None:
            continue
        vr = plan.resolved[name]
        older = generator_key(plan.recipe.seed, result_tree(vr, before_unlisted=True), keys["stages"], plan.subset_ids)
        pairs = [("generators", keys["generator"], older)]
        if keys["production"] is not None:
            pairs.append(("productions", keys["production"], production_key(older, result_tree(vr))))
        for kind, key, old in pairs:
            if key != old and not (plan.run_dir / kind / key).exists() and (plan.run_dir / kind / old).exists():
                runs[f"{kind}/{key}"] = old
    return runs


def older_fingerprints(cell: Cell, recipe: "Recipe", made_with: dict[str, Any] | None = None) -> set[str]:
    """The fingerprints schema-1 code recorded for `cell` (this schema's excluded)."""
    shards = cell.overrides.get("seg.synthetic")
    places: list[Any] = [None]  # None: relative to the run dir
    if isinstance(shards, str) and in_run_dir(cell, shards) != shards:
        places.append(shards)
        then = (made_with or {}).get("seg.synthetic")
        tail = PurePosixPath(in_run_dir(cell, shards)).parts[1:]  # productions/KEY/shards
        if isinstance(then, str) and then != shards and PurePosixPath(then).parts[-len(tail):] == tail:
            places.append(then)
    at_seed = dataclasses.replace(recipe, seed=cell.seed)
    found = set()
    for place in places:
        found.add(digest(cell_tree(cell, recipe, synthetic=place)))
        found.add(digest(cell_tree(cell, recipe, synthetic=place, tree=result_tree(at_seed, before_unlisted=True))))
        if is_real_only(cell):
            found.add(digest(cell_tree(cell, recipe, segmenter_only=True, synthetic=place)))
    return found - {cell_fingerprint(cell, recipe)}


def migrate_cell_result(path, cell: Cell, recipe: "Recipe", from_schema: int) -> bool:
    """Rewrite one finished cell's result file to this schema's fingerprint; whether it did."""
    result = json.loads(path.read_text())
    recorded = result.get("fingerprint")
    current = cell_fingerprint(cell, recipe)
    if recorded == current or recorded not in older_fingerprints(cell, recipe, result.get("overrides")):
        return False
    sealed = result.get(RESULT_CHECKSUM) is not None and result[RESULT_CHECKSUM] == result_checksum(result)
    result.update(fingerprint=current, migrated={"from_schema": from_schema, "fingerprint": recorded})
    if sealed:
        result[RESULT_CHECKSUM] = result_checksum(result)
    write_json_atomic(path, result, allow_nan=False)
    return True


def migrate(plan: "Plan", replan: Callable[[dict[str, str]], "Plan"], log: Callable[[str], None] | None = None) -> "Plan":
    """Upgrade `plan.run_dir` to this schema (the caller holds the study's lock); returns the plan
    made again with the run folders found (`replan(runs)`)."""
    before = read_keys(plan.run_dir)
    runs = {**before["runs"], **older_run_folders(plan)}
    if runs != plan.runs:
        plan = replan(runs)
    cells = 0
    for cell in plan.cells:
        for path in (cell.result_path, cell.segment_path):
            if path.is_file():
                cells += migrate_cell_result(path, cell, plan.resolved[cell.variant], before["schema"])
    migrated = None
    if cells or len(runs) > len(before["runs"]):
        migrated = {"from_schema": before["schema"], "cells": cells, "runs": len(runs) - len(before["runs"]),
                    "at": time.strftime("%Y-%m-%d %H:%M:%S")}
        if log is not None:
            log(f"study: {plan.run_dir} upgraded from key schema {before['schema']} to {SCHEMA}: {cells} cell "
                f"result(s) recorded again, {migrated['runs']} run folder(s) kept under their older keys")
    write_keys(plan.run_dir, runs, migrated)
    return plan


__all__ = ["migrate", "migrate_cell_result", "older_fingerprints", "older_run_folders"]
