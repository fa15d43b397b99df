"""Layout fidelity: does a generated image show the layout it was generated from?

A segmenter trained on real data segments each produced image; mIoU and pixel accuracy between
its prediction and the sample's own layout measure how faithfully the image follows the layout.
`synthdata evaluate fidelity shards=SRC segmenter=CKPT [count=N out=DIR]`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from synthdata.metrics.miou import ConfusionMatrix

# images (B, 3, H, W) float in [0, 1] -> logits (B, C, H', W')
SegmentFn = Callable[[torch.Tensor], torch.Tensor]


def sample_accuracy(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Per-sample pixel accuracy `(B,)` of `pred` against `target` `(B, H, W)`, ignore left out
    (NaN for a sample with no labelled pixel)."""
    valid = target != ignore_index
    correct = ((pred == target) & valid).flatten(1).sum(1).double()
    total = valid.flatten(1).sum(1).double()
    return torch.where(total > 0, correct / total.clamp(min=1), torch.full_like(total, float("nan")))


@torch.no_grad()
def layout_fidelity(
    samples: Iterable[dict[str, Any]],
    segment: SegmentFn,
    *,
    num_classes: int,
    ignore_index: int = 255,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    worst: int = 8,
) -> dict[str, Any]:
    """Confusion-matrix metrics (`synthdata.metrics.miou.ConfusionMatrix.compute`: miou,
    pixel_accuracy, per_class_iou, ...) of `segment(image)` against each sample's layout, plus
    per-sample pixel accuracy: `sample_accuracy_mean`, `sample_accuracy_p10` and the ids of the
    `worst` samples. Logits of another size are resized bilinearly to the layout's size."""
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    accuracies: list[float] = []
    ids: list[str] = []
    images: list[np.ndarray] = []
    layouts: list[np.ndarray] = []

    def flush() -> None:
        if not images:
            return
        x = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float() / 255.0
        target = torch.from_numpy(np.stack(layouts)).to(device)
        logits = segment(x).float()
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        pred = logits.argmax(1)
        cm.update(pred, target)
        accuracies.extend(sample_accuracy(pred, target, ignore_index).tolist())
        images.clear()
        layouts.clear()

    for i, sample in enumerate(tqdm(samples, desc="fidelity", unit="img", leave=False)):
        layout = np.asarray(sample["layout"]).astype(np.int64)
        if images and (layout.shape != layouts[0].shape or len(images) >= batch_size):
            flush()
        images.append(sample["image"])
        layouts.append(layout)
        ids.append(str(sample.get("meta", {}).get("id", i)))
    flush()
    if not accuracies:
        raise ValueError("fidelity: the source yielded no samples")
    result = cm.compute()
    acc = np.asarray(accuracies)
    order = np.argsort(np.nan_to_num(acc, nan=np.inf))[:worst]
    result.update({
        "sample_accuracy_mean": float(np.nanmean(acc)),
        "sample_accuracy_p10": float(np.nanpercentile(acc, 10)),
        "worst_samples": [{"id": ids[j], "pixel_accuracy": float(acc[j])} for j in order],
    })
    return result
