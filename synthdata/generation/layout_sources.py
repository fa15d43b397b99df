"""Where production takes its layouts from: the layout GAN, the real training labels, or a mix.

Each source maps a list of sample seeds to `(B, H, W)` long layouts plus a `meta` dict per
sample; everything a source draws comes from the seed alone. Real layouts can be mirrored, and
every source can paste class-preserving objects of the training layouts into its layouts
(`produce.copy_paste=N`, an `ObjectPaster`; see `synthdata.texturing.copy_paste`): generated
layouts with pastes and composite texturing are the hybrid of issue 32, new scene layouts with
real pixels, where pastes bring back the thin classes a layout GAN loses.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from synthdata.core.imageops import resize_depth, resize_image, resize_labels
from synthdata.core.seeding import numpy_rng
from synthdata.texturing.copy_paste import ObjectPool, paste_objects

REAL_TAG = 0x5EA1  # seed domains, so sources never reuse each other's random streams
MIX_TAG = 0x313C
PASTE_TAG = 0x9A57  # pastes into generated layouts (real layouts paste from REAL_TAG's stream, as before)


class LayoutSource(Protocol):
    name: str

    def layouts(self, seeds: list[int]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """`B` seeds -> `(B, H, W)` long layouts and one meta dict per layout."""
        ...


class ObjectPaster:
    """Copy-paste of up to `max_objects` objects of a pool into one layout (`paste_objects`).

    `pool`: an `ObjectPool`, or a callable that builds it on first use (the training layouts are
    read only when a paste needs them). Bad options raise ValueError here, not at the first sample.
    """

    def __init__(
        self,
        max_objects: int,
        pool: ObjectPool | Callable[[], ObjectPool],
        *,
        classes: Sequence[int] | None = None,
        choice: str = "inverse_frequency",
        scale: Sequence[float] = (0.8, 1.25),
        flip: bool = True,
        position: str = "uniform",
    ):
        self.max_objects = int(max_objects)
        self._pool = pool
        self.classes = classes
        self.options = {"choice": choice, "scale": tuple(scale), "flip": flip, "position": position}
        paste_objects(np.zeros((1, 1), np.int64), ObjectPool([], np.zeros(1)), np.random.default_rng(0),
                      num_objects=0, **self.options)

    @property
    def pool(self) -> ObjectPool:
        if not isinstance(self._pool, ObjectPool):
            self._pool = self._pool()
        return self._pool

    def __call__(self, layout: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """`layout` with 1..max_objects objects pasted, and the meta entries that record them."""
        layout, pasted = paste_objects(layout, self.pool, rng, num_objects=int(rng.integers(1, self.max_objects + 1)),
                                       classes=self.classes, **self.options)
        return layout, ({"pasted_objects": len(pasted), "pasted": pasted} if pasted else {})


class GeneratedLayouts:
    """Layouts from the trained layout GAN (`Pipeline.layouts_from_seeds`), with `paster`'s
    objects pasted into each when one is given (drawn from the sample seed alone)."""

    name = "generated"

    def __init__(self, pipeline: Any, paster: ObjectPaster | None = None):
        self.pipeline = pipeline
        self.paster = paster

    def layouts(self, seeds: list[int]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        out = self.pipeline.layouts_from_seeds(list(seeds)).long()
        metas: list[dict[str, Any]] = [{"layout_source": "generated"} for _ in seeds]
        if self.paster is None:
            return out, metas
        pasted = []
        for layout, seed, meta in zip(out.cpu().numpy(), seeds, metas):
            layout, record = self.paster(layout, numpy_rng(seed, PASTE_TAG))
            meta.update(record)
            pasted.append(np.ascontiguousarray(layout))
        return torch.from_numpy(np.stack(pasted).astype(np.int64)).to(out.device), metas


class RealLayouts:
    """Layouts of a real dataset split (any sequence of samples with a `layout`), chosen by seed.

    `hflip` mirrors half of them; `copy_paste` > 0 pastes up to that many objects of `pool`
    (default: an `ObjectPool` of the dataset's layouts, built on first use; see
    `paste_objects`). Layouts read are cached (`cache_size`), since readers also decode images.
    """

    name = "real"

    def __init__(
        self,
        dataset: Sequence[dict[str, Any]],
        *,
        height: int,
        width: int,
        ignore_index: int = 255,
        hflip: bool = True,
        copy_paste: int = 0,
        paste_classes: Sequence[int] | None = None,
        cache_size: int = 1024,
        pool: ObjectPool | None = None,
        paste_choice: str = "inverse_frequency",
        paste_scale: Sequence[float] = (0.8, 1.25),
        paste_flip: bool = True,
        paste_position: str = "uniform",
    ):
        if len(dataset) == 0:
            raise ValueError("produce.layouts=real needs a dataset split with at least one sample")
        self.dataset = dataset
        self.height, self.width = height, width
        self.ignore_index = ignore_index
        self.hflip = hflip
        self.cache_size = cache_size
        self._cache: OrderedDict[int, tuple[np.ndarray, str]] = OrderedDict()
        self._index: dict[str, int] = {}  # layout id -> sample index, for `photo`
        self.paster = None
        if copy_paste > 0:
            self.paster = ObjectPaster(copy_paste, pool or self.training_pool, classes=paste_classes,
                                       choice=paste_choice, scale=paste_scale, flip=paste_flip,
                                       position=paste_position)

    def training_pool(self) -> ObjectPool:
        """The objects of every layout of the split (at the production size)."""
        return ObjectPool.from_layouts([self.layout_at(i) for i in range(len(self.dataset))],
                                       ignore_index=self.ignore_index)

    @property
    def pool(self) -> ObjectPool:
        return self.paster.pool if self.paster is not None else self.training_pool()

    def layout_at(self, index: int) -> tuple[np.ndarray, str]:
        """The layout of sample `index` at the production size, and its id."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        sample = self.dataset[index]
        layout = np.asarray(sample["layout"])
        if layout.shape != (self.height, self.width):
            layout = resize_labels(layout, self.height, self.width)
        item = (layout.astype(np.int64), str(sample.get("meta", {}).get("id", index)))
        self._index[item[1]] = index
        self._cache[index] = item
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return item

    def photo(self, meta: dict[str, Any]) -> dict[str, np.ndarray] | None:
        """The real sample behind a layout this source drew (its `meta`), at the production size and
        mirrored as the layout was: `layout` (as drawn, before pastes), `image` (H, W, 3) and `depth`
        when the dataset has it. None for a layout of another source."""
        if meta.get("layout_source") != "real" or meta.get("layout_id") not in self._index:
            return None
        index = self._index[meta["layout_id"]]
        sample = self.dataset[index]
        out = {"layout": self.layout_at(index)[0],
               "image": resize_image(np.asarray(sample["image"]), self.height, self.width)}
        if sample.get("depth") is not None:
            out["depth"] = resize_depth(np.asarray(sample["depth"], np.float32), self.height, self.width)
        if meta.get("hflip"):
            out = {k: v[:, ::-1] for k, v in out.items()}
        return {k: np.ascontiguousarray(v) for k, v in out.items()}

    def one(self, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        rng = numpy_rng(seed, REAL_TAG)
        layout, layout_id = self.layout_at(int(rng.integers(len(self.dataset))))
        meta: dict[str, Any] = {"layout_source": "real", "layout_id": layout_id}
        if self.hflip and rng.random() < 0.5:
            layout = layout[:, ::-1]
            meta["hflip"] = True
        if self.paster is not None:
            layout, record = self.paster(layout, rng)
            meta.update(record)
        return np.ascontiguousarray(layout), meta

    def layouts(self, seeds: list[int]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        pairs = [self.one(seed) for seed in seeds]
        stacked = np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, self.height, self.width))
        return torch.from_numpy(stacked.astype(np.int64)), [p[1] for p in pairs]


