"""How every command scores a segmenter: the evaluation reader and window of a recipe, mIoU over
all processes, per-image IoU (the SEM workflow's metric), the provenance a report pins, and the
report itself. `segment`, `refine`, `translate`, `study` and `evaluate miou` all call
`evaluate_and_report`, so their numbers are comparable.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import accelerate
import segmentation_models_pytorch as smp
import torch
from torch import nn

import synthdata
from synthdata.core.contract import ClassInfo, ConfigError, DatasetError
from synthdata.core.imageops import protocol
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import recipe_to_dict
from synthdata.core.runtime import machine_description
from synthdata.data.loader import Source, make_loader
from synthdata.data.readers.base import DatasetReader, make_reader
from synthdata.data.shards import sha256_file
from synthdata.metrics.miou import (
    FLIP_DIMS,
    MIOU_CONVENTION,
    ConfusionMatrix,
    evaluate_segmenter,
    flip_views,
    predict_logits,
)
from synthdata.metrics.report import write_report


def versions() -> dict[str, str]:

    return {"synthdata": synthdata.__version__, "torch": torch.__version__, "smp": smp.__version__,
            "accelerate": accelerate.__version__}


def eval_reader(recipe: Recipe, split: str) -> DatasetReader:
    """`split` of the recipe's dataset at the evaluation resolution (eval.height/width)."""
    data = dataclasses.replace(recipe.data, height=recipe.eval.height or recipe.data.height,
                               width=recipe.eval.width or recipe.data.width)
    reader = make_reader(data, split)
    if len(reader) == 0:
        raise DatasetError(f"{recipe.data.reader}: evaluation split '{split}' is empty")
    return reader


def eval_window(recipe: Recipe) -> tuple[int, int] | None:
    if not recipe.eval.sliding_window:
        return None
    window = recipe.eval.window or ([recipe.seg.crop_height, recipe.seg.crop_width]
                                    if recipe.seg.crop_height and recipe.seg.crop_width else None)
    if not window or len(window) != 2:
        raise ConfigError("eval.sliding_window needs eval.window=[H, W] (or seg.crop_height/width)")
    return int(window[0]), int(window[1])


def eval_flips(recipe: Recipe) -> tuple[str, ...]:
    """`eval.flips`, checked: test-time flips whose views' logits are averaged."""
    flips = recipe.eval.flips or []
    if not isinstance(flips, list) or any(f not in FLIP_DIMS for f in flips) or len(set(flips)) != len(flips):
        raise ConfigError(f"eval.flips must be a list of distinct {' / '.join(FLIP_DIMS)}, got {flips!r}")
    return tuple(flips)


def inference_protocol(window: tuple[int, int] | None, flips: tuple[str, ...]) -> str:
    """How a report's predictions were made, e.g. `full image + flips horizontal, vertical (4 views)`."""
    text = f"sliding window {window[0]}x{window[1]}" if window else "full image"
    if flips:
        text += f" + flips {', '.join(flips)} ({len(flip_views(flips))} views, mean logits)"
    return text


def run_info(recipe: Recipe, *, checkpoint: str | Path | None, split: str, num_images: int,
             window: tuple[int, int] | None, accelerator: Any = None, split_note: str | None = None) -> dict[str, Any]:
    """What a report pins: recipe, checkpoint hash (None for a model that is no synthdata checkpoint:
    the caller's `info["model"]` says what it was), seeds, versions, machine and the evaluation
    protocol; `split_note`: the evaluation reader's, when its split is not a split of the dataset's
    own (`data.val_fraction`, or the training images themselves)."""
    height = recipe.eval.height or recipe.data.height
    width = recipe.eval.width or recipe.data.width
    return {
        "recipe_name": recipe.name,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoint_sha256": None if checkpoint is None else sha256_file(checkpoint),
        "dataset": recipe.data.reader,
        "split": split,
        "seed": recipe.seed,
        "processes": accelerator.num_processes if accelerator is not None else 1,
        "mixed_precision": str(accelerator.mixed_precision) if accelerator is not None else "no",
        "protocol": {
            "resolution": f"{height}x{width}",
            "resize_filters": protocol(),
            "inference": inference_protocol(window, eval_flips(recipe)),
            "ignore_index": recipe.data.ignore_index,
            "num_images": num_images,
            "miou_convention": MIOU_CONVENTION,
            **({"held_out": split_note} if split_note else {}),
        },
        "versions": versions(),
        "machine": machine_description(accelerator.device if accelerator is not None else "cpu"),
        "recipe": recipe_to_dict(recipe),
    }


