"""pix2pix U-Net generator and PatchGAN discriminator, alone and as the `pix2pix` stage arch."""

from __future__ import annotations

import pytest
import torch

from synthdata.core.recipe import SpadeStageConfig
from synthdata.models import build_conditional_discriminator, build_conditional_generator
from synthdata.models.pix2pix import PatchGANDiscriminator, UNetGenerator


@pytest.mark.parametrize("num_downs", [1, 3, 5])
def test_unet_shapes_and_range(num_downs):
    net = UNetGenerator(5, 3, ngf=4, num_downs=num_downs)
    out = net(torch.randn(2, 5, 32, 64))
    assert out.shape == (2, 3, 32, 64)
    assert out.abs().max() <= 1.0


def test_unet_skip_connections_carry_fine_detail_and_all_parameters_train():
    net = UNetGenerator(1, 1, ngf=4, num_downs=3, dropout=False).eval()
    x = torch.zeros(1, 1, 32, 64)
    y = x.clone()
    y[..., 10, 10] = 1.0  # one pixel: only the outermost skip can place it at full resolution
    with torch.no_grad():
        diff = (net(y) - net(x)).abs()[0, 0]
    assert diff[8:13, 8:13].sum() > diff[20:, 40:].sum()
    net.train()
    net(torch.randn(2, 1, 32, 64)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_unet_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="multiples of 16"):
        UNetGenerator(3, 3, ngf=4, num_downs=4)(torch.randn(1, 3, 40, 64))


@pytest.mark.parametrize("n_layers", [2, 3])
def test_patchgan_patch_predictions_and_features(n_layers):
    disc = PatchGANDiscriminator(6, ndf=4, n_layers=n_layers)
    x = torch.randn(2, 6, 32, 64)
    pred = disc(x)
    assert pred.shape[:2] == (2, 1) and pred.shape[2] > 1 and pred.shape[3] > 1
    feats = disc.features(x)
    assert len(feats) == n_layers + 2
    torch.testing.assert_close(feats[-1], pred)


def test_pix2pix_as_conditional_stage_ignores_z():
    cfg = SpadeStageConfig(arch="pix2pix", ngf=4, ndf=4, z_dim=8)
    gen = build_conditional_generator(cfg, cond_channels=5, out_channels=3, height=32, width=64).eval()
    cond = torch.randn(2, 5, 32, 64)
    with torch.no_grad():
        a = gen(cond, torch.randn(2, 8))
        b = gen(cond, None)
    assert a.shape == (2, 3, 32, 64)
    torch.testing.assert_close(a, b)
    feats = build_conditional_discriminator(cfg, in_channels=8)(torch.cat([cond, a], 1))
    assert len(feats) == 1 and feats[0][-1].shape[:2] == (2, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gen(cond.contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 3, 32, 64) and torch.isfinite(out.float()).all()
