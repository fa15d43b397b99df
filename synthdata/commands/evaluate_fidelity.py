"""`synthdata evaluate fidelity shards=SRC segmenter=PATH [count=N] [out=DIR]`: how well a segmenter
trained on real data re-segments synthetic samples into their own layouts (`synthdata.metrics.fidelity`).
"""

from __future__ import annotations

import time
from dataclasses import MISSING
from pathlib import Path

import torch

from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import parse_command_line
from synthdata.metrics.fidelity import layout_fidelity
from synthdata.metrics.report import write_report
from synthdata.metrics.sources import open_source, take
from synthdata.models.segmenters import load_segmenter


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(
        argv, {"shards": MISSING, "segmenter": MISSING, "count": None, "out": None, "device": "auto"}
    )
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args["device"] == "auto" else args["device"]
    source = open_source(str(args["shards"]), recipe=recipe, batch_size=recipe.eval.batch_size)
    source.require("layout")
    model, ckpt = load_segmenter(args["segmenter"], expected=source.classes, device=device)
    classes = source.classes
    start = time.perf_counter()
    metrics = layout_fidelity(
        take(source, args["count"]), model, num_classes=classes.num_classes,
        ignore_index=classes.ignore_index, batch_size=recipe.eval.batch_size, device=device,
    )
    seconds = time.perf_counter() - start
    out = Path(args["out"] or "reports/fidelity")
    info = {"source": source.spec, "segmenter": str(args["segmenter"]), "segmenter_step": ckpt.get("step"),
            "device": device, "seconds": round(seconds, 2)}
    json_path, _ = write_report(out, title="Layout fidelity (re-segmentation)", metrics=metrics, classes=classes, info=info)
    count = metrics["num_images"]
    print(
        f"fidelity: mIoU {metrics['miou']:.4f}, pixel accuracy {metrics['pixel_accuracy']:.4f} over "
        f"{count} images ({count / max(seconds, 1e-9):.1f} img/s) -> {json_path}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)

