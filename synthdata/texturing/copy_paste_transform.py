"""Real pixels as an online transform: class-aware copy-paste of segment-bank objects, each with its
own real pixels, for any training loop (`CopyPaste`, an albumentations `DualTransform`), and a torch
`Dataset` wrapper seeded per (seed, index, epoch) (`CopyPasteDataset`). The label map goes through
`copy_paste.paste_objects`, the pixels through `texturing.paste_donor_pixels`, as `produce` does.
"""

from __future__ import annotations

import os

# albumentations asks PyPI for a newer version when imported unless told not to (no network at run time)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import random  # noqa: E402  (after the environment setting above)
from typing import Any, Sequence  # noqa: E402

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
from albumentations.core.type_definitions import Targets  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from synthdata.core.seeding import derive_seed  # noqa: E402
from synthdata.texturing.copy_paste import PASTE_CHOICES, PASTE_POSITIONS, ObjectPool, paste_objects  # noqa: E402
from synthdata.texturing.pipeline import paste_donor_pixels  # noqa: E402
from synthdata.texturing.segment_bank import SegmentBank, load_bank  # noqa: E402

DATASET_TAG = 0xC0B7  # seed domain of CopyPasteDataset's per-sample draws
OTHER_TARGETS = ("images", "masks", "bboxes", "keypoints", "volume", "volumes", "mask3d", "masks3d")


