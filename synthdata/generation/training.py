"""Train one generator stage: `accelerate launch synthdata/train.py recipe=R stage=layout|depth|image
run_dir=DIR [train.steps=N ...]` (the command is `synthdata/train.py`).

Checkpoints go to RUN_DIR/checkpoints/{stage}/ (portable `latest.pt` + Accelerate `state/`);
rerunning the same command resumes from the newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm.auto import tqdm

from synthdata.core.atomic import write_json_atomic
from synthdata.core.checkpoint import check_classes, portable_checkpoint
from synthdata.core.contract import CheckpointError, ClassInfo, ConfigError
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import recipe_to_dict
from synthdata.core.run_dir import CheckpointFolder, checkpoint_chunks, exact_batches, save_resolved_recipe
from synthdata.core.runtime import (
    count_parameters,
    device_name,
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
from synthdata.generation.continuation import continue_from_donor
from synthdata.generation.encodings import depth_range
from synthdata.generation.image_sources import image_source, reader_object_classes
from synthdata.generation.sampler import save_rows, stage_checkpoint
from synthdata.models.augment import diff_augment
from synthdata.models.ema import EMA
from synthdata.texturing.bank_building import region_rule


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


def object_class_ids(recipe: Recipe, stage: str, source, classes: ClassInfo) -> list[int]:
    """`stages.image.object_classes` as class indices ([]: unweighted losses; other stages: [])."""
    value = recipe.stages.image.object_classes
    if stage != "image" or value is None:
        return []
    if value != "auto":
        unknown = [c for c in value if c not in classes.names]
        if unknown or not value:
            raise ConfigError(f"stages.image.object_classes: {'unknown ' + str(unknown) if unknown else 'an empty list'}; "
                              f"classes: {list(classes.names)}")
        return [classes.names.index(c) for c in value]
    if recipe.train.shards:
        raise ConfigError("stages.image.object_classes=auto reads the layouts of the recipe's reader; "
                          "with train.shards name the classes")
    found = reader_object_classes(source, recipe.data.height, recipe.data.width, classes.num_classes,
                                  classes.ignore_index)
    if not found:
        raise ConfigError(f"stages.image.object_classes=auto: no object classes in the {len(source)} training "
                          f"layouts (every class is a region: {region_rule()}); name the classes")
    return found


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
    checkpoints: CheckpointFolder | None = None
    source: Any = None
    classes: ClassInfo | None = None
    needs_depth: bool = False
    diffaugment: bool = False


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

    object_ids = object_class_ids(recipe, stage, source, classes)
    spec = stages.stage_spec(stage, recipe, num_classes=classes.num_classes, use_depth=use_depth,
                             max_depth=_max_depth(run_dir, stage, source, recipe, needs_depth), object_ids=object_ids)
    run = build_networks(recipe, spec, accelerator)
    run.checkpoints = CheckpointFolder(accelerator, folder, extras={"ema": run.ema})
    run.source, run.classes, run.needs_depth = source, classes, needs_depth
    run.diffaugment = _diffaugment(cfg.diffaugment, size)
    if accelerator.is_main_process:
        print(f"{stage}: generator {type(run.G_plain).__name__} {format_count(count_parameters(run.G_plain))} params, "
              f"critic {type(run.D_plain).__name__} {format_count(count_parameters(run.D_plain))} params, "
              f"precision {accelerator.mixed_precision}, {accelerator.num_processes} process(es)")
        if object_ids:
            print(f"{stage}: losses weighted to {', '.join(classes.names[c] for c in object_ids)} "
                  f"({recipe.stages.image.object_share:g} of the weight)")
    return run


def build_networks(recipe: Recipe, spec: stages.StageSpec, accelerator) -> StageRun:
    """The stage's networks, optimizers and weight average on `accelerator`, with the initial
    weights of `recipe.seed`; no data, checkpoints or class names yet (tools/bench_stage_step.py
    times steps on this alone)."""
    seed_step(recipe.seed, spec.stage_id)  # reproducible initial weights
    G, D = spec.build_generator(), spec.build_discriminator()
    stage_cfg = getattr(recipe.stages, spec.stage)
    opt_g = torch.optim.Adam(G.parameters(), lr=stage_cfg.lr_g, betas=tuple(stage_cfg.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=stage_cfg.lr_d, betas=tuple(stage_cfg.betas))
    G, D, opt_g, opt_d = accelerator.prepare(G, D, opt_g, opt_d)
    G_plain, D_plain = accelerator.unwrap_model(G), accelerator.unwrap_model(D)
    if recipe.train.compile:  # the training passes only: checkpoints, samples and the average use G_plain
        G = torch.compile(G)
    ema = EMA(G_plain, recipe.train.ema_decay)  # after prepare: the average lives on the training device
    return StageRun(accelerator, spec, G, D, G_plain, D_plain, opt_g, opt_d, ema)


def train_stage(recipe: Recipe, *, stage: str, run_dir: str | Path, accelerator=None) -> dict[str, Any]:
    """Train (or resume) one stage up to `recipe.train.steps`; returns a summary dict. `accelerator`:
    the command's (default: one made from `train.mixed_precision`)."""
    run_dir = Path(run_dir)
    composites = None
    if stage == "image":  # composite texturing: build or check RUN_DIR/bank; maybe a harmoniser next
        built, composites = image_source(recipe).prepare_image_training(recipe, run_dir, accelerator)
        if built is not None:
            return built
    for key in ("steps", "batch_size", "checkpoint_every", "log_every", "gradient_accumulation"):
        if getattr(recipe.train, key) < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {getattr(recipe.train, key)}")
    if recipe.train.sample_every < 0:
        raise ConfigError(f"train.sample_every must be >= 0 (0: a sample grid only at the end), got {recipe.train.sample_every}")
    if accelerator is None:
        accelerator = make_accelerator(mixed_precision=recipe.train.mixed_precision, log_with=recipe.log_with,
                                       log_dir=run_dir / "logs")
    continue_from_donor(recipe, stage, run_dir, accelerator)  # train.init_from
    r = prepare_stage(recipe, stage, run_dir, accelerator)
    cfg, folder = recipe.train, checkpoint_dir(run_dir, stage)
    main_proc = accelerator.is_main_process
    progress = r.checkpoints.resume(portable=lambda p: _portable(r, stage=stage, step=int(p["step"]), recipe=recipe))
    start = 0
    if progress is not None:
        check_classes(progress, r.classes, folder / "state")
        start = int(progress["step"])
    budget = read_budget(folder, cfg.minutes)
    total = cfg.steps if cfg.minutes is None else budget["steps"] if budget else None  # None: probe first
    if total is not None and start >= total:
        if main_proc:
            print(f"{stage}: already trained to step {start} ({_target_text(cfg, total)}); nothing to do")
        return {"stage": stage, "steps": 0, "step": start, "checkpoint": str(folder / "latest.pt"), "budget": budget}
    if main_proc:
        save_resolved_recipe(run_dir, recipe)  # the generator run's recipe, read by tools/ and produce
        if start:
            print(f"{stage}: resuming from step {start}")
    start_tracking(accelerator, recipe, f"train-{stage}", config={"stage": stage})  # recipe.log_with: RUN_DIR/logs/train-STAGE
    accum, stage_id = max(1, cfg.gradient_accumulation), stages.STAGE_IDS[stage]
    rank, world = accelerator.process_index, accelerator.num_processes
    preview = None
    bar = tqdm(total=total or start + PROBE_STEPS, initial=start, desc=f"train {stage}", disable=not main_proc,
               dynamic_ncols=True)
    t0, step, logged = time.perf_counter(), start, {}
    watch = NonFiniteWatch(accelerator)
    probe_clock: list[float] = []

    def chunks() -> Iterator[tuple[int, int]]:
        # the budget's probe is a chunk of its own (ending with a checkpoint), so a rerun resumes after
        # it; `total` is read once it ran and set the steps
        first = start
        if total is None:
            yield start, start + PROBE_STEPS
            first = start + PROBE_STEPS
        yield from checkpoint_chunks(first, total, cfg.checkpoint_every)

    for first, stop in chunks():
        stream = _batches(r.source, recipe, seed=derive_seed(recipe.seed, stage_id, first), count=(stop - first) * accum,
                          with_depth=r.needs_depth, rank=rank, world=world)
        while step < stop:
            if total is None and step - start in (PROBE_WARMUP, PROBE_STEPS):
                probe_clock.append(time.perf_counter())
            micro = [next(stream) for _ in range(accum)]
            if composites is not None:  # the harmoniser's input (a composite of the others, or perturbed)
                for j, batch in enumerate(micro):
                    batch["composite"] = composites(batch, derive_seed(recipe.seed, stage_id, step, rank, j))
            micro = [_to_device(batch, accelerator.device) for batch in micro]
            if preview is None:
                preview = micro[0]
            logged = _train_step(r, recipe.seed, stage_id, step, micro, diff_augment if r.diffaugment else None)
            watch.record(logged, step)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == stop or (cfg.sample_every and step % cfg.sample_every == 0):
                watch.check(stage, folder)  # before any log line, sample grid or checkpoint of this step
            if step % cfg.log_every == 0 or step == total:
                scalars = {k: float(v) for k, v in logged.items()}
                bar.set_postfix({k: f"{v:.3f}" for k, v in scalars.items()})
                log_scalars(accelerator, {f"{stage}/{k}": v for k, v in scalars.items()}, step)
            if main_proc and ((cfg.sample_every and step % cfg.sample_every == 0) or step == total):
                _save_samples(r.spec, r.ema.module, preview, r.classes,
                              run_dir / "samples" / stage / f"step-{step:06d}.png", recipe.seed)
        if total is None:  # the probe chunk ran: the machine's speed sets the steps
            probe_clock.append(time.perf_counter())
            budget = _set_budget(accelerator, folder, cfg.minutes, (probe_clock[1] - probe_clock[0]) / PROBE_TIMED,
                                 start=start, stage=stage)
            total = budget["steps"]
            bar.total = total
            bar.refresh()
            if step == total:  # a budget no longer than the probe: the end's log line and sample grid
                log_scalars(accelerator, {f"{stage}/{k}": float(v) for k, v in logged.items()}, step)
                if main_proc:
                    _save_samples(r.spec, r.ema.module, preview, r.classes,
                                  run_dir / "samples" / stage / f"step-{step:06d}.png", recipe.seed)
        _save_checkpoint(r, stage=stage, step=step, recipe=recipe)
    r.checkpoints.finish()
    bar.close()
    accelerator.end_training()
    seconds = time.perf_counter() - t0
    done = step - start
    summary = {"stage": stage, "steps": done, "step": step, "seconds": seconds, "it_per_s": done / max(seconds, 1e-9),
               "checkpoint": str(folder / "latest.pt"), "losses": {k: float(v) for k, v in logged.items()},
               "budget": budget}
    if main_proc:
        print(f"{stage}: {done} steps in {seconds:.1f}s ({summary['it_per_s']:.2f} it/s), "
              f"step {step}/{total} ({_target_text(cfg, total)}), checkpoint {summary['checkpoint']}")
    return summary


