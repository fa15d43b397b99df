"""Segmenters and `synthdata segment`: building, training, resuming, mixing, filtering, errors.

Everything runs on the tiny toy world (32x64) with a 3-stage resnet18 Unet.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from synthdata.commands import evaluate_miou
from synthdata.core.contract import ClassInfo, ConfigError
from synthdata.core.palette import default_palette
from synthdata.core.recipe import SegModelConfig
from synthdata.core.recipe_loading import load_recipe
from synthdata.data.loader import Source, make_loader
from synthdata.data.readers.base import make_reader
from synthdata.metrics.evaluation import image_ious
from synthdata.models.segmenters import build_segmenter, load_segmenter
from synthdata.segment import main as segment_main
from synthdata.segmentation.training import make_optimizer, segmentation_loss, subset_reader

TINY_MODEL = ["seg.model.encoder_depth=3", "seg.model.decoder_channels=[16,8,8]"]
TINY_SEG = TINY_MODEL + ["seg.batch_size=4", "eval.batch_size=8", "seg.lr=0.003"]


def tiny_cfg() -> SegModelConfig:
    return SegModelConfig(encoder_depth=3, decoder_channels=[16, 8, 8])


def test_unknown_arch_and_encoder_list_valid_names():
    with pytest.raises(ConfigError, match=r"architecture 'unett'.*Did you mean 'unet'.*deeplabv3plus"):
        build_segmenter(SegModelConfig(arch="unett"), num_classes=3)
    with pytest.raises(ConfigError, match=r"encoder 'resnet19'.*resnet18.*efficientnet-b0"):
        build_segmenter(SegModelConfig(encoder="resnet19"), num_classes=3)


def test_forward_pads_to_stride_and_returns_input_size():
    model = build_segmenter(tiny_cfg(), num_classes=5)
    assert model.multiple == 8  # 3 encoder stages
    assert model(torch.rand(2, 3, 30, 50)).shape == (2, 5, 30, 50)


def test_channels_last_is_the_same_model_in_another_memory_layout():
    fast = build_segmenter(tiny_cfg(), num_classes=5)
    plain = build_segmenter(SegModelConfig(encoder_depth=3, decoder_channels=[16, 8, 8], channels_last=False),
                            num_classes=5)
    conv = fast.model.encoder.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert plain.model.encoder.conv1.weight.is_contiguous()
    plain.load_state_dict(fast.state_dict())  # checkpoints move between the two layouts
    images = torch.rand(2, 3, 30, 50)
    torch.testing.assert_close(fast.eval()(images), plain.eval()(images), rtol=1e-4, atol=1e-5)


def test_encoder_weights_only_from_a_local_file(tmp_path):
    with pytest.raises(ConfigError, match="never downloads"):
        build_segmenter(SegModelConfig(encoder_weights="imagenet"), num_classes=3)
    source = build_segmenter(tiny_cfg(), num_classes=3)
    state = dict(source.model.encoder.state_dict())
    state["fc.weight"] = torch.zeros(2, 2)  # a torchvision classifier head is dropped
    torch.save(state, tmp_path / "enc.pth")
    cfg = SegModelConfig(encoder_depth=3, decoder_channels=[16, 8, 8], encoder_weights=str(tmp_path / "enc.pth"))
    loaded = build_segmenter(cfg, num_classes=3)
    for key, value in source.model.encoder.state_dict().items():
        assert torch.equal(loaded.model.encoder.state_dict()[key], value), key
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    cfg.encoder_weights = str(tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="lacks"):
        build_segmenter(cfg, num_classes=3)


def test_a_few_steps_reduce_the_loss(tiny_toy_overrides):
    torch.manual_seed(0)
    recipe = load_recipe("toy", tiny_toy_overrides)
    reader = make_reader(recipe.data, "train")
    batches = list(make_loader(Source(reader=reader), batch_size=8, augment=False, shuffle=False))
    model = build_segmenter(tiny_cfg(), num_classes=reader.classes.num_classes)
    recipe.seg.lr = 3e-3
    opt = make_optimizer(model.parameters(), recipe.seg)

    def mean_loss() -> float:
        with torch.no_grad():
            model.eval()
            return float(np.mean([segmentation_loss(model(b["image"]), b["layout"], ignore_index=255)["loss"].item()
                                  for b in batches]))

    before = mean_loss()
    model.train()
    for step in range(12):
        batch = batches[step % len(batches)]
        loss = segmentation_loss(model(batch["image"]), batch["layout"], ignore_index=255)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert mean_loss() < 0.8 * before


def test_all_ignore_batch_gives_zero_loss_not_nan():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    out = segmentation_loss(logits, torch.full((1, 4, 4), 255), ignore_index=255)
    assert out["loss"].item() == 0.0


def test_dice_term_ignores_unlabelled_pixels():
    from segmentation_models_pytorch.losses import DiceLoss

    dice = DiceLoss("multiclass", from_logits=True, ignore_index=255)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    target[:, :2] = 255
    out = segmentation_loss(logits, target, ignore_index=255, dice=dice)
    assert out["loss"].item() == pytest.approx(out["ce"].item() + out["dice"].item())
    changed = logits.clone()
    changed[:, :, :2] = torch.randn(2, 4, 2, 8) * 10  # only ignored pixels differ
    again = segmentation_loss(changed, target, ignore_index=255, dice=dice)
    assert again["loss"].item() == pytest.approx(out["loss"].item(), rel=1e-5)


def test_real_fraction_subset_is_fixed_and_deterministic(tiny_toy_overrides):
    reader = make_reader(load_recipe("toy", tiny_toy_overrides).data, "train")
    a = subset_reader(reader, fraction=0.25, seed=3)
    b = subset_reader(reader, fraction=0.25, seed=3)
    assert len(a) == 4 and a.items == b.items and len(reader) == 16
    assert subset_reader(reader, fraction=0.25, seed=4).items != a.items


def test_real_subset_file_lists_sample_ids(tmp_path, tiny_toy_overrides):
    from synthdata.core.contract import DatasetError

    reader = make_reader(load_recipe("toy", tiny_toy_overrides).data, "train")
    ids = [reader[i]["meta"]["id"] for i in (5, 2)]
    listing = tmp_path / "ids.txt"
    listing.write_text("\n".join(ids) + "\n")
    sub = subset_reader(reader, ids_file=str(listing))
    assert [sub[i]["meta"]["id"] for i in range(len(sub))] == sorted(ids)
    listing.write_text("no-such-sample\n")
    with pytest.raises(DatasetError, match="no-such-sample"):
        subset_reader(reader, ids_file=str(listing))


def write_shards(out, classes: ClassInfo, samples) -> str:
    from synthdata.data.shard_writer import ShardWriter

    with ShardWriter(out, prefix="synth", shard_size=4, classes=classes, recipe={"name": "test"},
                     depth_scale=0.001) as writer:
        for i in range(0, len(samples), 4):
            writer.write_shard(i // 4, samples[i: i + 4])
    writer.finalize_manifest()
    return str(out)


@pytest.fixture
def synthetic_shards(tmp_path, tiny_toy_overrides):
    reader = make_reader(load_recipe("toy", tiny_toy_overrides).data, "test")
    samples = [reader[i] for i in range(8)]
    for s in samples:
        s["meta"]["id"] = f"synth-{s['meta']['id']}"
    return write_shards(tmp_path / "synth", reader.classes, samples), reader.classes, samples


def test_segment_end_to_end_report_resume_evaluate(tmp_path, tiny_toy_overrides, capsys):
    run = tmp_path / "run"
    args = ["recipe=toy", f"run_dir={run}", *tiny_toy_overrides, *TINY_SEG,
            "seg.val_every=2", "seg.checkpoint_every=2", "seg.real_fraction=0.5",
            "seg.mixed_precision='no'"]  # fp32: the image IoUs below are recomputed exactly
    assert segment_main(args + ["seg.steps=4"]) == 0
    printed = capsys.readouterr().out
    assert "segment: 4 steps" in printed and "mean image IoU per class [" in printed
    report = json.loads((run / "report" / "report.json").read_text())
    assert report["info"]["steps"] == 4 and [h["step"] for h in report["info"]["history"]] == [2, 4]
    assert report["info"]["data_sources"]["real"]["samples"] == 8
    assert report["info"]["protocol"]["num_images"] == 8 and report["info"]["protocol"]["ignore_index"] == 255
    assert 0.0 <= report["metrics"]["miou"] <= 1.0 and len(report["metrics"]["per_class_iou"]) == 8
    md = (run / "report" / "report.md").read_text()
    assert f"{100 * report['metrics']['miou']:.1f}" in md
    for png in ("confusion_matrix.png", "per_class_iou.png", "predictions.png"):
        assert (run / "report" / png).stat().st_size > 0
    model, ckpt = load_segmenter(run / "checkpoints" / "segmenter" / "latest.pt")
    assert ckpt["kind"] == "segmenter" and ckpt["step"] == 4 and ckpt["arch"]["encoder_depth"] == 3
    # a finished run keeps one copy of its weights and state (the backups serve kills during training)
    assert sorted(p.name for p in (run / "checkpoints" / "segmenter").iterdir()) == ["latest.pt", "recipe.yaml", "state"]
    # image-level IoU as `translate` reports it: per val image, the mean over images where a
    # class occurs; recomputed from the checkpoint
    val = make_reader(load_recipe("toy", tiny_toy_overrides).data, "val")
    image_iou = report["metrics"]["image_iou"]
    expected = image_ious(model, val, num_classes=8, ignore_index=255, window=None, device="cpu")
    assert [p["id"] for p in image_iou["per_image"]] == [p["id"] for p in expected] and len(expected) == 8
    for c, name in enumerate(report["classes"]["classes"]):
        got = [p["per_class_iou"][c] for p in image_iou["per_image"]]
        want = [p["per_class_iou"][c] for p in expected]
        assert [g != g for g in got] == [w != w for w in want]  # NaN where the class is in neither
        assert [g for g in got if g == g] == pytest.approx([w for w in want if w == w], abs=1e-6)
        present = [g for g in got if g == g]
        mean = sum(present) / len(present) if present else None
        assert image_iou["mean_per_class"][c] == (None if mean is None else pytest.approx(mean, abs=1e-9))
        assert report["info"][f"mean image IoU {name}"] == (None if mean is None else round(mean, 4))

    assert segment_main(args + ["seg.steps=6"]) == 0  # resumes from step 4
    report = json.loads((run / "report" / "report.json").read_text())
    assert report["info"]["resumed_from_step"] == 4 and report["info"]["steps"] == 6
    assert report["info"]["source_counts"] == {"real": 24}

    out = tmp_path / "eval"
    ckpt_path = run / "checkpoints" / "segmenter" / "latest.pt"
    assert evaluate_miou.main(["recipe=toy", *tiny_toy_overrides, "seg.mixed_precision='no'",
                          f"checkpoint={ckpt_path}", f"out={out}"]) == 0
    evaluated = json.loads((out / "report.json").read_text())
    assert evaluated["metrics"]["miou"] == pytest.approx(report["metrics"]["miou"], abs=1e-6)
    assert evaluated["info"]["checkpoint_sha256"] == report["info"]["checkpoint_sha256"]
    # issue 15, defect 9: `evaluate miou` reports the mean per-image IoU as `segment` does
    assert "mean image IoU per class [" in capsys.readouterr().out
    image_keys = [f"mean image IoU {name}" for name in report["classes"]["classes"]]
    for key in image_keys:
        assert evaluated["info"][key] == (None if report["info"][key] is None else pytest.approx(report["info"][key], abs=1e-4))
    assert [p["id"] for p in evaluated["metrics"]["image_iou"]["per_image"]] == \
        [p["id"] for p in report["metrics"]["image_iou"]["per_image"]]
    assert evaluated["info"]["protocol"]["inference"] == "full image"
    # test-time flips: the report says so, and the image IoUs are those of the averaged views
    assert evaluate_miou.main(["recipe=toy", *tiny_toy_overrides, "seg.mixed_precision='no'", "eval.flips=[horizontal]",
                          f"checkpoint={ckpt_path}", f"out={tmp_path / 'flips'}"]) == 0
    flipped = json.loads((tmp_path / "flips" / "report.json").read_text())
    assert flipped["info"]["protocol"]["inference"] == "full image + flips horizontal (2 views, mean logits)"
    model, _ = load_segmenter(ckpt_path)
    expected = image_ious(model, val, num_classes=8, ignore_index=255, window=None, device="cpu", flips=("horizontal",))
    got = flipped["metrics"]["image_iou"]["per_image"]
    for g, e in zip(got, expected, strict=True):
        assert g["per_class_iou"] == pytest.approx(e["per_class_iou"], abs=1e-6, nan_ok=True)


def test_same_seed_same_segmenter_in_one_process(tmp_path, tiny_toy_overrides):
    """Initial weights come from the recipe seed, not from whatever drew from torch's RNG before
    (here: an earlier run in the same process), so two runs of one seed train the same model."""
    def weights(name: str, seed: int) -> list[torch.Tensor]:
        args = ["recipe=toy", f"run_dir={tmp_path / name}", f"seed={seed}", *tiny_toy_overrides, *TINY_SEG,
                "seg.steps=2", "seg.val_every=0", "seg.checkpoint_every=2", "seg.mixed_precision='no'"]
        assert segment_main(args) == 0
        return list(load_segmenter(tmp_path / name / "checkpoints" / "segmenter" / "latest.pt")[0].state_dict().values())

    first, again, other = weights("a", 0), weights("b", 0), weights("c", 1)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not all(torch.equal(x, y) for x, y in zip(first, other))


@pytest.mark.parametrize("mix", ["real only", "decay"])
def test_a_killed_segment_resumes_to_the_uninterrupted_model(tmp_path, tiny_toy_overrides, synthetic_shards, mix):
    """Issue 34: a `segment` killed after a checkpoint and resumed trains the same model as one that
    ran straight through (the resumed stream was seeded with the resume step: other batches)."""
    args = ["recipe=toy", *tiny_toy_overrides, *TINY_SEG, "seg.steps=60", "seg.checkpoint_every=5",
            "seg.val_every=20", "seg.mixed_precision='no'"]
    if mix == "decay":  # composed batches from one stream per source
        args += [f"seg.synthetic={synthetic_shards[0]}", "seg.synthetic_ratio=0.5", "seg.synthetic_schedule=decay"]
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    progress = killed / "checkpoints" / "segmenter" / "state" / "progress.json"
    proc = subprocess.Popen([sys.executable, "-m", "synthdata.segment", *args, f"run_dir={killed}"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not progress.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "report").exists()  # killed during training
    assert segment_main(args + [f"run_dir={killed}"]) == 0
    assert segment_main(args + [f"run_dir={straight}"]) == 0
    resumed, whole = (json.loads((run / "report" / "report.json").read_text()) for run in (killed, straight))
    assert resumed["info"]["resumed_from_step"] > 0 and whole["info"]["resumed_from_step"] == 0
    assert resumed["info"]["final_loss"] == whole["info"]["final_loss"]
    assert resumed["metrics"]["miou"] == whole["metrics"]["miou"]
    assert resumed["metrics"]["per_class_iou"] == whole["metrics"]["per_class_iou"]
    assert resumed["info"]["history"] == whole["info"]["history"]
    assert resumed["info"]["source_counts"] == whole["info"]["source_counts"]
    a, b = (load_segmenter(run / "checkpoints" / "segmenter" / "latest.pt")[0].state_dict() for run in (killed, straight))
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_a_second_segment_in_a_run_dir_is_refused_while_one_runs_there(tmp_path, tiny_toy_overrides, capsys,
                                                                        lock_holder):
    """Issue 34: two `segment`s on one run dir wrote the same checkpoints (one died with SafetensorError)."""
    run = tmp_path / "run"
    args = ["recipe=toy", f"run_dir={run}", *tiny_toy_overrides, *TINY_SEG, "seg.steps=2", "seg.val_every=0",
            "seg.checkpoint_every=2", "seg.mixed_precision='no'"]
    with lock_holder(run) as pid:
        capsys.readouterr()
        assert segment_main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert f"{run}: another synthdata segment is already running here (pid {pid}, started " in err
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing trained, nothing written
    assert segment_main(args) == 0  # the kernel dropped the killed holder's lock: none is stale
    assert (run / "report" / "report.json").is_file()


def test_mixing_ratio_and_loss_filter(tmp_path, tiny_toy_overrides, synthetic_shards):
    from synthdata.core.checkpoint import portable_checkpoint, save_atomic

    shards, classes, _ = synthetic_shards
    judge = build_segmenter(tiny_cfg(), num_classes=classes.num_classes)  # any real-data segmenter
    judge_path = save_atomic(portable_checkpoint(kind="segmenter", model=judge.state_dict(), step=0, recipe={},
                                                 classes=classes, arch={"encoder_depth": 3, "decoder_channels": [16, 8, 8]}),
                             tmp_path / "judge.pt")
    run = tmp_path / "mixed"
    assert segment_main(["recipe=toy", *tiny_toy_overrides, *TINY_SEG, "seg.val_every=0", "seg.checkpoint_every=0",
                         f"run_dir={run}", "seg.steps=6", f"seg.synthetic={shards}", "seg.synthetic_ratio=0.25",
                         "seg.synthetic_filter=loss", "seg.filter_k=1.0", f"seg.filter_segmenter={judge_path}"]) == 0
    info = json.loads((run / "report" / "report.json").read_text())["info"]
    counts = info["source_counts"]
    # 24 samples drawn 1:3 from the mixed stream; the loader's shuffle buffer makes a batch a
    # random draw from that mix, so the count is near 6, not exactly 6
    assert counts["real"] + counts["synthetic"] == 24 and 2 <= counts["synthetic"] <= 10
    assert info["data_sources"]["synthetic"]["shards"] == shards
    filt = info["data_sources"]["synthetic"]["filter"]
    assert filt["k"] == 1.0 and set(filt["class_mean_loss"]) == set(classes.names)
    # with k = 1 some synthetic pixels are above their class mean and get ignored, never all
    assert 0.0 < filt["ignored_fraction_total"] < 1.0
    md = (run / "report" / "report.md").read_text()
    assert "synthetic_ignored_fraction: road=" in md and "source_counts: real=" in md


def test_synthetic_only_stream(tmp_path, tiny_toy_overrides, synthetic_shards):
    shards, _, _ = synthetic_shards
    run = tmp_path / "synthetic"
    assert segment_main(["recipe=toy", *tiny_toy_overrides, *TINY_SEG, "seg.val_every=0", "seg.checkpoint_every=0",
                         f"run_dir={run}", "seg.steps=2", f"seg.synthetic={shards}", "seg.synthetic_ratio=1.0"]) == 0
    info = json.loads((run / "report" / "report.json").read_text())["info"]
    assert info["source_counts"] == {"synthetic": 8}


@pytest.mark.parametrize("change", ["classes", "ignore"])
def test_synthetic_shards_with_other_classes_are_rejected(tmp_path, tiny_toy_overrides, synthetic_shards, capsys, change):
    _, classes, samples = synthetic_shards
    if change == "classes":
        other = ClassInfo(classes.names[:-1] + ("tram",), classes.palette, classes.ignore_index)
    else:
        other = ClassInfo(classes.names, classes.palette, 254)
    shards = write_shards(tmp_path / f"other-{change}", other, samples[:4])
    code = segment_main(["recipe=toy", f"run_dir={tmp_path / 'r'}", *tiny_toy_overrides, *TINY_SEG,
                         f"seg.synthetic={shards}", "seg.synthetic_ratio=0.5", "seg.steps=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "seg.synthetic" in err and ("tram" in err or "ignore 254" in err)


def test_unknown_arch_from_the_command_line(tmp_path, tiny_toy_overrides, capsys):
    code = segment_main(["recipe=toy", f"run_dir={tmp_path}", *tiny_toy_overrides, "seg.model.arch=unetx"])
    assert code == 2 and "Valid names" in capsys.readouterr().err


def test_empty_validation_split_is_an_error(tmp_path, tiny_toy_overrides, capsys):
    code = segment_main(["recipe=toy", f"run_dir={tmp_path}", *tiny_toy_overrides, *TINY_SEG,
                         "data.split_sizes={train: 4, val: 0, test: 0}", "seg.steps=1"])
    assert code == 2 and "empty" in capsys.readouterr().err


def test_evaluating_a_checkpoint_for_other_classes_fails(tmp_path, tiny_toy_overrides, capsys):
    from synthdata.core.checkpoint import portable_checkpoint, save_atomic

    model = build_segmenter(tiny_cfg(), num_classes=3)
    other = ClassInfo(("a", "b", "c"), default_palette(3), 255)
    path = save_atomic(portable_checkpoint(kind="segmenter", model=model.state_dict(), step=1, recipe={},
                                           classes=other, arch={"encoder_depth": 3, "decoder_channels": [16, 8, 8]}),
                       tmp_path / "seg.pt")
    code = evaluate_miou.main(["recipe=toy", *tiny_toy_overrides, f"checkpoint={path}"])
    assert code == 2 and "trained for classes ['a', 'b', 'c']" in capsys.readouterr().err


def test_real_data_from_shards(tmp_path, tiny_toy_overrides, synthetic_shards, capsys):
    shards, _, _ = synthetic_shards
    run = tmp_path / "real-shards"
    base = ["recipe=toy", *tiny_toy_overrides, *TINY_SEG, "seg.val_every=0", "seg.checkpoint_every=0",
            f"run_dir={run}", "seg.steps=2", f"seg.real={shards}"]
    assert segment_main(base) == 0
    info = json.loads((run / "report" / "report.json").read_text())["info"]
    assert info["source_counts"] == {"real": 8} and info["data_sources"]["real"] == {"shards": shards}
    assert segment_main(base + ["seg.real_fraction=0.5"]) == 2  # subsets select from the reader
    assert "seg.real_fraction" in capsys.readouterr().err


def _relabel_manifest(folder: str, classes: ClassInfo) -> None:
    """Make `folder`'s manifest declare `classes` (its shards, and their sha256, unchanged)."""
    path = os.path.join(folder, "manifest.json")
    manifest = json.loads(open(path).read())
    manifest.update(classes.to_dict())
    with open(path, "w") as f:
        json.dump(manifest, f)