class CopyPaste(A.DualTransform):
    """Paste 1..`max_objects` objects of a segment bank into `mask` (HxW int class indices) and their
    own real pixels into `image` (HxWx3 uint8): `CopyPaste(bank)(image=img, mask=m)` -> {"image",
    "mask"}, same shapes and dtypes; also a step of `albumentations.Compose`.

    Objects are the bank's thing segments (`ObjectPool.from_bank`: region classes never move, at
    most 10% of the frame); per object `paste_objects` draws a class (`choice`), an object, a flip
    (`flip`), a scale in `scale` and a place (`position`: uniform | class | donor) and refuses
    places that would erase a class. Each pasted object's visible pixels are its bank segment's
    pixels, warped as its mask was (`paste_donor_pixels`); every other pixel stays as it was.

    `bank`: a `SegmentBank` or the path of a saved one. `classes`: names or indices of the classes
    to paste; None or "auto": every non-region class of the bank (its region rule; the two are the
    same for a bank's objects, "auto" mirrors `produce.copy_paste_classes`). Listed classes without
    a pasteable object are skipped; none at all, or a region class, is a ValueError.
    Images must be at the bank's resolution (ValueError naming both sizes otherwise): put
    CopyPaste before any crop or resize. Only `image` and `mask` are transformed; other targets
    are refused. Randomness: `seed` (like any albumentations transform; `Compose(seed=...)` sets it
    too), or per call `random_state=` an int or a numpy Generator. The last call's draws, with one
    record per pasted object (class_index, segment, source, flip, scale, box, pixels), are in
    `get_applied_params()["pasted"]`.
    """

    _targets = (Targets.IMAGE, Targets.MASK)

    def __init__(self, bank: SegmentBank | str | os.PathLike, *, max_objects: int = 3,
                 classes: Sequence[str | int] | str | None = None, choice: str = "inverse_frequency",
                 scale: Sequence[float] = (0.8, 1.25), flip: bool = True, position: str = "uniform",
                 seed: int | None = None, p: float = 1.0):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"CopyPaste: p must be a probability in [0, 1], got {p!r}")
        super().__init__(p=p)
        if not isinstance(bank, SegmentBank):
            bank = load_bank(bank)
        self.bank = bank.check()
        if isinstance(max_objects, bool) or not isinstance(max_objects, (int, np.integer)) or max_objects < 1:
            raise ValueError(f"CopyPaste: max_objects must be an integer >= 1, got {max_objects!r}")
        if choice not in PASTE_CHOICES:
            raise ValueError(f"CopyPaste: choice must be one of {', '.join(PASTE_CHOICES)}, got {choice!r}")
        if position not in PASTE_POSITIONS:
            raise ValueError(f"CopyPaste: position must be one of {', '.join(PASTE_POSITIONS)}, got {position!r}")
        try:
            lo, hi = (float(v) for v in scale)
        except (TypeError, ValueError):
            lo = hi = float("nan")
        if not 0 < lo <= hi:
            raise ValueError(f"CopyPaste: scale must be [low, high] with 0 < low <= high, got {scale!r}")
        if not isinstance(flip, (bool, np.bool_)):
            raise ValueError(f"CopyPaste: flip must be True or False, got {flip!r}")
        self.max_objects, self.choice, self.scale = int(max_objects), choice, (lo, hi)
        self.flip, self.position, self.classes = bool(flip), position, classes
        self.pool = ObjectPool.from_bank(self.bank)
        self.class_indices = self._resolve_classes(classes)
        if seed is not None:
            self.set_random_seed(seed)

    def _resolve_classes(self, classes: Sequence[str | int] | str | None) -> list[int] | None:
        bank, have = self.bank, sorted(self.pool.by_class)
        names = list(bank.classes)
        if classes is None or (isinstance(classes, str) and classes == "auto"):
            if not have:
                raise ValueError(f"CopyPaste: classes={classes!r}: {bank.name} has no pasteable objects (every "
                                 f"class is a region class or larger than 10% of the frame)")
            return None
        if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
            raise ValueError(f"CopyPaste: classes must be None, 'auto' or a non-empty list of class names or "
                             f"indices of {names}, got {classes!r}")
        indices = []
        for c in classes:
            if isinstance(c, str) and c in names:
                indices.append(names.index(c))
            elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < len(names):
                indices.append(int(c))
            else:
                raise ValueError(f"CopyPaste: classes: {c!r} is not a class of {bank.name}: {names}")
        regions = [names[c] for c in indices if bank.region[c]]
        if regions:
            raise ValueError(f"CopyPaste: classes: {regions} are region classes of {bank.name}, never pasted; "
                             f"pasteable: {[names[c] for c in have]}")
        if not set(indices) & set(have):
            raise ValueError(f"CopyPaste: classes: no pasteable object of {[names[c] for c in indices]} in "
                             f"{bank.name}; pasteable: {[names[c] for c in have]}")
        return sorted(set(indices))

    @property
    def targets(self) -> dict[str, Any]:
        return {"image": self.apply, "mask": self.apply_to_mask}

    @property
    def targets_as_params(self) -> list[str]:
        return ["image", "mask"]

    def add_targets(self, additional_targets: dict[str, str]) -> None:
        if additional_targets:
            raise ValueError(f"CopyPaste transforms only image and mask; the additional targets "
                             f"{sorted(additional_targets)} would not get the pasted objects")

    def __call__(self, *args: Any, force_apply: bool = False, random_state: Any = None, **data: Any) -> Any:
        """`image=`, `mask=` -> dict; `random_state` (int or numpy Generator) decides this call's draws."""
        if random_state is None:
            return super().__call__(*args, force_apply=force_apply, **data)
        if isinstance(random_state, np.random.Generator):
            rng = random_state
        elif isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool) and random_state >= 0:
            rng = np.random.default_rng(int(random_state))
        else:
            raise ValueError(f"CopyPaste: random_state must be None, an int >= 0 or a numpy Generator, "
                             f"got {random_state!r}")
        saved = self.random_generator, self.py_random
        self.set_random_state(rng, random.Random(int(rng.integers(2**63))))
        try:
            return super().__call__(*args, force_apply=force_apply, **data)
        finally:
            self.set_random_state(*saved)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        others = sorted(k for k in OTHER_TARGETS if data.get(k) is not None)
        if others:
            raise ValueError(f"CopyPaste transforms only image and mask; {others} would not get the pasted objects")
        image, mask = self._checked(data["image"], data["mask"])
        rng = self.random_generator
        count = int(rng.integers(1, self.max_objects + 1))
        layout, pasted = paste_objects(mask, self.pool, rng, num_objects=count, classes=self.class_indices,
                                       choice=self.choice, scale=self.scale, flip=self.flip, position=self.position)
        out = {"image": image.copy()}
        paste_donor_pixels(out, layout, self.bank, pasted)
        return {"pasted_image": out["image"], "pasted_mask": layout, "pasted": pasted}

    def _checked(self, image: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"CopyPaste: image must be a uint8 HxWx3 numpy array (before any normalisation), got "
                             f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}")
        if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype.kind not in "iu":
            raise ValueError(f"CopyPaste: mask must be an HxW integer numpy array of class indices, got "
                             f"{type(mask).__name__} {getattr(mask, 'dtype', '')} {getattr(mask, 'shape', '')}")
        height, width = self.bank.resolution
        if image.shape[:2] != mask.shape or mask.shape != (height, width):
            raise ValueError(f"CopyPaste: image {image.shape[0]}x{image.shape[1]} and mask {mask.shape[0]}x"
                             f"{mask.shape[1]} must both be {height}x{width}, the resolution {self.bank.name} "
                             f"was built at; put CopyPaste before any crop or resize")
        num_classes, ignore = len(self.bank.classes), self.bank.ignore_index
        bad = (mask < 0) | ((mask >= num_classes) & (mask != ignore))
        if bad.any():
            raise ValueError(f"CopyPaste: mask holds labels {np.unique(mask[bad])[:5].tolist()} outside "
                             f"0..{num_classes - 1} and ignore_index {ignore} of {self.bank.name}")
        return image, mask

    def apply(self, img: np.ndarray, pasted_image: np.ndarray, **params: Any) -> np.ndarray:
        return pasted_image

    def apply_to_mask(self, mask: np.ndarray, pasted_mask: np.ndarray, **params: Any) -> np.ndarray:
        return pasted_mask

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_objects", "classes", "choice", "scale", "flip", "position")


