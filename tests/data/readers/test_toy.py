"""The procedural toy world: determinism, splits, the sample contract and scene physics."""

from __future__ import annotations

import numpy as np
import pytest

from synthdata.core.contract import DatasetError
from synthdata.core.recipe import DataConfig
from synthdata.data.readers import make_reader
from synthdata.data.readers.toy import CAR, FAR_DEPTH, PERSON, ROAD, SKY, TOY_CLASSES, benchmark, render_scene, scene_seed


@pytest.fixture(scope="module")
def scenes() -> list[dict]:
    return [render_scene(seed, 64, 128) for seed in range(30)]


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b, c = render_scene(7, 32, 64), render_scene(7, 32, 64), render_scene(8, 32, 64)
    for key in ("image", "layout", "depth"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["layout"], c["layout"]) and not np.array_equal(a["image"], c["image"])


def test_split_seeds_are_disjoint_and_reader_follows_them():
    seeds = {split: {scene_seed(split, i) for i in range(1000)} for split in ("train", "val", "test")}
    assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"]
    assert not seeds["val"] & seeds["test"]
    cfg = DataConfig(reader="toy", height=32, width=64, split_sizes={"train": 2, "val": 2, "test": 2})
    train, val = make_reader(cfg, "train"), make_reader(cfg, "val")
    assert not np.array_equal(train[0]["image"], val[0]["image"])
    assert train[1]["meta"]["seed"] == scene_seed("train", 1)


@pytest.mark.parametrize("height,width", [(32, 64), (48, 80)])
def test_reader_samples_match_the_contract(height, width):
    cfg = DataConfig(reader="toy", height=height, width=width, split_sizes={"train": 3, "val": 1, "test": 1})
    reader = make_reader(cfg, "train")
    assert len(reader) == 3 and reader.classes.names == TOY_CLASSES
    assert reader.classes.palette[ROAD].tolist() == [128, 64, 128]  # Cityscapes colours
    sample = reader[2]
    assert sample["image"].shape == (height, width, 3) and sample["image"].dtype == np.uint8
    assert sample["layout"].shape == (height, width) and sample["layout"].dtype == np.uint8
    assert sample["depth"].shape == (height, width) and sample["depth"].dtype == np.float32
    assert sample["layout"].max() < len(TOY_CLASSES)
    meta = sample["meta"]
    assert meta["id"] == "toy-train-000002" and "." not in meta["id"]
    assert (meta["split"], meta["dataset"]) == ("train", "toy")
    with pytest.raises(IndexError):
        reader[3]


def test_reader_errors_name_the_problem():
    with pytest.raises(DatasetError, match="unknown split 'dev'.*train, val, test"):
        make_reader(DataConfig(reader="toy"), "dev")
    with pytest.raises(DatasetError, match="data.classes"):
        make_reader(DataConfig(reader="toy", classes=["a", "b"]), "train")
    with pytest.raises(DatasetError, match="split_sizes"):
        make_reader(DataConfig(reader="toy", split_sizes={"train": 4}), "val")


def test_all_classes_appear_and_regions_are_connected(scenes):
    counts = np.bincount(np.concatenate([s["layout"].ravel() for s in scenes]), minlength=8)
    assert (counts[: len(TOY_CLASSES)] > 0).all(), counts
    # Layouts are regions, not noise: most horizontal neighbours share a class.
    same = np.mean([(s["layout"][:, 1:] == s["layout"][:, :-1]).mean() for s in scenes])
    assert same > 0.9


def test_depth_is_positive_and_grows_towards_the_horizon_on_the_road(scenes):
    for s in scenes:
        depth, layout = s["depth"], s["layout"]
        assert np.isfinite(depth).all() and (depth > 0).all() and depth.max() <= FAR_DEPTH
        assert (depth[layout == SKY] == FAR_DEPTH).all()
        rows = [depth[r][layout[r] == ROAD].mean() for r in range(depth.shape[0]) if (layout[r] == ROAD).any()]
        assert len(rows) > 5 and (np.diff(rows) <= 1e-3).all()  # farther up the image


def test_cars_and_people_occlude_the_road_behind_them(scenes):
    checked = 0
    for s in scenes:
        depth, layout = s["depth"], s["layout"]
        for r in range(depth.shape[0]):
            road = layout[r] == ROAD
            for cls in (CAR, PERSON):
                obj = layout[r] == cls
                if obj.any() and road.any():
                    assert depth[r][obj].max() < depth[r][road].min()
                    checked += 1
    assert checked > 50


def test_fog_makes_far_road_closer_to_the_fog_colour(scenes):
    wins = 0
    for s in scenes:
        road = s["layout"] == ROAD
        depth = s["depth"][road]
        dist = np.abs(s["image"][road].astype(np.float32) - s["meta"]["fog"]["color"]).sum(1)
        near, far = depth < np.quantile(depth, 0.25), depth > np.quantile(depth, 0.75)
        wins += np.median(dist[far]) < np.median(dist[near])
    assert wins >= 0.9 * len(scenes)


def test_benchmark_restores_the_process_and_the_tool_draws_a_grid(tmp_path, capsys):
    """`benchmark` (tools/bench_toy.py) leaves the caller's cores and threads as they were;
    tools/toy_world.py writes a picture of the scenes."""
    import os
    import runpy
    from pathlib import Path

    import cv2
    import torch

    affinity = getattr(os, "sched_getaffinity", lambda pid: None)
    cores, threads = affinity(0), torch.get_num_threads()
    wall, cpu = benchmark(32, 64, 3)
    assert wall > 0 and cpu > 0
    assert affinity(0) == cores and torch.get_num_threads() == threads  # restored
    main = runpy.run_path(str(Path(__file__).resolve().parents[3] / "tools" / "toy_world.py"))["main"]
    path = tmp_path / "grid.png"
    assert main([str(path), "--n", "2", "--height", "32", "--width", "64"]) == 0
    assert "2 train scenes at 32x64" in capsys.readouterr().out
    assert cv2.imread(str(path)).shape == (2 * 32 + 2, 3 * 64, 3)


def test_tiny_resolutions_render_and_bad_arguments_are_refused():
    sample = render_scene(3, 8, 8)
    assert sample["image"].shape == (8, 8, 3) and sample["layout"].max() < len(TOY_CLASSES)
    with pytest.raises(ValueError, match="too small"):
        render_scene(0, 4, 64)
    with pytest.raises(ValueError, match=">= 0"):
        render_scene(-1, 32, 64)
