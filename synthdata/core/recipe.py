"""The recipe schema: one dataclass per recipe section, with the defaults of `recipes/toy.yaml`.

Choices are `Literal` types and number ranges `Annotated[int, Range(ge=1)]`, so a bad value is
refused when the recipe is loaded (`synthdata.core.recipe_loading`), naming the key and the valid
values, before any command starts work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal


@dataclass(frozen=True)
class Range:
    """The values a number key may take: `ge`/`gt` (>=, >) and `le`/`lt` (<=, <) bounds, None for
    none; NaN and infinities are never in a range. Written `steps: Annotated[int, Range(ge=1)] = 10`;
    `recipe_loading` checks it when a recipe is loaded."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, value: Any) -> bool:
        return ((isinstance(value, int) or math.isfinite(value))
                and (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def __str__(self) -> str:
        low = f"[{self.ge!r}" if self.ge is not None else f"({self.gt!r}" if self.gt is not None else ""
        high = f"{self.le!r}]" if self.le is not None else f"{self.lt!r})" if self.lt is not None else ""
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        if high:
            return ("<= " if high[-1] == "]" else "< ") + high[:-1]
        return "a finite number"

    def __repr__(self) -> str:
        return f"Range({self})"


POSITIVE = Range(gt=0)
COUNT = Range(ge=1)  # a size, channel count or number of draws: 0 has no meaning
PNG_COMPRESSION = Range(ge=0, le=9)


# --------------------------------------------------------------------------------------------
# The schema. Defaults are those of `recipes/toy.yaml` unless a recipe says otherwise.
# --------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Which dataset, where, and at what resolution samples are delivered."""

    reader: str = "toy"  # name in synthdata.data.readers.READERS
    root: str | None = None  # dataset folder (not needed for the toy world)
    height: int = 128  # every sample is resized to height x width (`synthdata check` prints the native size and sizes the stages can build)
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
    depth_scale: Annotated[float, POSITIVE] = 0.001  # depth.png stores depth / depth_scale as uint16 (1 mm steps)
    # low-data subset of the training split, obeyed by every command (generators, production,
    # filters, segmenters): a fraction f (every round(1/f)-th of the ids sorted), "every:K", or a
    # file of ids (one a line); None: all
    subset: float | str | None = None
    # folder reader without split folders or split files: hold out this fraction as val (by a hash
    # of each file name: deterministic, stable when images are added); None: val is refused there
    val_fraction: Annotated[float, Range(gt=0, lt=1)] | None = None
    allow_train_as_val: bool = False  # ... or read the training images as val, and every report says so
    # decoded, resized samples each reader keeps in memory (per process), so epochs after the
    # first skip decoding (most of a real reader's cost); 0: off
    cache_mb: int = 512


@dataclass
class LayoutStageConfig:
    """Unconditional layout GAN: noise z -> C-class label map."""

    arch: Literal["dcgan", "style"] = "dcgan"
    z_dim: Annotated[int, COUNT] = 128
    ngf: Annotated[int, COUNT] = 64
    ndf: Annotated[int, COUNT] = 64
    upsample: Literal["nearest", "transposed"] = "nearest"  # transposed: dcgan
    # hinge: SN-GAN (Miyato et al. 2018), a spectral-normalised critic without norm layers and no
    # gradient penalty (no double backward: a cheaper critic step; docs/studies.md)
    loss: Literal["wgan-gp", "nonsaturating", "hinge"] = "wgan-gp"
    gp_weight: float = 10.0
    # lazy gradient penalty (Karras et al. 2020's lazy regularisation): the penalty on every Nth critic
    # step only, weighted N times; 4: 1.4x faster CPU steps but fewer classes kept (docs/studies.md)
    gp_every: Annotated[int, COUNT] = 1
    # the share of each batch the gradient penalty is computed on (its first ceil(f x batch) samples,
    # a random subset of a shuffled batch); 0.5: 1.25x fewer CPU seconds, but classes lost (docs/studies.md)
    gp_fraction: Annotated[float, Range(gt=0, le=1)] = 1.0
    gumbel_tau: float = 1.0
    # class-presence term (issue 32): weight of the distance (presence_loss) between the share of generated
    # and of real layouts in which each class covers >= 16 pixels (soft: the mean of its 16 likeliest pixels)
    presence_weight: float = 0.0
    # condition the generator (and critic) on the class set a layout is to hold, drawn at sampling
    # time from the real training layouts' sets; presence_weight then compares each generated layout
    # with its own set (arch=dcgan only; docs/studies.md)
    class_conditioning: bool = False
    # how the presence term compares presence with its target: l1, or bce (binary cross-entropy less
    # its floor, whose gradient does not vanish for a class the generator gives ~0 probability)
    presence_loss: Literal["l1", "bce"] = "l1"
    # a second critic beside the first whose patches see 20 pixels (the first's about 80 at 144x192),
    # its mean score added: judges the thin, many-piece structure of a layout (docs/studies.md)
    local_critic: bool = False
    lr_g: float = 2.0e-4
    lr_d: float = 2.0e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])