class MixedLayouts:
    """Each seed picks the real source with probability `real_ratio`, else the generated one."""

    name = "mixed"

    def __init__(self, generated: LayoutSource, real: LayoutSource, real_ratio: float):
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"produce.real_ratio must lie in [0, 1], got {real_ratio}")
        self.generated, self.real, self.real_ratio = generated, real, real_ratio

    def layouts(self, seeds: list[int]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        use_real = [numpy_rng(seed, MIX_TAG).random() < self.real_ratio for seed in seeds]
        parts: dict[bool, tuple[torch.Tensor, list[dict[str, Any]]]] = {}
        for flag, source in ((False, self.generated), (True, self.real)):
            chosen = [s for s, r in zip(seeds, use_real) if r == flag]
            if chosen:
                parts[flag] = source.layouts(chosen)
        layouts: list[torch.Tensor] = []
        metas: list[dict[str, Any]] = []
        cursor = {False: 0, True: 0}
        for flag in use_real:
            tensor, meta = parts[flag]
            layouts.append(tensor[cursor[flag]].cpu())
            metas.append(meta[cursor[flag]])
            cursor[flag] += 1
        return torch.stack(layouts), metas


def build_layout_source(
    kind: str,
    *,
    pipeline: Any = None,
    dataset: Sequence[dict[str, Any]] | None = None,
    height: int,
    width: int,
    ignore_index: int = 255,
    real_ratio: float = 0.5,
    hflip: bool = True,
    copy_paste: int = 0,
    paste_classes: Sequence[int] | None = None,
    pool: ObjectPool | None = None,
    paste_choice: str = "inverse_frequency",
    paste_scale: Sequence[float] = (0.8, 1.25),
    paste_flip: bool = True,
    paste_position: str = "uniform",
) -> LayoutSource:
    """The source named by `produce.layouts` (generated | real | mixed). `copy_paste` > 0 pastes
    objects of `pool` (default: the objects of `dataset`'s layouts, which generated layouts then
    need too) into every layout, generated or real."""
    kinds = ("generated", "real", "mixed")
    if kind not in kinds:
        raise ValueError(f"unknown produce.layouts '{kind}'. Valid: {', '.join(kinds)}")
    needs_dataset = kind != "generated" or (copy_paste > 0 and pool is None)
    if needs_dataset and dataset is None:
        why = "" if kind != "generated" else " (copy-paste takes its objects from the training layouts)"
        raise ValueError(f"produce.layouts={kind} needs a real dataset split{why}")
    real = None
    if needs_dataset:
        real = RealLayouts(dataset, height=height, width=width, ignore_index=ignore_index, hflip=hflip,
                           copy_paste=copy_paste, paste_classes=paste_classes, pool=pool, paste_choice=paste_choice,
                           paste_scale=paste_scale, paste_flip=paste_flip, paste_position=paste_position)
    if kind == "real":
        return real
    paster = None
    if copy_paste > 0:  # one pool for both halves of a mixed source
        paster = real.paster if real is not None else ObjectPaster(
            copy_paste, pool, classes=paste_classes, choice=paste_choice, scale=paste_scale, flip=paste_flip,
            position=paste_position)
    generated = GeneratedLayouts(pipeline, paster)
    return generated if kind == "generated" else MixedLayouts(generated, real, real_ratio)
