"""`synthdata config recipe=X [overrides]`: print the fully resolved recipe as YAML."""

from __future__ import annotations

from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import parse_command_line, recipe_to_yaml


def _main(argv: list[str]) -> int:
    recipe, _ = parse_command_line(argv)
    print(recipe_to_yaml(recipe), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)  # ConfigError -> one line, exit 2; --help -> the recipe keys

