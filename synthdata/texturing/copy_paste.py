"""Class-preserving object copy-paste on label maps (Ghiasi et al., "Simple Copy-Paste is a Strong
Data Augmentation Method for Instance Segmentation", CVPR 2021, applied to label maps).

Copy-paste (`produce.copy_paste=N`, see `paste_objects`): objects are the connected components
of the training layouts no larger than 10% of the frame (an `ObjectPool`; with composite
texturing, the thing segments of the run's segment bank, so each pasted object carries its own
real pixels, see `synthdata.texturing.pipeline`). Per pasted object: a class by inverse pixel
frequency of the classes (`produce.copy_paste_choice=inverse_frequency`; `uniform`: any object
equally likely) among `produce.copy_paste_classes` (default: every class with objects), an
object of that class, a horizontal flip with probability 1/2, a scale uniform in
`produce.copy_paste_scale` ([0.8, 1.25] standard, [0.1, 2.0] large jitter), and a place:
`uniform` (anywhere in the frame), `class` (vertical centre drawn from where objects of that
class sit in real layouts, horizontal uniform) or `donor` (where the object was in its own
frame, as Ghiasi et al. paste).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from synthdata.texturing.bank_building import components

PASTE_CHOICES = ("inverse_frequency", "uniform")
PASTE_POSITIONS = ("uniform", "class", "donor")


def copy_paste_objects(
    layout: np.ndarray,
    donor: np.ndarray,
    rng: np.random.Generator,
    *,
    num_objects: int,
    ignore_index: int = 255,
    classes: Sequence[int] | None = None,
    max_object_fraction: float = 0.1,
    min_object_pixels: int = 16,
    tries: int = 8,
) -> tuple[np.ndarray, int]:
    """Paste up to `num_objects` connected objects of `donor` into `layout` at random places.

    Objects are connected regions of one class (of `classes`, or any class) no larger than
    `max_object_fraction` of the image, so stuff such as road or sky is never moved. Pasted
    pixels keep their class, and a paste that would erase a class present in `layout` is
    retried elsewhere (at most `tries` times), so the result holds every class of the original.
    Returns `(new_layout, objects_pasted)`.
    """
    out = layout.copy()
    height, width = layout.shape
    objects = _objects(donor, ignore_index, classes, max_object_fraction * height * width, min_object_pixels)
    if not objects:
        return out, 0
    pasted = 0
    for _ in range(num_objects):
        cls, mask = objects[int(rng.integers(len(objects)))]
        if rng.random() < 0.5:
            mask = mask[:, ::-1]
        mh, mw = mask.shape
        for _ in range(tries):
            top = int(rng.integers(0, height - mh + 1))
            left = int(rng.integers(0, width - mw + 1))
            region = out[top : top + mh, left : left + mw]
            covered = region[mask]
            if _erases_a_class(out, covered, cls):
                continue
            region[mask] = cls
            pasted += 1
            break
    return out, pasted


def _objects(
    donor: np.ndarray, ignore_index: int, classes: Sequence[int] | None, max_pixels: float, min_pixels: int
) -> list[tuple[int, np.ndarray]]:
    """Connected single-class regions of `donor` as `(class, mask cropped to its box)`."""
    found = []
    wanted = np.unique(donor) if classes is None else np.asarray(list(classes))
    for cls in wanted.tolist():
        if cls == ignore_index:
            continue
        components, count = ndimage.label(donor == cls)
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            if box is None:
                continue
            mask = components[box] == index
            area = int(mask.sum())
            if min_pixels <= area <= max_pixels:
                found.append((int(cls), mask))
    return found


def _erases_a_class(layout: np.ndarray, covered: np.ndarray, cls: int) -> bool:
    values, counts = np.unique(covered, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist()):
        if value != cls and count >= int((layout == value).sum()):
            return True
    return False


class ObjectPool:
    """Pasteable objects: per object its class, mask (bool, cropped to its box), frame size,
    centre (y, x) as fractions of its frame, source sample id, component index and bank segment
    (None without a bank); `frequency[c]` is class c's share of labelled pixels."""

    def __init__(self, objects: list[dict[str, Any]], frequency: np.ndarray):
        self.objects = objects
        self.frequency = np.asarray(frequency, np.float64)
        self.classes = np.array([o["cls"] for o in objects], np.int64)
        self.by_class = {int(c): np.flatnonzero(self.classes == c) for c in np.unique(self.classes)}

    def __len__(self) -> int:
        return len(self.objects)

    @classmethod
    def from_layouts(cls, layouts: Sequence[tuple[np.ndarray, str]], num_classes: int | None = None, *,
                     ignore_index: int = 255, max_object_fraction: float = 0.1,
                     min_object_pixels: int = 16) -> "ObjectPool":
        """Components of `(layout, id)` pairs, in the bank's order (id, class, raster order)."""
        objects: list[dict[str, Any]] = []
        counts = np.zeros(max(num_classes or 0, 1), np.float64)
        for layout, sid in sorted(layouts, key=lambda pair: pair[1]):
            height, width = layout.shape
            values = np.bincount(layout[layout != ignore_index].ravel().astype(np.int64))
            if len(values) > len(counts):
                counts = np.pad(counts, (0, len(values) - len(counts)))
            counts[: len(values)] += values
            for c in np.flatnonzero(values).tolist():
                labels, order, stats, centroids = components(layout, c)
                for index, j in enumerate(order):
                    x, y, w, h, area = (int(v) for v in stats[j])
                    if min_object_pixels <= area <= max_object_fraction * height * width:
                        objects.append({"cls": c, "mask": labels[y:y + h, x:x + w] == j, "frame": (height, width),
                                        "centre": (float(centroids[j][1]) / height, float(centroids[j][0]) / width),
                                        "source": sid, "component": index, "segment": None})
        return cls(objects, counts / max(counts.sum(), 1.0))

    @classmethod
    def from_bank(cls, bank: Any, *, max_object_fraction: float = 0.1) -> "ObjectPool":
        """The bank's thing segments (region classes never move) no larger than
        `max_object_fraction` of the frame; each object keeps its bank `segment`."""
        height, width = bank.resolution
        objects = []
        for s in range(len(bank)):
            c = int(bank.seg_class[s])
            if bank.region[c] or bank.seg_area[s] > max_object_fraction * height * width:
                continue
            objects.append({"cls": c, "mask": bank.mask(s), "frame": (height, width),
                            "centre": tuple(float(v) for v in bank.seg_centre[s]), "source": bank.source_of(s),
                            "component": int(bank.seg_component[s]), "segment": s})
        area = np.bincount(bank.seg_class, weights=bank.seg_area, minlength=len(bank.classes))
        return cls(objects, area / max(area.sum(), 1.0))

    def class_weights(self, classes: Sequence[int] | None, choice: str) -> tuple[np.ndarray, np.ndarray]:
        """(classes with objects, probability of each) for `choice`."""
        eligible = sorted(self.by_class) if classes is None else [c for c in sorted(self.by_class) if c in set(classes)]
        eligible_arr = np.asarray(eligible, np.int64)
        if not eligible:
            return eligible_arr, np.zeros(0)
        if choice == "inverse_frequency":
            freq = np.array([self.frequency[c] if c < len(self.frequency) else 0.0 for c in eligible])
            weights = 1.0 / np.maximum(freq, 1e-12)
        else:  # uniform over objects: a class in proportion to its object count
            weights = np.array([len(self.by_class[c]) for c in eligible], np.float64)
        return eligible_arr, weights / weights.sum()


