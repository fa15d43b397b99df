"""Composite texturing: paint a layout with real pixels from a segment bank (SIMS, Qi et al. 2018;
Simple Copy-Paste, Ghiasi et al. 2021). No training, no network.

For every connected component (8-connectivity) of every class of the layout, in order of class
index then component label (raster order of the first pixel):

1. Retrieval among the bank segments of the same class.
   - Thing classes (people, cars, poles, ...): distance in log area (as a share of the frame), log
     aspect (box width / height) and, with weight `position_weight`, vertical position.
   - Region classes (road, sky, building, ...; see `segment_bank`): distance between the boxes in
     the frame (centre and log height / width as shares of the frame), so a sky region is
     filled from a real sky crop of similar place and extent.
   The `k` nearest (ties in bank order) are scored with and without a horizontal flip
   (`flip=True`) by the soft IoU of their mask with the component's mask, both resampled to the
   bank's grid over their own boxes (mask IoU at the component's box). The highest IoU plus a
   uniform random jitter of up to `iou_jitter` wins: near-equal shapes are drawn at random,
   which is the sampler's only randomness.
2. Warp: the segment's box crop is resized to the component's box (nearest neighbour by default;
   `interp="linear"` for bilinear) and its pixels are pasted inside the component. Where the
   warped segment's mask does not cover the component, the crop's mirror fill supplies pixels
   (`SegmentBank.fill_index`), so with `interp="nearest"` and `blend="none"` every pixel inside
   a component is one of the real in-mask pixels of the segment listed for it in
   `meta["sources"]`.
3. Blend: `blend="none"` keeps hard class boundaries; `blend="gaussian"` feathers them: each
   component's mask is blurred (Gaussian, `sigma` pixels, kernel radius ceil(3 sigma)), its
   warped segment is extended over that margin, and every labelled pixel is the blur-weighted
   mean of the extended segments that reach it. Pixels farther than the radius (in the
   Chebyshev sense) from any other component keep their `blend="none"` value exactly.

Depth (`depth=True`, needs a bank with depth) comes from the same segments, warped by nearest
neighbour and never blended. For thing classes it is scaled by the pinhole factor
sqrt(segment area / component area) (both as shares of their frames), so an enlarged car comes
closer; region depth is copied as is. Unknown source depth (0 or NaN) stays unknown.

Ignore pixels (`bank.ignore_index`, or any value given as `ignore_index`) are painted the neutral
grey `ignore_fill` (default 128, 128, 128), depth 0 (unknown), and never blended.

A class present in the layout with no segment in the bank: `missing="error"` (the default) raises
`BankError` naming the class and the bank; `missing="fill"` paints its components the neutral
`ignore_fill` grey (depth 0; blended with its neighbours like any component), lists the class
under `meta["missing"]` and records those components with `"segment": None`. (A class the bank's
images show always has segments: the minimum-size filter never empties a class.)

The layout may have another resolution than the bank: retrieval compares shares of the frame.
The meta is plain JSON (ints, floats, strings, booleans, None) for a shard's `json`.

All randomness comes from the `rng` argument (a `numpy.random.Generator`, or an integer seed such
as `derive_seed(recipe_seed, shard, position)`), so a sample depends only on (layout, bank, seed)
and production is identical for any process count.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from synthdata.texturing.bank_building import components
from synthdata.texturing.segment_bank import BankError, SegmentBank

BLENDS = ("none", "gaussian")
INTERPS = ("nearest", "linear")
MISSING = ("error", "fill")
IGNORE_FILL = (128, 128, 128)


def composite(layout: np.ndarray, bank: SegmentBank, rng: np.random.Generator | int, *, blend: str = "none",
              sigma: float = 1.0, k: int = 8, depth: bool = False, interp: str = "nearest", flip: bool = True,
              position_weight: float = 0.5, iou_jitter: float = 0.05, missing: str = "error",
              ignore_index: int | None = None, ignore_fill: tuple[int, int, int] = IGNORE_FILL,
              exclude_source: str | None = None) -> dict[str, Any]:
    """Texture `layout` (H, W) with real segments of `bank`; `exclude_source` (a source image id):
    never its segments, except for a class that no other image shows (the harmoniser's training
    composites of that image). Returns `{"image": uint8 (H, W, 3),
    "depth": float32 (H, W) (only when depth=True), "meta": {"texturing": "composite", "blend",
    "sources": [one dict per component: class, class_index, component, box [y0, x0, y1, x1], area,
    segment (bank index), source (sample id), source_component, flip, iou], "missing": [...]}}`.
    See the module docstring for the method and the choices."""
    _check_arguments(bank, blend=blend, sigma=sigma, k=k, depth=depth, interp=interp, missing=missing)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(int(rng))
    layout = np.asarray(layout)
    present, absent, ignore = _classes_to_texture(layout, bank, missing=missing, ignore_index=ignore_index)
    (height, width), labels = layout.shape, layout
    fill = np.asarray(ignore_fill, np.uint8)
    frame = float(height * width)
    bank_frame = float(bank.resolution[0] * bank.resolution[1])
    pad = int(math.ceil(3 * sigma)) if blend == "gaussian" else 0
    # Where each pixel comes from: an index into bank.pixels (-1: ignore, or a missing class).
    source_index = np.full((height, width), -1, np.int64)
    image = np.empty((height, width, 3), np.uint8) if interp == "linear" else None
    if image is not None:
        image[:] = fill
    scale = np.ones((height, width), np.float32) if depth else None
    if pad:
        num = np.zeros((height, width, 3), np.float32)
        den = np.zeros((height, width), np.float32)
    sources: list[dict[str, Any]] = []
    excluded = bank.source_ids.index(exclude_source) if exclude_source in bank.source_ids else None
    for c in present:
        comp_labels, order, stats, centroids = components(labels, c)
        candidates = bank.class_segments(c)
        if excluded is not None and (bank.seg_source[candidates] != excluded).any():
            candidates = candidates[bank.seg_source[candidates] != excluded]
        region = bool(bank.region[c])
        for index, j in enumerate(order):
            x0, y0, w, h, area = (int(v) for v in stats[j])
            y1, x1 = y0 + h, x0 + w
            mask = comp_labels[y0:y1, x0:x1] == j
            entry = {"class": bank.classes[c], "class_index": c, "component": index, "box": [y0, x0, y1, x1],
                     "area": area}
            py0, px0 = max(0, y0 - pad), max(0, x0 - pad)
            py1, px1 = min(height, y1 + pad), min(width, x1 + pad)
            inner = (slice(y0 - py0, y0 - py0 + h), slice(x0 - px0, x0 - px0 + w))
            if len(candidates) == 0:  # missing == "fill": neutral grey, depth 0 (unknown)
                entry.update(segment=None, source=None, source_component=None, flip=False, iou=None)
                sources.append(entry)
                if pad:
                    patch = np.broadcast_to(fill, (py1 - py0, px1 - px0, 3))
                    _accumulate(num, den, mask, patch, py0, px0, inner, sigma)
                continue
            # 1. retrieval of a segment and whether to flip it
            s, flipped, iou = _retrieve(bank, candidates, region, (y0, x0, y1, x1), area, centroids[j][1], mask,
                                        (height, width), rng, k=k, flip=flip, position_weight=position_weight,
                                        iou_jitter=iou_jitter)
            entry.update(segment=s, source=bank.source_of(s), source_component=int(bank.seg_component[s]),
                         flip=flipped, iou=iou)
            sources.append(entry)
            # 2. warp (nearest: an index map into the segment's pixels) and paste
            fill_index = bank.fill_index(s)
            if flipped:
                fill_index = fill_index[:, ::-1]
            hs, ws = fill_index.shape
            ys = _source_coords(py0, py1, y0, h, hs)
            xs = _source_coords(px0, px1, x0, w, ws)
            gather = fill_index.take(ys, axis=0).take(xs, axis=1)
            np.copyto(source_index[y0:y1, x0:x1], gather[inner] + bank.pix_offset[s], where=mask)
            if scale is not None and not region:
                np.copyto(scale[y0:y1, x0:x1], np.float32(math.sqrt((bank.seg_area[s] / bank_frame) / (area / frame))),
                          where=mask)
            patch = None
            if image is not None:
                patch = _warp_linear(bank.segment_pixels(s).take(fill_index, axis=0), py0, py1, px0, px1, y0, x0, h, w)
                np.copyto(image[y0:y1, x0:x1], patch[inner], where=mask[..., None])
            if pad:
                if patch is None:
                    patch = bank.segment_pixels(s).take(gather, axis=0)
                _accumulate(num, den, mask, patch, py0, px0, inner, sigma)
    painted = source_index >= 0
    flat_index = np.maximum(source_index, 0)
    if image is None:
        image = bank.pixels.take(flat_index, axis=0)
        np.copyto(image, fill, where=~painted[..., None])
    if pad:  # every labelled pixel has weight > 0 from its own component; ignore pixels stay grey
        np.maximum(den, np.float32(1e-20), out=den)
        np.divide(num, den[..., None], out=num)
        np.rint(num, out=num)
        image = num.astype(np.uint8)
        np.copyto(image, fill, where=(labels == ignore)[..., None])
    meta: dict[str, Any] = {"texturing": "composite", "blend": blend, "sources": sources,
                            "missing": [bank.classes[c] for c in absent]}
    if pad:
        meta["sigma"] = float(sigma)
    out: dict[str, Any] = {"image": image, "meta": meta}
    if scale is not None:
        depth_out = bank.depth.take(flat_index) * scale
        depth_out[~painted] = 0
        out["depth"] = depth_out.astype(np.float32, copy=False)
    return out


def _check_arguments(bank: SegmentBank, *, blend: str, sigma: float, k: int, depth: bool, interp: str,
                     missing: str) -> None:
    """`composite`'s options checked: ValueError, or BankError for depth from a bank without it."""
    if blend not in BLENDS:
        raise ValueError(f"composite: blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    if interp not in INTERPS:
        raise ValueError(f"composite: interp must be one of {', '.join(INTERPS)}, got {interp!r}")
    if missing not in MISSING:
        raise ValueError(f"composite: missing must be one of {', '.join(MISSING)}, got {missing!r}")
    if k < 1:
        raise ValueError(f"composite: k must be >= 1, got {k}")
    if blend == "gaussian" and not sigma > 0:
        raise ValueError(f"composite: sigma must be > 0 for blend=gaussian, got {sigma}")
    if depth and not bank.has_depth:
        raise BankError(f"segment bank {bank.name} holds no depth (its images had none): "
                        f"composite(depth=True) needs one built from a dataset with depth")


def _classes_to_texture(layout: np.ndarray, bank: SegmentBank, *, missing: str,
                        ignore_index: int | None) -> tuple[list[int], list[int], int]:
    """The layout's labels checked against the bank (ValueError, BankError); returns (the classes in
    `layout` but the ignore index, those of them the bank has no segment of, the ignore index)."""
    if layout.ndim != 2:
        raise ValueError(f"composite: layout must be (H, W), got shape {layout.shape}")
    ignore = bank.ignore_index if ignore_index is None else int(ignore_index)
    num_classes = len(bank.classes)
    if layout.dtype.kind not in "iu":
        raise ValueError(f"composite: layout must hold integer class indices, got dtype {layout.dtype}")
    if layout.dtype.kind == "i" and layout.size and int(layout.min()) < 0:
        bad = sorted(int(v) for v in np.unique(layout[layout < 0]))
    else:
        bad = []
    if not bad:
        counts = np.bincount(layout.ravel().astype(np.intp, copy=False)) if layout.size else np.zeros(0, np.intp)
        found = np.flatnonzero(counts).tolist()
        present = [c for c in found if c != ignore]
        bad = [c for c in present if c >= num_classes]
    if bad:
        raise BankError(f"composite: layout labels {bad[:5]} are outside 0..{num_classes - 1} (the classes of "
                        f"segment bank {bank.name}) and are not ignore_index {ignore}")
    absent = [c for c in present if len(bank.class_segments(c)) == 0]
    if absent and missing == "error":
        names = ", ".join(f"'{bank.classes[c]}' ({c})" for c in absent)
        raise BankError(f"composite: class {names} is in the layout but segment bank {bank.name} has no segment "
                        f"of it (built from {len(bank.source_ids)} images); build the bank from images that "
                        f"show it, or pass missing='fill' to paint it neutral grey")
    return present, absent, ignore


def _retrieve(bank: SegmentBank, candidates: np.ndarray, region: bool, box: tuple[int, int, int, int], area: int,
              centroid_y: float, mask: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, *, k: int,
              flip: bool, position_weight: float, iou_jitter: float) -> tuple[int, bool, float]:
    """The bank segment for one layout component (its `box` [y0, x0, y1, x1], `area`, `mask` in the
    box) in a frame of `shape`: the `k` nearest `candidates` by size/shape (things) or place in the
    frame (regions), then the best mask IoU at the component's box, with and without a flip, with
    jitter. Returns (segment, flipped, IoU rounded to 4 places)."""
    y0, x0, y1, x1 = box
    h, w = y1 - y0, x1 - x0
    height, width = shape
    frame = float(height * width)
    grid = bank.grid
    if region:
        target = np.array([(y0 + y1) / (2.0 * height), (x0 + x1) / (2.0 * width),
                           math.log(h / height), math.log(w / width)])
        d = ((bank.region_features[candidates] - target) ** 2).sum(axis=1)
    else:
        target = np.array([math.log(area / frame), math.log(w / h), centroid_y / height])
        diff = bank.thing_features[candidates] - target
        d = diff[:, 0] ** 2 + diff[:, 1] ** 2 + (position_weight * diff[:, 2]) ** 2
    shortlist = candidates[np.argsort(d, kind="stable")[:k]] if len(candidates) > 1 else candidates
    # the mask IoU at the component's box, with and without a flip
    thumb = cv2.resize(mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    thumbs = bank.seg_grid[shortlist].astype(np.float32) * np.float32(1 / 255)
    if flip:
        thumbs = np.stack([thumbs, thumbs[:, :, ::-1]], axis=1)  # (m, 2, G, G)
    iou = _soft_iou(thumbs.reshape(-1, grid, grid), thumb).reshape(len(shortlist), -1)
    score = iou + rng.uniform(0.0, iou_jitter, size=iou.shape)
    best = int(np.argmax(score))
    return int(shortlist[best // iou.shape[1]]), bool(best % iou.shape[1]), round(float(iou.flat[best]), 4)


def _soft_iou(thumbs: np.ndarray, target: np.ndarray) -> np.ndarray:
    inter = np.minimum(thumbs, target).sum(axis=(1, 2))
    union = np.maximum(thumbs, target).sum(axis=(1, 2))
    return inter / np.maximum(union, 1e-6)


def _source_coords(start: int, stop: int, origin: int, size: int, source_size: int) -> np.ndarray:
    """Nearest source row (or column) of each target row in [start, stop) for a box of `size`
    at `origin` mapped onto `source_size`: floor((2t + 1) * source_size / (2 size)) for row t of
    the box (pixel centres aligned; exact integer arithmetic); rows outside the box clamp to the
    crop's edge."""
    t = np.arange(start - origin, stop - origin, dtype=np.int64)
    coords = ((2 * t + 1) * source_size) // (2 * size)
    if start < origin or stop > origin + size:  # the blend margin
        np.clip(coords, 0, source_size - 1, out=coords)
    return coords


def _warp_linear(crop: np.ndarray, py0: int, py1: int, px0: int, px1: int, y0: int, x0: int, h: int,
                 w: int) -> np.ndarray:
    hs, ws = crop.shape[:2]
    sx, sy = ws / w, hs / h
    matrix = np.array([[sx, 0.0, (px0 - x0 + 0.5) * sx - 0.5], [0.0, sy, (py0 - y0 + 0.5) * sy - 0.5]])
    return cv2.warpAffine(crop, matrix, (px1 - px0, py1 - py0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _accumulate(num: np.ndarray, den: np.ndarray, mask: np.ndarray, patch: np.ndarray, py0: int, px0: int,
                inner: tuple[slice, slice], sigma: float) -> None:
    """Add one component's blurred mask times its extended patch (the padded box at (py0, px0);
    the component's box is `inner` inside it) to the blend sums."""
    ph, pw = patch.shape[:2]
    radius = int(math.ceil(3 * sigma))
    weight = np.zeros((ph, pw), np.float32)
    weight[inner] = mask
    weight = cv2.GaussianBlur(weight, (2 * radius + 1, 2 * radius + 1), sigma, sigmaY=sigma,
                              borderType=cv2.BORDER_CONSTANT)
    num[py0:py0 + ph, px0:px0 + pw] += weight[..., None] * patch
    den[py0:py0 + ph, px0:px0 + pw] += weight


__all__ = ["composite", "BLENDS", "INTERPS", "MISSING", "IGNORE_FILL"]
