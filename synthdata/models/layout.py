"""Layout generator (DCGAN widened to any power-of-two resolution) and the straight-through
one-hot that the critic sees.

DCGAN: Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs";
widened by extra upsampling blocks to reach 256 px as in the layout-prediction work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthdata.models.blocks import Upsample2x, base_grid, init_weights


def one_hot(layout: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) class indices -> (B, C, H, W) float one-hot; ignore pixels are all-zero vectors."""
    valid = (layout >= 0) & (layout < num_classes)
    out = F.one_hot(torch.where(valid, layout, 0).long(), num_classes).permute(0, 3, 1, 2)
    return out.float() * valid.unsqueeze(1)


def class_index(scores: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W): the first highest class, as `argmax(1)` gives it. `max(1).indices`
    is the same index and about 6x faster on a CPU, where argmax over a strided axis is slow
    (35 vs 6 ms for 8 layouts at 144x192 with 12 classes; 8% of a layout training step)."""
    return scores.max(dim=1).indices


def straight_through_onehot(
    logits: torch.Tensor,
    tau: float = 1.0,
    hard: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gumbel-softmax over the class axis (Jang et al. 2017; Maddison et al. 2017).

    logits (B, C, H, W) -> (B, C, H, W). With `hard=True` the forward value is exactly one-hot
    (the argmax of the Gumbel-perturbed logits), while gradients are those of the soft sample,
    so a critic cannot tell generated layouts from real one-hot ones by their softness.
    """
    if tau <= 0:
        raise ValueError(f"gumbel tau must be > 0, got {tau}")
    # Sampled and normalised in float32: bf16 Gumbel noise is too coarse near 0 and 1.
    x = logits.float()
    dev = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=dev).to(x.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
    soft = torch.softmax((x + gumbel) / tau, dim=1)
    if not hard:
        return soft.to(logits.dtype)
    index = class_index(soft)
    onehot = F.one_hot(index, x.shape[1]).movedim(-1, 1).to(soft.dtype)
    # `soft - soft.detach()` is exactly zero in the forward pass (x - x == 0 in IEEE arithmetic),
    # so the output stays exactly one-hot, unlike `onehot - soft.detach() + soft`.
    return (onehot + (soft - soft.detach())).to(logits.dtype)


def class_sets(layouts_onehot: torch.Tensor, min_pixels: int = 16) -> torch.Tensor:
    """(B, C, H, W) one-hot layouts -> (B, C) float 0/1: the classes covering >= `min_pixels` pixels
    (the class set a class-conditioned layout generator is asked to draw)."""
    k = min(int(min_pixels), layouts_onehot.shape[2] * layouts_onehot.shape[3])
    return (layouts_onehot.float().flatten(2).sum(2) >= k).float()


class DCGANGenerator(nn.Module):
    """z (B, z_dim) -> class logits (B, C, H, W).

    A linear layer makes a (base_h, base_w) grid with `ngf * 2**min(k, 3)` channels, then k
    upsampling blocks (`nearest` + conv, or transposed conv) each halve the channels (down to
    `ngf`) with batch norm + ReLU as in DCGAN; a 3x3 conv gives the logits.

    `class_conditioning=True`: forward(z, sets) also takes the class set (B, C) 0/1 the layout is
    to hold, concatenated to z (a conditional GAN: Mirza & Osindero 2014). The module keeps the
    last `SET_MEMORY` class sets of real training layouts it was shown (`remember_class_sets`), in
    buffers that checkpoints and the weight average carry, so sampling draws sets as the real
    layouts hold them, co-occurrences included (`draw_class_sets`).
    """

    SET_MEMORY = 4096

    def __init__(
        self,
        *,
        num_classes: int,
        height: int,
        width: int,
        z_dim: int = 128,
        ngf: int = 64,
        upsample: str = "nearest",
        class_conditioning: bool = False,
    ):
        super().__init__()
        self.z_dim = z_dim
        self.class_conditioning = class_conditioning
        self.base_h, self.base_w, k = base_grid(height, width)
        channels = [ngf * 2 ** min(k - i, 3) for i in range(k + 1)]
        cond = num_classes if class_conditioning else 0
        if class_conditioning:  # real class sets seen in training (a ring), and how many were written
            self.register_buffer("set_memory", torch.zeros(self.SET_MEMORY, num_classes, dtype=torch.uint8))
            self.register_buffer("sets_seen", torch.zeros((), dtype=torch.long))
        self.head = nn.Linear(z_dim + cond, channels[0] * self.base_h * self.base_w)
        self.head_norm = nn.Sequential(nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [Upsample2x(c_in, c_out, upsample, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.blocks = nn.Sequential(*blocks)
        self.to_logits = nn.Conv2d(channels[-1], num_classes, 3, padding=1)
        init_weights(self)

    def forward(self, z: torch.Tensor, sets: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_conditioning:
            if sets is None:
                raise ValueError("this layout generator is conditioned on class sets: pass sets (B, C)")
            z = torch.cat([z, sets.to(z.dtype)], 1)
        x = self.head(z).view(z.shape[0], -1, self.base_h, self.base_w)
        return self.to_logits(self.blocks(self.head_norm(x)))

    @torch.no_grad()
    def remember_class_sets(self, sets: torch.Tensor) -> None:
        """Write real class sets (B, C) 0/1 into the ring of the last `SET_MEMORY` ones."""
        # the rows are computed on the buffers' device: no host sync in the training step
        rows = (self.sets_seen + torch.arange(sets.shape[0], device=self.set_memory.device)) % self.SET_MEMORY
        self.set_memory[rows] = sets.to(self.set_memory.device, torch.uint8)
        self.sets_seen += sets.shape[0]

    def draw_class_sets(self, generators: list[torch.Generator]) -> torch.Tensor:
        """One remembered real class set per generator, uniformly -> (B, C) float on the module's device."""
        known = min(int(self.sets_seen), self.SET_MEMORY)
        if known == 0:
            raise ValueError("this class-conditioned layout generator remembers no real class sets "
                             "(it was never trained)")
        rows = torch.cat([torch.randint(known, (1,), generator=g) for g in generators])
        return self.set_memory[rows.to(self.set_memory.device)].float()
