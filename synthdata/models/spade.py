"""SPADE generator: spatially-adaptive normalisation driven by the layout (+ depth) map.

Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization". Used for the
depth stage (layout -> depth, 1 channel) and the image stage (layout + depth -> RGB, 3 channels).
`SPADEGenerator.fold_for_inference()` gives a copy for sampling without spectral-norm overhead.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from synthdata.models.blocks import base_grid, fold_spectral_norm, init_weights, maybe_spectral


def is_channels_last(x: torch.Tensor) -> bool:
    """Stored channels_last (and not also plain contiguous, as 1-channel or 1x1 maps are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def resize_cond(cond: torch.Tensor, size: tuple[int, int] | torch.Size,
                memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """`cond` at `size` by nearest neighbour (keeps one-hot layouts one-hot at coarse scales),
    in `memory_format`. (B, Ccond, H', W') -> (B, Ccond, *size)
    """
    if tuple(cond.shape[2:]) != tuple(size):
        cond = F.interpolate(cond, size=tuple(size), mode="nearest")
    return cond.contiguous(memory_format=memory_format)


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample, per-channel normalisation (no affine). On CPU, channels_last input goes
    through the group-norm kernel with one group per channel (the same statistics): CPU
    instance_norm has no channels_last kernel and is ~3x slower there. Autocast keeps both in the
    input's dtype on CPU (torch 2.14); on CUDA group_norm would be autocast to fp32, so
    instance_norm stays. (B, C, H, W) -> (B, C, H, W)
    """
    if x.device.type == "cpu" and is_channels_last(x):
        return F.group_norm(x, x.shape[1], eps=eps)
    return F.instance_norm(x, eps=eps)


class CondPyramid:
    """The conditioning map resized once per resolution and forward pass, shared by every SPADE
    layer at that resolution (each layer used to resize the full-resolution map itself)."""

    def __init__(self, cond: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format):
        self.cond, self.memory_format = cond, memory_format
        self.levels: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        size = (int(size[0]), int(size[1]))
        if size not in self.levels:
            self.levels[size] = resize_cond(self.cond, size, self.memory_format)
        return self.levels[size]


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if is_channels_last(x) else torch.contiguous_format


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

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The parameter-free part; blocks compute it once for norm_0 and norm_s (same input)."""
        return instance_norm(x, self.norm.eps)

    def modulate(self, normalized: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """`normalized * (1 + gamma) + beta` with gamma, beta from `cond` already at the features'
        size. The 1 is folded into gamma's bias (one elementwise pass fewer) and the rest is one
        addcmul. (B, C, H, W), (B, Ccond, H, W) -> (B, C, H, W)
        """
        h = self.shared(cond)
        g = self.gamma
        scale = F.conv2d(h, g.weight, None if g.bias is None else g.bias + 1, g.stride, g.padding)
        if g.bias is None:
            scale = scale + 1
        return torch.addcmul(self.beta(h), normalized, scale)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.modulate(self.normalize(x), resize_cond(cond, x.shape[2:], _format_of(x)))


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
        """`cond` at any size (resized here); `SPADEGenerator` passes it at x's size already."""
        cond = resize_cond(cond, x.shape[2:], _format_of(x))
        normalized = self.norm_0.normalize(x)  # norm_s normalises the same x
        skip = x if self.shortcut is None else self.shortcut(self.norm_s.modulate(normalized, cond))
        # In-place activations and residual add: their inputs are fresh tensors that autograd
        # does not keep (addcmul and conv do not save their outputs).
        dx = self.conv_0(F.leaky_relu_(self.norm_0.modulate(normalized, cond), 0.2))
        dx = self.conv_1(F.leaky_relu_(self.norm_1.modulate(self.norm_1.normalize(dx), cond), 0.2))
        return dx.add_(skip)


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
        # Features in channels_last (not state: set by `fold_for_inference`). With it the CPU
        # forward runs ~1.2-1.3x faster; training stays in the default format whatever the layout
        # of `cond` (one-hot maps arrive channels_last), because under bf16 autocast the
        # channels_last norm's backward made training steps ~25% slower (AMX CPU, 2026-12-01).
        self.channels_last = False

    def forward(self, cond: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(cond.shape[2:]) != self.size:
            raise ValueError(f"conditioning map is {tuple(cond.shape[2:])}, generator was built for {self.size}")
        b = cond.shape[0]
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        pyramid = CondPyramid(cond, fmt)  # every SPADE layer at one resolution shares its level
        base = (self.base_h, self.base_w)
        if self.z_dim > 0:
            if z is None:  # no noise given: a fresh draw (pass z for reproducible samples)
                z = torch.randn(b, self.z_dim, device=cond.device, dtype=cond.dtype)
            x = self.fc(z).view(b, -1, *base).contiguous(memory_format=fmt)
        else:
            x = self.fc(pyramid(base))
        x = self.middle(self.head(x, pyramid(base)), pyramid(base))
        for block in self.ups:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, pyramid(x.shape[2:]))
        return torch.tanh(self.to_out(F.leaky_relu_(x, 0.2)))

    def fold_for_inference(self, channels_last: bool | None = None) -> SPADEGenerator:
        """A copy for sampling: eval mode, no gradients, every spectral-normalised weight replaced
        by the plain weight it stands for (W / sigma with the stored singular vectors, which the
        eval forward otherwise recomputes at every call), and with `channels_last` (default: when
        the weights are on the CPU, where it was measured to pay) features and weights in
        channels_last. Same outputs as `self.eval()` (fp32: within 1e-5 relative, tested in
        tests/models/test_spade_fast.py). `self` is left as it was; keep training and saving it:
        the copy's state dict has `weight` where checkpoints have `weight_orig`, `_u`, `_v`.
        Under bf16 autocast the copy may also be cast with `.to(torch.bfloat16)` (autocast would
        round the weights the same way at every call).
        """
        was_training = self.training
        folded = copy.deepcopy(self.eval())
        self.train(was_training)
        fold_spectral_norm(folded).eval().requires_grad_(False)
        if channels_last is None:
            channels_last = self.to_out.weight.device.type == "cpu"
        if channels_last:
            folded.channels_last = True
            folded.to(memory_format=torch.channels_last)
        return folded
