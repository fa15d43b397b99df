"""GAN losses, feature matching, gradient penalty, masked L1, and short optimisation runs."""

from __future__ import annotations

import math

import pytest
import torch

from synthdata.core.recipe import LayoutStageConfig, SpadeStageConfig
from synthdata.models import (
    build_conditional_discriminator,
    build_conditional_generator,
    build_layout_critic,
    build_layout_generator,
    diff_augment,
    straight_through_onehot,
)
from synthdata.models.losses import (
    class_presence_loss,
    class_set_loss,
    feature_matching_loss,
    gradient_penalty,
    hinge_d_loss,
    hinge_g_loss,
    l1_loss,
    nonsaturating_d_loss,
    nonsaturating_g_loss,
    object_weights,
    presence_divergence,
    weighted_mean,
    wgan_d_loss,
    wgan_g_loss,
)


def test_hinge_wgan_and_nonsaturating_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.25 + 0.5)  # relu(1-r) + relu(1+f)
    assert hinge_g_loss(fake).item() == pytest.approx(1.0)
    assert wgan_d_loss(real, fake).item() == pytest.approx(-1.0 - 1.25)
    assert wgan_g_loss(fake).item() == pytest.approx(1.0)
    sp = torch.nn.functional.softplus
    assert nonsaturating_d_loss(real, fake).item() == pytest.approx((sp(-real).mean() + sp(fake).mean()).item())
    assert nonsaturating_g_loss(fake).item() == pytest.approx(sp(-fake).mean().item())


def test_losses_take_multiscale_outputs():
    # list (scales) of lists (features); only the last map of each scale is a prediction
    scales = [[torch.randn(2, 3, 4, 4), torch.full((2, 1, 2, 2), 3.0)], [torch.full((2, 1, 1, 1), -1.0)]]
    assert hinge_g_loss(scales).item() == pytest.approx((-3.0 + 1.0) / 2)
    assert hinge_d_loss(scales, scales).item() == pytest.approx((0.0 + 2.0) / 2 + (4.0 + 0.0) / 2)


def test_feature_matching():
    real = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 2, 2)]]
    fake = [[torch.ones(1, 2, 4, 4, requires_grad=True), torch.full((1, 1, 2, 2), 9.0)]]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1.0)  # prediction maps are excluded
    loss.backward()
    assert fake[0][0].grad is not None
    assert feature_matching_loss(fake, fake).item() == 0.0
    with pytest.raises(ValueError, match="scales"):
        feature_matching_loss(real, fake + fake)


def test_gradient_penalty_of_linear_critics():
    real, fake = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    w = torch.randn(3, 5, 5)
    unit = w / w.norm()
    assert gradient_penalty(lambda x: (x * unit).sum(dim=(1, 2, 3)), real, fake).item() == pytest.approx(0.0, abs=1e-6)
    # gradient norm 3 everywhere: (3 - 1)^2 = 4
    assert gradient_penalty(lambda x: (x * 3 * unit).sum(dim=(1, 2, 3)), real, fake).item() == pytest.approx(4.0, rel=1e-5)
    critic = build_layout_critic(LayoutStageConfig(ndf=4), num_classes=3, height=32, width=32)
    gp = gradient_penalty(critic, torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    gp.backward()  # penalty is differentiable w.r.t. the critic weights (double backward)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters() if p.dim() == 4)


def test_l1_loss_with_mask():
    pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 2.0], [3.0, 100.0]]]])
    assert l1_loss(pred, target).item() == pytest.approx(26.5)
    mask = torch.tensor([[[[True, True], [True, False]]]])  # depth unknown at the last pixel
    assert l1_loss(pred, target, mask).item() == pytest.approx(2.0)
    empty = l1_loss(pred.requires_grad_(), target, torch.zeros_like(mask))
    assert empty.item() == 0.0 and empty.requires_grad


def _changed(before: dict, module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[n], p) for n, p in module.named_parameters())


