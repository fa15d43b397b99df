"""Quality controls for synthetic samples: layout rejection filters, class balancing, the
re-segmentation fidelity filter and hardness-driven oversampling.

Every decision depends only on the sample (and its seed), never on what other processes or
earlier batches saw, so production stays identical on 1 or 64 processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torch.nn.functional as F

from synthdata.core.contract import ConfigError
from synthdata.core.seeding import derive_seed, numpy_rng
from synthdata.models.segmenters import load_segmenter

if TYPE_CHECKING:
    from synthdata.core.contract import ClassInfo
    from synthdata.core.recipe import ProduceConfig

BALANCE_TAG = 0xBA1A  # seed domain of the class-balancing coin flips


def class_fractions(layouts: torch.Tensor, *, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Share of labelled pixels per class: `(B, H, W)` long -> `(B, C)` float (rows sum to 1,
    or 0 for a layout with no labelled pixel)."""
    flat = layouts.reshape(len(layouts), -1).long()
    valid = (flat != ignore_index) & (flat >= 0) & (flat < num_classes)
    counts = torch.zeros(len(flat), num_classes, dtype=torch.float64, device=flat.device)
    counts.scatter_add_(1, torch.where(valid, flat, 0), valid.double())
    total = counts.sum(1, keepdim=True)
    return (counts / total.clamp(min=1)).float()


@dataclass(frozen=True)
class LayoutFilter:
    """Rejects degenerate layouts: no labelled pixel, fewer than `min_classes` classes, or one
    class covering more than `max_class_fraction` of the labelled pixels (0 / 1.0 turn off)."""

    num_classes: int
    ignore_index: int = 255
    min_classes: int = 0
    max_class_fraction: float = 1.0

    def reasons(self, fractions: torch.Tensor) -> list[str | None]:
        """`(B, C)` class fractions -> a rejection reason per layout (None = accepted)."""
        out: list[str | None] = []
        for row in fractions.tolist():
            present = sum(f > 0 for f in row)
            if present == 0:
                out.append("unlabelled")
            elif present < self.min_classes:
                out.append("min_classes")
            elif self.max_class_fraction < 1.0 and max(row) > self.max_class_fraction:
                out.append("max_class_fraction")
            else:
                out.append(None)
        return out


class ClassBalancer:
    """Stateless rejection sampling that tilts the class distribution toward a target.

    A layout with class fractions `f` gets the weight `w = sum_c f_c * t_c / q_c`, where `q` is
    the source's mean class share measured on a fixed calibration set and `t` the target
    distribution; it is kept with probability `min(1, w / w_ref)`, `w_ref` being the
    `quantile` of the calibration weights. Layouts rich in under-represented classes survive,
    common ones are thinned. The coin flip for a sample comes from its own seed, so the result
    does not depend on batch order or process count. This tilts the marginal toward `t`; it
    does not match it exactly (a layout's classes come together).
    """

    def __init__(self, calibration: torch.Tensor, *, target: list[float] | None = None, quantile: float = 0.9):
        """`calibration`: `(N, C)` class fractions of layouts drawn from the source."""
        calibration = calibration.double().cpu()
        num_classes = calibration.shape[1]
        t = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
        if target is not None:
            if len(target) != num_classes or min(target) < 0 or sum(target) <= 0:
                raise ValueError(
                    f"produce.target_distribution must list {num_classes} non-negative weights "
                    f"(one per class), got {target}"
                )
            t = torch.tensor(target, dtype=torch.float64) / sum(target)
        self.source_distribution = calibration.mean(0)
        self.target_distribution = t
        # A class the source never drew cannot be favoured; a floor keeps the ratio finite.
        self.ratio = t / self.source_distribution.clamp(min=1e-3)
        weights = calibration @ self.ratio
        self.reference = float(torch.quantile(weights, quantile).clamp(min=1e-12))

    def weights(self, fractions: torch.Tensor) -> torch.Tensor:
        """`(B, C)` -> `(B,)` keep probabilities in [0, 1]."""
        w = fractions.double().cpu() @ self.ratio
        return (w / self.reference).clamp(max=1.0).float()

    def reasons(self, fractions: torch.Tensor, seeds: list[int]) -> list[str | None]:
        keep = self.weights(fractions).tolist()
        coins = [numpy_rng(seed, BALANCE_TAG).random() for seed in seeds]
        return [None if u < p else "class_balance" for u, p in zip(coins, keep)]