def paste_objects(
    layout: np.ndarray,
    pool: ObjectPool,
    rng: np.random.Generator,
    *,
    num_objects: int,
    classes: Sequence[int] | None = None,
    choice: str = "inverse_frequency",
    scale: Sequence[float] = (0.8, 1.25),
    flip: bool = True,
    position: str = "uniform",
    tries: int = 8,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Paste up to `num_objects` objects of `pool` into `layout` (see the module docstring).
    A paste that would erase a class of the layout is retried elsewhere (at most `tries`
    times). Returns `(new_layout, records)`, one record per pasted object: class, class_index,
    source, source_component, segment, flip, scale and box [y0, x0, y1, x1] of the scaled mask
    in the frame (it may reach outside; the outside part is clipped)."""
    if choice not in PASTE_CHOICES:
        raise ValueError(f"produce.copy_paste_choice must be one of {', '.join(PASTE_CHOICES)}, got {choice!r}")
    if position not in PASTE_POSITIONS:
        raise ValueError(f"produce.copy_paste_position must be one of {', '.join(PASTE_POSITIONS)}, got {position!r}")
    lo, hi = (float(v) for v in scale)
    if not 0 < lo <= hi:
        raise ValueError(f"produce.copy_paste_scale must be [low, high] with 0 < low <= high, got {list(scale)}")
    out = layout.copy()
    height, width = layout.shape
    eligible, probs = pool.class_weights(classes, choice)
    records: list[dict[str, Any]] = []
    if len(eligible) == 0:
        return out, records
    for _ in range(num_objects):
        cls = int(eligible[int(rng.choice(len(eligible), p=probs))])
        members = pool.by_class[cls]
        obj = pool.objects[int(members[int(rng.integers(len(members)))])]
        flipped = bool(flip and rng.random() < 0.5)
        s = float(rng.uniform(lo, hi)) if hi > lo else lo
        fh, fw = obj["frame"]
        mh, mw = obj["mask"].shape
        th, tw = max(1, round(mh * s * height / fh)), max(1, round(mw * s * width / fw))
        mask = obj["mask"][:, ::-1] if flipped else obj["mask"]
        mask = mask[_nearest(mh, th)][:, _nearest(mw, tw)]
        for _ in range(tries):
            if position == "donor":
                cy, cx = obj["centre"]
                cx = 1.0 - cx if flipped else cx
            elif position == "class":
                other = pool.objects[int(members[int(rng.integers(len(members)))])]
                cy, cx = other["centre"][0], float(rng.random())
            else:
                cy = cx = None
            if cy is None:
                top = int(rng.integers(min(0, height - th), max(0, height - th) + 1))
                left = int(rng.integers(min(0, width - tw), max(0, width - tw) + 1))
            else:
                top, left = int(round(cy * height - th / 2)), int(round(cx * width - tw / 2))
            fy0, fx0, fy1, fx1 = max(0, top), max(0, left), min(height, top + th), min(width, left + tw)
            if fy0 >= fy1 or fx0 >= fx1:
                continue
            part = mask[fy0 - top: fy1 - top, fx0 - left: fx1 - left]
            region = out[fy0:fy1, fx0:fx1]
            if not part.any() or _erases_a_class(out, region[part], cls):
                continue
            region[part] = cls
            records.append({"class_index": cls, "source": obj["source"], "source_component": obj["component"],
                            "segment": obj["segment"], "flip": flipped, "scale": round(s, 6),
                            "box": [top, left, top + th, left + tw]})
            break
    return out, records


def _nearest(source: int, target: int) -> np.ndarray:
    """Nearest source index of each of `target` rows (pixel centres aligned, exact integers);
    the same rule as `texturing.nearest_coords`."""
    t = np.arange(target, dtype=np.int64)
    return ((2 * t + 1) * source) // (2 * target)
