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
(the generators). `data.*`, `eval.*`, `seed` and `study.*` are the study's own and the same for
every cell. A variant that mixes synthetic data without `seg.synthetic=SHARDS` gets the shards of
a production run built by the study. Generator runs are keyed by a hash of what decides the
generators (resolved `data`, `stages`, `train`, the recipe seed, the stages trained, the subset's
ids); production runs by the generator key plus the resolved `produce` section. Variants with the
same keys share one run, across every seed (the seeds vary the segmenter only).
`seg.filter_segmenter: "@baseline"` is the baseline's segmenter of the same seed.

Layout of RUN_DIR: `generators/KEY/` (stages), `productions/KEY/shards`, `cells/VARIANT/seed-S/`
(a segment run, and `result.json` once finished), `study/` (recipe, plan, logs, report). Jobs run
as subprocesses, `study.workers` at a time with `study.threads` threads each (one GPU each, round
robin, where there are GPUs); `study.workers=1` runs them one after another in this process, as
the demo chains commands (no interpreter start-up per job). A finished cell's result is written atomically and skipped on a
rerun; a killed cell resumes from its last segmenter checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from synthdata.core.contract import ConfigError, DatasetError
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import from_dict, read_yaml, recipe_to_dict, recipe_to_yaml, recipes_dir
from synthdata.data.readers.base import make_reader
from synthdata.data.shards import resolve_urls
from synthdata.experiments.jobs import Job, execute
from synthdata.segmentation.training import synthetic_per_step

VARIANT_SECTIONS = ("seg.", "produce.", "train.", "stages.")
STUDY_KEYS = ("produce.out", "produce.num_shards")  # set by the study, never by a variant
BASELINE_REF = "@baseline"




@dataclass
class Cell:
    variant: str
    seed: int
    run_dir: Path
    overrides: dict[str, Any]
    production: str | None  # production key, None for real-only cells

    @property
    def result_path(self) -> Path:
        return self.run_dir / "result.json"


@dataclass
class Plan:
    recipe: Recipe
    run_dir: Path
    variants: dict[str, dict[str, Any]]  # name -> dotted overrides (the baseline first)
    seeds: list[int]
    cells: list[Cell]
    generators: dict[str, dict[str, Any]]  # key -> {"overrides", "stages", "used_by"}
    productions: dict[str, dict[str, Any]]  # key -> {"generator", "overrides", "shards", "used_by"}
    jobs: list[Job]

    @property
    def study_dir(self) -> Path:
        return self.run_dir / "study"


# --------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"seg": {"synthetic_ratio": 0.5}}` -> `{"seg.synthetic_ratio": 0.5}` (dotted keys kept)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and not dotted.endswith("split_sizes"):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def read_variants(spec: str | dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """`study.variants` -> `{name: {dotted key: value}}` (file order kept)."""
    if spec is None:
        raise ConfigError("a study needs variants: study.variants=FILE.yaml (or NAME of recipes/studies/), "
                          "or a study.variants mapping in the recipe")
    source = "study.variants"
    if isinstance(spec, str):
        studies = recipes_dir() / "studies"  # shipped variant files: study.variants=NAME
        path = Path(spec).expanduser()
        if not path.is_file() and path.suffix not in (".yaml", ".yml") and (studies / f"{spec}.yaml").is_file():
            path = studies / f"{spec}.yaml"
        if not path.is_file():
            shipped = sorted(p.stem for p in studies.glob("*.yaml"))
            raise ConfigError(f"study.variants: file not found: {path} (shipped studies: {', '.join(shipped) or 'none'})")
        spec, source = read_yaml(path), str(path)
    if set(spec) == {"variants"}:
        spec = spec["variants"]
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"{source}: expected a mapping of variant name -> overrides, got {spec!r}")
    out = {}
    for name, overrides in spec.items():
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{source}: variant '{name}' should be a mapping of dotted keys, got {overrides!r}")
        out[str(name)] = flatten(overrides)
    return out


def check_variant_keys(name: str, overrides: dict[str, Any]) -> None:
    for key in overrides:
        if key in STUDY_KEYS or not key.startswith(VARIANT_SECTIONS):
            raise ConfigError(
                f"study variant '{name}': key '{key}' cannot vary between cells. Variants set seg.*, produce.*, "
                "train.* and stages.*; data.* (subset, resolution), eval.*, seed and study.* are the study's, "
                "the same for every cell (set them on the command line)")


def variant_recipe(base: dict[str, Any], name: str, overrides: dict[str, Any]) -> Recipe:
    """The base recipe tree with a variant's overrides, validated; errors name the variant."""
    tree = json.loads(json.dumps(base))
    for dotted, value in overrides.items():
        node = tree
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {} if node.get(part) is None else node[part]
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"study variant '{name}': cannot set '{dotted}': '{part}' is not a section")
        node[parts[-1]] = value
    return from_dict(Recipe, tree, source=f"study variant '{name}'")  # errors name the variant and the key


