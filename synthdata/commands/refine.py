"""`accelerate launch synthdata/refine.py recipe=R run_dir=DIR [refine.*=...]`: SegGAN refinement of
a trained segmenter through a frozen mask -> image generator (also `python -m synthdata.refine`,
`synthdata refine`). Reports before and after; the method is `synthdata.segmentation.seggan`.
"""

from __future__ import annotations

from dataclasses import MISSING
from pathlib import Path

from synthdata.core.entry import run_main
from synthdata.core.folder_lock import process_lock
from synthdata.core.recipe_loading import parse_command_line
from synthdata.core.runtime import make_accelerator
from synthdata.metrics.evaluation import format_image_iou
from synthdata.segmentation.seggan import refine


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"run_dir": MISSING})
    run_dir = Path(str(args["run_dir"]))
    accelerator = make_accelerator(mixed_precision=recipe.refine.mixed_precision)
    with process_lock(accelerator, run_dir, "another synthdata refine", ".lock-refine"):
        result = refine(recipe, run_dir, accelerator)
    if accelerator.is_main_process:
        m = result["metrics"]
        rate = (result["steps"] - result["start"]) / max(result["seconds"], 1e-9)
        print(f"refine: {result['steps']} steps ({rate:.2f} step/s), val mIoU after {100 * m['miou']:.1f}%, "
              f"image IoU per class {format_image_iou(m['image_iou'])} -> {result['compare']}")
    accelerator.end_training()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)