def test_synthetic_labels_beyond_the_classes_stop_with_one_line_naming_the_sample(tmp_path, tiny_toy_overrides,
                                                                                   synthetic_shards, capsys):
    """Issue 34: shards whose labels exceed the classes their manifest declares crashed mid-training
    (`IndexError: Target 40 is out of bounds`); the loader refuses the first such sample by name."""
    _, classes, samples = synthetic_shards
    for s in samples[:4]:
        s["layout"][16:] = 40  # half of every sample: augmentation cannot crop it all away
    wide = ClassInfo(classes.names + tuple(f"extra{i}" for i in range(33)), default_palette(41))
    shards = write_shards(tmp_path / "wide", wide, samples[:4])
    _relabel_manifest(shards, classes)
    run = tmp_path / "r"
    code = segment_main(["recipe=toy", f"run_dir={run}", *tiny_toy_overrides, *TINY_SEG, "seg.val_every=0",
                         "seg.checkpoint_every=0", f"seg.synthetic={shards}", "seg.synthetic_ratio=0.5", "seg.steps=2"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "IndexError" not in err, err
    (line,) = [x for x in err.split("\n") if x.startswith("error: ")]
    assert re.search(rf"sample 'synth-toy-test-00000\d' in {re.escape(shards)}/synth-000000.tar: labels \[40\] are not "
                     r"among the 8 classes \(0\.\.7\) nor ignore_index 255", line), line
    assert not (run / "checkpoints" / "segmenter" / "latest.pt").exists()


def test_a_changed_synthetic_shard_is_refused_before_training(tmp_path, tiny_toy_overrides, synthetic_shards, capsys):
    """Issue 34: a synthetic shard that no longer matches its manifest's sha256 (inspect reported it)
    trained silently; segment compares every shard with its manifest once, before step 1."""
    shards, _, _ = synthetic_shards
    shard = os.path.join(shards, "synth-000001.tar")
    with open(shard, "r+b") as f:  # a byte after the last member: every reader still reads the shard
        f.seek(-1, os.SEEK_END)
        f.write(b"\x01")
    run = tmp_path / "r"
    code = segment_main(["recipe=toy", f"run_dir={run}", *tiny_toy_overrides, *TINY_SEG,
                         f"seg.synthetic={shards}", "seg.synthetic_ratio=0.5", "seg.steps=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {shard}: its sha256 differs") and err.count("\n") == 1, err
    assert not (run / "checkpoints").exists()


def test_online_copy_paste_pastes_into_real_samples_as_they_are_read(tmp_path, tiny_toy_overrides, capsys):
    """seg.online_copy_paste: the bank of the training split is built in RUN_DIR/bank, the real
    stream carries pasted objects (deterministic for a seed), and the report says so."""
    from synthdata.segmentation.training import SegmentationRun, data_sources

    args = [*tiny_toy_overrides, *TINY_SEG, "seg.steps=2", "seg.val_every=0", "seg.checkpoint_every=2",
            "seg.mixed_precision='no'", "seg.online_copy_paste=3", "seg.online_copy_paste_p=1.0",
            "produce.copy_paste_classes=[car, person]"]
    assert segment_main(["recipe=toy", f"run_dir={tmp_path / 'run'}", *args]) == 0
    assert (tmp_path / "run" / "bank" / "segment_bank.npz").is_file()
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    online = report["info"]["data_sources"]["real"]["online_copy_paste"]
    assert online["max_objects"] == 3 and online["p"] == 1.0 and online["classes"] == ["car", "person"]
    assert "online copy-paste (up to 3, p 1)" in report["title"]

    from synthdata.core.runtime import make_accelerator

    recipe = load_recipe("toy", args)
    plain_sources, _ = data_sources(recipe, make_reader(recipe.data, "val").classes)
    run = SegmentationRun(recipe, tmp_path / "run", make_accelerator(mixed_precision="no"))
    pasted = [next(iter(make_loader(run.sources, batch_size=4, augment=False, shuffle=False, seed=3)))
              for _ in range(2)]
    plain = next(iter(make_loader(plain_sources, batch_size=4, augment=False, shuffle=False, seed=3)))
    assert torch.equal(pasted[0]["layout"], pasted[1]["layout"]) and torch.equal(pasted[0]["image"], pasted[1]["image"])
    assert not torch.equal(pasted[0]["layout"], plain["layout"])
    names = run.classes.names
    new = pasted[0]["layout"][pasted[0]["layout"] != plain["layout"]].unique().tolist()
    assert new and {names[c] for c in new} <= {"car", "person"}


@pytest.mark.parametrize("extra, words", [
    (["seg.real_fraction=0.5"], ["seg.online_copy_paste", "data.subset"]),
    (["produce.copy_paste_classes=[sky]"], ["seg.online_copy_paste", "region classes"]),
])
def test_online_copy_paste_refusals_name_the_keys(tmp_path, tiny_toy_overrides, capsys, extra, words):
    args = ["recipe=toy", f"run_dir={tmp_path / 'run'}", *tiny_toy_overrides, *TINY_SEG, "seg.steps=2",
            "seg.online_copy_paste=2", *extra]
    assert segment_main(args) == 2
    err = capsys.readouterr().err.split("\r")[-1]  # after the bank's progress bar, when it was built
    assert err.startswith("error: ") and err.count("\n") == 1 and all(w in err for w in words), err
    assert not (tmp_path / "run" / "checkpoints").exists()
