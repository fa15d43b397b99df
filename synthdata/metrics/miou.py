"""Semantic-segmentation metrics from a confusion matrix accumulated on the device.

Convention (stated in every report): IoU_c = TP / (TP + FP + FN); a class that appears neither
in the ground truth nor in the predictions of the evaluated set has IoU NaN and is left out of
the mIoU, so mIoU averages the classes present in ground truth or predictions. Pixels labelled
ignore_index are excluded everywhere.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

MIOU_CONVENTION = (
    "mean of per-class IoU = TP/(TP+FP+FN) over classes present in ground truth or predictions "
    "(absent classes: NaN, excluded); ignore-label pixels excluded"
)


class ConfusionMatrix:
    """A `(C, C)` int64 matrix, rows = ground truth, columns = prediction."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device | None = None):
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.num_images = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add `pred (B, H, W)` long class indices against `target (B, H, W)` (with ignore)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        c = self.num_classes
        pred = pred.to(self.matrix.device, torch.int64)
        target = target.to(self.matrix.device, torch.int64)
        keep = target != self.ignore_index
        bad = keep & ((target < 0) | (target >= c))
        if bool(bad.any()):
            found = torch.unique(target[bad])[:10].tolist()
            raise ValueError(f"target labels {found} outside 0..{c - 1} and not ignore ({self.ignore_index})")
        if bool(((pred < 0) | (pred >= c)).any()):
            raise ValueError(f"predictions outside 0..{c - 1}")
        index = target[keep] * c + pred[keep]
        self.matrix += torch.bincount(index, minlength=c * c).reshape(c, c)
        self.num_images += pred.shape[0] if pred.ndim == 3 else 1

    def reduce(self, accelerator: Any = None) -> "ConfusionMatrix":
        """Sum the matrix (and image count) over all processes; a no-op on one process."""
        if accelerator is not None:
            if accelerator.num_processes > 1:
                self.matrix = accelerator.reduce(self.matrix, reduction="sum")
                self.num_images = accelerator.reduce(self.num_images, reduction="sum")
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                torch.distributed.all_reduce(self.matrix)
                torch.distributed.all_reduce(self.num_images)
        return self

    def compute(self) -> dict[str, Any]:
        """Per-class IoU (NaN for absent classes), mIoU, pixel accuracy, mean class accuracy, fwIoU."""
        m = self.matrix.double().cpu()
        tp = m.diag()
        gt = m.sum(1)
        pred = m.sum(0)
        union = gt + pred - tp
        total = m.sum()
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, math.nan))
        present = union > 0
        freq = gt / total if total > 0 else gt
        return {
            "per_class_iou": iou.tolist(),
            "per_class_accuracy": acc.tolist(),
            "miou": float(iou[present].mean()) if present.any() else math.nan,
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else math.nan,
            "mean_class_accuracy": float(acc[gt > 0].mean()) if (gt > 0).any() else math.nan,
            "fw_iou": float((freq[present] * iou[present]).sum()) if total > 0 else math.nan,
            "matrix": self.matrix.cpu().tolist(),
            "num_pixels": int(total),
            "num_images": int(self.num_images),
            "convention": MIOU_CONVENTION,
        }


def sliding_window_logits(
    model: nn.Module, images: torch.Tensor, *, window: tuple[int, int], num_classes: int, overlap: float = 1 / 3
) -> torch.Tensor:
    """Average the logits of overlapping `window` tiles: `images (B, 3, H, W)` -> `(B, C, H, W)`."""
    b, _, h, w = images.shape
    wh, ww = min(window[0], h), min(window[1], w)
    sh, sw = max(1, int(wh * (1 - overlap))), max(1, int(ww * (1 - overlap)))
    tops = list(range(0, h - wh + 1, sh))
    lefts = list(range(0, w - ww + 1, sw))
    if tops[-1] != h - wh:
        tops.append(h - wh)
    if lefts[-1] != w - ww:
        lefts.append(w - ww)
    out = images.new_zeros(b, num_classes, h, w, dtype=torch.float32)
    count = images.new_zeros(1, 1, h, w, dtype=torch.float32)
    for top in tops:
        for left in lefts:
            tile = images[..., top : top + wh, left : left + ww]
            out[..., top : top + wh, left : left + ww] += model(tile).float()
            count[..., top : top + wh, left : left + ww] += 1
    return out / count


FLIP_DIMS = {"horizontal": -1, "vertical": -2}


def flip_views(flips: tuple[str, ...] | list[str]) -> list[tuple[int, ...]]:
    """The dims to flip for each test-time view: every combination of `flips` (a subset of
    FLIP_DIMS' names), the unflipped view first: `("horizontal", "vertical")` -> 4 views."""
    views: list[tuple[int, ...]] = [()]
    for name in flips:
        views += [view + (FLIP_DIMS[name],) for view in views]
    return views


def predict_logits(
    model: nn.Module, images: torch.Tensor, *, num_classes: int, window: tuple[int, int] | None = None,
    flips: tuple[str, ...] | list[str] = (),
) -> torch.Tensor:
    """Full-image (window None) or sliding-window logits `(B, C, H, W)` as float32; with `flips`
    (test-time augmentation), the mean logits of the flipped views, each flipped back."""
    views, out = flip_views(flips), None
    for dims in views:
        view = images.flip(dims) if dims else images
        if window is None:
            logits = model(view).float()
        else:
            logits = sliding_window_logits(model, view, window=window, num_classes=num_classes)
        logits = logits.flip(dims) if dims else logits
        out = logits if out is None else out + logits
    return out if len(views) == 1 else out / len(views)


@torch.no_grad()
def evaluate_segmenter(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    num_classes: int,
    ignore_index: int,
    accelerator: Any = None,
    window: tuple[int, int] | None = None,
    flips: tuple[str, ...] | list[str] = (),
    keep_examples: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """mIoU and friends of `model` over every batch of `loader` (summed across processes).

    Batches follow the loader contract: `image (B, 3, H, W)` in [0, 1], `layout (B, H, W)`.
    With `keep_examples > 0` the result holds "examples": up to that many dicts of numpy
    `image` (H, W, 3) uint8, `layout` and `pred` (H, W), from this process, for pictures.
    """
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    examples: list[dict[str, np.ndarray]] = []
    batches = loader
    if progress:

        batches = tqdm(loader, desc="evaluate", unit="batch", leave=False,
                       disable=accelerator is not None and not accelerator.is_main_process)
    for batch in batches:
        images = batch["image"].to(device, non_blocking=True)
        target = batch["layout"].to(device, non_blocking=True)
        with accelerator.autocast() if accelerator is not None else contextlib.nullcontext():
            logits = predict_logits(model, images, num_classes=num_classes, window=window, flips=flips)
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        pred = logits.argmax(1)
        cm.update(pred, target)
        for i in range(min(keep_examples - len(examples), images.shape[0])):
            examples.append({
                "image": (images[i].float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy(),
                "layout": target[i].cpu().numpy(),
                "pred": pred[i].cpu().numpy(),
            })
    model.train(was_training)
    result = cm.reduce(accelerator).compute()
    if keep_examples:
        result["examples"] = examples
    return result
