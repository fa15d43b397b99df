"""Layout generators (dcgan, style), the layout critic, straight-through one-hot and EMA."""

from __future__ import annotations

import pytest
import torch

from synthdata.core.recipe import LayoutStageConfig
from synthdata.models import (
    EMA,
    LAYOUT_GENERATORS,
    base_grid,
    build_layout_critic,
    build_layout_generator,
    class_index,
    straight_through_onehot,
)

C = 5


def tiny(arch: str = "dcgan", upsample: str = "nearest") -> LayoutStageConfig:
    return LayoutStageConfig(arch=arch, z_dim=8, ngf=4, ndf=4, upsample=upsample)


@pytest.mark.parametrize("arch,upsample", [("dcgan", "nearest"), ("dcgan", "transposed"), ("style", "nearest")])
@pytest.mark.parametrize("height,width", [(32, 64), (64, 128)])
def test_layout_generator_and_critic_shapes(arch, upsample, height, width):
    cfg = tiny(arch, upsample)
    gen = build_layout_generator(cfg, num_classes=C, height=height, width=width)
    critic = build_layout_critic(cfg, num_classes=C, height=height, width=width)
    logits = gen(torch.randn(2, 8))
    assert logits.shape == (2, C, height, width)
    scores = critic(straight_through_onehot(logits))
    assert scores.shape == (2,)
    assert torch.isfinite(scores).all()


def test_hinge_loss_builds_the_sn_gan_critic():
    """loss=hinge: every conv of the critic spectral-normalised, no norm layers; the WGAN-GP critic
    keeps its layer norm and plain convs."""
    convs = lambda critic: [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]  # noqa: E731
    norms = lambda critic: [m for m in critic.modules() if isinstance(m, torch.nn.GroupNorm)]  # noqa: E731
    sn = build_layout_critic(LayoutStageConfig(ndf=4, loss="hinge"), num_classes=C, height=32, width=64)
    gp = build_layout_critic(LayoutStageConfig(ndf=4), num_classes=C, height=32, width=64)
    assert convs(sn) and all(hasattr(m, "parametrizations") for m in convs(sn)) and not norms(sn)
    assert not any(hasattr(m, "parametrizations") for m in convs(gp)) and norms(gp)
    assert sn(torch.rand(2, C, 32, 64)).shape == (2,)


def test_local_critic_adds_a_20_pixel_patch_critic_and_leaves_the_first_as_it_was():
    """local_critic: a second critic whose patch scores each see 20x20 pixels, its mean added to the
    first's; without it the critic is built as before (same parameters, same initial values)."""
    torch.manual_seed(0)
    plain = build_layout_critic(LayoutStageConfig(ndf=4), num_classes=C, height=64, width=64)
    torch.manual_seed(0)
    both = build_layout_critic(LayoutStageConfig(ndf=4, local_critic=True), num_classes=C, height=64, width=64)
    assert plain.local is None and not any(k.startswith("local.") for k in plain.state_dict())
    for key, value in plain.state_dict().items():  # the first critic: the same draws, local or not
        torch.testing.assert_close(both.state_dict()[key], value)
    x = torch.rand(2, C, 64, 64)
    torch.testing.assert_close(both(x), plain(x) + both.local(x).mean(dim=(1, 2, 3)))
    # one local patch score depends on a 20x20 window of the input, the first critic's on far more
    # (seen without norm layers, whose statistics span the map: the SN-GAN critic of loss=hinge)
    both = build_layout_critic(LayoutStageConfig(ndf=4, local_critic=True, loss="hinge"), num_classes=C,
                               height=64, width=64)
    x.requires_grad_(True)
    patches = both.local(x)
    assert patches.shape[-2:] == (16, 16)
    (grad,) = torch.autograd.grad(patches[0, 0, 8, 8], x)
    rows, cols = torch.nonzero(grad[0].abs().sum(0)).unbind(1)
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 == 20
    (grad,) = torch.autograd.grad(both.net(x)[0, 0, 2, 2], x)
    rows, _ = torch.nonzero(grad[0].abs().sum(0)).unbind(1)
    assert rows.max() - rows.min() + 1 > 40


@pytest.mark.parametrize("arch", ["dcgan", "style"])
def test_every_parameter_gets_a_gradient(arch):
    # DDP (find_unused_parameters=False) fails on parameters that forward never uses.
    cfg = tiny(arch)
    cfg.local_critic = True  # both critics
    gen = build_layout_generator(cfg, num_classes=C, height=32, width=64)
    critic = build_layout_critic(cfg, num_classes=C, height=32, width=64)
    critic(straight_through_onehot(gen(torch.randn(2, 8)))).sum().backward()
    for module in (gen, critic):
        missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, missing


@pytest.mark.parametrize("arch", ["dcgan", "style"])
def test_bf16_autocast_and_channels_last(arch):
    cfg = tiny(arch)
    gen = build_layout_generator(cfg, num_classes=C, height=32, width=64).to(memory_format=torch.channels_last)
    critic = build_layout_critic(cfg, num_classes=C, height=32, width=64).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = critic(straight_through_onehot(gen(torch.randn(2, 8))))
    scores.float().sum().backward()
    assert torch.isfinite(scores.float()).all()
    assert all(p.grad is not None for p in gen.parameters())


