"""Generators and discriminators for the layout, depth and image stages, built from a recipe.

Only the `build_*` functions read configuration; the model classes take typed keyword
arguments. Unknown architecture names raise ValueError listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

from synthdata.models.augment import diff_augment
from synthdata.models.blocks import base_grid, nearest_valid_sizes
from synthdata.models.discriminators import LayoutCritic, MultiscaleDiscriminator, PatchGANDiscriminator
from synthdata.models.ema import EMA
from synthdata.models.layout import DCGANGenerator, class_index, class_sets, straight_through_onehot
from synthdata.models.pix2pix import UNetGenerator
from synthdata.models.spade import SPADEGenerator
from synthdata.models.style import StyleLayoutGenerator

if TYPE_CHECKING:
    from synthdata.core.recipe import LayoutStageConfig, SpadeStageConfig

# the modules other folders may import (tests/test_public_api.py checks it);
# internal: discriminators, spade, style
PUBLIC_MODULES = (
    "augment",
    "blocks",
    "ema",
    "layout",
    "losses",
    "pix2pix",
    "segmenters",
)

__all__ = [
    "CONDITIONAL_DISCRIMINATORS", "CONDITIONAL_GENERATORS", "EMA", "LAYOUT_CRITICS",
    "LAYOUT_GENERATORS", "DCGANGenerator", "LayoutCritic", "MultiscaleDiscriminator",
    "PatchGANDiscriminator", "SPADEGenerator", "StyleLayoutGenerator", "UNetGenerator",
    "base_grid", "build_conditional_discriminator", "build_conditional_generator",
    "build_layout_critic", "build_layout_generator", "class_index", "class_sets", "diff_augment", "nearest_valid_sizes",
    "straight_through_onehot",
]


def _dcgan(cfg: LayoutStageConfig, num_classes: int, height: int, width: int) -> nn.Module:
    return DCGANGenerator(num_classes=num_classes, height=height, width=width,
                          z_dim=cfg.z_dim, ngf=cfg.ngf, upsample=cfg.upsample,
                          class_conditioning=cfg.class_conditioning)


def _style(cfg: LayoutStageConfig, num_classes: int, height: int, width: int) -> nn.Module:
    if cfg.class_conditioning:
        raise ValueError("class_conditioning is built for arch=dcgan only")
    return StyleLayoutGenerator(num_classes=num_classes, height=height, width=width,
                                z_dim=cfg.z_dim, ngf=cfg.ngf)


def _spade(cfg: SpadeStageConfig, cond_channels: int, out_channels: int, height: int, width: int) -> nn.Module:
    # SPADE's 128 hidden channels at ngf=64 (Park et al. 2019), scaled down with ngf: the
    # full-resolution gamma/beta convs dominate the cost (toy ngf=32: 9 instead of 16 GFLOP).
    return SPADEGenerator(cond_channels=cond_channels, out_channels=out_channels, height=height,
                          width=width, ngf=cfg.ngf, z_dim=cfg.z_dim, hidden=min(128, 2 * cfg.ngf))


def _pix2pix(cfg: SpadeStageConfig, cond_channels: int, out_channels: int, height: int, width: int) -> nn.Module:
    # As deep as the base grid allows (innermost map >= 4 px); instance norm keeps each sample
    # independent of its batch. z is ignored: the U-Net's noise is dropout.
    _, _, k = base_grid(height, width)
    return UNetGenerator(cond_channels, out_channels, ngf=cfg.ngf, num_downs=max(k, 1), norm="instance")


def _multiscale(cfg: SpadeStageConfig, in_channels: int) -> nn.Module:
    return MultiscaleDiscriminator(in_channels, ndf=cfg.ndf, num_d=cfg.num_discriminators)


def _patchgan(cfg: SpadeStageConfig, in_channels: int) -> nn.Module:
    # The pix2pix discriminator, one scale, no spectral norm; same list-of-lists output.
    return MultiscaleDiscriminator(in_channels, ndf=cfg.ndf, num_d=1, spectral=False)


def _layout_critic(cfg: LayoutStageConfig, num_classes: int, height: int, width: int) -> nn.Module:
    # WGAN-GP forbids batch norm in the critic; the non-saturating loss can live with layer norm too.
    # hinge is SN-GAN's critic: spectral norm on every conv takes the place of norm layers and penalty.
    # class-conditioned: the critic sees the class set as C constant planes beside the layout;
    # local_critic: a second critic of 20-pixel patches beside it (LayoutCritic)
    sn = cfg.loss == "hinge"
    return LayoutCritic(num_classes=num_classes, height=height, width=width, ndf=cfg.ndf,
                        norm="none" if sn else "layer", spectral=sn,
                        condition_channels=num_classes if cfg.class_conditioning else 0, local=cfg.local_critic)


LAYOUT_GENERATORS: dict[str, Callable[..., nn.Module]] = {"dcgan": _dcgan, "style": _style}
LAYOUT_CRITICS: dict[str, Callable[..., nn.Module]] = {"dcgan": _layout_critic, "style": _layout_critic}
CONDITIONAL_GENERATORS: dict[str, Callable[..., nn.Module]] = {"spade": _spade, "pix2pix": _pix2pix}
CONDITIONAL_DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {"spade": _multiscale, "pix2pix": _patchgan}


def _lookup(registry: dict[str, Callable[..., nn.Module]], arch: str, what: str) -> Callable[..., nn.Module]:
    if arch not in registry:
        raise ValueError(f"unknown {what} arch '{arch}'; valid: {', '.join(sorted(registry))}")
    return registry[arch]


def build_layout_generator(cfg: LayoutStageConfig, *, num_classes: int, height: int, width: int) -> nn.Module:
    """Layout generator: forward z (B, cfg.z_dim) (, class sets (B, num_classes) when
    cfg.class_conditioning) -> logits (B, num_classes, height, width)."""
    return _lookup(LAYOUT_GENERATORS, cfg.arch, "layout generator")(cfg, num_classes, height, width)


def build_layout_critic(cfg: LayoutStageConfig, *, num_classes: int, height: int, width: int) -> nn.Module:
    """Layout critic: forward (B, num_classes (x2 when cfg.class_conditioning), height, width) -> (B,) scores."""
    return _lookup(LAYOUT_CRITICS, cfg.arch, "layout critic")(cfg, num_classes, height, width)


def build_conditional_generator(cfg: SpadeStageConfig, *, cond_channels: int, out_channels: int,
                                height: int, width: int) -> nn.Module:
    """Depth/image generator: forward (cond (B, cond_channels, H, W), z (B, cfg.z_dim) | None)
    -> (B, out_channels, H, W) in [-1, 1]."""
    return _lookup(CONDITIONAL_GENERATORS, cfg.arch, "conditional generator")(
        cfg, cond_channels, out_channels, height, width
    )


def build_conditional_discriminator(cfg: SpadeStageConfig, *, in_channels: int) -> nn.Module:
    """Discriminator on cond and target concatenated (B, in_channels, H, W) -> list (one per
    scale) of lists of feature maps, the last of each being the patch prediction."""
    return _lookup(CONDITIONAL_DISCRIMINATORS, cfg.arch, "conditional discriminator")(cfg, in_channels)
