"""Sampling from trained stages: `load_pipeline(run_dir).sample(seeds)` -> layouts, depth, images.

Noise for sample i comes only from seeds[i], so a sample does not depend on what else is in its
batch. Layouts are the argmax of the layout generator's logits; depth is returned in metres.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from synthdata.core.checkpoint import check_classes, load_checkpoint
from synthdata.core.contract import CheckpointError, ClassInfo
from synthdata.core.palette import colorize
from synthdata.core.recipe_loading import recipe_argument
from synthdata.core.seeding import torch_generator
from synthdata.core.visualize import depth_to_rgb
from synthdata.generation import stages
from synthdata.generation.encodings import one_hot


def stage_checkpoint(run_dir: str | Path, stage: str) -> tuple[dict[str, Any], Path]:
    """`RUN_DIR/checkpoints/{stage}/latest.pt`, or `previous.pt` with a warning when latest is
    corrupt. A stage never trained raises `CheckpointError` naming the command that trains it."""
    folder = Path(run_dir) / "checkpoints" / stage
    latest, previous = folder / "latest.pt", folder / "previous.pt"
    if not latest.exists() and not previous.exists():
        raise CheckpointError(
            f"no {stage} stage checkpoint in {folder}; train it first with "
            f"`synthdata train recipe=... stage={stage} run_dir={run_dir}`"
        )
    try:
        return load_checkpoint(latest), latest
    except CheckpointError as e:
        if not previous.exists():
            raise
        warnings.warn(f"{e}; using the previous checkpoint {previous}", stacklevel=2)
        return load_checkpoint(previous), previous


class Pipeline:
    """Trained stage generators of one run dir, in eval mode on one device."""

    def __init__(self, generators: dict[str, tuple[torch.nn.Module, stages.StageSpec]], *, classes: ClassInfo,
                 recipe: dict, run_dir: Path, device: torch.device, autocast: bool = False):
        self.generators, self.classes, self.recipe = generators, classes, recipe
        self.run_dir, self.device, self.autocast = run_dir, device, autocast
        spec = next(iter(generators.values()))[1]
        self.height, self.width = spec.height, spec.width
        self.has_depth = "depth" in generators
        self.depth_scale = float(recipe.get("data", {}).get("depth_scale", 0.001))

    def _stage(self, stage: str) -> tuple[torch.nn.Module, stages.StageSpec]:
        if stage not in self.generators:
            name = self.recipe.get("name", "...")
            raise CheckpointError(
                f"the {stage} stage is not trained in {self.run_dir}; train it with "
                f"`synthdata train {recipe_argument(name)} stage={stage} run_dir={self.run_dir}`"
            )
        return self.generators[stage]

    def generator(self, stage: str) -> tuple[torch.nn.Module, stages.StageSpec]:
        """(generator in eval mode, its `StageSpec`) of a trained stage; untrained raises."""
        return self._stage(stage)

    def noise(self, stage: str, seeds: list[int]) -> torch.Tensor | None:
        """The noise (B, z_dim) that `stage` draws for `seeds` (None: the stage takes none)."""
        return self._noise(self._stage(stage)[1], list(seeds))

    def _noise(self, spec: stages.StageSpec, seeds: list[int]) -> torch.Tensor | None:
        if not spec.z_dim:
            return None
        z = [torch.randn(spec.z_dim, generator=torch_generator(int(s), spec.stage_id)) for s in seeds]
        return torch.stack(z).to(self.device)

    def _run(self, stage: str, cond: torch.Tensor | None, seeds: list[int],
             z: torch.Tensor | None = None) -> torch.Tensor:
        G, spec = self._stage(stage)
        z = self._noise(spec, seeds) if z is None else z.to(self.device, torch.float32)
        if cond is None:
            cond = spec.sampling_condition(G, seeds, self.device)
        inp = stages.StageInputs(cond, cond, None, z)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = spec.generate(G, inp)
        return spec.decode(out.float())

    @torch.inference_mode()
    def layouts_from_seeds(self, seeds: list[int]) -> torch.Tensor:
        """(B,) seeds -> generated layouts (B, H, W) int64."""
        return self._run("layout", None, list(seeds))

    @torch.inference_mode()
    def layouts_from_z(self, z: torch.Tensor) -> torch.Tensor:
        """Given layout noise z (B, z_dim) -> layouts (B, H, W) int64 (interpolation, inversion)."""
        if self._stage("layout")[1].class_conditioning:
            raise ValueError("layouts from given codes need an unconditional layout generator; this one is "
                             "class-conditioned (stages.layout.class_conditioning)")
        return self._run("layout", None, [0] * len(z), z)

    @torch.inference_mode()
    def from_layouts(self, layouts: torch.Tensor, seeds: list[int],
                     noise: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor | None]:
        """Layouts (B, H, W) long -> {"layout", "depth": (B, H, W) float32 metres or None,
        "image": (B, 3, H, W) float32 in [0, 1]}, tensors on the pipeline's device. `noise` may
        give a stage's z (B, z_dim) ("depth", "image") instead of drawing it from the seeds."""
        seeds, noise = list(seeds), dict(noise or {})
        layouts = torch.as_tensor(layouts).to(self.device).long()
        if layouts.dim() != 3 or layouts.shape[0] != len(seeds):
            raise ValueError(f"layouts must be (B, H, W) with B = len(seeds) = {len(seeds)}, got {tuple(layouts.shape)}")
        if tuple(layouts.shape[1:]) != (self.height, self.width):
            raise ValueError(f"layouts are {tuple(layouts.shape[1:])}, the generators make {(self.height, self.width)}")
        onehot = one_hot(layouts, self.classes.num_classes)
        depth = self._run("depth", onehot, seeds, noise.get("depth")) if self.has_depth else None
        _, image_spec = self._stage("image")
        if getattr(image_spec, "composite_input", False):
            raise CheckpointError(f"{self.run_dir / 'checkpoints' / 'image'} holds a harmoniser of composites, not an "
                                  "image generator; produce with stages.image.arch=composite "
                                  f"stages.image.harmonise={image_spec.arch}")
        if image_spec.use_depth and depth is None:
            self._stage("depth")  # raises, naming the command
        cond = image_spec.condition(onehot, None if depth is None else depth[:, None])
        image = self._run("image", cond, seeds, noise.get("image"))
        return {"layout": layouts, "depth": depth, "image": image}

    def sample(self, seeds: list[int]) -> dict[str, torch.Tensor | None]:
        """Seeds -> generated layouts, then depth and image from them (see `from_layouts`)."""
        return self.from_layouts(self.layouts_from_seeds(seeds), seeds)


