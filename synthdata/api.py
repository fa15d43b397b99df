"""The main jobs as Python functions, for notebooks and scripts: `load_recipe`, `build_bank`,
`produce_shards` and `evaluate_miou`, the same work as the commands (also as `synthdata.NAME`: the package
imports this module on first use, so `import synthdata` stays light). Errors raise `ConfigError`,
`DatasetError`, `CheckpointError` or `BankError` instead of ending the process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from synthdata.core.contract import ConfigError
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import load_recipe
from synthdata.core.runtime import make_accelerator
from synthdata.data.readers.base import make_reader
from synthdata.generation.production import parse_array_job, run
from synthdata.metrics.evaluation import eval_flips, eval_reader, evaluate_and_report
from synthdata.metrics.external_models import ExternalSegmenter, describe
from synthdata.metrics.layout_check import check_layouts
from synthdata.texturing import bank_building
from synthdata.texturing.pipeline import bank_settings, check_composite_config
from synthdata.texturing.segment_bank import SegmentBank

__all__ = ["build_bank", "evaluate_miou", "load_recipe", "produce_shards"]


def _recipe(recipe: Recipe | str) -> Recipe:
    return load_recipe(recipe) if isinstance(recipe, str) else recipe


def build_bank(recipe: Recipe | str, out: str | Path | None = None) -> SegmentBank:
    """The segment bank of the recipe's training split (`data.train_split`, at data.height x width),
    built with `stages.image.composite.min_pixels` / `region_classes` as `produce` builds it;
    written atomically to the file `out` when given (`RUN_DIR/bank/segment_bank.npz` is where
    `produce` with `stages.image.arch=composite` looks for it). `recipe`: a `Recipe` or a name.

        >>> recipe = synthdata.load_recipe("toy", ["data.split_sizes={train: 16, val: 4, test: 4}"])
        >>> bank = synthdata.build_bank(recipe, out="runs/cp/bank/segment_bank.npz")
        >>> print(bank.summary())
    """
    recipe = _recipe(recipe)
    cfg = recipe.stages.image.composite
    check_composite_config(cfg)
    bank = bank_building.build_bank(make_reader(recipe.data, recipe.data.train_split), **bank_settings(cfg))
    if out is not None:
        bank.save(out)
    return bank


def produce_shards(recipe: Recipe | str, run_dir: str | Path, *, max_shards: int | None = None,
            job: str | tuple[int, int] | None = None, finalize: bool = False) -> Path:
    """`synthdata produce`: sample `produce.num_samples` (layout, depth, image) triplets from the
    stages trained in `run_dir` into WebDataset shards, resumable, then (once complete) write the
    manifest and the layout check (`layout_check.json`, warnings printed). Returns the shards folder
    (`produce.out`, default RUN_DIR/shards). `max_shards`, `job` ("I/N" or (I, N)) and `finalize`
    are the command's keys of the same names; a sample rejected `produce.max_attempts` times
    raises `RejectionError`.

        >>> recipe = synthdata.load_recipe("toy", {"stages.image.arch": "composite", "produce.layouts": "real",
        ...                                        "produce.copy_paste": 3, "produce.num_samples": 100})
        >>> shards = synthdata.produce_shards(recipe, "runs/cp")   # real layouts + real pixels: nothing to train
    """
    recipe = _recipe(recipe)
    if finalize not in (True, False):
        raise ConfigError(f"finalize must be true or false, got {finalize!r}")
    array_job = parse_array_job("/".join(map(str, job)) if isinstance(job, (tuple, list)) else job)
    if finalize and array_job is not None:
        raise ConfigError("finalize=true checks every array job's shards and writes the manifest: give it no job=")
    run(recipe, run_dir=Path(run_dir), max_shards=max_shards, array_job=array_job, finalize=finalize,
        accelerator=make_accelerator(mixed_precision=recipe.produce.mixed_precision), check_layouts=check_layouts)
    return Path(recipe.produce.out) if recipe.produce.out else Path(run_dir) / "shards"


def evaluate_miou(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], recipe: Recipe | str,
                  split: str | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Score any segmenter as `synthdata evaluate miou` does: `model` is a torch module or any
    callable mapping images float (B, 3, H, W) in [0, 1] to logits (B, C, H, W) for the recipe's C
    classes (logits of another size are resized bilinearly), run on every image of `split`
    (default: the recipe's `data.val_split`) at the recipe's evaluation size, window and flips, under
    `seg.mixed_precision`. A torch module is moved to the evaluation device (CPU, or the GPU) and
    keeps its train/eval mode. With `out`, writes report.json / report.md / PNGs there, as the command.

    Returns `{"miou", "pixel_accuracy", "per_class_iou": {class: IoU (NaN: in neither prediction
    nor ground truth)}, "image_iou": {class: mean per-image IoU (None: in no image)}, "num_images",
    "report": report.json or None}`; IoUs are fractions (0..1).

        >>> model = torch.jit.load("my_segmenter.pt")   # or your nn.Module, or a function
        >>> recipe = synthdata.load_recipe("camvid", ["data.root=/data/camvid"])
        >>> scores = synthdata.evaluate_miou(model, recipe, out="runs/eval-mine")
        >>> print(f"{100 * scores['miou']:.1f} mIoU")
    """
    recipe = _recipe(recipe)
    split = split or recipe.data.val_split
    eval_flips(recipe)  # a bad key stops before any loading
    accelerator = make_accelerator(mixed_precision=recipe.seg.mixed_precision)
    reader = eval_reader(recipe, split)
    classes = reader.classes
    described = describe(model)
    segmenter = ExternalSegmenter(model, num_classes=classes.num_classes, name=described["type"])
    segmenter = accelerator.prepare_model(segmenter, evaluation_mode=True)
    metrics = evaluate_and_report(segmenter, recipe, split=split, out_dir=None if out is None else Path(out),
                                  title=f"{recipe.name} {split}: {described['type']}", checkpoint=None,
                                  accelerator=accelerator, info={"model": described}, reader=reader)
    image_iou = metrics.get("image_iou")  # the main process's
    return {
        "miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"],
        "per_class_iou": dict(zip(classes.names, metrics["per_class_iou"])),
        "image_iou": None if image_iou is None else dict(zip(classes.names, image_iou["mean_per_class"])),
        "num_images": metrics["num_images"],
        "report": metrics["report"][0] if "report" in metrics else None,
    }
