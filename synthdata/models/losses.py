"""GAN and reconstruction losses as pure functions of predictions (no modules, no state).

Discriminator outputs may be a tensor or the multi-scale form `list[list[Tensor]]` of
`MultiscaleDiscriminator` (the last map of each scale is the prediction); losses average scales.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from synthdata.models.layout import class_sets

Pred = torch.Tensor | Sequence[Sequence[torch.Tensor]]


def _predictions(pred: Pred) -> list[torch.Tensor]:
    if isinstance(pred, torch.Tensor):
        return [pred.float()]
    return [scale[-1].float() if isinstance(scale, (list, tuple)) else scale.float() for scale in pred]


def _mean_over_scales(pred: Pred, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    preds = _predictions(pred)
    return sum(fn(p) for p in preds) / len(preds)


def weighted_mean(x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of `x` (B, C, h, w); with `weight` (B, 1, H, W), a pixel-weight map of the full frame, the
    weighted mean, the map area-averaged to x's size (a patch or feature map of the frame)."""
    if weight is None:
        return x.mean()
    w = weight.float()
    if w.shape[-2:] != x.shape[-2:]:
        w = F.adaptive_avg_pool2d(w, x.shape[-2:])
    w = w.expand_as(x)
    return (x.float() * w).sum() / w.sum().clamp_min(1e-12)


def object_weights(onehot: torch.Tensor, class_ids: Sequence[int], share: float) -> torch.Tensor:
    """Pixel weights (B, 1, H, W), mean 1 over the batch, under which the pixels of `class_ids` in the
    one-hot layouts `onehot` (B, C, H, W) carry `share` of the total and the others the rest; a
    batch with none of them (or nothing else) gets equal weights."""
    inside = onehot[:, list(class_ids)].float().sum(1, keepdim=True).clamp_max(1.0)
    p = inside.mean()
    weights = inside * (share / p.clamp_min(1e-12)) + (1 - inside) * ((1 - share) / (1 - p).clamp_min(1e-12))
    return torch.where((p > 0) & (p < 1), weights, torch.ones_like(weights))  # no host sync


def hinge_d_loss(real_pred: Pred, fake_pred: Pred, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Hinge discriminator loss (Lim & Ye 2017; used by SPADE): E[relu(1-D(x))] + E[relu(1+D(G(z)))];
    `weight`: a pixel-weight map the patch terms are averaged under (`weighted_mean`)."""
    return _mean_over_scales(real_pred, lambda p: weighted_mean(F.relu(1 - p), weight)) + _mean_over_scales(
        fake_pred, lambda p: weighted_mean(F.relu(1 + p), weight))


def hinge_g_loss(fake_pred: Pred, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Hinge generator loss: -E[D(G(z))] (`weight`: as for `hinge_d_loss`)."""
    return _mean_over_scales(fake_pred, lambda p: -weighted_mean(p, weight))


def wgan_d_loss(real_score: Pred, fake_score: Pred) -> torch.Tensor:
    """Wasserstein critic loss (Arjovsky et al. 2017): E[D(G(z))] - E[D(x)]."""
    return _mean_over_scales(fake_score, torch.mean) - _mean_over_scales(real_score, torch.mean)


def wgan_g_loss(fake_score: Pred) -> torch.Tensor:
    """Wasserstein generator loss: -E[D(G(z))]."""
    return _mean_over_scales(fake_score, lambda p: -p.mean())


def nonsaturating_d_loss(real_pred: Pred, fake_pred: Pred) -> torch.Tensor:
    """Logistic discriminator loss (Goodfellow et al. 2014): softplus(-D(x)) + softplus(D(G(z)))."""
    return _mean_over_scales(real_pred, lambda p: F.softplus(-p).mean()) + _mean_over_scales(
        fake_pred, lambda p: F.softplus(p).mean()
    )


def nonsaturating_g_loss(fake_pred: Pred) -> torch.Tensor:
    """Non-saturating generator loss: softplus(-D(G(z)))."""
    return _mean_over_scales(fake_pred, lambda p: F.softplus(-p).mean())


def feature_matching_loss(real_feats: Sequence[Sequence[torch.Tensor]],
                          fake_feats: Sequence[Sequence[torch.Tensor]],
                          weight: torch.Tensor | None = None) -> torch.Tensor:
    """Discriminator feature matching (pix2pixHD, Wang et al. 2018; SPADE): L1 between the
    intermediate maps for real and fake inputs (predictions excluded, real ones detached),
    averaged over layers and summed over scales divided by the number of scales; `weight`: a
    pixel-weight map each layer's L1 is averaged under (`weighted_mean`).
    """
    if len(real_feats) != len(fake_feats):
        raise ValueError(f"{len(real_feats)} real scales vs {len(fake_feats)} fake scales")
    total = fake_feats[0][-1].new_zeros((), dtype=torch.float32)
    for real, fake in zip(real_feats, fake_feats):
        layers = list(zip(real[:-1], fake[:-1]))
        if not layers:
            continue
        if weight is None:
            total = total + sum(F.l1_loss(f.float(), r.detach().float()) for r, f in layers) / len(layers)
        else:
            total = total + sum(weighted_mean((f.float() - r.detach().float()).abs(), weight)
                                for r, f in layers) / len(layers)
    return total / len(fake_feats)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): E[(||grad D(x_hat)||_2 - 1)^2] on random
    per-sample interpolates x_hat between real and fake (B, C, H, W). Not multiplied by its
    weight. Computed in float32 with autocast off: double backward in bf16 is too coarse.
    """
    b = real.shape[0]
    dev = generator.device if generator is not None else real.device
    alpha = torch.rand(b, *([1] * (real.dim() - 1)), generator=generator, device=dev).to(real.device)
    x_hat = (alpha * real.detach().float() + (1 - alpha) * fake.detach().float()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        scores = critic(x_hat)
        scores = _predictions(scores) if not isinstance(scores, torch.Tensor) else [scores]
        total = sum(s.float().sum() for s in scores)
        (grad,) = torch.autograd.grad(total, x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error; with `mask` (broadcastable to pred, e.g. (B, 1, H, W) where depth is
    known) the mean runs over masked pixels only, and an empty mask gives 0 (still in the graph).
    """
    diff = (pred.float() - target.float()).abs()
    if mask is None:
        return diff.mean()
    weight = mask.to(diff.dtype).expand_as(diff)
    return (diff * weight).sum() / weight.sum().clamp_min(1.0)


