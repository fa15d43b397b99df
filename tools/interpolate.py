"""Walks through latent space of a trained run: layout -> depth -> image at every step, as a strip
PNG (rows: coloured layout, depth, image; one column per step) and an animated GIF.

    python tools/interpolate.py run_dir=DIR [seeds=3,17] [steps=8] [mode=slerp|lerp]
        [invert=recipe:train:0,recipe:train:5] [starts=64] [invert_steps=100] [lr=0.01]
        [out=DIR] [duration_ms=150] [device=cuda] [recipe=NAME] [key.sub=value ...]

`seeds` walks between the codes those seeds draw (three or more seeds: a path through all).
`invert` inverts real layouts of the recipe's reader (`recipe:SPLIT:INDEX`, resized to the run's
resolution) into layout codes with `synthdata.generation.latent.invert_layouts` and walks between them; it
also writes inversion.png (targets above, their reconstructions below). The recipe is
RUN_DIR/recipe.yaml unless `recipe=` is given. Output goes to RUN_DIR/interpolation by default.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from synthdata.core.contract import (  # noqa: E402
    ClassInfo,
    ConfigError,  # noqa: E402
    DatasetError,
)
from synthdata.core.entry import run_main  # noqa: E402
from synthdata.core.imageops import resize_labels  # noqa: E402
from synthdata.core.palette import colorize  # noqa: E402
from synthdata.core.recipe import Recipe  # noqa: E402
from synthdata.core.recipe_loading import parse_command_line, parse_overrides  # noqa: E402
from synthdata.core.visualize import depth_to_rgb, image_grid, write_png  # noqa: E402
from synthdata.data.readers.base import make_reader  # noqa: E402
from synthdata.generation.latent import INTERPOLATIONS, chain_codes, interpolate_chain, invert_layouts  # noqa: E402

ARGUMENTS = {"run_dir": dataclasses.MISSING, "seeds": None, "steps": 8, "mode": "slerp", "invert": None,
             "out": None, "starts": 64, "invert_steps": 100, "lr": 0.01, "duration_ms": 150,
             "device": None, "use_ema": True}
GAP = 2  # pixels between panels
BAR = 3  # rows of the GIF's progress bar (it also keeps equal frames apart: Pillow merges them)


def parse_list(value: object, key: str) -> list[str]:
    """`3,17` / `[3, 17]` / `3` -> ["3", "17"] / ["3"]."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = [str(v).strip() for v in items if str(v).strip()]
    if not out:
        raise ConfigError(f"{key} is empty")
    return out


def parse_seeds(value: object) -> list[int]:
    try:
        seeds = [int(s) for s in parse_list(value, "seeds")]
    except ValueError as e:
        raise ConfigError(f"seeds must be integers separated by commas, e.g. seeds=3,17 (got {value!r})") from e
    if len(seeds) < 2:
        raise ConfigError(f"seeds needs at least two seeds to walk between, e.g. seeds=3,17 (got {value!r})")
    return seeds


def parse_layout_spec(spec: str) -> tuple[str, int]:
    """`recipe:SPLIT:INDEX` (or `SPLIT:INDEX`) -> (split, index)."""
    parts = spec.split(":")
    if len(parts) == 3 and parts[0] == "recipe":
        parts = parts[1:]
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
        raise ConfigError(f"invert: cannot read {spec!r}; expected recipe:SPLIT:INDEX, e.g. recipe:train:0")
    return parts[0], int(parts[1])


