"""Experiment trackers (Accelerate's: TensorBoard, MLflow, W&B, ...) behind the recipe key `log_with`:
checked before any work (a missing package names the pip extra), started with the flattened recipe
as config, and named after the study cell a run is (`VARIANT/seed-N`) where the tracker takes a name.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import accelerate
from accelerate.tracking import get_available_trackers
from accelerate.utils import LoggerType

from synthdata.core.contract import ConfigError
from synthdata.core.recipe import Recipe, Tracker
from synthdata.core.recipe_loading import recipe_to_dict

TRACKERS: tuple[str, ...] = typing.get_args(Tracker)
# what to install for a tracker: the project's extra (pyproject.toml) where it has one, else its package
EXTRAS = ("tensorboard", "mlflow", "wandb")
PACKAGES = {"comet_ml": "comet-ml"}
# the keyword a tracker's start takes for the run's name (TensorBoard, Aim, DVCLive, Comet: none; the
# run's folder under the run dir, or the config's study.variant / study.seed, say which run it is)
RUN_NAME = {"wandb": "name", "mlflow": "run_name", "clearml": "task_name", "swanlab": "experiment_name",
            "trackio": "name"}


def installed_trackers() -> set[str]:
    """The trackers whose package Accelerate found in this environment."""
    return {LoggerType(t).value for t in get_available_trackers()}


def check_trackers(log_with: list[str] | None) -> list[str]:
    """The trackers `log_with` names (each once), or ConfigError naming the key and what to install
    (one line, exit 2 at an entry point) when one is unknown to this Accelerate or not installed."""
    wanted = list(dict.fromkeys(log_with or []))
    known = {t.value for t in LoggerType}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(f"log_with: accelerate {accelerate.__version__} has no tracker {', '.join(unknown)}; "
                          "upgrade accelerate or choose among " + ", ".join(t for t in TRACKERS if t in known))
    missing = [name for name in wanted if name not in installed_trackers()]
    if missing:
        extras = [n for n in missing if n in EXTRAS]
        packages = ([f"'synthdata[{','.join(extras)}]'"] if extras else []) + [
            PACKAGES.get(n, n) for n in missing if n not in EXTRAS]
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"log_with: {' and '.join(missing)} {verb} not installed; pip install {' '.join(packages)} "
                          "(or leave log_with unset)")
    return wanted


def flat_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested recipe dict as `{"seg.lr": 0.001, ...}`: the scalar values trackers take (lists as
    JSON text, None kept)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def start_tracking(accelerator, recipe: Recipe, project: str, *, run_name: str | None = None,
                   config: dict[str, Any] | None = None, tags: dict[str, Any] | None = None) -> None:
    """`init_trackers(project)` for the trackers of `recipe.log_with` (nothing when unset), with the
    flattened recipe plus `config` as the run's config; `run_name` names the run and `tags` tag it
    where the tracker takes them. Files of local trackers go under the accelerator's logging dir."""
    if not recipe.log_with:
        return
    kwargs: dict[str, dict[str, Any]] = {}
    for name in recipe.log_with:
        given = kwargs.setdefault(name, {})
        if run_name and name in RUN_NAME:
            given[RUN_NAME[name]] = run_name
        if tags and name == "wandb":
            given["tags"] = [f"{k}={v}" for k, v in tags.items()]
        if tags and name == "mlflow":
            given["tags"] = {k: str(v) for k, v in tags.items()}
        if name == "dvclive" and accelerator.logging_dir is not None:
            given["dir"] = str(Path(accelerator.logging_dir) / project)
    accelerator.init_trackers(project, config={**flat_config(recipe_to_dict(recipe)), **(config or {})},
                              init_kwargs=kwargs)


def cell_tracking(variant: str | None, seed: int) -> dict[str, Any]:
    """`start_tracking`'s run name, config and tags for a study cell's run (`variant` None: not a cell)."""
    if variant is None:
        return {}
    cell = {"study.variant": str(variant), "study.seed": seed}
    return {"run_name": f"{variant}/seed-{seed}", "config": cell, "tags": cell}


def log_scalars(accelerator, values: dict[str, Any], step: int) -> None:
    """Log `values` (tensors or numbers) at `step` to the started trackers; nothing (and no device
    sync) when there are none."""
    if accelerator.trackers:
        accelerator.log({k: float(v) for k, v in values.items()}, step=step)
