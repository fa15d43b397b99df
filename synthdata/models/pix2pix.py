"""pix2pix: a U-Net generator and a PatchGAN discriminator for paired image translation.

Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks". Used as
the alternative conditional stage (`arch: pix2pix`) and by the translate and SegGAN commands.
"""

from __future__ import annotations

import torch
from torch import nn

from synthdata.models.blocks import init_weights, make_norm
from synthdata.models.discriminators import PatchGANDiscriminator

__all__ = ["UNetGenerator", "PatchGANDiscriminator"]


class UNetGenerator(nn.Module):
    """x (B, Cin, H, W) -> (B, Cout, H, W) in [-1, 1]; H and W multiples of 2**num_downs.

    `num_downs` 4x4 stride-2 convs down (channels ngf, 2ngf, 4ngf, 8ngf, 8ngf, ...), transposed
    convs up with skip connections between mirrored layers. As in pix2pix the noise is dropout
    in the decoder's deep layers (there is no z), and the innermost layer has no norm.
    """

    def __init__(self, in_channels: int, out_channels: int, ngf: int = 64, num_downs: int = 8,
                 norm: str = "batch", dropout: bool = True):
        super().__init__()
        if num_downs < 1:
            raise ValueError(f"num_downs must be >= 1, got {num_downs}")
        self.num_downs = num_downs
        ch = [ngf * 2 ** min(i, 3) for i in range(num_downs)]
        self.downs = nn.ModuleList()
        for i in range(num_downs):
            conv = nn.Conv2d(in_channels if i == 0 else ch[i - 1], ch[i], 4, stride=2, padding=1)
            if i == 0:
                self.downs.append(conv)
            else:
                has_norm = i < num_downs - 1
                self.downs.append(nn.Sequential(
                    nn.LeakyReLU(0.2), conv, make_norm(norm, ch[i]) if has_norm else nn.Identity()
                ))
        self.ups = nn.ModuleList()
        for i in range(num_downs - 1, 0, -1):
            c_in = ch[i] if i == num_downs - 1 else 2 * ch[i]
            use_dropout = dropout and 3 <= i and num_downs - 4 <= i <= num_downs - 2
            self.ups.append(nn.Sequential(
                nn.ReLU(),
                nn.ConvTranspose2d(c_in, ch[i - 1], 4, stride=2, padding=1),
                make_norm(norm, ch[i - 1]),
                nn.Dropout(0.5) if use_dropout else nn.Identity(),
            ))
        c_last = 2 * ch[0] if num_downs > 1 else ch[0]
        self.out = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(c_last, out_channels, 4, stride=2, padding=1), nn.Tanh())
        init_weights(self)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """`z` is accepted and ignored, so the U-Net fits the conditional-generator interface."""
        step = 2**self.num_downs
        if x.shape[2] % step or x.shape[3] % step:
            raise ValueError(
                f"UNetGenerator with num_downs={self.num_downs} needs H and W multiples of {step}, "
                f"got {x.shape[2]}x{x.shape[3]}"
            )
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the innermost output is the decoder's input, not a skip
        for up in self.ups:
            x = torch.cat([up(x), skips.pop()], dim=1)
        return self.out(x)
