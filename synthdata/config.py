"""`synthdata config recipe=X [overrides]`: print the fully resolved recipe as YAML."""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: import the package, never sibling files
    import os
    import sys

    _pkg = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_pkg)] + [p for p in sys.path if os.path.abspath(p or ".") != _pkg]

import sys

from synthdata.core.contract import ConfigError
from synthdata.core.recipe_loading import parse_command_line, recipe_to_yaml


def main(argv: list[str] | None = None) -> int:
    try:
        recipe, _ = parse_command_line(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(recipe_to_yaml(recipe), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
