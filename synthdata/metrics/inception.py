"""The FID Inception network (pytorch-fid's TF-Inception port), built with no download.

pytorch-fid's `InceptionV3(use_fid_inception=True)` fetches its weights from the network; here the
same architecture is built empty and loaded from a local file (`eval.fid_weights` or the torch hub
cache), and a missing or foreign file stops with a message naming it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torchvision

from synthdata.core.contract import CheckpointError

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"


class FIDWeightsError(CheckpointError):
    """The Inception weights file is absent or is not pytorch-fid's FID Inception."""


def default_weights_path() -> Path:
    """Where torch hub would cache the file: `$TORCH_HOME/hub/checkpoints/pt_inception-...pth`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME


def resolve_weights(path: str | os.PathLike | None) -> Path:
    """The weights file to use; stops with where to put it when absent (never downloads)."""
    target = Path(path).expanduser() if path else default_weights_path()
    if not target.is_file():
        from pytorch_fid.inception import FID_WEIGHTS_URL  # noqa: PLC0415  (pytorch-fid only when FID is asked for)

        raise FIDWeightsError(
            f"FID needs the Inception weights file {WEIGHTS_FILENAME}, not found at {target}. "
            f"synthdata never downloads it: fetch it on a machine with network ({FID_WEIGHTS_URL}) "
            f"and put it at {default_weights_path()} or pass eval.fid_weights=PATH."
        )
    return target


class FIDInception(torch.nn.Module):
    """pytorch-fid's `InceptionV3` cut at the block giving `dims` features: (B, 3, H, W) in
    [0, 1] -> (B, dims). Inputs of any size are resized bilinearly to 299x299 (as pytorch-fid's
    `resize_input=True`) and scaled to [-1, 1]; lower blocks are average-pooled like its
    `get_activations`."""

    def __init__(self, net: torch.nn.Module, dims: int = 2048):
        super().__init__()
        from pytorch_fid.inception import InceptionV3  # noqa: PLC0415  (pytorch-fid only when FID is asked for)

        if dims not in InceptionV3.BLOCK_INDEX_BY_DIM:
            raise ValueError(f"eval.fid_dims must be one of {sorted(InceptionV3.BLOCK_INDEX_BY_DIM)}, got {dims}")
        block = InceptionV3.BLOCK_INDEX_BY_DIM[dims]
        pool = torch.nn.MaxPool2d(kernel_size=3, stride=2)
        layers = [net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, pool]
        if block >= 1:
            layers += [net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, torch.nn.MaxPool2d(kernel_size=3, stride=2)]
        if block >= 2:
            layers += [net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a]
            layers += [net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e]
        if block >= 3:
            layers += [net.Mixed_7a, net.Mixed_7b, net.Mixed_7c]
        self.features = torch.nn.Sequential(*layers)
        self.dims = dims

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
        x = self.features(2 * x - 1)
        return torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)


def fid_inception_architecture() -> torch.nn.Module:
    """The FID Inception network (pytorch-fid's `fid_inception_v3`) with no weights loaded."""
    from pytorch_fid import inception as pf  # noqa: PLC0415  (pytorch-fid only when FID is asked for)

    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


def load_inception(weights: str | os.PathLike | None = None, *, dims: int = 2048, device: str = "cpu") -> FIDInception:
    """The FID feature network with weights from a local file (see `resolve_weights`)."""
    path = resolve_weights(weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = fid_inception_architecture()
        net.load_state_dict(state)
    except Exception as e:  # corrupt file, a dict of other tensors, wrong shapes
        detail = str(e).strip().splitlines()
        raise FIDWeightsError(
            f"{path} is not the pytorch-fid Inception weights ({WEIGHTS_FILENAME}): "
            + " ".join(detail[:3])[:400]
        ) from e
    return FIDInception(net, dims).eval().to(device)


def weights_id(path: Path, dims: int) -> str:
    """Identifies the feature network in cache keys: the weights' sha256, size and `dims`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return f"inception-{dims}-{digest.hexdigest()[:16]}-{path.stat().st_size}"
