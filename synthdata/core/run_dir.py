"""A trainer's checkpoint folder, RUN_DIR/checkpoints/NAME, used by every trainer (generator
stages, segmenter, SegGAN refinement, translation):

- `state/`: Accelerate `save_state` (models as safetensors, optimizer and RNG states read with
  `weights_only=True`), `progress.json`, and each registered extra object's `state_dict()` as
  `extra_NAME.pt`, also read with `weights_only=True`. Accelerate's own custom-object
  checkpoints are pickles it loads with `weights_only=False`, so synthdata never registers any,
  and a state folder that holds one is refused: nothing in a run dir may execute code.
- `state.previous/`: the state before, kept so a damaged write still leaves one that loads.
- `latest.pt` (+ `previous.pt`): the portable checkpoint that sampling and evaluation read.
- A run that reaches its last step deletes `previous.pt` and `state.previous/` (`finish`): its
  final checkpoint was written whole, and the backups doubled a finished run's size on disk.
- `recipe.yaml`: the resolved recipe of the run.

Every delete in a run dir goes through `remove_inside`: it stays inside the folder it is given and
never follows a symbolic link (a link is removed as a link, never its target).

The portable file is written before the state, and every start checks that `latest.pt` holds the
step the state resumes from, rewriting it when not: a kill between the two writes can never leave
a finished run whose `latest.pt` is older than its state.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from synthdata.core.atomic import write_text_atomic
from synthdata.core.checkpoint import load_checkpoint, save_atomic
from synthdata.core.contract import CheckpointError
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import recipe_to_yaml

PROGRESS_FILE = "progress.json"
PICKLED_STATE = "custom_checkpoint_*.pkl"  # what Accelerate writes for register_for_checkpointing


def remove_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Delete the file or folder `path` (nothing to do when absent), which must lie inside the
    folder `root` (a run dir, or the folder a trainer or writer owns) with no symbolic link between
    the two. A link at `path` itself is removed as a link, never its target, and `rmtree` removes
    links inside a folder as links; a link on the way from `root`, or a path outside `root`, is
    left alone with a warning. Returns whether something was deleted."""
    root, path = Path(os.path.abspath(root)), Path(os.path.abspath(path))  # lexical: ".." resolved
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = ()
    if not parts:
        warnings.warn(f"not deleting {path}: not inside {root}", stacklevel=2)
        return False
    for depth in range(1, len(parts)):
        on_the_way = root.joinpath(*parts[:depth])
        if on_the_way.is_symlink():
            warnings.warn(f"not deleting {path}: {on_the_way} is a symbolic link", stacklevel=2)
            return False
    if path.is_symlink():
        path.unlink(missing_ok=True)
        return True
    if not path.exists():
        return False
    if not path.resolve().is_relative_to(root.resolve()):  # the walk above rules this out; checked anyway
        warnings.warn(f"not deleting {path}: it resolves outside {root.resolve()}", stacklevel=2)
        return False
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return True


