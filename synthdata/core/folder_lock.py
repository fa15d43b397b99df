"""One process at a time in a folder: an exclusive, non-blocking `flock` on FOLDER/.lock.

The kernel drops the lock when its process ends, however it ends, so a killed run leaves no stale
lock to clear by hand. The file holds the holder's pid and start time, for the refusal's message.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from synthdata.core.contract import ConfigError

LOCK_FILE = ".lock"


def try_lock(path: Path) -> tuple[int | None, str]:
    """An exclusive, non-blocking `flock` on the file PATH (created, with its folder): `(fd, "")`
    holding it, with this process's pid and start time written in it (close fd to release), or
    `(None, holder)` where another process holds it (`holder`: what it wrote, "pid N, started ...").
    The fd is not inherited by subprocesses unless passed (`subprocess.Popen(pass_fds=...)`): a
    child that has it holds the lock too, until it and this process have both ended."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        return None, holder
    except BaseException:
        os.close(fd)
        raise
    describe_holder(fd, f"pid {os.getpid()}")
    return fd, ""


def describe_holder(fd: int, who: str) -> None:
    """What a held lock file says about its holder: `WHO, started TIME`."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{who}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)


@contextmanager
def folder_lock(folder: Path, what: str, name: str = LOCK_FILE) -> Iterator[None]:
    """Hold FOLDER/NAME (default `.lock`) while the block runs; raise ConfigError (one line naming
    the folder and the holder) when another process holds it. `what` names the work, e.g. "a
    study"; `name` another lock file for work that may run beside the folder's other work."""
    fd, holder = try_lock(folder / name)
    if fd is None:
        raise ConfigError(f"{folder}: {what} is already running here ({holder}); wait for it to finish, "
                          "or use another run_dir")
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def process_lock(accelerator, folder: Path, what: str, name: str = LOCK_FILE):
    """`folder_lock` held by the main process of a launch (the others run under it): what a command
    that writes FOLDER takes for its whole run."""
    return folder_lock(folder, what, name) if accelerator.is_main_process else nullcontext()
