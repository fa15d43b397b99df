"""`stages.image.arch=flat`: each class painted its mean training colour, nothing to train; with every
class's real pixels kept, only pasted objects are flat, on the same layouts a GAN stage would paint."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from synthdata.core.contract import ClassInfo
from synthdata.core.palette import default_palette
from synthdata.core.recipe import DataConfig
from synthdata.data.readers import make_reader
from synthdata.texturing.composite import IGNORE_FILL
from synthdata.texturing.flat import FlatPipeline, class_colours

H, W = 32, 64
SPLITS = {"train": 8, "val": 2, "test": 2}
FLAT = [
    f"data.height={H}", f"data.width={W}", "data.split_sizes={train: 8, val: 2, test: 2}", "stages.image.arch=flat",
    "produce.layouts=real", "produce.copy_paste=3", "produce.num_samples=12", "produce.shard_size=4",
    "produce.batch_size=3", "produce.encode_workers=1", "produce.mixed_precision='no'",
]


@pytest.fixture(scope="module")
def train() -> list[dict]:
    return list(make_reader(DataConfig(reader="toy", height=H, width=W, split_sizes=SPLITS), "train"))


def test_class_colours_are_each_class_mean_and_grey_where_a_class_is_absent(train):
    num_classes = int(max(s["layout"].max() for s in train)) + 2  # the last class appears nowhere
    colours, pixels = class_colours(train, num_classes)
    for c in range(num_classes - 1):
        values = np.concatenate([s["image"][s["layout"] == c] for s in train]).astype(np.float64)
        assert pixels[c] == len(values)
        if len(values):
            np.testing.assert_array_equal(colours[c], np.rint(values.mean(0)).astype(np.uint8))
    assert pixels[-1] == 0 and tuple(colours[-1]) == IGNORE_FILL
    # an ignored class counts nowhere
    ignored, counts = class_colours(train, num_classes, ignore_index=0)
    assert counts[0] == 0 and tuple(ignored[0]) == IGNORE_FILL and np.array_equal(ignored[1:], colours[1:])


def test_the_pipeline_paints_every_pixel_its_class_colour_and_ignore_grey():
    classes = ClassInfo(("a", "b", "c"), default_palette(3), ignore_index=255)
    colours = np.array([[10, 20, 30], [200, 100, 0], [0, 0, 255]], np.uint8)
    flat = FlatPipeline(colours, classes=classes, height=4, width=5, depth_scale=0.001)
    layouts = torch.tensor([[[0, 1, 2, 255, 0]] * 4, [[2, 2, 1, -1, 7]] * 4])  # -1, 7: outside the classes
    out = flat.from_layouts(layouts, [7, 8])
    assert out["depth"] is None and out["image"].shape == (2, 3, 4, 5) and out["meta"][0]["texturing"] == "flat"
    painted = np.rint(out["image"].permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    known = (layouts >= 0) & (layouts < 3)
    expect = np.concatenate([colours, np.asarray([IGNORE_FILL], np.uint8)])[np.where(known, layouts, 3)]
    np.testing.assert_array_equal(painted, expect)
    with pytest.raises(ValueError, match="this production makes"):
        flat.from_layouts(torch.zeros((1, 3, 5), dtype=torch.long), [0])
    with pytest.raises(Exception, match="stage=layout"):
        flat.layouts_from_seeds([0])


def test_only_pasted_objects_are_flat_when_every_class_keeps_its_real_pixels(tmp_path, train, capsys):
    from synthdata.produce import main as produce
    from synthdata.train import main as train_main

    names = list(make_reader(DataConfig(reader="toy", height=H, width=W, split_sizes=SPLITS), "train").classes.names)
    out = tmp_path / "shards"
    keep = "produce.real_pixel_classes=[" + ", ".join(names) + "]"
    assert produce([f"run_dir={tmp_path / 'run'}", *FLAT, f"produce.out={out}", keep]) == 0
    colours, _ = class_colours(train, len(names))
    photos = {s["meta"]["id"]: s for s in train}
    pasted_pixels = 0
    for sample in wds.WebDataset([str(p) for p in sorted(out.glob("*.tar"))], shardshuffle=False):
        meta = json.loads(sample["json"])
        image = np.asarray(Image.open(io.BytesIO(sample["image.png"])))
        layout = np.asarray(Image.open(io.BytesIO(sample["layout.png"]))).astype(np.int64)
        photo = photos[meta["layout_id"]]
        real_image, real_layout = photo["image"], photo["layout"].astype(np.int64)
        if meta.get("hflip"):
            real_image, real_layout = real_image[:, ::-1], real_layout[:, ::-1]
        own = layout == real_layout
        assert meta["texturing"] == "flat" and meta["real_pixel_share"] == round(own.mean(), 4)
        np.testing.assert_array_equal(image[own], real_image[own])
        np.testing.assert_array_equal(image[~own], colours[layout[~own]])
        pasted_pixels += int((~own).sum())
        assert "depth.png" not in sample
    assert pasted_pixels > 0
    # `train stage=image` has nothing to train: it says so and the colours, and writes no checkpoint
    capsys.readouterr()
    assert train_main([f"run_dir={tmp_path / 'run2'}", "stage=image", *FLAT[:4]]) == 0
    said = capsys.readouterr().out
    assert "no weights to train" in said and names[0] in said and not (tmp_path / "run2" / "checkpoints").exists()


def test_flat_refuses_a_harmoniser_in_one_line(tmp_path, capsys):
    from synthdata.produce import main as produce
    from synthdata.train import main as train

    out = tmp_path / "bad"
    assert produce([f"run_dir={tmp_path / 'run'}", *FLAT, f"produce.out={out}", "stages.image.harmonise=spade"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stages.image.harmonise" in err[0] and not out.exists()
    assert train([f"run_dir={tmp_path / 'run2'}", "stage=image", *FLAT[:4], "stages.image.harmonise=spade"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stages.image.harmonise" in err[0] and not (tmp_path / "run2" / "checkpoints").exists()