@dataclass
class SpadeStageConfig:
    """Conditional generator for the depth (layout -> depth) or image stage."""

    arch: Literal["spade", "pix2pix"] = "spade"
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
class CompositeConfig:
    """stages.image.arch=composite: texture layouts with real segments of a bank built from the
    training split into RUN_DIR/bank/ (`synthdata.texturing.pipeline`); nothing to train."""

    blend: Literal["none", "gaussian"] = "none"  # gaussian: feathered boundaries, `sigma` pixels
    sigma: float = 1.0
    k: int = 8  # shortlist of bank segments scored by mask IoU per component
    min_pixels: int = 16  # bank: drop smaller components (a class never loses all of them)
    region_classes: list[str] | None = None  # bank: region (stuff) classes; None: the bank's rule
    missing: Literal["error", "fill"] = "error"  # a layout class with no bank segment: error, or fill with neutral grey
    flip: bool = True  # retrieval may mirror a segment
    # real layouts (produce.layouts=real|mixed) are textured from other images' segments only: new appearances,
    # and the fit a new layout gets; false: a real layout mostly gets its own image's segments back
    leave_one_out: bool = False


@dataclass
class ImageStageConfig(SpadeStageConfig):
    """The image stage: a trained conditional generator, composite texturing from real pixels, or flat
    class colours (a baseline)."""

    # flat: each class its mean training colour, no network (a baseline for a generator's paint)
    arch: Literal["spade", "pix2pix", "composite", "flat"] = "spade"
    composite: CompositeConfig = field(default_factory=CompositeConfig)
    # arch=composite only: a conditional generator of this arch (the stage's ngf, ndf, losses)
    # trained to turn composites into real images (SIMS-style harmonisation); none: composites as is
    harmonise: Literal["none", "spade", "pix2pix"] = "none"
    # the harmoniser's training input: leave-one-out (the real layout composited from other images'
    # segments) or perturbed (the real image with about half its segments' colours changed)
    harmonise_input: Literal["leave-one-out", "perturbed"] = "leave-one-out"
    # weight the trained network's losses (adversarial, feature matching, L1) towards the pixels of
    # these classes (auto: the object classes of the training layouts, as produce.copy_paste_classes=auto):
    # in each batch they carry `object_share` of every loss's weight, the other pixels the rest
    # (None: every pixel alike). For a generator that paints pasted objects (docs/studies.md)
    object_classes: list[str] | Literal["auto"] | None = None
    object_share: Annotated[float, Range(gt=0, lt=1)] = 0.5


@dataclass
class StagesConfig:
    layout: LayoutStageConfig = field(default_factory=LayoutStageConfig)
    depth: SpadeStageConfig = field(default_factory=lambda: SpadeStageConfig(lambda_l1=20.0))
    image: ImageStageConfig = field(default_factory=ImageStageConfig)


@dataclass
class TrainConfig:
    """Generator training loop settings shared by all stages."""

    steps: int = 2000
    # a budget in wall-clock minutes instead of steps: the first steps time the machine and set the
    # steps (RUN_DIR/checkpoints/STAGE/budget.json records both; reruns keep them)
    minutes: Annotated[float, POSITIVE] | None = None
    batch_size: int = 8
    ema_decay: Annotated[float, Range(ge=0, lt=1)] = 0.999
    checkpoint_every: int = 500
    sample_every: int = 250
    log_every: int = 25
    mixed_precision: str | bool = "auto"  # auto | no | bf16 | fp16 (YAML reads a bare `no` as false)
    gradient_accumulation: int = 1
    diffaugment: Literal["auto", "on", "off"] = "auto"  # auto: on under 1000 images
    num_workers: int = 0
    shards: str | None = None  # train from real-data shards instead of the reader
    # torch.compile the generator for its training passes (inductor; the first step compiles, about a
    # minute on a CPU): 1.11x steps at ngf 32, 1.01x at 64 on a 2-core CPU (docs/benchmarks.md)
    compile: bool = False
    # start from this generator run dir's checkpoint of the stage when it has the same settings but
    # fewer train.steps, and train on (generation/continuation.py: the same result as from scratch)
    init_from: str | None = None


