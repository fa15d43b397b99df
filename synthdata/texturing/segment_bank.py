"""The segment bank: every connected component of every class of a set of real images, kept as
real pixels to texture layouts with (`synthdata.texturing.composite`).

`build_bank(reader)` (in `synthdata.texturing.bank_building`) walks a reader (the training split, already restricted to the low-data
subset when there is one) and cuts each labelled sample into segments: one per connected
component (8-connectivity) of each class, with its box, mask, in-mask RGB pixels (and depth when
every sample has depth), area, position in the frame, source sample id and component index.

Order is deterministic: samples sorted by id, then class index, then component in raster order
of its first pixel (the numbering of `scipy.ndimage.label`; see `components`). Components smaller
than `min_pixels` are dropped, except that a class found in the images never loses all its
segments: when every component of it is below the minimum, its `keep_largest` largest
components are kept.

Region classes (road, sky, building, ...) are the large stuff that frames a scene. Rule, unless
`region_classes` lists them: a class is a region class when, over the images where it occurs,
its median share of the frame is at least `region_fraction` (3%) AND at least `region_border`
(60%) of its pixels lie in components that touch the frame border. On the toy world this gives
road, sidewalk, building, vegetation and sky (cars cover ~7% of a frame but only ~40% of their
pixels touch the border; poles touch it but cover ~1%). Region segments are retrieved by their
place and extent in the frame; thing segments by area, aspect and mask shape; see `composite`.

Storage: one `.npz` file (`np.savez_compressed`, loadable with `allow_pickle=False`) holding a
JSON header (format, version, classes, ignore index, resolution, dataset, split, source ids and
their sha256, build settings, region classes, per-class counts and mean colours) as a uint8
array, per-segment arrays (class, source, component, box, area, centroid, shape thumbnail), and
the concatenated in-mask pixels, bit-packed masks and depth. Only in-mask pixels are stored, so
the bank is as large as the labelled pixels of its images. A segment's pixels outside its mask
(where other classes were) are filled on use by mirroring the segment across its own boundary
(nearest in-mask pixel where the mirror leaves the mask), so every pixel drawn from a segment is
one of its real in-mask pixels. The file is written to a temporary name and renamed, so a kill
during building leaves no bank (only a stray `.NAME.*.tmp`), and `load_or_build` builds it once
and reuses it.

A bank built for other classes, another resolution, other build settings or another number of
source images, and an empty bank, are refused with a `BankError` naming the file and the
mismatch.
"""

from __future__ import annotations

import functools
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage

from synthdata.core.atomic import write_atomic
from synthdata.core.contract import ClassInfo, DatasetError

FORMAT = "synthdata-segment-bank"
VERSION = 1
CONNECTIVITY = 8
DEFAULT_MIN_PIXELS = 16
DEFAULT_REGION_FRACTION = 0.03
DEFAULT_REGION_BORDER = 0.6
DEFAULT_GRID = 16
DEFAULT_KEEP_LARGEST = 4


class BankError(DatasetError):
    """A segment bank that is missing, corrupt, empty, or made for other data."""


@dataclass(frozen=True)
class Segment:
    """One bank segment: `mask` is its box crop (bool hxw), `pixels` its in-mask RGB pixels
    (n, 3) in raster order of the mask, `depth` their depth (n,) or None."""

    index: int
    cls: int
    source: str
    component: int
    box: tuple[int, int, int, int]  # y0, x0, y1, x1 (end exclusive), in bank-resolution pixels
    area: int
    centre: tuple[float, float]  # centroid (y, x) as fractions of the frame height and width
    region: bool
    mask: np.ndarray
    pixels: np.ndarray
    depth: np.ndarray | None


