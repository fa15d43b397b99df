"""`accelerate launch synthdata/segment.py recipe=R run_dir=DIR [seg.*=...]`: train a segmenter on
real data, optionally mixed with synthetic shards (also `python -m synthdata.segment`,
`synthdata segment`). Resumable; ends with RUN_DIR/report. One segment at a time in a run dir
(RUN_DIR/.lock): a second one stops with one line naming the holder. The training loop is
`synthdata.segmentation.training`. With `log_with=[tensorboard]` (or another tracker) the losses and
val mIoU are logged to RUN_DIR/logs/segment; `study_variant=NAME` (given by `synthdata study`) names
the tracked run NAME/seed-SEED.
"""

from __future__ import annotations

from dataclasses import MISSING
from pathlib import Path

from synthdata.core.entry import run_main
from synthdata.core.folder_lock import process_lock
from synthdata.core.recipe_loading import parse_command_line
from synthdata.core.runtime import make_accelerator
from synthdata.core.tracking import cell_tracking, start_tracking
from synthdata.metrics.evaluation import format_image_iou
from synthdata.segmentation.training import train, write_segment_report


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"run_dir": MISSING, "study_variant": None})
    run_dir = Path(str(args["run_dir"]))
    accelerator = make_accelerator(mixed_precision=recipe.seg.mixed_precision, log_with=recipe.log_with,
                                   log_dir=run_dir / "logs")
    # two runs in one run dir would write the same checkpoints (one died reading a state the other
    # was replacing); the main process holds the lock for the launch
    with process_lock(accelerator, run_dir, "another synthdata segment"):
        start_tracking(accelerator, recipe, "segment", **cell_tracking(args["study_variant"], recipe.seed))
        result = train(recipe, run_dir, accelerator)
        if accelerator.is_main_process:
            report = write_segment_report(recipe, run_dir, result, accelerator)
            m = result["metrics"]
            rate = (result["steps"] - result["start"]) / max(result["seconds"], 1e-9)
            print(f"segment: {result['steps']} steps ({rate:.2f} step/s, {result['seconds']:.0f} s), val mIoU "
                  f"{100 * m['miou']:.1f}% on {m['num_images']} images, mean image IoU per class "
                  f"{format_image_iou(m['image_iou'])} -> {report.with_suffix('.md')}")
        accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)  # ConfigError, DatasetError, CheckpointError -> one line, exit 2