@torch.no_grad()
def image_ious(model: nn.Module, reader, *, num_classes: int, ignore_index: int,
               window: tuple[int, int] | None, device, flips: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Per-image IoU: `[{"id", "per_class_iou": [C floats, NaN where a class is in neither the
    prediction nor the ground truth]}]` over every sample of `reader` (this process only)."""

    was_training = model.training
    model.eval()
    loader = make_loader(Source(reader=reader, name="eval"), batch_size=1, augment=False, shuffle=False,
                         rank=0, world_size=1)
    out = []
    for batch in loader:
        logits = predict_logits(model, batch["image"].to(device), num_classes=num_classes, window=window, flips=flips)
        cm = ConfusionMatrix(num_classes, ignore_index, device=device)
        cm.update(logits.argmax(1), batch["layout"].to(device))
        out.append({"id": batch["key"][0], "per_class_iou": cm.compute()["per_class_iou"]})
    model.train(was_training)
    return out


def _nanmean(values: list[float]) -> float | None:
    kept = [v for v in values if v is not None and v == v]
    return sum(kept) / len(kept) if kept else None


def image_iou_summary(model: nn.Module, reader, *, window: tuple[int, int] | None, device,
                      flips: tuple[str, ...] = ()) -> dict[str, Any]:
    """`{"per_image": image_ious(...), "mean_per_class": [C means over the images where the class
    occurs, None where it never does]}` for every sample of `reader` (this process only)."""
    classes = reader.classes
    per_image = image_ious(model, reader, num_classes=classes.num_classes, ignore_index=classes.ignore_index,
                           window=window, device=device, flips=flips)
    means = [_nanmean([p["per_class_iou"][c] for p in per_image]) for c in range(classes.num_classes)]
    return {"per_image": per_image, "mean_per_class": means}


def image_iou_info(summary: dict[str, Any], classes: ClassInfo) -> dict[str, float | None]:
    """Report entries `mean image IoU NAME` (rounded to 4 digits) from `image_iou_summary`."""
    return {f"mean image IoU {name}": None if m is None else round(m, 4)
            for name, m in zip(classes.names, summary["mean_per_class"])}


def format_image_iou(summary: dict[str, Any]) -> list[float | None]:
    """Mean image IoU per class in % with one decimal, for the one-line summaries."""
    return [None if v is None else round(100 * v, 1) for v in summary["mean_per_class"]]


def evaluate_and_report(model: nn.Module, recipe: Recipe, *, out_dir: Path | None, title: str,
                        checkpoint: Path | None, accelerator, info: dict[str, Any] | None = None,
                        split: str | None = None, reader: DatasetReader | None = None,
                        progress: bool = False) -> dict[str, Any]:
    """Score `model` (images in [0, 1] -> class scores) on `split` (default: the recipe's val
    split) at the evaluation resolution and window, across all processes, and add image-level
    IoU: `metrics["image_iou"]` holds per-image per-class IoU and its mean. `reader`: that split's
    `eval_reader`, when the caller has it already. With `out_dir`, the main process writes report.json / report.md / PNGs there (`metrics["report"]`)."""
    split = split or recipe.data.val_split
    reader = reader or eval_reader(recipe, split)
    window, flips = eval_window(recipe), eval_flips(recipe)
    classes = reader.classes
    loader = make_loader(Source(reader=reader, name=split), batch_size=recipe.eval.batch_size, augment=False,
                         shuffle=False)
    metrics = evaluate_segmenter(model, loader, num_classes=classes.num_classes, ignore_index=classes.ignore_index,
                                 accelerator=accelerator, window=window, flips=flips, keep_examples=8,
                                 progress=progress)
    if accelerator.is_main_process:
        metrics["image_iou"] = image_iou_summary(model, reader, window=window, device=accelerator.device,
                                                 flips=flips)
        if out_dir is not None:
            full = run_info(recipe, checkpoint=checkpoint, split=split, num_images=metrics["num_images"],
                            window=window, accelerator=accelerator, split_note=reader.split_note)
            full.update(info or {})
            full.update(image_iou_info(metrics["image_iou"], classes))
            metrics["report"] = write_report(out_dir, title=title, metrics=metrics, classes=classes, info=full)
    accelerator.wait_for_everyone()
    return metrics
