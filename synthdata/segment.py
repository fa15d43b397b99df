"""`accelerate launch synthdata/segment.py recipe=R run_dir=DIR [seg.*=...]`: train a segmenter.

Real data (the recipe's reader, or `seg.real` shards) and synthetic shards (`seg.synthetic`) are
streamed and mixed by `seg.synthetic_ratio`; validation mIoU every `seg.val_every` steps;
resumable checkpoints under RUN_DIR/checkpoints/segmenter; the run ends with RUN_DIR/report.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    # `accelerate launch synthdata/segment.py` puts synthdata/ first on sys.path, where our
    # module names (inspect, config, data, ...) would shadow the standard library's; import the
    # package from its root instead, before anything else is imported.
    import os.path

    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import dataclasses  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from dataclasses import MISSING  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from synthdata.config import ConfigError, Recipe, SegConfig  # noqa: E402
from synthdata.datasets.base import ClassInfo, DatasetError, DatasetReader  # noqa: E402
from synthdata.seeding import derive_seed, numpy_rng  # noqa: E402


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def subset_reader(reader: DatasetReader, *, fraction: float = 1.0, ids_file: str | None = None,
                  seed: int = 0) -> DatasetReader:
    """A copy of `reader` restricted to a fixed subset of its samples (low-data experiments).

    `fraction`: the first ceil(fraction * N) items of a permutation seeded by the recipe seed
    only (same subset on any number of processes). `ids_file`: one sample id per line.
    """
    import copy

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
    from synthdata.data import Source, source_classes
    from synthdata.datasets.base import make_reader

    seg = recipe.seg
    if not 0.0 <= seg.synthetic_ratio <= 1.0:
        raise ConfigError(f"seg.synthetic_ratio must be in [0, 1], got {seg.synthetic_ratio}")
    if seg.synthetic_ratio > 0 and not seg.synthetic:
        raise ConfigError("seg.synthetic_ratio > 0 needs seg.synthetic=SHARDS (a pattern or folder)")
    info: dict[str, Any] = {}
    if seg.real:
        if seg.real_fraction < 1.0 or seg.real_subset:
            raise ConfigError("seg.real_fraction / seg.real_subset select from the reader; unset seg.real")
        real = Source(urls=seg.real, name="real")
        info["real"] = {"shards": seg.real}
    else:
        reader = make_reader(recipe.data, recipe.data.train_split)
        reader = subset_reader(reader, fraction=seg.real_fraction, ids_file=seg.real_subset, seed=recipe.seed)
        if len(reader) == 0:
            raise DatasetError(f"{recipe.data.reader}: training split '{recipe.data.train_split}' is empty")
        real = Source(reader=reader, name="real")
        info["real"] = {"reader": recipe.data.reader, "root": recipe.data.root, "split": recipe.data.train_split,
                        "samples": len(reader), "fraction": seg.real_fraction, "subset_file": seg.real_subset}
    got = source_classes(real)
    if got is not None and not got.same_as(classes):
        raise DatasetError(f"seg.real {seg.real}: classes {list(got.names)} differ from the recipe's")
    if seg.synthetic_ratio == 0:
        return [real], info
    synth = Source(urls=seg.synthetic, weight=seg.synthetic_ratio, name="synthetic")
    got = source_classes(synth)
    if got is None or not got.same_as(classes):
        found = "no class list" if got is None else f"classes {list(got.names)} (ignore {got.ignore_index})"
        raise DatasetError(
            f"seg.synthetic {seg.synthetic}: {found}, but the recipe has {list(classes.names)} "
            f"(ignore {classes.ignore_index})"
        )
    real.weight = 1.0 - seg.synthetic_ratio
    info["synthetic"] = {"shards": seg.synthetic, "ratio": seg.synthetic_ratio}
    return [real, synth], info


def eval_reader(recipe: Recipe, split: str) -> DatasetReader:
    """`split` of the recipe's dataset at the evaluation resolution (eval.height/width)."""
    from synthdata.datasets.base import make_reader

    data = dataclasses.replace(recipe.data, height=recipe.eval.height or recipe.data.height,
                               width=recipe.eval.width or recipe.data.width)
    reader = make_reader(data, split)
    if len(reader) == 0:
        raise DatasetError(f"{recipe.data.reader}: evaluation split '{split}' is empty")
    return reader


