"""`accelerate launch synthdata/refine.py recipe=R run_dir=DIR [refine.*=...]`: SegGAN refinement.

SegGAN (Zhang et al. 2018, "SegGAN: Semantic Segmentation with Generative Adversarial Network"):
a segmenter is fine-tuned with l = l_S + lambda1 * l_C + lambda2 * l_A, where its softmax output
goes through a frozen mask -> image generator (the `image` stage trained without depth), l_C is
the pixel MSE between that reconstruction and the input image and l_A the frozen
discriminator's adversarial loss on it. Reports before and after, plus their comparison.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from synthdata.core.checkpoint import check_classes, load_checkpoint, portable_checkpoint
from synthdata.core.contract import CheckpointError, ClassInfo
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import recipe_to_dict
from synthdata.core.run_dir import CheckpointFolder, checkpoint_chunks, exact_batches, save_resolved_recipe
from synthdata.core.runtime import seed_step
from synthdata.core.seeding import derive_seed, torch_generator
from synthdata.data.loader import Source, make_loader
from synthdata.data.readers.base import make_reader
from synthdata.generation import stages
from synthdata.metrics.evaluation import evaluate_and_report
from synthdata.metrics.report import compare_reports, read_report
from synthdata.models import losses
from synthdata.models.segmenters import load_segmenter

REFINE_SEED_KEY = 0x5E6  # keys derived seeds of this command


def _train_command(recipe_name: str, run_dir: Path) -> str:
    return (f"`synthdata train recipe={recipe_name} stage=image stages.image.use_depth=false "
            f"run_dir={run_dir}` (or pass refine.generator=PATH)")


def _discriminator_weights(ckpt: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The image stage's discriminator: a "discriminator" entry of the portable checkpoint when
    present, else model 1 of the Accelerate state beside it (train.py prepares G, then D)."""
    if ckpt.get("discriminator"):
        return ckpt["discriminator"]

    for state in (path.parent / "state", path.parent / "state.previous"):
        for name in ("model_1.safetensors", "pytorch_model_1.bin"):
            file = state / name
            if file.is_file():
                if file.suffix == ".safetensors":
                    return load_file(str(file))
                return torch.load(file, map_location="cpu", weights_only=True)
    raise CheckpointError(
        f"{path} has no discriminator and there is no training state in {path.parent / 'state'}; "
        "refinement needs the image stage's discriminator: keep the state folder the training wrote"
    )


def load_image_stage(path: Path, classes: ClassInfo, *, recipe_name: str, run_dir: Path,
                     device) -> tuple[nn.Module, nn.Module, stages.StageSpec]:
    """The frozen mask -> image generator (EMA weights) and its discriminator, in eval mode with
    `requires_grad=False`. Missing files name the command that trains them; a generator made for
    other classes, or one conditioned on depth, raises `CheckpointError`."""

    if not path.exists():
        raise CheckpointError(f"no mask-to-image generator at {path}; train it first with "
                              + _train_command(recipe_name, run_dir))
    ckpt = load_checkpoint(path)
    check_classes(ckpt, classes, path)
    arch = ckpt.get("arch") or {}
    if arch.get("stage") != "image":
        raise CheckpointError(f"{path} is not an image stage checkpoint (stage {arch.get('stage')!r})")
    if arch.get("use_depth"):
        raise CheckpointError(f"{path} is conditioned on depth, which a segmenter cannot supply; train the "
                              "image stage on layouts alone with " + _train_command(recipe_name, run_dir))
    spec = stages.spec_from_dict(arch, where=f"{path} (arch)")
    G, D = spec.build_generator(), spec.build_discriminator()
    try:
        G.load_state_dict(ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])
        D.load_state_dict(_discriminator_weights(ckpt, path))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the recorded architecture: {e}") from e
    return G.to(device).eval().requires_grad_(False), D.to(device).eval().requires_grad_(False), spec


def check_generator_size(spec: stages.StageSpec, recipe: Recipe, path: Path) -> None:
    """The image stage must make images at the recipe's data size (it reconstructs those images)."""
    if (spec.height, spec.width) != (recipe.data.height, recipe.data.width):
        raise CheckpointError(f"{path} makes {spec.height}x{spec.width} images but the recipe's data "
                              f"are {recipe.data.height}x{recipe.data.width}; refine at the generator's resolution")


def refinement_losses(logits: torch.Tensor, images: torch.Tensor, target: torch.Tensor, *,
                      generator: nn.Module, discriminator: nn.Module, z: torch.Tensor | None,
                      ignore_index: int, lambda_content: float, lambda_adv: float) -> dict[str, torch.Tensor]:
    """SegGAN's loss on segmenter `logits (B, C, H, W)`, `images (B, 3, H, W)` in [0, 1] and
    `target (B, H, W)`: CE l_S, content l_C = MSE(G(softmax), image in [-1, 1]), adversarial
    l_A = hinge generator loss of D on (softmax, reconstruction); "loss" is their weighted sum.
    G and D are frozen: gradients flow through them into `logits` only."""

    probs = F.softmax(logits.float(), dim=1)
    recon = generator(probs, z).float()
    content = F.mse_loss(recon, images.float() * 2.0 - 1.0)
    adv = losses.hinge_g_loss(discriminator(torch.cat([probs, recon], 1)))
    ce = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    ce = ce / (target != ignore_index).sum().clamp(min=1)
    return {"loss": ce + lambda_content * content + lambda_adv * adv, "ce": ce, "content": content, "adv": adv}


