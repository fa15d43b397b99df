"""Checkpoint I/O: atomic writes, safe loads, and the portable checkpoint format.

A portable checkpoint is a `torch.save`d dict
`{"kind", "model", "ema", "step", "recipe", "classes", "arch"}` loadable with
`weights_only=True`. Resumable training state (optimizers, RNG) is Accelerate's `save_state`
folder beside it. Every write goes to a temporary name first and is renamed when complete, so a
crash never leaves a half-written checkpoint under its final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from synthdata.core.atomic import write_atomic
from synthdata.core.contract import CheckpointError, ClassInfo


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save(obj)` to `path` via a temporary file in the same folder + rename."""
    return write_atomic(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a portable checkpoint; a missing or corrupt file raises `CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"cannot read checkpoint {path} (corrupt or truncated?): {e}") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a synthdata checkpoint (no 'model' entry)")
    return ckpt


def check_classes(ckpt: dict[str, Any], expected: ClassInfo, path: str | os.PathLike) -> None:
    """A checkpoint trained on another class list (or ignore label) must not be used."""
    stored = ckpt.get("classes")
    if stored is None:
        raise CheckpointError(f"{path} records no class list")
    got = ClassInfo.from_dict(stored)
    if not got.same_as(expected):
        raise CheckpointError(
            f"{path} was trained for classes {list(got.names)} (ignore {got.ignore_index}), "
            f"but the recipe has {list(expected.names)} (ignore {expected.ignore_index})"
        )


def portable_checkpoint(
    *,
    kind: str,
    model: dict[str, torch.Tensor],
    step: int,
    recipe: dict[str, Any],
    classes: ClassInfo,
    ema: dict[str, torch.Tensor] | None = None,
    arch: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict stored in a portable checkpoint file (plain types and tensors only)."""
    out = {
        "kind": kind,
        "model": {k: v.detach().cpu() for k, v in model.items()},
        "ema": None if ema is None else {k: v.detach().cpu() for k, v in ema.items()},
        "step": int(step),
        "recipe": recipe,
        "classes": classes.to_dict(),
        "arch": arch or {},
    }
    out.update(extra or {})
    return out