def real_layouts(recipe: Recipe, specs: list[str], *, classes: ClassInfo, height: int, width: int) -> torch.Tensor:
    """Layouts named by `specs` from the recipe's reader, at the run's resolution: (B, H, W) long."""
    data = dataclasses.replace(recipe.data, height=height, width=width)
    readers, layouts = {}, []
    for spec in specs:
        split, index = parse_layout_spec(spec)
        if split not in readers:
            readers[split] = make_reader(data, split)
            if not readers[split].classes.same_as(classes):
                raise DatasetError(
                    f"invert: the {data.reader} reader's classes {list(readers[split].classes.names)} differ from "
                    f"the run's {list(classes.names)}; pass the recipe the run was trained with (recipe=...)")
        reader = readers[split]
        if not 0 <= index < len(reader):
            raise DatasetError(f"invert: {spec!r} is out of range; the {split} split has {len(reader)} samples")
        layouts.append(resize_labels(np.asarray(reader[index]["layout"]), height, width).astype(np.int64))
    return torch.from_numpy(np.stack(layouts))


def walk(pipe, codes: dict[str, torch.Tensor], *, steps: int, mode: str) -> dict[str, torch.Tensor | None]:
    """Decode a path through the rows of `codes` ({stage: (N, z_dim)}), `steps` frames per leg
    (shared end points counted once): {"layout", "depth", "image"} with (N-1)*(steps-1)+1 frames."""
    n = len(codes["layout"])
    legs = []
    for i in range(n - 1):
        leg = interpolate_chain(pipe, {k: v[i] for k, v in codes.items()}, {k: v[i + 1] for k, v in codes.items()},
                                steps=steps, mode=mode)
        legs.append({k: (v if i == 0 or v is None else v[1:]) for k, v in leg.items()})
    return {k: None if legs[0][k] is None else torch.cat([leg[k] for leg in legs]) for k in legs[0]}


