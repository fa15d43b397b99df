"""Recipes: YAML files plus dotted command-line overrides, turned into typed dataclasses.

`load_recipe("toy", ["train.steps=10"])` reads `recipes/toy.yaml` (or a path), applies the
overrides (values parsed as YAML), and validates everything against the dataclasses below.
An unknown key, a wrong type or a missing required value raises `ConfigError` before any work,
naming the dotted key and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A recipe or command line that cannot be turned into a valid configuration."""


# --------------------------------------------------------------------------------------------
# The schema. Defaults are those of `recipes/toy.yaml` unless a recipe says otherwise.
# --------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Which dataset, where, and at what resolution samples are delivered."""

    reader: str = "toy"  # name in synthdata.data.readers.READERS
    root: str | None = None  # dataset folder (not needed for the toy world)
    height: int = 128  # every sample is resized to height x width (None: native size)
    width: int = 256
    classes: list[str] | None = None  # None: the reader's own class list
    palette: list[list[int]] | None = None  # RGB per class; None: the reader's own palette
    ignore_index: int = 255
    strict_labels: bool = False  # labels outside the classes: error instead of ignore + warning
    train_split: str = "train"
    val_split: str = "val"
    split_sizes: dict[str, int] = field(
        default_factory=lambda: {"train": 512, "val": 128, "test": 128}
    )  # toy world: scenes per split
    databar_height: int | None = None  # particles: rows of the SEM data bar (None: detect)
    images_dir: str = "images"  # folder reader: sub-folders of root
    masks_dir: str = "masks"
    has_depth: bool = True  # False: the layout -> image chain skips the depth stage
    depth_scale: float = 0.001  # depth.png stores depth / depth_scale as uint16 (1 mm steps)


@dataclass
class LayoutStageConfig:
    """Unconditional layout GAN: noise z -> C-class label map."""

    arch: str = "dcgan"  # dcgan | style
    z_dim: int = 128
    ngf: int = 64
    ndf: int = 64
    upsample: str = "nearest"  # nearest | transposed (dcgan)
    loss: str = "wgan-gp"  # wgan-gp | nonsaturating
    gp_weight: float = 10.0
    gumbel_tau: float = 1.0
    lr_g: float = 2.0e-4
    lr_d: float = 2.0e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])


@dataclass
class SpadeStageConfig:
    """Conditional generator for the depth (layout -> depth) or image stage."""

    arch: str = "spade"  # spade | pix2pix
    ngf: int = 64
    ndf: int = 64
    num_discriminators: int = 2
    z_dim: int = 64  # style noise; 0 disables it
    lambda_fm: float = 10.0
    lambda_l1: float = 10.0
    use_depth: bool = True  # image stage: condition on depth as an extra channel
    lr_g: float = 2.0e-4
    lr_d: float = 2.0e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])


@dataclass
class StagesConfig:
    layout: LayoutStageConfig = field(default_factory=LayoutStageConfig)
    depth: SpadeStageConfig = field(default_factory=lambda: SpadeStageConfig(lambda_l1=20.0))
    image: SpadeStageConfig = field(default_factory=SpadeStageConfig)


@dataclass
class TrainConfig:
    """Generator training loop settings shared by all stages."""

    steps: int = 2000
    batch_size: int = 8
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    sample_every: int = 250
    log_every: int = 25
    mixed_precision: str | bool = "auto"  # auto | no | bf16 | fp16 (YAML reads a bare `no` as false)
    gradient_accumulation: int = 1
    diffaugment: str = "auto"  # auto (on under 1000 images) | on | off
    num_workers: int = 0
    shards: str | None = None  # train from real-data shards instead of the reader


