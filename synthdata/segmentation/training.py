"""`accelerate launch synthdata/segment.py recipe=R run_dir=DIR [seg.*=...]`: train a segmenter.

Real data (the recipe's reader, or `seg.real` shards) and synthetic shards (`seg.synthetic`) are
streamed and mixed by `seg.synthetic_ratio` under `seg.synthetic_schedule` (constant | decay |
pretrain, see `synthetic_per_step`; after pretraining neither the optimiser nor the LR schedule
restarts); validation mIoU every `seg.val_every` steps; losses, learning rate and val mIoU logged to
the recipe's trackers (`log_with`, `core.tracking`) at the steps the bar shows them;
resumable checkpoints under RUN_DIR/checkpoints/segmenter (a resumed run trains on the batches of
an uninterrupted one: `SegmentationRun.batches`); the run ends with RUN_DIR/report.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss
from tqdm.auto import tqdm

from synthdata.core.checkpoint import portable_checkpoint
from synthdata.core.contract import ClassInfo, ConfigError, DatasetError
from synthdata.core.recipe import Recipe, SegConfig
from synthdata.core.recipe_loading import recipe_to_dict
from synthdata.core.run_dir import CheckpointFolder, save_resolved_recipe
from synthdata.core.runtime import seed_step
from synthdata.core.seeding import derive_seed, numpy_rng
from synthdata.core.tracking import log_scalars
from synthdata.data.loader import Source, make_loader, source_classes, verify_source
from synthdata.data.readers.base import DatasetReader, make_reader
from synthdata.metrics.evaluation import (
    eval_flips,
    eval_reader,
    eval_window,
    image_iou_info,
    image_iou_summary,
    run_info,
)
from synthdata.metrics.miou import evaluate_segmenter
from synthdata.metrics.report import write_report
from synthdata.models.segmenters import build_segmenter, load_segmenter, segmenter_arch
from synthdata.segmentation.freemask import (
    LossFilter,
    class_mean_loss,
)
from synthdata.texturing.copy_paste_transform import CopyPaste, OnlineCopyPaste
from synthdata.texturing.pipeline import bank_path, prepare_bank

# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

# keys the seed of the segmenter's initial weights (three keys: never a step's seed_step(seed, step))
SEGMENTER_INIT_KEY = 0x5E5


def subset_reader(reader: DatasetReader, *, fraction: float = 1.0, ids_file: str | None = None,
                  seed: int = 0) -> DatasetReader:
    """A copy of `reader` restricted to a fixed subset of its samples (low-data experiments).

    `fraction`: the first ceil(fraction * N) items of a permutation seeded by the recipe seed
    only (same subset on any number of processes). `ids_file`: one sample id per line.
    """

    if ids_file is not None:
        path = Path(ids_file)
        if not path.is_file():
            raise DatasetError(f"seg.real_subset: file not found: {path}")
        wanted = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        ids = [str(reader[i]["meta"]["id"]) for i in range(len(reader))]
        lookup = {sid: i for i, sid in enumerate(ids)}
        unknown = [w for w in wanted if w not in lookup]
        if unknown:
            raise DatasetError(f"{path}: {len(unknown)} ids not in the {reader.split} split, e.g. {unknown[:5]}")
        keep = sorted({lookup[w] for w in wanted})
    elif fraction < 1.0:
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"seg.real_fraction must be in (0, 1], got {fraction}")
        n = max(1, math.ceil(fraction * len(reader)))
        keep = sorted(numpy_rng(seed, 0x5EB).permutation(len(reader))[:n].tolist())
    else:
        return reader
    sub = copy.copy(reader)
    sub.items = [reader.items[i] for i in keep]
    return sub


def data_sources(recipe: Recipe, classes: ClassInfo) -> tuple[list[Any], dict[str, Any]]:
    """The training sources (real, and synthetic when asked) and their description for reports."""

    seg = recipe.seg
    if not 0.0 <= seg.synthetic_ratio <= 1.0:
        raise ConfigError(f"seg.synthetic_ratio must be in [0, 1], got {seg.synthetic_ratio}")
    if seg.synthetic_ratio > 0 and not seg.synthetic:
        raise ConfigError("seg.synthetic_ratio > 0 needs seg.synthetic=SHARDS (a pattern or folder)")
    info: dict[str, Any] = {}
    if seg.real:
        if seg.real_fraction < 1.0 or seg.real_subset or recipe.data.subset is not None:
            raise ConfigError("seg.real_fraction / seg.real_subset / data.subset select from the reader; unset seg.real")
        real = Source(urls=seg.real, name="real")
        info["real"] = {"shards": seg.real}
    else:
        reader = make_reader(recipe.data, recipe.data.train_split)
        reader = subset_reader(reader, fraction=seg.real_fraction, ids_file=seg.real_subset, seed=recipe.seed)
        if len(reader) == 0:
            raise DatasetError(f"{recipe.data.reader}: training split '{recipe.data.train_split}' is empty")
        real = Source(reader=reader, name="real")
        info["real"] = {"reader": recipe.data.reader, "root": recipe.data.root, "split": recipe.data.train_split,
                        "samples": len(reader), "fraction": seg.real_fraction, "subset_file": seg.real_subset,
                        "data_subset": reader.subset}
    got = source_classes(real)
    if got is not None and not got.same_as(classes):
        raise DatasetError(f"seg.real {seg.real}: classes {list(got.names)} differ from the recipe's")
    verify_source(real)  # once per run: a shard changed since its manifest was written stops here
    if seg.synthetic_ratio == 0 and seg.synthetic_schedule != "pretrain":
        return [real], info
    if seg.synthetic_schedule != "constant" and not seg.synthetic:
        raise ConfigError(f"seg.synthetic_schedule={seg.synthetic_schedule} needs seg.synthetic=SHARDS")
    synth = Source(urls=seg.synthetic, weight=seg.synthetic_ratio, name="synthetic")
    got = source_classes(synth)
    if got is None or not got.same_as(classes):
        found = "no class list" if got is None else f"classes {list(got.names)} (ignore {got.ignore_index})"
        raise DatasetError(
            f"seg.synthetic {seg.synthetic}: {found}, but the recipe has {list(classes.names)} "
            f"(ignore {classes.ignore_index})"
        )
    verify_source(synth)
    real.weight = 1.0 - seg.synthetic_ratio
    info["synthetic"] = {"shards": seg.synthetic, "ratio": seg.synthetic_ratio, "schedule": seg.synthetic_schedule}
    if seg.synthetic_schedule == "pretrain":
        info["synthetic"]["pretrain_steps"] = seg.pretrain_steps
    return [real, synth], info


def online_copy_paste(recipe: Recipe, run_dir: Path, accelerator) -> OnlineCopyPaste:
    """`seg.online_copy_paste`: the transform that pastes bank objects into real training samples,
    with the bank of the training split in RUN_DIR/bank (built by the main process when missing,
    as `train stage=image` builds it for composites) and produce.copy_paste_*'s options."""
    seg, cp = recipe.seg, recipe.produce
    if seg.real:
        raise ConfigError("seg.online_copy_paste builds its segment bank from the reader's training split; "
                          "unset seg.real (real-data shards)")
    if seg.real_fraction < 1.0 or seg.real_subset:
        raise ConfigError("seg.online_copy_paste pastes objects of the whole training split (data.subset), but "
                          "seg.real_fraction / seg.real_subset train on part of it: the pastes would bring in "
                          "labels the segmenter is not meant to see; select the images with data.subset instead")
    bank = prepare_bank(recipe, run_dir, accelerator=accelerator, progress=accelerator.is_main_process, log=None)
    classes = cp.copy_paste_classes
    try:
        transform = CopyPaste(bank, max_objects=seg.online_copy_paste, classes=classes, choice=cp.copy_paste_choice,
                              scale=cp.copy_paste_scale, flip=cp.copy_paste_flip, position=cp.copy_paste_position,
                              p=seg.online_copy_paste_p)
    except ValueError as error:
        raise ConfigError(f"seg.online_copy_paste with produce.copy_paste_*: {error}") from None
    return OnlineCopyPaste(transform)


