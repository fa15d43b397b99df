"""mIoU from the device confusion matrix: against numpy, across processes, windows and bad input."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from synthdata.metrics.miou import ConfusionMatrix, evaluate_segmenter, flip_views, predict_logits, sliding_window_logits


def numpy_metrics(pred: np.ndarray, target: np.ndarray, c: int, ignore: int) -> dict:
    """An independent reference: an explicit loop over pixels into a confusion matrix."""
    m = np.zeros((c, c), dtype=np.int64)
    for t, p in zip(target.ravel(), pred.ravel()):
        if t != ignore:
            m[t, p] += 1
    ious = []
    for k in range(c):
        tp, fp, fn = m[k, k], m[:, k].sum() - m[k, k], m[k, :].sum() - m[k, k]
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    present = [x for x in ious if not math.isnan(x)]
    return {"matrix": m, "iou": ious, "miou": sum(present) / len(present), "acc": np.trace(m) / m.sum()}


def random_batch(seed: int, c: int = 5, ignore: int = 255, shape=(3, 17, 23)):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, c - 1, size=shape)  # class c-1 never in ground truth
    target[rng.random(shape) < 0.2] = ignore
    noise = rng.integers(0, c - 1, size=shape)  # class c-1 never predicted either -> absent
    pred = np.where((rng.random(shape) < 0.5) & (target != ignore), target, noise)
    return pred, target


def test_matches_numpy_reference_with_ignore_pixels():
    c, ignore = 5, 255
    cm = ConfusionMatrix(c, ignore)
    preds, targets = [], []
    for seed in range(3):
        pred, target = random_batch(seed, c, ignore)
        cm.update(torch.from_numpy(pred), torch.from_numpy(target))
        preds.append(pred)
        targets.append(target)
    ref = numpy_metrics(np.concatenate(preds), np.concatenate(targets), c, ignore)
    got = cm.compute()
    np.testing.assert_array_equal(np.array(got["matrix"]), ref["matrix"])
    np.testing.assert_allclose(got["per_class_iou"][:-1], ref["iou"][:-1], rtol=1e-12)
    assert math.isnan(got["per_class_iou"][-1])  # absent class: NaN, left out of the mean
    assert got["miou"] == pytest.approx(ref["miou"], rel=1e-12)
    assert got["pixel_accuracy"] == pytest.approx(ref["acc"], rel=1e-12)
    assert got["num_images"] == 9
    assert got["num_pixels"] == int((np.concatenate(targets) != ignore).sum())


def test_perfect_prediction_and_derived_metrics():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 255]]])
    cm = ConfusionMatrix(4, 255)
    cm.update(target.clamp(max=3).masked_fill(target == 255, 0), target)
    out = cm.compute()
    assert out["miou"] == 1.0 and out["pixel_accuracy"] == 1.0 and out["mean_class_accuracy"] == 1.0
    assert out["fw_iou"] == pytest.approx(1.0)
    assert math.isnan(out["per_class_iou"][3])


def test_out_of_range_labels_are_an_error():
    cm = ConfusionMatrix(3, 255)
    with pytest.raises(ValueError, match="outside 0..2"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, result_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cm = ConfusionMatrix(5, 255)
        pred, target = random_batch(rank, 5, 255)
        cm.update(torch.from_numpy(pred), torch.from_numpy(target))
        out = cm.reduce().compute()
        if rank == 0:
            torch.save({"matrix": torch.tensor(out["matrix"]), "n": out["num_images"]}, result_path)
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_reduction_equals_single_process(tmp_path):
    path = str(tmp_path / "reduced.pt")
    mp.spawn(_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    reduced = torch.load(path, weights_only=True)
    single = ConfusionMatrix(5, 255)
    for rank in range(2):
        pred, target = random_batch(rank, 5, 255)
        single.update(torch.from_numpy(pred), torch.from_numpy(target))
    assert torch.equal(reduced["matrix"], single.matrix)
    assert reduced["n"] == 6


class _Oracle(torch.nn.Module):
    """Logits that put the class coded in the red channel on top (position-independent)."""

    def __init__(self, c: int):
        super().__init__()
        self.c = c
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        labels = (x[:, 0] * 10).round().long().clamp(0, self.c - 1)
        return torch.nn.functional.one_hot(labels, self.c).permute(0, 3, 1, 2).float() + self.dummy


def test_sliding_window_equals_full_image_for_local_model_and_evaluate():
    c = 4
    labels = torch.randint(0, c, (2, 20, 30))
    images = torch.zeros(2, 3, 20, 30)
    images[:, 0] = labels / 10
    model = _Oracle(c)
    full = model(images)
    tiled = sliding_window_logits(model, images, window=(8, 12), num_classes=c)
    torch.testing.assert_close(tiled, full)
    target = labels.clone()
    target[:, :2] = 255
    loader = [{"image": images, "layout": target}]
    out = evaluate_segmenter(model, loader, num_classes=c, ignore_index=255, window=(8, 12), keep_examples=1)
    assert out["miou"] == 1.0 and out["num_images"] == 2
    assert out["examples"][0]["image"].shape == (20, 30, 3) and out["examples"][0]["pred"].shape == (20, 30)


class _LeftRight(torch.nn.Module):
    """Class 1 on the left half of its input, class 0 on the right: not flip-equivariant."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # evaluate_segmenter finds the device here

    def forward(self, x):
        w = x.shape[-1]
        ramp = torch.linspace(1.0, -1.0, w).expand(x.shape[0], 1, x.shape[-2], w)
        return torch.cat([-ramp, ramp], dim=1)


def test_test_time_flips_average_the_flipped_back_views():
    assert flip_views(["horizontal", "vertical"]) == [(), (-1,), (-2,), (-1, -2)]
    c = 4
    images = torch.zeros(2, 3, 20, 30)
    images[:, 0] = torch.randint(0, c, (2, 20, 30)) / 10
    oracle = _Oracle(c)  # flip-equivariant: every view agrees once flipped back
    for window in (None, (8, 12)):
        torch.testing.assert_close(predict_logits(oracle, images, num_classes=c, window=window,
                                                  flips=["horizontal", "vertical"]), oracle(images))
    # a model that reads position: its horizontal views cancel (a vertical flip leaves it alone)
    plain = predict_logits(_LeftRight(), images, num_classes=2)
    assert (plain[:, 1, :, :5] > 0).all() and (plain[:, 1, :, -5:] < 0).all()
    torch.testing.assert_close(predict_logits(_LeftRight(), images, num_classes=2, flips=["horizontal"]),
                               torch.zeros_like(plain))
    torch.testing.assert_close(predict_logits(_LeftRight(), images, num_classes=2, flips=["vertical"]), plain)
    loader = [{"image": images, "layout": torch.zeros(2, 20, 30, dtype=torch.long)}]
    left_wrong = evaluate_segmenter(_LeftRight(), loader, num_classes=2, ignore_index=255)
    assert left_wrong["pixel_accuracy"] == pytest.approx(0.5)
    # with the views averaged to a tie, argmax picks class 0 everywhere
    assert evaluate_segmenter(_LeftRight(), loader, num_classes=2, ignore_index=255,
                              flips=["horizontal"])["pixel_accuracy"] == 1.0
