"""`synthdata evaluate WHAT ...`: miou | fid | fidelity | layouts, each a command module with `main`
(`evaluate_miou.py`, ...; the measures themselves live in `synthdata.metrics`)."""

from __future__ import annotations

import difflib
import importlib
import sys

EVALUATIONS = {
    "miou": "synthdata.commands.evaluate_miou",
    "fid": "synthdata.commands.evaluate_fid",
    "fidelity": "synthdata.commands.evaluate_fidelity",
    "layouts": "synthdata.commands.evaluate_layouts",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: synthdata evaluate {{{'|'.join(EVALUATIONS)}}} key=value ...\n\n"
              "`synthdata evaluate WHAT --help` lists the keys of WHAT.")
        return 0
    if not argv or argv[0] not in EVALUATIONS:
        given = argv[0] if argv else ""
        close = difflib.get_close_matches(given, EVALUATIONS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"usage: synthdata evaluate {{{'|'.join(EVALUATIONS)}}} key=value ...{hint}", file=sys.stderr)
        return 2
    return importlib.import_module(EVALUATIONS[argv[0]]).main(argv[1:])

