"""Segmenters: segmentation-models-pytorch models behind one typed builder and loader (a floor below
generation, metrics and segmentation, which all load segmenters; their training is `synthdata.segmentation`).

`build_segmenter(cfg, num_classes=C)` wraps any smp architecture/encoder in `Segmenter`, which
takes images in [0, 1], normalises them, pads to the encoder's output stride and returns logits.
Models are always built with `encoder_weights=None`; ImageNet weights come only from a local file.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from torch import nn

from synthdata.core.checkpoint import check_classes, load_checkpoint
from synthdata.core.contract import CheckpointError, ClassInfo, ConfigError
from synthdata.core.recipe import SegModelConfig

# The statistics every ImageNet-trained smp/timm encoder expects.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_UNET_DECODER = (256, 128, 64, 32, 16)  # smp's Unet default, truncated for shallower encoders


def architectures() -> list[str]:
    """The architecture names smp offers (its own registry), lower case."""

    return sorted(smp.MODEL_ARCHITECTURES_MAPPING)


def encoders() -> list[str]:
    """smp's native encoder names; any timm model also works as `tu-<timm name>`."""

    return sorted(smp.encoders.get_encoder_names())


def _unknown(kind: str, name: str, valid: list[str], extra: str = "") -> ConfigError:
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown segmenter {kind} '{name}'.{hint} Valid names: {', '.join(valid)}{extra}")


def _check_encoder(name: str) -> None:
    if name.startswith("tu-"):

        if not timm.list_models(name[3:].split(".")[0]):
            raise ConfigError(f"seg.model.encoder '{name}': timm has no model '{name[3:]}'")
        return
    valid = encoders()
    if name not in valid:
        raise _unknown("encoder", name, valid, "; or any timm model as 'tu-<name>'")


class Segmenter(nn.Module):
    """An smp model that takes `images (B, 3, H, W)` in [0, 1] and returns `logits (B, C, H, W)`.

    Images are normalised with ImageNet statistics and reflect-padded to a multiple of the
    encoder's output stride (32 for depth 5; most smp models refuse other sizes); the logits are
    cropped back to (H, W).
    """

    def __init__(self, model: nn.Module, *, num_classes: int, channels_last: bool = False):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.num_classes = num_classes
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # padded even where smp would accept any size, so every architecture sees the same input
        self.multiple = int(getattr(model.encoder, "output_stride", 32))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Segmenter expects images (B, 3, H, W), got {tuple(images.shape)}")
        x = (images - self.mean) / self.std
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.multiple, (-w) % self.multiple
        if pad_h or pad_w:
            # reflect needs pad < size; tiny inputs fall back to replicate
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        logits = self.model(x.contiguous(memory_format=self.memory_format))
        return logits[..., :h, :w]


def build_segmenter(cfg: SegModelConfig, *, num_classes: int) -> Segmenter:
    """An smp model for `num_classes` classes, named by `cfg.arch` and `cfg.encoder`.

    `cfg.encoder_weights`: None (random init) or a path to a local encoder state_dict file.
    """

    arch = cfg.arch.lower()
    if arch not in smp.MODEL_ARCHITECTURES_MAPPING:
        raise _unknown("architecture", cfg.arch, architectures())
    _check_encoder(cfg.encoder)
    model_cls = smp.MODEL_ARCHITECTURES_MAPPING[arch]
    params = inspect.signature(model_cls.__init__).parameters
    kwargs: dict[str, Any] = {}
    if cfg.encoder_depth != 5:
        if "encoder_depth" not in params:
            raise ConfigError(f"seg.model.encoder_depth: architecture '{arch}' has a fixed depth")
        kwargs["encoder_depth"] = cfg.encoder_depth
    decoder = cfg.decoder_channels
    if decoder is None and "encoder_depth" in kwargs and arch in ("unet", "unetplusplus"):
        decoder = list(_UNET_DECODER[5 - cfg.encoder_depth :])
    if decoder is not None:
        if "decoder_channels" not in params:
            raise ConfigError(f"seg.model.decoder_channels: architecture '{arch}' takes no such option")
        default = params["decoder_channels"].default
        kwargs["decoder_channels"] = decoder if isinstance(default, (list, tuple)) else int(decoder[0])
    try:
        # never let smp download anything: weights only from the local file below
        model = model_cls(encoder_name=cfg.encoder, encoder_weights=None, classes=num_classes, **kwargs)
    except (ValueError, KeyError, AssertionError, RuntimeError) as e:
        raise ConfigError(f"cannot build seg.model {arch}/{cfg.encoder} with {kwargs}: {e}") from e
    if cfg.encoder_weights is not None:
        load_encoder_weights(model.encoder, cfg.encoder_weights)
    segmenter = Segmenter(model, num_classes=num_classes, channels_last=cfg.channels_last)
    freeze_unused(segmenter)
    return segmenter


