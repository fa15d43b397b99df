"""The generator stages: what each one feeds its generator and critic, and its losses.

layout: z -> C-class logits; the critic sees real one-hot maps and straight-through Gumbel
one-hot fakes (WGAN-GP or non-saturating). depth / image: SPADE-style conditional GANs (hinge +
feature matching + L1) on one-hot layouts (+ depth for the image stage).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from synthdata import models
from synthdata.core.contract import ConfigError
from synthdata.core.recipe import LayoutStageConfig, Recipe, SpadeStageConfig
from synthdata.models import losses, straight_through_onehot

STAGES = ("layout", "depth", "image")
STAGE_IDS = {name: i for i, name in enumerate(STAGES)}  # keys for derived seeds


def check_stage(stage: Any) -> str:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}. Valid stages: {', '.join(STAGES)}")
    return stage


# --------------------------------------------------------------------------------------------
# Tensor encodings
# --------------------------------------------------------------------------------------------


def one_hot(layout: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) class indices -> (B, C, H, W) float one-hot; ignore pixels are all-zero vectors."""
    valid = (layout >= 0) & (layout < num_classes)
    out = F.one_hot(torch.where(valid, layout, 0).long(), num_classes).permute(0, 3, 1, 2)
    return out.float() * valid.unsqueeze(1)


def normalize_depth(depth: torch.Tensor, max_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth in metres (B, 1, H, W) -> (log-depth in [-1, 1], valid mask (B, 1, H, W) float).

    `2 * log1p(d) / log1p(max_depth) - 1`: log spacing gives near objects, which cover most
    pixels that matter, more of the range. Unknown depth (0, NaN, inf) becomes 0 with mask 0.
    """
    valid = torch.isfinite(depth) & (depth > 0)
    d = torch.where(valid, depth, torch.zeros_like(depth)).clamp(max=max_depth)
    norm = 2.0 * torch.log1p(d) / math.log1p(max_depth) - 1.0
    return norm * valid, valid.float()


def denormalize_depth(norm: torch.Tensor, max_depth: float) -> torch.Tensor:
    """Inverse of `normalize_depth`: [-1, 1] -> metres in [0, max_depth]."""
    return torch.expm1((norm.float().clamp(-1, 1) + 1.0) * 0.5 * math.log1p(max_depth))


def depth_range(samples: list[dict[str, Any]]) -> float:
    """Max depth for the normalisation: the largest valid depth in `samples`, plus a 10% margin
    so generated depth can go a little beyond what the first samples showed."""
    best = 0.0
    for s in samples:
        d = s.get("depth")
        if d is None:
            continue
        d = torch.as_tensor(d, dtype=torch.float32)
        valid = d[torch.isfinite(d) & (d > 0)]
        if valid.numel():
            best = max(best, float(valid.max()))
    if best <= 0:
        raise ConfigError("the depth stage needs depth ground truth, but the samples have no valid depth")
    return best * 1.1


# --------------------------------------------------------------------------------------------
# Architecture records (stored in checkpoints so a run dir can rebuild its networks)
# --------------------------------------------------------------------------------------------


def stage_arch(stage: str, recipe: Recipe, *, num_classes: int, use_depth: bool, max_depth: float | None) -> dict:
    """Everything needed to rebuild a stage's generator: the stage config + sizes and channels."""
    cfg = getattr(recipe.stages, stage)
    arch = dict(dataclasses.asdict(cfg), stage=stage, num_classes=num_classes,
                height=recipe.data.height, width=recipe.data.width, max_depth=max_depth)
    if stage == "depth":
        arch.update(cond_channels=num_classes, out_channels=1, use_depth=False)
    elif stage == "image":
        arch.update(cond_channels=num_classes + int(use_depth), out_channels=3, use_depth=use_depth)
    return arch


def _config(cls: type, arch: dict) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in arch.items() if k in names})


