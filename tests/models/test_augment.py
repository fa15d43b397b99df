"""DiffAugment: shapes, per-sample parameters shared by all channels, seeding, gradients."""

from __future__ import annotations

import pytest
import torch

from synthdata.models.augment import diff_augment


def same_channels(b: int = 4, c: int = 6) -> torch.Tensor:
    """Every channel of a sample is the same map, so any channel-wise mismatch shows."""
    return torch.rand(b, 1, 16, 32).expand(b, c, 16, 32).clone() + 0.5


@pytest.mark.parametrize("policy", ["translation", "cutout", "translation,cutout", "color,translation,cutout"])
def test_shape_kept_and_identical_across_channels(policy):
    x = same_channels()
    out = diff_augment(x, policy, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    if "color" not in policy:  # colour mixes channels; see the color_channels test
        for c in range(1, x.shape[1]):
            torch.testing.assert_close(out[:, c], out[:, 0])
    assert not torch.equal(out, x)


def test_translation_and_cutout_act_per_sample():
    x = same_channels(b=8)
    out = diff_augment(x, "cutout", generator=torch.Generator().manual_seed(1))
    zeros = (out[:, 0] == 0).flatten(1).float().sum(1)
    assert (zeros > 0).all()  # every sample lost a rectangle (inputs are >= 0.5 everywhere)
    holes = [tuple(torch.nonzero(out[i, 0] == 0)[0].tolist()) for i in range(8)]
    assert len(set(holes)) > 1  # ...at different places


def test_seeded_generator_reproduces_and_gradients_flow():
    x = torch.randn(2, 4, 16, 32, requires_grad=True)
    a = diff_augment(x, "color,translation,cutout", generator=torch.Generator().manual_seed(5))
    b = diff_augment(x, "color,translation,cutout", generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_color_only_on_image_channels():
    layout = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 16, 32)), 3).permute(0, 3, 1, 2).float()
    image = torch.rand(2, 3, 16, 32) * 2 - 1
    out = diff_augment(torch.cat([layout, image], 1), "color", torch.Generator().manual_seed(0), color_channels=(3, 6))
    torch.testing.assert_close(out[:, :3], layout)
    assert not torch.allclose(out[:, 3:], image)


def test_empty_and_unknown_policy():
    x = torch.randn(1, 3, 8, 8)
    assert diff_augment(x, "") is x
    with pytest.raises(ValueError, match="unknown DiffAugment policy.*translation"):
        diff_augment(x, "translate")
