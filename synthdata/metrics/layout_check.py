"""After production: do the produced layouts look like the real ones?

A layout GAN that collapsed (the particle study's border frame: 5.6 particles per generated
layout, 17.8 per real one) or lost thin classes (CamVid's poles and people) produces data that
hurts the segmenter, and class pixel frequencies alone do not show it. So every finished
production compares the first `LAYOUTS_CHECKED` produced layouts with as many real training
layouts (the reader's train split, `data.subset` obeyed) and writes `OUT/layout_check.json`:
both sides' statistics (`metrics.layout_stats`) and one warning per class that produced layouts
hold far less often, or in far fewer objects, than real ones. It only reports; it never changes shards.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import cv2
import numpy as np

from synthdata.core.atomic import write_json_atomic
from synthdata.core.contract import ClassInfo, DatasetError
from synthdata.data.readers.base import make_reader
from synthdata.data.shards import iter_tar, resolve_urls
from synthdata.metrics.layout_stats import compare_layouts, layout_statistics, layout_warnings

if TYPE_CHECKING:
    from synthdata.core.recipe import Recipe

LAYOUTS_CHECKED = 256
CHECK_FILE = "layout_check.json"


def produced_layouts(out_dir: Path) -> Iterator[np.ndarray]:
    """The layouts of a finished production, in shard order (only layout.png is decoded)."""
    urls, _ = resolve_urls(str(out_dir))
    for url in urls:
        for raw in iter_tar(url):
            yield cv2.imdecode(np.frombuffer(raw["layout.png"], np.uint8), cv2.IMREAD_UNCHANGED)


def check_layouts(recipe: "Recipe", out_dir: Path, classes: ClassInfo) -> dict[str, Any]:
    """Write `out_dir/layout_check.json` and return it; without the real data (a production from
    checkpoints alone) it records why the check was skipped."""
    try:
        reader = make_reader(recipe.data, recipe.data.train_split)
        real = layout_statistics(
            (reader[i]["layout"] for i in range(min(len(reader), LAYOUTS_CHECKED))),
            num_classes=classes.num_classes, ignore_index=classes.ignore_index, desc="real layouts")
    except (DatasetError, OSError, ValueError) as e:
        check: dict[str, Any] = {"skipped": f"no real layouts to compare with: {e}"}
    else:
        produced = layout_statistics(
            itertools.islice(produced_layouts(out_dir), LAYOUTS_CHECKED),
            num_classes=classes.num_classes, ignore_index=classes.ignore_index, desc="produced layouts")
        check = {"real_split": f"{recipe.data.reader}:{recipe.data.train_split}", "subset": recipe.data.subset,
                 "summary": compare_layouts(real, produced), "real": real, "produced": produced,
                 "warnings": layout_warnings(real, produced, classes.names)}
    write_json_atomic(out_dir / CHECK_FILE, check)
    return check


def read_layout_check(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / CHECK_FILE
    return json.loads(path.read_text()) if path.is_file() else None
