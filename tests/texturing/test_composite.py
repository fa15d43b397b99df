"""Composite texturing: real pixels of the right class in every component, traceable sources,
determinism, local blending, depth, ignore pixels and classes missing from the bank."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from synthdata.core.contract import ClassInfo
from synthdata.core.recipe import DataConfig
from synthdata.core.seeding import derive_seed
from synthdata.data.readers import make_reader
from synthdata.texturing.bank_building import build_bank
from synthdata.texturing.composite import IGNORE_FILL, composite
from synthdata.texturing.segment_bank import BankError

EIGHT = np.ones((3, 3), int)
CFG = DataConfig(reader="toy", height=32, width=64, split_sizes={"train": 16, "val": 6, "test": 2})


@pytest.fixture(scope="module")
def train() -> dict[str, dict]:
    return {s["meta"]["id"]: s for s in make_reader(CFG, "train")}


@pytest.fixture(scope="module")
def bank():
    return build_bank(make_reader(CFG, "train"), progress=False)


@pytest.fixture(scope="module")
def layouts() -> list[np.ndarray]:
    return [s["layout"] for s in make_reader(CFG, "val")]


def _component_map(layout: np.ndarray, ignore: int = 255) -> tuple[np.ndarray, dict]:
    """Independent labelling (scipy): a map of component ids (-1 on ignore) and
    (class, box) -> component id."""
    ids = np.full(layout.shape, -1, np.int64)
    by_box, next_id = {}, 0
    for c in np.unique(layout):
        if c == ignore:
            continue
        labels, n = ndimage.label(layout == c, structure=EIGHT)
        for j, sl in enumerate(ndimage.find_objects(labels), start=1):
            ids[labels == j] = next_id
            by_box[(int(c), (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop))] = next_id
            next_id += 1
    return ids, by_box


def _colours(pixels: np.ndarray) -> np.ndarray:
    p = pixels.reshape(-1, 3).astype(np.int64)
    return (p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2]


def test_every_component_is_painted_with_real_pixels_of_its_listed_source(bank, layouts, train):
    for n, layout in enumerate(layouts):
        out = composite(layout, bank, derive_seed(7, 0, n))
        image, sources = out["image"], out["meta"]["sources"]
        assert json.loads(json.dumps(out["meta"])) == out["meta"]  # fits a shard's json as is
        assert image.shape == (32, 64, 3) and image.dtype == np.uint8 and "depth" not in out
        ids, by_box = _component_map(layout)
        covered = np.zeros(layout.shape, int)
        assert len(sources) == len(by_box)
        for entry in sources:
            c = entry["class_index"]
            assert entry["class"] == bank.classes[c]
            component = ids == by_box[(c, tuple(entry["box"]))]
            assert int(component.sum()) == entry["area"]
            covered += component
            # The listed segment is of the same class and is the listed source's component ...
            s = entry["segment"]
            assert int(bank.seg_class[s]) == c
            assert (entry["source"], entry["source_component"]) == (bank.source_of(s), int(bank.seg_component[s]))
            # ... and every pixel painted here is one of that real component's pixels, checked
            # against the source image itself (not the bank's copy).
            source = train[entry["source"]]
            labels, _ = ndimage.label(source["layout"] == c, structure=EIGHT)
            real = source["image"][labels == entry["source_component"] + 1]
            assert np.isin(_colours(image[component]), _colours(real)).all(), entry
        np.testing.assert_array_equal(covered, 1)  # every pixel in exactly one component


def test_components_are_the_nearest_neighbour_warp_of_their_segment(bank, layouts):
    """Reconstruct each component from its listed segment: the segment's box crop (outside of its
    mask mirror-filled), flipped when listed, resized to the component's box by nearest neighbour
    (row t of an h-row box reads row floor((2t + 1) hs / 2h) of an hs-row crop)."""
    for n, layout in enumerate(layouts):
        out = composite(layout, bank, derive_seed(7, 1, n))
        ids, by_box = _component_map(layout)
        for entry in out["meta"]["sources"]:
            y0, x0, y1, x1 = entry["box"]
            rgb, _ = bank.filled(entry["segment"])
            if entry["flip"]:
                rgb = rgb[:, ::-1]
            hs, ws = rgb.shape[:2]
            ys = (2 * np.arange(y1 - y0) + 1) * hs // (2 * (y1 - y0))  # pixel centres aligned
            xs = (2 * np.arange(x1 - x0) + 1) * ws // (2 * (x1 - x0))
            expected = rgb[ys[:, None], xs[None, :]]
            component = (ids == by_box[(entry["class_index"], (y0, x0, y1, x1))])[y0:y1, x0:x1]
            np.testing.assert_array_equal(out["image"][y0:y1, x0:x1][component], expected[component])


def test_same_seed_same_sample_other_seed_other_sample(bank, layouts):
    layout = layouts[0]
    a = composite(layout, bank, 123, blend="gaussian", depth=True)
    b = composite(layout, bank, np.random.default_rng(123), blend="gaussian", depth=True)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["depth"], b["depth"])
    assert a["meta"] == b["meta"]
    c = composite(layout, bank, 124, blend="gaussian", depth=True)
    assert not np.array_equal(a["image"], c["image"])
    assert [e["segment"] for e in a["meta"]["sources"]] != [e["segment"] for e in c["meta"]["sources"]]


def test_gaussian_blend_only_changes_pixels_near_component_boundaries(bank, layouts):
    sigma = 1.0
    radius = 3  # ceil(3 sigma)
    changed_any = 0
    for n, layout in enumerate(layouts):
        hard = composite(layout, bank, n, blend="none")
        soft = composite(layout, bank, n, blend="gaussian", sigma=sigma)
        assert [e["segment"] for e in soft["meta"]["sources"]] == [e["segment"] for e in hard["meta"]["sources"]]
        ids, _ = _component_map(layout)
        size = 2 * radius + 1
        near = ndimage.maximum_filter(ids, size=size, mode="nearest") != ndimage.minimum_filter(ids, size=size,
                                                                                                  mode="nearest")
        changed = (hard["image"] != soft["image"]).any(axis=2)
        assert not (changed & ~near).any()
        # and it does blend: pixels right at boundaries take colours from both sides
        changed_any += int(changed.sum())
        edge = ndimage.maximum_filter(ids, size=3, mode="nearest") != ndimage.minimum_filter(ids, size=3,
                                                                                                mode="nearest")
        assert changed[edge].mean() > 0.3
    assert changed_any > 0


def test_linear_warp_and_no_flip_options(bank, layouts):
    out = composite(layouts[1], bank, 5, interp="linear", flip=False)
    assert not any(e["flip"] for e in out["meta"]["sources"])
    flipped = [composite(layout, bank, 5)["meta"]["sources"] for layout in layouts]
    assert any(e["flip"] for entries in flipped for e in entries)
    with pytest.raises(ValueError, match="blend must be one of none, gaussian"):
        composite(layouts[0], bank, 0, blend="poisson")


def test_retrieval_finds_the_closest_segment_first(bank, train):
    """With k=1 and no jitter, the layout of a bank image is textured with its own segments: its
    components are their own nearest neighbours (area, aspect, position / place in the frame)."""
    for sid in sorted(train)[:4]:
        sample = train[sid]
        out = composite(sample["layout"], bank, 0, k=1, iou_jitter=0.0)
        kept = [e for e in out["meta"]["sources"] if e["area"] >= bank.header["settings"]["min_pixels"]]
        assert kept
        for entry in kept:
            assert (entry["source"], entry["source_component"], entry["flip"]) == (sid, entry["component"], False)
        own = np.zeros(sample["layout"].shape, bool)
        ids, by_box = _component_map(sample["layout"])
        for entry in kept:
            own |= ids == by_box[(entry["class_index"], tuple(entry["box"]))]
        np.testing.assert_array_equal(out["image"][own], sample["image"][own])


def test_retrieval_prefers_close_shapes(bank, layouts):
    """Chosen segments overlap their components' shapes (IoU at the component's box) better than
    random segments of the class, and the IoU reported in the meta is that overlap."""
    rng = np.random.default_rng(0)
    ious = {"chosen": [], "random": []}
    for n, layout in enumerate(layouts):
        ids, by_box = _component_map(layout)
        for entry in composite(layout, bank, n)["meta"]["sources"]:
            c, (y0, x0, y1, x1) = entry["class_index"], entry["box"]
            thumb = _thumb((ids == by_box[(c, (y0, x0, y1, x1))])[y0:y1, x0:x1], bank.grid)
            for kind, s in (("chosen", entry["segment"]), ("random", rng.choice(bank.class_segments(c)))):
                other = bank.seg_grid[s].astype(float) / 255
                if kind == "chosen" and entry["flip"]:
                    other = other[:, ::-1]
                ious[kind].append(np.minimum(thumb, other).sum() / max(np.maximum(thumb, other).sum(), 1e-6))
            assert ious["chosen"][-1] == pytest.approx(entry["iou"], abs=1e-3)
    assert np.mean(ious["chosen"]) > np.mean(ious["random"]) + 0.1


def _thumb(mask, grid):
    return cv2.resize(mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)


def test_depth_comes_from_the_same_segments(bank, layouts):
    layout = layouts[2]
    out = composite(layout, bank, 11, depth=True)
    depth = out["depth"]
    assert depth.dtype == np.float32 and depth.shape == layout.shape
    ids, by_box = _component_map(layout)
    frame = float(layout.size)
    for entry in out["meta"]["sources"]:
        c, s = entry["class_index"], entry["segment"]
        values = depth[ids == by_box[(c, tuple(entry["box"]))]]
        real = np.sort(bank.segment_depth(s))
        if not bank.region[c]:  # things: pinhole rescaling by the size change
            values = values / np.sqrt((bank.seg_area[s] / frame) / (entry["area"] / frame))
        pos = np.clip(np.searchsorted(real, values), 1, len(real) - 1)
        nearest = np.minimum(np.abs(real[pos] - values), np.abs(real[pos - 1] - values))
        assert (nearest <= 1e-4 * np.maximum(1.0, np.abs(values))).all(), entry


def test_ignore_pixels_are_neutral_grey_and_unknown_depth(bank, layouts):
    layout = layouts[3].copy()
    layout[4:12, 10:30] = 255
    for blend in ("none", "gaussian"):
        out = composite(layout, bank, 3, blend=blend, depth=True)
        assert (out["image"][layout == 255] == IGNORE_FILL).all()
        assert (out["depth"][layout == 255] == 0).all()
        assert all(e["class_index"] != 255 for e in out["meta"]["sources"])


def test_class_missing_from_the_bank_is_an_error_or_a_documented_grey_fill(tmp_path, bank, layouts):
    person = bank.classes.index("person")
    no_person = bank.select(i for i in range(len(bank)) if bank.seg_class[i] != person)
    no_person.save(tmp_path / "bank.npz")
    layout = layouts[0].copy()
    layout[20:28, 40:44] = person
    with pytest.raises(BankError, match=r"class 'person' \(6\) is in the layout but segment bank "
                                        + re.escape(str(tmp_path / "bank.npz")) + " has no segment"):
        composite(layout, no_person, 0)
    out = composite(layout, no_person, 0, missing="fill", blend="gaussian")
    assert out["meta"]["missing"] == ["person"]
    entries = [e for e in out["meta"]["sources"] if e["class"] == "person"]
    assert entries and all(e["segment"] is None and e["source"] is None for e in entries)
    hard = composite(layout, no_person, 0, missing="fill")
    assert (hard["image"][layout == person] == IGNORE_FILL).all()


def test_bad_layouts_and_depth_without_depth_are_refused(bank, layouts, train):
    layout = layouts[0].copy()
    layout[0, 0] = 9
    with pytest.raises(BankError, match=r"layout labels \[9\] are outside 0..7"):
        composite(layout, bank, 0)
    flat = [dict(s) for s in train.values()]
    for s in flat:
        s.pop("depth")
    no_depth = build_bank(flat, bank_classes(bank), progress=False)
    assert not no_depth.has_depth
    with pytest.raises(BankError, match="holds no depth"):
        composite(layouts[0], no_depth, 0, depth=True)
    assert "depth" not in composite(layouts[0], no_depth, 0)


def bank_classes(bank):
    return ClassInfo(bank.classes, np.zeros((len(bank.classes), 3), np.uint8), bank.ignore_index)


def test_bench_composite_tool_runs(monkeypatch, capsys, glibc_allocator):
    tool = Path(__file__).resolve().parents[2] / "tools" / "bench_composite.py"
    monkeypatch.setattr(sys, "argv", [str(tool), "--bank", "4", "--n", "2", "--sizes", "32x64"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(tool), run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for blend in ("none", "gaussian"):
        assert re.search(rf"\| 32x64 \| [\d.]+ \| \d+ \| [\d.]+ \| {blend} \| \d+ \| [\d.]+ \| [\d.]+ \|", out), out
