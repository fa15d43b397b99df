"""Train one generator stage: `accelerate launch synthdata/train.py recipe=R stage=layout|depth|image
run_dir=DIR [train.steps=N ...]` (the command is `synthdata/train.py`).

Checkpoints go to RUN_DIR/checkpoints/{stage}/ (portable `latest.pt` + Accelerate `state/`);
rerunning the same command resumes from the newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm.auto import tqdm

from synthdata.core.checkpoint import check_classes, portable_checkpoint
from synthdata.core.contract import CheckpointError, ClassInfo, ConfigError
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import recipe_to_dict
from synthdata.core.run_dir import CheckpointFolder, checkpoint_chunks, exact_batches, save_resolved_recipe
from synthdata.core.runtime import (
    count_parameters,
    format_count,
    make_accelerator,
    seed_step,
)
from synthdata.core.seeding import derive_seed, torch_generator
from synthdata.core.tracking import log_scalars, start_tracking
from synthdata.data.loader import Source, make_loader, source_classes
from synthdata.data.readers import make_reader
from synthdata.data.readers.base import refuse_subset_of_shards
from synthdata.data.shards import read_manifest
from synthdata.generation import stages
from synthdata.generation.encodings import depth_range
from synthdata.generation.sampler import save_rows, stage_checkpoint
from synthdata.generation.texturing import build_for_training, harmoniser_inputs, is_composite
from synthdata.models.augment import diff_augment
from synthdata.models.ema import EMA


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def checkpoint_dir(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / "checkpoints" / stage


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _source(recipe: Recipe):
    """The training data: the recipe's reader, or real-data shards when train.shards is set."""

    if recipe.train.shards:
        refuse_subset_of_shards(recipe.data, "train.shards", recipe.train.shards)
        source = Source(urls=recipe.train.shards)
        size = None
        if Path(recipe.train.shards).is_dir():  # sample count for diffaugment=auto

            size = int(read_manifest(recipe.train.shards).get("num_samples", 0)) or None
        return source, source_classes(source), size
    reader = make_reader(recipe.data, recipe.data.train_split)
    return reader, reader.classes, len(reader)


def _batches(source, recipe: Recipe, *, seed: int, count: int, with_depth: bool, rank: int,
             world: int) -> Iterator[dict[str, Any]]:
    """`count` micro-batches of a stream seeded by `seed` (so a segment starting at a given step
    sees the same data whether or not the run was resumed there)."""

    bs = recipe.train.batch_size
    src = source if recipe.train.shards else Source(reader=source)
    loader = make_loader(src, batch_size=bs, augment=False, shuffle=True, epoch_length=count * bs,
                         num_workers=recipe.train.num_workers, seed=seed, with_depth=with_depth,
                         rank=rank, world_size=world)
    return exact_batches(loader, count)


def _to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _max_depth(run_dir: Path, stage: str, source, recipe: Recipe, needs_depth: bool) -> float | None:
    """Depth normalisation range: reused from this or the other depth-using stage's checkpoint so
    depth and image stages agree; else measured on the first training samples."""
    if not needs_depth:
        return None
    for name in (stage, "depth", "image"):
        try:
            ckpt, _ = stage_checkpoint(run_dir, name)
        except CheckpointError:
            continue
        if ckpt.get("arch", {}).get("max_depth"):
            return float(ckpt["arch"]["max_depth"])
    if recipe.train.shards:
        batch = next(iter(_batches(source, recipe, seed=recipe.seed, count=1, with_depth=True, rank=0, world=1)))
        return depth_range([{"depth": batch["depth"]}])
    samples = [source[i] for i in range(min(len(source), 64))]
    return depth_range(samples)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _stage_setup(recipe: Recipe, stage: str, has_depth_data: bool) -> bool:
    """Validate what the stage needs; returns whether the image stage is conditioned on depth."""
    stages.check_stage(stage)
    if stage == "depth" and not recipe.data.has_depth:
        raise ConfigError(
            "recipe has data.has_depth=false: this dataset has no depth, so there is no depth stage; "
            "its chain runs layout -> image directly (train stage=image with stages.image.use_depth=false)"
        )
    if recipe.data.has_depth and stage != "layout" and not has_depth_data:
        raise ConfigError(f"data.has_depth is true but reader '{recipe.data.reader}' delivers no depth; "
                          "set data.has_depth=false (a pseudo-depth teacher is not supported yet)")
    use_depth = stage == "image" and recipe.stages.image.use_depth
    if use_depth and not recipe.data.has_depth:
        raise ConfigError("stages.image.use_depth=true needs depth data, but data.has_depth=false; "
                          "set stages.image.use_depth=false to condition the image stage on the layout only")
    return use_depth


