"""Layout fidelity: an oracle segmenter scores 1, a blind one scores the class share; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthdata.commands import evaluate_fidelity
from synthdata.core.contract import ClassInfo
from synthdata.core.palette import colorize, default_palette, snap_to_palette
from synthdata.metrics import fidelity

CLASSES = ClassInfo(("road", "car", "sky"), default_palette(3), 255)


def _samples(n: int, size=(32, 64), seed=0) -> list[dict]:
    """Images that are the coloured layouts, so an oracle can read the layout back."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        layout = rng.integers(0, 3, size).astype(np.uint8)
        layout[0, :5] = 255
        image = colorize(layout, CLASSES.palette, 255)
        out.append({"image": image, "layout": layout, "meta": {"id": f"s{seed}_{i}"}})
    return out


def oracle(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) palette-coloured layouts -> one-hot logits (B, C, H, W)."""
    rgb = (images * 255).round().permute(0, 2, 3, 1).numpy()
    labels = torch.from_numpy(snap_to_palette(rgb, CLASSES.palette))
    return torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()


def test_oracle_segmenter_scores_one_even_with_mixed_sizes():
    samples = _samples(5) + _samples(2, size=(16, 32), seed=1)
    result = fidelity.layout_fidelity(samples, oracle, num_classes=3, batch_size=2)
    assert result["miou"] == pytest.approx(1.0)
    assert result["pixel_accuracy"] == pytest.approx(1.0)
    assert result["sample_accuracy_mean"] == pytest.approx(1.0)
    assert result["num_images"] == 7
    assert result["num_pixels"] == 5 * (32 * 64 - 5) + 2 * (16 * 32 - 5)  # ignore left out


def test_blind_segmenter_scores_the_share_of_its_class():
    samples = _samples(4)

    def always_road(images):
        logits = torch.zeros(images.shape[0], 3, images.shape[2] // 2, images.shape[3] // 2)
        logits[:, 0] = 1.0  # half resolution: resized to the layout's size
        return logits

    result = fidelity.layout_fidelity(samples, always_road, num_classes=3, worst=2)
    layouts = np.stack([s["layout"] for s in samples])
    share = (layouts == 0).sum() / (layouts != 255).sum()
    assert result["pixel_accuracy"] == pytest.approx(share)
    assert result["per_class_iou"][1] == 0.0
    assert len(result["worst_samples"]) == 2


def test_sample_accuracy_leaves_out_ignore():
    target = torch.tensor([[[0, 1], [255, 1]], [[255, 255], [255, 255]]])
    pred = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [0, 0]]])
    acc = fidelity.sample_accuracy(pred, target)
    assert acc[0].item() == pytest.approx(2 / 3)
    assert torch.isnan(acc[1])


def test_cli_segments_shards_and_refuses_foreign_checkpoints(tmp_path, capsys):
    from synthdata.core.checkpoint import portable_checkpoint, save_atomic
    from synthdata.core.recipe import SegModelConfig
    from synthdata.data.shard_writer import ShardWriter
    from synthdata.models.segmenters import build_segmenter, segmenter_arch

    with ShardWriter(tmp_path / "shards", prefix="t", shard_size=4, classes=CLASSES, recipe={"name": "t"},
                     depth_scale=0.001) as writer:
        writer.write_shard(0, _samples(3))
        writer.finalize_manifest([0])
    cfg = SegModelConfig(arch="unet", encoder="mobilenet_v2")
    torch.manual_seed(0)
    model = build_segmenter(cfg, num_classes=3)
    ckpt = tmp_path / "seg.pt"
    save_atomic(portable_checkpoint(kind="segmenter", model=model.state_dict(), step=7, recipe={},
                                    classes=CLASSES, arch=segmenter_arch(cfg)), ckpt)
    out = tmp_path / "report"
    args = [f"shards={tmp_path / 'shards'}", f"segmenter={ckpt}", f"out={out}", "device=cpu"]
    assert evaluate_fidelity.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["metrics"]["miou"] <= 1.0 and report["metrics"]["num_images"] == 3
    assert report["info"]["segmenter_step"] == 7
    assert "fidelity: mIoU" in capsys.readouterr().out

    other = ClassInfo(("a", "b", "c"), default_palette(3), 255)
    save_atomic(portable_checkpoint(kind="segmenter", model=model.state_dict(), step=1, recipe={},
                                    classes=other, arch=segmenter_arch(cfg)), ckpt)
    assert evaluate_fidelity.main(args) == 2
    assert "seg.pt" in capsys.readouterr().err