@dataclass
class ProduceConfig:
    """Synthetic shard production."""

    num_samples: int = 1000
    shard_size: int = 256
    batch_size: int = 16
    out: str | None = None  # default: RUN_DIR/shards
    prefix: str = "synth"
    layouts: str = "generated"  # generated | real | mixed
    real_ratio: float = 0.5  # for layouts=mixed
    image_format: str = "png"  # png | jpg
    png_compression: int = 1
    jpeg_quality: int = 95
    encode_workers: int = 2
    mixed_precision: str | bool = "auto"  # auto | no | bf16 | fp16
    min_classes: int = 0  # reject layouts with fewer classes (0: off)
    max_class_fraction: float = 1.0  # reject layouts where one class covers more (1.0: off)
    class_balance: bool = False
    target_distribution: list[float] | None = None  # None: uniform over classes
    fidelity_segmenter: str | None = None
    fidelity_threshold: float = 0.0
    hardness_segmenter: str | None = None
    hardness_max_copies: int = 1
    max_attempts: int = 50  # redraws of a rejected sample before the run stops with an error
    balance_calibration: int = 256  # layouts drawn to measure the source's class distribution
    real_hflip: bool = True  # real layouts: mirror half of them
    copy_paste: int = 0  # real layouts: paste up to this many objects from another layout
    copy_paste_classes: list[str] | None = None  # classes whose objects may be pasted (None: any)


@dataclass
class SegModelConfig:
    arch: str = "unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None  # None, or a local weights file
    encoder_depth: int = 5  # fewer stages: smaller, faster models (tests, tiny images)
    decoder_channels: list[int] | None = None  # None: smp's default for the architecture


@dataclass
class SegConfig:
    """Segmentation training on real (+ synthetic) data."""

    model: SegModelConfig = field(default_factory=SegModelConfig)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1.0e-3
    weight_decay: float = 1.0e-4
    optimizer: str = "adamw"  # adamw | sgd
    schedule: str = "poly"  # poly | cosine
    dice: bool = False
    real: str | None = None  # real data as shards; None: the recipe's reader
    synthetic: str | None = None  # shard pattern or folder of synthetic shards
    synthetic_ratio: float = 0.0
    real_fraction: float = 1.0
    real_subset: str | None = None  # file listing sample ids to train on
    synthetic_filter: str = "none"  # none | loss
    filter_k: float = 1.25
    filter_segmenter: str | None = None
    val_every: int = 250
    checkpoint_every: int = 250
    mixed_precision: str | bool = "auto"  # auto | no | bf16 | fp16
    num_workers: int = 0
    crop_height: int | None = None  # random crops for training (None: full sample)
    crop_width: int | None = None


@dataclass
class EvalConfig:
    """Evaluation protocol for mIoU and generation-quality metrics."""

    height: int | None = None  # None: the data resolution
    width: int | None = None
    batch_size: int = 8
    sliding_window: bool = False
    window: list[int] | None = None
    fid_weights: str | None = None  # pt_inception-2015-12-05 weights; None: torch hub cache
    fid_dims: int = 2048
    kid_subsets: int = 100
    kid_subset_size: int = 1000


@dataclass
class RefineConfig:
    segmenter: str | None = None
    generator: str | None = None  # mask -> image generator checkpoint (None: RUN_DIR's image stage)
    lambda_content: float = 0.1
    lambda_adv: float = 0.1
    steps: int = 500
    lr: float = 1.0e-4
    batch_size: int = 4
    checkpoint_every: int = 250
    mixed_precision: str | bool = "auto"  # auto | no | bf16 | fp16


@dataclass
class TranslateConfig:
    mode: str = "pix2pix"  # pix2pix | cyclegan
    steps: int = 1000
    batch_size: int = 4
    lr: float = 2.0e-4
    lambda_l1: float = 100.0
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    ngf: int = 64
    ndf: int = 64
    pool_size: int = 50
    crop_height: int | None = None  # training crops (None: seg.crop_height, else the full sample)
    crop_width: int | None = None
    checkpoint_every: int = 250
    mixed_precision: str | bool = "auto"  # auto | no | bf16 | fp16


@dataclass
class ExportConfig:
    shard_size: int = 256
    image_format: str = "png"
    png_compression: int = 1


@dataclass
class DemoConfig:
    budget: str = "small"  # tiny | small | full
    real_train: int | None = None  # labelled toy scenes to learn from (None: the budget's)


