"""`produce.real_pixel_classes`: real layouts keep the photo's pixels of chosen classes; the image
stage paints the rest, pasted objects and generated layouts."""

from __future__ import annotations

import numpy as np
import torch

from synthdata.generation.layout_sources import MixedLayouts, RealLayouts
from synthdata.generation.real_pixels import RealPixels

H, W = 16, 24
PAINT = 0.5  # the stand-in stage paints every pixel this grey, depth 7 m


class GreyStage:
    """Stands in for a GAN pipeline (`from_layouts` -> layout, depth, image)."""

    height, width, depth_scale = H, W, 0.001

    def from_layouts(self, layouts, seeds):
        b = len(seeds)
        return {"layout": layouts, "depth": torch.full((b, H, W), 7.0), "image": torch.full((b, 3, H, W), PAINT)}

    def layouts_from_seeds(self, seeds):
        return torch.zeros((len(seeds), H, W), dtype=torch.long)


def scene(index: int) -> dict:
    """Road (0) below sky (1), a car (2) on the left; the photo's pixels encode their position."""
    layout = np.zeros((H, W), np.uint8)
    layout[: H // 2] = 1
    layout[10:14, 2:8] = 2
    column = np.arange(W, dtype=np.uint8)[None, :, None] * 8 + index
    image = np.broadcast_to(column, (H, W, 3)).copy()
    depth = np.full((H, W), 3.0 + index, np.float32)
    depth[10, 2] = 0.0  # unknown depth stays the stage's
    return {"layout": layout, "image": image, "depth": depth, "meta": {"id": f"scene{index}"}}


DATASET = [scene(i) for i in range(4)]


def test_chosen_classes_keep_the_photo_mirrored_as_the_layout_and_the_rest_is_painted():
    real = RealLayouts(DATASET, height=H, width=W)
    stage = RealPixels(GreyStage(), real, classes=[2])
    seeds = list(range(12))
    layouts, metas = real.layouts(seeds)
    out = stage.from_layouts(layouts, seeds, metas)
    assert any(m.get("hflip") for m in metas) and not all(m.get("hflip") for m in metas)
    for j, meta in enumerate(metas):
        index = int(meta["layout_id"].removeprefix("scene"))
        photo = DATASET[index]["image"][:, ::-1] if meta.get("hflip") else DATASET[index]["image"]
        car = layouts[j].numpy() == 2
        image = out["image"][j].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(image[car], photo[car] / 255.0, rtol=0, atol=1e-6)
        assert np.all(image[~car] == PAINT)
        assert out["meta"][j]["real_pixel_share"] == round(car.mean(), 4)
        depth = out["depth"][j].numpy()
        known = car & (depth != 7.0)
        assert known.sum() == car.sum() - 1 and np.all(depth[known] == 3.0 + index)
    assert stage.height == H and stage.depth_scale == 0.001  # the stage's own attributes show through


def test_pasted_objects_and_generated_layouts_stay_painted():
    real = RealLayouts(DATASET, height=H, width=W, copy_paste=3, paste_classes=[2])
    mixed = MixedLayouts(_Generated(), real, real_ratio=0.5)
    stage = RealPixels(GreyStage(), real, classes=[2])
    seeds = list(range(40))
    layouts, metas = mixed.layouts(seeds)
    out = stage.from_layouts(layouts, seeds, metas)
    sources = {m["layout_source"] for m in metas}
    assert sources == {"real", "generated"}
    pasted_somewhere = False
    for j, meta in enumerate(metas):
        image = out["image"][j].permute(1, 2, 0).numpy()
        real_pixels = np.any(image != PAINT, axis=-1)
        if meta["layout_source"] == "generated":
            assert not real_pixels.any() and out["meta"][j]["real_pixel_share"] == 0
            continue
        index = int(meta["layout_id"].removeprefix("scene"))
        own = DATASET[index]["layout"][:, ::-1] if meta.get("hflip") else DATASET[index]["layout"]
        now = layouts[j].numpy()
        np.testing.assert_array_equal(real_pixels, (now == own) & (now == 2))
        pasted_somewhere |= bool(((now == 2) & (own != 2)).any())
    assert pasted_somewhere


class _Generated:
    name = "generated"

    def layouts(self, seeds):
        return torch.ones((len(seeds), H, W), dtype=torch.long), [{"layout_source": "generated"} for _ in seeds]


def test_unlabelled_pixels_keep_the_photo_when_asked_and_are_painted_otherwise():
    from synthdata.core.contract import ClassInfo
    from synthdata.core.recipe_loading import load_recipe
    from synthdata.generation.production import real_pixels_pipeline

    dataset = [dict(s, layout=s["layout"].copy()) for s in DATASET]
    for s in dataset:
        s["layout"][0, :5] = 255  # unlabelled pixels at the top left
    real = RealLayouts(dataset, height=H, width=W, hflip=False)
    classes = ClassInfo(("road", "sky", "car"), np.zeros((3, 3), np.uint8), 255)
    seeds = list(range(4))
    layouts, metas = real.layouts(seeds)
    for unlabelled in (False, True):
        recipe = load_recipe("toy", ["produce.layouts=real", "produce.real_pixel_classes=[car]",
                                     f"produce.real_pixel_unlabelled={str(unlabelled).lower()}"])
        stage = real_pixels_pipeline(recipe, GreyStage(), real, classes, reader=None)
        assert list(stage.keep_classes) == ([2, 255] if unlabelled else [2])
        out = stage.from_layouts(layouts, seeds, metas)
        for j, meta in enumerate(metas):
            index = int(meta["layout_id"].removeprefix("scene"))
            image = out["image"][j].permute(1, 2, 0).numpy()
            void = layouts[j].numpy() == 255
            assert void.sum() == 5
            if unlabelled:
                np.testing.assert_allclose(image[void], dataset[index]["image"][void] / 255.0, rtol=0, atol=1e-6)
            else:
                assert np.all(image[void] == PAINT)
