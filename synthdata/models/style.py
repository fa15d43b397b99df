"""Style-based layout generator: mapping network z -> w, modulated/demodulated convolutions
driven by w, per-layer noise inputs and skip outputs.

StyleGAN2: Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthdata.models.blocks import NoiseInjection, base_grid


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> w (B, w_dim): pixel-normalised input, then an MLP with leaky ReLUs."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Linear(z_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.float().pow(2).mean(dim=1, keepdim=True) + 1e-8).to(z.dtype)
        return self.net(z)


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per sample by a style and (optionally) demodulated
    to unit output variance (StyleGAN2, section 2.2), run as one grouped convolution.

    x (B, Cin, H, W), w (B, w_dim) -> (B, Cout, H, W), or (B, Cout, 2H, 2W) with `upsample`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        # Equalised learning rate (Karras et al. 2018): scale at run time, not at init.
        self.scale = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.affine = nn.Linear(w_dim, in_channels)
        nn.init.ones_(self.affine.bias)  # styles start at 1: an unmodulated convolution
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, c_in, h, wd = x.shape
        style = self.affine(w).float()  # (B, Cin)
        weight = self.scale * self.weight[None] * style[:, None, :, None, None]  # (B, Cout, Cin, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            h, wd = 2 * h, 2 * wd
        c_out = weight.shape[1]
        out = F.conv2d(
            x.reshape(1, b * c_in, h, wd),
            weight.reshape(b * c_out, c_in, *weight.shape[3:]).to(x.dtype),
            padding=self.padding,
            groups=b,
        )
        return out.view(b, c_out, h, wd)


class StyledLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + leaky ReLU. (B, Cin, H, W) -> (B, Cout, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, height: int, width: int,
                 upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, upsample=upsample)
        self.noise = NoiseInjection(out_channels, height, width)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.noise(self.conv(x, w))
        return F.leaky_relu(x + self.bias.to(x.dtype), 0.2) * math.sqrt(2.0)


class StyleLayoutGenerator(nn.Module):
    """z (B, z_dim) -> class logits (B, C, H, W), StyleGAN2 "skip" architecture.

    A learned constant (base_h, base_w) grid is refined by styled layers; each resolution adds
    its own 1x1 modulated (not demodulated) logits to the upsampled logits of the previous one.
    """

    def __init__(self, *, num_classes: int, height: int, width: int, z_dim: int = 128,
                 ngf: int = 64, mapping_layers: int = 4):
        super().__init__()
        self.z_dim = z_dim
        w_dim = z_dim
        base_h, base_w, k = base_grid(height, width)
        channels = [ngf * 2 ** min(k - i, 3) for i in range(k + 1)]
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers)
        self.const = nn.Parameter(torch.randn(1, channels[0], base_h, base_w))
        self.first = StyledLayer(channels[0], channels[0], w_dim, base_h, base_w)
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.to_logits = nn.ModuleList([ModulatedConv2d(channels[0], num_classes, 1, w_dim, demodulate=False)])
        for i in range(k):
            h, w = base_h * 2 ** (i + 1), base_w * 2 ** (i + 1)
            self.ups.append(StyledLayer(channels[i], channels[i + 1], w_dim, h, w, upsample=True))
            self.convs.append(StyledLayer(channels[i + 1], channels[i + 1], w_dim, h, w))
            self.to_logits.append(ModulatedConv2d(channels[i + 1], num_classes, 1, w_dim, demodulate=False))
        self.logit_bias = nn.Parameter(torch.zeros(1, num_classes, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z)
        x = self.first(self.const.expand(z.shape[0], -1, -1, -1).to(w.dtype), w)
        logits = self.to_logits[0](x, w)
        for up, conv, to_logits in zip(self.ups, self.convs, self.to_logits[1:]):
            x = conv(up(x, w), w)
            logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
            logits = logits + to_logits(x, w)
        return logits + self.logit_bias.to(logits.dtype)
