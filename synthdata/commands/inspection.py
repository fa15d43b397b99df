"""`synthdata inspect PATH_OR_PATTERN [n=16 out=FILE.png verify=true]`: what is in these shards?

Prints shard and sample counts, image sizes, class pixel frequencies, depth coverage and any
problems (corrupt shards, manifest mismatches, duplicate keys), and writes a contact sheet
(image | coloured layout | depth) of the first `n` samples.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from synthdata.core.contract import ClassInfo, ConfigError, ShardError
from synthdata.core.entry import run_main
from synthdata.core.palette import default_palette
from synthdata.core.recipe_loading import parse_overrides
from synthdata.core.visualize import save_grid
from synthdata.data.shards import (
    decode_sample,
    expected_counts,
    iter_tar,
    manifest_classes,
    resolve_urls,
    verify_manifest,
)

ARGUMENTS = {"n": 16, "out": "contact_sheet.png", "verify": True, "limit": None}
USAGE = "usage: synthdata inspect PATH_OR_PATTERN [n=16] [out=contact_sheet.png] [verify=true] [limit=N]"


def summarize(spec: str | list[str], *, n: int = 16, limit: int | None = None, verify: bool = True,
              progress: bool = True) -> dict[str, Any]:
    """Read the shards of `spec` (see `synthdata.data.shards.resolve_urls`) and gather statistics.
    Returns counts, sizes, class pixel counts, depth coverage, problems and the first `n` samples."""

    urls, manifest = resolve_urls(spec)
    problems: list[str] = []
    if manifest is not None and verify:
        problems += verify_manifest(manifest["_dir"])
    expected = expected_counts(urls, manifest)
    stats: dict[str, Any] = {
        "shards": len(urls), "samples": 0, "sizes": collections.Counter(), "sources": collections.Counter(),
        "formats": collections.Counter(), "pixels": collections.Counter(), "images_with": collections.Counter(),
        "depth_samples": 0, "depth_known": 0, "depth_pixels": 0, "depth_min": np.inf, "depth_max": 0.0,
        "manifest": manifest, "first": [], "problems": problems,
    }
    seen: set[str] = set()
    for url in tqdm(urls, desc="inspect", unit="shard", disable=not progress):
        if limit is not None and stats["samples"] >= limit:
            break
        try:
            for raw in iter_tar(url, expected=None if limit else expected.get(url)):
                if limit is not None and stats["samples"] >= limit:
                    break
                if raw["__key__"] in seen:
                    problems.append(f"{url}: duplicate key '{raw['__key__']}'")
                seen.add(raw["__key__"])
                stats["formats"].update(k for k in raw if k.startswith("image."))
                _add(stats, decode_sample(raw), n)
        except ShardError as e:
            problems.append(str(e))
    return stats


def _add(stats: dict[str, Any], sample: dict[str, Any], n: int) -> None:
    stats["samples"] += 1
    layout = sample["layout"]
    stats["sizes"][f"{layout.shape[1]}x{layout.shape[0]}"] += 1
    texturing = sample["meta"].get("texturing")  # synthetic: spade | pix2pix | composite | flat
    stats["sources"][str(sample["meta"].get("source", "?")) + (f" ({texturing})" if texturing else "")] += 1
    values, counts = np.unique(layout, return_counts=True)
    stats["pixels"].update(dict(zip(values.tolist(), counts.tolist())))
    stats["images_with"].update(values.tolist())
    depth = sample.get("depth")
    if depth is not None:
        known = depth > 0
        stats["depth_samples"] += 1
        stats["depth_known"] += int(known.sum())
        stats["depth_pixels"] += depth.size
        if known.any():
            stats["depth_min"] = min(stats["depth_min"], float(depth[known].min()))
            stats["depth_max"] = max(stats["depth_max"], float(depth[known].max()))
    if len(stats["first"]) < n:
        stats["first"].append(sample)


def classes_of(stats: dict[str, Any]) -> ClassInfo:
    """The manifest's classes, or numbered ones covering every label seen."""
    if stats["manifest"] is not None:
        return manifest_classes(stats["manifest"])
    labels = [v for v in stats["pixels"] if v != 255]
    count = max(labels, default=0) + 1
    return ClassInfo(tuple(f"class{i}" for i in range(count)), default_palette(count), 255)


