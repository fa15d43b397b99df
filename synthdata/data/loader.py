"""Streaming loaders over shards and dataset readers: mixing, augmentation, distributed splits.

`make_loader(Source("shards/real", weight=1), Source("shards/synth", weight=1), ...)` gives a
torch DataLoader of dict batches (see `make_loader`). Training streams (`epoch_length=N`) resample
shards endlessly and mix sources by weight; evaluation streams read every sample exactly once
across all processes and DataLoader workers. Usage for your own trainer: docs/loader.md.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Callable, Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from synthdata.core.contract import ClassInfo, ShardError
from synthdata.core.seeding import derive_seed
from synthdata.data.readers.base import DatasetReader
from synthdata.data.shards import (
    check_labels,
    decode_sample,
    expected_counts,
    iter_tar,
    manifest_classes,
    resolve_urls,
    verify_shards,
)
from synthdata.data.transforms import SampleTransform

__all__ = ["Source", "make_loader", "source_classes", "verify_source", "ShardError", "SampleStream", "ShardLoader"]


@dataclass
class Source:
    """One stream of samples: shard `urls` (a brace pattern `dir/x-{000000..000009}.tar`, a
    folder holding manifest.json, a list, or `pipe:` URLs) or an in-memory dataset `reader`;
    `weight` sets its share of a mixed training stream; `name` is reported per sample."""

    urls: str | list[str] | None = None
    reader: DatasetReader | None = None
    weight: float = 1.0
    name: str = "real"
    # applied to each decoded sample before augmentation: transform(sample, numpy Generator) -> sample,
    # the generator one per (seed, rank, worker, epoch) stream (e.g. online copy-paste, which must
    # see the full-size sample; it must be picklable for DataLoader workers)
    transform: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if (self.urls is None) == (self.reader is None):
            raise ValueError("Source needs exactly one of urls= or reader=")
        if self.weight < 0:
            raise ValueError(f"Source {self.name}: weight must be >= 0, got {self.weight}")


@dataclass
class ResolvedSource:
    """A Source with its shard URLs expanded and its classes known (None: no manifest)."""

    name: str
    weight: float
    urls: list[str]
    reader: DatasetReader | None
    classes: ClassInfo | None
    expected: dict[str, int]
    depth_scale: float | None
    transform: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.reader) if self.reader is not None else len(self.urls)


def resolve_source(source: Source) -> ResolvedSource:
    if source.reader is not None:
        if len(source.reader) == 0:
            raise ShardError(f"source '{source.name}': the reader has no samples")
        return ResolvedSource(source.name, source.weight, [], source.reader, source.reader.classes, {}, None,
                              source.transform)
    urls, manifest = resolve_urls(source.urls)
    classes = manifest_classes(manifest) if manifest else None
    scale = float(manifest["depth_scale"]) if manifest and manifest.get("depth_scale") else None
    return ResolvedSource(source.name, source.weight, urls, None, classes, expected_counts(urls, manifest), scale,
                          source.transform)


def source_classes(source: Source | str) -> ClassInfo:
    """The classes of a source: its reader's, or those of the manifest beside its shards."""
    source = Source(urls=source) if isinstance(source, str) else source
    classes = resolve_source(source).classes
    if classes is None:
        raise ShardError(f"source '{source.name}' ({source.urls}): no manifest.json beside the shards")
    return classes


def verify_source(source: Source | str, *, progress: bool = True) -> int:
    """Check the shards of `source` against the sha256 its manifest records (`verify_shards`: a
    `ShardError` names the first that differs); returns the shards checked. Readers and shards
    without a manifest have nothing to check against (0, nothing read). Once per run: it reads
    every shard, which loaders do not do on their own."""
    source = Source(urls=source) if isinstance(source, str) else source
    if source.reader is not None:
        return 0
    urls, manifest = resolve_urls(source.urls)
    return verify_shards(urls, manifest, progress=progress)