@dataclass
class Recipe:
    """A whole recipe: one file in recipes/, after overrides."""

    name: str = "toy"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    produce: ProduceConfig = field(default_factory=ProduceConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def recipes_dir() -> Path:
    """The folder of the shipped recipes (works for editable and regular installs)."""
    return Path(str(importlib.resources.files("synthdata.recipes")))


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def resolve_recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        return path
    shipped = recipes_dir() / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = available_recipes()
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(
        f"unknown recipe '{name_or_path}'.{hint} Shipped recipes: {', '.join(names)}; "
        "or give a path to a .yaml file."
    )


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML in {path}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """`["a.b=1", "c=x"]` -> `{"a.b": 1, "c": "x"}` with values typed by YAML."""
    out: dict[str, Any] = {}
    for token in tokens:
        if "=" not in token:
            raise ConfigError(f"expected key=value, got '{token}'")
        key, raw = token.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"empty key in '{token}'")
        try:
            out[key] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as e:
            raise ConfigError(f"cannot parse value of {key}: {raw!r} ({e})") from e
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def load_recipe(name_or_path: str = "toy", overrides: list[str] | dict[str, Any] | None = None) -> Recipe:
    """Read a recipe, apply dotted overrides and validate it into a `Recipe`."""
    path = resolve_recipe_path(name_or_path)
    tree = read_yaml(path)
    tree.setdefault("name", path.stem)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        _set_dotted(tree, key, value)
    return from_dict(Recipe, tree, source=str(path))


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)


def recipe_from_mapping(tree: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate a plain dict (e.g. stored in a checkpoint or manifest) into a `Recipe`."""
    return from_dict(Recipe, tree, source=source)


# --------------------------------------------------------------------------------------------
# dict -> dataclass with type checking
# --------------------------------------------------------------------------------------------


def from_dict(cls: type, data: Any, source: str = "<recipe>", prefix: str = "") -> Any:
    if not isinstance(data, dict):
        where = f"'{prefix.rstrip('.')}' should be a mapping" if prefix else "a recipe must be a mapping"
        raise ConfigError(f"{source}: {where}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            dotted = f"{prefix}{key}"
            valid = [f"{prefix}{name}" for name in fields]
            close = difflib.get_close_matches(dotted, valid, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{source}: unknown key '{dotted}'.{hint} Valid keys here: {', '.join(valid)}"
            )
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}{name}"
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], source, dotted)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required value '{dotted}'")
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, source: str, dotted: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        return from_dict(tp, value, source, prefix=f"{dotted}.")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, dotted)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{source}: '{dotted}' should be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: '{dotted}' must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{dotted}' should be a list, got {value!r}")
        (item,) = args or (Any,)
        return [_coerce(item, v, source, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{dotted}' should be a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {
            _coerce(kt, k, source, dotted): _coerce(vt, v, source, f"{dotted}.{k}")
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. split=2007 or a numeric file name
    elif isinstance(value, tp):
        return value
    raise ConfigError(
        f"{source}: '{dotted}' should be {_type_name(tp)}, got {type(value).__name__} {value!r}"
    )


# --------------------------------------------------------------------------------------------
# Command lines: recipe=NAME, entry-point arguments (stage=, run_dir=, ...) and dotted overrides
# --------------------------------------------------------------------------------------------


def default_run_dir(recipe: Recipe) -> Path:
    """Where generator stages train and produce writes when no `run_dir=` is given: `runs/NAME`."""
    return Path("runs") / recipe.name


def parse_command_line(
    argv: list[str], arguments: dict[str, Any] | None = None
) -> tuple[Recipe, dict[str, Any]]:
    """Split `key=value` tokens into the recipe (with overrides) and the entry point's arguments.

    `arguments` maps each argument the entry point accepts to its default; a default of
    `dataclasses.MISSING` makes it required. Returns `(recipe, args)`.
    """
    arguments = dict(arguments or {})
    values = parse_overrides(argv)
    recipe_name = values.pop("recipe", "toy")
    if not isinstance(recipe_name, str):
        recipe_name = str(recipe_name)
    args: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    top_level = {f.name for f in dataclasses.fields(Recipe)}
    for key, value in values.items():
        if key in arguments:
            args[key] = value
        elif "." in key or key in top_level:
            overrides[key] = value
        else:
            valid = sorted(set(arguments) | top_level | {"recipe"})
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown argument '{key}'.{hint} Arguments: {', '.join(sorted(arguments))}; "
                "recipe keys are dotted (e.g. train.steps=100)."
            )
    for key, default in arguments.items():
        if key not in args:
            if default is dataclasses.MISSING:
                raise ConfigError(f"missing required argument '{key}=...'")
            args[key] = default
    recipe = load_recipe(recipe_name, overrides)
    return recipe, args
