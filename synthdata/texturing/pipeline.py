"""`stages.image.arch=composite` in production: the segment bank of a run dir and a `Pipeline`
stand-in that textures layouts with real pixels (`synthdata.texturing.composite`).

The bank lives in `RUN_DIR/bank/segment_bank.npz`. It is built from the recipe's training reader
(`make_reader(recipe.data, recipe.data.train_split)`, so a low-data subset restricts it too) by
the main process the first time `produce` (or `train stage=image`) needs it; the other
processes wait and then load it. Later runs load it and check it against the recipe (classes,
resolution, the source image ids, `stages.image.composite.min_pixels` / `region_classes`);
a mismatch, an empty bank or a corrupt file stops with a `BankError` naming the file.

There is nothing to train: `synthdata train stage=image` with `arch=composite` builds the bank
(or checks the existing one) and says so, unless `stages.image.harmonise` names a harmoniser
(SIMS, Qi et al. 2018): a conditional generator (`spade` or `pix2pix`, the image stage's sizes and
losses) that takes the layout (+ depth) and a composite and returns a correction of the composite
(`stages.ImageSpec.composite_input`). It trains on the real images: each training layout is
textured from the bank without that image's own segments (`LeaveOneOutComposites`; a class that
only this image shows keeps its segments) and the harmoniser learns to turn that composite into the
real image. Production then passes every composite through it (meta `harmonise`: its arch).
`stages.image.harmonise_input=perturbed` trains it as harmonisation work does instead
(`PerturbedImages`): the input is the real image itself with the colours of about half its
segments changed, so the target is reachable from the input and L1 rewards restoring colours
rather than blurring what other images' segments cannot match.

`CompositePipeline.from_layouts(layouts, seeds, metas=...)` mirrors `Pipeline.from_layouts`:
the image comes from `composite(layout, bank, derive_seed(seed, TEXTURE_TAG), ...)`, so it
depends only on (layout, bank, sample seed) and shards are identical for any process count.
Depth comes from the bank's segments when the bank has depth (and `data.has_depth`), else from
the trained depth stage when there is one, else there is none. Objects pasted by copy-paste
(`copy_paste.ObjectPool` from the bank) carry their own donor pixels: after compositing,
each pasted object's visible pixels are overwritten by its bank segment, warped exactly as its
mask was (see `paste_owner`). The sample's meta gets `texturing`, `blend`, `bank`, `sources`
(one entry per layout component: class, box, bank segment, source sample id, source component,
flip, IoU), `depth_from` (bank | depth stage | None) and, for pasted objects, `pasted` entries
(class, bank `segment`, source, flip, scale, box, visible `pixels`).

With real layouts (`produce.layouts=real`) retrieval usually picks a layout's own segments, so
real layout + composite + copy-paste is Simple Copy-Paste on real images: the real scene (or a
close variant) with objects of other images pasted with their own pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from scipy import ndimage

from synthdata.core.contract import CheckpointError, ClassInfo, ConfigError
from synthdata.core.seeding import derive_seed
from synthdata.data.readers import make_reader
from synthdata.models.layout import one_hot
from synthdata.texturing.bank_building import load_or_build
from synthdata.texturing.composite import BLENDS, MISSING, composite
from synthdata.texturing.segment_bank import BankError, SegmentBank

if TYPE_CHECKING:
    from synthdata.core.recipe import CompositeConfig, Recipe

BANK_FILE = Path("bank") / "segment_bank.npz"
TEXTURE_TAG = 0xC0A7  # seed domain of the composite texturing of a sample


def bank_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / BANK_FILE


def check_composite_config(cfg: "CompositeConfig") -> None:
    if cfg.blend not in BLENDS:
        raise ConfigError(f"stages.image.composite.blend must be one of {', '.join(BLENDS)}, got {cfg.blend!r}")
    if cfg.missing not in MISSING:
        raise ConfigError(f"stages.image.composite.missing must be one of {', '.join(MISSING)}, got {cfg.missing!r}")
    if cfg.k < 1 or cfg.min_pixels < 1:
        raise ConfigError(f"stages.image.composite.k and .min_pixels must be >= 1, got {cfg.k}, {cfg.min_pixels}")
    if cfg.blend == "gaussian" and not cfg.sigma > 0:
        raise ConfigError(f"stages.image.composite.sigma must be > 0 for blend=gaussian, got {cfg.sigma}")


def bank_settings(cfg: "CompositeConfig") -> dict[str, Any]:
    settings: dict[str, Any] = {"min_pixels": int(cfg.min_pixels)}
    if cfg.region_classes is not None:
        settings["region_classes"] = list(cfg.region_classes)
    return settings


def prepare_bank(recipe: "Recipe", run_dir: str | Path, *, accelerator: Any = None, progress: bool = True,
                 log=print) -> SegmentBank:
    """The run dir's bank: built by the main process when missing (others wait), then loaded and
    checked by every process."""
    cfg = recipe.stages.image.composite
    check_composite_config(cfg)
    if cfg.region_classes is not None:
        names = recipe.data.classes
        unknown = [c for c in cfg.region_classes if names is not None and c not in names]
        if unknown:
            raise ConfigError(f"stages.image.composite.region_classes: unknown {unknown}; classes: {names}")
    path = bank_path(run_dir)
    main = accelerator is None or accelerator.is_main_process
    reader = make_reader(recipe.data, recipe.data.train_split)
    error: Exception | None = None
    bank = None
    if main:
        try:
            bank = load_or_build(path, reader, progress=progress, log=log, **bank_settings(cfg))
        except BankError as e:  # let the others pass the barrier; they fail on the missing file
            error = e
    if accelerator is not None:
        accelerator.wait_for_everyone()
    if error is not None:
        raise error
    if bank is None:
        bank = load_or_build(path, reader, progress=False, log=None, **bank_settings(cfg))
    if hasattr(reader, "item_id"):  # same count, other images (another data.subset file): refused
        bank.check(source_ids=[reader.item_id(i) for i in range(len(reader))])
    return bank


def paste_owner(pasted: Sequence[dict[str, Any]], shape: tuple[int, int],
                masks: Sequence[np.ndarray]) -> np.ndarray:
    """Which paste (index into `pasted`) owns each pixel, -1 where none: later pastes cover
    earlier ones. `masks[i]` is paste i's mask in its own (flipped, unscaled) orientation."""
    owner = np.full(shape, -1, np.int64)
    for i, (rec, mask) in enumerate(zip(pasted, masks)):
        scaled, _ = scaled_mask(mask, rec["box"])
        view, sub = _clip(rec["box"], shape)
        owner[view][scaled[sub]] = i
    return owner


