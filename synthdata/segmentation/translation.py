"""`accelerate launch synthdata/translate.py recipe=R run_dir=DIR translate.mode=pix2pix|cyclegan`:
segmentation as image translation. pix2pix (Isola et al. 2017) learns image -> mask from pairs;
CycleGAN (Zhu et al. 2017) learns it from unpaired images and masks. The generated mask becomes
class labels and is scored with the segmenters' mIoU report; checkpoints resume like `segment`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from synthdata.core.checkpoint import check_classes, load_checkpoint, portable_checkpoint
from synthdata.core.contract import CheckpointError, ClassInfo, ConfigError
from synthdata.core.recipe import Recipe, TranslateConfig
from synthdata.core.recipe_loading import recipe_to_dict
from synthdata.core.run_dir import CheckpointFolder, checkpoint_chunks, exact_batches, save_resolved_recipe
from synthdata.core.runtime import seed_step
from synthdata.core.seeding import derive_seed
from synthdata.data.loader import Source, make_loader
from synthdata.data.readers.base import make_reader
from synthdata.models import base_grid, losses
from synthdata.models.pix2pix import PatchGANDiscriminator, UNetGenerator
from synthdata.segmentation.cyclegan import CycleGANWeights, ImagePool, cyclegan_step

# mode -> how masks are written as images: pix2pix predicts one-hot channels (one channel in
# [-1, 1] for two classes); CycleGAN needs masks with the images' 3 channels for its identity
# loss, so they are palette colours, read back by the nearest palette colour.
MODES = {"pix2pix": "onehot", "cyclegan": "rgb"}


def check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ConfigError(f"unknown translate.mode {mode!r}. Valid modes: {', '.join(MODES)}")
    return mode


# --------------------------------------------------------------------------------------------
# Masks as images
# --------------------------------------------------------------------------------------------


def mask_channels(encoding: str, num_classes: int) -> int:
    if encoding == "rgb":
        return 3
    return 1 if num_classes == 2 else num_classes


def _palette(palette: Any, device) -> torch.Tensor:
    """(C, 3) palette in [-1, 1]."""
    return torch.as_tensor(palette, dtype=torch.float32, device=device) / 127.5 - 1.0


def encode_mask(layout: torch.Tensor, *, encoding: str, num_classes: int, palette: Any) -> torch.Tensor:
    """(B, H, W) labels -> (B, Cm, H, W) in [-1, 1]; ignored pixels are 0 (neither class)."""
    valid = ((layout >= 0) & (layout < num_classes)).unsqueeze(1)
    safe = torch.where(valid[:, 0], layout, 0).long()
    if encoding == "rgb":
        out = _palette(palette, layout.device)[safe].permute(0, 3, 1, 2)
    elif num_classes == 2:
        out = (safe == 1).float().unsqueeze(1) * 2.0 - 1.0
    else:
        out = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).float() * 2.0 - 1.0
    return out * valid


def mask_scores(x: torch.Tensor, *, encoding: str, num_classes: int, palette: Any) -> torch.Tensor:
    """Generated masks (B, Cm, H, W) -> class scores (B, C, H, W) whose argmax is the label:
    the channels themselves (one-hot), +-x (one channel: threshold at 0), or minus the squared
    distance to each palette colour (rgb)."""
    x = x.float()
    if encoding == "rgb":
        colours = _palette(palette, x.device)
        return -((x.unsqueeze(1) - colours.view(1, num_classes, 3, 1, 1)) ** 2).sum(2)
    if num_classes == 2:
        return torch.cat([-x, x], 1)
    return x


def decode_mask(x: torch.Tensor, *, encoding: str, num_classes: int, palette: Any) -> torch.Tensor:
    """Generated masks (B, Cm, H, W) -> labels (B, H, W) int64 in [0, num_classes)."""
    return mask_scores(x, encoding=encoding, num_classes=num_classes, palette=palette).argmax(1)


class TranslationSegmenter(nn.Module):
    """An image -> mask generator used as a segmenter: images (B, 3, H, W) in [0, 1] -> class
    scores (B, C, H, W). Input is reflect-padded to the U-Net's multiple and cropped back."""

    def __init__(self, generator: nn.Module, *, encoding: str, num_classes: int, palette: Any):
        super().__init__()
        self.generator, self.encoding, self.num_classes = generator, encoding, num_classes
        self.register_buffer("palette", torch.as_tensor(palette, dtype=torch.float32), persistent=False)
        self.multiple = 2 ** getattr(generator, "num_downs", 0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        x = images * 2.0 - 1.0
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        out = self.generator(x)[..., :h, :w]
        return mask_scores(out, encoding=self.encoding, num_classes=self.num_classes, palette=self.palette)


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def translate_arch(cfg: TranslateConfig, *, num_classes: int, crop: tuple[int, int]) -> dict[str, Any]:
    """What rebuilds the image -> mask generator: mode, encoding, channels, depth of the U-Net
    (as deep as the training crop allows: innermost map 4-8 px, see `models.base_grid`)."""

    mode = check_mode(cfg.mode)
    _, _, k = base_grid(*crop)
    encoding = MODES[mode]
    return {"mode": mode, "encoding": encoding, "num_classes": num_classes, "ngf": cfg.ngf, "ndf": cfg.ndf,
            "num_downs": max(1, k), "mask_channels": mask_channels(encoding, num_classes)}


def build_networks(arch: dict[str, Any]) -> dict[str, nn.Module]:
    """pix2pix: G (image -> mask U-Net), D (conditional PatchGAN on image + mask).
    CycleGAN: G_ab (image -> mask), G_ba (mask -> image), D_a (images), D_b (masks)."""

    cm, ngf, ndf, k = arch["mask_channels"], arch["ngf"], arch["ndf"], arch["num_downs"]

    def unet(c_in: int, c_out: int) -> nn.Module:
        return UNetGenerator(c_in, c_out, ngf=ngf, num_downs=k, norm="instance")

    if arch["mode"] == "pix2pix":
        return {"G": unet(3, cm), "D": PatchGANDiscriminator(3 + cm, ndf=ndf, n_layers=3)}
    return {"G_ab": unet(3, cm), "G_ba": unet(cm, 3), "D_a": PatchGANDiscriminator(3, ndf=ndf, n_layers=3),
            "D_b": PatchGANDiscriminator(cm, ndf=ndf, n_layers=3)}


def pix2pix_step(G: nn.Module, D: nn.Module, opt_g, opt_d, image: torch.Tensor, mask: torch.Tensor,
                 valid: torch.Tensor, *, lambda_l1: float, backward=None) -> dict[str, torch.Tensor]:
    """One pix2pix update on image (B, 3, H, W) and mask (B, Cm, H, W) in [-1, 1]: D on
    (image, mask) pairs with the logistic GAN loss, then G with GAN + lambda_l1 * L1 over the
    labelled pixels `valid` (B, 1, H, W)."""

    backward = backward or (lambda loss: loss.backward())
    fake = G(image)
    opt_d.zero_grad(set_to_none=True)
    real_pred, fake_pred = D(torch.cat([image, mask], 1)), D(torch.cat([image, fake.detach()], 1))
    loss_d = 0.5 * losses.nonsaturating_d_loss(real_pred, fake_pred)  # halved as in pix2pix
    backward(loss_d)
    opt_d.step()

    opt_g.zero_grad(set_to_none=True)
    D.requires_grad_(False)
    try:
        adv = losses.nonsaturating_g_loss(D(torch.cat([image, fake], 1)))
        l1 = losses.l1_loss(fake, mask, valid)
        backward(adv + lambda_l1 * l1)
    finally:
        D.requires_grad_(True)
    opt_g.step()
    return {"d": loss_d.detach(), "g": adv.detach(), "l1": l1.detach()}


def load_translator(path: str | Path, expected: ClassInfo | None = None,
                    device: str | torch.device = "cpu") -> tuple[TranslationSegmenter, dict[str, Any]]:
    """A translate checkpoint -> (`TranslationSegmenter` in eval mode, checkpoint dict)."""

    ckpt = load_checkpoint(path)
    if not str(ckpt.get("kind", "")).startswith("translate-"):
        raise CheckpointError(f"{path} is a '{ckpt.get('kind')}' checkpoint, not a translate one")
    if expected is not None:
        check_classes(ckpt, expected, path)
    arch, classes = ckpt["arch"], ClassInfo.from_dict(ckpt["classes"])
    nets = build_networks(arch)
    G = nets["G" if arch["mode"] == "pix2pix" else "G_ab"]
    try:
        G.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {arch}: {e}") from e
    model = TranslationSegmenter(G, encoding=arch["encoding"], num_classes=classes.num_classes,
                                 palette=classes.palette)
    return model.to(device).eval(), ckpt


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _crop(recipe: Recipe) -> tuple[int, int]:
    t = recipe.translate
    h = t.crop_height or recipe.seg.crop_height or recipe.data.height
    w = t.crop_width or recipe.seg.crop_width or recipe.data.width
    return int(h), int(w)


def train(recipe: Recipe, run_dir: Path, accelerator) -> dict[str, Any]:
    """Train (or resume) `recipe.translate.mode` up to `translate.steps`, then evaluate it."""
    cfg, mode = recipe.translate, check_mode(recipe.translate.mode)
    reader = make_reader(recipe.data, recipe.data.train_split)
    classes = reader.classes
    crop = _crop(recipe)
    arch = translate_arch(cfg, num_classes=classes.num_classes, crop=crop)
    name = f"translate-{mode}"
    ckpt_dir = run_dir / "checkpoints" / name
    seed_step(recipe.seed, 0x7A)  # reproducible initial weights
    nets = build_networks(arch)
    gens = [m for k, m in nets.items() if k.startswith("G")]
    discs = [m for k, m in nets.items() if k.startswith("D")]
    betas = (0.5, 0.999)  # pix2pix / CycleGAN
    opt_g = torch.optim.Adam([p for m in gens for p in m.parameters()], lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam([p for m in discs for p in m.parameters()], lr=cfg.lr, betas=betas)
    keys = list(nets)
    prepared = accelerator.prepare(*nets.values(), opt_g, opt_d)
    nets, (opt_g, opt_d) = dict(zip(keys, prepared[: len(keys)])), prepared[len(keys):]
    pools = (ImagePool(cfg.pool_size, seed=derive_seed(recipe.seed, 0x7A, 1)),
             ImagePool(cfg.pool_size, seed=derive_seed(recipe.seed, 0x7A, 2)))
    G_main = accelerator.unwrap_model(nets["G" if mode == "pix2pix" else "G_ab"])
    checkpoints = CheckpointFolder(accelerator, ckpt_dir, extras={"pool_a": pools[0], "pool_b": pools[1]})

    def portable(progress: dict[str, Any]) -> dict[str, Any]:
        return portable_checkpoint(kind=name, model=G_main.state_dict(), step=int(progress["step"]),
                                   recipe=recipe_to_dict(recipe), classes=classes, arch=arch)

    progress = checkpoints.resume(portable) or {}
    if progress:
        check_classes(progress, classes, ckpt_dir / "state")
    start = int(progress.get("step", 0))
    if accelerator.is_main_process:
        save_resolved_recipe(ckpt_dir, recipe)

    def checkpoint(step: int) -> Path:
        return checkpoints.save({"step": step, "classes": classes.to_dict()}, portable)

    def stream(seed: int, count: int):
        return exact_batches(make_loader(Source(reader=reader), batch_size=cfg.batch_size, augment=True, shuffle=True,
                                         epoch_length=count * cfg.batch_size, seed=seed, crop=crop), count)

    def masks(layout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc = encode_mask(layout, encoding=arch["encoding"], num_classes=classes.num_classes, palette=classes.palette)
        return enc, (layout != classes.ignore_index).unsqueeze(1).float()

    device, step, last, started = accelerator.device, start, {}, time.time()
    bar = tqdm(total=cfg.steps, initial=start, desc=name, unit="step", disable=not accelerator.is_main_process)
    weights = CycleGANWeights(cycle=cfg.lambda_cycle, identity=cfg.lambda_identity)
    for first, stop in checkpoint_chunks(start, cfg.steps, cfg.checkpoint_every):
        paired = stream(derive_seed(recipe.seed, 0x7A, first), stop - first)
        unpaired = stream(derive_seed(recipe.seed, 0x7B, first), stop - first) if mode == "cyclegan" else None
        for _ in range(stop - first):
            seed_step(recipe.seed, 0x7A, step, accelerator.process_index)  # dropout
            batch = next(paired)
            image = batch["image"].to(device) * 2.0 - 1.0
            with accelerator.autocast():
                if mode == "pix2pix":
                    mask, valid = masks(batch["layout"].to(device))
                    last = pix2pix_step(nets["G"], nets["D"], opt_g, opt_d, image, mask, valid,
                                        lambda_l1=cfg.lambda_l1, backward=accelerator.backward)
                else:  # masks from an independently shuffled stream: no pairs are used
                    mask, _ = masks(next(unpaired)["layout"].to(device))
                    last = cyclegan_step(nets, opt_g, opt_d, image, mask, weights=weights, pools=pools,
                                         backward=accelerator.backward)
            step += 1
            bar.update(1)
            bar.set_postfix({k: f"{float(v):.3f}" for k, v in last.items()})
        checkpoint(step)
    checkpoints.finish()
    bar.close()
    return {"steps": step, "start": start, "seconds": time.time() - started, "arch": arch, "classes": classes,
            "checkpoint": ckpt_dir / "latest.pt", "generator": G_main,
            "losses": {k: float(v) for k, v in last.items()}}