def report(stats: dict[str, Any], classes: ClassInfo) -> str:
    """The printed summary: one block of lines."""
    manifest = stats["manifest"]
    lines = [f"shards: {stats['shards']}   samples: {stats['samples']}   "
             f"image sizes (WxH): {dict(stats['sizes'])}   formats: {dict(stats['formats'])}"]
    if manifest is not None:
        lines.append(f"manifest: recipe {manifest.get('recipe_name')}, {len(manifest['shards'])} shards, "
                     f"{manifest.get('num_samples')} samples, depth_scale {manifest.get('depth_scale')}")
    else:
        lines.append("manifest: none found beside the shards (class names unknown)")
    lines.append(f"sources: {dict(stats['sources'])}")
    if stats["depth_samples"]:
        lines.append(f"depth: in {stats['depth_samples']} samples, {stats['depth_known'] / stats['depth_pixels']:.1%} "
                     f"of pixels known, range {stats['depth_min']:.3g}..{stats['depth_max']:.3g}")
    else:
        lines.append("depth: none")
    total = max(1, sum(stats["pixels"].values()))
    lines.append(f"{'class':<20} {'pixels':>8} {'in images':>10}")
    for index, name in enumerate(classes.names):
        lines.append(f"{name:<20} {stats['pixels'].get(index, 0) / total:>8.2%} "
                     f"{stats['images_with'].get(index, 0) / max(1, stats['samples']):>10.1%}")
    ignored = stats["pixels"].get(classes.ignore_index, 0)
    lines.append(f"{'(ignore)':<20} {ignored / total:>8.2%}")
    unknown = sorted(v for v in stats["pixels"] if v >= classes.num_classes and v != classes.ignore_index)
    if unknown:
        stats["problems"].append(f"labels outside the {classes.num_classes} classes: {unknown[:10]}")
    for problem in stats["problems"]:
        lines.append(f"PROBLEM: {problem}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:

    return run_main(_main, argv)


def _main(argv: list[str]) -> int:

    paths = [a for a in argv if "=" not in a]
    if not paths or any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0 if paths else 2
    args = dict(ARGUMENTS)
    for key, value in parse_overrides([a for a in argv if "=" in a]).items():
        if key not in ARGUMENTS:
            raise ConfigError(f"unknown argument '{key}'; arguments: {', '.join(ARGUMENTS)}")
        args[key] = value
    for key in ("n", "limit"):  # whole numbers (limit may stay None); e.g. limit=abc is refused here
        if args[key] is not None and (isinstance(args[key], bool) or not isinstance(args[key], int) or args[key] < 0):
            raise ConfigError(f"inspect: '{key}' should be a whole number >= 0, got {args[key]!r}")
    if not isinstance(args["verify"], bool):
        raise ConfigError(f"inspect: 'verify' should be true or false, got {args['verify']!r}")
    stats = summarize(paths if len(paths) > 1 else paths[0], n=int(args["n"]), verify=bool(args["verify"]),
                      limit=args["limit"], progress=sys.stderr.isatty())
    classes = classes_of(stats)
    print(report(stats, classes))
    sheet = None
    if stats["first"] and int(args["n"]) > 0:
        sheet = save_grid(stats["first"], classes, Path(str(args["out"])), max_rows=int(args["n"]))
    print(f"inspect: {stats['samples']} samples in {stats['shards']} shards, {len(stats['problems'])} problems"
          + (f", contact sheet {sheet}" if sheet else ""))
    return 1 if stats["problems"] else 0

