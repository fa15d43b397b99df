"""`synthdata evaluate miou recipe=R checkpoint=PATH|model=MODEL [split=val] [out=DIR]`: mIoU report of a segmenter.

Runs the segmenter over every image of the split at the recipe's evaluation resolution (full
image or sliding window, `eval.flips`), across all processes, and writes report.json / report.md /
PNGs with the same metrics as `segment`'s own report (mIoU, pixel accuracy, mean per-image IoU per
class). The segmenter: `checkpoint=PATH`, a synthdata checkpoint; or your own model, mapping images
float (B, 3, H, W) in [0, 1] to logits (B, C, H, W) for the recipe's C classes: `model=PATH.pt`, a
TorchScript file (`torch.jit.save`; loading it runs no pickled code), or `model=package.module:callable`,
a factory called with no arguments that returns a torch module (this imports and runs that code, by
your choice; the current directory is searched too; `out=` is then required). Pickles are never
loaded. The report's `info.model` records what was evaluated.
"""

from __future__ import annotations

from pathlib import Path

from synthdata.core.contract import ConfigError
from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import parse_command_line
from synthdata.core.runtime import make_accelerator
from synthdata.metrics.evaluation import eval_flips, eval_reader, evaluate_and_report, format_image_iou
from synthdata.metrics.external_models import FORMS, ExternalSegmenter, external_form, load_external
from synthdata.models.segmenters import load_segmenter


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"checkpoint": None, "model": None, "split": None, "out": None})
    split = str(args["split"] or recipe.data.val_split)
    if (args["checkpoint"] is None) == (args["model"] is None):
        raise ConfigError("give one segmenter: checkpoint=PATH (a synthdata checkpoint) or model=MODEL "
                          f"({FORMS})" + (", not both" if args["checkpoint"] is not None else ""))
    eval_flips(recipe)  # a bad key stops here, before any loading
    own, described = None, None
    if args["model"] is not None:
        if args["out"] is None and external_form(args["model"]) == "factory":
            raise ConfigError(f"model={args['model']}: a factory has no folder to write beside; give out=DIR")
        own, described = load_external(args["model"])
    if args["out"]:
        out = Path(str(args["out"]))
    else:  # beside the file evaluated (a factory has none: out= is required)
        out = Path(str(described["path"] if described else args["checkpoint"])).parent / f"eval_{split}"
    accelerator = make_accelerator(mixed_precision=recipe.seg.mixed_precision)
    reader = eval_reader(recipe, split)
    if described is None:
        checkpoint = Path(str(args["checkpoint"]))
        model, ckpt = load_segmenter(checkpoint, expected=reader.classes, device=accelerator.device)
        arch = ckpt.get("arch") or {}
        name = f"{arch.get('arch', '?')}-{arch.get('encoder', '?')}, step {ckpt.get('step')}"
        info = {"checkpoint_step": ckpt.get("step"), "model": {"kind": "checkpoint", "path": str(checkpoint)}}
    else:
        checkpoint = None
        model = ExternalSegmenter(own, num_classes=reader.classes.num_classes, name=f"model={args['model']}")
        name = described.get("factory") or Path(described["path"]).name
        info = {"model": described}
    model = accelerator.prepare_model(model, evaluation_mode=True)
    metrics = evaluate_and_report(model, recipe, split=split, out_dir=out, title=f"{recipe.name} {split}: {name}",
                                  checkpoint=checkpoint, accelerator=accelerator, info=info, progress=True,
                                  reader=reader)
    if accelerator.is_main_process:
        print(f"evaluate miou: {100 * metrics['miou']:.1f}% mIoU, {100 * metrics['pixel_accuracy']:.1f}% "
              f"pixel accuracy, mean image IoU per class {format_image_iou(metrics['image_iou'])} on "
              f"{metrics['num_images']} {split} images -> {metrics['report'][1]}")
    accelerator.wait_for_everyone()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)  # ConfigError, DatasetError, CheckpointError -> one line, exit 2

