"""`synthdata evaluate fid real=SRC fake=SRC [modality=image|layout|depth] [count=N] [out=DIR]`: FID and KID
between two sample sources (`synthdata.metrics.fid`), written as a report.
"""

from __future__ import annotations

import time
from dataclasses import MISSING
from pathlib import Path

import torch

from synthdata.core.contract import ConfigError, DatasetError
from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import parse_command_line
from synthdata.metrics.fid import MODALITIES, compute_fid, default_cache_dir
from synthdata.metrics.inception import load_inception, resolve_weights, weights_id
from synthdata.metrics.report import write_metrics_report
from synthdata.metrics.sources import open_source


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {
        "real": MISSING, "fake": MISSING, "modality": "image", "count": None,
        "out": None, "cache": None, "device": "auto",
    })
    modality = args["modality"]
    if modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    ev = recipe.eval
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args["device"] == "auto" else args["device"]
    weights = resolve_weights(ev.fid_weights)  # before touching any data
    extractor = load_inception(weights, dims=ev.fid_dims, device=device)
    opts = dict(recipe=recipe, with_depth=modality == "depth", layouts_only=modality == "layout", batch_size=ev.batch_size)
    real = open_source(str(args["real"]), **opts)
    fake = open_source(str(args["fake"]), **opts)
    if modality == "layout" and real.classes and fake.classes and not real.classes.same_as(fake.classes):
        raise DatasetError(f"{fake.spec} has classes {list(fake.classes.names)}, {real.spec} has {list(real.classes.names)}")
    cache = args["cache"]
    cache_dir = None if cache in ("off", False) else Path(cache) if cache else default_cache_dir()
    start = time.perf_counter()
    metrics = compute_fid(
        real, fake, extractor, extractor_id=weights_id(weights, ev.fid_dims), modality=modality,
        count=args["count"], batch_size=ev.batch_size, device=device, cache_dir=cache_dir,
        kid_subsets=ev.kid_subsets, kid_subset_size=ev.kid_subset_size, seed=recipe.seed,
    )
    out = Path(args["out"] or f"reports/fid-{modality}")
    info = {"real": real.spec, "fake": fake.spec, "weights": str(weights), "device": device,
            "resize": "bilinear to 299x299 inside InceptionV3 (pytorch-fid resize_input=True)"}
    json_path, _ = write_metrics_report(
        out, title=f"FID / KID ({modality})", metrics=metrics, info=info, classes=real.classes or fake.classes
    )
    seconds = time.perf_counter() - start
    print(
        f"FID {metrics['fid']:.3f}  KID {metrics['kid_mean']:.5f} +- {metrics['kid_std']:.5f}  "
        f"({metrics['num_real']} real{' cached' if metrics['real_cached'] else ''}, "
        f"{metrics['num_fake']} fake, {modality}, {seconds:.1f}s) -> {json_path}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)

