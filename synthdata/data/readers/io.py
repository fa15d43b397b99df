"""Image and label-file reading for the dataset readers.

Every failure (missing, truncated, corrupt, unexpected mode) raises `DatasetError` naming the
file, so a bad file in a 20 000-image dataset is found by name, never as a bare PIL traceback.
Label files keep their raw values: palette PNGs are read as indices, never converted to RGB.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from synthdata.core.contract import DatasetError

TIFF_SUFFIXES = (".tif", ".tiff")


def _open(path: Path) -> Image.Image:
    """Open and fully decode an image (`load()` forces decoding, so truncation shows here)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        image = Image.open(path)
        image.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError ... for bad files
        raise DatasetError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
    return image


def read_tiff(path: str | Path) -> np.ndarray:
    """A TIFF's first page as stored (no colour map applied), via tifffile."""

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    log = logging.getLogger("tifffile")  # it logs, then returns an empty array, for a cut-off file
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        array = np.asarray(tifffile.imread(path, key=0))
    except Exception as e:  # tifffile raises TiffFileError, ValueError, struct.error ...
        raise DatasetError(f"{path}: cannot decode TIFF ({type(e).__name__}: {e})") from e
    finally:
        log.setLevel(level)
    if array.size == 0:
        raise DatasetError(f"{path}: cannot decode TIFF (no image data: truncated or corrupt file?)")
    return array


def to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)  # 16-bit microscopy/TIFF: keep the top 8 bits
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    raise DatasetError(f"{path}: unsupported image sample type {array.dtype}")


def read_rgb(path: str | Path) -> np.ndarray:
    """An image as uint8 `(H, W, 3)` RGB. Grayscale is repeated on 3 channels, palette images are
    mapped through their palette, alpha is dropped. TIFFs are read with tifffile and their stored
    values used as grey levels (SEM colour maps only recolour annotation overlays)."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        array = read_tiff(path)
        if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
            array = np.moveaxis(array, 0, -1)  # planar (C, H, W) storage
    else:
        image = _open(path)
        if image.mode in ("I;16", "I;16B", "I"):
            array = np.asarray(image).astype(np.uint16)
        else:
            array = np.asarray(image.convert("RGB"))
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise DatasetError(f"{path}: expected an image, got an array of shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(to_uint8(array[..., :3], path))


def read_labels(path: str | Path, allow_rgb: bool = False) -> np.ndarray:
    """A label file's raw values as `(H, W)` (uint8, uint16 or int32).

    Palette ('P') images give their indices. RGB files whose channels are equal give one channel;
    other RGB files are colour masks: returned as `(H, W, 3)` uint8 when `allow_rgb`, else an
    error (a colour mask needs a palette to become class indices).
    """
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        array = read_tiff(path)
    else:
        image = _open(path)
        if image.mode in ("RGBA", "LA", "PA"):
            image = image.convert("RGB" if image.mode == "RGBA" else image.mode[0])
        if image.mode not in ("P", "L", "1", "I", "I;16", "I;16B", "RGB"):
            raise DatasetError(f"{path}: unsupported label image mode {image.mode}")
        array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim == 3:
        if array.shape[2] == 4:
            array = array[..., :3]
        if array.shape[2] == 1 or (array[..., 0] == array[..., 1]).all() and (array[..., 0] == array[..., 2]).all():
            array = array[..., 0]
        elif allow_rgb:
            return np.ascontiguousarray(array.astype(np.uint8))
        else:
            raise DatasetError(
                f"{path}: label file is an RGB colour mask; expected single-channel or palette indices"
            )
    if array.ndim != 2:
        raise DatasetError(f"{path}: expected a label map, got an array of shape {array.shape}")
    if array.dtype.kind == "f":
        raise DatasetError(f"{path}: label file holds floating-point values ({array.dtype})")
    return np.ascontiguousarray(array)


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return data


def missing_files_error(where: str, what: str, paths: list[Path]) -> DatasetError:
    """One error listing every missing partner file (the first 10 by name, then a count)."""
    shown = "\n  ".join(str(p) for p in paths[:10])
    more = f"\n  ... and {len(paths) - 10} more" if len(paths) > 10 else ""
    return DatasetError(f"{where}: {len(paths)} {what}:\n  {shown}{more}")


def as_layout(raw: np.ndarray) -> np.ndarray:
    """A writable label-map copy: uint8 stays uint8 (compact), anything else becomes int64."""
    return raw.copy() if raw.dtype == np.uint8 else raw.astype(np.int64)