class SegmentBank:
    """Segments of real images, by class. Build with `build_bank`, read with `load_bank` /
    `load_or_build`; `composite()` draws from it."""

    def __init__(self, header: dict[str, Any], arrays: dict[str, np.ndarray], path: Path | None = None,
                 cache_size: int = 4096):
        self.header = header
        self.path = path
        self.classes: tuple[str, ...] = tuple(header["classes"])
        self.ignore_index = int(header["ignore_index"])
        self.resolution: tuple[int, int] = tuple(int(v) for v in header["resolution"])  # type: ignore
        self.source_ids: list[str] = list(header["sources"])
        self.region = np.zeros(len(self.classes), bool)
        for name in header["region_classes"]:
            self.region[self.classes.index(name)] = True
        self.seg_class = arrays["seg_class"].astype(np.int64)
        self.seg_source = arrays["seg_source"].astype(np.int64)
        self.seg_component = arrays["seg_component"].astype(np.int64)
        self.seg_box = arrays["seg_box"].astype(np.int64).reshape(-1, 4)
        self.seg_area = arrays["seg_area"].astype(np.int64)
        self.seg_centre = arrays["seg_centre"].astype(np.float64).reshape(-1, 2)
        self.seg_grid = arrays["seg_grid"]
        self.pix_offset = arrays["pix_offset"].astype(np.int64)
        self.mask_offset = arrays["mask_offset"].astype(np.int64)
        self.pixels = arrays["pixels"].reshape(-1, 3)
        self.mask_bits = arrays["mask_bits"]
        self.depth = arrays.get("depth")
        self.has_depth = self.depth is not None
        self._fill_index = functools.lru_cache(maxsize=cache_size)(self._compute_fill_index)
        self._by_class = [np.flatnonzero(self.seg_class == c) for c in range(len(self.classes))]
        # Retrieval features (normalised so that they do not depend on the frame size).
        height, width = self.resolution
        y0, x0, y1, x1 = self.seg_box.T if len(self) else (np.zeros(0),) * 4
        bh, bw = (y1 - y0).astype(np.float64), (x1 - x0).astype(np.float64)
        self.thing_features = np.stack([np.log(np.maximum(self.seg_area, 1) / (height * width)),
                                        np.log(np.maximum(bw, 1) / np.maximum(bh, 1)),
                                        self.seg_centre[:, 0]], axis=1)
        self.region_features = np.stack([(y0 + y1) / (2.0 * height), (x0 + x1) / (2.0 * width),
                                         np.log(np.maximum(bh, 1) / height), np.log(np.maximum(bw, 1) / width)], axis=1)

    def __getstate__(self) -> dict[str, Any]:  # picklable (spawned workers): the cache stays behind
        state = dict(self.__dict__)
        state["_cache_size"] = self._fill_index.cache_info().maxsize
        del state["_fill_index"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        cache_size = state.pop("_cache_size")
        self.__dict__.update(state)
        self._fill_index = functools.lru_cache(maxsize=cache_size)(self._compute_fill_index)

    # -- queries ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.seg_class.shape[0])

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<segment bank in memory>"

    @property
    def grid(self) -> int:
        return int(self.header["grid"])

    def class_segments(self, cls: int) -> np.ndarray:
        """Indices of the segments of class `cls` (bank order)."""
        return self._by_class[cls]

    def counts(self) -> dict[str, int]:
        return {name: int(len(self._by_class[c])) for c, name in enumerate(self.classes)}

    def source_of(self, index: int) -> str:
        return self.source_ids[int(self.seg_source[index])]

    def mask(self, index: int) -> np.ndarray:
        y0, x0, y1, x1 = (int(v) for v in self.seg_box[index])
        start, stop = int(self.mask_offset[index]), int(self.mask_offset[index + 1])
        first = start // 8
        bits = np.unpackbits(self.mask_bits[first: (stop + 7) // 8 + 1])
        return bits[start - 8 * first: stop - 8 * first].astype(bool).reshape(y1 - y0, x1 - x0)

    def segment_pixels(self, index: int) -> np.ndarray:
        """The segment's in-mask RGB pixels, (n, 3) uint8, raster order of its mask."""
        return self.pixels[self.pix_offset[index]: self.pix_offset[index + 1]]

    def segment_depth(self, index: int) -> np.ndarray | None:
        if self.depth is None:
            return None
        return self.depth[self.pix_offset[index]: self.pix_offset[index + 1]]

    def segment(self, index: int) -> Segment:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        cls = int(self.seg_class[index])
        return Segment(index, cls, self.source_of(index), int(self.seg_component[index]),
                       tuple(int(v) for v in self.seg_box[index]), int(self.seg_area[index]),  # type: ignore
                       tuple(float(v) for v in self.seg_centre[index]), bool(self.region[cls]),  # type: ignore
                       self.mask(index), self.segment_pixels(index), self.segment_depth(index))

    def fill_index(self, index: int) -> np.ndarray:
        """For every pixel of the segment's box, (h, w) int32 indices into `segment_pixels(index)`:
        the pixel itself inside the mask, its mirror image across the mask boundary outside it
        (the nearest in-mask pixel where the mirror leaves the mask). Cached (LRU)."""
        return self._fill_index(int(index))

    def _compute_fill_index(self, index: int) -> np.ndarray:
        mask = self.mask(index)
        return mirror_fill_index(mask)

    def filled(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The segment's box crop with its outside filled (see `fill_index`): RGB (h, w, 3) and
        depth (h, w) or None."""
        idx = self.fill_index(index)
        rgb = self.segment_pixels(index)[idx]
        depth = self.segment_depth(index)
        return rgb, (depth[idx] if depth is not None else None)

    def mean_colour(self, cls: int) -> tuple[int, int, int] | None:
        value = self.header["mean_colours"].get(self.classes[cls])
        return None if value is None else tuple(value)  # type: ignore

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        size = ""
        if self.path is not None and self.path.is_file():
            size = f", {self.path.stat().st_size / 1e6:.1f} MB"
        regions = ", ".join(self.header["region_classes"]) or "none"
        return (f"segment bank {self.name}: {len(self)} segments from {len(self.source_ids)} images at "
                f"{self.resolution[0]}x{self.resolution[1]} ({counts}; region classes: {regions}){size}")

    # -- checks ----------------------------------------------------------------------------------
    def check(self, classes: ClassInfo | Sequence[str] | None = None, resolution: Sequence[int] | None = None,
              *, num_sources: int | None = None, source_ids: Sequence[str] | None = None,
              settings: dict[str, Any] | None = None) -> "SegmentBank":
        """Refuse (BankError naming the bank file) an empty bank or one made for other data."""
        where = f"segment bank {self.name}"
        if len(self) == 0:
            raise BankError(f"{where} is empty: 0 segments from {len(self.source_ids)} source images; "
                            f"delete it and build it from labelled images")
        if classes is not None:
            names = tuple(classes.names) if isinstance(classes, ClassInfo) else tuple(classes)
            if names != self.classes:
                raise BankError(f"{where} was built for other classes: {_class_difference(self.classes, names)}; "
                                f"delete it or use another run dir")
            if isinstance(classes, ClassInfo) and classes.ignore_index != self.ignore_index:
                raise BankError(f"{where} was built with ignore_index {self.ignore_index}, "
                                f"not {classes.ignore_index}")
        if resolution is not None and tuple(int(v) for v in resolution) != self.resolution:
            h, w = (int(v) for v in resolution)
            raise BankError(f"{where} was built at resolution {self.resolution[0]}x{self.resolution[1]}, "
                            f"not {h}x{w}; delete it or use another run dir")
        if num_sources is not None and num_sources != len(self.source_ids):
            raise BankError(f"{where} was built from {len(self.source_ids)} source images, not the "
                            f"{num_sources} of this reader (another subset?); delete it or use another run dir")
        if source_ids is not None and sorted(str(s) for s in source_ids) != self.source_ids:
            extra = sorted(set(self.source_ids) - {str(s) for s in source_ids})[:5]
            missing = sorted({str(s) for s in source_ids} - set(self.source_ids))[:5]
            raise BankError(f"{where} was built from other source images (in the bank only: {extra}; "
                            f"expected but absent: {missing}); delete it or use another run dir")
        if settings:
            for key, value in settings.items():
                if key in self.header["settings"] and _jsonable(value) != self.header["settings"][key]:
                    raise BankError(f"{where} was built with {key}={self.header['settings'][key]!r}, "
                                    f"not {_jsonable(value)!r}; delete it or use another run dir")
        return self

    # -- storage ---------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            "seg_class": self.seg_class.astype(np.int16), "seg_source": self.seg_source.astype(np.int32),
            "seg_component": self.seg_component.astype(np.int32), "seg_box": self.seg_box.astype(np.int32),
            "seg_area": self.seg_area.astype(np.int64), "seg_centre": self.seg_centre.astype(np.float32),
            "seg_grid": self.seg_grid, "pix_offset": self.pix_offset, "mask_offset": self.mask_offset,
            "pixels": self.pixels, "mask_bits": self.mask_bits,
        }
        if self.depth is not None:
            out["depth"] = self.depth
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bank to `path` atomically (temporary file in the same folder + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = np.frombuffer(json.dumps(self.header, sort_keys=True).encode(), dtype=np.uint8)
        write_atomic(path, lambda f: _write_npz(f, {"header": header, **self.arrays()}))
        self.path = path
        return path

    def select(self, indices: Iterable[int]) -> "SegmentBank":
        """A bank holding only the segments `indices` (same header otherwise)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        pix = [self.segment_pixels(i) for i in idx]
        masks = [self.mask(i).ravel() for i in idx]
        depth = [self.segment_depth(i) for i in idx] if self.has_depth else None
        arrays = _pack(self.seg_class[idx], self.seg_source[idx], self.seg_component[idx], self.seg_box[idx],
                       self.seg_area[idx], self.seg_centre[idx], self.seg_grid[idx], pix, masks, depth)
        header = dict(self.header)
        header["counts"] = {n: int((self.seg_class[idx] == c).sum()) for c, n in enumerate(self.classes)}
        header["num_segments"] = int(len(idx))
        return SegmentBank(header, arrays)


def _write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    # One place for the container format (tests replace it to simulate a failure mid-write).
    np.savez_compressed(f, **arrays)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _class_difference(have: Sequence[str], want: Sequence[str]) -> str:
    if len(have) != len(want):
        return f"{len(have)} classes {list(have)[:8]}{'...' if len(have) > 8 else ''}, not {len(want)} {list(want)[:8]}"
    diff = [f"{i}: '{a}' vs '{b}'" for i, (a, b) in enumerate(zip(have, want)) if a != b]
    return f"class names differ at {', '.join(diff[:5])} (bank vs asked)"


def mirror_fill_index(mask: np.ndarray) -> np.ndarray:
    """(h, w) int32 indices into the in-mask pixels of `mask` (raster order) for every pixel of
    the box: itself inside, its mirror across the nearest boundary point outside (that point
    itself when the mirror falls outside the mask)."""
    h, w = mask.shape
    rank = np.full(h * w, -1, np.int32)
    flat = mask.ravel()
    rank[flat] = np.arange(int(flat.sum()), dtype=np.int32)
    if flat.all():
        return rank.reshape(h, w)
    if not flat.any():
        raise BankError("a segment with an empty mask")
    iy, ix = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
    yy, xx = np.mgrid[0:h, 0:w]
    my, mx = np.clip(2 * iy - yy, 0, h - 1), np.clip(2 * ix - xx, 0, w - 1)
    use_mirror = mask[my, mx]
    sy, sx = np.where(use_mirror, my, iy), np.where(use_mirror, mx, ix)
    return rank[sy * w + sx].reshape(h, w)


def _pack(cls, source, component, box, area, centre, grid, pixels: list, masks: list, depth: list | None) -> dict:
    n = len(cls)
    pix_offset = np.zeros(n + 1, np.int64)
    pix_offset[1:] = np.cumsum([len(p) for p in pixels]) if n else []
    mask_offset = np.zeros(n + 1, np.int64)
    mask_offset[1:] = np.cumsum([m.size for m in masks]) if n else []
    arrays = {
        "seg_class": np.asarray(cls, np.int16).reshape(n), "seg_source": np.asarray(source, np.int32).reshape(n),
        "seg_component": np.asarray(component, np.int32).reshape(n),
        "seg_box": np.asarray(box, np.int32).reshape(n, 4), "seg_area": np.asarray(area, np.int64).reshape(n),
        "seg_centre": np.asarray(centre, np.float32).reshape(n, 2),
        "seg_grid": np.asarray(grid, np.uint8).reshape(n, *np.shape(grid)[1:]) if n else np.zeros((0, 1, 1), np.uint8),
        "pix_offset": pix_offset, "mask_offset": mask_offset,
        "pixels": np.concatenate(pixels).astype(np.uint8) if n else np.zeros((0, 3), np.uint8),
        "mask_bits": np.packbits(np.concatenate(masks).astype(bool)) if n else np.zeros(0, np.uint8),
    }
    if depth is not None:
        arrays["depth"] = np.concatenate(depth).astype(np.float32) if n else np.zeros(0, np.float32)
    return arrays








def load_bank(path: str | os.PathLike, classes: ClassInfo | Sequence[str] | None = None,
              resolution: Sequence[int] | None = None, *, num_sources: int | None = None,
              source_ids: Sequence[str] | None = None, settings: dict[str, Any] | None = None,
              cache_size: int = 4096) -> SegmentBank:
    """Read a bank file and `check` it (empty, classes, resolution, sources, build settings)."""
    path = Path(path)
    if not path.is_file():
        raise BankError(f"segment bank {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as e:
        raise BankError(f"segment bank {path} cannot be read (incomplete or corrupt): {e}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BankError(f"{path} is not a synthdata segment bank")
    if header.get("version") != VERSION:
        raise BankError(f"segment bank {path} has format version {header.get('version')}, this synthdata "
                        f"reads version {VERSION}; delete it to rebuild")
    missing = [k for k in ("seg_class", "seg_box", "pixels", "mask_bits", "pix_offset", "mask_offset")
               if k not in arrays]
    if missing:
        raise BankError(f"segment bank {path} lacks arrays {missing} (corrupt)")
    bank = SegmentBank(header, arrays, path=path, cache_size=cache_size)
    return bank.check(classes, resolution, num_sources=num_sources, source_ids=source_ids, settings=settings)






__all__ = ["BankError", "Segment", "SegmentBank", "load_bank", "mirror_fill_index", "FORMAT", "VERSION"]
