"""One process at a time in a folder: an exclusive, non-blocking `flock` on FOLDER/.lock.

The kernel drops the lock when its process ends, however it ends, so a killed run leaves no stale
lock to clear by hand. The file holds the holder's pid and start time, for the refusal's message.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from synthdata.core.contract import ConfigError

LOCK_FILE = ".lock"


@contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold FOLDER/.lock while the block runs; raise ConfigError (one line naming the folder and
    the holder) when another process holds it. `what` names the work, e.g. "a study"."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by subprocesses
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise ConfigError(f"{folder}: {what} is already running here ({holder}); wait for it to finish, "
                              "or use another run_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