@dataclass
class ProduceConfig:
    """Synthetic shard production."""

    num_samples: int = 1000
    shard_size: int = 256
    batch_size: int = 16
    out: str | None = None  # default: RUN_DIR/shards
    prefix: str = "synth"
    layouts: Literal["generated", "real", "mixed"] = "generated"
    real_ratio: float = 0.5  # for layouts=mixed
    image_format: Literal["png", "jpg"] = "png"
    png_compression: Annotated[int, PNG_COMPRESSION] = 1
    jpeg_quality: Annotated[int, Range(ge=1, le=100)] = 95
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
    copy_paste: Annotated[int, Range(ge=0)] = 0  # paste up to this many objects of the training layouts into each layout, real or generated
    # classes whose objects may be pasted (None: any; auto: the object classes by the segment bank's
    # region rule, e.g. CamVid's Pole, SignSymbol, Fence, Car, Pedestrian, Bicyclist)
    copy_paste_classes: list[str] | Literal["auto"] | None = None
    copy_paste_choice: Literal["inverse_frequency", "uniform"] = "inverse_frequency"  # inverse_frequency: of class pixels; uniform: any object
    copy_paste_scale: list[float] = field(default_factory=lambda: [0.8, 1.25])  # [0.1, 2.0]: large jitter
    copy_paste_flip: bool = True  # mirror half of the pasted objects
    copy_paste_position: Literal["uniform", "class", "donor"] = "uniform"  # class: vertical place of that class in real layouts
    # real layouts with a GAN (or flat) image stage: these classes keep the photo's pixels, the stage paints
    # the rest (None: it paints everything; auto: the object classes, as for copy_paste_classes; all:
    # every class, so only pasted objects and unlabelled pixels are painted)
    real_pixel_classes: list[str] | Literal["auto", "all"] | None = None
    # with real_pixel_classes: the photo's unlabelled pixels (the reader's ignore label) keep the photo's
    # pixels too, instead of being painted (false: the stage paints them; flat: neutral grey)
    real_pixel_unlabelled: bool = False


@dataclass
class SegModelConfig:
    arch: str = "unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None  # None, or a local weights file
    encoder_depth: int = 5  # fewer stages: smaller, faster models (tests, tiny images)
    decoder_channels: list[int] | None = None  # None: smp's default for the architecture
    # weights and activations stored channels_last: 1.23x faster particle training steps on CPU
    # (docs/benchmarks.md, "Segmenter memory format"); the same model up to float rounding
    channels_last: bool = True


@dataclass
class SegConfig:
    """Segmentation training on real (+ synthetic) data."""

    model: SegModelConfig = field(default_factory=SegModelConfig)
    steps: Annotated[int, Range(ge=1, le=10**9)] = 1000
    batch_size: Annotated[int, COUNT] = 8
    lr: Annotated[float, POSITIVE] = 1.0e-3
    weight_decay: Annotated[float, Range(ge=0)] = 1.0e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: Literal["poly", "cosine"] = "poly"
    dice: bool = False
    real: str | None = None  # real data as shards; None: the recipe's reader
    synthetic: str | None = None  # shard pattern or folder of synthetic shards
    synthetic_ratio: float = 0.0
    # synthetic share per step: constant (synthetic_ratio throughout), decay (linearly from
    # synthetic_ratio to 0 at the last step), pretrain (synthetic only for pretrain_steps, then real)
    synthetic_schedule: Literal["constant", "decay", "pretrain"] = "constant"
    pretrain_steps: int = 0  # schedule=pretrain: the first steps of seg.steps (one optimiser and LR schedule)
    real_fraction: float = 1.0
    real_subset: str | None = None  # file listing sample ids to train on
    synthetic_filter: Literal["none", "loss"] = "none"
    filter_k: float = 1.25
    filter_segmenter: str | None = None
    val_every: int = 250
    checkpoint_every: int = 250
    mixed_precision: str | bool = "auto"  # auto | no | bf16 | fp16
    num_workers: int = 0
    crop_height: Annotated[int, COUNT] | None = None  # random crops for training (None: full sample)
    crop_width: Annotated[int, COUNT] | None = None
    PAIRED: ClassVar[tuple[tuple[str, str], ...]] = (("crop_height", "crop_width"),)  # both or neither
    # paste up to this many objects of the training split's segment bank (RUN_DIR/bank) into real
    # training samples as they are read, each with its own real pixels (0: off); which classes and
    # how: produce.copy_paste_classes / _choice / _scale / _flip / _position
    online_copy_paste: Annotated[int, Range(ge=0)] = 0
    online_copy_paste_p: Annotated[float, Range(ge=0, le=1)] = 0.5  # share of real samples that get pastes


