"""Latent-space tools: lerp/slerp between codes, walks through the whole chain, layout inversion.

    pipe = load_pipeline(run_dir); codes = chain_codes(pipe, [3, 17])    # {stage: (2, z_dim)}
    frames = interpolate_chain(pipe, {k: v[0] for k, v in codes.items()},
                               {k: v[1] for k, v in codes.items()}, steps=8, mode="slerp")
    G, spec = pipe.generator("layout")
    inv = invert_layouts(G, layouts, z_dim=spec.z_dim)  # inv.z -> pipe.layouts_from_z(inv.z)

Command line (strip PNG + GIF): `python tools/interpolate.py run_dir=DIR seeds=3,17 ...`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from synthdata.core.seeding import torch_generator

INVERT_TAG = 0x1A7E  # seed domain of inversion starts


def _weights(t: float | torch.Tensor | list[float], like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """t as a tensor shaped to broadcast against `like` (T, 1, ..., 1), and whether t was 1-D."""
    t = torch.as_tensor(t, dtype=torch.float32, device=like.device)
    if t.dim() > 1:
        raise ValueError(f"t must be a number or a 1-D sequence of weights, got shape {tuple(t.shape)}")
    batched = t.dim() == 1
    return t.reshape(-1, *([1] * like.dim())) if batched else t, batched


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor | list[float]) -> torch.Tensor:
    """(1 - t) a + t b. a, b (..., D); t a number -> (..., D), or T weights -> (T, ..., D)."""
    if a.shape != b.shape:
        raise ValueError(f"codes differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    w, batched = _weights(t, a)
    out = (1.0 - w) * a.float() + w * b.float()
    return out if batched else out.reshape(a.shape)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor | list[float],
          eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation along the last axis (Shoemake 1985; for GAN latents White 2016,
    "Sampling Generative Networks"): the path keeps Gaussian codes at a typical norm, where a
    straight line would pass through the low-norm middle the generator rarely saw. Unit vectors
    stay unit. a, b (..., D); t a number -> (..., D), or T weights -> (T, ..., D). (Nearly)
    parallel codes fall back to lerp, where the two agree."""
    if a.shape != b.shape:
        raise ValueError(f"codes differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.float(), b.float()
    w, batched = _weights(t, a)
    cos = F.cosine_similarity(a, b, dim=-1, eps=1e-12).clamp(-1.0, 1.0).unsqueeze(-1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < eps
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1.0 - w, torch.sin((1.0 - w) * omega) / safe)
    wb = torch.where(parallel, w, torch.sin(w * omega) / safe)
    out = wa * a + wb * b
    return out if batched else out.reshape(a.shape)


INTERPOLATIONS: dict[str, Callable[..., torch.Tensor]] = {"lerp": lerp, "slerp": slerp}


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str = "slerp") -> torch.Tensor:
    """`steps` codes from a to b inclusive, evenly spaced in t: (D,) -> (steps, D)."""
    if mode not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation mode {mode!r}. Valid modes: {', '.join(INTERPOLATIONS)}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (the two end points), got {steps}")
    return INTERPOLATIONS[mode](a, b, torch.linspace(0.0, 1.0, steps))


def chain_codes(pipe: Any, seeds: list[int]) -> dict[str, torch.Tensor]:
    """The codes each stage of `pipe` draws for `seeds`: {"layout", "depth", "image"} -> (B, z_dim);
    stages without noise (z_dim 0) or not trained (depth of a no-depth run) are left out."""
    codes = {}
    for stage in ("layout", "depth", "image"):
        if stage == "depth" and not pipe.has_depth:
            continue
        z = pipe.noise(stage, seeds)
        if z is not None:
            codes[stage] = z
    return codes


def interpolate_chain(pipe: Any, start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], *,
                      steps: int = 8, mode: str = "slerp") -> dict[str, torch.Tensor | None]:
    """Interpolate every stage's code from `start` to `end` ({stage: (z_dim,)}, as one row of
    `chain_codes`) and decode the chain: {"layout": (steps, H, W) int64, "depth": (steps, H, W)
    metres or None, "image": (steps, 3, H, W) in [0, 1]}, on the pipeline's device."""
    if "layout" not in start or "layout" not in end:
        raise ValueError("interpolate_chain needs a layout code at both ends")
    codes = {k: interpolate(start[k], end[k], steps, mode) for k in start if k in end}
    layouts = pipe.layouts_from_z(codes["layout"])
    noise = {k: v for k, v in codes.items() if k != "layout"}
    return pipe.from_layouts(layouts, [0] * steps, noise=noise)


