"""`synthdata evaluate miou recipe=R checkpoint=PATH [split=val] [out=DIR]`: mIoU report of a segmenter.

Runs the checkpoint over every image of the split at the recipe's evaluation resolution (full
image or sliding window), across all processes, and writes report.json / report.md / PNGs with
the same metrics as `segment`'s own report (mIoU, pixel accuracy, mean per-image IoU per class).
"""

from __future__ import annotations

import sys
from dataclasses import MISSING
from pathlib import Path

from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import parse_command_line
from synthdata.core.runtime import make_accelerator
from synthdata.metrics.evaluation import eval_flips, eval_reader, evaluate_and_report, format_image_iou
from synthdata.models.segmenters import load_segmenter


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"checkpoint": MISSING, "split": None, "out": None})
    split = str(args["split"] or recipe.data.val_split)
    checkpoint = Path(str(args["checkpoint"]))
    out = Path(str(args["out"])) if args["out"] else checkpoint.parent / f"eval_{split}"
    eval_flips(recipe)  # a bad key stops here, before any loading
    accelerator = make_accelerator(mixed_precision=recipe.seg.mixed_precision)
    reader = eval_reader(recipe, split)
    model, ckpt = load_segmenter(checkpoint, expected=reader.classes, device=accelerator.device)
    model = accelerator.prepare_model(model, evaluation_mode=True)
    arch = ckpt.get("arch") or {}
    title = f"{recipe.name} {split}: {arch.get('arch', '?')}-{arch.get('encoder', '?')}, step {ckpt.get('step')}"
    metrics = evaluate_and_report(model, recipe, split=split, out_dir=out, title=title, checkpoint=checkpoint,
                                  accelerator=accelerator, info={"checkpoint_step": ckpt.get("step")},
                                  progress=True, reader=reader)
    if accelerator.is_main_process:
        print(f"evaluate miou: {100 * metrics['miou']:.1f}% mIoU, {100 * metrics['pixel_accuracy']:.1f}% "
              f"pixel accuracy, mean image IoU per class {format_image_iou(metrics['image_iou'])} on "
              f"{metrics['num_images']} {split} images -> {metrics['report'][1]}")
    accelerator.wait_for_everyone()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)  # ConfigError, DatasetError, CheckpointError -> one line, exit 2


if __name__ == "__main__":
    sys.exit(main())