@dataclass
class EvalConfig:
    """Evaluation protocol for mIoU and generation-quality metrics."""

    height: int | None = None  # None: the data resolution
    width: int | None = None
    batch_size: Annotated[int, COUNT] = 8
    sliding_window: bool = False
    window: list[Annotated[int, COUNT]] | None = None  # [H, W] of the sliding window
    # test-time flips: the mean logits over every combination of the listed flips (horizontal:
    # 2 views, horizontal + vertical: 4); [] predicts once
    flips: list[str] = field(default_factory=list)
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
    mode: Literal["pix2pix", "cyclegan"] = "pix2pix"
    steps: int = 1000
    batch_size: int = 4
    lr: float = 2.0e-4
    lambda_l1: float = 100.0
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    ngf: int = 64
    ndf: int = 64
    pool_size: int = 50
    crop_height: Annotated[int, COUNT] | None = None  # training crops (None: seg.crop_height, else the full sample)
    crop_width: Annotated[int, COUNT] | None = None
    PAIRED: ClassVar[tuple[tuple[str, str], ...]] = (("crop_height", "crop_width"),)  # both or neither
    checkpoint_every: int = 250
    mixed_precision: str | bool = "auto"  # auto | no | bf16 | fp16


@dataclass
class ExportConfig:
    shard_size: int = 256
    image_format: str = "png"
    png_compression: Annotated[int, PNG_COMPRESSION] = 1


@dataclass
class DemoConfig:
    budget: Literal["tiny", "small", "full"] = "small"
    real_train: int | None = None  # labelled toy scenes to learn from (None: the budget's)


@dataclass
class StudyConfig:
    """`synthdata study`: the real-only baseline and named variants x seeds (synthdata.experiments)."""

    variants: str | dict[str, Any] | None = None  # YAML file of variants, or {name: {dotted.key: value}}
    # N: cells of seeds recipe.seed .. recipe.seed + N - 1 per variant; a list: exactly those seeds, e.g. a
    # replication's new seeds alone ([5, 6, 7], the finished cells of other seeds left out of the report)
    seeds: int | list[int] = 3
    workers: int = 2  # cells (and generator runs) in parallel processes
    threads: int = 1  # OMP/torch threads of each worker process (workers=1 runs in this process, with its threads, chosen once)
    baseline: str = "real only"  # name of the baseline row (every variant is compared to it)
    confidence: float = 0.95
    bootstrap: Annotated[int, COUNT] = 10000  # resamples of the per-image paired bootstrap
    report_only: bool = False  # write the report from the cells finished so far; run nothing
    only: list[str] | None = None  # run and report only these variants (and the baseline); None: all
    # productions: train the generators and make the productions, then stop before any cell trains, so
    # their samples and layout checks can be read first; a rerun without it trains the cells
    stop_after: Literal["productions", "cells"] = "cells"
    # local: worker processes here; submitit: submitit jobs (SLURM from a login node, else local
    # subprocesses), study.workers at a time, with study.executor_parameters (e.g. slurm_partition)
    executor: Literal["local", "submitit"] = "local"
    executor_parameters: dict[str, Any] | None = None


# Accelerate's trackers (LoggerType, less "all"); each is an optional package (synthdata.core.tracking)
Tracker = Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio"]


@dataclass
class Recipe:
    """A whole recipe: one file in recipes/, after overrides."""

    name: str = "toy"
    seed: int = 0
    # experiment trackers for train, segment and study cells, e.g. [tensorboard] (RUN_DIR/logs); None: off
    log_with: list[Tracker] | None = None
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
    study: StudyConfig = field(default_factory=StudyConfig)
