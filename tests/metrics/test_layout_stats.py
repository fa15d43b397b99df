"""Layout statistics: component counts, frequencies, JS divergence, shard sources and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from synthdata.commands import evaluate_layouts
from synthdata.core.contract import ClassInfo
from synthdata.core.palette import default_palette
from synthdata.metrics import layout_stats as ls

CLASSES = ClassInfo(("road", "car", "sky"), default_palette(3), 255)


def _write_shards(folder, layouts):
    from synthdata.data.shard_writer import ShardWriter

    samples = [
        {"image": np.zeros((*lay.shape, 3), np.uint8), "layout": lay, "meta": {"id": f"s{i}"}}
        for i, lay in enumerate(layouts)
    ]
    with ShardWriter(folder, prefix="t", shard_size=4, classes=CLASSES, recipe={"name": "t"}, depth_scale=0.001) as w:
        indices = list(range((len(samples) + 3) // 4))
        for i in indices:
            w.write_shard(i, samples[4 * i : 4 * i + 4])
        w.finalize_manifest(indices)
    return folder


def test_component_counts_match_a_per_class_loop():
    rng = np.random.default_rng(0)
    layout = rng.integers(0, 3, (32, 64)).astype(np.uint8)
    layout[:4] = 255
    expected = [ndimage.label(layout == c)[1] for c in range(3)]
    assert ls.count_components(layout, 3).tolist() == expected
    blobs = np.zeros((8, 8), np.int64)
    blobs[1:3, 1:3] = 1
    blobs[5:7, 5:7] = 1
    blobs[5, 1] = 2
    assert ls.count_components(blobs, 4).tolist() == [1, 2, 1, 0]
    assert ls.count_components(np.full((4, 4), 255), 3).tolist() == [0, 0, 0]


def test_statistics_of_known_layouts():
    a = np.zeros((4, 4), np.uint8)
    a[:, 2:] = 1  # half road, half car
    b = np.full((4, 4), 2, np.uint8)
    b[0] = 255  # sky with an unlabelled row
    stats = ls.layout_statistics([a, b], num_classes=3)
    assert stats["num_images"] == 2 and stats["labelled_pixels"] == 28
    np.testing.assert_allclose(stats["pixel_frequency"], [8 / 28, 8 / 28, 12 / 28])
    np.testing.assert_allclose(stats["presence_rate"], [0.5, 0.5, 0.5])
    assert stats["classes_per_image"] == 1.5
    assert stats["components_per_image"] == 1.5
    with pytest.raises(ValueError, match="no layouts"):
        ls.layout_statistics([], num_classes=3)


def test_js_divergence_bounds():
    assert ls.js_divergence([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert ls.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert 0 < ls.js_divergence([0.5, 0.5], [0.9, 0.1]) < 1
    with pytest.raises(ValueError):
        ls.js_divergence([0, 0], [1, 1])


def test_cli_compares_shards_and_draws_a_chart(tmp_path, capsys):
    rng = np.random.default_rng(1)
    real = [rng.integers(0, 3, (32, 64)).astype(np.uint8) for _ in range(6)]
    fake = [np.zeros((32, 64), np.uint8) for _ in range(5)]  # only road: a collapsed generator
    _write_shards(tmp_path / "real", real)
    _write_shards(tmp_path / "fake", fake)
    out = tmp_path / "report"
    assert evaluate_layouts.main([f"real={tmp_path / 'real'}", f"fake={tmp_path / 'fake'}", f"out={out}"]) == 0
    metrics = json.loads((out / "report.json").read_text())["metrics"]
    assert metrics["num_real"] == 6 and metrics["num_fake"] == 5
    assert metrics["js_pixel_frequency"] > 0.3
    assert metrics["classes_per_image_fake"] == 1.0
    assert metrics["fake"]["presence_rate"] == [1.0, 0.0, 0.0]
    assert metrics["warnings"] == ["generated layouts are near copies of each other: two differ in 0% of "
                                   "their pixels, two real ones in 67%",
                                   "road: 1.0 objects per generated layout, 274.7 per real one",
                                   "car: in 0% of generated layouts, 100% of real ones",
                                   "sky: in 0% of generated layouts, 100% of real ones"]
    assert (out / "layout_stats.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "JS" in printed and "layouts: warning: car: in 0% of generated layouts" in printed
    same = tmp_path / "same"
    assert evaluate_layouts.main([f"real={tmp_path / 'real'}", f"fake={tmp_path / 'real'}", f"out={same}", "count=3"]) == 0
    metrics = json.loads((same / "report.json").read_text())["metrics"]
    assert metrics["js_pixel_frequency"] == pytest.approx(0.0, abs=1e-12) and metrics["num_real"] == 3


def test_warnings_flag_lost_and_merged_classes_not_extra_objects():
    """The particle study's collapse: fewer objects per layout at a similar pixel share."""
    def blobs(count: int, size: int = 3) -> np.ndarray:
        layout = np.zeros((32, 64), np.uint8)
        for i in range(count):
            layout[2 + (i // 8) * 6 : 2 + (i // 8) * 6 + size, 2 + (i % 8) * 7 : 2 + (i % 8) * 7 + size] = 1
        return layout

    def stats(layouts):
        return ls.layout_statistics(layouts, num_classes=3)

    real = stats([blobs(12)] * 4)
    frame = np.zeros((32, 64), np.uint8)
    frame[:3], frame[-3:] = 1, 1  # as many "car" pixels in two bands
    assert ls.layout_warnings(real, stats([frame] * 4), CLASSES.names) == [
        "car: 2.0 objects per generated layout, 12.0 per real one"]
    assert ls.layout_warnings(real, stats([blobs(12)] * 4), CLASSES.names) == []
    assert ls.layout_warnings(real, stats([blobs(24)] * 4), CLASSES.names) == []  # copy-paste adds objects
    assert ls.layout_warnings(real, stats([blobs(12)] + [np.zeros((32, 64), np.uint8)] * 3), CLASSES.names) == [
        "car: in 25% of generated layouts, 100% of real ones"]
    rare = stats([blobs(12)] + [np.zeros((32, 64), np.uint8)] * 19)  # car in 5% of real layouts: too rare
    assert ls.layout_warnings(rare, stats([np.zeros((32, 64), np.uint8)] * 4), CLASSES.names) == []


def test_cli_names_a_missing_source(tmp_path, capsys):
    assert evaluate_layouts.main([f"real={tmp_path / 'nowhere'}"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_dataset_split_source_through_the_evaluate_command(tmp_path, capsys):
    import cv2

    from synthdata.evaluate import main as evaluate

    rng = np.random.default_rng(2)
    for folder in ("images", "masks"):
        (tmp_path / "data" / "train" / folder).mkdir(parents=True)
    for i in range(3):
        layout = rng.integers(0, 3, (32, 64)).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "data" / "train" / "masks" / f"m{i}.png"), layout)
        cv2.imwrite(str(tmp_path / "data" / "train" / "images" / f"m{i}.png"), np.zeros((32, 64, 3), np.uint8))
    out = tmp_path / "report"
    args = ["layouts", "real=recipe:train", f"out={out}", "data.reader=folder", f"data.root={tmp_path / 'data'}",
            "data.classes=[road, car, sky]", "data.height=32", "data.width=64"]
    assert evaluate(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["real"]["num_images"] == 3
    assert report["classes"]["classes"] == ["road", "car", "sky"]
    assert "js_pixel_frequency" not in report["metrics"]  # no generated side to compare


@pytest.fixture
def run_dir(tmp_path):
    """A run dir with randomly initialised (tiny) layout, depth and image stage checkpoints."""
    import torch

    from synthdata.core.checkpoint import portable_checkpoint, save_atomic
    from synthdata.core.recipe_loading import load_recipe, recipe_to_dict
    from synthdata.generation import stages

    tiny = ["data.height=32", "data.width=64", "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=8"]
    tiny += [f"stages.{s}.{k}=8" for s in ("depth", "image") for k in ("ngf", "ndf")]
    recipe = load_recipe("toy", tiny)
    torch.manual_seed(0)
    for stage in stages.STAGES:
        spec = stages.stage_spec(stage, recipe, num_classes=3, use_depth=True, max_depth=50.0)
        state = spec.build_generator().state_dict()
        ckpt = portable_checkpoint(kind=f"generator-{stage}", model=state, step=1, recipe=recipe_to_dict(recipe),
                                   classes=CLASSES, arch=spec.to_dict())
        save_atomic(ckpt, tmp_path / "run" / "checkpoints" / stage / "latest.pt")
    return tmp_path / "run"


def test_run_source_samples_the_trained_stages(run_dir, tmp_path, capsys):
    from synthdata.metrics.sources import open_source, take

    source = open_source(f"run:{run_dir}", batch_size=2)
    samples = list(take(source, 3))
    assert [s["image"].shape for s in samples] == [(32, 64, 3)] * 3 and samples[0]["image"].dtype == np.uint8
    assert samples[0]["depth"].shape == (32, 64) and source.classes.names == CLASSES.names
    again = list(take(open_source(f"run:{run_dir}", batch_size=3, layouts_only=True), 3))
    for a, b in zip(samples, again):  # one seed per sample, whatever the batch size
        np.testing.assert_array_equal(a["layout"], b["layout"])

    out = tmp_path / "report"
    assert evaluate_layouts.main([f"real=run:{run_dir}", f"fake=run:{run_dir}", "count=4", f"out={out}"]) == 0
    metrics = json.loads((out / "report.json").read_text())["metrics"]
    assert metrics["num_fake"] == 4 and metrics["js_pixel_frequency"] == pytest.approx(0.0, abs=1e-12)
    assert evaluate_layouts.main([f"real=run:{run_dir}", f"out={out}"]) == 2
    assert "count=N" in capsys.readouterr().err


def test_vertical_place_and_the_misplaced_class_warning():
    """A class drawn far from its real height in the frame is flagged; a small shift, a class the
    generated side lacks (flagged as lost instead) and statistics without the key are not."""
    def car_at(row: int) -> np.ndarray:
        layout = np.zeros((20, 10), np.uint8)
        layout[row:row + 2, 2:8] = 1  # car rows `row`, `row + 1`: mean place (row + 1) / 20
        layout[:2] = 2  # sky on top
        return layout

    stats = ls.layout_statistics([car_at(4), car_at(8)], num_classes=3)
    assert stats["vertical_place"][1] == pytest.approx(((5 / 20) + (9 / 20)) / 2)
    assert stats["vertical_place"][2] == pytest.approx(0.05)
    assert ls.layout_statistics([np.zeros((4, 4), np.uint8)], num_classes=3)["vertical_place"][1:] == [None, None]
    real = ls.layout_statistics([car_at(4)] * 4, num_classes=3)
    assert ls.layout_warnings(real, ls.layout_statistics([car_at(7)] * 4, num_classes=3), CLASSES.names) == []
    low = ls.layout_statistics([car_at(16)] * 4, num_classes=3)
    assert ls.layout_warnings(real, low, CLASSES.names) == [
        "car: at 85% of the frame's height in generated layouts, 25% in real ones (0% top)"]
    old = {k: v for k, v in low.items() if k != "vertical_place"}  # a layout_check.json from before the key
    assert ls.layout_warnings(real, old, CLASSES.names) == []


def test_pairwise_difference_counts_pixels_labelled_in_both():
    a, b = np.zeros((4, 4), np.int64), np.zeros((4, 4), np.int64)
    b[:2] = 1  # differs in half the pixels
    assert ls.pairwise_difference([a, b], 3) == pytest.approx(0.5)
    assert ls.pairwise_difference([a, a, a], 3) == 0.0
    c = b.copy()
    c[:2] = 255  # unlabelled where b differs from a: only the agreeing half counts
    assert ls.pairwise_difference([a, c], 3) == 0.0
    assert ls.pairwise_difference([a, b, c], 3) == pytest.approx((0.5 + 0.0 + 0.0) / 3)
    assert ls.pairwise_difference([a], 3) is None


def test_near_copies_are_flagged_first_and_varied_layouts_are_not():
    """A collapsed generator drawing one layout, which holds every class, passes the class flags;
    the spread flag catches it. Real layouts all alike, and statistics from before the key, never flag."""
    def car_at(row: int) -> np.ndarray:
        layout = np.zeros((40, 40), np.uint8)
        layout[:4] = 2
        layout[row:row + 12, 4:36] = 1
        return layout

    varied = [car_at(r) for r in range(4, 28, 2)]
    real = ls.layout_statistics(varied, num_classes=3)
    copies = ls.layout_statistics([car_at(14)] * 12, num_classes=3)
    warnings = ls.layout_warnings(real, copies, CLASSES.names)
    assert warnings[0].startswith(ls.NEAR_COPIES) and "differ in 0% of their pixels" in warnings[0]
    assert not any(w.startswith(ls.NEAR_COPIES) for w in ls.layout_warnings(real, real, CLASSES.names))
    alike = ls.layout_statistics([car_at(14)] * 12, num_classes=3)
    assert ls.layout_warnings(alike, copies, CLASSES.names) == []
    old = {k: v for k, v in copies.items() if k != "pairwise_difference"}  # a layout_check.json from before
    assert not any(w.startswith(ls.NEAR_COPIES) for w in ls.layout_warnings(real, old, CLASSES.names))
    assert ls.compare_layouts(real, copies)["pairwise_difference_fake"] == 0.0


def test_spread_uses_a_seeded_sample_of_long_streams():
    rng = np.random.default_rng(1)
    layouts = [rng.integers(0, 3, (16, 16)) for _ in range(200)]
    first = ls.layout_statistics(iter(layouts), num_classes=3)["pairwise_difference"]
    assert first == ls.layout_statistics(iter(layouts), num_classes=3)["pairwise_difference"]
    assert first == pytest.approx(2 / 3, abs=0.02)  # independent uniform labels differ in 2 of 3 pixels