def _segmenter_path(recipe: Recipe, run_dir: Path) -> Path:
    path = Path(recipe.refine.segmenter) if recipe.refine.segmenter else run_dir / "checkpoints" / "segmenter" / "latest.pt"
    if not path.exists():
        raise CheckpointError(f"no segmenter checkpoint at {path}; train one with "
                              f"`synthdata segment recipe={recipe.name} run_dir={run_dir}` (or pass refine.segmenter=PATH)")
    return path


def refine(recipe: Recipe, run_dir: Path, accelerator) -> dict[str, Any]:
    """Fine-tune the segmenter with the SegGAN loss (resumable) and write the before / after reports."""
    cfg, device = recipe.refine, accelerator.device
    reader = make_reader(recipe.data, recipe.data.train_split)
    classes, ignore = reader.classes, reader.classes.ignore_index
    seg_path = _segmenter_path(recipe, run_dir)
    gen_path = Path(cfg.generator) if cfg.generator else run_dir / "checkpoints" / "image" / "latest.pt"
    G, D, g_spec = load_image_stage(gen_path, classes, recipe_name=recipe.name, run_dir=run_dir, device=device)
    check_generator_size(g_spec, recipe, gen_path)
    model, seg_ckpt = load_segmenter(seg_path, expected=classes, device=device)
    out = run_dir / "refine"
    if accelerator.is_main_process:
        save_resolved_recipe(out, recipe)
    if not (out / "before" / "report.json").exists():
        evaluate_and_report(model, recipe, out_dir=out / "before", title=f"{recipe.name}: segmenter before refinement",
                            checkpoint=seg_path, accelerator=accelerator, info={"stage": "before refinement"})

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    ckpt_dir = run_dir / "checkpoints" / "refine"
    checkpoints = CheckpointFolder(accelerator, ckpt_dir)

    def portable(progress: dict[str, Any]) -> dict[str, Any]:
        return portable_checkpoint(kind="segmenter", model=accelerator.unwrap_model(model).state_dict(),
                                   step=int(progress["step"]), recipe=recipe_to_dict(recipe), classes=classes,
                                   arch=seg_ckpt.get("arch"), extra={"refined_from": str(seg_path)})

    progress = checkpoints.resume(portable) or {}
    if progress:
        check_classes(progress, classes, ckpt_dir / "state")
    start, step, last, started = int(progress.get("step", 0)), int(progress.get("step", 0)), {}, time.time()

    def checkpoint(step: int) -> Path:
        return checkpoints.save({"step": step, "classes": classes.to_dict()}, portable)

    z_dim = g_spec.z_dim
    bar = tqdm(total=cfg.steps, initial=start, desc="refine", unit="step", disable=not accelerator.is_main_process)
    model.train()
    for first, stop in checkpoint_chunks(start, cfg.steps, cfg.checkpoint_every):
        # full samples, not crops: the generator is built for the data resolution
        loader = make_loader(Source(reader=reader), batch_size=cfg.batch_size, augment=True, shuffle=True,
                             epoch_length=(stop - first) * cfg.batch_size, seed=derive_seed(recipe.seed, REFINE_SEED_KEY, first))
        for batch in exact_batches(loader, stop - first):
            seed_step(recipe.seed, REFINE_SEED_KEY, step, accelerator.process_index)
            images, target = batch["image"].to(device), batch["layout"].to(device)
            z = None
            if z_dim:
                z = torch.randn(images.shape[0], z_dim, generator=torch_generator(recipe.seed, REFINE_SEED_KEY, step,
                                accelerator.process_index)).to(device)
            with accelerator.autocast():
                last = refinement_losses(model(images), images, target, generator=G, discriminator=D, z=z,
                                         ignore_index=ignore, lambda_content=cfg.lambda_content,
                                         lambda_adv=cfg.lambda_adv)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(last["loss"])
            optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix({k: f"{float(v.detach()):.3f}" for k, v in last.items()})
        checkpoint(step)
    checkpoints.finish()
    bar.close()
    seconds = time.time() - started
    path = ckpt_dir / "latest.pt"
    info = {"stage": "after refinement", "refined_from": str(seg_path), "generator": str(gen_path),
            "steps": step, "resumed_from_step": start, "train_seconds": round(seconds, 1),
            "lambda_content": cfg.lambda_content, "lambda_adv": cfg.lambda_adv, "lr": cfg.lr,
            "final_losses": {k: float(v.detach()) for k, v in last.items()}}
    metrics = evaluate_and_report(accelerator.unwrap_model(model), recipe, out_dir=out / "after",
                                  title=f"{recipe.name}: segmenter after SegGAN refinement ({step} steps, "
                                        f"lambda_C {cfg.lambda_content:g}, lambda_A {cfg.lambda_adv:g})",
                                  checkpoint=path, accelerator=accelerator, info=info)
    compare = None
    if accelerator.is_main_process:
        compare = compare_reports([read_report(out / "before"), read_report(out / "after")], out)
    return {"steps": step, "start": start, "seconds": seconds, "metrics": metrics, "compare": compare,
            "checkpoint": path}
