"""Compare the cells of two study variants that may live in different studies (e.g. other data
subsets, which one study cannot vary): mIoU per seed, the difference paired by seed with a
t-interval, and Welch's interval of the two means; with `per_class=true` also each class's IoU
difference paired by seed.

    python tools/compare_cells.py RUN_DIR_A VARIANT_A RUN_DIR_B VARIANT_B [confidence=0.95] [per_class=true] [seeds=8,9,10]

Prints A minus B in mIoU (IoU) points. Seeds present in both are paired; Welch's interval uses
every seed of each side. `seeds=` keeps only those seeds on both sides (a replication's new
seeds). A class whose IoU is undefined in a cell (NaN) is paired over the other seeds.
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


def fail(message: str):
    print(message, file=sys.stderr)
    raise SystemExit(2)


def results(run_dir: Path, variant: str) -> dict[int, dict]:
    cells = sorted((run_dir / "cells" / slug(variant)).glob("seed-*/result.json"))
    if not cells:
        fail(f"no finished cells of variant '{variant}' under {run_dir / 'cells'}")
    return {int(p.parent.name.split("-")[1]): json.loads(p.read_text()) for p in cells}


def per_class_table(a: dict[int, dict], b: dict[int, dict], seeds: list[int], confidence: float) -> list[str]:
    """Markdown rows: each class's mean IoU in A and B over the paired seeds and A - B with its
    t-interval; exits with one line when a cell has no per-class IoU or the two name other classes."""
    for side in (a, b):
        for seed in seeds:
            if "per_class_iou" not in side[seed] or "classes" not in side[seed]:
                fail(f"per_class=true: the cell of seed {seed} has no per-class IoU "
                                 "(result.json lacks per_class_iou or classes)")
    classes = a[seeds[0]]["classes"]
    if any(side[s]["classes"] != classes for side in (a, b) for s in seeds):
        fail("per_class=true: the two variants' cells name different classes")
    pct = round(100 * confidence)
    rows = ["| class | A | B | A - B [" + f"{pct}% t] |", "| --- | --- | --- | --- |"]
    for k, name in enumerate(classes):
        pairs = [(100 * float(a[s]["per_class_iou"][k]), 100 * float(b[s]["per_class_iou"][k])) for s in seeds]
        pairs = [(x, y) for x, y in pairs if np.isfinite(x) and np.isfinite(y)]
        if not pairs:
            rows.append(f"| {name} | - | - | - |")
            continue
        d = t_interval([x - y for x, y in pairs], confidence)
        rows.append(f"| {name} | {np.mean([x for x, _ in pairs]):.1f} | {np.mean([y for _, y in pairs]):.1f} | "
                    f"{d.mean:+.1f} [{d.lo:+.1f}, {d.hi:+.1f}] |")
    return rows


def main(argv: list[str]) -> int:
    args = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    if len(args) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    confidence = float(options.get("confidence", 0.95))
    per_class = options.get("per_class", "false").lower() in ("1", "true", "yes")
    cells_a, cells_b = results(Path(args[0]), args[1]), results(Path(args[2]), args[3])
    if "seeds" in options:
        try:
            wanted = {int(v) for v in options["seeds"].split(",") if v.strip()}
        except ValueError:
            fail(f"seeds= must be comma-separated integers, e.g. seeds=8,9,10, got {options['seeds']!r}")
        cells_a = {k: v for k, v in cells_a.items() if k in wanted}
        cells_b = {k: v for k, v in cells_b.items() if k in wanted}
        if not cells_a or not cells_b:
            fail(f"seeds={options['seeds']}: no finished cells of those seeds on "
                 f"{'both sides' if not (cells_a or cells_b) else 'side ' + ('A' if not cells_a else 'B')}")
    a = {seed: 100 * r["miou"] for seed, r in cells_a.items()}
    b = {seed: 100 * r["miou"] for seed, r in cells_b.items()}
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
    if per_class and seeds:
        print(f"per class, IoU paired by seed ({len(seeds)}):")
        print("\n".join(per_class_table(cells_a, cells_b, seeds, confidence)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
