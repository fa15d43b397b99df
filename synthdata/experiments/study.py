"""`synthdata study`: is synthetic data worth it for this dataset, and which kind?

A study is the real-only baseline plus named variants, each a set of dotted overrides of the
recipe, trained with `study.seeds` seeds each (cell = variant x seed). Every cell trains the
same segmenter (steps, batch, augmentation, evaluation images) through `synthdata segment`;
only the data differs, unless a variant overrides `seg.*` itself and the report shows it.

Variants (`study.variants=PATH|NAME` or the recipe's `study.variants` mapping):

    variants:
      synthetic 0.5:   {seg.synthetic_ratio: 0.5}
      decay:           {seg.synthetic_ratio: 0.5, seg.synthetic_schedule: decay}
      real layouts:    {seg.synthetic_ratio: 0.5, produce.layouts: real, produce.copy_paste: 2}
      freemask:        {seg.synthetic_ratio: 0.5, seg.synthetic_filter: loss, seg.filter_segmenter: "@baseline"}

Keys: `seg.*` (the segmenter and the mixing), `produce.*` (production), `train.*` and `stages.*`
(the generators), `refine.*` (SegGAN refinement, below). `data.*`, `eval.*`, `seed` and `study.*`
are the study's own and the same for every cell. A variant that mixes synthetic data without
`seg.synthetic=SHARDS` gets the shards of a production run built by the study. Generator runs are keyed by a hash of what decides the
generators (resolved `data`, `stages`, `train`, the recipe seed, the stages trained, the subset's
ids); production runs by the generator key plus the resolved `produce` section. Variants with the
same keys share one run, across every seed (the seeds vary the segmenter only).
`seg.filter_segmenter: "@baseline"` is the baseline's segmenter of the same seed.

SegGAN refinement as a step after training: a variant with `refine.*` keys (`refine.steps: N`,
`refine.lambda_content`, ...) runs, after each cell's segment job, `synthdata refine` on that
segmenter through the frozen image stage (generator + discriminator) of a study generator run
(`refine.generator: PATH` uses a checkpoint instead); the refined segmenter's evaluation is the
cell's result. A refine cell that would train the same segmenter as another cell of its seed (a
variant that only refines: the baseline's) has no segment job and refines that cell's segmenter.
SegGAN's G(S(x)) takes layouts alone: a variant that only refines gets
`stages.image.use_depth: false` (and `arch: spade` instead of composite) added; one that also
mixes study-made synthetic data must set them itself. The fair control, "the same segmenter
trained as many extra steps without", is another variant with `seg.steps` raised by N (the report
pairs them by seed and shows segmenter and refinement steps per variant):

      seggan 200:       {refine.steps: 200}
      200 more steps:   {seg.steps: 1200}   # the study's seg.steps is 1000

Layout of RUN_DIR: `generators/KEY/` (stages), `productions/KEY/shards`, `cells/VARIANT/seed-S/`
(a segment run, and `result.json` once finished; refine cells hold the refine run, and
`segment.json`, the scores of their own segmenter, where they train one:
`synthdata.experiments.cells`), `study/` (recipe, plan, logs, report). Jobs run as subprocesses, `study.workers` at a time with `study.threads` threads
each (one GPU each, round robin, where there are GPUs); `study.workers=1` runs them one after
another in this process, as the demo chains commands (no interpreter start-up per job). A finished cell's result is written
atomically and skipped on a rerun; a killed cell resumes from its last segmenter (or refine)
checkpoint. A running job holds a lock in its folder that its process inherits: a rerun after the
study was killed waits for a worker still running, never starts a second copy. A result records
the code version that made it and checksums of itself and its checkpoint, which the report checks;
fingerprints hold paths inside RUN_DIR relative to it, so a moved run dir resumes. Every key is
computed in `study_keys`; `study/keys.json` records their schema, and a run dir of an older one is
upgraded (`study_migration`) before the study runs. The recipe's
`log_with` (experiment trackers) reaches every job; each cell's segment run is tracked as
VARIANT/seed-S (with `study.variant` and `study.seed` in its config).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from synthdata.core.atomic import write_json_atomic
from synthdata.core.contract import ConfigError, DatasetError
from synthdata.core.folder_lock import LOCK_FILE, folder_lock, try_lock
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import recipe_to_dict
from synthdata.core.result_keys import result_tree
from synthdata.core.run_dir import save_resolved_recipe
from synthdata.core.tracking import check_trackers
from synthdata.data.readers.base import make_reader, refuse_subset_of_shards
from synthdata.data.shards import resolve_urls
from synthdata.experiments.cells import (
    cell_result,
    done_marker,
    drop_training_states,
    segment_result,
)
from synthdata.experiments.cluster import make_executor, require_submitit
from synthdata.experiments.jobs import Job, execute
from synthdata.experiments.plan import Cell, Plan, cell_id, shorter_run, slug
from synthdata.experiments.study_keys import (
    cell_fingerprint,
    generator_key,
    production_key,
    read_keys,
    run_folder,
    segmenter_key,
)
from synthdata.experiments.study_migration import migrate, older_fingerprints
from synthdata.experiments.variants import (
    check_variant_keys,
    read_variants,
    refine_overrides,
    refines,
    stages_needed,
    uses_synthetic,
    variant_recipe,
)
from synthdata.segmentation.training import synthetic_per_step

BASELINE_REF = "@baseline"
# a running job's lock in its folder (a generator run's stages, side by side in one folder: .job-STAGE.lock)
JOB_LOCK = ".job.lock"


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


def _token(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: the value comes back with its type


def _command(module: str, recipe_path: Path, args: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", module, f"recipe={recipe_path}"] + [_token(k, v) for k, v in args.items()]


def study_seeds(recipe: Recipe) -> list[int]:
    """The cells' seeds: `study.seeds` seeds from `recipe.seed` on, or the listed ones."""
    seeds = recipe.study.seeds
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"study.seeds must be >= 1, got {seeds}")
        return [recipe.seed + i for i in range(seeds)]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"study.seeds: a list must hold distinct seeds >= 0, got {seeds}")
    return list(seeds)