def test_style_generator_eval_is_deterministic_given_z():
    gen = build_layout_generator(tiny("style"), num_classes=C, height=32, width=64).eval()
    z = torch.randn(3, 8)
    with torch.no_grad():
        # Per-layer noise weights start at 0; make them matter.
        for name, p in gen.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.5)
        a, b = gen(z), gen(z)
        single = gen(z[1:2])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[1:2], single, atol=1e-4, rtol=1e-4)
    gen.train()
    with torch.no_grad():
        assert not torch.allclose(gen(z), gen(z))  # fresh noise while training


def test_straight_through_is_exactly_onehot_with_soft_gradients():
    logits = torch.randn(2, C, 4, 6, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    y = straight_through_onehot(logits, tau=0.5, generator=gen)
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(y.detach().sum(dim=1), torch.ones(2, 4, 6))
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_straight_through_follows_confident_logits_and_seed():
    logits = torch.full((1, C, 3, 3), -30.0)
    logits[:, 2] = 30.0
    assert torch.equal(straight_through_onehot(logits).argmax(1), torch.full((1, 3, 3), 2))
    random_logits = torch.randn(2, C, 8, 8)
    a = straight_through_onehot(random_logits, generator=torch.Generator().manual_seed(3))
    b = straight_through_onehot(random_logits, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    soft = straight_through_onehot(random_logits, hard=False)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(2, 8, 8))
    assert ((soft > 0) & (soft < 1)).any()
    with pytest.raises(ValueError, match="tau"):
        straight_through_onehot(random_logits, tau=0.0)


def test_base_grid_and_unreachable_resolution():
    assert base_grid(32, 64) == (4, 8, 3)
    assert base_grid(64, 128) == (4, 8, 4)
    assert base_grid(48, 64) == (6, 8, 3)
    with pytest.raises(ValueError, match=r"180x240.*Nearest valid sizes: .*192x256"):
        build_layout_generator(tiny(), num_classes=C, height=180, width=240)
    with pytest.raises(ValueError, match="too small"):
        base_grid(2, 64)


def test_unknown_arch_lists_valid_names():
    with pytest.raises(ValueError, match="unknown layout generator arch 'gan'.*dcgan, style"):
        build_layout_generator(tiny("gan"), num_classes=C, height=32, width=64)
    with pytest.raises(ValueError, match="upsample mode 'bilinear'"):
        build_layout_generator(tiny("dcgan", "bilinear"), num_classes=C, height=32, width=64)
    assert set(LAYOUT_GENERATORS) == {"dcgan", "style"}


def test_ema_tracks_model():
    gen = build_layout_generator(tiny(), num_classes=C, height=32, width=64)
    ema = EMA(gen, decay=0.5)
    start = {k: v.clone() for k, v in ema.module.named_parameters()}
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(1.0)
    ema.update(gen)
    for name, p in ema.module.named_parameters():
        torch.testing.assert_close(p, start[name] + 0.5)  # halfway between old and new
    assert not any(p.requires_grad for p in ema.module.parameters())
    ema.decay = 0.0  # decay 0: the average is the model itself, buffers included
    gen(torch.randn(4, 8))  # moves batch-norm statistics
    ema.update(gen)
    for (name, a), b in zip(ema.state_dict().items(), gen.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    restored = EMA(build_layout_generator(tiny(), num_classes=C, height=32, width=64), decay=0.9)
    restored.load_state_dict(ema.state_dict())
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(restored.module(z), ema.module(z))
    with pytest.raises(ValueError, match="decay"):
        EMA(gen, decay=1.5)


def test_ema_decay_warms_up_with_the_step():
    gen = build_layout_generator(tiny(), num_classes=C, height=32, width=64)
    ema = EMA(gen, decay=0.999)
    start = {k: v.clone() for k, v in ema.module.named_parameters()}
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(1.0)
    ema.update(gen, step=0)  # decay min(0.999, 1/10): 90% of the way to the model
    for name, p in ema.module.named_parameters():
        torch.testing.assert_close(p, start[name] + 0.9)
    ema.update(gen, step=10_000)  # late in training the configured decay holds
    for name, p in ema.module.named_parameters():
        torch.testing.assert_close(p, start[name] + 0.9 + 0.1 * 0.001)


def test_base_grid_allows_one_doubling_fewer():
    """144x192 (CamVid at the studies' size) starts from a 9x12 grid; sizes the old rule reached keep their k."""
    assert base_grid(144, 192) == (9, 12, 4)
    assert base_grid(128, 192) == (4, 6, 5) and base_grid(192, 256) == (6, 8, 5)
    gen = build_layout_generator(tiny(), num_classes=C, height=144, width=192)
    assert gen(torch.randn(2, gen.z_dim)).shape == (2, C, 144, 192)


def test_ema_update_is_the_per_tensor_lerp_exactly():
    """The fused (foreach) update gives bit for bit what a lerp of each tensor gives."""
    gen = build_layout_generator(tiny(), num_classes=C, height=32, width=64)
    ema = EMA(gen, decay=0.9)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(torch.randn_like(p))
    expected = {name: torch.lerp(p, dict(gen.named_parameters())[name].detach(), 0.1)
                for name, p in ema.module.named_parameters()}
    ema.update(gen)
    for name, p in ema.module.named_parameters():
        assert torch.equal(p, expected[name]), name


def test_class_index_is_argmax_over_classes_first_maximum_on_ties():
    scores = torch.randn(2, 5, 7, 9)
    assert torch.equal(class_index(scores), scores.argmax(1))
    ties = torch.randint(0, 2, (2, 5, 7, 9)).float()  # many equal maxima
    assert torch.equal(class_index(ties), ties.argmax(1))
    assert torch.equal(class_index(scores.to(torch.bfloat16)), scores.to(torch.bfloat16).argmax(1))