def _diffaugment(setting: str, dataset_size: int | None) -> bool:
    if setting not in ("auto", "on", "off"):
        raise ConfigError(f"train.diffaugment must be auto, on or off, got {setting!r}")
    if setting == "auto":
        return dataset_size is not None and dataset_size < 1000
    return setting == "on"


@dataclasses.dataclass
class StageRun:
    """Everything one stage's training loop works with, built by `prepare_stage`."""

    accelerator: Any
    spec: stages.StageSpec
    G: torch.nn.Module  # prepared (maybe DDP-wrapped)
    D: torch.nn.Module
    G_plain: torch.nn.Module  # the bare modules inside
    D_plain: torch.nn.Module
    opt_g: Any
    opt_d: Any
    ema: Any
    checkpoints: CheckpointFolder
    source: Any
    classes: ClassInfo
    needs_depth: bool
    diffaugment: bool


def prepare_stage(recipe: Recipe, stage: str, run_dir: Path, accelerator) -> StageRun:
    """Check the recipe and data for `stage`; make the networks and optimizers on `accelerator`."""

    stages.check_stage(stage)
    cfg = recipe.train
    source, classes, size = _source(recipe)
    has_depth_data = bool(recipe.train.shards) or getattr(source, "has_depth", False)
    use_depth = _stage_setup(recipe, stage, has_depth_data)
    needs_depth = stage == "depth" or use_depth
    folder = checkpoint_dir(run_dir, stage)
    if folder.joinpath("latest.pt").exists() or folder.joinpath("previous.pt").exists():
        ckpt, path = stage_checkpoint(run_dir, stage)
        check_classes(ckpt, classes, path)

    spec = stages.stage_spec(stage, recipe, num_classes=classes.num_classes, use_depth=use_depth,
                             max_depth=_max_depth(run_dir, stage, source, recipe, needs_depth))
    seed_step(recipe.seed, spec.stage_id)  # reproducible initial weights
    G, D = spec.build_generator(), spec.build_discriminator()
    stage_cfg = getattr(recipe.stages, stage)
    opt_g = torch.optim.Adam(G.parameters(), lr=stage_cfg.lr_g, betas=tuple(stage_cfg.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=stage_cfg.lr_d, betas=tuple(stage_cfg.betas))
    G, D, opt_g, opt_d = accelerator.prepare(G, D, opt_g, opt_d)
    G_plain, D_plain = accelerator.unwrap_model(G), accelerator.unwrap_model(D)
    ema = EMA(G_plain, cfg.ema_decay)  # after prepare: the average lives on the training device
    checkpoints = CheckpointFolder(accelerator, folder, extras={"ema": ema})
    if accelerator.is_main_process:
        print(f"{stage}: generator {type(G_plain).__name__} {format_count(count_parameters(G_plain))} params, "
              f"critic {type(D_plain).__name__} {format_count(count_parameters(D_plain))} params, "
              f"precision {accelerator.mixed_precision}, {accelerator.num_processes} process(es)")
    return StageRun(accelerator, spec, G, D, G_plain, D_plain, opt_g, opt_d, ema, checkpoints, source, classes,
                    needs_depth, _diffaugment(cfg.diffaugment, size))


def train_stage(recipe: Recipe, *, stage: str, run_dir: str | Path, accelerator=None) -> dict[str, Any]:
    """Train (or resume) one stage up to `recipe.train.steps`; returns a summary dict. `accelerator`:
    the command's (default: one made from `train.mixed_precision`)."""
    run_dir = Path(run_dir)
    composites = None
    if stage == "image" and is_composite(recipe):  # build or check RUN_DIR/bank; maybe a harmoniser next
        harmonise = recipe.stages.image.harmonise != "none"
        if harmonise and recipe.train.shards:
            raise ConfigError("stages.image.harmonise trains on the recipe's reader (its composites come from the "
                              "bank of the same images); unset train.shards")
        built, bank = build_for_training(recipe, run_dir, accelerator=accelerator)
        if not harmonise:
            return built
        composites = harmoniser_inputs(recipe, bank)
    for key in ("steps", "batch_size", "checkpoint_every", "log_every", "gradient_accumulation"):
        if getattr(recipe.train, key) < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {getattr(recipe.train, key)}")
    if recipe.train.sample_every < 0:
        raise ConfigError(f"train.sample_every must be >= 0 (0: a sample grid only at the end), got {recipe.train.sample_every}")
    if accelerator is None:
        accelerator = make_accelerator(mixed_precision=recipe.train.mixed_precision, log_with=recipe.log_with,
                                       log_dir=run_dir / "logs")
    r = prepare_stage(recipe, stage, run_dir, accelerator)
    cfg, folder = recipe.train, checkpoint_dir(run_dir, stage)
    main_proc = accelerator.is_main_process
    progress = r.checkpoints.resume(portable=lambda p: _portable(r, stage=stage, step=int(p["step"]), recipe=recipe))
    start = 0
    if progress is not None:
        check_classes(progress, r.classes, folder / "state")
        start = int(progress["step"])
    if start >= cfg.steps:
        if main_proc:
            print(f"{stage}: already trained to step {start} (train.steps={cfg.steps}); nothing to do")
        return {"stage": stage, "steps": 0, "step": start, "checkpoint": str(folder / "latest.pt")}
    if main_proc:
        save_resolved_recipe(run_dir, recipe)  # the generator run's recipe, read by tools/ and produce
        if start:
            print(f"{stage}: resuming from step {start}")
    start_tracking(accelerator, recipe, f"train-{stage}", config={"stage": stage})  # recipe.log_with: RUN_DIR/logs/train-STAGE
    accum, stage_id = max(1, cfg.gradient_accumulation), stages.STAGE_IDS[stage]
    rank, world = accelerator.process_index, accelerator.num_processes
    preview = None
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {stage}", disable=not main_proc, dynamic_ncols=True)
    t0, step, logged = time.perf_counter(), start, {}
    for first, stop in checkpoint_chunks(start, cfg.steps, cfg.checkpoint_every):
        stream = _batches(r.source, recipe, seed=derive_seed(recipe.seed, stage_id, first), count=(stop - first) * accum,
                          with_depth=r.needs_depth, rank=rank, world=world)
        while step < stop:
            micro = [next(stream) for _ in range(accum)]
            if composites is not None:  # the harmoniser's input (a composite of the others, or perturbed)
                for j, batch in enumerate(micro):
                    batch["composite"] = composites(batch, derive_seed(recipe.seed, stage_id, step, rank, j))
            micro = [_to_device(batch, accelerator.device) for batch in micro]
            if preview is None:
                preview = micro[0]
            logged = _train_step(r, recipe.seed, stage_id, step, micro, diff_augment if r.diffaugment else None)
            _check_finite(accelerator, logged, stage, step, folder)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                scalars = {k: float(v) for k, v in logged.items()}
                bar.set_postfix({k: f"{v:.3f}" for k, v in scalars.items()})
                log_scalars(accelerator, {f"{stage}/{k}": v for k, v in scalars.items()}, step)
            if main_proc and ((cfg.sample_every and step % cfg.sample_every == 0) or step == cfg.steps):
                _save_samples(r.spec, r.ema.module, preview, r.classes,
                              run_dir / "samples" / stage / f"step-{step:06d}.png", recipe.seed)
        _save_checkpoint(r, stage=stage, step=step, recipe=recipe)
    r.checkpoints.finish()
    bar.close()
    accelerator.end_training()
    seconds = time.perf_counter() - t0
    done = step - start
    summary = {"stage": stage, "steps": done, "step": step, "seconds": seconds, "it_per_s": done / max(seconds, 1e-9),
               "checkpoint": str(folder / "latest.pt"), "losses": {k: float(v) for k, v in logged.items()}}
    if main_proc:
        print(f"{stage}: {done} steps in {seconds:.1f}s ({summary['it_per_s']:.2f} it/s), "
              f"step {step}/{cfg.steps}, checkpoint {summary['checkpoint']}")
    return summary


def _train_step(r: StageRun, seed: int, stage_id: int, step: int, micro: list[dict[str, Any]],
                augment_fn) -> dict[str, torch.Tensor]:
    """One optimisation step of D then G over `len(micro)` micro-batches (gradient accumulation).

    With one micro-batch the fake made for the D phase is reused for the G phase (pix2pix order);
    with several, D sees no-grad fakes and G regenerates them, so no graph is kept across them.
    """
    spec, accelerator, G, D, G_plain, D_plain = r.spec, r.accelerator, r.G, r.D, r.G_plain, r.D_plain
    accum, rank = len(micro), accelerator.process_index
    seed_step(seed, stage_id, step, rank)  # Gumbel noise and anything else drawing globally
    aug_gen = torch_generator(seed, stage_id, step, rank, 1)
    augment = (lambda x: augment_fn(x, generator=aug_gen)) if augment_fn is not None else None
    inputs = []
    for i, batch in enumerate(micro):
        z = spec.noise(batch["layout"].shape[0], torch_generator(seed, stage_id, step, rank, 2, i), accelerator.device)
        inputs.append(spec.inputs(batch, z))
    logs: dict[str, torch.Tensor] = {}

    def add(d: dict[str, torch.Tensor]) -> None:
        for k, v in d.items():
            logs[k] = logs.get(k, 0) + v / accum

    fakes = []
    r.opt_d.zero_grad(set_to_none=True)
    for i, inp in enumerate(inputs):
        with torch.set_grad_enabled(accum == 1):
            fake = spec.generate(G, inp)
        fakes.append(fake)
        with _maybe_no_sync(accelerator, D, i < accum - 1):
            loss, d = spec.d_loss(D, D_plain, inp, fake, augment)
            accelerator.backward(loss / accum)
        add(d)
    r.opt_d.step()

    r.opt_g.zero_grad(set_to_none=True)
    D_plain.requires_grad_(False)  # G's loss must not leave gradients in the critic
    try:
        for i, inp in enumerate(inputs):
            with _maybe_no_sync(accelerator, G, i < accum - 1):
                fake = fakes[i] if accum == 1 else spec.generate(G, inp)
                loss, g = spec.g_loss(D_plain, inp, fake, augment)
                accelerator.backward(loss / accum)
            add(g)
    finally:
        D_plain.requires_grad_(True)
    r.opt_g.step()
    r.ema.update(G_plain, step)
    return logs


def _maybe_no_sync(accelerator, model, skip: bool):

    return accelerator.no_sync(model) if skip else contextlib.nullcontext()


def _check_finite(accelerator, logged: dict[str, torch.Tensor], stage: str, step: int, folder: Path) -> None:
    values = torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(()) for v in logged.values()])
    bad = (~torch.isfinite(values)).any().float().reshape(1)
    if accelerator.num_processes > 1:  # every process must stop, not only the one that diverged
        bad = accelerator.reduce(bad, "sum")
    if float(bad) > 0:
        which = {k: float(v) for k, v in logged.items()}
        raise TrainingDiverged(
            f"{stage} stage: a loss is not finite at step {step + 1} ({which}); stopped without saving. "
            f"The last good checkpoint is kept in {folder}; try lower learning rates or train.mixed_precision=no"
        )