# what a variant with seg.online_copy_paste may set beside seg.*: the pastes' options and the bank's
ONLINE_COPY_PASTE_KEYS = ("produce.copy_paste_", "stages.image.composite.")


def make_plan(recipe: Recipe, run_dir: Path, runs: dict[str, str] | None = None) -> Plan:
    """Resolve and check every variant, key the shared runs, and list the jobs. Every error
    (unknown key, missing shards, subset ids) is raised here, before anything trains. `runs`: the
    run folders kept under older keys (default: study/keys.json's)."""
    runs = read_keys(run_dir)["runs"] if runs is None else runs
    study = recipe.study
    seeds = study_seeds(recipe)
    check_trackers(recipe.log_with)  # each job would stop on a missing tracker package: stop here instead
    if study.workers < 1 or study.threads < 1:
        raise ConfigError("study.workers and study.threads must be >= 1")
    if not 0 < study.confidence < 1:
        raise ConfigError(f"study.confidence must be in (0, 1), got {study.confidence}")
    named = read_variants(study.variants)
    if study.only is not None:  # a subset of the file's variants; their cells and keys are unchanged
        unknown = [name for name in study.only if name not in named]
        if unknown:
            raise ConfigError(f"study.only: no variant named {unknown}; the variants are {list(named)}")
        named = {name: overrides for name, overrides in named.items() if name in study.only}
    if study.baseline in named:
        raise ConfigError(f"study variant '{study.baseline}' has the baseline's name (study.baseline)")
    base = recipe_to_dict(recipe)
    base["study"] = recipe_to_dict(Recipe())["study"]  # children need no study section
    baseline = {"seg.synthetic_ratio": 0.0, "seg.synthetic_schedule": "constant", "seg.synthetic": None,
                "seg.synthetic_filter": "none"}
    variants = {study.baseline: baseline, **named}
    train_reader = make_reader(recipe.data, recipe.data.train_split)  # a bad subset stops here
    if len(train_reader) == 0:
        raise DatasetError(f"{recipe.data.reader}: training split '{recipe.data.train_split}' is empty")
    subset_ids = train_reader.subset["ids"] if train_reader.subset else None
    study_dir = run_dir / "study"
    recipe_path = study_dir / "recipe.yaml"
    generators: dict[str, dict[str, Any]] = {}
    productions: dict[str, dict[str, Any]] = {}
    cells: list[Cell] = []
    resolved: dict[str, Recipe] = {}
    run_keys: dict[str, dict[str, Any]] = {}
    for name, overrides in variants.items():
        if name != study.baseline:
            check_variant_keys(name, overrides)
        vr = variant_recipe(base, name, overrides)
        refining = refines(overrides)
        if refining:
            variants[name] = overrides = refine_overrides(name, overrides, vr)
            vr = variant_recipe(base, name, overrides)
        resolved[name] = vr
        production = None
        seg_overrides = {k: v for k, v in overrides.items() if k.startswith("seg.")}
        produces = uses_synthetic(vr) and not vr.seg.synthetic  # the study makes its shards
        trains_image = refining and not vr.refine.generator  # for SegGAN
        if uses_synthetic(vr):
            try:
                synthetic_per_step(vr.seg)
            except ConfigError as e:
                raise ConfigError(f"study variant '{name}': {e}") from e
            if vr.seg.synthetic:
                try:
                    resolve_urls(vr.seg.synthetic)
                except (DatasetError, OSError) as e:
                    raise DatasetError(f"study variant '{name}': seg.synthetic: {e}") from e
        elif any(k.startswith(("produce.",) if trains_image else ("produce.", "train.", "stages.")) for k in overrides
                 if not (vr.seg.online_copy_paste and k.startswith(ONLINE_COPY_PASTE_KEYS))):
            raise ConfigError(f"study variant '{name}': sets generator or production keys but mixes no synthetic "
                              "data (set seg.synthetic_ratio > 0 or seg.synthetic_schedule=pretrain"
                              + ("; a refine variant's train.* and stages.* keys shape its image stage)" if trains_image
                                 else ")"))
        stages = stages_needed(vr, production=produces, refine=refining)
        tree = result_tree(vr)
        gkey = key = None
        if stages:
            try:
                refuse_subset_of_shards(vr.data, "train.shards", vr.train.shards)
            except ConfigError as e:
                raise ConfigError(f"study variant '{name}': {e}") from e
            key = generator_key(recipe.seed, tree, stages, subset_ids)
            gkey = run_folder(runs, "generators", key)
            gen = generators.setdefault(gkey, {"stages": stages, "used_by": [], "overrides": {
                k: v for k, v in overrides.items() if k.startswith(("train.", "stages."))},
                "steps": vr.train.steps, "ladder": None if vr.train.minutes is not None else generator_key(
                    recipe.seed, tree, stages, subset_ids, steps=False)})
            gen["used_by"].append(name)
        run_keys[name] = {"stages": stages, "generator": key, "production": None}
        if produces:
            run_keys[name]["production"] = production_key(key, tree)
            production = run_folder(runs, "productions", run_keys[name]["production"])
            prod = productions.setdefault(production, {
                "generator": gkey, "used_by": [], "shards": str(run_dir / "productions" / production / "shards"),
                "overrides": {k: v for k, v in overrides.items() if k.startswith(("train.", "stages.", "produce."))}})
            prod["used_by"].append(name)
            seg_overrides["seg.synthetic"] = prod["shards"]
        refine = None
        if refining:
            own = vr.refine.generator
            refine = {"overrides": {k: v for k, v in overrides.items() if k.startswith("refine.")},
                      "run": None if own else gkey,
                      "generator": own or str(run_dir / "generators" / str(gkey) / "checkpoints" / "image" / "latest.pt")}
        for seed in seeds:
            cells.append(Cell(name, seed, run_dir / "cells" / slug(name) / f"seed-{seed}",
                              {**seg_overrides, "seed": seed}, production, refine))
    if nameless := [n for n in variants if not re.search(r"[A-Za-z0-9]", n)]:
        raise ConfigError(f"study variant names need a letter or digit (they name the cells' folders): {nameless}")
    if len({slug(n) for n in variants}) != len(variants):
        raise ConfigError(f"study variant names must differ in letters and digits: {list(variants)}")
    for cell in cells:  # "@baseline" references
        for key, value in list(cell.overrides.items()):
            if value == BASELINE_REF:
                if key not in ("seg.filter_segmenter",):
                    raise ConfigError(f"study variant '{cell.variant}': '{key}: {BASELINE_REF}' is supported only "
                                      "for seg.filter_segmenter")
                ref = next(c for c in cells if c.variant == study.baseline and c.seed == cell.seed)
                cell.overrides[key] = str(ref.run_dir / "checkpoints" / "segmenter" / "latest.pt")
    _share_segmenters(cells, resolved)
    plan = Plan(recipe, run_dir, variants, seeds, cells, generators, productions, [], resolved,
                refine_controls(variants, resolved, {c.variant: c.production for c in cells}), run_keys, runs, subset_ids)
    plan.jobs = _jobs(plan, recipe_path, resolved)
    return plan


