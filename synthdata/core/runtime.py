"""Run-time plumbing shared by the entry points: the Accelerator and its precision, CPU threads,
per-step seeding, trackers and parameter counts (resumable state: `synthdata.core.run_dir`).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import platform
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState

from synthdata.core.contract import ConfigError
from synthdata.core.seeding import derive_seed
from synthdata.core.tracking import check_trackers

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


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or what `platform` knows off Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    """The GPU's name for a CUDA device, else the CPU's model name."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def machine_description(device: torch.device | str = "cpu") -> dict[str, str]:
    """What a result depends on beyond code and seed: fp32 rounding differs between CPU kernels (AVX2
    vs AVX-512 gave other segmenters for the same seeds: docs/guide.md, "Studies in detail") and GPUs."""
    device = torch.device(device)
    return {"cpu": cpu_model(), "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type}


def cpu_threads(*, environ: dict[str, str] | None = None, cores: int | None = None,
                load: float | None = None) -> int | None:
    """Intra-op threads for this process, or None when the user chose them (`OMP_NUM_THREADS`).

    The cores this process may use (its affinity mask) shared by the processes of this machine
    (`LOCAL_WORLD_SIZE` from accelerate/torchrun), less the cores other programs keep busy (runnable
    tasks other than this one, sampled when we start): PyTorch's OpenMP threads wait for each other at every
    operation, so one thread more than there are free cores stalls them all (issue 16 measured
    generator training beside one busy process at 0.28-0.32x of idle speed with 2 threads and
    0.6-0.75x with 1 thread on a 2-core machine).
    """
    environ = os.environ if environ is None else environ
    if environ.get("OMP_NUM_THREADS"):
        return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = max(1, int(environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    share = max(1, cores // local)
    if load is None:
        load = busy_elsewhere()
    free = cores - int(load + 0.5)  # busy cores, rounded: a half-busy core still counts as free
    return max(1, min(share, free if free > 0 else 1))


def busy_elsewhere(samples: int = 5, interval: float = 0.01) -> float:
    """Runnable tasks on this machine other than this process, the least of a few samples of
    /proc/stat's `procs_running` (an instant count, unlike the load average, which still counts
    work that ended a minute ago); 0 where /proc is not available."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/stat") as f:
                running = next(int(line.split()[1]) for line in f if line.startswith("procs_running"))
        except (OSError, StopIteration, ValueError):
            return 0.0
        counts.append(running - 1)  # this process is running while it reads
        time.sleep(interval)
    return float(max(0, min(counts)))


def configure_threads() -> int:
    """Set torch's intra-op threads from `cpu_threads()` (CPU runs only); returns the count used."""
    threads = cpu_threads()
    if threads is not None and not torch.cuda.is_available():
        torch.set_num_threads(threads)
    return torch.get_num_threads()


@contextmanager
def threads_held(environ: MutableMapping[str, str] | None = None) -> Iterator[int]:
    """Choose this process's threads once (`configure_threads`) and keep them for every command run
    in this process inside the block (an in-process study, the demo): each command's own
    `configure_threads` would sample the machine's load again, and threads another library left
    spinning after the last command (OpenBLAS's, after a matrix product) made the next one choose
    one thread, and so round its floats otherwise (docs/benchmarks.md, "Threads beside a busy process"). Holds them as the user
    would, through `OMP_NUM_THREADS` (removed again after the block); a user's setting is kept."""
    environ = os.environ if environ is None else environ
    if environ.get("OMP_NUM_THREADS"):
        yield torch.get_num_threads()
        return
    threads = configure_threads()
    environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield threads
    finally:
        environ.pop("OMP_NUM_THREADS", None)


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
ALLOCATOR_ENVIRONMENT = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def configure_allocator(*, environ: dict[str, str] | None = None, libc: object | None = None) -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the kernel at every free.

    glibc maps every block above its mmap threshold (32 MB at most) freshly from the kernel and
    unmaps it on free, so every large activation of a forward pass is page-faulted in again, zeroed
    by the kernel, at every call: at 256x512, batch 4, the image generator's bf16 forward took
    about 870k page faults per batch and ran 1.54x slower than with this setting on an AMX CPU
    (docs/benchmarks.md, "On an Intel CPU with AMX"). With it, large blocks come from the heap and
    freed ones stay there: the process keeps its peak memory (a segmenter run's peak 12-20% higher).
    `SYNTHDATA_MALLOC=reuse` (the default) sets them; `SYNTHDATA_MALLOC=default` keeps glibc's
    defaults, and so does a process that sets its own malloc tuning (MALLOC_* variables,
    glibc.malloc tunables) or preloads another allocator.
    Returns whether the setting was applied (False off glibc).
    """
    environ = os.environ if environ is None else environ
    choice = environ.get("SYNTHDATA_MALLOC", "") or "reuse"
    if choice not in ("reuse", "default"):
        raise ConfigError(f"SYNTHDATA_MALLOC={choice!r}: use reuse (keep freed memory, the default) or default (glibc's)")
    if (choice == "default" or any(environ.get(name) for name in ALLOCATOR_ENVIRONMENT)
            or "glibc.malloc" in environ.get("GLIBC_TUNABLES", "") or "malloc" in environ.get("LD_PRELOAD", "")):
        return False
    if libc is None:
        try:
            libc = ctypes.CDLL(None)  # the symbols already loaded: the C library this process runs on
        except (OSError, TypeError):  # Windows cannot open "no library"
            return False
        if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
            return False  # musl, macOS: other allocators, no such tuning
    # mallopt takes an int: up to 2 GiB free at the heap's top before any goes back to the kernel
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def benchmark_allocator(*, keep_defaults: bool = False) -> str:
    """For tools that time product code outside a command: set glibc's allocator as every command
    does (`configure_allocator`, unless `keep_defaults`) and say which one the timings ran with,
    for the tool's header line: on CPU the allocator moves timings as much as the code does."""
    applied = not keep_defaults and configure_allocator()
    return "allocator: set as the commands set it" if applied else "allocator: glibc defaults"


def leave_process_group() -> None:
    """Destroy the process group, if one is up, while the interpreter is still whole. Left to
    interpreter shutdown, gloo's worker threads may drop their last tensors after Python is gone
    and abort a process whose work is done (SIGABRT; pytorch/pytorch#179291), the likeliest cause
    of a 2-process production's rank dying so once in CI. Registered at exit by `make_accelerator`."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def make_accelerator(*, mixed_precision: str | bool = "auto", log_with: list[str] | None = None,
                     log_dir: str | Path | None = None):
    """An `Accelerator` whose precision is resolved from `mixed_precision` (see above), with CPU
    threads chosen by `configure_threads` and the allocator set by `configure_allocator`, and the
    experiment trackers of the recipe key `log_with` (`core.tracking.check_trackers`: a missing
    package stops here, before any work), whose local files go under `log_dir`.

    Gradient accumulation is done by the training loop (two optimizers, GAN phases), so the
    Accelerator itself always steps every call.
    """
    trackers = check_trackers(log_with)
    if trackers and log_dir is None:
        raise ValueError("make_accelerator: log_with needs a log_dir")
    # Without a GPU, Accelerate forms a multi-process (gloo) group only when told cpu=True
    cpu = not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    configure_threads()
    configure_allocator()
    precision = resolve_mixed_precision(mixed_precision, state.device.type)
    if AcceleratorState._shared_state and state.num_processes == 1:
        # Accelerate keeps one precision per process; in-process reruns (tests, notebooks,
        # the demo running several stages) may ask for another one
        if AcceleratorState().mixed_precision != precision:
            AcceleratorState._reset_state()
    if state.num_processes > 1:
        atexit.unregister(leave_process_group)  # once, however many commands this process runs
        atexit.register(leave_process_group)
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
