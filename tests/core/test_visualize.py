"""Pictures: depth colour maps, sample rows and PNG grids of the expected size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from synthdata.core.contract import ClassInfo
from synthdata.core.visualize import BLANK_GREY, as_rgb, depth_to_rgb, sample_row, save_grid, save_image_grid

CLASSES = ClassInfo(("a", "b", "c"), np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8), 255)


def _sample(depth: bool = True) -> dict:
    layout = np.zeros((8, 12), np.uint8)
    layout[:, 4:8], layout[:, 8:] = 1, 2
    layout[0, 0] = 255
    out = {"image": np.full((8, 12, 3), 100, np.uint8), "layout": layout, "meta": {}}
    if depth:
        out["depth"] = np.linspace(1, 20, 96, dtype=np.float32).reshape(8, 12)
    return out


def test_depth_to_rgb_near_is_bright_and_unknown_black():
    depth = np.tile(np.linspace(1.0, 50.0, 16, dtype=np.float32), (4, 1))
    depth[0, 0], depth[0, 1] = 0.0, np.nan
    rgb = depth_to_rgb(depth)
    assert rgb.shape == (4, 16, 3) and rgb.dtype == np.uint8
    assert (rgb[0, :2] == 0).all()
    assert int(rgb[2, 2].sum()) > int(rgb[2, -1].sum())
    assert (depth_to_rgb(np.zeros((3, 3))) == 0).all()
    assert depth_to_rgb(torch.full((1, 3, 3), 5.0)).shape == (3, 3, 3)  # constant depth, tensor


def test_sample_row_puts_image_layout_and_depth_side_by_side():
    row = sample_row(_sample(), CLASSES)
    assert row.shape == (8, 36, 3) and row.dtype == np.uint8
    assert (row[:, :12] == 100).all()
    assert row[1, 12 + 5].tolist() == [0, 255, 0] and row[0, 12].tolist() == [0, 0, 0]  # ignore black
    blank = sample_row(_sample(depth=False), CLASSES)
    assert (blank[:, 24:] == BLANK_GREY).all()
    with pytest.raises(ValueError, match="layout shape"):
        sample_row({"image": np.zeros((4, 4, 3), np.uint8), "layout": np.zeros((5, 4))}, CLASSES)


def test_as_rgb_accepts_float_chw_tensors():
    rgb = as_rgb(torch.ones(3, 5, 7) * 0.5)
    assert rgb.shape == (5, 7, 3) and (rgb == 128).all()
    with pytest.raises(ValueError):
        as_rgb(np.zeros((2, 3, 4, 5)))


def test_save_grid_writes_a_png_of_the_expected_size(tmp_path):
    path = save_grid([_sample(), _sample(False), _sample()], CLASSES, tmp_path / "sub" / "grid.png")
    assert cv2.imread(str(path)).shape == (3 * 8 + 2 * 2, 36, 3)
    two_cols = save_grid([_sample()] * 5, CLASSES, tmp_path / "g2.png", max_rows=2, columns=2)
    assert cv2.imread(str(two_cols)).shape == (2 * 8 + 2, 2 * 36 + 2, 3)


def test_save_image_grid_lays_out_rows_of_ncols(tmp_path):
    images = [np.full((6, 10, 3), 20 * i, np.uint8) for i in range(5)]
    path = save_image_grid(images, tmp_path / "images.png", ncols=2, pad=3)
    grid = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert grid.shape == (3 * 6 + 2 * 3, 2 * 10 + 3, 3)
    assert (grid[6 + 3 : 12 + 3, 10 + 3 :] == 60).all()  # image 3: second row, second column
    assert (grid[6, :] == 255).all()  # padding