def _share_segmenters(cells: list[Cell], resolved: dict[str, Recipe]) -> None:
    """A refine cell whose segment run would train the same segmenter as another cell (usually the
    baseline of its seed: a variant that only refines) refines that cell's segmenter instead."""
    trained = {}
    for cell in cells:
        if cell.refine is None:
            trained.setdefault(segmenter_key(cell, resolved[cell.variant]), cell)
    for cell in cells:
        if cell.refine is not None:
            cell.refine = {**cell.refine, "segmenter_cell": trained.get(segmenter_key(cell, resolved[cell.variant]))}


def refine_controls(variants: dict[str, dict[str, Any]], resolved: dict[str, Recipe],
                    production: dict[str, str | None]) -> dict[str, list[str]]:
    """Refine variant -> the variants that train the same segmenter (same seg.* but steps, same
    synthetic data) for as many steps as it and its refinement together, without refining."""
    def seg(name: str) -> dict[str, Any]:
        return {**recipe_to_dict(resolved[name])["seg"], "steps": None}

    out = {}
    for name, overrides in variants.items():
        if refines(overrides):
            steps = resolved[name].seg.steps + resolved[name].refine.steps
            out[name] = [other for other, o in variants.items() if not refines(o)
                         and resolved[other].seg.steps == steps and seg(other) == seg(name)
                         and production[other] == production[name]]
    return out