def frame_panels(frames: dict[str, torch.Tensor | None], classes: ClassInfo) -> dict[str, list[np.ndarray]]:
    """uint8 (H, W, 3) pictures per frame: {"layout", "image", "depth" (if any)}. Depth colours share one
    scale over all frames (per-frame scaling would make the colours flicker along the walk)."""
    layouts = frames["layout"].cpu().numpy()
    images = (frames["image"].float().cpu().permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    panels = {"layout": [colorize(v, classes.palette, classes.ignore_index) for v in layouts],
              "image": list(images)}
    n, w = len(layouts), layouts.shape[2]
    if frames.get("depth") is not None:
        wide = depth_to_rgb(np.concatenate(list(frames["depth"].float().cpu().numpy()), axis=1))
        panels["depth"] = [wide[:, i * w:(i + 1) * w] for i in range(n)]
    return panels


def write_walk(frames: dict[str, torch.Tensor | None], classes: ClassInfo, out: Path, stem: str,
               duration_ms: int) -> tuple[Path, Path]:
    """`stem.png` (rows layout / depth / image, a column per frame) and `stem.gif` (one frame per
    step: image | layout | depth above a progress bar); runs without depth leave depth out."""
    from PIL import Image

    panels = frame_panels(frames, classes)
    has_depth = frames.get("depth") is not None
    rows = ("layout", "depth", "image") if has_depth else ("layout", "image")
    n = len(panels["image"])
    png = write_png(image_grid([p for r in rows for p in panels[r]], ncols=n, pad=GAP), out / f"{stem}.png")
    gif_frames = []
    for i in range(n):
        row = image_grid([panels[k][i] for k in ("image", "layout", "depth")[: 2 + has_depth]], ncols=3, pad=GAP)
        bar = np.full((BAR, row.shape[1], 3), 255, np.uint8)
        bar[:, : round(row.shape[1] * i / max(n - 1, 1))] = (40, 40, 40)
        gif_frames.append(Image.fromarray(np.concatenate([row, bar])))
    gif = out / f"{stem}.gif"
    gif_frames[0].save(gif, save_all=True, append_images=gif_frames[1:], duration=int(duration_ms), loop=0)
    return png, gif


def run(recipe: Recipe, args: dict) -> dict[str, Path]:
    """Write the requested walks; returns {name: path} of everything written."""
    from synthdata.generation.sampler import load_pipeline

    start = time.perf_counter()
    run_dir = Path(args["run_dir"])
    steps, mode = int(args["steps"]), str(args["mode"])
    if mode not in INTERPOLATIONS:
        raise ConfigError(f"unknown mode {mode!r}. Valid modes: {', '.join(INTERPOLATIONS)}")
    if steps < 2:
        raise ConfigError(f"steps must be at least 2, got {steps}")
    seeds = parse_seeds(args["seeds"]) if args["seeds"] is not None else None
    specs = parse_list(args["invert"], "invert") if args["invert"] is not None else None
    if specs is not None and len(specs) < 2:
        raise ConfigError(f"invert needs at least two layouts, e.g. invert=recipe:train:0,recipe:train:5 (got {specs})")
    if seeds is None and specs is None:
        seeds = [0, 1]
    pipe = load_pipeline(run_dir, device=args["device"], use_ema=bool(args["use_ema"]))
    if pipe.generator("layout")[1].class_conditioning:
        raise ConfigError(f"{run_dir}: its layout generator is class-conditioned "
                          "(stages.layout.class_conditioning); walks and inversion need an unconditional one")
    out = Path(args["out"]) if args["out"] else run_dir / "interpolation"
    written, notes = {}, []
    if seeds is not None:
        frames = walk(pipe, chain_codes(pipe, seeds), steps=steps, mode=mode)
        stem = f"seeds-{'-'.join(map(str, seeds))}-{mode}"
        written["seeds_png"], written["seeds_gif"] = write_walk(frames, pipe.classes, out, stem, args["duration_ms"])
        notes.append(f"seeds {'->'.join(map(str, seeds))}: {len(frames['image'])} frames")
    if specs is not None:
        targets = real_layouts(recipe, specs, classes=pipe.classes, height=pipe.height, width=pipe.width)
        G, spec = pipe.generator("layout")
        inv = invert_layouts(G, targets, z_dim=spec.z_dim, starts=int(args["starts"]),
                             steps=int(args["invert_steps"]), lr=float(args["lr"]),
                             ignore_index=pipe.classes.ignore_index, seed=recipe.seed)
        indices = [parse_layout_spec(s)[1] for s in specs]
        codes = {k: v for k, v in chain_codes(pipe, indices).items() if k != "layout"}
        codes["layout"] = inv.z.to(pipe.device)
        frames = walk(pipe, codes, steps=steps, mode=mode)
        names = [f"{split}{index}" for split, index in map(parse_layout_spec, specs)]
        stem = f"invert-{'-'.join(names)}-{mode}"
        written["invert_png"], written["invert_gif"] = write_walk(frames, pipe.classes, out, stem, args["duration_ms"])
        recon = pipe.layouts_from_z(inv.z).cpu().numpy()
        pics = [colorize(v, pipe.classes.palette, pipe.classes.ignore_index) for v in [*targets.numpy(), *recon]]
        written["inversion_png"] = write_png(image_grid(pics, ncols=len(specs), pad=GAP), out / "inversion.png")
        accuracy = ", ".join(f"{n} {a:.3f}" for n, a in zip(names, inv.accuracy.tolist()))
        notes.append(f"inverted {len(specs)} layouts (pixel accuracy {accuracy}): {len(frames['image'])} frames")
    print(f"interpolate ({mode}): {'; '.join(notes)} -> {', '.join(str(p) for p in written.values())} "
          f"in {time.perf_counter() - start:.1f} s")
    return written


def _main(argv: list[str]) -> int:
    given = parse_overrides(argv)
    if "recipe" not in given and "run_dir" in given and given["run_dir"] is not None:
        saved = Path(str(given["run_dir"])) / "recipe.yaml"
        if saved.is_file():  # the recipe the run was trained with: its reader, classes and seed
            argv = [f"recipe={saved}", *argv]
    recipe, args = parse_command_line(argv, ARGUMENTS)
    run(recipe, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
