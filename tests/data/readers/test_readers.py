"""Dataset readers on tiny fixture trees (all six layouts) and on the shared real datasets."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthdata.core.contract import ConfigError, DatasetError
from synthdata.core.recipe import DataConfig
from synthdata.core.recipe_loading import load_recipe
from synthdata.data.readers import READERS, make_reader
from synthdata.data.readers.io import read_labels, read_rgb, read_tiff


def _load_fixtures():
    # Loaded by path: pytest runs with --import-mode=importlib, so tests/ is not a package.
    spec = importlib.util.spec_from_file_location("synthdata_dataset_fixtures", Path(__file__).with_name("fixtures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fx = _load_fixtures()


def data_cfg(reader: str, root: Path, **kw) -> DataConfig:
    """Native fixture size (no resizing) unless a test asks otherwise."""
    kw.setdefault("height", fx.H)
    kw.setdefault("width", fx.W)
    return DataConfig(reader=reader, root=str(root), **kw)


# -- io ----------------------------------------------------------------------------------------


def test_read_rgb_and_labels_modes(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    fx.save_png(tmp_path / "gray.png", gray)
    assert read_rgb(tmp_path / "gray.png").shape == (3, 4, 3)
    assert (read_rgb(tmp_path / "gray.png")[..., 2] == gray).all()
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    idx = np.array([[0, 1, 2, 1]], dtype=np.uint8)
    fx.save_png(tmp_path / "pal.png", idx, palette=palette)
    assert Image.open(tmp_path / "pal.png").mode == "P"
    assert (read_labels(tmp_path / "pal.png") == idx).all()  # indices, not colours
    assert (read_rgb(tmp_path / "pal.png")[0, 1] == [255, 0, 0]).all()
    fx.save_png(tmp_path / "colour.png", palette[idx])
    with pytest.raises(DatasetError, match="colour.png.*RGB colour mask"):
        read_labels(tmp_path / "colour.png")
    assert read_labels(tmp_path / "colour.png", allow_rgb=True).shape == (1, 4, 3)
    deep = np.array([[0, 300, 65535]], dtype=np.uint16)
    fx.save_png(tmp_path / "deep.png", deep)
    assert read_labels(tmp_path / "deep.png").tolist() == deep.tolist()


def test_io_errors_name_the_file(tmp_path):
    fx.save_png(tmp_path / "ok.png", fx._rgb(0, 64, 64))
    fx.truncate(tmp_path / "ok.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    for bad in ("ok.png", "junk.png", "missing.png"):
        with pytest.raises(DatasetError, match=bad):
            read_rgb(tmp_path / bad)
        with pytest.raises(DatasetError, match=bad):
            read_labels(tmp_path / bad)
    fx.make_particles(tmp_path / "p")
    tif = fx.truncate(tmp_path / "p" / "images" / "1908248.tif", keep=0.05)
    with pytest.raises(DatasetError, match="1908248.tif"):
        read_tiff(tif)


# -- cityscapes --------------------------------------------------------------------------------


def test_cityscapes_train_ids_and_depth(tmp_path):
    root = fx.make_cityscapes(tmp_path / "cs")
    reader = make_reader(data_cfg("cityscapes", root), "train")
    assert reader.has_depth and len(reader) == 2
    assert reader.classes.num_classes == 19
    assert reader.classes.names[:2] == ("road", "sidewalk") and reader.classes.names[-1] == "bicycle"
    assert tuple(reader.classes.palette[0]) == (128, 64, 128)
    sample = reader[0]
    ids = fx.cityscapes_label_ids(0)
    for label_id, train_id in fx.CITYSCAPES_IDS.items():
        assert (sample["layout"][ids == label_id] == train_id).all(), label_id
    raw = fx.cityscapes_disparity(0)
    cam = fx.CITYSCAPES_CAMERA
    bf = cam["extrinsic"]["baseline"] * cam["intrinsic"]["fx"]
    depth = sample["depth"]
    assert depth.dtype == np.float32
    assert depth[0, 0] == 0 and depth[0, 1] == 0  # p = 0 unknown; p = 1 zero disparity
    assert depth[0, 2] == pytest.approx(bf / 1.0, rel=1e-5)  # p = 257 -> disparity 1
    assert depth[0, 3] == pytest.approx(bf / 10.0, rel=1e-5)  # p = 2561 -> disparity 10
    np.testing.assert_allclose(depth[1:], bf / ((raw[1:].astype(np.float64) - 1) / 256), rtol=1e-5)


def test_cityscapes_without_disparity_has_no_depth(tmp_path):
    root = fx.make_cityscapes(tmp_path / "cs", split="val", depth=False)
    reader = make_reader(data_cfg("cityscapes", root), "val")
    assert not reader.has_depth and "depth" not in reader[0]


def test_cityscapes_missing_label_is_named(tmp_path):
    root = fx.make_cityscapes(tmp_path / "cs", depth=False)
    victim = next((root / "gtFine").rglob("*_labelIds.png"))
    victim.unlink()
    with pytest.raises(DatasetError, match=victim.name):
        make_reader(data_cfg("cityscapes", root), "train")


# -- camvid ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lists", [True, False])
def test_camvid_pairs_and_unlabelled(tmp_path, lists):
    root = fx.make_camvid(tmp_path / "camvid", lists=lists)
    reader = make_reader(data_cfg("camvid", root), "train")
    assert len(reader) == 3 and reader.classes.names[0] == "Sky" and reader.classes.num_classes == 11
    sample = reader[1]
    raw = read_labels(root / "trainannot" / "0001TP_train001.png")
    assert (sample["layout"][raw == 11] == 255).all()
    assert (sample["layout"][raw < 11] == raw[raw < 11]).all()
    assert (sample["image"] == fx._rgb(1)).all()
    assert sample["meta"]["id"] == "0001TP_train001" and sample["meta"]["split"] == "train"


def test_camvid_image_without_annotation_is_named(tmp_path):
    root = fx.make_camvid(tmp_path / "camvid")
    (root / "valannot" / "0001TP_val001.png").unlink()
    with pytest.raises(DatasetError, match="valannot/0001TP_val001.png"):
        make_reader(data_cfg("camvid", root), "val")


def test_camvid_resizes_to_recipe_resolution(tmp_path):
    root = fx.make_camvid(tmp_path / "camvid")
    sample = make_reader(data_cfg("camvid", root, height=6, width=8), "train")[0]
    assert sample["image"].shape == (6, 8, 3) and sample["layout"].shape == (6, 8)


# -- ade20k ------------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [True, False])
def test_ade20k_shift_and_roots(tmp_path, nested):
    root = fx.make_ade20k(tmp_path / "ade", nested=nested)
    for split in ("train", "val"):
        reader = make_reader(data_cfg("ade20k", root), split)
        assert len(reader) == 2 and reader.classes.num_classes == 150
        assert reader.classes.names[0] == "wall" and reader.classes.names[-1] == "flag"
    layout = reader[0]["layout"]
    assert layout[0, :3].tolist() == [255, 0, 149]
    assert set(np.unique(layout).tolist()) <= set(range(150)) | {255}


# -- voc ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["", "VOCdevkit", "VOCdevkit/VOC2012"])
def test_voc_palette_masks_read_as_indices(tmp_path, sub):
    fx.make_voc(tmp_path / "voc")
    reader = make_reader(data_cfg("voc", tmp_path / "voc" / sub), "train")
    assert len(reader) == 2 and reader.classes.num_classes == 21
    assert tuple(reader.classes.palette[1]) == (128, 0, 0) and tuple(reader.classes.palette[15]) == (192, 128, 128)
    layout = reader[0]["layout"]
    expected = read_labels(tmp_path / "voc/VOCdevkit/VOC2012/SegmentationClass/2007_000000.png")
    assert (layout == expected).all() and (layout[0] == 255).all()
    assert len(make_reader(data_cfg("voc", tmp_path / "voc" / sub), "val")) == 1


# -- particles ---------------------------------------------------------------------------------


def test_particles_databar_crop_and_mask_values(tmp_path):
    root = fx.make_particles(tmp_path / "p")
    reader = make_reader(data_cfg("particles", root, height=32, width=48), "all")
    native = reader.read_native(0)
    assert native["meta"]["databar_rows"] == fx.PARTICLE_BAR
    assert native["image"].shape == (32, 48, 3) and native["layout"].shape == (32, 48)
    assert (native["image"][..., 0] == native["image"][..., 2]).all()  # grey -> 3 equal channels
    assert native["image"].min() >= 30  # no bar pixels (0 / 255 text) left in the crop
    assert set(np.unique(native["layout"]).tolist()) == {0, 1}
    assert native["layout"][4:20, 6:30].all() and not native["layout"][25:].any()
    fixed = make_reader(data_cfg("particles", root, databar_height=4, height=36, width=48), "all")
    assert fixed.read_native(0)["image"].shape[0] == 36


def test_particles_splits(tmp_path):
    from synthdata.data.readers.particles import VAL_STEMS

    stems = ("1908248", VAL_STEMS[0], "1908256", VAL_STEMS[1])
    root = fx.make_particles(tmp_path / "p", stems=stems)
    ids = {s: [m["meta"]["id"] for m in make_reader(data_cfg("particles", root, height=32, width=48), s)]
           for s in ("train", "val", "all")}
    assert ids["val"] == sorted(VAL_STEMS[:2])
    assert ids["train"] == ["1908248", "1908256"]
    assert ids["all"] == sorted(stems)


def test_particles_mask_size_mismatch_is_named(tmp_path):
    import tifffile

    root = fx.make_particles(tmp_path / "p")
    tifffile.imwrite(root / "masks" / "1908252_m.tif", np.zeros((48, 40), dtype=np.uint8))  # transposed
    reader = make_reader(data_cfg("particles", root), "all")
    with pytest.raises(DatasetError, match="1908252_m.tif.*differs"):
        reader[1]


# -- folder ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["index", "palette", "rgb"])
def test_folder_mask_kinds(tmp_path, kind):
    root = fx.make_folder(tmp_path / "f", mask_kind=kind)
    cfg = data_cfg("folder", root, classes=fx.FOLDER_CLASSES, palette=fx.FOLDER_PALETTE)
    reader = make_reader(cfg, "all")
    assert len(reader) == 2
    expected = fx._rng(501).integers(0, 3, (fx.H, fx.W))
    assert (reader[1]["layout"] == expected).all()


def test_folder_split_folders_and_missing_classes(tmp_path):
    root = fx.make_folder(tmp_path / "f", splits=("train", "val"), n=1)
    reader = make_reader(data_cfg("folder", root, classes=fx.FOLDER_CLASSES), "val")
    assert len(reader) == 1 and "val" in reader.items[0][0].parts
    with pytest.raises(DatasetError, match="data.classes"):
        make_reader(data_cfg("folder", root), "train")


def test_folder_without_splits_refuses_val_unless_held_out_or_allowed(tmp_path):
    """No split folders or files: val would silently be the training images. It is refused with
    the remedies named; `data.val_fraction` holds out a deterministic part by file name (disjoint
    from train, stable when images are added); `allow_train_as_val` reads them and says so."""
    root = fx.make_folder(tmp_path / "f", n=20)
    assert len(make_reader(data_cfg("folder", root, classes=fx.FOLDER_CLASSES), "train")) == 20
    with pytest.raises(DatasetError, match="would be the training images.*data.val_fraction=0.1.*allow_train_as_val"):
        make_reader(data_cfg("folder", root, classes=fx.FOLDER_CLASSES), "val")
    cfg = data_cfg("folder", root, classes=fx.FOLDER_CLASSES, val_fraction=0.3)
    train, val = make_reader(cfg, "train"), make_reader(cfg, "val")
    train_ids = {item[0].stem for item in train.items}
    val_ids = {item[0].stem for item in val.items}
    assert train_ids.isdisjoint(val_ids) and len(train_ids | val_ids) == 20 and 0 < len(val_ids) < 20
    assert val.split_note.startswith(f"held out by data.val_fraction=0.3 (sha256 of the file name): {len(val_ids)} of 20")
    fx.make_folder(tmp_path / "g", n=30)  # ten more images: the first twenty keep their side
    grown = {item[0].stem for item in make_reader(dataclasses.replace(cfg, root=str(tmp_path / "g")), "val").items}
    assert {s for s in grown if int(s[3:]) < 20} == val_ids
    with pytest.warns(UserWarning, match="allow_train_as_val"):
        same = make_reader(data_cfg("folder", root, classes=fx.FOLDER_CLASSES, allow_train_as_val=True), "val")
    assert len(same) == 20 and "not held out" in same.split_note
    with pytest.raises(DatasetError, match="holds out 0 of the 20"):
        make_reader(data_cfg("folder", root, classes=fx.FOLDER_CLASSES, val_fraction=0.001), "val")


def test_folder_unknown_colour_and_unpaired_image_are_named(tmp_path):
    root = fx.make_folder(tmp_path / "f", mask_kind="rgb")
    mask = np.array(Image.open(root / "masks" / "img0.png"))
    mask[0, 0] = (1, 2, 3)
    Image.fromarray(mask).save(root / "masks" / "img0.png")
    cfg = data_cfg("folder", root, classes=fx.FOLDER_CLASSES, palette=fx.FOLDER_PALETTE)
    with pytest.raises(DatasetError, match=r"img0.png.*\(1, 2, 3\)"):
        make_reader(cfg, "all")[0]
    fx.save_png(root / "images" / "lonely.png", fx._rgb(9))
    with pytest.raises(DatasetError, match="lonely.png"):
        make_reader(cfg, "all")


# -- bad input shared by all readers ---------------------------------------------------------------


@pytest.mark.parametrize(
    "reader, layout_word",
    [("cityscapes", "leftImg8bit"), ("camvid", "annot"), ("ade20k", "ADEChallengeData2016"),
     ("voc", "SegmentationClass"), ("particles", "masks"), ("folder", "images")],
)
def test_missing_root_names_expected_layout(tmp_path, reader, layout_word):
    with pytest.raises(DatasetError, match=f"(?s){tmp_path / 'absent'}.*{layout_word}"):
        make_reader(data_cfg(reader, tmp_path / "absent", classes=["a", "b"]), "train")


def test_unknown_reader_lists_valid_names():
    with pytest.raises(DatasetError, match="camvid.*cityscapes"):
        make_reader(DataConfig(reader="camvidd"), "train")
    assert {"cityscapes", "camvid", "ade20k", "voc", "particles", "folder"} <= set(READERS)


def test_out_of_range_labels_warn_or_fail(tmp_path):
    root = fx.make_folder(tmp_path / "f", n=1)
    labels = np.zeros((fx.H, fx.W), dtype=np.uint8)
    labels[0, :5] = 7
    fx.save_png(root / "masks" / "img0.png", labels)
    cfg = data_cfg("folder", root, classes=fx.FOLDER_CLASSES)
    reader = make_reader(cfg, "all")
    with pytest.warns(UserWarning, match="masks/img0.png.*outside"):
        layout = reader[0]["layout"]
    assert (layout[0, :5] == 255).all() and reader.out_of_range_pixels == 5
    cfg.strict_labels = True
    with pytest.raises(DatasetError, match="img0.png"):
        make_reader(cfg, "all")[0]


def test_mask_size_and_corrupt_image_are_named(tmp_path):
    root = fx.make_camvid(tmp_path / "camvid", sizes={"train": 2})
    fx.save_png(root / "trainannot" / "0001TP_train000.png", np.zeros((5, 5), dtype=np.uint8))
    fx.truncate(root / "train" / "0001TP_train001.png", keep=0.3)
    reader = make_reader(data_cfg("camvid", root), "train")
    with pytest.raises(DatasetError, match="0001TP_train000.png.*mask size 5x5"):
        reader[0]
    with pytest.raises(DatasetError, match="0001TP_train001.png"):
        reader[1]


# -- recipes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cityscapes", "camvid", "ade20k", "voc", "particles"])
def test_real_dataset_recipes(name):
    recipe = load_recipe(name, [f"data.root=data/{name}"])
    assert recipe.data.reader in READERS
    assert recipe.data.has_depth == (name == "cityscapes")
    assert recipe.data.root == f"data/{name}"


# -- shared real datasets (skipped when ../shared/datasets is absent) -------------------------


def test_camvid_shared_train_split(shared_datasets):
    recipe = load_recipe("camvid", [f"data.root={shared_datasets / 'camvid'}", "data.height=45", "data.width=60"])
    reader = make_reader(recipe.data, "train")
    assert len(reader) == 367
    seen = np.zeros(256, dtype=np.int64)
    for sample in reader:
        assert sample["image"].shape == (45, 60, 3)
        seen += np.bincount(sample["layout"].ravel(), minlength=256)
    assert seen[:11].all() and seen[11:255].sum() == 0 and reader.out_of_range_pixels == 0
    assert len(make_reader(recipe.data, "val")) == 101


def test_particles_shared_all(shared_datasets):
    recipe = load_recipe("particles", [f"data.root={shared_datasets / 'particles'}", "data.height=44", "data.width=64"])
    reader = make_reader(recipe.data, "all")
    assert len(reader) == 30
    for i, sample in enumerate(reader):
        assert sample["image"].shape == (44, 64, 3)
        assert set(np.unique(sample["layout"]).tolist()) == {0, 1}
    assert reader.read_native(0)["image"].shape == (712, 1024, 3)  # 56-row data bar cropped
    assert len(make_reader(recipe.data, "val")) == 5 and len(make_reader(recipe.data, "train")) == 25


def test_size_mismatch_names_the_label_file_first(tmp_path):
    """Issue 15, defect 6: the mask that is the wrong size is named, not (only) the image."""
    root = fx.make_camvid(tmp_path / "camvid", sizes={"train": 2})
    fx.save_png(root / "trainannot" / "0001TP_train000.png", np.zeros((5, 5), dtype=np.uint8))
    with pytest.raises(DatasetError) as raised:
        make_reader(data_cfg("camvid", root), "train")[0]
    message = str(raised.value)
    assert message.startswith(str(root / "trainannot" / "0001TP_train000.png") + ": mask size 5x5")
    assert message.endswith(f"of {root / 'train' / '0001TP_train000.png'}")


def test_truncated_tiff_mask_is_named_without_tifffile_noise(tmp_path, capsys):
    """Issue 15, defect 5: a TIFF cut before its directory (stored at the end, as the SEM masks
    are) decoded to an empty array: 'expected a label map, got an array of shape (0,)'."""
    import struct

    root = fx.make_particles(tmp_path / "p")
    mask = root / "masks" / "1908252_m.tif"
    mask.write_bytes(b"II*\x00" + struct.pack("<I", 1 << 20) + bytes(400))  # directory offset past the end
    reader = make_reader(data_cfg("particles", root), "all")
    with pytest.raises(DatasetError, match=r"1908252_m.tif: cannot decode TIFF \(no image data"):
        reader[1]
    assert capsys.readouterr().err == ""  # tifffile's log line is not passed on


def _counting(reader, monkeypatch) -> list:
    calls, original = [], reader._load
    monkeypatch.setattr(reader, "_load", lambda item: calls.append(item) or original(item))
    return calls


def test_the_sample_cache_decodes_each_item_once_and_hands_out_copies(monkeypatch):
    import copy

    cfg = DataConfig(reader="toy", height=32, width=64, split_sizes={"train": 4, "val": 2, "test": 2})
    reader = make_reader(cfg, "train")
    uncached = make_reader(DataConfig(**{**cfg.__dict__, "cache_mb": 0}), "train")
    calls = _counting(reader, monkeypatch)
    first = reader[1]
    first["image"][:] = 0  # a caller changing its sample in place...
    first["meta"]["id"] = "changed"
    second = reader[1]
    assert len(calls) == 1  # ...does not change what the next read gets
    np.testing.assert_array_equal(second["image"], uncached[1]["image"])
    np.testing.assert_array_equal(second["layout"], uncached[1]["layout"])
    assert second["meta"] == uncached[1]["meta"]
    # a shallow copy with other items (seg.real_fraction makes one) shares the cache by item, not index
    reader[0]
    sub = copy.copy(reader)
    sub.items = [reader.items[3]]
    np.testing.assert_array_equal(sub[0]["image"], uncached[3]["image"])
    assert sub[0]["meta"]["id"] == uncached[3]["meta"]["id"]


def test_the_sample_cache_can_be_off_and_stays_within_its_size(monkeypatch):
    off = make_reader(DataConfig(reader="toy", height=32, width=64, split_sizes={"train": 2}, cache_mb=0), "train")
    calls = _counting(off, monkeypatch)
    off[0], off[0]
    assert len(calls) == 2
    # 256x512 toy samples hold about 0.8 MB of arrays: a 1 MB cache keeps one of four
    capped = make_reader(DataConfig(reader="toy", height=256, width=512, split_sizes={"train": 4}, cache_mb=1), "train")
    calls = _counting(capped, monkeypatch)
    for _ in range(2):
        for i in range(4):
            capped[i]
    assert len(capped._cache.samples) == 1 and capped._cache.room >= 0
    assert len(calls) == 4 + 3
    for bad in (-1, 1.5, "big"):
        with pytest.raises(ConfigError, match="data.cache_mb must be an integer >= 0"):
            make_reader(DataConfig(reader="toy", cache_mb=bad), "train")