def synthetic_per_step(seg: SegConfig) -> list[int]:
    """Synthetic samples in the batch of each step 0..seg.steps-1 under `seg.synthetic_schedule`.

    The share of step s is `synthetic_ratio` (constant), `synthetic_ratio * (1 - s / (steps - 1))`
    (decay: 0 at the last step) or 1 for s < `pretrain_steps` and 0 after (pretrain). Counts are
    rounded on the running total, so the long-run share is exact, not rounded per step (ratio 0.1,
    batches of 8: 0 or 1 synthetic samples a step, 10% in all).
    """
    steps, batch, schedule = seg.steps, seg.batch_size, seg.synthetic_schedule
    if schedule == "pretrain":
        if not 0 < seg.pretrain_steps <= steps:
            raise ConfigError(f"seg.synthetic_schedule=pretrain needs 0 < seg.pretrain_steps <= seg.steps ({steps}), "
                              f"got {seg.pretrain_steps}")
        return [batch if s < seg.pretrain_steps else 0 for s in range(steps)]
    if not 0.0 <= seg.synthetic_ratio <= 1.0:
        raise ConfigError(f"seg.synthetic_ratio must be in [0, 1], got {seg.synthetic_ratio}")
    if schedule == "constant":
        ratios = [seg.synthetic_ratio] * steps
    elif schedule == "decay":
        ratios = [seg.synthetic_ratio * (1.0 - s / (steps - 1)) if steps > 1 else seg.synthetic_ratio
                  for s in range(steps)]
    else:
        raise ConfigError(f"seg.synthetic_schedule must be constant, decay or pretrain, got {schedule!r}")
    out, total, given = [], 0.0, 0
    for r in ratios:
        total += r * batch
        n = min(batch, max(0, math.floor(total + 0.5) - given))
        out.append(n)
        given += n
    return out