def _generator_jobs(plan: Plan, gkey: str) -> list[str]:
    return [f"generators/{gkey}/{stage}" for stage in plan.generators[gkey]["stages"]]


def _stage_marker(gdir: Path, stage: str) -> Path:
    """A stage job's done marker; `done.json` (every stage) also marks runs made when a generator
    run was one job."""
    return gdir / "done.json" if (gdir / "done.json").is_file() else gdir / f"done-{stage}.json"


def _stage_done(gdir: Path, stage: str, gen: dict[str, Any]) -> Callable[[float], None]:
    """Marks the stage; once every stage is done, `done.json` records the run (seconds: their sum)."""
    def done(seconds: float) -> None:
        done_marker(gdir / f"done-{stage}.json", {"stage": stage})(seconds)
        markers = [gdir / f"done-{s}.json" for s in gen["stages"]]
        if all(m.is_file() for m in markers):
            total = sum(json.loads(m.read_text())["seconds"] for m in markers)
            done_marker(gdir / "done.json", {"stages": gen["stages"], "used_by": gen["used_by"]})(total)
    return done


def _jobs(plan: Plan, recipe_path: Path, resolved: dict[str, Recipe]) -> list[Job]:
    jobs: list[Job] = []
    run_dir = plan.run_dir
    for gkey, gen in plan.generators.items():
        gdir = run_dir / "generators" / gkey
        donor = shorter_run(plan, gkey)  # a budget ladder: continue the longest shorter run
        extra = {"train.init_from": str(run_dir / "generators" / donor)} if donor else {}
        for stage in gen["stages"]:  # stages train on real data only: side by side when workers allow
            command = _command("synthdata.train", recipe_path,
                               {**gen["overrides"], **extra, "stage": stage, "run_dir": str(gdir)})
            jobs.append(Job(f"generators/{gkey}/{stage}", [command], deps=[f"generators/{donor}/{stage}"] if donor else [],
                            done_file=_stage_marker(gdir, stage), on_done=_stage_done(gdir, stage, gen),
                            lock=gdir / f".job-{stage}.lock"))
    for pkey, prod in plan.productions.items():
        gdir = run_dir / "generators" / prod["generator"]
        pdir = run_dir / "productions" / pkey
        args = {k: v for k, v in prod["overrides"].items()}
        args.update({"run_dir": str(gdir), "produce.out": prod["shards"]})
        jobs.append(Job(f"productions/{pkey}", [_command("synthdata.produce", recipe_path, args)],
                        deps=_generator_jobs(plan, prod["generator"]), done_file=pdir / "done.json",
                        on_done=done_marker(pdir / "done.json", {"generator": prod["generator"], "used_by": prod["used_by"]}),
                        lock=pdir / JOB_LOCK))
    for cell in plan.cells:
        deps = [f"productions/{cell.production}"] if cell.production else []
        for value in cell.overrides.values():
            for other in plan.cells:
                if isinstance(value, str) and value.startswith(str(other.run_dir) + os.sep):
                    deps.append(cell_id(other))
        tracked = {"study_variant": cell.variant} if plan.recipe.log_with else {}  # its run: VARIANT/seed-N
        segment = [_command("synthdata.segment", recipe_path, {**cell.overrides, "run_dir": str(cell.run_dir), **tracked})]
        on_done = cell_result(cell, resolved[cell.variant])
        if cell.refine is None:
            jobs.append(Job(cell_id(cell), segment, deps=deps, done_file=cell.result_path, on_done=on_done,
                            lock=cell.run_dir / JOB_LOCK))
            continue
        # refine cells: the segment job (unless another cell trains the same segmenter), then
        # `synthdata refine` on that segmenter (the cell's result)
        source = cell.segmenter_cell
        if source is None:
            jobs.append(Job(f"{cell_id(cell)}/segment", segment, deps=deps, done_file=cell.segment_path,
                            on_done=segment_result(cell, resolved[cell.variant]), lock=cell.run_dir / JOB_LOCK))
        args = {**cell.overrides, **cell.refine["overrides"], "refine.generator": cell.refine["generator"],
                "refine.segmenter": str(cell.segmenter_dir / "checkpoints" / "segmenter" / "latest.pt"),
                "run_dir": str(cell.run_dir)}
        deps = [cell_id(source) if source is not None else f"{cell_id(cell)}/segment"] + (
            _generator_jobs(plan, cell.refine["run"]) if cell.refine["run"] else [])
        jobs.append(Job(cell_id(cell), [_command("synthdata.refine", recipe_path, args)], deps=deps,
                        done_file=cell.result_path, on_done=on_done, lock=cell.run_dir / JOB_LOCK))
    return jobs