# --------------------------------------------------------------------------------------------
# A budget in minutes (train.minutes)
# --------------------------------------------------------------------------------------------

PROBE_WARMUP = 2  # untimed: the first steps create oneDNN / cuDNN primitives and fill the allocator
PROBE_TIMED = 8
PROBE_STEPS = PROBE_WARMUP + PROBE_TIMED
BUDGET_FILE = "budget.json"


def _target_text(cfg, total: int) -> str:
    return f"train.steps={cfg.steps}" if cfg.minutes is None else f"train.minutes={cfg.minutes:g} -> {total} steps"


def read_budget(folder: Path, minutes: float | None) -> dict[str, Any] | None:
    """The budget a run of `folder` measured for `minutes`, or None (no record, or one for another
    budget: then the probe runs again)."""
    path = folder / BUDGET_FILE
    if minutes is None or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        steps, recorded = int(record["steps"]), float(record["minutes"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: not a budget record ({error}); delete it to measure the budget again") from None
    return dict(record, steps=steps) if recorded == float(minutes) else None


def budget_steps(minutes: float, seconds_per_step: float, *, at_least: int) -> int:
    """Steps that fill `minutes` at `seconds_per_step` (the steps already run count), never fewer
    than `at_least` (the probe's own)."""
    return max(at_least, int(minutes * 60.0 / max(seconds_per_step, 1e-9)))


def _set_budget(accelerator, folder: Path, minutes: float, seconds_per_step: float, *, start: int,
                stage: str) -> dict[str, Any]:
    """Steps for `minutes` from the probe's seconds per step (the slowest process's), written to
    FOLDER/budget.json by the main process; every process returns the same record."""
    measured = torch.tensor([seconds_per_step], dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        measured = accelerator.gather(measured).max().reshape(1)
    seconds = float(measured)
    record = {"minutes": float(minutes), "steps": budget_steps(minutes, seconds, at_least=start + PROBE_STEPS),
              "seconds_per_step": round(seconds, 6), "probe_steps": PROBE_TIMED, "measured_from_step": start,
              "device": device_name(accelerator.device), "processes": accelerator.num_processes}
    if accelerator.is_main_process:
        write_json_atomic(folder / BUDGET_FILE, record)
        print(f"{stage}: budget {minutes:g} min: {seconds:.3f} s/step over {PROBE_TIMED} steps on "
              f"{record['device']} -> {record['steps']} steps")
    return record


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
        spec.observe_real(G_plain, inputs[-1])
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
            loss, d = spec.d_loss(D, D_plain, inp, fake, augment, step=step)
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


class NonFiniteWatch:
    """Remembers, on the training device, the first step whose logged losses were not finite, so
    the loop needs no host-device synchronisation per step (on a GPU one per step stalls the
    queue of kernels); `check` (at log steps and before checkpoints) raises `TrainingDiverged`
    naming that step and its losses, on every process if any diverged."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.first_step: torch.Tensor | None = None  # -1 while every step was finite
        self.values: torch.Tensor | None = None
        self.names: list[str] = []

    def record(self, logged: dict[str, torch.Tensor], step: int) -> None:
        values = torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(()) for v in logged.values()])
        if self.first_step is None:
            self.first_step = torch.full((), -1, dtype=torch.int64, device=values.device)
            self.values, self.names = torch.zeros_like(values), list(logged)
        first_bad = (~torch.isfinite(values)).any() & (self.first_step < 0)
        self.first_step = torch.where(first_bad, torch.full_like(self.first_step, step), self.first_step)
        self.values = torch.where(first_bad, values, self.values)

    def check(self, stage: str, folder: Path) -> None:
        if self.first_step is None:
            return
        bad = (self.first_step >= 0).float().reshape(1)
        if self.accelerator.num_processes > 1:  # every process must stop, not only the one that diverged
            bad = self.accelerator.reduce(bad, "sum")
        if float(bad) == 0:
            return
        step = int(self.first_step)
        if step < 0:
            raise TrainingDiverged(f"{stage} stage: a loss is not finite in another process; stopped without "
                                   f"saving. The last good checkpoint is kept in {folder}; try lower learning "
                                   "rates or train.mixed_precision=no")
        which = dict(zip(self.names, self.values.tolist()))
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
