"""The segment bank: real pixels of real components, deterministic order, filters, region rule,
atomic storage, reuse, and refusal of banks made for other data."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import ndimage

from synthdata.core.contract import ClassInfo
from synthdata.core.recipe import DataConfig
from synthdata.data.readers import make_reader
from synthdata.segmentation.training import subset_reader
from synthdata.texturing import bank_building
from synthdata.texturing import segment_bank as sb
from synthdata.texturing.bank_building import build_bank, load_or_build
from synthdata.texturing.segment_bank import BankError, load_bank, mirror_fill_index

EIGHT = np.ones((3, 3), int)  # 8-connectivity, as the bank uses


def toy_reader(n: int = 16, height: int = 32, width: int = 64, split: str = "train"):
    cfg = DataConfig(reader="toy", height=height, width=width, split_sizes={"train": n, "val": 6, "test": 2})
    return make_reader(cfg, split)


@pytest.fixture(scope="module")
def reader():
    return toy_reader()


@pytest.fixture(scope="module")
def bank(reader):
    return build_bank(reader, progress=False)


@pytest.fixture(scope="module")
def samples(reader) -> dict[str, dict]:
    return {s["meta"]["id"]: s for s in reader}


def _bank_arrays_equal(a, b) -> None:
    arrays_a, arrays_b = a.arrays(), b.arrays()
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    assert a.header == b.header


def test_every_segment_is_a_real_component_of_its_source(bank, samples):
    assert len(bank) > 50 and bank.has_depth and bank.resolution == (32, 64)
    assert bank.source_ids == sorted(samples)
    seen = set()
    for i in range(len(bank)):
        seg = bank.segment(i)
        sample = samples[seg.source]
        y0, x0, y1, x1 = seg.box
        # The component with index `component` (raster order of first pixels, 8-connectivity).
        labels, _ = ndimage.label(sample["layout"] == seg.cls, structure=EIGHT)
        component = labels == seg.component + 1
        ys, xs = np.nonzero(component)
        assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == seg.box
        np.testing.assert_array_equal(seg.mask, component[y0:y1, x0:x1])
        assert seg.area == int(component.sum()) == len(seg.pixels)
        np.testing.assert_array_equal(seg.pixels, sample["image"][component])
        np.testing.assert_array_equal(seg.depth, sample["depth"][component])
        assert seg.centre == pytest.approx((ys.mean() / 32, xs.mean() / 64), abs=1e-4)
        assert seg.region == (bank.classes[seg.cls] in {"road", "sidewalk", "building", "vegetation", "sky"})
        seen.add((seg.source, seg.cls, seg.component))
    assert len(seen) == len(bank)
    # Order: source id, then class, then component.
    keys = [(bank.seg_source[i], bank.seg_class[i], bank.seg_component[i]) for i in range(len(bank))]
    assert keys == sorted(keys)


def test_order_does_not_depend_on_the_reader_order(reader, bank):
    shuffled = copy.copy(reader)
    shuffled.items = list(reversed(reader.items))
    _bank_arrays_equal(build_bank(shuffled, progress=False), bank)


def test_minimum_size_filter_keeps_large_components_and_never_empties_a_class(reader, samples):
    bank = build_bank(reader, min_pixels=40, progress=False)
    counts_all = build_bank(reader, min_pixels=1, progress=False).counts()
    small_kept = [i for i in range(len(bank)) if bank.seg_area[i] < 40]
    for i in small_kept:  # only classes whose every component is small are rescued
        c = int(bank.seg_class[i])
        assert (bank.seg_area[bank.class_segments(c)] < 40).all()
    huge = build_bank(reader, min_pixels=10**6, keep_largest=2, progress=False)
    present = {name for name, n in counts_all.items() if n}
    assert {name for name, n in huge.counts().items() if n} == present
    for c, name in enumerate(huge.classes):
        if name in present:
            assert len(huge.class_segments(c)) == min(2, counts_all[name])
            largest = np.sort([s for s in _all_areas(samples, c)])[::-1][:2]
            np.testing.assert_array_equal(np.sort(huge.seg_area[huge.class_segments(c)])[::-1], largest)
    assert sum(counts_all.values()) > sum(bank.counts().values())


def _all_areas(samples, c):
    out = []
    for s in samples.values():
        labels, n = ndimage.label(s["layout"] == c, structure=EIGHT)
        out.extend(np.bincount(labels.ravel())[1:].tolist())
    return out


def test_region_classes_listed_override_the_rule(reader):
    bank = build_bank(reader, region_classes=["sky", 0], progress=False)
    assert bank.header["region_classes"] == ["road", "sky"] and bank.header["region_rule"] == "listed"
    with pytest.raises(BankError, match="region class 'tarmac'"):
        build_bank(reader, region_classes=["tarmac"], progress=False)


def test_mirror_fill_draws_only_in_mask_pixels():
    mask = np.zeros((9, 12), bool)
    mask[2:7, 3:8] = True
    mask[4, 3] = False
    idx = mirror_fill_index(mask)
    inside = np.flatnonzero(mask.ravel())
    assert idx.min() >= 0 and idx.max() < len(inside)
    np.testing.assert_array_equal(idx[mask], np.arange(len(inside)))
    # Just left of the square, the mirror across its left edge: column 3 -> 2, so column 2 takes column 4.
    assert inside[idx[3, 2]] == 3 * 12 + 4


def test_round_trip_and_plain_npz(tmp_path, bank):
    path = bank.save(tmp_path / "bank.npz")
    with np.load(path, allow_pickle=False) as data:  # no pickled objects in the file
        header = json.loads(data["header"].tobytes().decode())
    assert header["format"] == "synthdata-segment-bank" and header["num_sources"] == 16
    assert header["classes"][0] == "road" and header["resolution"] == [32, 64]
    loaded = load_bank(path, bank.classes, (32, 64))
    _bank_arrays_equal(loaded, bank)
    for i in (0, len(bank) // 2, len(bank) - 1):
        a, b = bank.segment(i), loaded.segment(i)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.pixels, b.pixels)
        assert (a.source, a.component, a.box) == (b.source, b.component, b.box)
        np.testing.assert_array_equal(bank.fill_index(i), loaded.fill_index(i))
    assert str(path) in loaded.summary()


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, bank, monkeypatch):
    def broken(f, arrays):
        f.write(b"PK\x03\x04 half a bank")
        raise OSError("disk full")

    monkeypatch.setattr(sb, "_write_npz", broken)
    with pytest.raises(OSError, match="disk full"):
        bank.save(tmp_path / "bank.npz")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    path = bank.save(tmp_path / "bank.npz")
    before = path.read_bytes()
    monkeypatch.setattr(sb, "_write_npz", broken)
    with pytest.raises(OSError):
        bank.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["bank.npz"] and path.read_bytes() == before


def test_kill_during_build_leaves_no_bank_and_rebuild_is_identical(tmp_path, reader, bank):
    path = tmp_path / "run" / "bank.npz"
    script = textwrap.dedent(f"""
        import os
        from synthdata.core.recipe import DataConfig
        from synthdata.data.readers import make_reader
        from synthdata.texturing import segment_bank as sb
        from synthdata.texturing.bank_building import load_or_build
        def killed(f, arrays):
            f.write(b"PK" * 1000)
            f.flush()
            os._exit(9)  # like SIGKILL: no cleanup runs
        sb._write_npz = killed
        cfg = DataConfig(reader="toy", height=32, width=64, split_sizes={{"train": 16, "val": 6, "test": 2}})
        load_or_build({str(path)!r}, make_reader(cfg, "train"), progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert not path.exists()  # at most a stray temporary file
    assert all(p.name.endswith(".tmp") for p in path.parent.iterdir())
    rebuilt = load_or_build(path, reader, progress=False, log=None)
    _bank_arrays_equal(rebuilt, bank)
    _bank_arrays_equal(load_bank(path), bank)


def test_load_or_build_builds_once_then_reuses(tmp_path, reader, bank, monkeypatch):
    path = tmp_path / "bank.npz"
    lines = []
    first = load_or_build(path, reader, progress=False, log=lines.append)
    assert path.is_file() and len(lines) == 1 and "segments from 16 images" in lines[0]
    monkeypatch.setattr(bank_building, "build_bank", lambda *a, **k: pytest.fail("rebuilt an existing bank"))
    again = load_or_build(path, reader, progress=False, log=lines.append)
    _bank_arrays_equal(again, first)
    assert again.path == path and len(lines) == 1


def test_mismatched_or_empty_banks_are_refused_naming_the_file(tmp_path, reader, bank):
    path = bank.save(tmp_path / "bank.npz")
    where = re.escape(str(path))
    other = ClassInfo(("road", "sidewalk", "building", "pole", "vegetation", "sky", "rider", "car"),
                      np.zeros((8, 3), np.uint8))
    with pytest.raises(BankError, match=where + r".*other classes.*6: 'person' vs 'rider'"):
        load_bank(path, other)
    with pytest.raises(BankError, match=where + r".*other classes: 8 classes"):
        load_bank(path, ["road", "sky"])
    with pytest.raises(BankError, match=where + r".*ignore_index 255, not 0"):
        load_bank(path, ClassInfo(bank.classes, np.zeros((8, 3), np.uint8), 0))
    with pytest.raises(BankError, match=where + r".*resolution 32x64, not 64x128"):
        load_bank(path, bank.classes, (64, 128))
    with pytest.raises(BankError, match=where + r".*resolution 32x64, not 64x128"):
        load_or_build(path, toy_reader(16, 64, 128), progress=False)
    with pytest.raises(BankError, match=where + r".*16 source images, not the 8"):
        load_or_build(path, toy_reader(8), progress=False)
    with pytest.raises(BankError, match=where + r".*min_pixels=16, not 4"):
        load_or_build(path, reader, min_pixels=4, progress=False)
    with pytest.raises(BankError, match=where + r".*other source images"):
        load_bank(path, source_ids=["toy-train-000000"])
    empty = bank.select([]).save(tmp_path / "empty.npz")
    with pytest.raises(BankError, match=re.escape(str(empty)) + r" is empty: 0 segments"):
        load_bank(empty)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BankError, match=re.escape(str(truncated)) + r" cannot be read"):
        load_bank(truncated)
    with pytest.raises(BankError, match="does not exist"):
        load_bank(tmp_path / "nope.npz")


def test_bank_of_a_subset_holds_only_the_subset(reader, samples):
    sub = subset_reader(reader, fraction=0.25, seed=3)
    wanted = sorted(s["meta"]["id"] for s in sub)
    assert len(wanted) == 4
    bank = build_bank(sub, progress=False)
    assert bank.source_ids == wanted and bank.header["num_sources"] == 4
    assert {bank.source_of(i) for i in range(len(bank))} == set(wanted)
    for i in range(len(bank)):  # and its pixels are those images' pixels
        seg = bank.segment(i)
        y0, x0, y1, x1 = seg.box
        np.testing.assert_array_equal(seg.pixels, samples[seg.source]["image"][y0:y1, x0:x1][seg.mask])


def test_unusable_readers_are_refused(reader):
    with pytest.raises(BankError, match="no samples"):
        build_bank(toy_reader(0), progress=False)
    blank = [dict(s, layout=np.full_like(s["layout"], 255)) for s in list(reader)[:2]]
    with pytest.raises(BankError, match="hold no labelled component"):
        build_bank(blank, reader.classes, progress=False)
    twice = [reader[0], reader[0]]
    with pytest.raises(BankError, match="occurs twice"):
        build_bank(twice, reader.classes, progress=False)