def checkpoint_chunks(start: int, total: int, every: int) -> Iterator[tuple[int, int]]:
    """(first, stop) step ranges from `start` to `total`, each ending at the next multiple of
    `every`. Trainers start a fresh data stream for each chunk, seeded by its first step, so a run
    resumed from a checkpoint sees exactly the data it would have seen without the stop."""
    step = start
    while step < total:
        stop = min(total, (step // every + 1) * every)
        yield step, stop
        step = stop


def exact_batches(loader: Iterable, count: int) -> Iterator[Any]:
    """Exactly `count` batches of `loader`, passing over it again when one pass yields fewer (a
    loader may round its epoch down to whole batches per process)."""
    n = 0
    while n < count:
        drawn = 0
        for batch in loader:
            yield batch
            n, drawn = n + 1, drawn + 1
            if n == count:
                return
        if drawn == 0:
            raise RuntimeError("the training stream yielded no batch")


def save_resolved_recipe(folder: Path, recipe: Recipe) -> Path:
    """`folder/recipe.yaml`: the fully resolved recipe a run used (one name for every command)."""
    # atomic: a study trains stages of one run dir side by side
    return write_text_atomic(folder / "recipe.yaml", recipe_to_yaml(recipe))


class CheckpointFolder:
    """Resume and save one trainer's state and portable checkpoint, kept consistent.

    `extras`: objects with `state_dict()` / `load_state_dict()` whose state holds only tensors,
    numbers, strings and containers of them (EMA weights, LR schedulers, image pools).
    All processes must call `resume` and `save` (Accelerate's save/load are collective).
    """

    def __init__(self, accelerator, folder: str | os.PathLike, extras: dict[str, Any] | None = None):
        self.accelerator = accelerator
        self.folder = Path(folder)
        self.extras = dict(extras or {})

    @property
    def latest(self) -> Path:
        return self.folder / "latest.pt"

    # ---------------------------------------------------------------------------------------
    def resume(self, portable: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """Restore the newest loadable state; returns its progress dict (None: nothing to resume).

        With `portable` (progress -> portable checkpoint dict), a `latest.pt` that is missing or
        holds another step than the restored state is rewritten from the restored weights.
        """
        candidates = [d for d in (self.folder / "state", self.folder / "state.previous") if d.is_dir()]
        if not candidates:
            return None
        errors = []
        for state_dir in candidates:
            _refuse_pickles(state_dir)
            try:
                progress = _read_progress(state_dir)
                self.accelerator.load_state(str(state_dir))
                self._load_extras(state_dir)
            except CheckpointError:
                raise
            except Exception as e:  # safetensors/torch raise many types for damaged files
                errors.append(f"{state_dir}: {e}")
                warnings.warn(f"cannot resume from {state_dir} ({e}); trying an older state", stacklevel=2)
                continue
            if state_dir.name != "state":
                warnings.warn(f"resumed from the previous good state {state_dir}", stacklevel=2)
            if portable is not None:
                self._repair_portable(progress, portable)
            return progress
        raise CheckpointError("no loadable training state: " + "; ".join(errors))

    def save(self, progress: dict[str, Any], portable: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Path:
        """Write `latest.pt` (main process; the one it replaces becomes `previous.pt`), then the
        state with `progress`, both atomically. Returns the path of `latest.pt`."""
        acc = self.accelerator
        if acc.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
            if portable is not None:
                self._write_portable(portable(progress))
        acc.wait_for_everyone()
        self._save_state(progress)
        return self.latest

    def finish(self) -> None:
        """After the last step's `save`: delete the backups that only a kill during training needs."""
        if self.accelerator.is_main_process:
            remove_inside(self.folder / "previous.pt", self.folder)
            remove_inside(self.folder / "state.previous", self.folder)
        self.accelerator.wait_for_everyone()

    # ---------------------------------------------------------------------------------------
    def _write_portable(self, ckpt: dict[str, Any]) -> None:
        if self.latest.exists():  # keep the last good file in case the next one is damaged
            backup = self.folder / "previous.pt.tmp"
            shutil.copy2(self.latest, backup)
            os.replace(backup, self.folder / "previous.pt")
        save_atomic(ckpt, self.latest)

    def _repair_portable(self, progress: dict[str, Any], portable) -> None:
        step = progress.get("step")
        if self.accelerator.is_main_process:
            try:
                held = load_checkpoint(self.latest).get("step") if self.latest.exists() else None
            except CheckpointError:
                held = None
            if held != step:
                warnings.warn(f"{self.latest} holds step {held}, the training state step {step}: rewriting it "
                              "from the state", stacklevel=3)
                self._write_portable(portable(progress))
        self.accelerator.wait_for_everyone()

    def _save_state(self, progress: dict[str, Any]) -> None:
        acc, final, tmp = self.accelerator, self.folder / "state", self.folder / "state.tmp"
        if acc.is_main_process:
            remove_inside(tmp, self.folder)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))  # same folder name on every process: save_state is collective
        acc.wait_for_everyone()
        if acc.is_main_process:
            for name, obj in self.extras.items():
                torch.save(obj.state_dict(), tmp / f"extra_{name}.pt")
            (tmp / PROGRESS_FILE).write_text(json.dumps(progress, indent=1))
            previous = self.folder / "state.previous"
            if final.exists():
                # between these renames only state.previous exists, and resuming falls back to it
                remove_inside(previous, self.folder)
                os.replace(final, previous)
            os.replace(tmp, final)
        acc.wait_for_everyone()

    def _load_extras(self, state_dir: Path) -> None:
        for name, obj in self.extras.items():
            path = state_dir / f"extra_{name}.pt"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing")
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # torch's unpickler refuses anything but tensors and containers
                raise CheckpointError(f"{path}: not a plain tensor state ({e}); synthdata loads nothing that "
                                      "could execute code") from e
            obj.load_state_dict(state)


def _read_progress(state_dir: Path) -> dict[str, Any]:
    path = state_dir / PROGRESS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path} (incomplete or corrupt training state): {e}") from e


def _refuse_pickles(state_dir: Path) -> None:
    found = sorted(state_dir.glob(PICKLED_STATE))
    if found:
        raise CheckpointError(
            f"{found[0]}: a pickled object in the training state; synthdata never unpickles files from a run "
            f"dir (they can execute code). Delete {state_dir} to start the stage afresh"
        )