PRESENCE_FORMS = ("l1", "bce")


def presence_divergence(presence: torch.Tensor, target: torch.Tensor, form: str = "l1") -> torch.Tensor:
    """Elementwise distance between presence probabilities and their targets (same shape, in [0, 1]).
    l1: |p - t|. bce: the binary cross-entropy less its floor (the Bernoulli KL divergence, 0 at
    p = t), whose gradient in the logit does not vanish as p -> 0: L1's shrinks with p (1 - p), so a
    class the generator has all but dropped is hardly pulled back by it."""
    if form == "l1":
        return (presence - target).abs()
    if form != "bce":
        raise ValueError(f"unknown presence form {form!r}; valid: {', '.join(PRESENCE_FORMS)}")
    eps = 1e-6
    p, t = presence.clamp(eps, 1 - eps), target.float()
    floor = torch.xlogy(t, t) + torch.xlogy(1 - t, 1 - t)  # minus the targets' entropy; no gradient in p
    return floor - t * p.log() - (1 - t) * (1 - p).log()


def class_presence_loss(logits: torch.Tensor, real_onehot: torch.Tensor, min_pixels: int = 16,
                        form: str = "l1") -> torch.Tensor:
    """The distance (`presence_divergence`), summed over classes, between the share of generated and of
    real layouts in which each class covers at least `min_pixels` pixels. Generated presence is soft:
    the mean probability of the class's `min_pixels` most likely pixels, so a class the generator has
    dropped gets a gradient towards its likeliest places. A collapsed layout GAN loses thin classes
    that a critic at a small budget does not miss (issue 32); this term is blind to shape, only to
    absence. logits (B, C, H, W), real_onehot (B, C, H, W) -> scalar (float32)."""
    fake = soft_presence(logits, min_pixels).mean(0)
    return presence_divergence(fake, class_sets(real_onehot, min_pixels).mean(0), form).sum()


def class_set_loss(logits: torch.Tensor, sets: torch.Tensor, min_pixels: int = 16, form: str = "l1") -> torch.Tensor:
    """The presence term per layout, for a class-conditioned generator: the distance
    (`presence_divergence`), summed over classes and averaged over the batch, between each generated
    layout's soft presence (as in `class_presence_loss`) and the class set (B, C) 0/1 it was asked
    for, so a class in the set is pulled in and one outside it pushed out. logits (B, C, H, W) ->
    scalar (float32)."""
    return presence_divergence(soft_presence(logits, min_pixels), sets.float(), form).sum(1).mean()


def soft_presence(logits: torch.Tensor, min_pixels: int = 16) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, C): the mean probability of each class's `min_pixels` likeliest pixels."""
    probs = torch.softmax(logits.float(), dim=1).flatten(2)
    return probs.topk(min(int(min_pixels), probs.shape[2]), dim=2).values.mean(2)
