"""What a study is made of, once planned: its cells (variant x seed, each a folder
RUN_DIR/cells/VARIANT/seed-S) and the plan (`study.make_plan`): variants, seeds, shared generator
and production runs, and the jobs that make them. Keys: `study_keys`; results: `cells`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthdata.core.recipe import Recipe
from synthdata.experiments.jobs import Job


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
    resolved: dict[str, Recipe] = field(default_factory=dict)  # variant -> its recipe
    controls: dict[str, list[str]] = field(default_factory=dict)  # refine variant -> same segmenter, N more steps
    # variant -> {"stages": trained, "generator": key, "production": key}, keys as `study_keys` computes
    # them (the folders may hold an older key: `runs`)
    run_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # "generators/KEY" -> folder, from study/keys.json
    subset_ids: list[str] | None = None

    @property
    def study_dir(self) -> Path:
        return self.run_dir / "study"


def shorter_run(plan: Plan, gkey: str) -> str | None:
    """The study's generator run that `gkey`'s continues (`train.init_from`): the same settings but
    fewer `train.steps`, the most such steps that are a multiple of `train.checkpoint_every`; None
    when there is none (or the budget is in minutes)."""
    gen = plan.generators[gkey]
    every = plan.resolved[gen["used_by"][0]].train.checkpoint_every
    shorter = [(other["steps"], key) for key, other in plan.generators.items()
               if gen.get("ladder") is not None and other.get("ladder") == gen["ladder"] and other["stages"] == gen["stages"]
               and other["steps"] < gen["steps"] and other["steps"] % every == 0]
    return max(shorter)[1] if shorter else None


__all__ = ["Cell", "Plan", "cell_id", "shorter_run", "slug"]
