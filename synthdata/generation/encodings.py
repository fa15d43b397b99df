"""Tensor encodings the generator stages share: one-hot layouts and log-normalised depth.

Layouts go to the networks as one-hot maps (ignore pixels all-zero); depth in metres goes in and
comes out as `2 * log1p(d) / log1p(max_depth) - 1` in [-1, 1].
"""

from __future__ import annotations

import math
from typing import Any

import torch

from synthdata.core.contract import ConfigError
from synthdata.models.layout import one_hot  # noqa: F401  (the stages' encodings in one place)


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