def test_spade_training_steps_change_weights_and_stay_finite():
    torch.manual_seed(0)
    cfg = SpadeStageConfig(ngf=4, ndf=4, z_dim=4, num_discriminators=2)
    gen = build_conditional_generator(cfg, cond_channels=3, out_channels=1, height=32, width=32)
    disc = build_conditional_discriminator(cfg, in_channels=4)
    opt_g = torch.optim.Adam(gen.parameters(), 1e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), 1e-3, betas=(0.0, 0.99))
    cond = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 32, 32)), 3).permute(0, 3, 1, 2).float()
    target = torch.rand(2, 1, 32, 32) * 2 - 1
    mask = torch.rand(2, 1, 32, 32) > 0.2
    g0 = {n: p.detach().clone() for n, p in gen.named_parameters()}
    d0 = {n: p.detach().clone() for n, p in disc.named_parameters()}
    for _ in range(3):
        fake = gen(cond, torch.randn(2, 4))
        real_in = diff_augment(torch.cat([cond, target], 1))
        d_loss = hinge_d_loss(disc(real_in), disc(diff_augment(torch.cat([cond, fake.detach()], 1))))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        fake_feats, real_feats = disc(torch.cat([cond, fake], 1)), disc(torch.cat([cond, target], 1))
        g_loss = hinge_g_loss(fake_feats) + 10 * feature_matching_loss(real_feats, fake_feats) + 10 * l1_loss(fake, target, mask)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert _changed(g0, gen) and _changed(d0, disc)


def test_wgan_gp_layout_steps_change_weights_and_stay_finite():
    torch.manual_seed(0)
    cfg = LayoutStageConfig(z_dim=8, ngf=4, ndf=4)
    gen = build_layout_generator(cfg, num_classes=3, height=32, width=32)
    critic = build_layout_critic(cfg, num_classes=3, height=32, width=32)
    opt_g = torch.optim.Adam(gen.parameters(), 1e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(critic.parameters(), 1e-3, betas=(0.0, 0.99))
    real = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 32, 32)), 3).permute(0, 3, 1, 2).float()
    g0 = {n: p.detach().clone() for n, p in gen.named_parameters()}
    for _ in range(3):
        fake = straight_through_onehot(gen(torch.randn(2, 8)))
        d_loss = wgan_d_loss(critic(real), critic(fake.detach())) + 10 * gradient_penalty(critic, real, fake)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = wgan_g_loss(critic(straight_through_onehot(gen(torch.randn(2, 8)))))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert _changed(g0, gen)


def test_class_presence_loss_pulls_a_dropped_class_back():
    """Real layouts hold classes 0, 1 and a 5x5 object of class 2; a generator that never draws
    class 2 pays its presence rate (1.0) and gets a gradient that raises class 2's logits."""
    real = torch.zeros(4, 3, 16, 16)
    real[:, 0, :8], real[:, 1, 8:] = 1, 1
    real[:, :, 2:7, 2:7] = 0
    real[:, 2, 2:7, 2:7] = 1
    dropped = torch.zeros(4, 3, 16, 16, requires_grad=True)
    with torch.no_grad():
        dropped[:, 0, :8] = 20
        dropped[:, 1, 8:] = 20
    loss = class_presence_loss(dropped, real)
    assert loss.item() == pytest.approx(1.0, abs=1e-3)
    loss.backward()
    assert dropped.grad[:, 2].min() < 0  # raising class 2 lowers the loss
    perfect = (real * 40 - 20).requires_grad_(True)
    assert class_presence_loss(perfect, real).item() == pytest.approx(0.0, abs=1e-3)
    # a class present in half the real layouts is matched by drawing it in half the generated ones
    half = real.clone()
    half[2:, 2], half[2:, 0, 2:7, 2:7] = 0, 1
    assert class_presence_loss(perfect, half).item() == pytest.approx(0.5, abs=1e-3)


