"""Run-time plumbing shared by the training entry points: the Accelerator and its precision,
per-step seeding, trackers, parameter counts, and resumable training state on disk
(Accelerate `save_state` folders written atomically, with the previous one kept as a fallback).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState

from synthdata.core.contract import CheckpointError, ConfigError
from synthdata.core.seeding import derive_seed

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AMX or AVX512-BF16), where bf16 autocast pays."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: trust torch's capability probe
        return "amx" in torch.backends.cpu.get_cpu_capability().lower()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"amx_bf16", "avx512_bf16"})
    return False


def resolve_mixed_precision(setting: str | bool, device_type: str) -> str:
    """`auto` -> bf16 on CPUs with native bf16 and on GPUs that support it, else `no`."""
    if setting is False:  # `mixed_precision=no` on a command line is YAML for false
        setting = "no"
    if setting not in MIXED_PRECISION:
        raise ConfigError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {setting!r}")
    if setting != "auto":
        if setting == "fp16" and device_type == "cpu":
            raise ConfigError("mixed_precision=fp16 needs a GPU; use bf16 or no on CPU")
        return setting
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if device_type == "cpu":
        return "bf16" if cpu_supports_bf16() else "no"
    return "no"


def available_trackers() -> list[str]:
    """Accelerate trackers that are installed (TensorBoard is optional, never a dependency)."""
    found = []
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        found.append("tensorboard")
    return found


def make_accelerator(*, mixed_precision: str | bool = "auto", log_dir: str | Path | None = None):
    """An `Accelerator` whose precision is resolved from `mixed_precision` (see above).

    Gradient accumulation is done by the training loop (two optimizers, GAN phases), so the
    Accelerator itself always steps every call.
    """


    # Without a GPU, Accelerate forms a multi-process (gloo) group only when told cpu=True
    cpu = not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    precision = resolve_mixed_precision(mixed_precision, state.device.type)
    if AcceleratorState._shared_state and state.num_processes == 1:
        # Accelerate keeps one precision per process; in-process reruns (tests, notebooks,
        # the demo running several stages) may ask for another one
        if AcceleratorState().mixed_precision != precision:
            AcceleratorState._reset_state()
    trackers = available_trackers() if log_dir is not None else []
    return Accelerator(
        cpu=cpu,
        mixed_precision=precision,
        log_with=trackers or None,
        project_dir=str(log_dir) if log_dir is not None else None,
    )


def seed_step(seed: int, *keys: int) -> None:
    """Seed torch's global RNG from (recipe seed, keys...), so a step's randomness (Gumbel noise,
    dropout) depends on the step index, not on what ran before: resumed runs repeat exactly."""
    torch.manual_seed(derive_seed(seed, *keys))


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def format_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


# --------------------------------------------------------------------------------------------
# Resumable state: DIR/state (Accelerate save_state + progress.json), DIR/state.previous
# --------------------------------------------------------------------------------------------

PROGRESS_FILE = "progress.json"


def save_training_state(accelerator, ckpt_dir: Path, progress: dict[str, Any]) -> Path:
    """Write `ckpt_dir/state` atomically (all processes must call this); the state it replaces
    is kept as `state.previous` so a later corrupt write still leaves one that loads."""
    final = ckpt_dir / "state"
    tmp = ckpt_dir / "state.tmp"  # same name on every process: save_state is collective
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / PROGRESS_FILE).write_text(json.dumps(progress, indent=1))
        previous = ckpt_dir / "state.previous"
        if final.exists():
            # between these renames only state.previous exists, and resuming falls back to it
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(final, previous)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def read_progress(state_dir: Path) -> dict[str, Any]:
    path = state_dir / PROGRESS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path} (incomplete or corrupt training state): {e}") from e


def load_training_state(accelerator, ckpt_dir: Path) -> dict[str, Any] | None:
    """Restore the newest loadable state under `ckpt_dir`; returns its progress dict, or None
    when there is nothing to resume. A corrupt `state` falls back to `state.previous` with a
    warning; when neither loads, `CheckpointError` names both."""
    candidates = [d for d in (ckpt_dir / "state", ckpt_dir / "state.previous") if d.is_dir()]
    if not candidates:
        return None
    errors = []
    for state_dir in candidates:
        try:
            progress = read_progress(state_dir)
            accelerator.load_state(str(state_dir))
        except Exception as e:  # safetensors/pickle/torch raise many types for damaged files
            errors.append(f"{state_dir}: {e}")
            warnings.warn(f"cannot resume from {state_dir} ({e}); trying an older state", stacklevel=2)
            continue
        if state_dir.name != "state":
            warnings.warn(f"resumed from the previous good state {state_dir}", stacklevel=2)
        return progress
    raise CheckpointError("no loadable training state: " + "; ".join(errors))
