"""`train.init_from=DIR`: a stage starts from another run's checkpoint of the same settings, trained
fewer steps, and trains on to `train.steps` (budget ladders: a 3,000-step run continues a
1,000-step one instead of repeating its steps).

Generator stages have no learning-rate schedule and a data stream that restarts at every multiple
of `train.checkpoint_every` (`core.run_dir.checkpoint_chunks`), so continuing a run that stopped
at such a step gives the run that trains from scratch, exactly as resuming one's own checkpoint
does. The donor's seed and `data`, `stages`, `train` sections (what a generator run's result
depends on, `core.result_keys`) must therefore equal this run's but for `train.steps`; its step
must be a multiple of `train.checkpoint_every` and at most `train.steps`. A run with its own
checkpoint of the stage resumes from that and ignores the donor.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from synthdata.core.contract import ConfigError
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import load_recipe
from synthdata.core.result_keys import generator_settings, result_tree

# the donor's record of a budget in minutes (a continued run counts steps), its locks and partial copies
_NOT_COPIED = ("budget.json", ".*")


def _run_tree(recipe: Recipe) -> dict[str, Any]:
    tree = result_tree(recipe)
    return {"seed": tree["seed"], **generator_settings(tree, steps=False)}


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first dotted key where trees `a` and `b` differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} there, {b!r} here"


def _has_checkpoint(folder: Path) -> bool:
    return any(folder.joinpath(name).exists() for name in ("latest.pt", "previous.pt", "state", "state.previous"))


def donor_step(recipe: Recipe, stage: str, donor: Path) -> int:
    """The step of `donor`'s checkpoint of `stage` after checking that this run may continue it;
    ConfigError naming the donor and what stops it otherwise."""
    where = f"train.init_from={donor}"
    if recipe.train.minutes is not None:
        raise ConfigError(f"{where}: a budget in minutes (train.minutes) sets its steps on the machine; "
                          "continue a run by train.steps instead")
    recipe_file = donor / "recipe.yaml"
    progress_file = donor / "checkpoints" / stage / "state" / "progress.json"
    if not recipe_file.is_file() or not progress_file.is_file():
        raise ConfigError(f"{where}: no checkpoint of stage '{stage}' there (needs {recipe_file} and {progress_file})")
    difference = _first_difference(_run_tree(load_recipe(str(recipe_file))), _run_tree(recipe))
    if difference:
        raise ConfigError(f"{where}: trained with other settings ({difference}); only train.steps may differ")
    try:
        step = int(json.loads(progress_file.read_text())["step"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{where}: {progress_file} is not a checkpoint's progress record ({e})") from e
    if step > recipe.train.steps:
        raise ConfigError(f"{where}: its stage '{stage}' is at step {step}, past train.steps={recipe.train.steps}")
    if step % recipe.train.checkpoint_every:
        raise ConfigError(f"{where}: its step {step} is not a multiple of train.checkpoint_every="
                          f"{recipe.train.checkpoint_every}, so continuing it would see other data than a run "
                          "from scratch")
    return step


def continue_from_donor(recipe: Recipe, stage: str, run_dir: Path, accelerator) -> int | None:
    """Copy `train.init_from`'s checkpoint of `stage` into `run_dir` when it has none of its own
    (the main process copies, every process waits); returns the donor's step, or None when there
    is no donor or the run resumes from its own checkpoint."""
    if not recipe.train.init_from:
        return None
    folder = run_dir / "checkpoints" / stage
    accelerator.wait_for_everyone()  # every process reads the folder before the main one may copy into it
    own = _has_checkpoint(folder)
    accelerator.wait_for_everyone()
    if own:
        return None
    donor = Path(recipe.train.init_from)
    step = donor_step(recipe, stage, donor)
    if accelerator.is_main_process:
        source = donor / "checkpoints" / stage
        partial = folder.with_name(f".{stage}.init-from")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial, ignore=shutil.ignore_patterns(*_NOT_COPIED))
        folder.mkdir(parents=True, exist_ok=True)
        # the state folder last: a copy stopped before it leaves nothing to resume from
        for entry in sorted(partial.iterdir(), key=lambda p: p.name.startswith("state")):
            entry.replace(folder / entry.name)
        partial.rmdir()
        print(f"{stage}: starting from step {step} of {donor} (train.init_from: the same settings, fewer steps)")
    accelerator.wait_for_everyone()
    return step
