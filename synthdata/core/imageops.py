"""Resizing and cropping of samples: the one place that decides filters.

Images: area filter when shrinking, bilinear when enlarging. Label maps: nearest. Depth:
nearest, so unknown pixels (0 or NaN) never blend into valid depth. Nearest is OpenCV's
INTER_NEAREST_EXACT (pixel centres aligned, as PIL and scikit-image do it): plain INTER_NEAREST
takes the source pixel at floor(i * scale), which shifts labels against the area- or
bilinear-resized image by up to half an output pixel (docs/studies.md, "Label maps were half a
pixel off their images").
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

IMAGE_SHRINK_FILTER = "area"
IMAGE_ENLARGE_FILTER = "bilinear"
LABEL_FILTER = "nearest-exact"
DEPTH_FILTER = "nearest-exact"


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    shrink = height <= h and width <= w
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    if labels.shape[:2] == (height, width):
        return labels
    dtype = labels.dtype
    work = labels if dtype in (np.uint8, np.uint16) else labels.astype(np.int32)
    out = cv2.resize(work, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    return out.astype(dtype, copy=False)


def resize_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    if depth.shape[:2] == (height, width):
        return depth
    return cv2.resize(depth.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def resize_sample(sample: dict[str, Any], height: int | None, width: int | None) -> dict[str, Any]:
    """A copy of `sample` with image, layout and depth resized to `(height, width)`."""
    if height is None or width is None:
        return sample
    out = dict(sample)
    out["image"] = resize_image(sample["image"], height, width)
    out["layout"] = resize_labels(sample["layout"], height, width)
    if sample.get("depth") is not None:
        out["depth"] = resize_depth(sample["depth"], height, width)
    return out


def crop_sample(sample: dict[str, Any], top: int, left: int, height: int, width: int) -> dict[str, Any]:
    out = dict(sample)
    for key in ("image", "layout", "depth"):
        if sample.get(key) is not None:
            out[key] = sample[key][top : top + height, left : left + width]
    return out


def protocol() -> dict[str, str]:
    """The resize filters, for reports that pin the evaluation protocol."""
    return {
        "image_shrink": IMAGE_SHRINK_FILTER,
        "image_enlarge": IMAGE_ENLARGE_FILTER,
        "labels": LABEL_FILTER,
        "depth": DEPTH_FILTER,
    }