def eval_window(recipe: Recipe) -> tuple[int, int] | None:
    if not recipe.eval.sliding_window:
        return None
    window = recipe.eval.window or ([recipe.seg.crop_height, recipe.seg.crop_width]
                                    if recipe.seg.crop_height and recipe.seg.crop_width else None)
    if not window or len(window) != 2:
        raise ConfigError("eval.sliding_window needs eval.window=[H, W] (or seg.crop_height/width)")
    return int(window[0]), int(window[1])


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


def train(recipe: Recipe, run_dir: Path, accelerator) -> dict[str, Any]:
    """Train (or resume) the segmenter of `recipe` in `run_dir`; returns the final report's data."""
    from tqdm.auto import tqdm

    from synthdata.checkpoint import portable_checkpoint, save_atomic
    from synthdata.config import recipe_to_dict, recipe_to_yaml
    from synthdata.data import Source, make_loader
    from synthdata.metrics.miou import evaluate_segmenter
    from synthdata.runtime import load_training_state, save_training_state, seed_step
    from synthdata.segmenters import LossFilter, build_segmenter, class_mean_loss, load_segmenter, segmenter_arch

    seg, device = recipe.seg, accelerator.device
    val = eval_reader(recipe, recipe.data.val_split)  # checked first: an empty split stops early
    classes, ignore = val.classes, val.classes.ignore_index
    sources, data_info = data_sources(recipe, classes)
    window = eval_window(recipe)
    crop = (seg.crop_height, seg.crop_width) if seg.crop_height and seg.crop_width else None
    ckpt_dir = run_dir / "checkpoints" / "segmenter"
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "segment_recipe.yaml").write_text(recipe_to_yaml(recipe))

    model = build_segmenter(seg.model, num_classes=classes.num_classes)
    optimizer = make_optimizer(model.parameters(), seg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(seg.schedule, s, seg.steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # not prepared: it must step once per step
    dice = None
    if seg.dice:
        from segmentation_models_pytorch.losses import DiceLoss

        dice = DiceLoss("multiclass", from_logits=True, ignore_index=ignore)

    progress = load_training_state(accelerator, ckpt_dir) or {}
    start = int(progress.get("step", 0))
    history: list[dict[str, Any]] = progress.get("history", [])
    # samples seen per source, summed over processes when saved: only one process carries them on
    counts: dict[str, int] = dict(progress.get("source_counts", {})) if accelerator.is_main_process else {}

    def total_counts() -> dict[str, int]:
        names = [s.name for s in sources]
        local = torch.tensor([counts.get(n, 0) for n in names], dtype=torch.int64, device=device)
        summed = accelerator.reduce(local, "sum") if accelerator.num_processes > 1 else local
        return {n: int(v) for n, v in zip(names, summed.tolist()) if v}

    loss_filter = None
    if seg.synthetic_filter == "loss":
        if not seg.filter_segmenter or "synthetic" not in data_info:
            raise ConfigError("seg.synthetic_filter=loss needs seg.filter_segmenter=CKPT and seg.synthetic")
        judge, _ = load_segmenter(seg.filter_segmenter, expected=classes, device=device)
        real_eval = make_loader(dataclasses.replace(sources[0], weight=1.0), batch_size=seg.batch_size,
                                augment=False, shuffle=False, crop=crop)
        means = class_mean_loss(judge, real_eval, num_classes=classes.num_classes, ignore_index=ignore,
                                accelerator=accelerator)
        loss_filter = LossFilter(judge, means, k=seg.filter_k, ignore_index=ignore)
    elif seg.synthetic_filter != "none":
        raise ConfigError(f"seg.synthetic_filter must be none or loss, got {seg.synthetic_filter!r}")

    def validate(step: int, keep: int = 0) -> dict[str, Any]:
        loader = make_loader(Source(reader=val, name="val"), batch_size=recipe.eval.batch_size,
                             augment=False, shuffle=False)
        out = evaluate_segmenter(model, loader, num_classes=classes.num_classes, ignore_index=ignore,
                                 accelerator=accelerator, window=window, keep_examples=keep)
        history.append({"step": step, "miou": out["miou"], "pixel_accuracy": out["pixel_accuracy"]})
        return out

    def checkpoint(step: int) -> Path:
        path = ckpt_dir / "latest.pt"
        state = {"step": step, "history": history, "source_counts": total_counts()}
        save_training_state(accelerator, ckpt_dir, state)
        if accelerator.is_main_process:
            weights = accelerator.unwrap_model(model).state_dict()
            save_atomic(portable_checkpoint(kind="segmenter", model=weights, step=step,
                                            recipe=recipe_to_dict(recipe), classes=classes,
                                            arch=segmenter_arch(seg.model)), path)
        accelerator.wait_for_everyone()
        return path

    started, step, last = time.time(), start, {}
    if start < seg.steps:
        loader = make_loader(sources, batch_size=seg.batch_size, augment=True, shuffle=True,
                             epoch_length=(seg.steps - start) * seg.batch_size, num_workers=seg.num_workers,
                             seed=derive_seed(recipe.seed, start), crop=crop)
        bar = tqdm(total=seg.steps, initial=start, desc="segment", unit="step",
                   disable=not accelerator.is_main_process)
        model.train()
        for batch in loader:
            seed_step(recipe.seed, step)
            images = batch["image"].to(device, non_blocking=True)
            target = batch["layout"].to(device, non_blocking=True)
            for name in batch["source"]:
                counts[name] = counts.get(name, 0) + 1
            if loss_filter is not None:
                synthetic = torch.tensor([s == "synthetic" for s in batch["source"]], device=device)
                target = loss_filter(images, target, synthetic)
            with accelerator.autocast():
                logits = model(images)
            last = segmentation_loss(logits, target, ignore_index=ignore, dice=dice)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(last["loss"])
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss'].item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            if seg.val_every and step % seg.val_every == 0 and step < seg.steps:
                bar.write(f"step {step}: val mIoU {100 * validate(step)['miou']:.1f}%")
                model.train()
            if seg.checkpoint_every and step % seg.checkpoint_every == 0 and step < seg.steps:
                checkpoint(step)
            if step >= seg.steps:
                break
        bar.close()
        if step < seg.steps:
            raise DatasetError(f"the training stream ended after {step} of {seg.steps} steps")
    seconds = time.time() - started
    metrics = validate(step, keep=8)  # before the checkpoint, so its history includes this one
    path = checkpoint(step)
    if loss_filter is not None:
        data_info["synthetic"]["filter"] = loss_filter.summary(classes, accelerator)
    return {"metrics": metrics, "classes": classes, "checkpoint": path, "steps": step, "start": start,
            "seconds": seconds, "history": history, "source_counts": total_counts(), "data": data_info,
            "window": window, "val_images": len(val),
            "final_loss": float(last["loss"].item()) if last else None}


def write_segment_report(recipe: Recipe, run_dir: Path, result: dict[str, Any], accelerator) -> Path:
    from synthdata.metrics.miou_cli import run_info
    from synthdata.report import write_report

    seg = recipe.seg
    info = run_info(recipe, checkpoint=result["checkpoint"], split=recipe.data.val_split,
                    num_images=result["metrics"]["num_images"], window=result["window"],
                    accelerator=accelerator)
    info.update({"steps": result["steps"], "resumed_from_step": result["start"],
                 "train_seconds": round(result["seconds"], 1), "final_loss": result["final_loss"],
                 "batch_size": seg.batch_size, "source_counts": result["source_counts"],
                 "data_sources": result["data"], "history": result["history"]})
    kind = "real + synthetic" if seg.synthetic_ratio > 0 else "real only"
    title = f"{recipe.name}: {seg.model.arch}-{seg.model.encoder}, {kind}, {result['steps']} steps"
    json_path, _ = write_report(run_dir / "report", title=title, metrics=result["metrics"],
                                classes=result["classes"], info=info)
    return json_path


def _main(argv: list[str]) -> int:
    from synthdata.config import parse_command_line
    from synthdata.runtime import make_accelerator

    recipe, args = parse_command_line(argv, {"run_dir": MISSING})
    run_dir = Path(str(args["run_dir"]))
    accelerator = make_accelerator(mixed_precision=recipe.seg.mixed_precision)
    result = train(recipe, run_dir, accelerator)
    if accelerator.is_main_process:
        report = write_segment_report(recipe, run_dir, result, accelerator)
        m = result["metrics"]
        rate = (result["steps"] - result["start"]) / max(result["seconds"], 1e-9)
        print(f"segment: {result['steps']} steps ({rate:.2f} step/s, {result['seconds']:.0f} s), val mIoU "
              f"{100 * m['miou']:.1f}% on {m['num_images']} images -> {report.with_suffix('.md')}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def main(argv: list[str] | None = None) -> int:
    from synthdata.checkpoint import CheckpointError
    from synthdata.entry import run_main

    try:
        return run_main(_main, argv)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