# --------------------------------------------------------------------------------------------
# Running the study (the job runner is synthdata.experiments.jobs)
# --------------------------------------------------------------------------------------------


def run_study(recipe: Recipe, run_dir: Path) -> dict[str, Any]:
    """Plan, run what is not done, write the report. Returns the execution summary and report paths."""
    if recipe.study.executor == "submitit" and not recipe.study.report_only:
        require_submitit()
    plan = make_plan(recipe, run_dir)
    plan.study_dir.mkdir(parents=True, exist_ok=True)

    def upgraded(plan: Plan) -> Plan:  # what the run dir holds of an older key schema
        return migrate(plan, lambda runs: make_plan(recipe, run_dir, runs=runs), log=print)

    if recipe.study.report_only:  # a report runs nothing: allowed while a study runs (which upgrades the run dir)
        fd, _ = try_lock(plan.study_dir / LOCK_FILE)
        if fd is not None:
            try:
                plan = upgraded(plan)
            finally:
                os.close(fd)
        return _run(plan)
    # two studies in one run dir would train the same cells into the same folders
    with folder_lock(plan.study_dir, "another synthdata study"):
        return _run(upgraded(plan))


def _run(plan: Plan) -> dict[str, Any]:
    from synthdata.experiments.study_report import write_study_report  # noqa: PLC0415  (matplotlib-heavy, only after the runs)

    recipe, study_dir = plan.recipe, plan.study_dir
    save_resolved_recipe(study_dir, dataclasses.replace(recipe, study=Recipe().study))
    for cell in plan.cells:  # a cell finished under another recipe is not this study's
        for path in (cell.result_path, cell.segment_path):
            if not path.is_file():
                continue
            recorded = json.loads(path.read_text())
            if recorded.get("fingerprint") == cell_fingerprint(cell, plan.resolved[cell.variant]):
                continue
            if recorded.get("fingerprint") in older_fingerprints(cell, plan.resolved[cell.variant],
                                                                recorded.get("overrides")):
                raise ConfigError(f"{path} holds a fingerprint of an older synthdata that was not upgraded (another "
                                  "study held this run dir?); rerun when no study runs here")
            raise ConfigError(f"{path} was made with another recipe or variant; "
                                  "use a new run_dir or delete that cell's folder")
    if not recipe.study.report_only:  # cells finished before they dropped their training states
        for cell in plan.cells:
            if cell.result_path.is_file():
                drop_training_states(cell.run_dir)
    write_json_atomic(study_dir / "plan.json", {
        "variants": plan.variants, "seeds": plan.seeds, "generators": plan.generators,
        "productions": plan.productions, "cells": [cell_id(c) for c in plan.cells], "refine_controls": plan.controls,
        "jobs": [{"id": j.id, "deps": j.deps, "commands": [" ".join(c) for c in j.commands]} for j in plan.jobs]},
        allow_nan=False)
    log_path = study_dir / "study.log"

    def log(line: str) -> None:
        with open(log_path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    log(f"study: {len(plan.variants)} variants x {len(plan.seeds)} seeds, {len(plan.jobs)} jobs, "
        f"{recipe.study.workers} workers x {recipe.study.threads} threads")
    jobs = plan.jobs
    if recipe.study.stop_after == "productions":
        jobs = [j for j in jobs if j.id.startswith(("generators/", "productions/"))]
    if recipe.study.report_only:  # e.g. of a study stopped part way: missing cells are listed
        summary = {"ran": [], "skipped": sorted(j.id for j in plan.jobs if j.done()), "failed": {}}
    else:
        executor = None
        if recipe.study.executor == "submitit":
            executor = make_executor(study_dir / "submitit", recipe.study.executor_parameters)
            log(f"executor: submitit ({executor.cluster}), {recipe.study.workers} jobs at a time")
        summary = execute(jobs, workers=recipe.study.workers, threads=recipe.study.threads,
                          log_dir=study_dir / "logs", log=log, executor=executor)
    summary["report"] = write_study_report(plan)
    report = json.loads((study_dir / "report.json").read_text())
    rows = report["summary"]["rows"]
    summary["verdicts"] = [r["verdict_line"] for r in rows if r.get("verdict_line")] + [
        c["verdict_line"] for r in rows for c in r.get("controls", []) if c.get("verdict_line")]
    summary["verdicts"] += [report["summary"][w] for w in ("code_warning", "machines_warning", "labels_warning")
                            if report["summary"].get(w)]
    if recipe.study.stop_after == "productions":
        folders = [str(prod["shards"]) for prod in plan.productions.values()]
        summary["verdicts"].append(
            f"stopped before the cells (study.stop_after=productions): read the productions ({', '.join(folders) or 'none'}; "
            "`synthdata inspect FOLDER`, the layout checks in the report), then rerun without it to train the cells")
    return summary
