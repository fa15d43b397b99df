"""Pictures of samples: depth colour maps, image | layout | depth rows, grids written as PNG.

Used for training sample grids, shard contact sheets, reports and the demo. Inputs may be numpy
arrays or torch tensors, HWC or CHW, uint8 or float in [0, 1]; outputs are uint8 RGB.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from synthdata.core.palette import colorize

BLANK_GREY = 40  # the depth panel of samples that have no depth


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def as_rgb(image: Any) -> np.ndarray:
    """`(H, W, 3)`, `(3, H, W)` or `(H, W)`, uint8 or float in [0, 1] -> uint8 `(H, W, 3)`."""
    a = _numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an image (H, W, 3), (3, H, W) or (H, W), got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


@lru_cache(maxsize=8)
def _colormap_lut(name: str) -> np.ndarray:
    import matplotlib  # noqa: PLC0415  (matplotlib is slow to import; only plots need it)

    return (matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)


def depth_to_rgb(depth: Any, cmap: str = "plasma", low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Depth `(H, W)` (or `(1, H, W)`) -> uint8 `(H, W, 3)`: near bright, far dark, unknown black.

    Colours follow log depth between its `low` and `high` percentiles over the known pixels,
    so near and far structure both show and a few outliers do not wash out the scene.
    """
    d = _numpy(depth).astype(np.float32)
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2:
        raise ValueError(f"expected depth (H, W), got shape {d.shape}")
    known = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape + (3,), np.uint8)
    if not known.any():
        return out
    inv = np.zeros_like(d)
    inv[known] = -np.log(d[known])  # larger = nearer
    lo, hi = np.percentile(inv[known], [low, high])
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    t = np.clip((inv - lo) * scale, 0.0, 1.0) if scale else np.full_like(inv, 0.5)
    index = (t * 255 + 0.5).astype(np.uint8)
    out[known] = _colormap_lut(cmap)[index[known]]
    return out


def sample_row(sample: dict[str, Any], classes: Any) -> np.ndarray:
    """`image | coloured layout | depth` side by side, uint8 `(H, 3W, 3)`.

    `classes` is a `ClassInfo`; a sample without depth (absent or None) gets a blank panel.
    """
    image = as_rgb(sample["image"])
    layout = _numpy(sample["layout"]).astype(np.int64)
    if layout.ndim == 3 and layout.shape[0] == 1:
        layout = layout[0]
    if layout.shape != image.shape[:2]:
        raise ValueError(f"layout shape {layout.shape} differs from image size {image.shape[:2]}")
    panels = [image, colorize(layout, classes.palette, classes.ignore_index)]
    depth = sample.get("depth")
    if depth is None:
        panels.append(np.full_like(image, BLANK_GREY))
    else:
        panels.append(depth_to_rgb(depth))
    return np.concatenate(panels, axis=1)


def image_grid(images: Sequence[Any], ncols: int = 8, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Images in rows of `ncols` with `pad` pixels of `fill` between them, uint8 RGB.

    Cells take the largest image size; smaller images sit at a cell's top left.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    tiles = [as_rgb(im) for im in images]
    ncols = max(1, min(ncols, len(tiles)))
    nrows = -(-len(tiles) // ncols)
    ch, cw = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    grid = np.full((nrows * ch + (nrows - 1) * pad, ncols * cw + (ncols - 1) * pad, 3), fill, np.uint8)
    for i, tile in enumerate(tiles):
        y, x = (i // ncols) * (ch + pad), (i % ncols) * (cw + pad)
        grid[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return grid


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """Write uint8 RGB `(H, W, 3)` to `path` (folders created); an unwritable path raises."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(as_rgb(image), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")
    return path


def save_image_grid(images: Sequence[Any], path: str | Path, ncols: int = 8, pad: int = 2) -> Path:
    """A grid of images (see `image_grid`) written as PNG; returns the path."""
    return write_png(image_grid(images, ncols=ncols, pad=pad), path)


def save_grid(samples: Sequence[dict[str, Any]], classes: Any, path: str | Path, max_rows: int = 16,
              columns: int = 1, pad: int = 2) -> Path:
    """Samples as `sample_row`s (at most `max_rows` rows of `columns` samples) written as PNG."""
    rows = [sample_row(s, classes) for s in list(samples)[: max_rows * columns]]
    return write_png(image_grid(rows, ncols=columns, pad=pad), path)
