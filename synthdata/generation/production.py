"""`produce`: sample (layout, depth, image) triplets from trained stages into WebDataset shards.

Distributed, resumable and deterministic: shard `s` goes to process `s % world_size`, sample
`(s, position)` takes its seed from `derive_seed(recipe.seed, s, position)`, complete shards are
skipped on restart, and encoding of one shard overlaps generation of the next.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from synthdata.core.checkpoint import check_classes
from synthdata.core.contract import ConfigError, DatasetError
from synthdata.core.recipe_loading import recipe_to_dict
from synthdata.core.run_dir import save_resolved_recipe
from synthdata.core.runtime import make_accelerator
from synthdata.core.seeding import derive_seed
from synthdata.data.readers.base import declared_classes, make_reader
from synthdata.data.shard_writer import ShardWriter
from synthdata.generation.image_sources import image_source
from synthdata.generation.layout_sources import LayoutSource, RealLayouts, build_layout_source
from synthdata.generation.quality_controls import QualityControls, build_quality_controls
from synthdata.generation.real_pixels import RealPixels
from synthdata.generation.shard_plan import (
    check_complete_sizes,
    check_no_extra_shards,
    check_planned_shards,
    check_production_settings,
    check_same_production,
    shard_sizes,
)
from synthdata.texturing.bank_building import region_rule

if TYPE_CHECKING:
    from synthdata.core.recipe import Recipe


def sample_seed(recipe_seed: int, shard: int, position: int, attempt: int = 0) -> int:
    """The seed of a sample; a rejected sample's redraws use attempt 1, 2, ..."""
    if attempt == 0:
        return derive_seed(recipe_seed, shard, position)
    return derive_seed(recipe_seed, shard, position, attempt)


def sample_key(prefix: str, shard: int, position: int, copy: int = 0) -> str:
    key = f"{prefix}-{shard:06d}-{position:06d}"
    return key if copy == 0 else f"{key}-v{copy}"


class RejectionError(RuntimeError):
    """A sample was rejected `max_attempts` times: the filters are too strict for the source."""