class CopyPasteDataset(Dataset):
    """`dataset` with `transform` (a `CopyPaste`, or an albumentations transform or Compose holding
    one) applied to each sample, seeded by (seed, index, epoch) alone: the same sample whatever the
    worker or process. Samples are dicts with "image" (HxWx3 uint8) and "layout" (HxW), returned as
    a copy with both replaced (other keys kept, except "depth", which the pasted objects would
    contradict: dropped), or `(image, mask)` tuples, returned as tuples. `set_epoch(e)` before an
    epoch draws new pastes (DataLoader workers see it unless `persistent_workers=True`)."""

    def __init__(self, dataset: Sequence[Any], transform: Any, seed: int = 0):
        if not hasattr(transform, "set_random_seed"):
            raise ValueError(f"CopyPasteDataset: transform must be a CopyPaste or an albumentations transform "
                             f"(it is seeded per sample), got {type(transform).__name__}")
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        if isinstance(sample, dict):
            image, mask = sample["image"], sample["layout"]
        elif isinstance(sample, (tuple, list)) and len(sample) == 2:
            image, mask = sample
        else:
            raise ValueError(f"CopyPasteDataset: sample {index} must be a dict with 'image' and 'layout' or an "
                             f"(image, mask) pair, got {type(sample).__name__}")
        self.transform.set_random_seed(derive_seed(self.seed, DATASET_TAG, index, self.epoch) % 2**32)
        out = self.transform(image=np.asarray(image), mask=np.asarray(mask))
        if not isinstance(sample, dict):
            return out["image"], out["mask"]
        result = {k: v for k, v in sample.items() if k != "depth"}
        result["image"], result["layout"] = out["image"], out["mask"]
        return result


class OnlineCopyPaste:
    """A loader `Source.transform`: `CopyPaste` on a sample dict ("image", "layout"), drawing from the
    stream's numpy generator, so `segment` pastes into real training samples as they are read
    (`seg.online_copy_paste`). Depth, when the sample has it, is dropped where objects were pasted
    (set to 0, unknown): the pasted pixels have no depth of their own."""

    def __init__(self, transform: CopyPaste):
        self.transform = transform

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        layout = np.asarray(sample["layout"])
        out = self.transform(image=np.asarray(sample["image"]), mask=layout, random_state=rng)
        pasted = out["mask"] is not layout
        sample = dict(sample, image=out["image"], layout=out["mask"].astype(layout.dtype, copy=False))
        if pasted and sample.get("depth") is not None:
            changed = sample["layout"] != layout
            sample["depth"] = np.where(changed, np.float32(0), np.asarray(sample["depth"], np.float32))
        return sample


__all__ = ["CopyPaste", "CopyPasteDataset", "OnlineCopyPaste"]