def freeze_unused(model: nn.Module) -> list[str]:
    """Stop gradients to parameters the forward pass never uses (e.g. resnet stages beyond
    `encoder_depth`, which smp keeps): DistributedDataParallel fails on them otherwise."""
    size = 2 * getattr(model, "multiple", 32)
    was_training = model.training
    model.eval()  # batch-norm statistics stay untouched by the probe
    try:
        model(torch.rand(2, 3, size, size)).sum().backward()
    except (RuntimeError, ValueError):  # models that need other input sizes: leave them alone
        return []
    finally:
        model.train(was_training)
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, p in model.named_parameters():
        p.grad = None
        if name in unused:
            p.requires_grad_(False)
    return unused


def load_encoder_weights(encoder: nn.Module, path: str | os.PathLike) -> None:
    """Load a local encoder state_dict (e.g. torchvision's resnet18 ImageNet file) into `encoder`.

    Accepts a bare state_dict or one nested under "state_dict"/"model"; classifier keys are
    dropped; an "encoder." prefix is stripped. Missing encoder keys are an error.
    """
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"seg.model.encoder_weights: '{path}' is not a local file. synthdata never downloads "
            "weights: save the encoder's ImageNet state_dict (e.g. torchvision's resnet18-f37072fd.pth) "
            "and pass its path, or use encoder_weights=null for random initialisation."
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"seg.model.encoder_weights: cannot read {file}: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"seg.model.encoder_weights: {file} does not hold a state_dict")
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier.", "head."))}
    # computed here: some smp encoders override load_state_dict and return nothing
    expected = set(encoder.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if not missing:
        encoder.load_state_dict(state, strict=False)
    else:
        raise ConfigError(
            f"seg.model.encoder_weights: {file} lacks {len(missing)} encoder weights "
            f"(e.g. {missing[:3]}); is it for another encoder? Unexpected keys: {unexpected[:3]}"
        )


def segmenter_arch(cfg: SegModelConfig) -> dict[str, Any]:
    """The `arch` entry of a segmenter checkpoint (encoder weights are inside the state dict)."""
    arch = dataclasses.asdict(cfg)
    arch["encoder_weights"] = None
    return arch


def load_segmenter(
    path: str | os.PathLike, expected: ClassInfo | None = None, device: str | torch.device = "cpu"
) -> tuple[Segmenter, dict[str, Any]]:
    """Rebuild a segmenter from a portable checkpoint (kind "segmenter"), in eval mode.

    `expected`: the classes the caller will use it for; another class list raises CheckpointError.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    if ckpt.get("kind") != "segmenter":
        raise CheckpointError(f"{path} is a '{ckpt.get('kind')}' checkpoint, not a segmenter")
    if expected is not None:
        check_classes(ckpt, expected, path)
    classes = ClassInfo.from_dict(ckpt["classes"])
    fields = {f.name for f in dataclasses.fields(SegModelConfig)}
    arch = {k: v for k, v in (ckpt.get("arch") or {}).items() if k in fields}
    arch["encoder_weights"] = None
    model = build_segmenter(SegModelConfig(**arch), num_classes=classes.num_classes)
    weights = ckpt["ema"] if ckpt.get("ema") else ckpt["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {arch}: {e}") from e
    return model.to(device).eval(), ckpt
