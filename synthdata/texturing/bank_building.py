"""Building a segment bank from a reader: connected components of every class, shape thumbnails,
region crops, and `load_or_build` (build once into the run dir, then reuse). The bank itself, its
file format and its checks are `synthdata.texturing.segment_bank`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from synthdata.core.contract import ClassInfo
from synthdata.texturing.segment_bank import (
    CONNECTIVITY,
    DEFAULT_GRID,
    DEFAULT_KEEP_LARGEST,
    DEFAULT_MIN_PIXELS,
    DEFAULT_REGION_BORDER,
    DEFAULT_REGION_FRACTION,
    FORMAT,
    VERSION,
    BankError,
    SegmentBank,
    _jsonable,
    _pack,
    load_bank,
)


def components(layout: np.ndarray, cls: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Connected components (8-connectivity) of class `cls` in `layout`, in raster order of each
    component's first pixel (the numbering of `scipy.ndimage.label`): `(labels, order, stats,
    centroids)` of `cv2.connectedComponentsWithStats`, where component i is `labels == order[i]`
    with stats `stats[order[i]]` (x, y, w, h, area) and centroid (x, y) `centroids[order[i]]`."""
    mask = (layout == cls).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStatsWithAlgorithm(
        mask, CONNECTIVITY, cv2.CV_32S, cv2.CCL_GRANA)  # the fastest with stats here; order is fixed below
    if n <= 2:
        return labels, np.arange(1, n), stats, centroids
    tops = stats[1:, cv2.CC_STAT_TOP]
    width = layout.shape[1]
    first = np.array([top * width + int(np.argmax(labels[top] == j)) for j, top in enumerate(tops, start=1)])
    return labels, 1 + np.argsort(first, kind="stable"), stats, centroids


