"""Upgrading a study's run dir to the key schema of this code (`study_keys.SCHEMA`), once.

Schema 1 is every run dir made before `study/keys.json` existed. Its runs and cells may carry
keys of older rules, which lookups used to accept on every run:
- generator runs keyed before `core.result_keys.ADDED_UNLISTED` keys existed (their tree without
  those keys), and the production runs made from them;
- finished cells (result.json, and segment.json of refine cells) recording the fingerprint of the
  whole recipe (real-only cells from before they left out the generator sections), of the recipe
  before the `ADDED_UNLISTED` keys, or with the shards' absolute path (at the run dir's place now,
  or at the place the cell was made, which its recorded overrides name).

`migrate` runs before every study and report that can take the study's lock, and upgrades what
the plan holds (a study of a few variants or seeds upgrades those; the rest when a plan names
them): it finds each planned run folder that exists only under its older key and records it in
keys.json's `runs` (no folder is moved: a worker of a killed study may still use it; a production
follows its generator's older key, as the older code did, even where neither folder exists yet),
and rewrites each finished cell's recorded fingerprint of an older form to this schema's (keeping
the old one under `migrated`; a result whose checksum matched is sealed again, one that did not
keeps its mismatch, so the report still flags it). A cell recorded under none of the forms is left
as it is: the study then refuses it as made with another recipe, as before. Results written by this
schema carry `"schema": 2` and are not looked at again.
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
        key = keys["generator"]
        older = generator_key(plan.recipe.seed, result_tree(vr, before_unlisted=True), keys["stages"], plan.subset_ids)
        if key != older and not (plan.run_dir / "generators" / key).exists() and (
                (plan.run_dir / "generators" / older).exists()):
            runs[f"generators/{key}"] = older
        mapped = plan.runs.get(f"generators/{key}", runs.get(f"generators/{key}")) == older
        if keys["production"] is not None:
            production, old = keys["production"], production_key(older, result_tree(vr))
            # the older code keyed a production by its generator's folder: the older key once the generator's was
            if production != old and not (plan.run_dir / "productions" / production).exists() and (
                    mapped or (plan.run_dir / "productions" / old).exists()):
                runs[f"productions/{production}"] = old
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


def migrate_cell_result(path, cell: Cell, recipe: "Recipe") -> bool:
    """Rewrite one finished cell's result file to this schema's fingerprint; whether it did."""
    result = json.loads(path.read_text())
    if result.get("schema", 1) >= SCHEMA:
        return False
    recorded = result.get("fingerprint")
    current = cell_fingerprint(cell, recipe)
    if recorded == current or recorded not in older_fingerprints(cell, recipe, result.get("overrides")):
        return False
    from_schema = result.get("schema", 1)
    sealed = result.get(RESULT_CHECKSUM) is not None and result[RESULT_CHECKSUM] == result_checksum(result)
    result.update(fingerprint=current, schema=SCHEMA, migrated={"from_schema": from_schema, "fingerprint": recorded})
    if sealed:
        result[RESULT_CHECKSUM] = result_checksum(result)
    write_json_atomic(path, result, allow_nan=False)
    return True


def migrate(plan: "Plan", replan: Callable[[dict[str, str]], "Plan"], log: Callable[[str], None] | None = None) -> "Plan":
    """Upgrade what `plan` holds of an older schema (the caller holds the study's lock; nothing to
    do costs a few hashes); returns the plan, made again (`replan(runs)`) where run folders were found."""
    keys = read_keys(plan.run_dir)
    found = {run: folder for run, folder in older_run_folders(plan).items() if keys["runs"].get(run) != folder}
    runs = {**keys["runs"], **found}
    if runs != plan.runs:
        plan = replan(runs)
    cells = sum(migrate_cell_result(path, cell, plan.resolved[cell.variant]) for cell in plan.cells
                for path in (cell.result_path, cell.segment_path) if path.is_file())
    upgrades = list(keys.get("upgrades", []))
    if cells or found:
        upgrades.append({"to_schema": SCHEMA, "cells": cells, "runs": len(found), "at": time.strftime("%Y-%m-%d %H:%M:%S")})
        if log is not None:
            log(f"study: {plan.run_dir} upgraded to key schema {SCHEMA}: {cells} cell result(s) recorded again, "
                f"{len(found)} run folder(s) kept under their older keys")
    if cells or found or keys["schema"] < SCHEMA:
        write_keys(plan.run_dir, runs, upgrades)
    return plan


__all__ = ["migrate", "migrate_cell_result", "older_fingerprints", "older_run_folders"]
