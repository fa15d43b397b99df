"""SPADE normalisation, residual blocks, generator and the multi-scale discriminator."""

from __future__ import annotations

import copy

import pytest
import torch

from synthdata.core.recipe import SpadeStageConfig
from synthdata.models import (
    CONDITIONAL_GENERATORS,
    EMA,
    build_conditional_discriminator,
    build_conditional_generator,
)
from synthdata.models.spade import SPADE, SPADEResBlock

C = 4
H, W = 32, 64


def tiny(**kw) -> SpadeStageConfig:
    return SpadeStageConfig(**{"arch": "spade", "ngf": 4, "ndf": 4, "z_dim": 8, **kw})


def onehot(b: int = 2) -> torch.Tensor:
    labels = torch.randint(0, C, (b, H, W))
    return torch.nn.functional.one_hot(labels, C).permute(0, 3, 1, 2).float()


def test_spade_norm_is_modulated_by_the_layout():
    norm = SPADE(6, C, hidden=8)
    x = torch.randn(2, 6, 8, 16)
    cond = onehot()
    out = norm(x, cond)  # cond is resized to the features
    assert out.shape == x.shape
    assert not torch.allclose(out, norm(x, onehot()))
    block = SPADEResBlock(6, 3, C, hidden=8)
    assert block(x, cond).shape == (2, 3, 8, 16)


@pytest.mark.parametrize("cond_channels,out_channels", [(C, 1), (C + 1, 3), (C, 3)])
@pytest.mark.parametrize("z_dim", [8, 0])
def test_spade_generator_shapes(cond_channels, out_channels, z_dim):
    gen = build_conditional_generator(tiny(z_dim=z_dim), cond_channels=cond_channels,
                                      out_channels=out_channels, height=H, width=W)
    cond = torch.cat([onehot(), torch.rand(2, 1, H, W)], 1)[:, :cond_channels]
    z = torch.randn(2, z_dim) if z_dim else None
    out = gen(cond, z)
    assert out.shape == (2, out_channels, H, W)
    assert out.abs().max() <= 1.0  # tanh


def test_spade_generator_uses_z_and_every_parameter():
    gen = build_conditional_generator(tiny(), cond_channels=C + 1, out_channels=3, height=H, width=W)
    cond = torch.cat([onehot(), torch.rand(2, 1, H, W)], 1)
    z = torch.randn(2, 8)
    out = gen(cond, z)
    assert not torch.allclose(out, gen(cond, torch.randn(2, 8)))
    out.sum().backward()
    missing = [n for n, p in gen.named_parameters() if p.grad is None]
    assert not missing, missing
    with pytest.raises(ValueError, match="built for"):
        gen(cond[:, :, :16], z)


def test_multiscale_discriminator_feature_lists():
    disc = build_conditional_discriminator(tiny(num_discriminators=2), in_channels=C + 3)
    feats = disc(torch.randn(2, C + 3, H, W))
    assert len(feats) == 2
    for scale in feats:
        assert len(scale) == 5  # 4 conv layers + the patch prediction
        assert scale[-1].shape[:2] == (2, 1)
        assert all(f.shape[0] == 2 for f in scale)
    assert feats[1][0].shape[-1] < feats[0][0].shape[-1]  # the second scale sees a smaller input
    assert len(build_conditional_discriminator(tiny(num_discriminators=1), in_channels=3)(torch.randn(1, 3, H, W))) == 1


def test_bf16_autocast_channels_last_and_all_discriminator_parameters_used():
    gen = build_conditional_generator(tiny(), cond_channels=C, out_channels=3, height=H, width=W)
    disc = build_conditional_discriminator(tiny(), in_channels=C + 3)
    gen, disc = gen.to(memory_format=torch.channels_last), disc.to(memory_format=torch.channels_last)
    cond = onehot().contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = gen(cond, torch.randn(2, 8))
        feats = disc(torch.cat([cond, fake], 1))
    total = sum(f.float().mean() for scale in feats for f in scale)
    total.backward()
    assert torch.isfinite(total)
    for module in (gen, disc):
        assert all(p.grad is not None for p in module.parameters())


def test_ema_of_spectral_norm_generator():
    gen = build_conditional_generator(tiny(), cond_channels=C, out_channels=1, height=H, width=W)
    ema = EMA(gen, decay=0.0)
    with torch.no_grad():
        for p in gen.parameters():
            p.mul_(1.1)
    ema.update(gen)
    gen.eval()
    cond, z = onehot(), torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(ema.module(cond, z), gen(cond, z))
    assert copy.deepcopy(ema.module)(cond, z).shape == (2, 1, H, W)


def test_unknown_conditional_arch():
    assert set(CONDITIONAL_GENERATORS) == {"spade", "pix2pix"}
    with pytest.raises(ValueError, match="unknown conditional generator arch 'spaed'.*pix2pix, spade"):
        build_conditional_generator(tiny(arch="spaed"), cond_channels=C, out_channels=3, height=H, width=W)
    with pytest.raises(ValueError, match="unknown conditional discriminator arch"):
        build_conditional_discriminator(tiny(arch="spaed"), in_channels=3)
    with pytest.raises(ValueError, match="Nearest valid sizes"):
        build_conditional_generator(tiny(), cond_channels=C, out_channels=3, height=34, width=64)
