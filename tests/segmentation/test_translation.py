"""Segmentation as translation: mask encodings, pix2pix / CycleGAN networks and steps, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthdata.core.contract import ConfigError
from synthdata.core.recipe import TranslateConfig
from synthdata.segmentation import translation as translate
from synthdata.segmentation.cyclegan import CycleGANWeights, ImagePool, cycle_losses, cyclegan_step
from synthdata.translate import main as translate_main

PALETTE = np.array([[0, 0, 0], [255, 255, 0], [0, 128, 255]], dtype=np.uint8)
TINY = ["data.height=32", "data.width=64", "data.split_sizes={train: 8, val: 4, test: 4}",
        "translate.batch_size=2", "translate.ngf=4", "translate.ndf=4", "translate.mixed_precision='no'",
        "translate.checkpoint_every=1", "eval.batch_size=4"]


@pytest.mark.parametrize("encoding,num_classes", [("onehot", 2), ("onehot", 3), ("rgb", 2), ("rgb", 3)])
def test_mask_encodings_round_trip(encoding: str, num_classes: int) -> None:
    layout = torch.randint(0, num_classes, (2, 8, 16))
    layout[0, 0, :4] = 255
    enc = translate.encode_mask(layout, encoding=encoding, num_classes=num_classes, palette=PALETTE[:num_classes])
    assert enc.shape[1] == translate.mask_channels(encoding, num_classes)
    assert enc.min() >= -1 and enc.max() <= 1
    assert torch.all(enc[0, :, 0, :4] == 0)  # unlabelled pixels are neither class
    back = translate.decode_mask(enc, encoding=encoding, num_classes=num_classes, palette=PALETTE[:num_classes])
    valid = layout != 255
    assert torch.equal(back[valid], layout[valid])


@pytest.mark.parametrize("mode,num_classes", [("pix2pix", 2), ("pix2pix", 3), ("cyclegan", 3)])
def test_translation_outputs_map_to_valid_labels(mode: str, num_classes: int) -> None:
    torch.manual_seed(0)
    arch = translate.translate_arch(TranslateConfig(mode=mode, ngf=4, ndf=4), num_classes=num_classes, crop=(32, 64))
    G = translate.build_networks(arch)["G" if mode == "pix2pix" else "G_ab"].eval()
    model = translate.TranslationSegmenter(G, encoding=arch["encoding"], num_classes=num_classes,
                                           palette=PALETTE[:num_classes])
    for size in ((32, 64), (30, 50)):  # the second is padded to the U-Net's multiple and cropped back
        scores = model(torch.rand(2, 3, *size))
        assert scores.shape == (2, num_classes, *size)
        labels = scores.argmax(1)
        assert labels.min() >= 0 and labels.max() < num_classes


def test_unknown_mode_lists_the_valid_ones(capsys) -> None:
    with pytest.raises(ConfigError, match="pix2pix, cyclegan"):
        translate.check_mode("unet")
    assert translate_main(["recipe=toy", "run_dir=/nonexistent", "translate.mode=cycle"]) == 2
    assert "'translate.mode' must be one of ['pix2pix', 'cyclegan']" in capsys.readouterr().err


def test_image_pool_mixes_history_and_resumes() -> None:
    pool = ImagePool(3, seed=1)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: fakes pass through
    state = pool.state_dict()
    new = torch.full((8, 1, 1, 1), 9.0)
    out = pool.query(new)
    assert out.shape == new.shape and (out != 9).any() and (out == 9).any()
    again = ImagePool(3, seed=5)
    again.load_state_dict(state)
    assert torch.equal(again.query(new), out)


def test_cyclegan_cycle_loss_decreases_on_a_tiny_dataset() -> None:
    torch.manual_seed(0)
    # domain A: smooth grey images; domain B: their thresholded masks as palette colours
    base = torch.nn.functional.interpolate(torch.rand(4, 1, 4, 4), size=(16, 16), mode="bilinear")
    images = (base * 2 - 1).repeat(1, 3, 1, 1)
    labels = (base[:, 0] > 0.5).long()
    masks = translate.encode_mask(labels, encoding="rgb", num_classes=2, palette=PALETTE[:2])
    arch = translate.translate_arch(TranslateConfig(mode="cyclegan", ngf=8, ndf=8), num_classes=2, crop=(16, 16))
    nets = translate.build_networks(arch)
    gens = [p for k in ("G_ab", "G_ba") for p in nets[k].parameters()]
    discs = [p for k in ("D_a", "D_b") for p in nets[k].parameters()]
    opt_g, opt_d = torch.optim.Adam(gens, lr=2e-3, betas=(0.5, 0.999)), torch.optim.Adam(discs, lr=2e-4)
    weights, pools = CycleGANWeights(), (ImagePool(50, seed=0), ImagePool(50, seed=1))

    def cycle() -> float:
        with torch.no_grad():
            for k in ("G_ab", "G_ba"):
                nets[k].eval()
            value = float(cycle_losses(nets["G_ab"], nets["G_ba"], images, masks, weights=weights)["cycle"])
            for k in ("G_ab", "G_ba"):
                nets[k].train()
            return value

    before = cycle()
    for _ in range(20):
        logs = cyclegan_step(nets, opt_g, opt_d, images, masks, weights=weights, pools=pools)
    assert all(torch.isfinite(v) for v in logs.values())
    assert cycle() < 0.85 * before


def test_pix2pix_command_trains_resumes_and_reports(tmp_path: Path, capsys) -> None:
    args = ["recipe=toy", f"run_dir={tmp_path}", "translate.mode=pix2pix", *TINY]
    assert translate_main([*args, "translate.steps=1"]) == 0
    assert translate_main([*args, "translate.steps=2"]) == 0
    assert "resumed_from_step: 1" in (tmp_path / "translate" / "pix2pix" / "report.md").read_text()
    report = json.loads((tmp_path / "translate" / "pix2pix" / "report.json").read_text())
    per_image = report["metrics"]["image_iou"]["per_image"]
    assert len(per_image) == 4 and len(per_image[0]["per_class_iou"]) == len(report["classes"]["classes"])
    model, ckpt = translate.load_translator(tmp_path / "checkpoints" / "translate-pix2pix" / "latest.pt")
    assert ckpt["step"] == 2 and ckpt["kind"] == "translate-pix2pix"
    labels = model(torch.rand(1, 3, 32, 64)).argmax(1)
    assert labels.max() < len(report["classes"]["classes"])


def test_cyclegan_command_runs_unpaired(tmp_path: Path) -> None:
    assert translate_main(["recipe=toy", f"run_dir={tmp_path}", "translate.mode=cyclegan", *TINY,
                           "translate.steps=1"]) == 0
    report = json.loads((tmp_path / "translate" / "cyclegan" / "report.json").read_text())
    assert report["info"]["mask_encoding"] == "rgb" and 0 <= report["metrics"]["miou"] <= 1
    assert (tmp_path / "checkpoints" / "translate-cyclegan" / "state").is_dir()


def test_a_second_translation_of_one_mode_is_refused_while_one_runs(tmp_path: Path, capsys, lock_holder) -> None:
    """Issue 34: one process per checkpoint folder; the run trains nothing and writes nothing."""
    with lock_holder(tmp_path, ".lock-translate-pix2pix") as pid:
        assert translate_main(["recipe=toy", f"run_dir={tmp_path}", "translate.mode=pix2pix", *TINY,
                               "translate.steps=1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert f"another synthdata translate translate.mode=pix2pix is already running here (pid {pid}" in err
        assert not (tmp_path / "translate").exists()