def _checked_build(arch: dict, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Model errors (unknown arch, a size the architecture cannot make) as recipe errors."""
    try:
        return build()
    except ValueError as e:
        raise ConfigError(f"stages.{arch['stage']} (arch={arch.get('arch')!r}, "
                          f"{arch['height']}x{arch['width']}): {e}") from e


def build_generator(arch: dict) -> torch.nn.Module:
    """The stage's generator, rebuilt from an architecture record (see `stage_arch`)."""

    if arch["stage"] == "layout":
        return _checked_build(arch, lambda: models.build_layout_generator(
            _config(LayoutStageConfig, arch), num_classes=arch["num_classes"],
            height=arch["height"], width=arch["width"]))
    return _checked_build(arch, lambda: models.build_conditional_generator(
        _config(SpadeStageConfig, arch), cond_channels=arch["cond_channels"],
        out_channels=arch["out_channels"], height=arch["height"], width=arch["width"]))


def build_discriminator(arch: dict) -> torch.nn.Module:

    if arch["stage"] == "layout":
        return _checked_build(arch, lambda: models.build_layout_critic(
            _config(LayoutStageConfig, arch), num_classes=arch["num_classes"],
            height=arch["height"], width=arch["width"]))
    return _checked_build(arch, lambda: models.build_conditional_discriminator(
        _config(SpadeStageConfig, arch), in_channels=arch["cond_channels"] + arch["out_channels"]))


# --------------------------------------------------------------------------------------------
# Batches -> network inputs
# --------------------------------------------------------------------------------------------


@dataclass
class StageInputs:
    """One micro-batch as a stage sees it: `cond` (B, Ccond, H, W) or None (layout stage),
    `target` (B, Cout, H, W) the real sample in the generator's output space, `mask` (B, 1, H, W)
    of pixels with ground truth (None: all), `z` (B, z_dim) noise or None."""

    cond: torch.Tensor | None
    target: torch.Tensor
    mask: torch.Tensor | None
    z: torch.Tensor | None


def stage_inputs(arch: dict, batch: dict[str, Any], z: torch.Tensor | None) -> StageInputs:
    """Loader batch (image (B,3,H,W) in [0,1], layout (B,H,W), depth (B,1,H,W)) -> `StageInputs`."""
    layout = one_hot(batch["layout"], arch["num_classes"])
    stage = arch["stage"]
    if stage == "layout":
        return StageInputs(None, layout, None, z)
    if stage == "depth":
        target, mask = normalize_depth(batch["depth"], arch["max_depth"])
        return StageInputs(layout, target, mask, z)
    cond = layout
    if arch["use_depth"]:
        depth, _ = normalize_depth(batch["depth"], arch["max_depth"])
        cond = torch.cat([layout, depth], 1)
    return StageInputs(cond, batch["image"] * 2.0 - 1.0, None, z)


def noise(arch: dict, batch_size: int, generator: torch.Generator | None, device) -> torch.Tensor | None:
    z_dim = arch.get("z_dim", 0)
    if not z_dim:
        return None
    return torch.randn(batch_size, z_dim, generator=generator).to(device)


# --------------------------------------------------------------------------------------------
# Losses of one micro-batch (D phase and G phase); each returns (loss, logged scalars)
# --------------------------------------------------------------------------------------------


def generate(arch: dict, G: torch.nn.Module, inp: StageInputs) -> torch.Tensor:
    """Generator output in the target space: layout logits (B, C, H, W) or (B, Cout, H, W) in [-1, 1]."""
    if arch["stage"] == "layout":
        return G(inp.z)
    return G(inp.cond, inp.z)


def _d_inputs(arch: dict, inp: StageInputs, real: torch.Tensor, fake: torch.Tensor,
              augment: Callable | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Critic inputs for real and fake, (B, Ccond + Cout, H, W) each (layout stage: (B, C, H, W)).

    Real and fake pass through DiffAugment concatenated on channels, so each pair gets the same
    transform and feature matching compares like with like.
    """
    if arch["stage"] != "layout":
        if inp.mask is not None:  # unknown depth is shown to D as 0 in real and fake alike
            real, fake = real * inp.mask, fake * inp.mask
        real = torch.cat([inp.cond, real.to(inp.cond.dtype)], 1)
        fake = torch.cat([inp.cond, fake.to(inp.cond.dtype)], 1)
    fake = fake.to(real.dtype)
    if augment is None:
        return real, fake
    both = augment(torch.cat([real, fake], 1))
    return both[:, : real.shape[1]], both[:, real.shape[1]:]


def _fake_for_critic(arch: dict, fake: torch.Tensor) -> torch.Tensor:
    if arch["stage"] != "layout":
        return fake

    # a soft softmax map is trivially told apart from a hard one-hot real one
    return straight_through_onehot(fake.float(), tau=arch["gumbel_tau"], hard=True)


def _split_scales(outputs: list[list[torch.Tensor]], n: int):
    first = [[f[:n] for f in feats] for feats in outputs]
    second = [[f[n:] for f in feats] for feats in outputs]
    return first, second


def d_loss(arch: dict, D, D_plain, inp: StageInputs, fake: torch.Tensor,
           augment: Callable | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Critic loss on real `inp.target` vs detached `fake`. `D` may be DDP-wrapped; `D_plain` is
    the bare module (used for the gradient penalty's extra forward)."""

    fake = _fake_for_critic(arch, fake.detach())
    real_in, fake_in = _d_inputs(arch, inp, inp.target, fake, augment)
    n = real_in.shape[0]
    out = D(torch.cat([real_in, fake_in], 0))  # one forward: one DDP reduction
    if arch["stage"] == "layout":
        real_s, fake_s = out[:n].float(), out[n:].float()
        if arch["loss"] == "wgan-gp":
            loss = losses.wgan_d_loss(real_s, fake_s)
            gp = losses.gradient_penalty(D_plain, real_in.float(), fake_in.detach().float())
            return loss + arch["gp_weight"] * gp, {"d": loss.detach(), "gp": gp.detach()}
        if arch["loss"] == "nonsaturating":
            loss = losses.nonsaturating_d_loss(real_s, fake_s)
            return loss, {"d": loss.detach()}
        raise ConfigError(f"unknown stages.layout.loss {arch['loss']!r}. Valid: wgan-gp, nonsaturating")
    real_o, fake_o = _split_scales(out, n)
    loss = sum(losses.hinge_d_loss(r[-1].float(), f[-1].float()) for r, f in zip(real_o, fake_o))
    return loss, {"d": loss.detach()}


def g_loss(arch: dict, D_plain, inp: StageInputs, fake: torch.Tensor,
           augment: Callable | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Generator loss through a frozen critic `D_plain` (bare module, parameters not trainable)."""

    fake_c = _fake_for_critic(arch, fake)
    real_in, fake_in = _d_inputs(arch, inp, inp.target, fake_c, augment)
    if arch["stage"] == "layout":
        score = D_plain(fake_in).float()
        if arch["loss"] == "wgan-gp":
            loss = losses.wgan_g_loss(score)
        else:
            loss = losses.nonsaturating_g_loss(score)
        return loss, {"g": loss.detach()}
    n = real_in.shape[0]
    real_o, fake_o = _split_scales(D_plain(torch.cat([real_in, fake_in], 0)), n)
    adv = sum(losses.hinge_g_loss(f[-1].float()) for f in fake_o)
    fm = losses.feature_matching_loss([[t.detach().float() for t in r] for r in real_o],
                                      [[t.float() for t in f] for f in fake_o])
    l1 = losses.l1_loss(fake.float(), inp.target.float(), inp.mask)
    loss = adv + arch["lambda_fm"] * fm + arch["lambda_l1"] * l1
    return loss, {"g": adv.detach(), "fm": fm.detach(), "l1": l1.detach()}