def test_class_set_loss_holds_each_layout_to_its_own_set():
    """Per layout, not per batch: a generator drawing class 2 in the wrong half of the batch matches
    the batch's presence rate (the batch term is 0) but pays 1 per layout here, in both directions."""
    logits = torch.full((4, 3, 16, 16), -5.0)  # not saturated: the softmax still passes gradients
    logits[:, 0, :8], logits[:, 1, 8:] = 5, 5
    logits[:2, :, 2:7, 2:7] = -5
    logits[:2, 2, 2:7, 2:7] = 5  # class 2 drawn in layouts 0 and 1
    logits.requires_grad_(True)
    asked = torch.tensor([[1.0, 1, 1], [1, 1, 1], [1, 1, 0], [1, 1, 0]])
    assert class_set_loss(logits, asked).item() == pytest.approx(0.0, abs=1e-2)
    swapped = asked.flip(0)
    real = (swapped[:, :, None, None] * torch.ones(4, 3, 16, 16))  # every asked class present
    assert class_presence_loss(logits, real).item() == pytest.approx(0.0, abs=1e-2)
    loss = class_set_loss(logits, swapped)
    assert loss.item() == pytest.approx(1.0, abs=1e-2)
    loss.backward()
    assert logits.grad[2:, 2].min() < 0 and logits.grad[:2, 2].max() > 0  # pulled in, pushed out


def test_bce_presence_pulls_an_almost_dropped_class_much_harder_than_l1():
    """A class asked for but given ~0.05 probability: L1's logit gradient shrinks with p (1 - p),
    the binary cross-entropy's does not; both are 0 at a match and pull the same way."""
    logits = torch.zeros(2, 3, 8, 8)
    logits[:, 0] = 3.0  # class 0 everywhere; classes 1 and 2 at ~0.05
    asked = torch.tensor([[1.0, 0, 1], [1, 0, 1]])
    grads = {}
    for form in ("l1", "bce"):
        x = logits.clone().requires_grad_(True)
        class_set_loss(x, asked, form=form).backward()
        assert x.grad[:, 2].min() < 0 and x.grad[:, 1].max() > 0  # pulled in, pushed out
        grads[form] = x.grad[:, 2].abs().sum()
    assert grads["bce"] > 10 * grads["l1"]
    p = torch.tensor([0.0, 0.3, 1.0])
    assert presence_divergence(p, p, "bce").abs().max() < 1e-4  # no floor: 0 at a match, 0/1 included
    assert presence_divergence(torch.tensor([0.5]), torch.tensor([1.0]), "bce").item() == pytest.approx(math.log(2))
    assert torch.isfinite(presence_divergence(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]), "bce")).all()
    real = torch.zeros(2, 3, 8, 8)
    real[:, 0] = 1
    assert class_presence_loss(logits, real, form="bce") > class_presence_loss(logits * 5, real, form="bce")
    with pytest.raises(ValueError, match="unknown presence form"):
        presence_divergence(p, p, "l2")


def test_object_weights_give_the_classes_their_share_and_patch_maps_average_them():
    layout = torch.zeros(2, 8, 8, dtype=torch.long)
    layout[0, :2, :2] = 1  # 4 of 128 pixels
    onehot = torch.nn.functional.one_hot(layout, 3).permute(0, 3, 1, 2).float()
    w = object_weights(onehot, [1, 2], 0.5)
    assert w.shape == (2, 1, 8, 8)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    torch.testing.assert_close(w[0, 0, :2, :2].sum() / w.sum(), torch.tensor(0.5))
    assert torch.equal(object_weights(onehot * 0, [1], 0.5), torch.ones(2, 1, 8, 8))  # no object pixels: equal weights
    assert torch.equal(object_weights(onehot, [0, 1, 2], 0.3), torch.ones(2, 1, 8, 8))  # nothing else
    x = torch.rand(2, 4, 2, 2)
    torch.testing.assert_close(weighted_mean(x, torch.ones(2, 1, 8, 8)), x.mean())
    only_first_patch = torch.zeros(2, 1, 8, 8)
    only_first_patch[:, :, :4, :4] = 1  # one 2x2 patch of the 2x2 map per sample
    torch.testing.assert_close(weighted_mean(x, only_first_patch), x[:, :, 0, 0].mean())
    assert weighted_mean(x, None) == x.mean()
