"""A study's variants: read from a file or mapping as dotted overrides, checked (which keys may
vary between cells, refine variants), resolved into recipes, and the generator stages each needs.
The keys and their meaning are described in `synthdata.experiments.study`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthdata.core.contract import CheckpointError, ConfigError
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import from_dict, read_yaml, recipes_dir
from synthdata.generation.image_sources import image_source

VARIANT_SECTIONS = ("seg.", "produce.", "train.", "stages.", "refine.")
STUDY_KEYS = ("produce.out", "produce.num_shards", "refine.segmenter")  # set by the study, never by a variant


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"seg": {"synthetic_ratio": 0.5}}` -> `{"seg.synthetic_ratio": 0.5}` (dotted keys kept)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and not dotted.endswith("split_sizes"):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def read_variants(spec: str | dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """`study.variants` -> `{name: {dotted key: value}}` (file order kept)."""
    if spec is None:
        raise ConfigError("a study needs variants: study.variants=FILE.yaml (or NAME of recipes/studies/), "
                          "or a study.variants mapping in the recipe")
    source = "study.variants"
    if isinstance(spec, str):
        studies = recipes_dir() / "studies"  # shipped variant files: study.variants=NAME
        path = Path(spec).expanduser()
        if not path.is_file() and path.suffix not in (".yaml", ".yml") and (studies / f"{spec}.yaml").is_file():
            path = studies / f"{spec}.yaml"
        if not path.is_file():
            shipped = sorted(p.stem for p in studies.glob("*.yaml"))
            raise ConfigError(f"study.variants: file not found: {path} (shipped studies: {', '.join(shipped) or 'none'})")
        spec, source = read_yaml(path), str(path)
    if set(spec) == {"variants"}:
        spec = spec["variants"]
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"{source}: expected a mapping of variant name -> overrides, got {spec!r}")
    out = {}
    for name, overrides in spec.items():
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{source}: variant '{name}' should be a mapping of dotted keys, got {overrides!r}")
        out[str(name)] = flatten(overrides)
    return out


def check_variant_keys(name: str, overrides: dict[str, Any]) -> None:
    for key in overrides:
        if key in STUDY_KEYS or not key.startswith(VARIANT_SECTIONS):
            raise ConfigError(
                f"study variant '{name}': key '{key}' cannot vary between cells. Variants set seg.*, produce.*, "
                "train.*, stages.* and refine.*; data.* (subset, resolution), eval.*, seed and study.* are the "
                f"study's, the same for every cell (set them on the command line); {', '.join(STUDY_KEYS)} are "
                "set by the study")


def refine_overrides(name: str, overrides: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """A refine variant's overrides, checked; one that only refines gets the image stage SegGAN
    needs (a trained generator on layouts alone: `stages.image.use_depth: false`, not composite)."""
    where = f"study variant '{name}'"
    if recipe.refine.steps < 1:
        raise ConfigError(f"{where}: refine.steps must be >= 1, got {recipe.refine.steps}")
    if recipe.refine.generator:
        if not Path(recipe.refine.generator).expanduser().is_file():
            raise CheckpointError(f"{where}: refine.generator: no checkpoint at {recipe.refine.generator}")
        return overrides
    image = recipe.stages.image
    need: dict[str, Any] = {} if image_source(recipe).trains_generator else {"stages.image.arch": "spade"}
    need.update({"stages.image.harmonise": "none"} if image.harmonise != "none" else {})
    need.update({"stages.image.use_depth": False} if image.use_depth else {})
    shared = uses_synthetic(recipe) and not recipe.seg.synthetic  # its production uses the same run
    if need and (shared or any(key in overrides for key in need)):
        raise ConfigError(
            f"{where}: refine.* needs a trained mask-to-image generator on layouts alone"
            + (", and this variant's production shares its generator run" if shared else "")
            + f": set {', '.join(f'{k}: {json.dumps(v)}' for k, v in need.items())} in the variant, "
            "or refine.generator: PATH")
    return {**overrides, **need}


def variant_recipe(base: dict[str, Any], name: str, overrides: dict[str, Any]) -> Recipe:
    """The base recipe tree with a variant's overrides, validated; errors name the variant."""
    tree = json.loads(json.dumps(base))
    for dotted, value in overrides.items():
        node = tree
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {} if node.get(part) is None else node[part]
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"study variant '{name}': cannot set '{dotted}': '{part}' is not a section")
        node[parts[-1]] = value
    return from_dict(Recipe, tree, source=f"study variant '{name}'")  # errors name the variant and the key


def uses_synthetic(recipe: Recipe) -> bool:
    return recipe.seg.synthetic_ratio > 0 or recipe.seg.synthetic_schedule == "pretrain"


def refines(overrides: dict[str, Any]) -> bool:
    return any(key.startswith("refine.") for key in overrides)


def stages_needed(recipe: Recipe, *, production: bool = True, refine: bool = False) -> list[str]:
    """Generator stages a variant needs trained. Production: the layout GAN unless layouts are
    real, then what the image source needs (`ImageSource.stages`: no depth stage for composite
    texturing, whose `stage=image` only builds the segment bank). Refinement (without
    `refine.generator`): the image stage."""
    if production:
        return ([] if recipe.produce.layouts == "real" else ["layout"]) + image_source(recipe).stages(recipe)
    return ["image"] if refine and not recipe.refine.generator else []