def _portable(r: StageRun, *, stage: str, step: int, recipe: Recipe) -> dict[str, Any]:
    return portable_checkpoint(kind=f"generator-{stage}", model=r.G_plain.state_dict(), step=step,
                               recipe=recipe_to_dict(recipe), classes=r.classes, ema=r.ema.module.state_dict(),
                               arch=r.spec.to_dict())


def _save_checkpoint(r: StageRun, *, stage: str, step: int, recipe: Recipe) -> None:
    r.checkpoints.save({"step": step, "stage": stage, "classes": r.classes.to_dict()},
                       portable=lambda p: _portable(r, stage=stage, step=step, recipe=recipe))


def _save_samples(spec: stages.StageSpec, G_ema, batch, classes: ClassInfo, path: Path, seed: int) -> None:
    """A PNG grid: the condition, the EMA generator's output and the real sample, one row each."""
    n = min(8, batch["layout"].shape[0])
    was_training = G_ema.training
    G_ema.eval()
    with torch.no_grad():
        part = {k: v[:n] if torch.is_tensor(v) else v for k, v in batch.items()}
        z = spec.noise(n, torch_generator(seed, 99), part["layout"].device)
        out = spec.decode(spec.generate(G_ema, spec.inputs(part, z)).float())
    G_ema.train(was_training)
    save_rows(spec.preview_rows(part, out), classes, path)