def scaled_mask(mask: np.ndarray, box: Sequence[int]) -> tuple[np.ndarray, tuple[int, int]]:
    """`mask` (h, w) resized by nearest neighbour (pixel centres aligned, exact integers) to the
    size of `box` [y0, x0, y1, x1] (which may reach outside the frame)."""
    y0, x0, y1, x1 = (int(v) for v in box)
    ys, xs = nearest_coords(mask.shape[0], y1 - y0), nearest_coords(mask.shape[1], x1 - x0)
    return mask[ys][:, xs], (y0, x0)


def nearest_coords(source: int, target: int) -> np.ndarray:
    t = np.arange(target, dtype=np.int64)
    return ((2 * t + 1) * source) // (2 * target)


def _clip(box: Sequence[int], shape: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(frame slices, box slices) of the part of `box` inside a frame of `shape`."""
    y0, x0, y1, x1 = (int(v) for v in box)
    height, width = shape
    fy0, fx0, fy1, fx1 = max(0, y0), max(0, x0), min(height, y1), min(width, x1)
    return (slice(fy0, fy1), slice(fx0, fx1)), (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))


def paste_donor_pixels(out: dict[str, Any], layout: np.ndarray, bank: SegmentBank,
                       pasted: Sequence[dict[str, Any]]) -> int:
    """Overwrite the visible pixels of each pasted object (records with a bank `segment`) with
    that segment's own pixels (and depth, scaled by 1 / scale), warped as its mask was. Returns
    the number of pixels painted."""
    masks = []
    for rec in pasted:
        mask = bank.mask(rec["segment"]) if rec.get("segment") is not None else np.zeros((1, 1), bool)
        masks.append(mask[:, ::-1] if rec.get("flip") else mask)
    owner = paste_owner(pasted, layout.shape, masks)
    image, depth = out["image"], out.get("depth")
    painted = 0
    for i, rec in enumerate(pasted):
        s = rec.get("segment")
        if s is None:
            continue
        index = bank.fill_index(s)
        if rec.get("flip"):
            index = index[:, ::-1]
        y0, x0, y1, x1 = rec["box"]
        gather = index[nearest_coords(index.shape[0], y1 - y0)][:, nearest_coords(index.shape[1], x1 - x0)]
        view, sub = _clip(rec["box"], layout.shape)
        mine = (owner[view] == i) & (layout[view] == rec["class_index"])
        src = gather[sub][mine]
        image[view][mine] = bank.segment_pixels(s)[src]
        if depth is not None:
            d = bank.segment_depth(s)[src] / np.float32(rec.get("scale", 1.0))
            depth[view][mine] = np.where(np.isfinite(d) & (d > 0), d, 0)
        rec["pixels"] = int(mine.sum())
        painted += int(mine.sum())
    return painted


def image_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 pictures (H, W, 3) -> a batch (B, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


class CompositePipeline:
    """A `Pipeline` stand-in whose image stage is composite texturing from `bank`.

    `base` is the trained pipeline (layout GAN, depth stage) or None when nothing was trained
    (real layouts with a bank that has depth, or a dataset without depth)."""

    takes_layout_meta = True

    def __init__(self, bank: SegmentBank, cfg: "CompositeConfig", *, base: Any = None, classes: ClassInfo,
                 height: int, width: int, depth_scale: float, device: torch.device | str = "cpu",
                 use_depth: bool = True, harmonise: bool = False):
        check_composite_config(cfg)
        self.bank, self.cfg, self.base = bank, cfg, base
        self.classes, self.height, self.width = classes, int(height), int(width)
        self.depth_scale = depth_scale
        self.device = torch.device(device)
        self.bank_depth = bool(use_depth and bank.has_depth)
        self.stage_depth = bool(use_depth and not self.bank_depth and base is not None and base.has_depth)
        self.has_depth = self.bank_depth or self.stage_depth
        bank.check(classes)
        self.harmonise = harmonise  # pass composites through base's image stage (a harmoniser)
        if harmonise and base.generator("image")[1].use_depth and not self.has_depth:
            raise CheckpointError("the harmoniser in checkpoints/image was trained with depth, but this "
                                  "production has none (no depth in the bank and no depth stage)")

    # --- what production and the layout sources use of a Pipeline -----------------------------
    def _base(self, what: str) -> Any:
        if self.base is None:
            raise CheckpointError(f"{what} needs trained stages, but the run dir has none; train them with "
                                  "`synthdata train recipe=... stage=layout` (stages.image.arch=composite needs "
                                  "no image stage)")
        return self.base

    def layouts_from_seeds(self, seeds: list[int]) -> torch.Tensor:
        return self._base("produce.layouts=generated").layouts_from_seeds(seeds)

    def generator(self, stage: str):
        return self._base(f"the {stage} stage").generator(stage)

    def noise(self, stage: str, seeds: list[int]):
        return self._base(f"the {stage} stage").noise(stage, seeds)

    def texture(self, layout: np.ndarray, seed: int, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """One layout (H, W) -> composite {"image" uint8, "depth" float32 (bank depth only), "meta"}."""
        cfg, meta = self.cfg, meta or {}
        own = meta.get("layout_id") if cfg.leave_one_out and meta.get("layout_source") == "real" else None
        out = composite(layout, self.bank, derive_seed(seed, TEXTURE_TAG), blend=cfg.blend, sigma=cfg.sigma,
                        k=cfg.k, depth=self.bank_depth, flip=cfg.flip, missing=cfg.missing,
                        ignore_index=self.classes.ignore_index, exclude_source=own)
        out["meta"]["bank"] = self.bank.path.name if self.bank.path is not None else None
        pasted = [{"class": self.bank.classes[p["class_index"]], **p} for p in meta.get("pasted", [])]
        if pasted and any(p.get("segment") is not None for p in pasted):
            paste_donor_pixels(out, layout, self.bank, pasted)
            out["meta"]["pasted"] = pasted
        return out

    def from_layouts(self, layouts: torch.Tensor, seeds: list[int], noise: dict | None = None,
                     metas: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Layouts (B, H, W) -> {"layout", "depth" (B, H, W) float32 metres or None, "image" (B, 3,
        H, W) float32 in [0, 1], "meta": one dict per sample}, like `Pipeline.from_layouts`."""
        seeds = list(seeds)
        layouts = torch.as_tensor(layouts).long()
        if layouts.dim() != 3 or layouts.shape[0] != len(seeds):
            raise ValueError(f"layouts must be (B, H, W) with B = len(seeds) = {len(seeds)}, got {tuple(layouts.shape)}")
        metas = list(metas) if metas is not None else [{} for _ in seeds]
        arrays = layouts.cpu().numpy()
        outs = [self.texture(arrays[i], seeds[i], metas[i]) for i in range(len(seeds))]
        image = image_batch([o["image"] for o in outs])
        depth = None
        if self.bank_depth:
            depth = torch.from_numpy(np.stack([o["depth"] for o in outs]))
        elif self.stage_depth:
            onehot = one_hot(layouts.to(self.base.device), self.classes.num_classes)
            depth = self.base._run("depth", onehot, seeds, (noise or {}).get("depth")).float()
        harmoniser = None
        if self.harmonise:
            _, spec = self.base.generator("image")
            onehot = one_hot(layouts.to(self.base.device), self.classes.num_classes)
            cond = spec.condition(onehot, depth[:, None].to(self.base.device) if spec.use_depth else None)
            cond = torch.cat([cond, image.to(self.base.device) * 2.0 - 1.0], 1)
            with torch.inference_mode():
                image = self.base._run("image", cond, seeds, (noise or {}).get("image")).float().cpu()
            harmoniser = spec.arch
        out_meta = []
        for o in outs:
            m = o["meta"]
            m["depth_from"] = "bank" if self.bank_depth else ("depth stage" if self.stage_depth else None)
            if harmoniser is not None:
                m["harmonise"] = harmoniser
            out_meta.append(m)
        dev = self.device
        return {"layout": layouts.to(dev), "depth": None if depth is None else depth.to(dev),
                "image": image.to(dev), "meta": out_meta}

    def sample(self, seeds: list[int]) -> dict[str, Any]:
        return self.from_layouts(self.layouts_from_seeds(seeds), seeds)


def production_frame(recipe: "Recipe", base: Any = None, reader: Any = None) -> tuple[ClassInfo, int, int, float]:
    """`(classes, height, width, depth_scale)` of a production without an image network: the trained
    stages' (`base`) when there are any, else the training reader's classes and the recipe's size."""
    if base is not None:
        return base.classes, base.height, base.width, base.depth_scale
    reader = reader if reader is not None else make_reader(recipe.data, recipe.data.train_split)
    return reader.classes, recipe.data.height, recipe.data.width, recipe.data.depth_scale


def composite_pipeline(recipe: "Recipe", run_dir: str | Path, *, accelerator: Any = None, base: Any = None,
                       progress: bool = True) -> CompositePipeline:
    """The bank of `run_dir` (built when missing) wrapped as a pipeline; `base` from
    `load_pipeline` when stages were trained (None: the recipe's reader gives classes and size)."""
    harmonise = recipe.stages.image.harmonise
    if harmonise != "none":  # checked before the bank is built: a refused run writes nothing
        where = Path(run_dir) / "checkpoints" / "image"
        if base is None or "image" not in base.generators:
            raise CheckpointError(f"stages.image.harmonise={harmonise}: no harmoniser in {where}; train it with "
                                  f"`synthdata train recipe={recipe.name} stage=image run_dir={run_dir}`")
        _, spec = base.generator("image")
        if not getattr(spec, "composite_input", False) or spec.arch != harmonise:
            raise CheckpointError(f"{where}: the image stage there is not a {harmonise} harmoniser of composites "
                                  f"(arch {spec.arch}); retrain it with stages.image.harmonise={harmonise}")
    bank = prepare_bank(recipe, run_dir, accelerator=accelerator, progress=progress)
    classes, height, width, depth_scale = production_frame(recipe, base)
    device = accelerator.device if accelerator is not None else "cpu"
    return CompositePipeline(bank, recipe.stages.image.composite, base=base, classes=classes, height=height,
                             width=width, depth_scale=depth_scale, device=device,
                             use_depth=recipe.data.has_depth, harmonise=harmonise != "none")


class LeaveOneOutComposites:
    """Training inputs of the harmoniser: a real layout textured from the bank without its own
    image's segments (`composite(..., exclude_source=id)`; a class that only this image shows keeps
    them), so the target (the real image) is never pasted into its own input. Seeded per sample."""

    def __init__(self, bank: SegmentBank, cfg: "CompositeConfig", ignore_index: int | None = None):
        self.bank, self.cfg, self.ignore_index = bank, cfg, ignore_index

    def __call__(self, batch: dict[str, Any], seed: int) -> torch.Tensor:
        """`batch` with "layout" (B, H, W) and "key" (the images' ids) -> composites (B, 3, H, W)
        float32 in [0, 1]."""
        cfg, arrays, keys = self.cfg, batch["layout"].detach().cpu().numpy(), batch["key"]
        images = [composite(arrays[i], self.bank, derive_seed(seed, i), blend=cfg.blend, sigma=cfg.sigma, k=cfg.k,
                            flip=cfg.flip, missing=cfg.missing, ignore_index=self.ignore_index,
                            exclude_source=str(keys[i]))["image"] for i in range(len(arrays))]
        return image_batch(images)


class PerturbedImages:
    """Training inputs of the harmoniser, harmonisation-style (`harmonise_input: perturbed`): the
    real image with each connected component of its layout, with probability `share`, changed by
    a random per-channel gain (1 +- `gain`) and offset (+- `offset`), as segments pasted from
    other images differ in colour and light. Ignored pixels stay as they are. Seeded per sample."""

    def __init__(self, ignore_index: int | None = None, share: float = 0.5, gain: float = 0.3, offset: float = 0.1):
        self.ignore_index, self.share, self.gain, self.offset = ignore_index, share, gain, offset

    def __call__(self, batch: dict[str, Any], seed: int) -> torch.Tensor:
        """`batch` with "layout" (B, H, W) and "image" (B, 3, H, W) in [0, 1] -> perturbed images."""
        out = batch["image"].detach().cpu().float().clone()
        layouts = batch["layout"].detach().cpu().numpy()
        for i, layout in enumerate(layouts):
            rng = np.random.default_rng(derive_seed(seed, i))
            for c in np.unique(layout):
                if c == self.ignore_index:
                    continue
                components, n = ndimage.label(layout == c)
                for k in range(1, n + 1):
                    gain = 1.0 + rng.uniform(-self.gain, self.gain, 3)
                    offset = rng.uniform(-self.offset, self.offset, 3)
                    if rng.random() < self.share:
                        mask = torch.from_numpy(components == k)
                        region = out[i][:, mask]
                        out[i][:, mask] = (region * torch.from_numpy(gain).float()[:, None]
                                           + torch.from_numpy(offset).float()[:, None]).clamp_(0.0, 1.0)
        return out


def harmoniser_inputs(recipe: "Recipe", bank: SegmentBank):
    """`batch, seed -> (B, 3, H, W)` in [0, 1]: what the harmoniser learns to turn into the real image."""
    cfg = recipe.stages.image
    if cfg.harmonise_input == "perturbed":
        return PerturbedImages(bank.ignore_index)
    return LeaveOneOutComposites(bank, cfg.composite)


def build_for_training(recipe: "Recipe", run_dir: str | Path,
                       accelerator: Any = None) -> tuple[dict[str, Any], SegmentBank]:
    """`train stage=image` with arch=composite: build (or check) the bank (on the main process;
    the others wait); returns the summary and the bank. Without a harmoniser that is all there is
    to train."""
    bank = prepare_bank(recipe, run_dir, accelerator=accelerator, progress=True, log=None)
    if accelerator is None or accelerator.is_main_process:
        then = ("no weights to train" if recipe.stages.image.harmonise == "none"
                else f"next, the {recipe.stages.image.harmonise} harmoniser")
        print(f"image: stages.image.arch=composite: {bank.summary()}; {then}")
    return {"stage": "image", "steps": 0, "step": 0, "bank": str(bank.path), "segments": len(bank)}, bank


__all__ = ["BANK_FILE", "TEXTURE_TAG", "CompositePipeline", "LeaveOneOutComposites", "PerturbedImages", "bank_path",
           "build_for_training", "harmoniser_inputs", "image_batch",
           "composite_pipeline", "paste_donor_pixels", "paste_owner", "prepare_bank", "production_frame",
           "scaled_mask"]
