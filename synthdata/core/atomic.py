"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it.

A kill leaves either the old file or the new one whole, never half of one (at most a stray
`.NAME.*.tmp`). Torch-free, so readers of shards can use it without importing torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(file)` on a temporary file beside `path`, fsync it and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open would follow the umask
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (`/proc/self/status`)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, hence the read above)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """`text` (UTF-8) written atomically to `path`."""
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_json_atomic(path: str | os.PathLike, data: Any, **dumps: Any) -> Path:
    """`json.dumps(data, indent=1, **dumps)` written atomically to `path`."""
    text = json.dumps(data, indent=1, **dumps)  # serialise first: a bad value leaves nothing behind
    return write_text_atomic(path, text)
