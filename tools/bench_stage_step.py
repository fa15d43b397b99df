"""Whole training steps of a generator stage, side by side with what they should cost.

    python tools/bench_stage_step.py [stage=image|layout] [steps=5] [rounds=3] [reference=PATH]
        [classes=12] [diffaugment=off] [loop=false] [profile=false] [objects=0] recipe=R [key.sub=value ...]

Every run trains on one fixed batch of random layouts (and images) already on the device, so
the loader is out of it; the runs take turns, `steps` steps each per round, and the best of
`rounds` rounds counts (wall clock, with the CPU time of the process beside it):
- `stage step`: our training step (`synthdata.generation.training._train_step`: the critic update,
  the generator update, the weight average, the logged losses), as `synthdata/train.py` runs it;
- `networks alone`: the same forward and backward passes of the same networks (for the layout
  stage with `loss=wgan-gp`, the gradient penalty's double backward) with trivial losses and no optimizer, weight
  average or logging: the floor a step cannot go below;
- `generator alone`: the generator's forward and backward only (the rest of the floor is the critic's);
- image stage, with `reference=PATH` (a checkout of https://github.com/NVlabs/SPADE, imported from
  PATH at run time, never copied): its `Pix2PixTrainer` generator and discriminator updates at the
  same size, batch, classes, widths, discriminator scales and layers, precision (autocast) and
  device, hinge + feature matching, no VGG, no VAE (its Cityscapes settings otherwise);
- layout stage: `plain loop`, a textbook WGAN-GP step (Gulrajani et al. 2017) on the same
  networks (PyTorch's `F.gumbel_softmax(hard=True)` for the one-hot): critic loss with the gradient
  penalty, then a fresh generator forward for its loss; its critic is always the WGAN-GP one
  (layer norm; with `stages.layout.loss=hinge` a copy of the recipe's critic without spectral norm).
`objects=N` (image stage) adds the stage step with its losses weighted to the first N classes
(`stages.image.object_classes`, at `stages.image.object_share`).
`compile=true` adds the stage step with the generator under `torch.compile` (its first step, with
the compilation, is timed apart). `loop=true` adds the full `train_stage` loop on the recipe's data (loader, logging, one checkpoint
and one sample grid at its end), as `tools/bench_train.py speed` times it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from synthdata.core.recipe import Recipe  # noqa: E402
from synthdata.core.recipe_loading import parse_command_line  # noqa: E402
from synthdata.core.runtime import benchmark_allocator, cpu_model, make_accelerator  # noqa: E402
from synthdata.generation import stages  # noqa: E402
from synthdata.generation.encodings import one_hot  # noqa: E402
from synthdata.generation.training import StageRun, _train_step, build_networks  # noqa: E402
from synthdata.models import build_layout_critic, losses  # noqa: E402
from synthdata.models.augment import diff_augment  # noqa: E402

ARGUMENTS = {"stage": "image", "steps": 5, "rounds": 3, "reference": None, "classes": 12, "diffaugment": "off",
             "loop": False, "profile": False, "compile": False, "objects": 0}


def random_batch(recipe: Recipe, classes: int, device) -> dict[str, torch.Tensor]:
    """Blocky random layouts (8x8-pixel cells) and random images, the loader's batch keys."""
    gen = torch.Generator().manual_seed(0)
    b, h, w = recipe.train.batch_size, recipe.data.height, recipe.data.width
    cells = torch.randint(0, classes, (b, 1, (h + 7) // 8, (w + 7) // 8), generator=gen).float()
    layout = torch.nn.functional.interpolate(cells, scale_factor=8, mode="nearest")[:, 0, :h, :w].long()
    return {"layout": layout.to(device), "image": torch.rand(b, 3, h, w, generator=gen).to(device)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# The runs: name -> one training step


def ours(run: StageRun, recipe: Recipe, batch: dict[str, torch.Tensor], augment: bool) -> Callable[[int], Any]:
    stage_id = run.spec.stage_id
    return lambda step: _train_step(run, recipe.seed, stage_id, step, [batch], diff_augment if augment else None)


def networks_alone(run: StageRun, batch: dict[str, torch.Tensor]) -> Callable[[int], None]:
    spec, G, D, D_plain = run.spec, run.G, run.D, run.D_plain
    gen = torch.Generator().manual_seed(0)
    inp = spec.inputs(batch, spec.noise(batch["layout"].shape[0], gen, run.accelerator.device))
    layout = spec.stage == "layout"

    def scores(out) -> torch.Tensor:
        return out.float().mean() if layout else sum(scale[-1].float().mean() for scale in out)

    def step(_: int) -> None:
        fake = spec.generate(G, inp)
        real_in, fake_in = spec.critic_inputs(inp, inp.target, spec.fake_for_critic(fake.detach()), None)
        loss = scores(D(torch.cat([real_in, fake_in], 0)))
        if layout and spec.loss == "wgan-gp":
            loss = loss + losses.gradient_penalty(D_plain, real_in.float(), fake_in.float())
        run.accelerator.backward(loss)
        D_plain.requires_grad_(False)
        _, fake_in = spec.critic_inputs(inp, inp.target, spec.fake_for_critic(fake), None)
        run.accelerator.backward(scores(D_plain(fake_in)))
        D_plain.requires_grad_(True)
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)

    return step


def generator_alone(run: StageRun, batch: dict[str, torch.Tensor]) -> Callable[[int], None]:
    """The generator's forward and backward (a trivial loss): what the step costs without critics."""
    spec, G = run.spec, run.G
    inp = spec.inputs(batch, spec.noise(batch["layout"].shape[0], torch.Generator().manual_seed(0),
                                        run.accelerator.device))

    def step(_: int) -> None:
        run.accelerator.backward(spec.generate(G, inp).float().mean())
        G.zero_grad(set_to_none=True)

    return step


def plain_wgan_gp(run: StageRun, recipe: Recipe, batch: dict[str, torch.Tensor], precision: str) -> Callable[[int], None]:
    """The textbook loop on the same networks and optimizers' settings (fresh Adam states), with
    PyTorch's own straight-through Gumbel-softmax."""
    spec, G, D = run.spec, run.G_plain, run.D_plain
    cfg = recipe.stages.layout
    if cfg.loss != "wgan-gp":  # the textbook loop's own critic, whatever ours is
        wgan = dataclasses.replace(cfg, loss="wgan-gp")
        D = build_layout_critic(wgan, num_classes=spec.num_classes, height=spec.height, width=spec.width)
        D = D.to(run.accelerator.device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas))
    real = one_hot(batch["layout"], spec.num_classes)
    device = real.device
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")  # noqa: E731

    def step(_: int) -> None:
        z = torch.randn(real.shape[0], spec.z_dim, device=device)
        opt_d.zero_grad()
        with autocast():
            fake = F.gumbel_softmax(G(z).float(), tau=spec.gumbel_tau, hard=True, dim=1).detach()
            d_loss = D(fake).float().mean() - D(real).float().mean()
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=device)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
        d_loss = d_loss + spec.gp_weight * (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        with autocast():
            fake = F.gumbel_softmax(G(z).float(), tau=spec.gumbel_tau, hard=True, dim=1)
            g_loss = -D(fake).float().mean()
        g_loss.backward()
        opt_g.step()

    return step


def spade_reference(path: str, recipe: Recipe, classes: int, batch: dict[str, torch.Tensor],
                    precision: str) -> Callable[[int], None]:
    from tools.spade_reference import load_trainer, trainer_options

    cfg = recipe.stages.image
    device = batch["image"].device
    opt = trainer_options(label_nc=classes, height=recipe.data.height, width=recipe.data.width, ngf=cfg.ngf,
                          ndf=cfg.ndf, num_d=cfg.num_discriminators, n_layers_d=3, lr_g=cfg.lr_g, lr_d=cfg.lr_d,
                          betas=tuple(cfg.betas), cuda=device.type == "cuda")
    torch.manual_seed(0)
    trainer = load_trainer(path)(opt)
    data = {"label": batch["layout"][:, None], "instance": torch.zeros(1), "image": batch["image"] * 2 - 1}

    def step(_: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            trainer.run_generator_one_step(dict(data))  # the reference's train.py order: G, then D
            trainer.run_discriminator_one_step(dict(data))

    return step


# ---------------------------------------------------------------------------------------------


def time_runs(runs: dict[str, Callable[[int], Any]], steps: int, rounds: int,
              device: torch.device) -> dict[str, tuple[float, float]]:
    """name -> (best wall seconds per step, CPU seconds per step of that round)."""
    for fn in runs.values():  # warm-up: oneDNN primitives, cuDNN autotuning, allocator
        fn(0)
        fn(1)
    sync(device)
    best = {name: (float("inf"), 0.0) for name in runs}
    for r in range(rounds):
        for name, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            for i in range(steps):
                fn(2 + r * steps + i)
            sync(device)
            wall, cpu = (time.perf_counter() - w0) / steps, (time.process_time() - c0) / steps
            if wall < best[name][0]:
                best[name] = (wall, cpu)
    return best


def loop_rate(argv: list[str], stage: str, steps: int) -> float:
    from synthdata.generation.training import train_stage

    with tempfile.TemporaryDirectory() as tmp:
        for total in (2, 2 + steps):
            recipe, _ = parse_command_line(argv + [f"train.steps={total}", f"train.checkpoint_every={total}",
                                                   f"train.sample_every={total}"], ARGUMENTS)
            summary = train_stage(recipe, stage=stage, run_dir=tmp)
    return 1.0 / summary["it_per_s"]


def profile(name: str, fn: Callable[[int], Any], device: torch.device) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for i in range(3):
            fn(100 + i)
        sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n{name}: 3 steps under torch.profiler\n" + prof.key_averages().table(sort_by=sort, row_limit=15),
          file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    recipe, args = parse_command_line(argv, ARGUMENTS)
    stage, steps, rounds = stages.check_stage(args["stage"]), int(args["steps"]), int(args["rounds"])
    if stage == "depth":
        print("stage=depth: time the image stage (the same networks and losses, one output channel fewer)",
              file=sys.stderr)
        return 2
    allocator = benchmark_allocator()
    accelerator = make_accelerator(mixed_precision=recipe.train.mixed_precision)
    device, precision = accelerator.device, accelerator.mixed_precision
    classes = int(args["classes"])
    spec = stages.stage_spec(stage, recipe, num_classes=classes, use_depth=False, max_depth=None)
    run = build_networks(recipe, spec, accelerator)
    batch = random_batch(recipe, classes, device)
    cfg = getattr(recipe.stages, stage)
    where = torch.cuda.get_device_name() if device.type == "cuda" else cpu_model()
    print(f"{where}, torch {torch.__version__}, {torch.get_num_threads()} threads "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), {allocator}")
    print(f"{stage} stage, recipe {recipe.name}: {recipe.data.height}x{recipe.data.width}, batch "
          f"{recipe.train.batch_size}, {classes} classes, ngf {cfg.ngf}, ndf {cfg.ndf}, precision {precision}, "
          f"DiffAugment {args['diffaugment']}; best of {rounds} interleaved rounds of {steps} steps")
    runs: dict[str, Callable[[int], Any]] = {
        "stage step": ours(run, recipe, batch, args["diffaugment"] == "on"),
        "networks alone": networks_alone(run, batch),
        "generator alone": generator_alone(run, batch),
    }
    if args["compile"]:  # the same step with `train.compile=true` (inductor, default mode)
        compiled = build_networks(dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, compile=True)),
                                  spec, accelerator)
        step = ours(compiled, recipe, batch, args["diffaugment"] == "on")
        started = time.perf_counter()
        step(0)
        sync(device)
        print(f"torch.compile: first step {time.perf_counter() - started:.0f} s (compilation included)", flush=True)
        runs["stage step, compiled G"] = step
    if stage == "image" and int(args["objects"]) > 0:  # `stages.image.object_classes`: the first N classes
        weighted = dataclasses.replace(spec, object_ids=tuple(range(int(args["objects"]))))
        runs["stage step, object-weighted"] = ours(build_networks(recipe, weighted, accelerator), recipe, batch,
                                                   args["diffaugment"] == "on")
    if stage == "layout" and recipe.stages.layout.class_conditioning:
        print("plain loop: left out (the textbook WGAN-GP loop is unconditional; the generator here is "
              "class-conditioned)")
    elif stage == "layout":
        runs["plain loop"] = plain_wgan_gp(run, recipe, batch, precision)
    elif args["reference"]:
        runs["reference"] = spade_reference(str(args["reference"]), recipe, classes, batch, precision)
    timings = time_runs(runs, steps, rounds, device)
    if args["loop"]:
        timings["loop (train_stage)"] = (loop_rate(argv, stage, steps * rounds), float("nan"))
    base = timings["stage step"][0]
    print("| run | s/step | CPU s/step | samples/s | time vs stage step |")
    print("| --- | --- | --- | --- | --- |")
    for name, (wall, cpu) in timings.items():
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {recipe.train.batch_size / wall:.1f} | {wall / base:.2f}x |",
              flush=True)
    if args["profile"]:
        for name, fn in runs.items():
            profile(name, fn, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
