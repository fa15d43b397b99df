"""`accelerate launch synthdata/translate.py recipe=R run_dir=DIR translate.mode=pix2pix|cyclegan`:
segmentation as image translation (also `python -m synthdata.translate`, `synthdata translate`).
The generated mask becomes class labels and is scored like any segmenter; the methods are
`synthdata.segmentation.translation` and `synthdata.segmentation.cyclegan`.
"""

from __future__ import annotations

from dataclasses import MISSING
from pathlib import Path

from synthdata.core.entry import run_main
from synthdata.core.folder_lock import process_lock
from synthdata.core.recipe_loading import parse_command_line
from synthdata.core.runtime import make_accelerator
from synthdata.metrics.evaluation import evaluate_and_report, format_image_iou
from synthdata.segmentation.translation import TranslationSegmenter, check_mode, train


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"run_dir": MISSING})
    check_mode(recipe.translate.mode)
    run_dir = Path(str(args["run_dir"]))
    accelerator = make_accelerator(mixed_precision=recipe.translate.mixed_precision)
    mode = recipe.translate.mode
    with process_lock(accelerator, run_dir, f"another synthdata translate translate.mode={mode}", f".lock-translate-{mode}"):
        result = train(recipe, run_dir, accelerator)
        arch, classes = result["arch"], result["classes"]
        model = TranslationSegmenter(result["generator"], encoding=arch["encoding"], num_classes=classes.num_classes,
                                     palette=classes.palette).to(accelerator.device)
        title = f"{recipe.name}: {arch['mode']} translation (ngf {arch['ngf']}), {result['steps']} steps"
        info = {"mode": arch["mode"], "mask_encoding": arch["encoding"], "steps": result["steps"],
                "resumed_from_step": result["start"], "train_seconds": round(result["seconds"], 1),
                "final_losses": result["losses"]}
        out = run_dir / "translate" / arch["mode"]
        metrics = evaluate_and_report(model, recipe, out_dir=out, title=title, checkpoint=result["checkpoint"],
                                      accelerator=accelerator, info=info)
        if accelerator.is_main_process:
            rate = (result["steps"] - result["start"]) / max(result["seconds"], 1e-9)
            print(f"translate {arch['mode']}: {result['steps']} steps ({rate:.2f} step/s), val mIoU "
                  f"{100 * metrics['miou']:.1f}%, mean image IoU per class "
                  f"{format_image_iou(metrics['image_iou'])} -> {out / 'report.md'}")
    accelerator.end_training()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)