def uses_synthetic(recipe: Recipe) -> bool:
    return recipe.seg.synthetic_ratio > 0 or recipe.seg.synthetic_schedule == "pretrain"


def stages_needed(recipe: Recipe) -> list[str]:
    """Generator stages production needs: no layout GAN for real layouts; no depth stage for
    composite texturing (its depth comes from the bank's segments) or an image stage without depth;
    `stage=image` with the composite arch only builds the segment bank."""
    stages = [] if recipe.produce.layouts == "real" else ["layout"]
    composite = getattr(recipe.stages.image, "arch", "spade") == "composite"
    if recipe.data.has_depth and recipe.stages.image.use_depth and not composite:
        stages.append("depth")
    return stages + ["image"]


def digest(tree: Any) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:12]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-") or "variant"


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


def _token(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: the value comes back with its type


def _command(module: str, recipe_path: Path, args: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", module, f"recipe={recipe_path}"] + [_token(k, v) for k, v in args.items()]


def make_plan(recipe: Recipe, run_dir: Path) -> Plan:
    """Resolve and check every variant, key the shared runs, and list the jobs. Every error
    (unknown key, missing shards, subset ids) is raised here, before anything trains."""
    study = recipe.study
    if study.seeds < 1:
        raise ConfigError(f"study.seeds must be >= 1, got {study.seeds}")
    if study.workers < 1 or study.threads < 1:
        raise ConfigError("study.workers and study.threads must be >= 1")
    if not 0 < study.confidence < 1:
        raise ConfigError(f"study.confidence must be in (0, 1), got {study.confidence}")
    named = read_variants(study.variants)
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
    seeds = [recipe.seed + i for i in range(study.seeds)]
    generators: dict[str, dict[str, Any]] = {}
    productions: dict[str, dict[str, Any]] = {}
    cells: list[Cell] = []
    resolved: dict[str, Recipe] = {}
    for name, overrides in variants.items():
        if name != study.baseline:
            check_variant_keys(name, overrides)
        vr = variant_recipe(base, name, overrides)
        resolved[name] = vr
        production = None
        seg_overrides = {k: v for k, v in overrides.items() if k.startswith("seg.")}
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
            else:
                tree = recipe_to_dict(vr)
                stages = stages_needed(vr)
                gkey = digest({"seed": recipe.seed, "data": tree["data"], "stages": tree["stages"],
                               "train": tree["train"], "trained": stages, "subset_ids": subset_ids})
                gen = generators.setdefault(gkey, {"stages": stages, "used_by": [], "overrides": {
                    k: v for k, v in overrides.items() if k.startswith(("train.", "stages."))}})
                gen["used_by"].append(name)
                production = digest({"generators": gkey, "produce": tree["produce"]})
                prod = productions.setdefault(production, {
                    "generator": gkey, "used_by": [], "shards": str(run_dir / "productions" / production / "shards"),
                    "overrides": {k: v for k, v in overrides.items() if k.startswith(("train.", "stages.", "produce."))}})
                prod["used_by"].append(name)
                seg_overrides["seg.synthetic"] = prod["shards"]
        elif any(k.startswith(("produce.", "train.", "stages.")) for k in overrides):
            raise ConfigError(f"study variant '{name}': sets generator or production keys but mixes no synthetic "
                              "data (set seg.synthetic_ratio > 0 or seg.synthetic_schedule=pretrain)")
        for seed in seeds:
            cells.append(Cell(name, seed, run_dir / "cells" / slug(name) / f"seed-{seed}",
                              {**seg_overrides, "seed": seed}, production))
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
    plan = Plan(recipe, run_dir, variants, seeds, cells, generators, productions, [])
    plan.jobs = _jobs(plan, recipe_path, resolved)
    return plan


def _jobs(plan: Plan, recipe_path: Path, resolved: dict[str, Recipe]) -> list[Job]:
    jobs: list[Job] = []
    run_dir = plan.run_dir
    for gkey, gen in plan.generators.items():
        gdir = run_dir / "generators" / gkey
        commands = [_command("synthdata.train", recipe_path, {**gen["overrides"], "stage": stage, "run_dir": str(gdir)})
                    for stage in gen["stages"]]
        jobs.append(Job(f"generators/{gkey}", commands, done_file=gdir / "done.json",
                        on_done=_marker(gdir / "done.json", {"stages": gen["stages"], "used_by": gen["used_by"]})))
    for pkey, prod in plan.productions.items():
        gdir = run_dir / "generators" / prod["generator"]
        pdir = run_dir / "productions" / pkey
        args = {k: v for k, v in prod["overrides"].items()}
        args.update({"run_dir": str(gdir), "produce.out": prod["shards"]})
        jobs.append(Job(f"productions/{pkey}", [_command("synthdata.produce", recipe_path, args)],
                        deps=[f"generators/{prod['generator']}"], done_file=pdir / "done.json",
                        on_done=_marker(pdir / "done.json", {"generator": prod["generator"], "used_by": prod["used_by"]})))
    for cell in plan.cells:
        deps = [f"productions/{cell.production}"] if cell.production else []
        for value in cell.overrides.values():
            for other in plan.cells:
                if isinstance(value, str) and value.startswith(str(other.run_dir) + os.sep):
                    deps.append(cell_id(other))
        args = {**cell.overrides, "run_dir": str(cell.run_dir)}
        jobs.append(Job(cell_id(cell), [_command("synthdata.segment", recipe_path, args)], deps=deps,
                        done_file=cell.result_path, on_done=_cell_result(cell, resolved[cell.variant])))
    return jobs


def cell_id(cell: Cell) -> str:
    return f"cells/{slug(cell.variant)}/seed-{cell.seed}"


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
    os.replace(tmp, path)


def _marker(path: Path, info: dict[str, Any]) -> Callable[[float], None]:
    def done(seconds: float) -> None:
        write_json_atomic(path, {**info, "seconds": round(seconds, 2)})
    return done


def cell_fingerprint(cell: Cell, recipe: Recipe) -> str:
    tree = recipe_to_dict(dataclasses.replace(recipe, seed=cell.seed))
    tree["study"] = None
    tree["seg"]["synthetic"] = cell.overrides.get("seg.synthetic")
    return digest(tree)


def _cell_result(cell: Cell, recipe: Recipe) -> Callable[[float], None]:
    def done(seconds: float) -> None:
        report = json.loads((cell.run_dir / "report" / "report.json").read_text())
        metrics, info = report["metrics"], report["info"]
        per_image = metrics.get("image_iou", {}).get("per_image", [])
        write_json_atomic(cell.result_path, {
            "variant": cell.variant, "seed": cell.seed, "fingerprint": cell_fingerprint(cell, recipe),
            "miou": metrics["miou"], "pixel_accuracy": metrics.get("pixel_accuracy"),
            "per_class_iou": metrics.get("per_class_iou"), "classes": report["classes"]["classes"],
            "per_image": [{"id": p["id"], "per_class_iou": p["per_class_iou"]} for p in per_image],
            "steps": info.get("steps"), "batch_size": info.get("batch_size"),
            "source_counts": info.get("source_counts", {}), "train_seconds": info.get("train_seconds"),
            "wall_seconds": round(seconds, 2), "checkpoint_sha256": info.get("checkpoint_sha256"),
            "overrides": cell.overrides,
        })
    return done


# --------------------------------------------------------------------------------------------
# Running the study (the job runner is synthdata.experiments.jobs)
# --------------------------------------------------------------------------------------------








def run_study(recipe: Recipe, run_dir: Path) -> dict[str, Any]:
    """Plan, run what is not done, write the report. Returns the execution summary and report paths."""
    from synthdata.experiments.study_report import write_study_report  # noqa: PLC0415  (matplotlib-heavy, only after the runs)

    plan = make_plan(recipe, run_dir)
    study_dir = plan.study_dir
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / "recipe.yaml").write_text(recipe_to_yaml(dataclasses.replace(recipe, study=Recipe().study)))
    for cell in plan.cells:  # a cell finished under another recipe is not this study's
        if cell.result_path.is_file():
            old = json.loads(cell.result_path.read_text()).get("fingerprint")
            if old != cell_fingerprint(cell, variant_recipe(recipe_to_dict(recipe), cell.variant,
                                                            plan.variants[cell.variant])):
                raise ConfigError(f"{cell.result_path} was made with another recipe or variant; "
                                  "use a new run_dir or delete that cell's folder")
    write_json_atomic(study_dir / "plan.json", {
        "variants": plan.variants, "seeds": plan.seeds, "generators": plan.generators,
        "productions": plan.productions, "cells": [cell_id(c) for c in plan.cells],
        "jobs": [{"id": j.id, "deps": j.deps, "commands": [" ".join(c) for c in j.commands]} for j in plan.jobs]})
    log_path = study_dir / "study.log"

    def log(line: str) -> None:
        with open(log_path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    log(f"study: {len(plan.variants)} variants x {len(plan.seeds)} seeds, {len(plan.jobs)} jobs, "
        f"{recipe.study.workers} workers x {recipe.study.threads} threads")
    summary = execute(plan.jobs, workers=recipe.study.workers, threads=recipe.study.threads,
                      log_dir=study_dir / "logs", log=log)
    summary["report"] = write_study_report(plan)
    report = json.loads((study_dir / "report.json").read_text())
    summary["verdicts"] = [r["verdict_line"] for r in report["summary"]["rows"] if r.get("verdict_line")]
    return summary
