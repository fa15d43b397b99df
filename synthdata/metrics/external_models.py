"""Segmenters that are not synthdata checkpoints, for `evaluate miou model=...` and the Python API:
a TorchScript file (`torch.jit.load`, which runs no pickled Python), an importable factory
`package.module:callable` (user code, imported only because the user named it), or any torch module
or callable, wrapped as one `nn.Module` that checks its logits.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from synthdata.core.contract import ConfigError
from synthdata.data.shards import sha256_file

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit")
FORMS = "a TorchScript file PATH.pt (torch.jit.save) or package.module:callable (a factory returning a torch module)"


class ExternalSegmenter(nn.Module):
    """`model` (a torch module or any callable: images float (B, 3, H, W) in [0, 1] -> logits
    (B, C, H, W)) as a segmenter: a torch module is a submodule (moved, put in eval mode and
    autocast like ours); logits of another size are resized bilinearly to (H, W), as the evaluation
    does for every segmenter; anything but a (B, num_classes, h, w) tensor raises ConfigError."""

    def __init__(self, model: nn.Module | Callable[[torch.Tensor], torch.Tensor], *, num_classes: int, name: str):
        super().__init__()
        if not callable(model):
            raise ConfigError(f"{name}: a segmenter must be a torch module or a callable, got {type(model).__name__}")
        self.model = model  # an nn.Module registers as a submodule; a function stays a plain attribute
        self.num_classes, self.name = int(num_classes), name
        self.train(model.training if isinstance(model, nn.Module) else False)  # evaluation restores this mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 4 or logits.shape[0] != images.shape[0] \
                or logits.shape[1] != self.num_classes:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ConfigError(f"{self.name}: images {tuple(images.shape)} gave {got}; a segmenter must return logits "
                              f"(B, C, H, W) with C = {self.num_classes} classes of the recipe")
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def describe(model: Any) -> dict[str, Any]:
    """What a report records of a model given as a Python object: its type."""
    kind = type(model)
    return {"kind": "python object", "type": f"{kind.__module__}.{kind.__qualname__}"}


def load_torchscript(path: str | os.PathLike, *, key: str = "model") -> tuple[nn.Module, dict[str, Any]]:
    """`(module, description)` of a TorchScript file, loaded on the CPU; `key` names the argument in
    errors. A pickle or a synthdata checkpoint is refused, never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such file ({FORMS})")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export, not removed
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{key}={path}: not a TorchScript file ({first[:160]}); save one with "
                          "torch.jit.save(torch.jit.script(model), PATH), or give a synthdata checkpoint as "
                          "checkpoint=PATH") from e
    return module, {"kind": "torchscript", "path": str(path), "sha256": sha256_file(path)}


def load_factory(spec: str, *, key: str = "model") -> tuple[Any, dict[str, Any]]:
    """`(model, description)` from `package.module:callable`: imports the module (user code: it runs
    because the user named it; the current directory is searched too) and calls the callable with no
    arguments; a torch module found there is taken as it is."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".") + attr.split(".")):
        raise ConfigError(f"{key}={spec}: expected {FORMS}")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{key}={spec}: cannot import module '{module_name}' ({type(e).__name__}: {e}); "
                          "install it or put its folder on PYTHONPATH") from e
    finally:
        if added:
            sys.path.remove(cwd)
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{key}={spec}: module '{module_name}' has no '{attr}'")
        target = getattr(target, part)
    if isinstance(target, nn.Module):
        model = target
    elif callable(target):
        try:
            model = target()
        except Exception as e:
            raise ConfigError(f"{key}={spec}: calling {attr}() failed ({type(e).__name__}: {e})") from e
    else:
        raise ConfigError(f"{key}={spec}: '{attr}' is a {type(target).__name__}, not a callable that returns a model")
    if not callable(model):
        raise ConfigError(f"{key}={spec}: {attr}() returned a {type(model).__name__}, not a torch module or callable")
    return model, {"kind": "factory", "factory": spec, "module_file": getattr(module, "__file__", None),
                   "type": f"{type(model).__module__}.{type(model).__qualname__}"}


def external_form(value: Any, *, key: str = "model") -> str:
    """`torchscript` or `factory`: which form a `model=` value of the command line has."""
    text = "" if value is None else str(value).strip()
    if text.endswith(TORCHSCRIPT_SUFFIXES) or os.sep in text or Path(text).is_file():
        return "torchscript"
    if ":" in text:
        return "factory"
    raise ConfigError(f"{key}={text}: expected {FORMS}" if text else f"{key}= is empty: expected {FORMS}")


def load_external(value: Any, *, key: str = "model") -> tuple[Any, dict[str, Any]]:
    """`model=` of the command line: a TorchScript file or `package.module:callable`."""
    if external_form(value, key=key) == "torchscript":
        return load_torchscript(str(value).strip(), key=key)
    return load_factory(str(value).strip(), key=key)
