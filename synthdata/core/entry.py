"""Shared plumbing for entry points: error reporting and `accelerate launch path/to/file.py`."""

from __future__ import annotations

import sys
from typing import Callable

from synthdata.core.contract import CheckpointError, ConfigError, DatasetError


def run_main(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run an entry point, turning user errors (bad recipe, bad data) into one clear line."""

    try:
        return main(sys.argv[1:] if argv is None else argv)
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
