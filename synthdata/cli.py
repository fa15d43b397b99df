"""The `synthdata` console script: `synthdata COMMAND key=value ...`.

Each command is the `main(argv)` of a module, imported only when that command runs.
"""

from __future__ import annotations

import difflib
import importlib
import sys

# command -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("synthdata.config", "print the fully resolved recipe"),
    "check": ("synthdata.check", "scan a dataset split and report problems"),
    "export": ("synthdata.export", "write a real dataset split as shards"),
    "inspect": ("synthdata.inspection", "summarise shards and write a contact sheet"),
    "train": ("synthdata.train", "train a generator stage (layout | depth | image)"),
    "produce": ("synthdata.produce", "produce synthetic shards from trained stages"),
    "segment": ("synthdata.segment", "train a segmenter on real (+ synthetic) data"),
    "refine": ("synthdata.refine", "SegGAN refinement of a segmenter"),
    "translate": ("synthdata.translate", "pix2pix / CycleGAN segmentation as translation"),
    "evaluate": ("synthdata.evaluate", "evaluate: miou | fid | fidelity | layouts"),
    "compare": ("synthdata.compare", "compare evaluation reports side by side"),
    "demo": ("synthdata.demo", "the whole pipeline on the toy world, with a report"),
    "study": ("synthdata.study", "baseline vs variants x seeds: does synthetic data pay? (intervals)"),
}


def usage() -> str:
    lines = ["usage: synthdata COMMAND [recipe=NAME] [key=value ...]", "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"synthdata: unknown command '{name}'.{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