class ShardGenerator:
    """Makes the samples of one shard: layouts from `source`, filtered by `controls`, turned into
    depth and image by `pipeline.from_layouts`, in fixed batches of positions starting at 0 (so
    batch composition, hence every float, is the same whatever the number of processes)."""

    def __init__(
        self,
        pipeline: Any,
        source: LayoutSource,
        controls: QualityControls,
        *,
        seed: int,
        prefix: str,
        batch_size: int,
        max_attempts: int = 50,
        device: torch.device | str = "cpu",
        meta: dict[str, Any] | None = None,
    ):
        self.pipeline, self.source, self.controls = pipeline, source, controls
        self.seed, self.prefix, self.batch_size = seed, prefix, batch_size
        self.max_attempts = max_attempts
        self.device = torch.device(device)
        self.meta = dict(meta or {})
        self.attempts = 0  # layouts drawn, accepted or not

    def generate(self, shard: int, size: int) -> list[dict[str, Any]]:
        samples: list[dict[str, Any]] = []
        for start in range(0, size, self.batch_size):
            samples += self._batch(shard, list(range(start, min(size, start + self.batch_size))))
        return samples

    def _batch(self, shard: int, positions: list[int]) -> list[dict[str, Any]]:
        attempt = {p: 0 for p in positions}
        done: dict[int, tuple] = {}
        pending = list(positions)
        while pending:
            seeds = [sample_seed(self.seed, shard, p, attempt[p]) for p in pending]
            with torch.inference_mode():
                layouts, metas = self.source.layouts(seeds)
            self.attempts += len(pending)
            reasons = self.controls.check_layouts(layouts, seeds)
            keep = [i for i, r in enumerate(reasons) if r is None]
            if keep:
                with torch.inference_mode():
                    out = self.pipeline.from_layouts(layouts[keep].to(self.device), [seeds[i] for i in keep],
                                                     **self._layout_metas([metas[i] for i in keep]))
                images, kept_layouts = out["image"].float(), out["layout"]
                fid_reasons, scores = self.controls.check_samples(images, kept_layouts)
                for j, i in enumerate(keep):
                    reasons[i] = fid_reasons[j]
                    if reasons[i] is None:
                        depth = None if out.get("depth") is None else out["depth"][j].float()
                        texture = out["meta"][j] if out.get("meta") else {}  # composite: its sources
                        done[pending[i]] = (seeds[i], images[j], kept_layouts[j], depth,
                                            {**metas[i], **texture, **scores[j]})
            retry = [pending[i] for i, r in enumerate(reasons) if r is not None]
            for p in retry:
                attempt[p] += 1
                if attempt[p] >= self.max_attempts:
                    raise RejectionError(
                        f"sample {sample_key(self.prefix, shard, p)} was rejected {attempt[p]} times "
                        f"(rejections so far: {self.controls.rejected}); loosen produce.min_classes, "
                        "produce.max_class_fraction, produce.fidelity_threshold or class balancing, "
                        "or raise produce.max_attempts"
                    )
            pending = retry
        return self._finish(shard, positions, done, attempt)

    def _finish(self, shard: int, positions: list[int], done: dict[int, tuple], attempt: dict[int, int]):
        """Hardness copies, then tensors -> samples of the data contract, in position order."""
        images = torch.stack([done[p][1] for p in positions])
        layouts = torch.stack([done[p][2] for p in positions])
        copies, hard = self.controls.copies(images, layouts)
        samples = []
        for k, p in enumerate(positions):
            seed, image, layout, depth, meta = done[p]
            meta = {**meta, **hard[k], "seed": seed, "attempt": attempt[p], "shard": shard, "position": p}
            samples.append(self._sample(sample_key(self.prefix, shard, p), image, layout, depth, meta))
            if copies[k] > 1:
                samples += self._variants(shard, p, seed, layout, copies[k] - 1, meta)
        return samples

    def _layout_metas(self, metas: list[dict[str, Any]]) -> dict[str, Any]:
        """`metas=` for pipelines that use the layout source's meta (composite: pasted objects)."""
        return {"metas": metas} if getattr(self.pipeline, "takes_layout_meta", False) else {}

    def _variants(self, shard: int, position: int, seed: int, layout, count: int, meta: dict) -> list[dict]:
        """Extra images of a hard layout, each with its own style noise."""
        seeds = [derive_seed(seed, 0xC0B1, c) for c in range(1, count + 1)]
        with torch.inference_mode():
            out = self.pipeline.from_layouts(layout.unsqueeze(0).repeat(count, 1, 1).to(self.device), seeds,
                                             **self._layout_metas([meta] * count))
        return [
            self._sample(
                sample_key(self.prefix, shard, position, c + 1),
                out["image"][c].float(),
                out["layout"][c],
                None if out.get("depth") is None else out["depth"][c].float(),
                # the variant's own image was not re-segmented: no fidelity score for it
                {**{k: v for k, v in meta.items() if k != "fidelity"}, **(out["meta"][c] if out.get("meta") else {}),
                 "seed": seeds[c], "copy_of": sample_key(self.prefix, shard, position)},
            )
            for c in range(count)
        ]

    def _sample(self, key: str, image, layout, depth, meta: dict[str, Any]) -> dict[str, Any]:
        sample = {
            "image": (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy(),
            "layout": _layout_array(layout.cpu()),
            "meta": {**self.meta, **meta, "id": key},
        }
        if depth is not None:
            sample["depth"] = depth.cpu().numpy().astype(np.float32)
        return sample


def _layout_array(layout: torch.Tensor) -> np.ndarray:
    array = layout.numpy()
    return array.astype(np.uint8) if array.size and 0 <= array.min() and array.max() <= 255 else array


def produce_shards(
    generator: ShardGenerator,
    writer: Any,
    shards: list[tuple[int, int]],
    *,
    overlap: bool = True,
    progress: bool = True,
    job: list[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """Generate and write `(shard index, size)` pairs; shards already complete are skipped.

    `writer.write_shard` encodes and writes in background threads, so with `overlap` shard k is
    encoded while shard k+1 is generated; `overlap=False` waits for each write (benchmarks).
    `job`: every shard of the run, all processes' (default: `shards`); the progress bar counts
    the whole job, the other processes' shards as they appear complete on disk.
    """

    todo = [(s, n) for s, n in shards if not writer.is_complete(s)]
    stats = {"shards": 0, "samples": 0, "skipped_shards": len(shards) - len(todo), "mine": [s for s, _ in shards]}
    mine = {s for s, _ in todo}
    others = [(s, n) for s, n in (shards if job is None else job) if s not in mine]
    made = 0

    def position() -> int:  # samples of the job done: made here, or complete on disk
        return made + sum(n for s, n in others if writer.is_complete(s))

    total = sum(n for _, n in todo) + sum(n for _, n in others)
    with tqdm(total=total, initial=position(), desc="produce", unit="sample", disable=not progress) as bar:
        for shard, size in todo:
            samples = generator.generate(shard, size)
            writer.write_shard(shard, samples)
            if not overlap:
                writer.flush()
            stats["shards"] += 1
            stats["samples"] += len(samples)
            made += size
            bar.update(position() - bar.n)
        writer.flush()
        bar.update(position() - bar.n)
    stats["attempts"] = generator.attempts
    stats["rejected"] = dict(generator.controls.rejected)
    return stats


def resolve_paste_classes(recipe: "Recipe", classes: Any, pipeline: Any, reader: Any, *, log=None) -> list[int] | None:
    """`produce.copy_paste_classes` as class indices (None: any class with objects). `auto`: the
    object classes by the segment bank's region rule (`bank_building.thing_classes`), where the
    image source looks for them (`ImageSource.object_classes`); `log` gets one line naming them."""
    if recipe.produce.copy_paste <= 0 and recipe.produce.copy_paste_classes == "auto":
        return None
    return resolve_class_list(recipe, "copy_paste_classes", classes, pipeline, reader, log=log)


def resolve_class_list(recipe: "Recipe", key: str, classes: Any, pipeline: Any, reader: Any, *,
                       log=None) -> list[int] | None:
    """A `produce` key that names classes (a list of names, `auto`, `all` where the key allows it, or None)
    as class indices."""
    value = getattr(recipe.produce, key)
    if value is None:
        return None
    if value == "all":
        return list(range(classes.num_classes))
    if value != "auto":
        unknown = [c for c in value if c not in classes.names]
        if unknown:
            raise ConfigError(f"produce.{key}: unknown {unknown}; classes: {list(classes.names)}")
        return [classes.names.index(c) for c in value]
    found, where = image_source(recipe).object_classes(pipeline, reader, classes.num_classes, classes.ignore_index)
    if not found:
        raise ConfigError(f"produce.{key}=auto: no object classes in {where} (every class is a "
                          f"region: {region_rule()}); name the classes")
    if log is not None:
        log(f"produce: {key.replace('_', '-').replace('-classes', '')} classes (auto, {where}: not regions by "
            f"{region_rule()}): " + ", ".join(classes.names[c] for c in found))
    return found


def real_pixels_pipeline(recipe: "Recipe", pipeline: Any, source: LayoutSource, classes: Any, reader: Any, *,
                         log=None) -> Any:
    """`pipeline`, wrapped by `RealPixels` when `produce.real_pixel_classes` is set (its other
    conditions are checked with the production's settings, `check_production_settings`)."""
    if recipe.produce.real_pixel_classes is None:
        return pipeline
    keep = resolve_class_list(recipe, "real_pixel_classes", classes, pipeline, reader, log=log)
    if recipe.produce.real_pixel_unlabelled and classes.ignore_index is not None:
        keep = [*keep, classes.ignore_index]  # an unlabelled pixel of the photo is still unlabelled in the layout
    return RealPixels(pipeline, source if isinstance(source, RealLayouts) else source.real, keep)


def parse_array_job(value: Any) -> tuple[int, int] | None:
    """`job=I/N` of the command line -> (I, N), 0 <= I < N; None stays None."""
    if value is None:
        return None
    parts = str(value).split("/")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        index, count = int(parts[0]), int(parts[1])
        if 0 <= index < count:
            return index, count
    raise ConfigError(f"job must be I/N with 0 <= I < N (array job I of N, e.g. job=0/4), got {value!r}")


def array_job_shards(sizes: list[int], array_job: tuple[int, int] | None, rank: int, world: int) -> list[tuple[int, int]]:
    """This process's `(shard, size)` pairs: array job I of N takes the shards `s % N == I`, and
    its processes split those round-robin (no job: shard s goes to process `s % world`)."""
    index, count = array_job or (0, 1)
    job_shards = [(s, n) for s, n in enumerate(sizes) if s % count == index]
    return [pair for k, pair in enumerate(job_shards) if k % world == rank]


def run(recipe: "Recipe", *, run_dir: Path, max_shards: int | None = None, overlap: bool = True,
        accelerator=None, array_job: tuple[int, int] | None = None, finalize: bool = False,
        check_layouts: Callable[["Recipe", Path, Any], dict[str, Any] | None] | None = None) -> int:
    """Produce `recipe.produce.num_samples` samples from the stages trained in `run_dir`.

    `max_shards` bounds the shards this process writes in this call (chunked jobs; the manifest
    is finalized only once every shard exists). `array_job=(I, N)`: write only array job I's
    shards (`array_job_shards`) and never the manifest, so N independent jobs (a SLURM array)
    need no shared process group; `finalize` then writes nothing new: it checks that every
    planned shard is there, whole and of this production (`check_planned_shards`), and writes the
    manifest. `accelerator`: the command's (default: one made from `produce.mixed_precision`).
    `check_layouts(recipe, out_dir, classes)`: run on the finished production (the command passes
    `metrics.layout_check.check_layouts`; generation sits below metrics, so it does not import it)."""
    cfg = recipe.produce
    check_production_settings(recipe)  # before anything is loaded or written
    accelerator = accelerator or make_accelerator(mixed_precision=cfg.mixed_precision)
    if finalize and accelerator.num_processes > 1:
        raise ConfigError("finalize=true writes no samples: run it as one process, not under a multi-process launch")
    # the pipeline autocasts to bf16, the one reduced precision it offers
    autocast = accelerator.mixed_precision in ("bf16", "fp16")
    images = image_source(recipe)
    pipeline = images.pipeline(recipe, run_dir, accelerator=accelerator, autocast=autocast)
    classes = pipeline.classes
    check_classes({"classes": classes.to_dict()}, declared_classes(recipe.data), Path(run_dir) / "checkpoints")
    reader = make_reader(recipe.data, recipe.data.train_split) if cfg.layouts != "generated" or cfg.copy_paste > 0 else None
    paste_classes = resolve_paste_classes(recipe, classes, pipeline, reader,
                                          log=print if accelerator.is_main_process else None)
    try:
        source = build_layout_source(
            cfg.layouts,
            pipeline=pipeline,
            dataset=reader,
            height=pipeline.height, width=pipeline.width, ignore_index=classes.ignore_index,
            real_ratio=cfg.real_ratio, hflip=cfg.real_hflip, copy_paste=cfg.copy_paste,
            paste_classes=paste_classes, paste_choice=cfg.copy_paste_choice, paste_scale=cfg.copy_paste_scale,
            paste_flip=cfg.copy_paste_flip, paste_position=cfg.copy_paste_position,
            pool=images.paste_pool(pipeline) if cfg.copy_paste > 0 else None,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e
    pipeline = real_pixels_pipeline(recipe, pipeline, source, classes, reader,
                                    log=print if accelerator.is_main_process else None)

    def draw(seeds: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return source.layouts(seeds)[0]

    controls = build_quality_controls(cfg, classes=classes, draw=draw, seed=recipe.seed, device=accelerator.device)
    out_dir = Path(cfg.out) if cfg.out else Path(run_dir) / "shards"
    check_no_extra_shards(out_dir, recipe)
    if accelerator.is_main_process:
        check_same_production(out_dir, recipe)
    accelerator.wait_for_everyone()
    writer = ShardWriter(  # hard layouts may add image variants: room for max_copies per position
        out_dir, prefix=cfg.prefix, shard_size=cfg.shard_size * cfg.hardness_max_copies, classes=classes,
        recipe=recipe_to_dict(recipe), depth_scale=pipeline.depth_scale, image_format=cfg.image_format,
        png_compression=cfg.png_compression, jpeg_quality=cfg.jpeg_quality, encode_workers=cfg.encode_workers,
    )
    meta = {"source": "synthetic", "dataset": recipe.data.reader, "split": "synthetic",
            "recipe": recipe.name, "layouts": cfg.layouts, "run_dir": str(run_dir),
            "texturing": recipe.stages.image.arch}
    generator = ShardGenerator(
        pipeline, source, controls, seed=recipe.seed, prefix=cfg.prefix, batch_size=cfg.batch_size,
        max_attempts=cfg.max_attempts, device=accelerator.device, meta=meta,
    )
    sizes = shard_sizes(cfg.num_samples, cfg.shard_size)
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = [] if finalize else array_job_shards(sizes, array_job, rank, world)
    if max_shards is not None:
        mine = [(s, n) for s, n in mine if not writer.is_complete(s)][: int(max_shards)]
    start = time.perf_counter()
    with writer:
        check_complete_sizes(writer, mine)
        stats = produce_shards(generator, writer, mine, overlap=overlap, progress=accelerator.is_local_main_process,
                               job=list(enumerate(sizes)))
    accelerator.wait_for_everyone()
    everyone = gather_object([stats])
    if accelerator.is_main_process:
        check_shared_output(writer, everyone, out_dir)
        seconds = time.perf_counter() - start
        if finalize:
            check_planned_shards(writer, sizes)
        complete = all(writer.is_complete(s) for s in range(len(sizes)))
        check = None
        if complete and (array_job is None or finalize):
            writer.finalize_manifest(list(range(len(sizes))))
            save_resolved_recipe(out_dir, recipe)
            check = check_layouts(recipe, out_dir, classes) if check_layouts is not None else None
        total = {k: sum(s[k] for s in everyone) for k in ("shards", "samples", "skipped_shards", "attempts")}
        rejected: dict[str, int] = {}
        for s in everyone:
            for reason, count in s["rejected"].items():
                rejected[reason] = rejected.get(reason, 0) + count
        print(
            f"produce: wrote {total['samples']} samples in {total['shards']} shards "
            f"({total['skipped_shards']} already complete) to {out_dir} in {seconds:.1f} s "
            f"({total['samples'] / max(seconds, 1e-9):.1f} samples/s, {world} processes); "
            f"layouts drawn {total['attempts']}, rejected {rejected or 0}; "
            + _ending(complete, array_job, finalize, sum(not writer.is_complete(s) for s in range(len(sizes))))
        )
        for warning in (check or {}).get("warnings", []):
            print(f"produce: warning: layouts unlike the real ones (a collapsed layout generator?): {warning}")
    accelerator.wait_for_everyone()
    return 0


def check_shared_output(writer, everyone: list[dict[str, Any]], out_dir: Path) -> None:
    """After every process finished its shards: each must be complete here too. Without a
    filesystem the nodes share, the other nodes' shards are on their own disks: say so in one line
    (instead of "shards left, run again", which would write them again, forever)."""
    elsewhere = {rank: [s for s in st.get("mine", []) if not writer.is_complete(s)] for rank, st in enumerate(everyone)}
    elsewhere = {rank: shards for rank, shards in elsewhere.items() if shards and rank > 0}
    if elsewhere:
        rank, shards = next(iter(elsewhere.items()))
        missing = sum(map(len, elsewhere.values()))
        raise DatasetError(
            f"{out_dir}: {missing} shards that other processes wrote are not in this folder on the main process's "
            f"node (e.g. shard {shards[0]} of process {rank}): processes on several nodes need produce.out on a "
            "filesystem every node shares; without one, run array jobs (job=I/N, one per node), gather their shards "
            "into one folder and run finalize=true there")


def _ending(complete: bool, array_job: tuple[int, int] | None, finalize: bool, left: int) -> str:
    if array_job is not None and not finalize:
        return (f"array job {array_job[0]}/{array_job[1]} done; {left} shards of the plan not on disk yet; once "
                "every job has finished, the same command with finalize=true (and no job=) writes the manifest")
    return "manifest written" if complete else f"{left} shards left, run again to finish"
