"""The recipe schema: one dataclass per recipe section, with the defaults of `recipes/toy.yaml`.

Choices are `Literal` types, so a bad value is refused when the recipe is loaded
(`synthdata.core.recipe_loading`), naming the key and the valid values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