@dataclass
class Inversion:
    """Best codes found for B targets: z (B, z_dim), their cross-entropy (B,) and pixel
    accuracy (B,) (over labelled pixels) of the argmax layout against the target."""

    z: torch.Tensor
    loss: torch.Tensor
    accuracy: torch.Tensor


def _pixel_ce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Mean cross-entropy per sample over labelled pixels: (N, C, H, W), (N, H, W) -> (N,)."""
    ce = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    valid = (target != ignore_index).flatten(1).sum(1).clamp(min=1)
    return ce.flatten(1).sum(1) / valid


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Fraction of labelled pixels where pred == target: (B, H, W) each -> (B,)."""
    valid = target != ignore_index
    hits = ((pred == target) & valid).flatten(1).sum(1).float()
    return hits / valid.flatten(1).sum(1).clamp(min=1).float()


def invert_layouts(generator: torch.nn.Module, targets: torch.Tensor, *, z_dim: int, starts: int = 64,
                   steps: int = 100, lr: float = 0.01, ignore_index: int = 255, seed: int = 0,
                   chunk: int | None = None, progress: bool = True) -> Inversion:
    """Codes z whose layouts match `targets` (B, H, W) long: for each target, `starts` codes
    drawn from N(0, I) are optimised with Adam (`lr`, `steps` steps) to minimise the per-pixel
    cross-entropy of `generator(z)` (B, C, H, W) to the target; the lowest loss seen wins, as in
    the layout-prediction paper. `chunk` bounds how many starts run at once (memory). Starts
    depend only on (seed, target index). The generator runs in eval mode with frozen weights."""
    if getattr(generator, "class_conditioning", False):
        raise ValueError("layout inversion needs an unconditional layout generator; this one is "
                         "class-conditioned (stages.layout.class_conditioning)")
    if targets.dim() != 3:
        raise ValueError(f"targets must be (B, H, W) class indices, got shape {tuple(targets.shape)}")
    if starts < 1 or steps < 0:
        raise ValueError(f"need starts >= 1 and steps >= 0, got starts={starts}, steps={steps}")
    device = next(generator.parameters()).device
    targets = targets.to(device).long().clone()  # a normal tensor even if made in inference mode
    chunk = max(1, min(chunk or starts, starts))
    was_training = generator.training
    flags = [p.requires_grad for p in generator.parameters()]
    generator.eval().requires_grad_(False)  # batch-norm statistics must not mix the starts
    bar = None
    if progress:

        bar = tqdm(total=len(targets) * math.ceil(starts / chunk) * steps, desc="inverting layouts", unit="step")
    best_z, best_loss = [], []
    try:
        with torch.enable_grad():
            for i, target in enumerate(targets):
                z0 = torch.randn(starts, z_dim, generator=torch_generator(seed, INVERT_TAG, i)).to(device)
                z, loss = _best_of(generator, z0, target, steps=steps, lr=lr, chunk=chunk,
                                   ignore_index=ignore_index, bar=bar)
                best_z.append(z)
                best_loss.append(loss)
    finally:
        if bar is not None:
            bar.close()
        for p, flag in zip(generator.parameters(), flags):
            p.requires_grad_(flag)
        generator.train(was_training)
    z = torch.stack(best_z)
    with torch.no_grad():
        pred = _eval_logits(generator, z).argmax(1)
    return Inversion(z=z, loss=torch.stack(best_loss), accuracy=pixel_accuracy(pred, targets, ignore_index))


def _eval_logits(generator: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    was_training = generator.training
    generator.eval()
    try:
        return generator(z)
    finally:
        generator.train(was_training)


def _best_of(generator: torch.nn.Module, z0: torch.Tensor, target: torch.Tensor, *, steps: int, lr: float,
             chunk: int, ignore_index: int, bar: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise the starts z0 (S, z_dim) against one target (H, W); best code (z_dim,) and loss."""
    best_z, best_loss = z0[0], torch.tensor(float("inf"), device=z0.device)
    for part in z0.split(chunk):
        z = part.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        tgt = target.expand(len(z), -1, -1)
        for step in range(steps + 1):  # the last pass only scores the final codes
            loss = _pixel_ce(generator(z), tgt, ignore_index)
            low, where = loss.detach().min(0)
            if low < best_loss:  # losses belong to the codes before this step's update
                best_loss, best_z = low, z.detach()[where].clone()
            if step == steps:
                break
            opt.zero_grad(set_to_none=True)
            # Summed, not averaged: Adam is per-coordinate, so each start follows its own path.
            loss.sum().backward()
            opt.step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(best_ce=f"{float(best_loss):.3f}", refresh=False)
    return best_z, best_loss
