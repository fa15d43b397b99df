"""`synthdata compare REPORT [REPORT ...] [out=DIR]`: evaluation reports side by side (a table
and per-class IoU bars), e.g. real only vs real + synthetic.
"""

from __future__ import annotations

import sys

from synthdata.metrics.report import compare_reports, read_report


def main(argv: list[str] | None = None) -> int:
    """`synthdata compare REPORT [REPORT...] [out=DIR]` (default out: the current folder)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(token in ("-h", "--help") for token in argv):
        print(__doc__.strip() + "\n\narguments: REPORT.json|DIR (one or more), out=DIR (default: the current folder)")
        return 0
    out = "."
    paths = []
    for token in argv:
        if token.startswith("out="):
            out = token[4:]
        else:
            paths.append(token)
    if not paths:
        print("usage: synthdata compare REPORT.json|DIR [...] [out=DIR]", file=sys.stderr)
        return 2
    try:
        reports = [read_report(p) for p in paths]
        md = compare_reports(reports, out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md.read_text())
    print(f"compared {len(reports)} reports -> {md} and {md.with_suffix('.png')}")
    return 0

