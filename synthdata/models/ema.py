"""Exponential moving average of a generator's weights, used for sampling.

Averaged generators give visibly better samples (Karras et al. 2018, progressive GAN;
Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training").
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel (`.module`) or torch.compile (`._orig_mod`)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


class EMA:
    """`ema.module` holds `decay * ema + (1 - decay) * model` for every parameter after each
    `update(model)`. Buffers (batch-norm statistics, spectral-norm vectors) are copied, not
    averaged: an average of spectral-norm singular vectors is no longer a unit vector.

    Given the optimisation `step`, the decay warms up as min(decay, (1 + step) / (10 + step)), so
    that short runs are not dominated by the initial weights (0.999 would keep 55% of them after
    600 steps); the step comes from the caller, so resumed runs average exactly as uninterrupted ones.

    The copy lives in eval mode with gradients off. `state_dict()` is the averaged module's
    state dict (what portable checkpoints store under "ema").
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        model = unwrap(model)
        decay = self.decay if step is None else min(self.decay, (1.0 + step) / (10.0 + step))
        params = dict(model.named_parameters())
        averages = [value for _, value in self.module.named_parameters()]
        current = [params[name].detach().to(value.device, value.dtype) for name, value in self.module.named_parameters()]
        # one fused kernel per dtype and device instead of one per tensor (hundreds on a GPU per step)
        torch._foreach_lerp_(averages, current, 1.0 - decay)
        buffers = dict(model.named_buffers())
        mine = [value for _, value in self.module.named_buffers()]
        if mine:  # copy_ also moves across devices
            torch._foreach_copy_(mine, [buffers[name] for name, _ in self.module.named_buffers()])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)

    def to(self, device: str | torch.device) -> EMA:
        self.module.to(device)
        return self
