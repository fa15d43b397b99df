"""Shared plumbing for entry points: one-line errors with exit code 2 (also for a full disk or a
file-size limit, naming the command's output folder), and `--help`."""

from __future__ import annotations

import errno
import re
import resource
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from synthdata.core.atomic import NO_ROOM, no_room
from synthdata.core.contract import CheckpointError, ConfigError, DatasetError
from synthdata.core.recipe_loading import HelpRequested, command_help

# where a command writes, by the argument that says it: produce.out, else out=, else run_dir
OUTPUT_KEYS = ("produce.out", "out", "run_dir")
ROOM = {errno.ENOSPC: ("no space left on device", "free space"),
        errno.EFBIG: ("file too large for the file-size limit (ulimit -f)", "raise the limit"),
        errno.EDQUOT: ("disk quota exceeded", "free space in the quota")}
RUST_IO = re.compile(r"\(os error (\d+)\)")  # safetensors (Rust) reports `... (os error 28)`, no file
# torch.save(obj, PATH) (Accelerate's optimizer state) loses the errno: its C++ writer says only this
TORCH_WRITER = re.compile(r"PytorchStreamWriter failed|inline_container\.cc|iostream error")


def one_line(message: str) -> str:
    """A message that spans lines (e.g. a list of missing files) as one line."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def os_error_line(e: OSError) -> str | None:
    """`PATH: reason` for an OSError about a file (unwritable output, full disk ...), else None."""
    if e.filename is None:
        return None
    path = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
    reason = e.strerror or errno.errorcode.get(e.errno or 0, str(e))
    if isinstance(e, PermissionError):
        return f"{path}: permission denied (cannot write or read there; choose another folder or fix its permissions)"
    return f"{path}: {reason}"


def output_folder(argv: list[str]) -> str | None:
    """The folder a command writes, from its arguments (`OUTPUT_KEYS`), or None."""
    found = {}
    for token in argv:
        key, sep, value = token.partition("=")
        if sep and key in OUTPUT_KEYS and value.strip("'\""):
            found[key] = value.strip("'\"")
    return next((found[key] for key in OUTPUT_KEYS if key in found), None)


def _chain(error: BaseException | None):
    for _ in range(8):
        if error is None:
            return
        yield error
        error = error.__cause__ or error.__context__


def out_of_room(error: BaseException, folder: str | None) -> tuple[int, str | None] | None:
    """`(errno, file or None)` when `error` is a write that failed for want of room (ENOSPC, EFBIG,
    EDQUOT), however the library that wrote reported it; else None."""
    found = no_room(error)
    if found is not None:
        return found.errno, found.filename
    for link in _chain(error):
        match = RUST_IO.search(str(link))
        if match and int(match.group(1)) in NO_ROOM:
            return int(match.group(1)), None
    if any(TORCH_WRITER.search(str(link)) for link in _chain(error)):  # the cause is lost: ask the system
        if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
            return errno.EFBIG, None
        existing = next((p for p in [Path(folder or "."), *Path(folder or ".").absolute().parents] if p.exists()), None)
        if existing is not None and shutil.disk_usage(existing).free < 64 * 2**20:
            return errno.ENOSPC, None
    return None


def out_of_room_line(code: int, file: str | None, folder: str | None) -> str:
    """`FOLDER: no space left on device (writing FILE); free space and rerun ...`."""
    reason, remedy = ROOM[code]
    line = f"{folder or file or 'the output folder'}: {reason}"
    if file and folder and str(file) != str(folder):
        line += f" (writing {file})"
    return f"{line}; {remedy} and rerun the same command: it continues from what was finished"


def _ignore_sigxfsz():
    """Ignore SIGXFSZ, so a write past the file-size limit fails with EFBIG (reported like a full
    disk) instead of the signal killing the process; returns the handler to restore (or None)."""
    if not hasattr(signal, "SIGXFSZ") or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _open_bars() -> set:
    return set(getattr(tqdm, "_instances", ()))


def _error(line: str, bars: set) -> int:
    """Print `error: LINE` on a line of its own (bars the exception left open, other than `bars`
    of the caller, e.g. a study running this command in its process, end first); 2."""
    for bar in _open_bars() - bars:
        bar.close()
    print(f"error: {one_line(line)}", file=sys.stderr)
    return 2


def run_main(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run an entry point, turning user errors (bad recipe, bad data, unwritable output, a full disk
    or file-size limit) into one clear line on stderr and exit code 2; `-h` / `--help` prints the
    command's usage and keys (its module docstring, its arguments, the recipe keys) and exits 0."""

    argv = sys.argv[1:] if argv is None else argv
    previous, bars = _ignore_sigxfsz(), _open_bars()
    try:
        return main(argv)
    except HelpRequested as e:
        print(command_help(sys.modules[main.__module__].__doc__, e.arguments))
        return 0
    except (ConfigError, DatasetError, CheckpointError) as e:
        return _error(str(e), bars)
    except Exception as e:  # OSError: FileNotFoundError, PermissionError, ...; any write short of room
        folder = output_folder(argv)
        room = out_of_room(e, folder)
        if room is not None:
            return _error(out_of_room_line(*room, folder), bars)
        line = os_error_line(e) if isinstance(e, OSError) else None
        if line is None and not isinstance(e, FileNotFoundError):
            raise
        return _error(line or str(e), bars)
    finally:
        if previous is not None:
            signal.signal(signal.SIGXFSZ, previous)
