"""`synthdata export recipe=R split=S out=DIR`: a real dataset split as WebDataset shards.

Real and synthetic data then stream through the same loader (`synthdata.data.loader.make_loader`).
Sample i of the split goes to shard i // shard_size under a key from its meta id, so exporting
twice gives byte-identical shards; a rerun skips complete shards. Works under `accelerate launch`
(each process writes every world_size-th shard; the main process writes the manifest).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from synthdata.core.contract import ShardError
from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import parse_command_line, recipe_to_dict
from synthdata.core.run_dir import save_resolved_recipe
from synthdata.data.readers.base import make_reader
from synthdata.data.shard_writer import ShardWriter
from synthdata.data.shards import safe_key

ARGUMENTS = {"split": "train", "out": dataclasses.MISSING, "prefix": None, "limit": None}


def export_split(reader: Any, out_dir: str | os.PathLike, *, recipe: dict[str, Any], prefix: str,
                 shard_size: int, depth_scale: float, image_format: str = "png", png_compression: int = 1,
                 encode_workers: int = 2, limit: int | None = None, rank: int = 0, world_size: int = 1,
                 progress: bool = True) -> dict[str, Any]:
    """Write `reader`'s samples (the first `limit`) as shards; returns counts for the summary.
    Rank `rank` of `world_size` writes shards `rank, rank + world_size, ...`."""

    if shard_size < 1:
        raise ShardError(f"export.shard_size must be >= 1, got {shard_size}")
    total = len(reader) if limit is None else min(int(limit), len(reader))
    if total == 0:
        raise ShardError(f"{reader.name} split '{reader.split}' has no samples to export")
    num_shards = (total + shard_size - 1) // shard_size
    mine = list(range(rank, num_shards, world_size))
    stats = {"samples": 0, "shards": 0, "skipped": 0, "num_shards": num_shards}
    seen: dict[str, int] = {}
    writer = ShardWriter(out_dir, prefix=prefix, shard_size=shard_size, classes=reader.classes, recipe=recipe,
                         depth_scale=depth_scale, image_format=image_format, png_compression=png_compression,
                         encode_workers=encode_workers)
    with writer, tqdm(total=sum(min(shard_size, total - s * shard_size) for s in mine), unit="sample",
                      desc=f"export {reader.split}", disable=not progress) as bar:
        for index in mine:
            positions = range(index * shard_size, min(total, (index + 1) * shard_size))
            if writer.is_complete(index):
                stats["skipped"] += 1
                bar.update(len(positions))
                continue
            samples = []
            for position in positions:
                sample = reader[position]
                meta = dict(sample["meta"], index=position)
                key = safe_key(meta.get("id", f"{reader.split}_{position:08d}"))
                if key in seen:  # keys must be unique or webdataset merges two samples into one
                    raise ShardError(f"samples {seen[key]} and {position} of {reader.name} '{reader.split}' "
                                     f"share the key '{key}' (from meta id)")
                seen[key] = position
                meta["id"] = key
                samples.append(dict(sample, meta=meta))
                bar.update(1)
            writer.write_shard(index, samples)  # encoded in the background while we read on
            stats["samples"] += len(samples)
            stats["shards"] += 1
    return stats


def main(argv: list[str] | None = None) -> int:

    return run_main(_main, argv)


def _main(argv: list[str]) -> int:

    recipe, args = parse_command_line(argv, ARGUMENTS)
    split, out = str(args["split"]), Path(str(args["out"]))
    prefix = safe_key(args["prefix"] or split).replace("_", "-")
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    state = None
    if world_size > 1:  # launched with accelerate/torchrun: share the shards out

        state = PartialState()
    rank = state.process_index if state else 0
    reader = make_reader(recipe.data, split)
    start = time.perf_counter()
    stats = export_split(
        reader, out, recipe=recipe_to_dict(recipe), prefix=prefix, shard_size=recipe.export.shard_size,
        depth_scale=recipe.data.depth_scale, image_format=recipe.export.image_format,
        png_compression=recipe.export.png_compression, limit=args["limit"], rank=rank,
        world_size=world_size, progress=rank == 0,
    )
    written = stats["samples"]
    if state:

        written = sum(gather_object([written]))
    if rank == 0:
        writer = ShardWriter(out, prefix=prefix, shard_size=recipe.export.shard_size, classes=reader.classes,
                             recipe=recipe_to_dict(recipe), depth_scale=recipe.data.depth_scale,
                             image_format=recipe.export.image_format)
        manifest = writer.finalize_manifest(range(stats["num_shards"]))
        writer.close()
        save_resolved_recipe(out, recipe)
        seconds = time.perf_counter() - start
        print(f"export: {manifest['num_samples']} samples in {len(manifest['shards'])} shards "
              f"({written} written now, {written / max(seconds, 1e-9):.1f} samples/s) -> {out}")
        if manifest["missing_shards"]:
            print(f"export: {len(manifest['missing_shards'])} shards missing; run again to finish")
            return 1
    return 0