def calibration_fractions(
    draw: Callable[[list[int]], torch.Tensor],
    seeds: list[int],
    *,
    batch_size: int,
    num_classes: int,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Class fractions `(N, C)` of the layouts `draw(seeds)` makes, drawn in fixed batches so
    every process measures exactly the same calibration set."""
    rows = []
    for start in range(0, len(seeds), batch_size):
        layouts = draw(seeds[start : start + batch_size])
        rows.append(class_fractions(layouts, num_classes=num_classes, ignore_index=ignore_index).cpu())
    return torch.cat(rows) if rows else torch.zeros(0, num_classes)


def segmenter_scores(
    segmenter: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    layouts: torch.Tensor,
    *,
    num_classes: int,
    ignore_index: int = 255,
) -> dict[str, torch.Tensor]:
    """Re-segment generated images and compare with the layouts they were made from.

    `images` `(B, 3, H, W)` in [0, 1], `layouts` `(B, H, W)` long. Returns `(B,)` tensors:
    `fidelity` (per-sample mean IoU over the classes in the layout or the prediction),
    `pixel_accuracy`, `loss` (mean cross-entropy over labelled pixels) and
    `hardness = 1 - pixel_accuracy`. Fidelity follows the re-segmentation check of
    semantic-image-synthesis papers (SPADE, Park et al. 2019); hardness is the segmenter's error.
    """
    with torch.inference_mode():
        logits = segmenter(images).float()
    layouts = layouts.to(logits.device).long()
    valid = (layouts != ignore_index) & (layouts >= 0) & (layouts < num_classes)
    target = torch.where(valid, layouts, 0)
    pred = logits.argmax(1)
    ce = F.cross_entropy(logits, target, reduction="none")
    n_valid = valid.flatten(1).sum(1).clamp(min=1)
    loss = (ce * valid).flatten(1).sum(1) / n_valid
    accuracy = ((pred == target) & valid).flatten(1).sum(1) / n_valid
    classes = torch.arange(num_classes, device=logits.device).view(1, -1, 1, 1)
    p_hot = (pred.unsqueeze(1) == classes) & valid.unsqueeze(1)
    t_hot = (target.unsqueeze(1) == classes) & valid.unsqueeze(1)
    inter = (p_hot & t_hot).flatten(2).sum(2).float()
    union = (p_hot | t_hot).flatten(2).sum(2).float()
    present = union > 0
    fidelity = (inter / union.clamp(min=1) * present).sum(1) / present.sum(1).clamp(min=1)
    return {
        "fidelity": fidelity.cpu(),
        "pixel_accuracy": accuracy.float().cpu(),
        "loss": loss.float().cpu(),
        "hardness": (1 - accuracy.float()).cpu(),
    }


def hardness_copies(hardness: torch.Tensor, max_copies: int) -> list[int]:
    """How many images to make of each layout: `1 + floor(hardness * max_copies)`, at most
    `max_copies` (hard layouts get extra image variants, as in hard-example mining)."""
    if max_copies <= 1:
        return [1] * len(hardness)
    h = hardness.clamp(0, 1).tolist()
    return [min(max_copies, 1 + int(np.floor(x * max_copies))) for x in h]


@dataclass
class QualityControls:
    """The controls a production run applies; each is optional.

    `layout_filter` and `balancer` judge layouts before images are made; `fidelity_segmenter`
    (with `fidelity_threshold`) judges finished samples; `hardness_segmenter` decides how many
    image variants a layout gets (up to `max_copies`).
    """

    num_classes: int
    ignore_index: int = 255
    layout_filter: LayoutFilter | None = None
    balancer: ClassBalancer | None = None
    fidelity_segmenter: Callable[[torch.Tensor], torch.Tensor] | None = None
    fidelity_threshold: float = 0.0
    hardness_segmenter: Callable[[torch.Tensor], torch.Tensor] | None = None
    max_copies: int = 1
    rejected: dict[str, int] = field(default_factory=dict)

    def fractions(self, layouts: torch.Tensor) -> torch.Tensor:
        return class_fractions(layouts, num_classes=self.num_classes, ignore_index=self.ignore_index)

    def check_layouts(self, layouts: torch.Tensor, seeds: list[int]) -> list[str | None]:
        """`(B, H, W)` layouts and their seeds -> a rejection reason per layout (None = keep)."""
        fractions = self.fractions(layouts)
        filt = self.layout_filter or LayoutFilter(self.num_classes, self.ignore_index)
        reasons = filt.reasons(fractions)
        if self.balancer is not None:
            balance = self.balancer.reasons(fractions, seeds)
            reasons = [r if r is not None else b for r, b in zip(reasons, balance)]
        self._count(reasons)
        return reasons

    def check_samples(self, images: torch.Tensor, layouts: torch.Tensor) -> tuple[list[str | None], list[dict]]:
        """Fidelity filter on finished samples: reasons and per-sample scores for `meta`."""
        scores: list[dict] = [{} for _ in range(len(images))]
        if self.fidelity_segmenter is None:
            return [None] * len(images), scores
        s = self._scores(self.fidelity_segmenter, images, layouts)
        reasons: list[str | None] = []
        for i, fid in enumerate(s["fidelity"].tolist()):
            scores[i]["fidelity"] = round(fid, 6)
            reasons.append("fidelity" if fid < self.fidelity_threshold else None)
        self._count(reasons)
        return reasons, scores

    def copies(self, images: torch.Tensor, layouts: torch.Tensor) -> tuple[list[int], list[dict]]:
        """Number of image variants per accepted sample, and the hardness scores for `meta`."""
        if self.hardness_segmenter is None:
            return [1] * len(images), [{} for _ in range(len(images))]
        s = self._scores(self.hardness_segmenter, images, layouts)
        copies = hardness_copies(s["hardness"], self.max_copies)
        scores = [
            {"hardness": round(h, 6), "segmenter_loss": round(loss, 6)}
            for h, loss in zip(s["hardness"].tolist(), s["loss"].tolist())
        ]
        return copies, scores

    def _scores(self, segmenter, images, layouts) -> dict[str, torch.Tensor]:
        return segmenter_scores(
            segmenter, images, layouts, num_classes=self.num_classes, ignore_index=self.ignore_index
        )

    def _count(self, reasons: list[str | None]) -> None:
        for r in reasons:
            if r is not None:
                self.rejected[r] = self.rejected.get(r, 0) + 1


CALIBRATION_TAG = 0xCA1B  # seed domain of the class-balancing calibration layouts


def build_quality_controls(
    cfg: "ProduceConfig",
    *,
    classes: "ClassInfo",
    draw: Callable[[list[int]], torch.Tensor],
    seed: int,
    device: torch.device | str = "cpu",
) -> QualityControls:
    """The controls `cfg` (the recipe's `produce` section) asks for. `draw(seeds)` makes layouts
    from the production source; it feeds the class-balancing calibration set."""

    if not 0.0 < cfg.max_class_fraction <= 1.0:
        raise ConfigError(f"produce.max_class_fraction must lie in (0, 1], got {cfg.max_class_fraction}")
    if cfg.min_classes > classes.num_classes:
        raise ConfigError(
            f"produce.min_classes={cfg.min_classes} exceeds the {classes.num_classes} classes of the recipe"
        )
    if cfg.hardness_max_copies < 1:
        raise ConfigError(f"produce.hardness_max_copies must be >= 1, got {cfg.hardness_max_copies}")
    if cfg.fidelity_threshold > 0 and cfg.fidelity_segmenter is None:
        raise ConfigError("produce.fidelity_threshold needs produce.fidelity_segmenter (a segmenter checkpoint)")
    controls = QualityControls(
        num_classes=classes.num_classes,
        ignore_index=classes.ignore_index,
        layout_filter=LayoutFilter(
            classes.num_classes, classes.ignore_index, cfg.min_classes, cfg.max_class_fraction
        ),
        fidelity_threshold=cfg.fidelity_threshold,
        max_copies=cfg.hardness_max_copies,
    )
    if cfg.class_balance:
        seeds = [derive_seed(seed, CALIBRATION_TAG, i) for i in range(cfg.balance_calibration)]
        fractions = calibration_fractions(
            draw, seeds, batch_size=cfg.batch_size, num_classes=classes.num_classes,
            ignore_index=classes.ignore_index,
        )
        try:
            controls.balancer = ClassBalancer(fractions, target=cfg.target_distribution)
        except ValueError as e:
            raise ConfigError(str(e)) from e
    loaded: dict[str, torch.nn.Module] = {}
    for attr, path in (("fidelity_segmenter", cfg.fidelity_segmenter), ("hardness_segmenter", cfg.hardness_segmenter)):
        if path is None:
            continue
        if path not in loaded:

            loaded[path] = load_segmenter(path, expected=classes, device=device)[0].eval()
        setattr(controls, attr, loaded[path])
    return controls
