"""Shared plumbing for entry points: one-line errors with exit code 2, and `--help`."""

from __future__ import annotations

import errno
import sys
from typing import Callable

from synthdata.core.contract import CheckpointError, ConfigError, DatasetError
from synthdata.core.recipe_loading import HelpRequested, command_help


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


def run_main(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run an entry point, turning user errors (bad recipe, bad data, unwritable output) into
    one clear line on stderr and exit code 2; `-h` / `--help` prints the command's usage and
    keys (its module docstring, its arguments, the recipe keys) and exits 0."""

    try:
        return main(sys.argv[1:] if argv is None else argv)
    except HelpRequested as e:
        print(command_help(sys.modules[main.__module__].__doc__, e.arguments))
        return 0
    except (ConfigError, DatasetError, CheckpointError) as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # FileNotFoundError, PermissionError, IsADirectoryError, ENOSPC ...
        line = os_error_line(e)
        if line is None and not isinstance(e, FileNotFoundError):
            raise
        print(f"error: {one_line(line or str(e))}", file=sys.stderr)
        return 2
