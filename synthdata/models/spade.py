"""SPADE generator: spatially-adaptive normalisation driven by the layout (+ depth) map.

Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization". Used for the
depth stage (layout -> depth, 1 channel) and the image stage (layout + depth -> RGB, 3 channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthdata.models.blocks import base_grid, init_weights, maybe_spectral


class SPADE(nn.Module):
    """Parameter-free instance norm, then a per-pixel scale and shift predicted from the
    conditioning map resized to the features (SPADE, section 3.1).

    x (B, C, H, W), cond (B, Ccond, H', W') -> (B, C, H, W)
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int = 128):
        super().__init__()
        # Instance (not batch) statistics: a sample never depends on the rest of its batch.
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # Nearest keeps one-hot layouts one-hot at coarse scales.
        cond = F.interpolate(cond, size=x.shape[2:], mode="nearest")
        h = self.shared(cond)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SPADEResBlock(nn.Module):
    """SPADE -> LeakyReLU -> 3x3 conv, twice, plus a learned 1x1 shortcut when channels change
    (SPADE ResBlk, figure 4). (B, Cin, H, W) -> (B, Cout, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int,
                 hidden: int = 128, spectral: bool = True):
        super().__init__()
        middle = min(in_channels, out_channels)
        self.norm_0 = SPADE(in_channels, cond_channels, hidden)
        self.conv_0 = maybe_spectral(nn.Conv2d(in_channels, middle, 3, padding=1), spectral)
        self.norm_1 = SPADE(middle, cond_channels, hidden)
        self.conv_1 = maybe_spectral(nn.Conv2d(middle, out_channels, 3, padding=1), spectral)
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels:
            self.norm_s = SPADE(in_channels, cond_channels, hidden)
            self.shortcut = maybe_spectral(nn.Conv2d(in_channels, out_channels, 1, bias=False), spectral)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(self.norm_s(x, cond))
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, cond), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, cond), 0.2))
        return skip + dx


class SPADEGenerator(nn.Module):
    """(cond (B, Ccond, H, W), z (B, z_dim) | None) -> (B, Cout, H, W) in [-1, 1].

    The start grid (base_h, base_w) comes from `base_grid`; it is either a linear projection of
    the style noise z (z_dim > 0) or the conditioning map downsampled (z_dim = 0, SPADE's
    non-VAE variant). A head and a middle block at the base grid, then k upsampling blocks, with
    channels `ngf * 16` halving to `ngf`; a 3x3 conv + tanh gives the output.
    """

    def __init__(self, *, cond_channels: int, out_channels: int, height: int, width: int,
                 ngf: int = 64, z_dim: int = 64, hidden: int = 128, spectral: bool = True):
        super().__init__()
        self.z_dim = z_dim
        self.base_h, self.base_w, k = base_grid(height, width)
        self.size = (height, width)
        channels = [ngf * 2 ** min(k - i, 4) for i in range(k + 1)]
        if z_dim > 0:
            self.fc: nn.Module = nn.Linear(z_dim, channels[0] * self.base_h * self.base_w)
        else:
            self.fc = nn.Conv2d(cond_channels, channels[0], 3, padding=1)
        self.head = SPADEResBlock(channels[0], channels[0], cond_channels, hidden, spectral)
        self.middle = SPADEResBlock(channels[0], channels[0], cond_channels, hidden, spectral)
        self.ups = nn.ModuleList(
            SPADEResBlock(c_in, c_out, cond_channels, hidden, spectral)
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.to_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        init_weights(self)

    def forward(self, cond: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(cond.shape[2:]) != self.size:
            raise ValueError(f"conditioning map is {tuple(cond.shape[2:])}, generator was built for {self.size}")
        b = cond.shape[0]
        if self.z_dim > 0:
            if z is None:  # no noise given: a fresh draw (pass z for reproducible samples)
                z = torch.randn(b, self.z_dim, device=cond.device, dtype=cond.dtype)
            x = self.fc(z).view(b, -1, self.base_h, self.base_w)
        else:
            x = self.fc(F.interpolate(cond, size=(self.base_h, self.base_w), mode="nearest"))
        x = self.middle(self.head(x, cond), cond)
        for block in self.ups:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"), cond)
        return torch.tanh(self.to_out(F.leaky_relu(x, 0.2)))
