"""Joint image / layout / depth transforms of the loader (albumentations), the same for real and
synthetic samples."""

from __future__ import annotations

import os

# albumentations asks PyPI for a newer version when imported unless told not to (no network at run time)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from typing import Any  # noqa: E402  (after the environment setting above)

import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from synthdata.core.contract import ShardError  # noqa: E402


class SampleTransform:
    """Joint augmentation with albumentations: one call transforms image, layout and depth
    (layout and depth as masks: nearest interpolation, so labels and unknown depth never blend).
    Horizontal flip, RandomResizedCrop back to the output size, colour jitter on the image only.
    Without `augment`, `crop` is a centre crop."""

    def __init__(self, *, augment: bool, crop: tuple[int, int] | None, with_depth: bool, seed: int):
        self.augment, self.crop, self.with_depth, self.seed = augment, crop, with_depth, seed
        self._by_size: dict[tuple[int, int], Any] = {}

    def _build(self, height: int, width: int) -> Any:
        out_h, out_w = self.crop or (height, width)
        if out_h > height or out_w > width:
            raise ShardError(f"crop {out_h}x{out_w} is larger than the {height}x{width} samples")
        if self.augment:
            aspect = out_w / out_h
            ops = [
                A.HorizontalFlip(p=0.5),
                # labels resized with centres aligned, as core.imageops does (albumentations' default
                # INTER_NEAREST shifts them against the bilinear image)
                A.RandomResizedCrop(size=(out_h, out_w), scale=(0.5, 1.0), ratio=(0.75 * aspect, 1.333 * aspect),
                                    mask_interpolation=cv2.INTER_NEAREST_EXACT),
                A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03, p=0.8),
            ]
        elif self.crop:
            ops = [A.CenterCrop(height=out_h, width=out_w)]
        else:
            return None
        # seeded per (seed, rank, worker, epoch) by the stream, so a run is reproducible
        return A.Compose(ops, additional_targets={"depth": "mask"}, seed=self.seed % (2**32))

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        size = sample["image"].shape[:2]
        if size not in self._by_size:
            self._by_size[size] = self._build(*size)
        transform = self._by_size[size]
        if transform is None:
            return sample
        args = {"image": sample["image"], "mask": sample["layout"]}
        if self.with_depth:
            args["depth"] = sample["depth"]
        out = transform(**args)
        sample = dict(sample, image=out["image"], layout=out["mask"])
        if self.with_depth:
            sample["depth"] = out["depth"]
        return sample
