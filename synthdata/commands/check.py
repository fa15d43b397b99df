"""`synthdata check recipe=R [split=train] [limit=N] [data.root=...]`: scan a dataset split.

Reports pairs, image sizes, label values found against the declared classes, pixel frequency
per class and every problem with its file. Exit code 0 when clean, 1 when problems were found.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
from tqdm import tqdm

from synthdata.core.contract import DatasetError
from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import parse_command_line
from synthdata.data.readers.base import DatasetReader, check_pair, make_reader


def scan(reader: DatasetReader, limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Read every pair of `reader` at native size; returns counts, sizes, labels and problems."""

    classes = reader.classes
    n = len(reader) if limit is None else min(limit, len(reader))
    sizes: Counter = Counter()
    values: Counter = Counter()
    problems: list[str] = []
    depth_known = depth_total = 0
    for i in tqdm(range(n), desc=f"check {reader.name}/{reader.split}", unit="pair", disable=not progress):
        try:
            sample = reader.read_native(i)
            where = str(sample["meta"].get("path", reader.items[i]))
            check_pair(sample, where)
        except DatasetError as e:
            problems.append(str(e))
            continue
        sizes[(sample["image"].shape[1], sample["image"].shape[0])] += 1
        found, counts = np.unique(sample["layout"], return_counts=True)
        values.update(dict(zip(found.tolist(), counts.tolist())))
        bad = [v for v in found.tolist() if v != classes.ignore_index and not 0 <= v < classes.num_classes]
        if bad:
            pixels = int(sum(counts[found.tolist().index(v)] for v in bad))
            problems.append(
                f"{sample['meta'].get('label_path', where)}: {pixels} pixels have labels {bad[:10]} outside 0..{classes.num_classes - 1} "
                f"(ignore={classes.ignore_index})"
            )
        if sample.get("depth") is not None:
            depth = sample["depth"]
            depth_known += int((np.isfinite(depth) & (depth > 0)).sum())
            depth_total += depth.size
    return {
        "pairs": n,
        "sizes": sizes,
        "values": values,
        "problems": problems,
        "depth_coverage": depth_known / depth_total if depth_total else None,
    }


def format_report(reader: DatasetReader, result: dict[str, Any]) -> str:
    classes = reader.classes
    values: Counter = result["values"]
    total = sum(values.values()) or 1
    lines = [f"dataset {reader.name}, split {reader.split}, root {reader.root}", f"pairs: {result['pairs']}"]
    sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in result["sizes"].most_common())
    lines.append(f"image sizes (WxH): {sizes or 'none'}")
    if result["sizes"]:
        lines.append(size_advice(result["sizes"].most_common(1)[0][0], reader.cfg.height, reader.cfg.width))
    declared = set(range(classes.num_classes))
    found = set(values) - {classes.ignore_index}
    lines.append(
        f"label values: {len(found & declared)} of {classes.num_classes} declared classes present"
        + (f"; never seen: {sorted(declared - found)[:20]}" if declared - found else "")
        + (f"; undeclared values: {sorted(found - declared)[:20]}" if found - declared else "")
    )
    lines.append("pixel frequency per class:")
    for c, name in enumerate(classes.names):
        lines.append(f"  {c:>3} {name:<24} {100.0 * values.get(c, 0) / total:7.3f} %")
    lines.append(f"  ign {'(ignore ' + str(classes.ignore_index) + ')':<24} "
                 f"{100.0 * values.get(classes.ignore_index, 0) / total:7.3f} %")
    if result["depth_coverage"] is not None:
        lines.append(f"depth: known on {100.0 * result['depth_coverage']:.1f} % of pixels")
    lines.append(f"problems: {len(result['problems'])}")
    lines += [f"  - {p}" for p in result["problems"]]
    return "\n".join(lines)


def size_advice(native: tuple[int, int], height: int, width: int) -> str:
    """One line: the recipe's size against the images' most common (W, H), and sizes that keep it
    and that the GAN stages (layout, SPADE) can build, as keys to paste."""
    from synthdata.models.blocks import base_grid, nearest_valid_sizes  # noqa: PLC0415  (loads torch)

    w, h = native
    now = f"data.height={height} data.width={width}"
    try:
        base_grid(h, w)
        fits = f"data.height={h} data.width={w} (native; every stage can build it)"
    except ValueError:
        fits = "nearest the GAN stages can build: " + ", ".join(
            f"data.height={s.split('x')[0]} data.width={s.split('x')[1]}" for s in nearest_valid_sizes(h, w, count=2))
    same = "the images' own size" if (h, w) == (height, width) else f"images are {h}x{w}, resized"
    return f"recipe size: {now} ({same}); {fits}"


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"split": "train", "limit": None})
    start = time.perf_counter()
    try:
        reader = make_reader(recipe.data, str(args["split"]))
    except DatasetError as e:
        # Pairing problems (an image without its mask) are found while listing the split.
        print(f"problems: 1\n  - {e}")
        print(f"check {recipe.data.reader}/{args['split']}: could not list the split: 1 problem")
        return 1
    result = scan(reader, args["limit"])
    print(format_report(reader, result))
    elapsed = time.perf_counter() - start
    status = "clean" if not result["problems"] else f"{len(result['problems'])} problems"
    print(
        f"check {reader.name}/{reader.split}: {result['pairs']} pairs, {len(result['sizes'])} image "
        f"sizes, {status} ({result['pairs'] / max(elapsed, 1e-9):.1f} pairs/s)"
    )
    return 0 if not result["problems"] else 1


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)

