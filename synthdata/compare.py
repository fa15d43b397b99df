"""A command's launch file. `accelerate launch synthdata/NAME.py ...`, `python -m synthdata.NAME ...`
and `from synthdata.NAME import main` run the command `synthdata/commands/NAME.py` (its code and
documentation are there) through `synthdata.cli`, as `synthdata COMMAND ...` does, so `--help` and
`--version` answer before torch loads. Every command's launch file is this file, byte for byte
(tests/commands/test_entry_points.py): NAME is the file's own name."""

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: synthdata/ is first on sys.path, so
    _pkg = os.path.dirname(os.path.abspath(__file__))  # import the package, never its sibling files
    sys.path[:] = [os.path.dirname(_pkg)] + [p for p in sys.path if os.path.abspath(p or ".") != _pkg]

NAME = os.path.splitext(os.path.basename(__file__))[0]


def main(argv: list[str] | None = None) -> int:
    from synthdata.cli import run_file  # noqa: PLC0415  (after the sys.path fix above)

    return run_file(NAME, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
