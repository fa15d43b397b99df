"""Where production takes its layouts from: the layout GAN, the real training labels, or a mix.

Each source maps a list of sample seeds to `(B, H, W)` long layouts plus a `meta` dict per
sample; everything a source draws comes from the seed alone. Real layouts can be varied with a
horizontal flip and class-preserving object copy-paste (`produce.copy_paste=N`; see
`synthdata.generation.copy_paste`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from synthdata.core.imageops import resize_labels
from synthdata.core.seeding import numpy_rng
from synthdata.generation.copy_paste import ObjectPool, paste_objects

REAL_TAG = 0x5EA1  # seed domains, so sources never reuse each other's random streams
MIX_TAG = 0x313C


class LayoutSource(Protocol):
    name: str

    def layouts(self, seeds: list[int]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """`B` seeds -> `(B, H, W)` long layouts and one meta dict per layout."""
        ...


class GeneratedLayouts:
    """Layouts from the trained layout GAN (`Pipeline.layouts_from_seeds`)."""

    name = "generated"

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline

    def layouts(self, seeds: list[int]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        out = self.pipeline.layouts_from_seeds(list(seeds)).long()
        return out, [{"layout_source": "generated"} for _ in seeds]


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
        self.copy_paste = copy_paste
        self.paste_classes = paste_classes
        self.cache_size = cache_size
        self._cache: OrderedDict[int, tuple[np.ndarray, str]] = OrderedDict()
        self._pool = pool
        self.paste = {"choice": paste_choice, "scale": tuple(paste_scale), "flip": paste_flip,
                      "position": paste_position}
        if copy_paste > 0:  # refuse bad settings now, not at the first sample
            paste_objects(np.zeros((1, 1), np.int64), ObjectPool([], np.zeros(1)), np.random.default_rng(0),
                          num_objects=0, **self.paste)

    @property
    def pool(self) -> ObjectPool:
        if self._pool is None:
            self._pool = ObjectPool.from_layouts([self.layout_at(i) for i in range(len(self.dataset))],
                                                 ignore_index=self.ignore_index)
        return self._pool

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
        self._cache[index] = item
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return item

    def one(self, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        rng = numpy_rng(seed, REAL_TAG)
        layout, layout_id = self.layout_at(int(rng.integers(len(self.dataset))))
        meta: dict[str, Any] = {"layout_source": "real", "layout_id": layout_id}
        if self.hflip and rng.random() < 0.5:
            layout = layout[:, ::-1]
            meta["hflip"] = True
        if self.copy_paste > 0:
            layout, pasted = paste_objects(layout, self.pool, rng, num_objects=int(rng.integers(1, self.copy_paste + 1)),
                                           classes=self.paste_classes, **self.paste)
            if pasted:
                meta.update(pasted_objects=len(pasted), pasted=pasted)
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
    **paste: Any,
) -> LayoutSource:
    """The source named by `produce.layouts` (generated | real | mixed); `paste`: `pool`,
    `paste_choice`, `paste_scale`, `paste_flip`, `paste_position` of `RealLayouts`."""
    kinds = ("generated", "real", "mixed")
    if kind not in kinds:
        raise ValueError(f"unknown produce.layouts '{kind}'. Valid: {', '.join(kinds)}")
    generated = GeneratedLayouts(pipeline) if kind in ("generated", "mixed") else None
    real = None
    if kind in ("real", "mixed"):
        if dataset is None:
            raise ValueError(f"produce.layouts={kind} needs a real dataset split")
        real = RealLayouts(
            dataset,
            height=height,
            width=width,
            ignore_index=ignore_index,
            hflip=hflip,
            copy_paste=copy_paste,
            paste_classes=paste_classes,
            **paste,
        )
    if kind == "generated":
        return generated
    if kind == "real":
        return real
    return MixedLayouts(generated, real, real_ratio)
