"""Differentiable augmentation applied to real and fake inputs of every discriminator.

DiffAugment: Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training".
One set of random parameters per sample, shared by all its channels, so a layout concatenated
with its image (B, Ccond + Ctarget, H, W) is shifted and cut out consistently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def _rand(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    dev = generator.device if generator is not None else x.device
    return torch.rand(shape, generator=generator, device=dev).to(x.device)


def _randint(high: int, shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Integers in [0, high) on x's device."""
    return (_rand(shape, x, generator) * high).long().clamp_max(high - 1)


def color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness, saturation and contrast per sample; x (B, C, H, W) in [-1, 1]."""
    b = x.shape[0]
    x = x + (_rand((b, 1, 1, 1), x, generator) - 0.5).to(x.dtype)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand((b, 1, 1, 1), x, generator) * 2).to(x.dtype) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((b, 1, 1, 1), x, generator) + 0.5).to(x.dtype) + mean


def translation(x: torch.Tensor, ratio: float = 0.125, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each sample by up to `ratio` of its size, filling with zeros. (B, C, H, W) -> same."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = _randint(2 * sh + 1, (b, 1, 1), x, generator) - sh
    dx = _randint(2 * sw + 1, (b, 1, 1), x, generator) - sw
    # Index into a zero border of width 1: out-of-range positions clamp onto the border.
    rows = (torch.arange(h, device=x.device)[None, :, None] + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one random rectangle of `ratio` x the size per sample. (B, C, H, W) -> same."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = _randint(h + (1 - ch % 2), (b, 1, 1), x, generator)
    cx = _randint(w + (1 - cw % 2), (b, 1, 1), x, generator)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    inside = ((rows - cy + ch // 2) >= 0) & ((rows - cy + ch // 2) < ch) & ((cols - cx + cw // 2) >= 0) & (
        (cols - cx + cw // 2) < cw
    )
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(
    x: torch.Tensor,
    policy: str = "translation,cutout",
    generator: torch.Generator | None = None,
    color_channels: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Apply the comma-separated `policy` (color, translation, cutout) to x (B, C, H, W).

    `color` touches only channels `color_channels = (start, stop)` (all when None): pass the
    image's channels when x is a layout concatenated with an image, since colour jitter is for
    images only. Differentiable w.r.t. x; an empty policy returns x unchanged.
    """
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown}; valid: {', '.join(POLICIES)}")
    for name in names:
        if name == "color":
            if color_channels is None:
                x = color(x, generator)
            else:
                start, stop = color_channels
                x = torch.cat([x[:, :start], color(x[:, start:stop], generator), x[:, stop:]], dim=1)
        elif name == "translation":
            x = translation(x, generator=generator)
        else:
            x = cutout(x, generator=generator)
    return x
