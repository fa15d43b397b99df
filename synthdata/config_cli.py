"""`synthdata config recipe=X [overrides]`: print the fully resolved recipe as YAML."""

from __future__ import annotations

import sys

from synthdata.config import ConfigError, parse_command_line, recipe_to_yaml


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
