"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it.

A kill leaves either the old file or the new one whole, never half of one (at most a stray
`.NAME.*.tmp`); a write that fails (a full disk) removes its temporary and names the file.
Torch-free, so readers of shards can use it without importing torch.
"""

from __future__ import annotations

import errno
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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        named = naming_the_file(e, path)
        if named is not None:
            raise named from e
        raise
    return path


# a write that failed for want of room: full disk, file-size limit (RLIMIT_FSIZE), quota
NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def no_room(error: BaseException | None) -> OSError | None:
    """The OSError ENOSPC / EFBIG / EDQUOT that `error` is, or was raised from or while handling
    (torch.save into a file object raises a RuntimeError during the OSError), else None."""
    for _ in range(8):
        if error is None:
            return None
        if isinstance(error, OSError) and error.errno in NO_ROOM:
            return error
        error = error.__cause__ or error.__context__
    return None


def naming_the_file(error: BaseException, path: str | os.PathLike) -> OSError | None:
    """`error` as an OSError naming `path`, when it is a failure for want of room that names no
    file (a full disk fails `write()`, which has no file name to give), else None."""
    found = no_room(error)
    if found is None or found.filename is not None:
        return None
    return OSError(found.errno, found.strerror or os.strerror(found.errno), str(path))


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
