"""Discriminators: PatchGAN, multi-scale PatchGAN with feature outputs, and the WGAN-GP layout
critic.

PatchGAN: Isola et al. 2017 (pix2pix); multi-scale + feature matching: Wang et al. 2018
(pix2pixHD) as used by SPADE (Park et al. 2019); critic: Gulrajani et al. 2017 (WGAN-GP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthdata.models.blocks import base_grid, init_weights, make_norm, maybe_spectral


class PatchGANDiscriminator(nn.Module):
    """x (B, Cin, H, W) -> patch predictions (B, 1, h, w), one per ~70x70 receptive field at
    n_layers=3 (pix2pix). `features(x)` returns every layer's output, the prediction last.

    The first layer has no norm; 4x4 convs, stride 2 for the first `n_layers` layers, then
    two stride-1 layers, LeakyReLU(0.2). The stride-1 layers pad by 2 (as SPADE does), which
    grows the map by one pixel, so small inputs (e.g. 16x32 at a coarse scale) never vanish.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3,
                 norm: str = "instance", spectral: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(
            maybe_spectral(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), spectral),
            nn.LeakyReLU(0.2, inplace=True),
        )]
        channels = ndf
        for i in range(1, n_layers + 1):
            out = ndf * 2 ** min(i, 3)
            stride = 2 if i < n_layers else 1
            layers.append(nn.Sequential(
                maybe_spectral(nn.Conv2d(channels, out, 4, stride=stride, padding=3 - stride, bias=norm == "none"), spectral),
                make_norm(norm, out),
                nn.LeakyReLU(0.2, inplace=True),
            ))
            channels = out
        layers.append(maybe_spectral(nn.Conv2d(channels, 1, 4, stride=1, padding=2), spectral))
        self.layers = nn.ModuleList(layers)
        init_weights(self)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1]


class MultiscaleDiscriminator(nn.Module):
    """`num_d` PatchGANs with spectral norm on the input downsampled by 1, 2, 4, ... (pix2pixHD).

    x (B, Cin, H, W) -> list (one per scale) of lists of feature maps, the last of each being the
    patch prediction (B, 1, h, w); the intermediate maps feed the feature-matching loss.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, num_d: int = 2,
                 norm: str = "instance", spectral: bool = True):
        super().__init__()
        if num_d < 1:
            raise ValueError(f"num_discriminators must be >= 1, got {num_d}")
        self.scales = nn.ModuleList(
            PatchGANDiscriminator(in_channels, ndf, n_layers, norm, spectral) for _ in range(num_d)
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outputs = []
        for i, disc in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(disc.features(x))
        return outputs


class LayoutCritic(nn.Module):
    """(B, C, H, W) one-hot (or straight-through) layouts -> (B,) WGAN critic scores.

    Stride-2 4x4 convs take the map down to the base grid of `base_grid` (DCGAN discriminator),
    a 3x3 conv makes a patch score map (PatchGAN) whose mean is the score. Layer norm instead of
    batch norm: the WGAN-GP penalty is per sample and batch norm couples samples.
    `condition_channels` more input channels follow the layout's (a class-conditioned critic).
    `spectral=True` spectral-normalises every conv (SN-GAN's critic, with `norm="none"`).

    The patches of the score map see 3 + 3 (2^k - 1) + 2^(k+1) pixels (80 at 144x192, k = 4): about
    the frame's height. `local=True` adds a second, shallow critic of two stride-2 convs whose patches
    see 20 pixels, and the score is the sum of both means: pix2pixHD's several scales, here the
    finer one, which judges the thin, many-piece structure (poles, signs, people) a layout is made of.
    (Pixels, as the convolutions see them: layer norm's statistics span the whole map.)
    """

    LOCAL_DOWNSAMPLINGS = 2

    def __init__(self, *, num_classes: int, height: int, width: int, ndf: int = 64, norm: str = "layer",
                 condition_channels: int = 0, spectral: bool = False, local: bool = False):
        super().__init__()
        _, _, k = base_grid(height, width)
        in_channels = num_classes + condition_channels
        self.net = self._patch_critic(in_channels, ndf, k, norm, spectral)
        init_weights(self)
        # built after the first critic's initialisation: without it, the same draws as before it existed
        self.local = self._patch_critic(in_channels, ndf, self.LOCAL_DOWNSAMPLINGS, norm, spectral) if local else None
        if self.local is not None:
            init_weights(self.local)

    @staticmethod
    def _patch_critic(in_channels: int, ndf: int, downsamplings: int, norm: str, spectral: bool) -> nn.Sequential:
        layers: list[nn.Module] = [maybe_spectral(nn.Conv2d(in_channels, ndf, 3, padding=1), spectral),
                                   nn.LeakyReLU(0.2, inplace=True)]
        channels = ndf
        for i in range(downsamplings):
            out = ndf * 2 ** min(i + 1, 3)
            layers += [maybe_spectral(nn.Conv2d(channels, out, 4, stride=2, padding=1), spectral), make_norm(norm, out),
                       nn.LeakyReLU(0.2, inplace=True)]
            channels = out
        layers.append(maybe_spectral(nn.Conv2d(channels, 1, 3, padding=1), spectral))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.net(x).mean(dim=(1, 2, 3))
        if self.local is not None:
            score = score + self.local(x).mean(dim=(1, 2, 3))
        return score