def load_pipeline(run_dir: str | Path, device: str | torch.device | None = None, use_ema: bool = True,
                  autocast: bool = False, recipe_name: str = "...") -> Pipeline:
    """Every trained stage under `RUN_DIR/checkpoints/` (EMA weights by default). Stages that
    were not trained raise `CheckpointError` when first needed; none at all raises now."""
    run_dir = Path(run_dir)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    generators: dict[str, tuple[torch.nn.Module, stages.StageSpec]] = {}
    classes, recipe = None, {}
    for stage in stages.STAGES:
        try:
            ckpt, path = stage_checkpoint(run_dir, stage)
        except CheckpointError as e:
            if "train it first" in str(e):
                continue
            raise
        if classes is None:
            classes, recipe = ClassInfo.from_dict(ckpt["classes"]), ckpt.get("recipe") or {}
        else:
            check_classes(ckpt, classes, path)
        spec = stages.spec_from_dict(ckpt.get("arch"), where=f"{path} (arch)")
        if spec.stage != stage:
            raise CheckpointError(f"{path} is not a {stage} stage checkpoint (arch: {spec.stage})")
        G = spec.build_generator()
        weights = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
        try:
            G.load_state_dict(weights)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: weights do not fit the recorded architecture: {e}") from e
        G = G.to(device)
        # SPADE stages: spectral norm folded into plain weights, channels_last on CPU (the fast path)
        G = G.fold_for_inference() if hasattr(G, "fold_for_inference") else G.eval().requires_grad_(False)
        generators[stage] = (G, spec)
    if not generators:
        raise CheckpointError(
            f"no trained stages in {run_dir / 'checkpoints'}; train them first with "
            f"`synthdata train {recipe_argument(recipe_name)} stage=layout run_dir={run_dir}` (then stage=depth, "
            "stage=image, with this command's settings)"
        )
    return Pipeline(generators, classes=classes, recipe=recipe, run_dir=run_dir, device=device, autocast=autocast)


# --------------------------------------------------------------------------------------------
# Pictures of stage outputs (training sample grids)
# --------------------------------------------------------------------------------------------


def _depth_rgb(depth: np.ndarray, max_depth: float | None) -> np.ndarray:
    return depth_to_rgb(depth)


def to_rgb(x: torch.Tensor, classes: ClassInfo, max_depth: float | None = None) -> list[np.ndarray]:
    """A batch of layouts (B, H, W) int, depth (B, 1|-, H, W) float metres or images (B, 3, H, W)
    in [0, 1] -> list of uint8 (H, W, 3) pictures."""
    x = x.detach().float().cpu() if x.is_floating_point() else x.detach().cpu()
    if not x.is_floating_point():
        return [colorize(v.numpy(), classes.palette, classes.ignore_index) for v in x]
    if x.dim() == 4 and x.shape[1] == 3:
        return [(v.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8) for v in x]
    x = x[:, 0] if x.dim() == 4 else x
    return [_depth_rgb(v.numpy(), max_depth) for v in x]


def save_rows(rows: list[tuple[str, torch.Tensor]], classes: ClassInfo, path: str | Path,
              max_depth: float | None = None) -> Path:
    """One row per (name, batch) pair, samples side by side with 2-px gaps, as a PNG."""

    pictures = [to_rgb(x, classes, max_depth) for _, x in rows]
    h, w = pictures[0][0].shape[:2]
    n, gap = max(len(p) for p in pictures), 2
    sheet = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(pictures):
        for c, pic in enumerate(row):
            sheet[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = pic
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path