def merge_batches(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Loader batches -> one batch (tensors concatenated, lists joined), in the given order."""
    out: dict[str, Any] = {}
    for key, value in parts[0].items():
        if isinstance(value, torch.Tensor):
            out[key] = torch.cat([p[key] for p in parts])
        elif isinstance(value, list):
            out[key] = [v for p in parts for v in p[key]]
    return out


# --------------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------------


def make_optimizer(params, seg: SegConfig) -> torch.optim.Optimizer:
    if seg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=seg.lr, weight_decay=seg.weight_decay)
    if seg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=seg.lr, momentum=0.9, weight_decay=seg.weight_decay, nesterov=True)
    raise ConfigError(f"seg.optimizer must be adamw or sgd, got {seg.optimizer!r}")


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Poly (power 0.9, DeepLab, Chen et al. 2017) or cosine decay of the learning rate."""
    t = min(step, total) / max(1, total)
    if schedule == "poly":
        return (1.0 - t) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    raise ConfigError(f"seg.schedule must be poly or cosine, got {schedule!r}")


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int,
                      dice: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Cross-entropy over labelled pixels (+ Dice): `logits (B, C, H, W)`, `target (B, H, W)`.

    Averaged over the labelled pixels with a floor of one, so an all-ignore batch gives 0, not NaN.
    """
    ce = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    ce = ce / (target != ignore_index).sum().clamp(min=1)
    out = {"ce": ce, "loss": ce}
    if dice is not None:
        out["dice"] = dice(logits.float(), target)
        out["loss"] = ce + out["dice"]
    return out


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


class SegmentationRun:
    """One segmenter training run in `run_dir`: model, optimiser, data, checkpoints, validation.

    `run()` trains (or resumes) to `seg.steps` and returns what the final report needs.
    """

    def __init__(self, recipe: Recipe, run_dir: Path, accelerator):

        self.recipe, self.seg, self.accelerator, self.device = recipe, recipe.seg, accelerator, accelerator.device
        self.val = eval_reader(recipe, recipe.data.val_split)  # first: an empty split stops early
        self.classes, self.ignore = self.val.classes, self.val.classes.ignore_index
        self.sources, self.data_info = data_sources(recipe, self.classes)
        if recipe.seg.online_copy_paste:
            self.sources[0].transform = online_copy_paste(recipe, run_dir, accelerator)
            self.data_info["real"]["online_copy_paste"] = {
                "max_objects": recipe.seg.online_copy_paste, "p": recipe.seg.online_copy_paste_p,
                "classes": self.sources[0].transform.transform.classes, "bank": str(bank_path(run_dir))}
        self.window, self.flips = eval_window(recipe), eval_flips(recipe)
        seg = self.seg
        self.crop = (seg.crop_height, seg.crop_width) if seg.crop_height and seg.crop_width else None
        self.run_dir, self.ckpt_dir = run_dir, run_dir / "checkpoints" / "segmenter"
        seed_step(recipe.seed, SEGMENTER_INIT_KEY, 0)  # the same initial weights for a seed, in any process
        model = build_segmenter(seg.model, num_classes=self.classes.num_classes)
        optimizer = make_optimizer(model.parameters(), seg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(seg.schedule, s, seg.steps))
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        # the scheduler is not prepared (one step per step); its state is saved as plain tensors
        self.checkpoints = CheckpointFolder(accelerator, self.ckpt_dir, extras={"scheduler": self.scheduler})
        self.dice = None
        if seg.dice:

            self.dice = DiceLoss("multiclass", from_logits=True, ignore_index=self.ignore)
        progress = self.checkpoints.resume(self.portable) or {}
        self.start = int(progress.get("step", 0))
        self.history: list[dict[str, Any]] = progress.get("history", [])
        # samples per source, summed over processes when saved: one process carries them on
        self.counts: dict[str, int] = dict(progress.get("source_counts", {})) if accelerator.is_main_process else {}
        self.loss_filter = self._loss_filter()
        self.step_sources: list[int] = []  # synthetic samples in each batch trained on by this process
        if "synthetic" in self.data_info:
            synthetic_per_step(self.seg)  # a bad schedule stops here, before any training

    def _loss_filter(self):

        seg = self.seg
        if seg.synthetic_filter == "none":
            return None
        if seg.synthetic_filter != "loss":
            raise ConfigError(f"seg.synthetic_filter must be none or loss, got {seg.synthetic_filter!r}")
        if not seg.filter_segmenter or "synthetic" not in self.data_info:
            raise ConfigError("seg.synthetic_filter=loss needs seg.filter_segmenter=CKPT and seg.synthetic")
        judge, _ = load_segmenter(seg.filter_segmenter, expected=self.classes, device=self.device)
        real = make_loader(dataclasses.replace(self.sources[0], weight=1.0), batch_size=seg.batch_size,
                           augment=False, shuffle=False, crop=self.crop)
        means = class_mean_loss(judge, real, num_classes=self.classes.num_classes, ignore_index=self.ignore,
                                accelerator=self.accelerator)
        return LossFilter(judge, means, k=seg.filter_k, ignore_index=self.ignore)

    def total_counts(self) -> dict[str, int]:
        names = [s.name for s in self.sources]
        local = torch.tensor([self.counts.get(n, 0) for n in names], dtype=torch.int64, device=self.device)
        summed = self.accelerator.reduce(local, "sum") if self.accelerator.num_processes > 1 else local
        return {n: int(v) for n, v in zip(names, summed.tolist()) if v}

    def batches(self, step: int):
        """Training batches for steps `step`..seg.steps-1.

        constant: one loader mixing the sources by weight (smooth weighted round robin, then a
        shuffle buffer). decay / pretrain: each batch is composed of exactly
        `synthetic_per_step(seg)[s]` synthetic samples and the rest real, drawn from one endless
        loader per source. The optimiser and the LR schedule run once over all seg.steps: after
        pretraining neither restarts (the real-only phase continues the same poly/cosine decay).

        A run has one data stream, seeded at step 0; a resumed run draws and drops the batches of
        the steps it has already trained (data only, no model work), so it trains on exactly the
        batches of an uninterrupted run and ends with its weights (issue 34: a stream seeded at the
        resume step trained another model).
        """
        seg, seed = self.seg, derive_seed(self.recipe.seed, 0)
        if seg.synthetic_schedule == "constant" or len(self.sources) == 1:
            loader = make_loader(self.sources, batch_size=seg.batch_size, augment=True, shuffle=True,
                                 epoch_length=seg.steps * seg.batch_size, num_workers=seg.num_workers,
                                 seed=seed, crop=self.crop)
            yield from islice(loader, step, None)
            return
        per_step = synthetic_per_step(seg)
        real_src, synth_src = self.sources
        needed = {"real": seg.batch_size * seg.steps - sum(per_step), "synthetic": sum(per_step)}
        done = {"synthetic": sum(per_step[:step])}
        done["real"] = seg.batch_size * step - done["synthetic"]
        streams = {}
        for k, src in enumerate((real_src, synth_src)):
            if needed[src.name]:
                streams[src.name] = islice(make_loader(
                    dataclasses.replace(src, weight=1.0), batch_size=1, augment=True, shuffle=True,
                    epoch_length=needed[src.name], num_workers=seg.num_workers, seed=derive_seed(seed, k),
                    crop=self.crop), done[src.name], None)
        for n in per_step[step:]:
            parts = [next(streams["synthetic"]) for _ in range(n)]
            parts += [next(streams["real"]) for _ in range(seg.batch_size - n)]
            yield merge_batches(parts)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One optimiser step on a loader batch; returns the losses (detached)."""
        images = batch["image"].to(self.device, non_blocking=True)
        target = batch["layout"].to(self.device, non_blocking=True)
        for name in batch["source"]:
            self.counts[name] = self.counts.get(name, 0) + 1
        self.step_sources.append(sum(name == "synthetic" for name in batch["source"]))
        if self.loss_filter is not None:
            synthetic = torch.tensor([s == "synthetic" for s in batch["source"]], device=self.device)
            target = self.loss_filter(images, target, synthetic)
        with self.accelerator.autocast():
            logits = self.model(images)
        losses = segmentation_loss(logits, target, ignore_index=self.ignore, dice=self.dice)
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(losses["loss"])
        self.optimizer.step()
        self.scheduler.step()
        return {k: v.detach() for k, v in losses.items()}

    def validate(self, step: int, keep: int = 0) -> dict[str, Any]:
        """mIoU on the val split, kept in `history` and logged to the trackers (`recipe.log_with`)."""
        loader = make_loader(Source(reader=self.val, name="val"), batch_size=self.recipe.eval.batch_size,
                             augment=False, shuffle=False)
        out = evaluate_segmenter(self.model, loader, num_classes=self.classes.num_classes, ignore_index=self.ignore,
                                 accelerator=self.accelerator, window=self.window, flips=self.flips, keep_examples=keep)
        self.history.append({"step": step, "miou": out["miou"], "pixel_accuracy": out["pixel_accuracy"]})
        log_scalars(self.accelerator, {"segment/val_miou": out["miou"], "segment/val_pixel_accuracy": out["pixel_accuracy"]},
                    step)
        return out

    def portable(self, progress: dict[str, Any]) -> dict[str, Any]:
        weights = self.accelerator.unwrap_model(self.model).state_dict()
        return portable_checkpoint(kind="segmenter", model=weights, step=int(progress["step"]),
                                   recipe=recipe_to_dict(self.recipe), classes=self.classes,
                                   arch=segmenter_arch(self.seg.model))

    def checkpoint(self, step: int) -> Path:
        """Portable latest.pt (sampling, evaluation) and Accelerate state (resume), both atomic."""
        return self.checkpoints.save({"step": step, "history": self.history, "source_counts": self.total_counts()},
                                     self.portable)

    def run(self) -> dict[str, Any]:
        seg, accelerator = self.seg, self.accelerator
        if accelerator.is_main_process:
            save_resolved_recipe(self.ckpt_dir, self.recipe)
        started, step, last = time.time(), self.start, {}
        if step < seg.steps:
            loader = self.batches(step)
            bar = tqdm(total=seg.steps, initial=step, desc="segment", unit="step",
                       disable=not accelerator.is_main_process)
            self.model.train()
            for batch in loader:
                seed_step(self.recipe.seed, step)
                last = self.train_step(batch)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss'].item():.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.1e}")
                log_scalars(accelerator, {**{f"segment/{k}": v for k, v in last.items()},
                                          "segment/lr": self.scheduler.get_last_lr()[0]}, step)
                if seg.val_every and step % seg.val_every == 0 and step < seg.steps:
                    bar.write(f"step {step}: val mIoU {100 * self.validate(step)['miou']:.1f}%")
                    self.model.train()
                if seg.checkpoint_every and step % seg.checkpoint_every == 0 and step < seg.steps:
                    self.checkpoint(step)
                if step >= seg.steps:
                    break
            bar.close()
            if step < seg.steps:
                raise DatasetError(f"the training stream ended after {step} of {seg.steps} steps")
        seconds = time.time() - started
        metrics = self.validate(step, keep=8)  # before the checkpoint, so its history has it
        if accelerator.is_main_process:  # image-level IoU (the SEM benchmarks' metric), as translate reports it
            metrics["image_iou"] = image_iou_summary(accelerator.unwrap_model(self.model), self.val,
                                                     window=self.window, device=self.device, flips=self.flips)
        path = self.checkpoint(step)
        self.checkpoints.finish()
        if self.loss_filter is not None:
            self.data_info["synthetic"]["filter"] = self.loss_filter.summary(self.classes, accelerator)
        return {"metrics": metrics, "classes": self.classes, "checkpoint": path, "steps": step,
                "start": self.start, "seconds": seconds, "history": self.history,
                "source_counts": self.total_counts(), "data": self.data_info, "window": self.window,
                "final_loss": float(last["loss"].item()) if last else None, "split_note": self.val.split_note}


def train(recipe: Recipe, run_dir: Path, accelerator) -> dict[str, Any]:
    """Train (or resume) the segmenter of `recipe` in `run_dir`; returns the final report's data."""
    return SegmentationRun(recipe, run_dir, accelerator).run()


def write_segment_report(recipe: Recipe, run_dir: Path, result: dict[str, Any], accelerator) -> Path:

    seg = recipe.seg
    info = run_info(recipe, checkpoint=result["checkpoint"], split=recipe.data.val_split,
                    num_images=result["metrics"]["num_images"], window=result["window"],
                    accelerator=accelerator, split_note=result.get("split_note"))
    info.update({"steps": result["steps"], "resumed_from_step": result["start"],
                 "train_seconds": round(result["seconds"], 1), "final_loss": result["final_loss"],
                 "batch_size": seg.batch_size, "source_counts": result["source_counts"],
                 "data_sources": result["data"], "history": result["history"]})
    if "image_iou" in result["metrics"]:
        info.update(image_iou_info(result["metrics"]["image_iou"], result["classes"]))
    synthetic = result["data"].get("synthetic") or {}
    if "filter" in synthetic:  # FreeMask: the share of synthetic pixels ignored, per class
        info["synthetic_ignored_fraction"] = synthetic["filter"]["ignored_fraction"]
    kind = "real + synthetic" if seg.synthetic_ratio > 0 else "real only"
    if seg.online_copy_paste:
        kind += f", online copy-paste (up to {seg.online_copy_paste}, p {seg.online_copy_paste_p:g})"
    title = f"{recipe.name}: {seg.model.arch}-{seg.model.encoder}, {kind}, {result['steps']} steps"
    json_path, _ = write_report(run_dir / "report", title=title, metrics=result["metrics"],
                                classes=result["classes"], info=info)
    return json_path
