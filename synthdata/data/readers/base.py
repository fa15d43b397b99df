"""The dataset reader interface, class metadata and the reader registry.

A reader turns one split of a dataset, in the folder layout users download, into samples of the
data contract (`synthdata.core.contract`): `{"image": uint8 HxWx3, "layout": HxW class indices (ignore_index
where unlabelled), "depth": float32 HxW or absent, "meta": dict}`, resized to the recipe's
resolution through `synthdata.core.imageops`. Up to `data.cache_mb` of resized samples stay in
memory, so epochs after the first read no files (callers get copies).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from synthdata.core.contract import ClassInfo, ConfigError, DatasetError
from synthdata.core.imageops import resize_sample
from synthdata.core.palette import default_palette
from synthdata.core.recipe import DataConfig


class DatasetReader:
    """Base class: subclasses set `default_classes`/`default_palette` and implement
    `_items()` (a list of per-sample records found on disk) and `_load(item)` (one sample at
    native resolution). Indexing returns resized, validated samples.
    """

    name: str = "base"
    default_classes: tuple[str, ...] = ()
    default_palette: np.ndarray | None = None
    default_ignore_index: int = 255
    splits: tuple[str, ...] = ("train", "val")
    has_depth: bool = False

    def __init__(self, cfg: DataConfig, split: str):
        self.cfg = cfg
        self.split = split
        for key in ("height", "width"):  # a size of 0 or less would fail deep inside the resize
            size = getattr(cfg, key)
            if size is not None and size < 1:
                raise ConfigError(f"data.{key} must be >= 1 (or null for the native size), got {size}")
        if not isinstance(cfg.cache_mb, int) or isinstance(cfg.cache_mb, bool) or cfg.cache_mb < 0:
            raise ConfigError(f"data.cache_mb must be an integer >= 0 (0: no cache), got {cfg.cache_mb!r}")
        self._cache = SampleCache(cfg.cache_mb * 2**20)
        self.classes = self._class_info(cfg)
        if self.needs_root:
            if cfg.root is None:
                raise DatasetError(f"{self.name}: data.root is not set. {self.layout_help()}")
            self.root = Path(cfg.root).expanduser()
            if not self.root.is_dir():
                raise DatasetError(
                    f"{self.name}: dataset root {self.root} does not exist. {self.layout_help()}"
                )
        else:
            self.root = Path(cfg.root) if cfg.root else None
        self.split_note: str | None = None  # how this split is held out, when reports must say it
        self.items = self._items()
        self.out_of_range_pixels = 0
        self.subset: dict[str, Any] | None = None  # what `data.subset` kept (make_reader sets it)

    needs_root = True

    # -- subclass API -----------------------------------------------------------------------
    def layout_help(self) -> str:
        return ""

    def _items(self) -> list[Any]:
        raise NotImplementedError

    def _load(self, item: Any) -> dict[str, Any]:
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0 or index >= len(self.items):
            raise IndexError(index)
        key = repr(self.items[index])  # by item, not index: a copy with other items shares the cache
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache.keep(key, self._read(index))
        return cached

    def _read(self, index: int) -> dict[str, Any]:
        sample = self._load(self.items[index])
        check_pair(sample, str(sample["meta"].get("path", self.items[index])))
        meta = sample["meta"]
        sample["layout"] = self.check_labels(sample["layout"], meta.get("label_path", meta.get("path", "")))
        sample = resize_sample(sample, self.cfg.height, self.cfg.width)
        sample["meta"].setdefault("dataset", self.name)
        sample["meta"].setdefault("split", self.split)
        sample["meta"].setdefault("source", "real")
        return sample

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def item_id(self, index: int) -> str:
        """The `meta["id"]` of sample `index` without reading it: the file stem of path items,
        `item["id"]` of dict items, `NAME-SPLIT-000042` of integer items (the toy world)."""
        item = self.items[index]
        if isinstance(item, dict) and "id" in item:
            return str(item["id"])
        if isinstance(item, (tuple, list)) and item and isinstance(item[0], (str, Path)):
            return Path(item[0]).stem
        if isinstance(item, (str, Path)):
            return Path(item).stem
        if isinstance(item, int):
            return f"{self.name}-{self.split}-{item:06d}"
        return str(self._load(item)["meta"]["id"])

    def read_native(self, index: int) -> dict[str, Any]:
        """Sample `index` as stored on disk: native size, labels not yet checked (for `check`)."""
        return self._load(self.items[index])

    def check_labels(self, layout: np.ndarray, where: str) -> np.ndarray:
        """Labels outside `[0, C)` other than ignore: error if strict, else ignore + warning."""
        ignore = self.classes.ignore_index
        bad = (layout >= self.classes.num_classes) & (layout != ignore)
        if layout.dtype.kind == "i":
            bad |= layout < 0
        count = int(bad.sum())
        if count:
            found = sorted(set(np.unique(layout[bad]).tolist()))[:10]
            message = (
                f"{where}: {count} pixels have labels {found} outside 0..{self.classes.num_classes - 1} "
                f"(ignore={ignore})"
            )
            if self.cfg.strict_labels:
                raise DatasetError(message)
            warnings.warn(message + "; mapped to ignore", stacklevel=2)
            self.out_of_range_pixels += count
            layout = layout.copy()
            layout[bad] = ignore
        return layout

    # -- helpers ----------------------------------------------------------------------------
    def _class_info(self, cfg: DataConfig) -> ClassInfo:
        names = tuple(cfg.classes) if cfg.classes else tuple(self.default_classes)
        if not names:
            raise DatasetError(f"{self.name}: data.classes must list the class names")
        if cfg.palette is not None:
            palette = np.asarray(cfg.palette, dtype=np.uint8)
            if palette.shape != (len(names), 3):
                raise DatasetError(
                    f"data.palette has shape {palette.shape}, expected ({len(names)}, 3) for the classes"
                )
        elif self.default_palette is not None and len(self.default_palette) == len(names):
            palette = np.asarray(self.default_palette, dtype=np.uint8)
        else:
            palette = default_palette(len(names))
        ignore = cfg.ignore_index
        if isinstance(ignore, int) and 0 <= ignore < len(names):  # issue 34: class `ignore` would vanish
            raise ConfigError(
                f"data.ignore_index={ignore} is class {ignore} ('{names[ignore]}') of the {len(names)} classes: its "
                f"pixels would be left out of training and scored 0 in the mIoU; set data.ignore_index to a label "
                f"no class uses (>= {len(names)}, 255 by default)")
        return ClassInfo(names, palette, ignore)


class SampleCache:
    """Resized samples by item, up to `limit` bytes of arrays (then new samples are not kept);
    shared by shallow copies of a reader. Callers get copies, so they may change them in place."""

    def __init__(self, limit: int):
        self.samples: dict[str, dict[str, Any]] = {}
        self.room = limit

    def get(self, key: str) -> dict[str, Any] | None:
        sample = self.samples.get(key)
        return None if sample is None else _copied(sample)

    def keep(self, key: str, sample: dict[str, Any]) -> dict[str, Any]:
        size = sum(v.nbytes for v in sample.values() if isinstance(v, np.ndarray))
        if size > self.room:
            return sample
        self.samples[key] = sample
        self.room -= size
        return _copied(sample)


def _copied(sample: dict[str, Any]) -> dict[str, Any]:
    return {k: v.copy() if isinstance(v, (np.ndarray, dict)) else v for k, v in sample.items()}


def check_pair(sample: dict[str, Any], where: str) -> None:
    """Image, layout and depth must cover the same pixels."""
    image, layout = sample["image"], sample["layout"]
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DatasetError(f"{where}: image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    if layout.shape != image.shape[:2]:
        label_path = (sample.get("meta") or {}).get("label_path")  # name the mask file first: it is the odd one
        raise DatasetError(
            f"{label_path or where}: mask size {layout.shape[1]}x{layout.shape[0]} differs from image size "
            f"{image.shape[1]}x{image.shape[0]}" + (f" of {where}" if label_path and label_path != where else "")
        )
    depth = sample.get("depth")
    if depth is not None and depth.shape != layout.shape:
        raise DatasetError(f"{where}: depth size {depth.shape} differs from mask size {layout.shape}")


READERS: dict[str, Callable[..., DatasetReader]] = {}


def register_reader(name: str):
    def wrap(cls):
        cls.name = name
        READERS[name] = cls
        return cls

    return wrap


def declared_classes(cfg: DataConfig) -> ClassInfo:
    """The classes `make_reader(cfg, ...)` delivers (data.classes, else the reader's own), found
    without reading the dataset, so no data.root is needed (e.g. `produce` checking checkpoints)."""
    import synthdata.data.readers  # noqa: F401, PLC0415  (registers the readers; the package imports this module)

    if cfg.reader not in READERS:
        raise DatasetError(f"unknown dataset reader '{cfg.reader}'. Valid readers: {', '.join(sorted(READERS))}")
    cls = READERS[cfg.reader]
    return cls._class_info(cls.__new__(cls), cfg)  # type: ignore[attr-defined]


def make_reader(cfg: DataConfig, split: str) -> DatasetReader:
    """The reader named by `cfg.reader` for `split`; an unknown name lists the valid ones."""
    import synthdata.data.readers  # noqa: F401, PLC0415  (registers the readers; the package imports this module)

    if cfg.reader not in READERS:
        raise DatasetError(f"unknown dataset reader '{cfg.reader}'. Valid readers: {', '.join(sorted(READERS))}")
    reader = READERS[cfg.reader](cfg, split)
    if cfg.subset is not None and split == cfg.train_split:
        apply_subset(reader, cfg.subset)
    return reader


def subset_indices(ids: list[str], spec: float | str, where: str = "data.subset") -> tuple[list[int], str]:
    """Indices into `ids` kept by a `data.subset` spec, in their original order, and a description.

    A fraction f in (0, 1]: every k-th id of the sorted ids, k = round(1/f), starting with the
    first (CamVid's 367 train images at 0.1: the 37 ids 0, 10, ..., 360 of the sorted names).
    `"every:K"`: the same with K given. Anything else: a file of ids, one a line (`#` comments);
    an id the split does not have is an error naming it."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    if isinstance(spec, str) and spec.startswith("every:"):
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            k = 0
        if k < 1:
            raise ConfigError(f"{where}: expected every:K with an integer K >= 1, got {spec!r}")
        keep, text = order[::k], f"every {k}th of the sorted ids"
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not 0.0 < float(spec) <= 1.0:
            raise ConfigError(f"{where}: a fraction must be in (0, 1], got {spec}")
        k = max(1, round(1.0 / float(spec)))
        keep, text = order[::k], f"fraction {spec}: every {k}th of the sorted ids"
    else:
        path = Path(str(spec)).expanduser()
        if not path.is_file():
            raise DatasetError(f"{where}: id file not found: {path}")
        wanted = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        wanted = [w for w in wanted if w]
        lookup = {sid: i for i, sid in enumerate(ids)}
        unknown = [w for w in wanted if w not in lookup]
        if unknown:
            raise DatasetError(f"{where}: {path} lists {len(unknown)} ids the split does not have: "
                               f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
        if not wanted:
            raise DatasetError(f"{where}: {path} lists no ids")
        keep, text = sorted({lookup[w] for w in wanted}), f"the {len(set(wanted))} ids listed in {path}"
    return sorted(keep), text


def refuse_subset_of_shards(cfg: DataConfig, key: str, shards: str | None) -> None:
    """`data.subset` restricts the reader; a command told to read real data from shards instead
    (`key`, e.g. `train.shards`) would bypass it, so the combination is refused. Shards do carry
    sample ids, but a fraction or every:K subset is a rule over the reader's split, which a shard
    folder need not hold: export the subset itself as shards instead."""
    if shards and cfg.subset is not None:
        raise ConfigError(
            f"{key}={shards} and data.subset={cfg.subset} cannot be combined: data.subset restricts the reader's "
            f"'{cfg.train_split}' split, and {key} reads shards instead, which it does not restrict. Unset {key} to "
            f"read the subset through the reader, or write the subset as shards (`synthdata export recipe=... "
            f"data.subset={cfg.subset} split={cfg.train_split} out=DIR`) and give {key}=DIR without data.subset")


def apply_subset(reader: DatasetReader, spec: float | str) -> DatasetReader:
    """Restrict `reader` in place to a `data.subset`; `reader.subset` records what was kept."""
    ids = [reader.item_id(i) for i in range(len(reader))]
    keep, text = subset_indices(ids, spec, where=f"data.subset ({reader.name} {reader.split})")
    reader.items = [reader.items[i] for i in keep]
    reader.subset = {"spec": spec, "rule": text, "kept": len(keep), "of": len(ids),
                     "ids": [ids[i] for i in keep]}
    return reader
