"""Building blocks shared by the generators and discriminators.

The base-grid rule (`base_grid`) decides how every generator reaches a (possibly non-square)
resolution: start from a small grid of 4 to 15 pixels on the short side and double k times.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

MIN_BASE = 4  # the short side of the starting grid lies in [MIN_BASE, 2 * MIN_BASE), or in
# [2 * MIN_BASE, 4 * MIN_BASE) when the sides do not allow one more doubling (144x192: 9x12 base, k=4)


def base_grid(height: int, width: int) -> tuple[int, int, int]:
    """`(base_h, base_w, k)` with `height = base_h * 2**k`, `width = base_w * 2**k`.

    k is fixed by the short side (its base lies in [4, 8)), so 32x64 -> (4, 8, 3),
    64x128 -> (4, 8, 4), 48x64 -> (6, 8, 3); when the sides are not multiples of that 2**k, one
    doubling fewer (a base in [8, 16)): 144x192 -> (9, 12, 4). A size that neither allows (e.g.
    180x240) raises ValueError naming the nearest reachable sizes.
    """
    if height < MIN_BASE or width < MIN_BASE:
        raise ValueError(f"resolution {height}x{width} is too small: both sides must be >= {MIN_BASE}")
    k = _doublings(height, width)
    if k is not None:
        return height // 2**k, width // 2**k, k
    k = int(math.floor(math.log2(min(height, width) / MIN_BASE)))
    raise ValueError(
        f"resolution {height}x{width} cannot be reached by doubling a small base grid: both "
        f"sides must be multiples of {2 ** max(k - 1, 0)} (short side {min(height, width)} -> {k} or {k - 1} "
        f"doublings). Nearest valid sizes: {', '.join(nearest_valid_sizes(height, width))}"
    )


def _doublings(height: int, width: int) -> int | None:
    """The k of `base_grid`, or None when the size is not reachable."""
    most = int(math.floor(math.log2(min(height, width) / MIN_BASE)))
    for k in (most, most - 1):
        if k >= 0 and height % 2**k == 0 and width % 2**k == 0:
            return k
    return None


def nearest_valid_sizes(height: int, width: int, count: int = 4) -> list[str]:
    """Up to `count` reachable `HxW` sizes closest to `height x width`, nearest first."""
    candidates: set[tuple[int, int]] = set()
    for k in range(0, 12):
        step = 2**k
        for h in {height // step * step, -(-height // step) * step}:
            for w in {width // step * step, -(-width // step) * step}:
                if h >= MIN_BASE and w >= MIN_BASE and _reachable(h, w):
                    candidates.add((h, w))
    ranked = sorted(candidates, key=lambda hw: (abs(hw[0] - height) + abs(hw[1] - width), hw))
    return [f"{h}x{w}" for h, w in ranked[:count]]


def _reachable(height: int, width: int) -> bool:
    return _doublings(height, width) is not None


def maybe_spectral(module: nn.Module, enabled: bool) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) when `enabled`."""
    return spectral_norm(module) if enabled else module


def fold_spectral_norm(module: nn.Module) -> nn.Module:
    """Replaces, in place, every parametrised tensor of `module` (spectral norm's `weight`) by the
    plain parameter it currently evaluates to, and returns `module`. In eval mode that is W / sigma
    with the stored singular vectors, as every eval forward recomputes it; in training mode it
    would first run a power iteration, so call this on an eval-mode module (sampling, not training).

    `parametrize.remove_parametrizations` is not used: a deep copy of a parametrised module shares
    its generated class with the original, and removing the parametrisation edits that class, which
    would break the original too. Here only the copy's own class pointer changes.
    """
    with torch.inference_mode(False), torch.no_grad():  # parameters must stay normal tensors
        for m in list(module.modules()):
            if not parametrize.is_parametrized(m):
                continue
            values = {name: getattr(m, name).detach().clone() for name in m.parametrizations}
            requires_grad = {name: p.original.requires_grad for name, p in m.parametrizations.items()}
            del m._modules["parametrizations"]
            m.__class__ = m.__class__.__bases__[0]  # ParametrizedConv2d -> Conv2d
            for name, value in values.items():
                m.register_parameter(name, nn.Parameter(value, requires_grad=requires_grad[name]))
    return module


def make_norm(kind: str, channels: int, affine: bool = True) -> nn.Module:
    """A normalisation layer by name: batch | instance | layer | none.

    `layer` is GroupNorm with one group: per-sample statistics over (C, H, W), which keeps a
    WGAN-GP gradient penalty per sample (Gulrajani et al. 2017 advise against batch norm there).
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=affine)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=affine)
    if kind == "layer":
        return nn.GroupNorm(1, channels, affine=affine)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'; valid: batch, instance, layer, none")


class Upsample2x(nn.Module):
    """Doubles H and W: nearest-neighbour + 3x3 conv (`nearest`, avoids checkerboard artefacts,
    Odena et al. 2016) or a 4x4 stride-2 transposed conv (`transposed`, DCGAN).

    (B, Cin, H, W) -> (B, Cout, 2H, 2W)
    """

    MODES = ("nearest", "transposed")

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest", bias: bool = True):
        super().__init__()
        if mode == "nearest":
            self.body: nn.Module = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            )
        elif mode == "transposed":
            self.body = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)
        else:
            raise ValueError(f"unknown upsample mode '{mode}'; valid: {', '.join(self.MODES)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class NoiseInjection(nn.Module):
    """Per-pixel noise scaled by a learned per-channel weight (StyleGAN, Karras et al. 2019).

    In training mode the noise is fresh each call; in eval mode a fixed noise map stored as a
    buffer is used, so sampling depends only on the latent (as StyleGAN2's `noise_mode='const'`).
    (B, C, H, W) -> (B, C, H, W)
    """

    def __init__(self, channels: int, height: int, width: int):
        super().__init__()
        # Starts at zero so the network begins as if noise-free; gradients still reach it,
        # so DDP sees the parameter used.
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("const_noise", torch.randn(1, 1, height, width))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            if self.training:
                noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            else:
                noise = self.const_noise.to(x.dtype)
        return x + self.weight.to(x.dtype) * noise


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN-style init (Radford et al. 2016): N(0, 0.02) convs, N(1, 0.02) norm scales."""
    for m in module.modules():
        if hasattr(m, "parametrizations"):
            continue  # spectral norm rescales the weight anyway; keep PyTorch's default init
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
