"""The `synthdata` console script: `synthdata COMMAND key=value ...`.

Each command is the `main(argv)` of a module, imported only when that command runs; `--help` is
read from the command's source and `--version` answered here, both before torch is imported.
"""

from __future__ import annotations

import difflib
import importlib
import sys

from synthdata import __version__
from synthdata.core.recipe_help import static_command, static_usage
from synthdata.core.recipe_loading import HELP_FLAGS, command_help

# command -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("synthdata.commands.config", "print the fully resolved recipe"),
    "check": ("synthdata.commands.check", "scan a dataset split and report problems"),
    "export": ("synthdata.commands.export", "write a real dataset split as shards"),
    "inspect": ("synthdata.commands.inspection", "summarise shards and write a contact sheet"),
    "train": ("synthdata.commands.train", "train a generator stage (layout | depth | image)"),
    "produce": ("synthdata.commands.produce", "produce synthetic shards from trained stages"),
    "segment": ("synthdata.commands.segment", "train a segmenter on real (+ synthetic) data"),
    "refine": ("synthdata.commands.refine", "SegGAN refinement of a segmenter"),
    "translate": ("synthdata.commands.translate", "pix2pix / CycleGAN segmentation as translation"),
    "evaluate": ("synthdata.commands.evaluate", "evaluate: miou | fid | fidelity | layouts"),
    "compare": ("synthdata.commands.compare", "compare evaluation reports side by side"),
    "demo": ("synthdata.commands.demo", "the whole pipeline on the toy world, with a report"),
    "study": ("synthdata.commands.study", "baseline vs variants x seeds: does synthetic data pay? (intervals)"),
}


def usage() -> str:
    lines = ["usage: synthdata COMMAND [recipe=NAME] [key=value ...]", "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "`synthdata COMMAND --help` lists its arguments and every recipe key (default, valid values,",
              "meaning); `synthdata --version` prints the version."]
    return "\n".join(lines)


def fast_help(name: str, rest: list[str]) -> str | None:
    """The `--help` text of a command (or `evaluate WHAT`) read from its source without importing it,
    as its own `--help` would print it; None when its source does not allow it."""
    module = COMMANDS[name][0]
    if name == "evaluate":  # synthdata.evaluate imports nothing heavy: its table of evaluations
        evaluations = importlib.import_module(module).EVALUATIONS
        if not rest or rest[0] not in evaluations:
            return None
        module = evaluations[rest[0]]
    found = static_command(module)
    return command_help(*found) if found is not None else static_usage(module)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if "--version" in argv:
        print(f"synthdata {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"synthdata: unknown command '{name}'.{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    return run_command(name, rest)


def run_command(name: str, argv: list[str]) -> int:
    """Command `name` with its arguments: `--version` and `--help` answered before the command's
    module (and torch) is imported, then its `main(argv)`."""
    if "--version" in argv:
        print(f"synthdata {__version__}")
        return 0
    if any(token in HELP_FLAGS for token in argv):
        text = fast_help(name, argv)
        if text is not None:
            print(text)
            return 0
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(argv)


def run_file(stem: str, argv: list[str]) -> int:
    """What a launch file `synthdata/STEM.py` runs: the command whose module is
    `synthdata.commands.STEM` (`inspection.py` is the `inspect` command)."""
    name = next(n for n, (module, _) in COMMANDS.items() if module == f"synthdata.commands.{stem}")
    return run_command(name, argv)


if __name__ == "__main__":
    sys.exit(main())