def shape_thumbnail(mask: np.ndarray, grid: int) -> np.ndarray:
    """The mask's occupancy on a grid x grid raster of its box, uint8 0..255."""
    thumb = cv2.resize(mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    return np.rint(np.clip(thumb, 0, 1) * 255).astype(np.uint8)


def region_rule(fraction: float = DEFAULT_REGION_FRACTION, border: float = DEFAULT_REGION_BORDER) -> str:
    return f"median frame share >= {fraction} and share of pixels in border-touching components >= {border}"


class RegionStats:
    """What the region rule reads (see `synthdata.texturing.segment_bank`), per class: its share of
    the frame in each image where it occurs, and its pixels in components that touch the border."""

    def __init__(self, num_classes: int):
        self.coverage: list[list[float]] = [[] for _ in range(num_classes)]
        self.border_px, self.total_px = np.zeros(num_classes), np.zeros(num_classes)

    def add(self, cls: int, stats: np.ndarray, height: int, width: int) -> None:
        """Class `cls` of one image: `stats` of `components` (row 0 is the background)."""
        self.coverage[cls].append(float(stats[1:, cv2.CC_STAT_AREA].sum()) / (height * width))
        for x, y, w, h, area in stats[1:, :5].tolist():
            self.border_px[cls] += area * (x == 0 or y == 0 or x + w == width or y + h == height)
            self.total_px[cls] += area

    def regions(self, fraction: float = DEFAULT_REGION_FRACTION, border: float = DEFAULT_REGION_BORDER) -> np.ndarray:
        """(num_classes,) bool: the region classes by the rule."""
        share = np.divide(self.border_px, self.total_px, out=np.zeros(len(self.total_px)), where=self.total_px > 0)
        median_cov = np.array([np.median(v) if v else 0.0 for v in self.coverage])
        return (median_cov >= fraction) & (share >= border)


def thing_classes(layouts: Iterable[np.ndarray], num_classes: int, *, ignore_index: int = 255,
                  fraction: float = DEFAULT_REGION_FRACTION, border: float = DEFAULT_REGION_BORDER) -> list[int]:
    """The classes of `layouts` that the region rule does not call regions: the objects
    (`produce.copy_paste_classes: auto`), in class order. Same rule and numbers as the bank's."""
    region_stats = RegionStats(num_classes)
    present = np.zeros(num_classes, bool)
    for layout in layouts:
        height, width = layout.shape
        for c in np.unique(layout).tolist():
            if c != ignore_index and 0 <= c < num_classes:
                present[c] = True
                region_stats.add(c, components(layout, c)[2], height, width)
    return np.flatnonzero(present & ~region_stats.regions(fraction, border)).tolist()


def build_bank(reader: Any, classes: ClassInfo | None = None, *, min_pixels: int = DEFAULT_MIN_PIXELS,
               region_classes: Sequence[str | int] | None = None, region_fraction: float = DEFAULT_REGION_FRACTION,
               region_border: float = DEFAULT_REGION_BORDER, grid: int = DEFAULT_GRID,
               keep_largest: int = DEFAULT_KEEP_LARGEST, progress: bool = True) -> SegmentBank:
    """A segment bank of every sample of `reader` (a `DatasetReader` or any sequence of samples
    with `meta.id`), for `classes` (default: the reader's). See the module docstring."""
    classes = classes if classes is not None else reader.classes
    names, ignore = tuple(classes.names), int(classes.ignore_index)
    num_classes = len(names)
    if min_pixels < 1:
        raise BankError(f"segment bank: min_pixels must be >= 1, got {min_pixels}")
    where = f"{getattr(reader, 'name', type(reader).__name__)}/{getattr(reader, 'split', '?')}"
    if len(reader) == 0:
        raise BankError(f"segment bank: the reader {where} has no samples to cut segments from")
    per_sample, resolution, all_depth, region_stats = _cut_segments(reader, num_classes, ignore, where, progress)
    region, rule = _region_classes(region_classes, names, region_stats, region_fraction, region_border)
    source_ids, keep = _kept_segments(per_sample, min_pixels, keep_largest)
    segs = [row[1] for row in keep]
    arrays = _pack([d["cls"] for d in segs], [row[0] for row in keep], [d["component"] for d in segs],
                   [d["box"] for d in segs], [d["area"] for d in segs], [d["centre"] for d in segs],
                   [shape_thumbnail(d["mask"], grid) for d in segs], [d["pixels"] for d in segs],
                   [d["mask"].ravel() for d in segs], [d["depth"] for d in segs] if all_depth else None)
    counts = {n: 0 for n in names}
    sums = np.zeros((num_classes, 3))
    for d in segs:
        counts[names[d["cls"]]] += 1
        sums[d["cls"]] += d["pixels"].sum(axis=0)
    pix_per_class = np.zeros(num_classes)
    for d in segs:
        pix_per_class[d["cls"]] += len(d["pixels"])
    mean_colours = {names[c]: [int(round(v)) for v in sums[c] / pix_per_class[c]]
                    for c in range(num_classes) if pix_per_class[c] > 0}
    header = {
        "format": FORMAT, "version": VERSION, "classes": list(names), "ignore_index": ignore,
        "resolution": [int(resolution[0]), int(resolution[1])],
        "dataset": str(getattr(reader, "name", "")), "split": str(getattr(reader, "split", "")),
        "sources": source_ids, "num_sources": len(source_ids),
        "sources_sha256": hashlib.sha256("\n".join(source_ids).encode()).hexdigest(),
        "num_segments": len(segs), "counts": counts, "mean_colours": mean_colours,
        "region_classes": [names[c] for c in range(num_classes) if region[c]], "region_rule": rule,
        "has_depth": bool(all_depth),
        "settings": _jsonable({
            "min_pixels": int(min_pixels), "region_fraction": float(region_fraction),
            "region_border": float(region_border), "grid": int(grid), "keep_largest": int(keep_largest),
            "connectivity": CONNECTIVITY,
            "region_classes_asked": None if region_classes is None else [
                r if isinstance(r, str) else names[int(r)] for r in region_classes],
        }),
        "grid": int(grid),
    }
    bank = SegmentBank(header, arrays)
    if len(bank) == 0:
        raise BankError(f"segment bank: the {len(source_ids)} samples of {where} hold no labelled component "
                        f"(every pixel is ignore_index {ignore})")
    return bank



def _cut_segments(reader: Any, num_classes: int, ignore: int, where: str,
                  progress: bool) -> tuple[dict[str, dict[str, Any]], tuple[int, int], bool, RegionStats]:
    """Every labelled component of every sample of `reader`, per sample id; the samples' one
    resolution, whether all had depth, and the statistics of the region rule."""
    per_sample: dict[str, dict[str, Any]] = {}
    resolution: tuple[int, int] | None = None
    all_depth = True
    region_stats = RegionStats(num_classes)
    for i in tqdm(range(len(reader)), desc="segment bank", disable=not progress, leave=False, mininterval=1.0):
        sample = reader[i]
        meta = sample.get("meta", {})
        if "id" not in meta:
            raise BankError(f"segment bank: sample {i} of {where} has no meta id")
        sid = str(meta["id"])
        if sid in per_sample:
            raise BankError(f"segment bank: sample id '{sid}' occurs twice in {where}")
        image, layout = sample["image"], np.asarray(sample["layout"])
        height, width = layout.shape
        if resolution is None:
            resolution = (height, width)
        elif resolution != (height, width):
            raise BankError(f"segment bank: sample '{sid}' is {height}x{width}, the first was "
                            f"{resolution[0]}x{resolution[1]}; set data.height/data.width so all samples "
                            f"share one size")
        depth = sample.get("depth")
        all_depth &= depth is not None
        present = [int(c) for c in np.unique(layout) if int(c) != ignore]
        bad = [c for c in present if not 0 <= c < num_classes]
        if bad:
            raise BankError(f"segment bank: sample '{sid}' has labels {bad[:5]} outside 0..{num_classes - 1}")
        segs = []
        for c in present:
            labels, order, stats, centroids = components(layout, c)
            region_stats.add(c, stats, height, width)
            for index, j in enumerate(order):
                x, y, w, h, area = (int(v) for v in stats[j])
                box_mask = labels[y:y + h, x:x + w] == j
                segs.append({
                    "cls": c, "component": index, "box": (y, x, y + h, x + w), "area": area,
                    "centre": (float(centroids[j][1]) / height, float(centroids[j][0]) / width),
                    "mask": box_mask, "pixels": image[y:y + h, x:x + w][box_mask],
                    "depth": None if depth is None else np.asarray(depth, np.float32)[y:y + h, x:x + w][box_mask],
                })
        per_sample[sid] = {"segments": segs}
    assert resolution is not None
    return per_sample, resolution, all_depth, region_stats


def _region_classes(region_classes: Sequence[str | int] | None, names: tuple[str, ...], region_stats: RegionStats,
                    region_fraction: float, region_border: float) -> tuple[np.ndarray, str]:
    """(which classes are regions, the rule that said so): the listed ones, or the region rule."""
    num_classes = len(names)
    if region_classes is not None:
        region = np.zeros(num_classes, bool)
        for r in region_classes:
            if isinstance(r, str):
                if r not in names:
                    raise BankError(f"segment bank: region class '{r}' is not one of {list(names)}")
                region[names.index(r)] = True
            else:
                if not 0 <= int(r) < num_classes:
                    raise BankError(f"segment bank: region class index {r} is outside 0..{num_classes - 1}")
                region[int(r)] = True
        rule = "listed"
    else:
        region = region_stats.regions(region_fraction, region_border)
        rule = region_rule(region_fraction, region_border)
    return region, rule


def _kept_segments(per_sample: dict[str, dict[str, Any]], min_pixels: int,
                   keep_largest: int) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """(the sorted source ids, the kept (source index, segment) rows): ordered by source id, class,
    component; segments under `min_pixels` dropped, except a class's `keep_largest` largest where
    none of it is that large."""
    source_ids = sorted(per_sample)
    rows = []
    for s, sid in enumerate(source_ids):
        for seg in sorted(per_sample[sid]["segments"], key=lambda d: (d["cls"], d["component"])):
            rows.append((s, seg))
    keep = [row for row in rows if row[1]["area"] >= min_pixels]
    kept_classes = {row[1]["cls"] for row in keep}
    rescued = []
    for c in sorted({row[1]["cls"] for row in rows} - kept_classes):
        candidates = [row for row in rows if row[1]["cls"] == c]
        candidates.sort(key=lambda row: -row[1]["area"])  # stable: bank order among equal areas
        rescued.extend(candidates[:keep_largest])
    if rescued:
        order = {id(row): k for k, row in enumerate(rows)}
        keep = sorted(keep + rescued, key=lambda row: order[id(row)])
    return source_ids, keep


def load_or_build(path: str | os.PathLike, reader: Any, classes: ClassInfo | None = None, *,
                  resolution: Sequence[int] | None = None, progress: bool = True, log=print,
                  **build_kwargs: Any) -> SegmentBank:
    """The bank at `path` when it exists (checked against `reader`'s classes, resolution and number
    of samples and against `build_kwargs`), else one built from `reader` and saved there
    atomically. `resolution` defaults to the reader's `cfg.height x cfg.width` when both are set.

    Several processes may call this at once: each builds the same bank and the last rename wins
    (the content is identical); better, build on the main process first and wait.
    """
    path = Path(path)
    classes = classes if classes is not None else reader.classes
    if resolution is None:
        cfg = getattr(reader, "cfg", None)
        if cfg is not None and getattr(cfg, "height", None) and getattr(cfg, "width", None):
            resolution = (int(cfg.height), int(cfg.width))
    settings = _settings_of(build_kwargs, classes)
    if path.is_file():
        bank = load_bank(path, classes, resolution, num_sources=len(reader), settings=settings)
        for key in ("dataset", "split"):
            mine, theirs = bank.header.get(key), str(getattr(reader, "name" if key == "dataset" else key, ""))
            if mine and theirs and mine != theirs:
                raise BankError(f"segment bank {path} was built from {key} '{mine}', not '{theirs}'; "
                                f"delete it or use another run dir")
        return bank
    bank = build_bank(reader, classes, progress=progress, **build_kwargs)
    bank.check(classes, resolution)
    bank.save(path)
    if log is not None:
        log(bank.summary())
    return bank


def _settings_of(build_kwargs: dict[str, Any], classes: ClassInfo) -> dict[str, Any]:
    unknown = set(build_kwargs) - {"min_pixels", "region_classes", "region_fraction", "region_border", "grid",
                                   "keep_largest"}
    if unknown:
        raise TypeError(f"load_or_build: unknown build settings {sorted(unknown)}")
    defaults = {"min_pixels": DEFAULT_MIN_PIXELS, "region_fraction": DEFAULT_REGION_FRACTION,
                "region_border": DEFAULT_REGION_BORDER, "grid": DEFAULT_GRID, "keep_largest": DEFAULT_KEEP_LARGEST,
                "connectivity": CONNECTIVITY}
    settings = {**defaults, **{k: v for k, v in build_kwargs.items() if k != "region_classes"}}
    asked = build_kwargs.get("region_classes")
    settings["region_classes_asked"] = None if asked is None else [
        r if isinstance(r, str) else classes.names[int(r)] for r in asked]
    settings = {k: (float(v) if k in ("region_fraction", "region_border") else v) for k, v in settings.items()}
    return settings
