"""CycleGAN pieces: the history pool of fakes, least-squares GAN losses and one training step.

Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks": two generators (A -> B, B -> A), two PatchGAN discriminators, LSGAN losses (Mao et
al. 2017), cycle and identity L1 terms, and discriminators fed from a pool of 50 past fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ImagePool:
    """A buffer of up to `size` past generated batches' images (Shrivastava et al. 2017).

    `query(fakes (B, C, H, W))` returns a batch of the same shape where each image is, with
    probability 1/2 once the pool is full, swapped for a stored older fake (which the new one
    replaces): the discriminator then sees the generator's history, not only its latest state.
    Randomness comes from a seeded `torch.Generator`, and the pool has `state_dict()` /
    `load_state_dict()` (tensors and numbers only) so a resumed run continues it exactly.
    """

    def __init__(self, size: int = 50, seed: int = 0):
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        fakes = fakes.detach()
        if self.size == 0:
            return fakes
        out = []
        for image in fakes:
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.cpu().clone())
                out.append(image)
                continue
            if float(torch.rand((), generator=self.generator)) < 0.5:
                i = int(torch.randint(len(self.images), (), generator=self.generator))
                old = self.images[i].to(image.device, image.dtype)
                self.images[i] = image.cpu().clone()
                out.append(old)
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [t.clone() for t in self.images],
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = int(state["size"])
        self.images = [t.clone() for t in state["images"]]
        self.generator.set_state(state["generator"])


def lsgan_d_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Least-squares discriminator loss: 0.5 * (E[(D(x) - 1)^2] + E[D(G(z))^2])."""
    real_pred, fake_pred = real_pred.float(), fake_pred.float()
    return 0.5 * (F.mse_loss(real_pred, torch.ones_like(real_pred)) + F.mse_loss(fake_pred, torch.zeros_like(fake_pred)))


def lsgan_g_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """Least-squares generator loss: E[(D(G(z)) - 1)^2]."""
    fake_pred = fake_pred.float()
    return F.mse_loss(fake_pred, torch.ones_like(fake_pred))


@dataclass
class CycleGANWeights:
    """Loss weights: cycle L1 (lambda, 10 in the paper) and identity L1 (a fraction of it, 0.5)."""

    cycle: float = 10.0
    identity: float = 0.5


def cycle_losses(G_ab: nn.Module, G_ba: nn.Module, real_a: torch.Tensor, real_b: torch.Tensor,
                 *, weights: CycleGANWeights) -> dict[str, torch.Tensor]:
    """The generators' reconstruction terms and fakes for domains A (B, Ca, H, W) and B (B, Cb, H, W).

    Returns `fake_a`, `fake_b` (for the discriminators), `cycle` (L1 of A -> B -> A plus
    B -> A -> B) and `identity` (L1 of G_ab(b) vs b and G_ba(a) vs a; only when Ca == Cb and
    its weight is nonzero, else 0).
    """
    fake_b, fake_a = G_ab(real_a), G_ba(real_b)
    cycle = F.l1_loss(G_ba(fake_b).float(), real_a.float()) + F.l1_loss(G_ab(fake_a).float(), real_b.float())
    identity = cycle.new_zeros(())
    if weights.identity > 0 and real_a.shape[1] == real_b.shape[1]:
        identity = F.l1_loss(G_ab(real_b).float(), real_b.float()) + F.l1_loss(G_ba(real_a).float(), real_a.float())
    return {"fake_a": fake_a, "fake_b": fake_b, "cycle": cycle, "identity": identity}


def cyclegan_step(nets: dict[str, nn.Module], opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                  real_a: torch.Tensor, real_b: torch.Tensor, *, weights: CycleGANWeights,
                  pools: tuple[ImagePool, ImagePool], backward=None) -> dict[str, torch.Tensor]:
    """One CycleGAN update: generators (adversarial + cycle + identity), then both discriminators
    on pooled fakes. `nets`: G_ab, G_ba, D_a (judges domain A), D_b. `backward`: e.g.
    `accelerator.backward` (default `loss.backward()`). Returns detached scalars."""
    backward = backward or (lambda loss: loss.backward())
    G_ab, G_ba, D_a, D_b = nets["G_ab"], nets["G_ba"], nets["D_a"], nets["D_b"]
    D_a.requires_grad_(False)  # the generators' loss must not leave gradients in the critics
    D_b.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    terms = cycle_losses(G_ab, G_ba, real_a, real_b, weights=weights)
    adv = lsgan_g_loss(D_b(terms["fake_b"])) + lsgan_g_loss(D_a(terms["fake_a"]))
    loss_g = adv + weights.cycle * (terms["cycle"] + weights.identity * terms["identity"])
    backward(loss_g)
    opt_g.step()
    D_a.requires_grad_(True)
    D_b.requires_grad_(True)

    opt_d.zero_grad(set_to_none=True)
    pool_a, pool_b = pools
    fake_a, fake_b = pool_a.query(terms["fake_a"]), pool_b.query(terms["fake_b"])
    loss_d = lsgan_d_loss(D_a(real_a), D_a(fake_a)) + lsgan_d_loss(D_b(real_b), D_b(fake_b))
    backward(loss_d)
    opt_d.step()
    return {"g": adv.detach(), "cycle": terms["cycle"].detach(), "identity": terms["identity"].detach(),
            "d": loss_d.detach()}
