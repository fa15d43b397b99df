"""Quality controls: layout filters, stateless class balancing, re-segmentation scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthdata.core.contract import ClassInfo, ConfigError
from synthdata.core.palette import default_palette
from synthdata.core.recipe import ProduceConfig
from synthdata.generation.quality_controls import (
    ClassBalancer,
    LayoutFilter,
    QualityControls,
    build_quality_controls,
    calibration_fractions,
    class_fractions,
    hardness_copies,
    segmenter_scores,
)

C = 4


def stripes(*classes: int, height: int = 4, width: int = 8) -> torch.Tensor:
    """A layout of equal vertical stripes, one per listed class: (H, W) long."""
    cols = torch.tensor(classes).repeat_interleave(width // len(classes))
    return cols.expand(height, width).clone()


def test_class_fractions_skip_ignore_and_sum_to_one():
    layout = stripes(0, 1, 255, 255)
    frac = class_fractions(torch.stack([layout, torch.full((4, 8), 255)]), num_classes=C)
    assert torch.allclose(frac[0], torch.tensor([0.5, 0.5, 0.0, 0.0]))
    assert frac[1].sum() == 0  # nothing labelled


def test_layout_filter_reasons():
    filt = LayoutFilter(C, min_classes=2, max_class_fraction=0.6)
    layouts = torch.stack([stripes(0), stripes(0, 1), stripes(0, 0, 0, 1), torch.full((4, 8), 255)])
    reasons = filt.reasons(class_fractions(layouts, num_classes=C))
    assert reasons == ["min_classes", None, "max_class_fraction", "unlabelled"]


def test_class_balancer_favours_rare_classes_and_moves_toward_target():
    gen = torch.Generator().manual_seed(0)
    # a source where class 3 is rare: most layouts are mostly 0/1
    rows = []
    for _ in range(400):
        w = torch.rand(C, generator=gen) * torch.tensor([4.0, 3.0, 1.0, 0.2])
        rows.append(w / w.sum())
    calib = torch.stack(rows)
    balancer = ClassBalancer(calib, target=None)
    common, rare = torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[0, 0, 0, 1.0]])
    assert balancer.weights(rare)[0] > balancer.weights(common)[0]
    seeds = list(range(400))
    kept = [r is None for r in balancer.reasons(calib, seeds)]
    assert 0 < sum(kept) < len(kept)
    before = calib.mean(0)
    after = calib[torch.tensor(kept)].mean(0)
    uniform = torch.full((C,), 1 / C)
    assert (after - uniform).abs().sum() < (before - uniform).abs().sum()
    # coins depend on the seed only: same answers in another batch order
    again = balancer.reasons(calib.flip(0), seeds[::-1])[::-1]
    assert again == balancer.reasons(calib, seeds)


def test_class_balancer_rejects_bad_target():
    with pytest.raises(ValueError, match="one per class"):
        ClassBalancer(torch.full((3, C), 0.25), target=[1.0, 2.0])


def test_calibration_fractions_do_not_depend_on_batch_size():
    def draw(seeds):
        return torch.stack([stripes(s % C, (s + 1) % C) for s in seeds])

    a = calibration_fractions(draw, list(range(10)), batch_size=3, num_classes=C)
    b = calibration_fractions(draw, list(range(10)), batch_size=10, num_classes=C)
    assert a.shape == (10, C) and torch.equal(a, b)


class OracleSegmenter(torch.nn.Module):
    """Predicts the class stored in the image's red channel (value / 10), or a constant."""

    def __init__(self, constant: int | None = None):
        super().__init__()
        self.constant = constant

    def forward(self, images):
        labels = (images[:, 0] * 10).round().long().clamp(0, C - 1)
        if self.constant is not None:
            labels = torch.full_like(labels, self.constant)
        return F.one_hot(labels, C).permute(0, 3, 1, 2).float() * 10


def as_images(layouts: torch.Tensor) -> torch.Tensor:
    return (layouts.float() / 10).unsqueeze(1).repeat(1, 3, 1, 1)


def test_segmenter_scores_perfect_and_constant():
    layouts = torch.stack([stripes(0, 1), stripes(2, 3)])
    perfect = segmenter_scores(OracleSegmenter(), as_images(layouts), layouts, num_classes=C)
    assert torch.allclose(perfect["fidelity"], torch.ones(2))
    assert torch.allclose(perfect["hardness"], torch.zeros(2))
    const = segmenter_scores(OracleSegmenter(constant=0), as_images(layouts), layouts, num_classes=C)
    # sample 0: class 0 IoU 0.5, class 1 IoU 0 -> 0.25; sample 1: classes 0, 2, 3 all IoU 0
    assert torch.allclose(const["fidelity"], torch.tensor([0.25, 0.0]))
    assert torch.allclose(const["pixel_accuracy"], torch.tensor([0.5, 0.0]))
    assert (const["loss"] > perfect["loss"]).all()


def test_segmenter_scores_ignore_unlabelled_pixels():
    layout = stripes(1, 255)
    image = as_images(stripes(1, 0)[None])  # wrong only where the label is ignore
    s = segmenter_scores(OracleSegmenter(), image, layout[None], num_classes=C)
    assert s["fidelity"].item() == pytest.approx(1.0) and s["hardness"].item() == pytest.approx(0.0)


def test_hardness_copies():
    assert hardness_copies(torch.tensor([0.0, 0.3, 0.5, 1.0]), 3) == [1, 1, 2, 3]
    assert hardness_copies(torch.tensor([1.0]), 1) == [1]


def test_quality_controls_count_rejections_and_score():
    controls = QualityControls(
        num_classes=C,
        layout_filter=LayoutFilter(C, min_classes=2),
        fidelity_segmenter=OracleSegmenter(constant=0),
        fidelity_threshold=0.2,
        hardness_segmenter=OracleSegmenter(constant=0),
        max_copies=2,
    )
    layouts = torch.stack([stripes(0, 1), stripes(2), stripes(2, 3)])
    assert controls.check_layouts(layouts, [0, 1, 2]) == [None, "min_classes", None]
    reasons, scores = controls.check_samples(as_images(layouts), layouts)
    assert reasons == [None, "fidelity", "fidelity"] and scores[0]["fidelity"] == pytest.approx(0.25)
    copies, hard = controls.copies(as_images(layouts), layouts)
    assert copies == [2, 2, 2] and hard[0]["hardness"] == pytest.approx(0.5)
    assert controls.rejected == {"min_classes": 1, "fidelity": 2}


def classes() -> ClassInfo:
    return ClassInfo(tuple("abcd"), default_palette(C))


def test_build_quality_controls_validates_settings():
    draw = lambda seeds: torch.stack([stripes(s % C) for s in seeds])  # noqa: E731
    with pytest.raises(ConfigError, match="min_classes"):
        build_quality_controls(ProduceConfig(min_classes=9), classes=classes(), draw=draw, seed=0)
    with pytest.raises(ConfigError, match="fidelity_segmenter"):
        build_quality_controls(ProduceConfig(fidelity_threshold=0.5), classes=classes(), draw=draw, seed=0)
    with pytest.raises(ConfigError, match="target_distribution"):
        build_quality_controls(
            ProduceConfig(class_balance=True, target_distribution=[1.0]), classes=classes(), draw=draw, seed=0
        )
    built = build_quality_controls(
        ProduceConfig(class_balance=True, balance_calibration=8, batch_size=3), classes=classes(), draw=draw, seed=0
    )
    assert built.balancer is not None and built.fidelity_segmenter is None
    assert np.isclose(float(built.balancer.source_distribution.sum()), 1.0)