def _distributed() -> tuple[int, int]:
    """(rank, world_size) of this process: torch.distributed if initialised, else the launcher's
    environment (accelerate launch / torchrun set RANK and WORLD_SIZE)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class SampleStream(IterableDataset):
    """The per-worker pipeline: pick raw samples for this (rank, worker), shuffle, decode,
    augment, batch. Yields compact batches (see `collate`); ShardLoader finishes them."""

    def __init__(self, sources: list[ResolvedSource], *, batch_size: int, augment: bool, shuffle: bool,
                 epoch_length: int | None, seed: int, with_depth: bool, tolerate_errors: bool,
                 rank: int, world_size: int, shuffle_buffer: int, crop: tuple[int, int] | None):
        self.sources, self.batch_size, self.augment, self.shuffle = sources, batch_size, augment, shuffle
        self.epoch_length, self.seed, self.with_depth = epoch_length, seed, with_depth
        self.tolerate_errors, self.rank, self.world_size = tolerate_errors, rank, world_size
        self.shuffle_buffer, self.crop = shuffle_buffer, crop
        self.epoch = 0
        self.errors = 0
        self._live: Iterator[dict[str, Any]] | None = None  # the endless training stream

    def batches_per_process(self) -> int:
        return max(1, self.epoch_length // self.batch_size) if self.epoch_length else 0

    def __len__(self) -> int:
        if not self.epoch_length:
            raise TypeError("an evaluation stream (epoch_length=None) has no fixed length")
        return self.batches_per_process()

    # -- raw sample selection ---------------------------------------------------------------
    def _skip(self, error: Exception) -> None:
        if not self.tolerate_errors:
            raise error
        self.errors += 1
        warnings.warn(f"skipped bad data ({self.errors} so far in this worker): {error}", stacklevel=2)

    def _shard(self, src: ResolvedSource, url: str) -> Iterator[dict[str, Any]]:
        try:
            yield from iter_tar(url, expected=src.expected.get(url))
        except ShardError as e:
            self._skip(e)

    def _finite(self, k: int, src: ResolvedSource, gid: int, total: int) -> Iterator[tuple[int, Any]]:
        """Every sample of `src` exactly once across all `total` (rank, worker) pairs."""
        order = list(range(len(src)))
        if self.shuffle:  # the same permutation in every worker, so the split stays disjoint
            random.Random(derive_seed(self.seed, k, self.epoch)).shuffle(order)
        if src.reader is not None:
            yield from ((k, i) for i in order[gid::total])
        elif len(order) >= total:
            for i in order[gid::total]:
                yield from ((k, raw) for raw in self._shard(src, src.urls[i]))
        else:  # fewer shards than readers: everyone reads all, keeps every total-th sample
            position = 0
            for i in order:
                for raw in self._shard(src, src.urls[i]):
                    if position % total == gid:
                        yield k, raw
                    position += 1

    def _endless(self, k: int, src: ResolvedSource, wid: int) -> Iterator[tuple[int, Any]]:
        """Resampled: random passes over shards (or reader indices), different per worker."""
        rng = random.Random(derive_seed(self.seed, k, self.rank, wid, self.epoch))
        while True:
            order = list(range(len(src)))
            rng.shuffle(order)
            found = 0
            for i in order:
                if src.reader is not None:
                    found += 1
                    yield k, i
                    continue
                for raw in self._shard(src, src.urls[i]):
                    found += 1
                    yield k, raw
            if not found:
                raise ShardError(f"source '{src.name}' yielded no samples from its {len(src)} shards")

    def _mixed(self, wid: int) -> Iterator[tuple[int, Any]]:
        """Interleave sources by weight with smooth weighted round robin: the ratio of this
        stream is exact to within one sample at every point, and deterministic (the shuffle
        buffer after it reorders across sources, so short stretches of the output drift)."""
        weights = [s.weight for s in self.sources]
        streams = {k: self._endless(k, s, wid) for k, s in enumerate(self.sources) if s.weight > 0}
        total, credit = sum(weights), [0.0] * len(weights)
        while True:
            for k in streams:
                credit[k] += weights[k]
            pick = max(streams, key=lambda j: credit[j])
            credit[pick] -= total
            yield next(streams[pick])

    # -- decode, augment, batch -------------------------------------------------------------
    def _shuffled(self, items: Iterator[Any], rng: random.Random) -> Iterator[Any]:
        """A shuffle buffer that starts emitting after a few items and grows to its full size
        by reading two items per item emitted (as webdataset's shuffle does)."""
        buffer: list[Any] = []
        start = min(self.shuffle_buffer, 16)
        items = iter(items)
        for item in items:
            buffer.append(item)
            if len(buffer) < self.shuffle_buffer:
                buffer.extend(islice(items, 1))
            if len(buffer) >= start:
                j = rng.randrange(len(buffer))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def _decode(self, k: int, raw: Any) -> dict[str, Any]:
        src = self.sources[k]
        if src.reader is not None:
            sample = src.reader[raw]
            sample["meta"].setdefault("key", str(sample["meta"].get("id", raw)))
        else:
            sample = decode_sample(raw, depth_scale=src.depth_scale, depth=self.with_depth)
            if src.classes is not None:  # readers map such labels to ignore; a shard's manifest may lie
                check_labels(sample["layout"], src.classes, f"sample '{raw.get('__key__')}' in {raw.get('__url__')}")
        layout = np.asarray(sample["layout"])
        if layout.dtype not in (np.uint8, np.uint16):
            if layout.size and (layout.min() < 0 or layout.max() > 65535):
                raise ShardError(f"{src.name} sample {sample['meta'].get('key')}: labels outside 0..65535")
            layout = layout.astype(np.uint16)
        sample["layout"] = layout
        if self.with_depth:
            depth = sample.get("depth")
            if depth is None:
                depth = np.zeros(layout.shape, np.float32)
            elif src.reader is not None:  # shard depth comes from uint16: always finite
                depth = np.asarray(depth, np.float32)
                depth = np.where(np.isfinite(depth), depth, np.float32(0))  # unknown is 0 in batches
            sample["depth"] = depth
        sample["meta"]["source"] = src.name
        return sample

    def _batches(self, wid: int, workers: int) -> Iterator[dict[str, Any]]:
        gid, total = self.rank * workers + wid, self.world_size * workers
        if self.epoch_length:
            items: Iterator[Any] = self._mixed(wid)
        else:
            items = chain.from_iterable(self._finite(k, s, gid, total) for k, s in enumerate(self.sources))
        if self.shuffle:
            items = self._shuffled(items, random.Random(derive_seed(self.seed, 99, self.rank, wid, self.epoch)))
        transform = SampleTransform(augment=self.augment, crop=self.crop, with_depth=self.with_depth,
                                    seed=derive_seed(self.seed, 7, self.rank, wid, self.epoch))
        source_rng = np.random.default_rng(derive_seed(self.seed, 11, self.rank, wid, self.epoch))
        batch: list[dict[str, Any]] = []
        for k, raw in items:
            try:
                sample = self._decode(k, raw)
                if self.sources[k].transform is not None:
                    sample = self.sources[k].transform(sample, source_rng)
                sample = transform(sample)
            except ShardError as e:
                self._skip(e)
                continue
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield collate(batch, self.with_depth)
                batch = []
        if batch:
            yield collate(batch, self.with_depth)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, workers = (info.id, info.num_workers) if info else (0, 1)
        if info is not None:
            cv2.setNumThreads(1)  # workers are the parallelism; OpenCV threads would oversubscribe
        if not self.epoch_length:
            yield from self._batches(wid, workers)
            return
        # a training stream is endless: each pass takes this worker's share of batches from the
        # same generator (kept alive by persistent workers), so shuffle buffers are not refilled
        if self._live is None:
            self._live = self._batches(wid, workers)
        for _ in range(len(range(wid, self.batches_per_process(), workers))):
            yield next(self._live)


def collate(samples: list[dict[str, Any]], with_depth: bool) -> dict[str, Any]:
    """Samples -> a compact batch: image uint8 (B, 3, H, W), layout uint8 or int32 (B, H, W),
    depth float32 (B, 1, H, W). In a DataLoader worker the arrays are stacked straight into
    shared memory; `finish_batch` makes the public dtypes in the main process (sending uint8
    instead of float32 and int64 moves ~4x fewer bytes between processes)."""
    shapes = {s["image"].shape for s in samples}
    if len(shapes) > 1:
        keys = [s["meta"].get("key") for s in samples[:4]]
        raise ShardError(f"samples of different sizes {sorted(shapes)} in one batch (e.g. {keys}); "
                         "pass crop=(H, W) or resize the sources to one resolution")
    shared = get_worker_info() is not None
    count, (height, width, _) = len(samples), shapes.pop()

    def stack(arrays: list[np.ndarray], dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        out = torch.empty((count, *shape), dtype=dtype)
        if shared:
            out.share_memory_()
        target = out.numpy()
        for i, array in enumerate(arrays):
            np.copyto(target[i], array, casting="unsafe")
        return out

    wide = any(s["layout"].dtype != np.uint8 and s["layout"].max(initial=0) > 255 for s in samples)
    batch = {
        "image": stack([s["image"].transpose(2, 0, 1) for s in samples], torch.uint8, (3, height, width)),
        "layout": stack([s["layout"] for s in samples], torch.int32 if wide else torch.uint8, (height, width)),
        "source": [s["meta"]["source"] for s in samples],
        "key": [str(s["meta"].get("key")) for s in samples],
    }
    if with_depth:
        batch["depth"] = stack([s["depth"][None] for s in samples], torch.float32, (1, height, width))
    return batch


def finish_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Compact batch -> image float32 (B, 3, H, W) in [0, 1], layout int64 (B, H, W)."""
    # contiguous uint8 -> float is a fast vectorised pass; the channel transpose was done in the worker
    return dict(batch, image=batch["image"].float().div_(255.0), layout=batch["layout"].long())


class ShardLoader(DataLoader):
    """A DataLoader over a SampleStream. Evaluation streams count epochs (reshuffling each pass);
    training streams keep their workers (persistent) and continue one endless stream."""

    def __init__(self, stream: SampleStream, *, num_workers: int, as_tuple: bool, classes: ClassInfo | None):
        endless = bool(stream.epoch_length)
        super().__init__(stream, batch_size=None, num_workers=num_workers,
                         persistent_workers=endless and num_workers > 0,
                         prefetch_factor=2 if num_workers else None)
        self.stream, self.as_tuple, self.classes = stream, as_tuple, classes
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        if self.num_workers > 0:
            # before the workers fork: a child inherits OpenCV's thread pool without its threads,
            # and its first OpenCV call (setNumThreads in the worker) then waits on them for ever
            cv2.setNumThreads(1)
        self.stream.epoch = self._epoch  # non-persistent workers get a fresh copy with this epoch
        self._epoch += 1
        for batch in super().__iter__():
            batch = finish_batch(batch)
            yield (batch["image"], batch["layout"]) if self.as_tuple else batch


def make_loader(
    sources: Source | str | list[Source],
    *,
    batch_size: int,
    augment: bool = True,
    shuffle: bool = True,
    epoch_length: int | None = None,
    num_workers: int = 0,
    seed: int = 0,
    with_depth: bool = False,
    tolerate_errors: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    shuffle_buffer: int = 256,
    crop: tuple[int, int] | None = None,
    as_tuple: bool = False,
) -> ShardLoader:
    """An iterable of batches `{"image": float32 (B, 3, H, W) in [0, 1], "layout": int64
    (B, H, W) with ignore_index, "depth": float32 (B, 1, H, W) (with_depth only; 0 = unknown),
    "source": list[str], "key": list[str]}` (or `(image, layout)` with `as_tuple=True`).

    `epoch_length` (samples per process): an endless resampled stream mixing sources by weight,
    cut to that length each pass (training). `None`: every sample exactly once across all
    processes and workers (with `shuffle=False, augment=False`: evaluation). `rank`/`world_size`
    default to torch.distributed or the launcher's environment. Don't pass the result through
    `accelerator.prepare`: it already splits the data by process.
    """
    if isinstance(sources, (str, Source)):
        sources = [sources]
    sources = [Source(urls=s) if isinstance(s, str) else s for s in sources]
    if not sources:
        raise ValueError("make_loader needs at least one source")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if epoch_length is not None and epoch_length < 1:
        raise ValueError(f"epoch_length must be >= 1 (or None for one pass), got {epoch_length}")
    default_rank, default_world = _distributed()
    rank = default_rank if rank is None else rank
    world_size = default_world if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    resolved = [resolve_source(s) for s in sources]
    if epoch_length is not None and not any(s.weight > 0 for s in resolved):
        raise ValueError("every source has weight 0")
    classes = _agreeing_classes(resolved)
    readers = world_size * max(1, num_workers)
    for src in resolved:
        if src.reader is None and len(src) < readers:
            warnings.warn(
                f"source '{src.name}' has {len(src)} shards for {world_size} processes x "
                f"{max(1, num_workers)} workers; "
                + ("shards are resampled, so workers read the same shards in different orders"
                   if epoch_length else "every worker reads all shards and keeps its share of samples"),
                stacklevel=2,
            )
    stream = SampleStream(
        resolved, batch_size=batch_size, augment=augment, shuffle=shuffle, epoch_length=epoch_length,
        seed=seed, with_depth=with_depth, tolerate_errors=tolerate_errors, rank=rank,
        world_size=world_size, shuffle_buffer=shuffle_buffer, crop=crop,
    )
    return ShardLoader(stream, num_workers=num_workers, as_tuple=as_tuple, classes=classes)


def _agreeing_classes(sources: list[ResolvedSource]) -> ClassInfo | None:
    known = [(s.name, s.classes) for s in sources if s.classes is not None]
    for name, classes in known[1:]:
        if not classes.same_as(known[0][1]):
            raise ShardError(
                f"sources disagree on classes: '{known[0][0]}' has {list(known[0][1].names)} "
                f"(ignore {known[0][1].ignore_index}), '{name}' has {list(classes.names)} "
                f"(ignore {classes.ignore_index})"
            )
    return known[0][1] if known else None
