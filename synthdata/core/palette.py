"""Class palettes: colouring label maps and snapping RGB colours back to class indices."""

from __future__ import annotations

import numpy as np

IGNORE_COLOR = (0, 0, 0)


def default_palette(num_classes: int) -> np.ndarray:
    """A distinct RGB colour per class (the Pascal VOC bit-interleaving scheme), `(C, 3)` uint8."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for i in range(num_classes):
        c, r, g, b = i + 1, 0, 0, 0  # +1 keeps black free for ignore
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def colorize(layout: np.ndarray, palette: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """`(H, W)` class indices -> `(H, W, 3)` uint8 colours; ignore and out-of-range pixels black."""
    palette = np.asarray(palette, dtype=np.uint8)
    table = np.zeros((max(int(layout.max(initial=0)) + 1, len(palette)), 3), dtype=np.uint8)
    table[: len(palette)] = palette
    out = table[np.clip(layout, 0, len(table) - 1)]
    out[(layout == ignore_index) | (layout >= len(palette)) | (layout < 0)] = IGNORE_COLOR
    return out


def snap_to_palette(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """`(..., 3)` colours -> index of the nearest palette colour, `(...)` int64."""
    pal = np.asarray(palette, dtype=np.float32)
    flat = rgb.reshape(-1, 3).astype(np.float32)
    dist = (flat**2).sum(1, keepdims=True) - 2 * flat @ pal.T + (pal**2).sum(1)[None]
    return dist.argmin(1).reshape(rgb.shape[:-1]).astype(np.int64)


def rgb_to_index(rgb: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact colour lookup: returns `(indices, unknown_mask)`; unknown colours get index -1."""
    pal = np.asarray(palette, dtype=np.int64)
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal_codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(pal_codes)
    pos = np.searchsorted(pal_codes[order], codes).clip(0, len(pal) - 1)
    found = pal_codes[order][pos] == codes
    idx = np.where(found, order[pos], -1)
    return idx, ~found
