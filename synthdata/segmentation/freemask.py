"""Synthetic-label filtering by loss (FreeMask, Yang et al. 2023, "FreeMask: Synthetic Images with
Dense Annotations Make Stronger Segmentation Models"): `class_mean_loss` of a real-data segmenter and
`LossFilter`, which ignores the synthetic pixels it finds too hard (`seg.synthetic_filter=loss`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synthdata.core.contract import ClassInfo


def _pixel_loss(model: nn.Module, images: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Per-pixel cross-entropy `(B, H, W)` of `model` against `target` (0 at ignore pixels)."""
    logits = model(images).float()
    return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")


@torch.no_grad()
def class_mean_loss(model: nn.Module, loader, *, num_classes: int, ignore_index: int, accelerator: Any = None) -> torch.Tensor:
    """Mean per-pixel cross-entropy of `model` for each class over `loader`, `(C,)` (NaN if unseen),
    summed across processes: the reference FreeMask compares synthetic pixels against."""
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    total = torch.zeros(num_classes, dtype=torch.float64, device=device)
    count = torch.zeros(num_classes, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    for batch in loader:
        images, target = batch["image"].to(device), batch["layout"].to(device)
        loss = _pixel_loss(model, images, target, ignore_index)
        keep = target != ignore_index
        total += torch.bincount(target[keep], weights=loss[keep].double(), minlength=num_classes)
        count += torch.bincount(target[keep], minlength=num_classes).double()
    model.train(was_training)
    if accelerator is not None and accelerator.num_processes > 1:
        total, count = accelerator.reduce(total, "sum"), accelerator.reduce(count, "sum")
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan"))).float()


class LossFilter:
    """Ignore synthetic pixels whose loss under a real-data segmenter exceeds `k` times that
    class's mean loss on real data; counts, per class, how many pixels it ignored."""

    def __init__(self, model: nn.Module, class_means: torch.Tensor, *, k: float = 1.25, ignore_index: int = 255):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        # classes never seen in real data keep all their synthetic pixels
        self.threshold = torch.nan_to_num(class_means.float() * k, nan=float("inf"))
        self.k, self.ignore_index = k, ignore_index
        c = len(class_means)
        self.class_means = class_means
        self.ignored = torch.zeros(c, dtype=torch.float64, device=class_means.device)
        self.seen = torch.zeros(c, dtype=torch.float64, device=class_means.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, target: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        """`target (B, H, W)` with noisy pixels of the `synthetic (B,)` samples set to ignore."""
        if not bool(synthetic.any()):
            return target
        c = len(self.threshold)
        sub, labels = images[synthetic], target[synthetic]
        loss = _pixel_loss(self.model, sub, labels, self.ignore_index)
        keep = labels != self.ignore_index
        threshold = self.threshold.to(loss.device)[labels.clamp(0, c - 1)]
        noisy = keep & (loss > threshold)
        self.seen += torch.bincount(labels[keep], minlength=c).double().to(self.seen.device)
        self.ignored += torch.bincount(labels[noisy], minlength=c).double().to(self.ignored.device)
        out = target.clone()
        out[synthetic] = labels.masked_fill(noisy, self.ignore_index)
        return out

    def summary(self, classes: ClassInfo, accelerator: Any = None) -> dict[str, Any]:
        """k, the real-data class means and the fraction of synthetic pixels ignored per class."""
        ignored, seen = self.ignored, self.seen
        if accelerator is not None and accelerator.num_processes > 1:
            ignored, seen = accelerator.reduce(ignored.clone(), "sum"), accelerator.reduce(seen.clone(), "sum")
        frac = (ignored / seen.clamp(min=1)).tolist()
        return {
            "method": "loss (FreeMask, Yang et al. 2023)",
            "k": self.k,
            "class_mean_loss": dict(zip(classes.names, self.class_means.tolist())),
            "ignored_fraction": {n: (f if s > 0 else None) for n, f, s in zip(classes.names, frac, seen.tolist())},
            "ignored_fraction_total": float(ignored.sum() / seen.sum().clamp(min=1)),
        }
