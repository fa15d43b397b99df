"""`synthdata evaluate layouts real=SRC [fake=SRC] [count=N] [out=DIR]`: per-class layout statistics
of real (and generated) layouts, their divergences and warnings (`synthdata.metrics.layout_stats`).
"""

from __future__ import annotations

import time
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from synthdata.core.contract import DatasetError
from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import parse_command_line
from synthdata.metrics.layout_stats import compare_layouts, layout_statistics, layout_warnings, plot_layout_stats
from synthdata.metrics.report import write_metrics_report
from synthdata.metrics.sources import open_source, take


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"real": MISSING, "fake": None, "count": None, "out": None})
    start = time.perf_counter()
    real = open_source(str(args["real"]), recipe=recipe, layouts_only=True, batch_size=recipe.eval.batch_size)
    real.require("layout")
    classes = real.classes
    fake = None
    if args["fake"] is not None:
        fake = open_source(str(args["fake"]), recipe=recipe, layouts_only=True, batch_size=recipe.eval.batch_size)
        fake.require("layout")
        if fake.classes is not None and not fake.classes.same_as(classes):
            raise DatasetError(f"{fake.spec} has classes {list(fake.classes.names)}, {real.spec} has {list(classes.names)}")

    def measure(src: Any) -> dict[str, Any]:
        layouts = (s["layout"] for s in take(src, args["count"]))
        return layout_statistics(layouts, num_classes=classes.num_classes, ignore_index=classes.ignore_index, desc=src.spec)

    real_stats = measure(real)
    fake_stats = measure(fake) if fake is not None else None
    out = Path(args["out"] or "reports/layouts")
    chart = plot_layout_stats(real_stats, fake_stats, classes, out / "layout_stats.png")
    metrics: dict[str, Any] = compare_layouts(real_stats, fake_stats) if fake_stats else {}
    if fake_stats:
        metrics["warnings"] = layout_warnings(real_stats, fake_stats, classes.names)
    metrics.update({"real": real_stats, **({"fake": fake_stats} if fake_stats else {})})
    info = {"real": real.spec, "fake": fake.spec if fake else None, "connectivity": 4}
    json_path, _ = write_metrics_report(
        out, title="Layout statistics", metrics=metrics, info=info, classes=classes, images={"Per-class statistics": chart}
    )
    js = f"JS {metrics['js_pixel_frequency']:.4f}, " if fake_stats else ""
    print(
        f"layouts: {js}{real_stats['num_images']} real"
        + (f" / {fake_stats['num_images']} generated" if fake_stats else "")
        + f" in {time.perf_counter() - start:.1f}s -> {json_path}"
    )
    for warning in metrics.get("warnings", []):
        print(f"layouts: warning: {warning}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)

