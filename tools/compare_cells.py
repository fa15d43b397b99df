"""Compare the cells of two study variants that may live in different studies (e.g. other data
subsets, which one study cannot vary): mIoU per seed, the difference paired by seed with a
t-interval, and Welch's interval of the two means.

    python tools/compare_cells.py RUN_DIR_A VARIANT_A RUN_DIR_B VARIANT_B [confidence=0.95]

Prints A minus B in mIoU points. Seeds present in both are paired; Welch's interval uses every
seed of each side.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from synthdata.experiments.plan import slug  # noqa: E402
from synthdata.metrics.intervals import t_interval  # noqa: E402


def mious(run_dir: Path, variant: str) -> dict[int, float]:
    cells = sorted((run_dir / "cells" / slug(variant)).glob("seed-*/result.json"))
    if not cells:
        raise SystemExit(f"no finished cells of variant '{variant}' under {run_dir / 'cells'}")
    return {int(p.parent.name.split("-")[1]): 100 * json.loads(p.read_text())["miou"] for p in cells}


def main(argv: list[str]) -> int:
    args = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    if len(args) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    confidence = float(options.get("confidence", 0.95))
    a, b = mious(Path(args[0]), args[1]), mious(Path(args[2]), args[3])
    seeds = sorted(set(a) & set(b))
    print(f"A = {args[1]} ({args[0]}): {len(a)} seeds, {np.mean(list(a.values())):.1f} +- "
          f"{np.std(list(a.values()), ddof=1):.1f}")
    print(f"B = {args[3]} ({args[2]}): {len(b)} seeds, {np.mean(list(b.values())):.1f} +- "
          f"{np.std(list(b.values()), ddof=1):.1f}")
    print("| seed | A | B | A - B |")
    print("| --- | --- | --- | --- |")
    for seed in seeds:
        print(f"| {seed} | {a[seed]:.1f} | {b[seed]:.1f} | {a[seed] - b[seed]:+.1f} |")
    paired = t_interval([a[s] - b[s] for s in seeds], confidence)
    welch = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False).confidence_interval(confidence)
    mean = np.mean(list(a.values())) - np.mean(list(b.values()))
    pct = round(100 * confidence)
    print(f"A - B paired by seed ({len(seeds)}): {paired.mean:+.1f} [{paired.lo:+.1f}, {paired.hi:+.1f}] ({pct}% t)")
    print(f"A - B, Welch: {mean:+.1f} [{welch.low:+.1f}, {welch.high:+.1f}] ({pct}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
