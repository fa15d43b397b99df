"""`synthdata evaluate miou recipe=R checkpoint=PATH [split=val] [out=DIR]`: mIoU report of a segmenter.

Runs the checkpoint over every image of the split at the recipe's evaluation resolution (full
image or sliding window), across all processes, and writes report.json / report.md / PNGs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from synthdata.config import ConfigError, Recipe
from synthdata.datasets.base import DatasetError, DatasetReader


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    import accelerate
    import segmentation_models_pytorch as smp
    import torch

    import synthdata

    return {"synthdata": synthdata.__version__, "torch": torch.__version__, "smp": smp.__version__,
            "accelerate": accelerate.__version__}


def eval_reader(recipe: Recipe, split: str) -> DatasetReader:
    """`split` of the recipe's dataset at the evaluation resolution (eval.height/width)."""
    from synthdata.datasets.base import make_reader

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


def run_info(recipe: Recipe, *, checkpoint: str | Path, split: str, num_images: int,
             window: tuple[int, int] | None, accelerator: Any = None) -> dict[str, Any]:
    """What a report pins: recipe, checkpoint hash, seeds, versions and the evaluation protocol."""
    from synthdata.config import recipe_to_dict
    from synthdata.imageops import protocol
    from synthdata.metrics.miou import MIOU_CONVENTION

    height = recipe.eval.height or recipe.data.height
    width = recipe.eval.width or recipe.data.width
    return {
        "recipe_name": recipe.name,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "dataset": recipe.data.reader,
        "split": split,
        "seed": recipe.seed,
        "processes": accelerator.num_processes if accelerator is not None else 1,
        "mixed_precision": str(accelerator.mixed_precision) if accelerator is not None else "no",
        "protocol": {
            "resolution": f"{height}x{width}",
            "resize_filters": protocol(),
            "inference": f"sliding window {window[0]}x{window[1]}" if window else "full image",
            "ignore_index": recipe.data.ignore_index,
            "num_images": num_images,
            "miou_convention": MIOU_CONVENTION,
        },
        "versions": versions(),
        "recipe": recipe_to_dict(recipe),
    }


def _main(argv: list[str]) -> int:
    from synthdata.config import parse_command_line
    from synthdata.data import Source, make_loader
    from synthdata.metrics.miou import evaluate_segmenter
    from synthdata.report import write_report
    from synthdata.runtime import make_accelerator
    from synthdata.segmenters import load_segmenter

    recipe, args = parse_command_line(argv, {"checkpoint": MISSING, "split": None, "out": None})
    split = str(args["split"] or recipe.data.val_split)
    checkpoint = Path(str(args["checkpoint"]))
    out = Path(str(args["out"])) if args["out"] else checkpoint.parent / f"eval_{split}"
    accelerator = make_accelerator(mixed_precision=recipe.seg.mixed_precision)
    reader = eval_reader(recipe, split)
    classes = reader.classes
    model, ckpt = load_segmenter(checkpoint, expected=classes, device=accelerator.device)
    model = accelerator.prepare_model(model, evaluation_mode=True)
    window = eval_window(recipe)
    loader = make_loader(Source(reader=reader, name=split), batch_size=recipe.eval.batch_size,
                         augment=False, shuffle=False)
    metrics = evaluate_segmenter(model, loader, num_classes=classes.num_classes,
                                 ignore_index=classes.ignore_index, accelerator=accelerator,
                                 window=window, keep_examples=8, progress=True)
    if accelerator.is_main_process:
        info = run_info(recipe, checkpoint=checkpoint, split=split, num_images=metrics["num_images"],
                        window=window, accelerator=accelerator)
        info["checkpoint_step"] = ckpt.get("step")
        arch = ckpt.get("arch") or {}
        title = f"{recipe.name} {split}: {arch.get('arch', '?')}-{arch.get('encoder', '?')}, step {ckpt.get('step')}"
        json_path, md_path = write_report(out, title=title, metrics=metrics, classes=classes, info=info)
        print(f"evaluate miou: {100 * metrics['miou']:.1f}% mIoU, {100 * metrics['pixel_accuracy']:.1f}% "
              f"pixel accuracy on {metrics['num_images']} {split} images -> {md_path}")
    accelerator.wait_for_everyone()
    return 0


def main(argv: list[str] | None = None) -> int:
    from synthdata.entry import run_main

    return run_main(_main, argv)  # ConfigError, DatasetError, CheckpointError -> one line, exit 2


if __name__ == "__main__":
    sys.exit(main())
