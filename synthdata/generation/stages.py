"""The generator stages as typed specs: each builds its networks, feeds them and scores them.

layout: z -> C-class logits; the critic sees real one-hot maps and straight-through Gumbel one-hot
fakes (WGAN-GP or non-saturating). depth / image: SPADE-style conditional GANs (hinge + feature
matching + L1) on one-hot layouts (+ depth for the image stage). Checkpoints store `to_dict()`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch

from synthdata import models
from synthdata.core.contract import CheckpointError, ConfigError
from synthdata.core.recipe import LayoutStageConfig, Recipe, SpadeStageConfig
from synthdata.core.seeding import torch_generator
from synthdata.generation.encodings import denormalize_depth, normalize_depth, one_hot
from synthdata.models import losses, straight_through_onehot

STAGES = ("layout", "depth", "image")
STAGE_IDS = {name: i for i, name in enumerate(STAGES)}  # keys for derived seeds
# stages.layout.loss -> (critic loss, generator loss); wgan-gp adds its gradient penalty in d_loss
LAYOUT_LOSSES = {
    "wgan-gp": (losses.wgan_d_loss, losses.wgan_g_loss),
    "nonsaturating": (losses.nonsaturating_d_loss, losses.nonsaturating_g_loss),
    "hinge": (losses.hinge_d_loss, losses.hinge_g_loss),
}
CLASS_SET_TAG = 0xC1A5  # seed domain of the class sets a class-conditioned layout generator draws

Augment = Callable[[torch.Tensor], torch.Tensor] | None


def check_stage(stage: Any) -> str:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}. Valid stages: {', '.join(STAGES)}")
    return stage


@dataclass
class StageInputs:
    """One micro-batch as a stage sees it: `cond` (B, Ccond, H, W) or None (layout stage),
    `target` (B, Cout, H, W) the real sample in the generator's output space, `mask` (B, 1, H, W)
    of pixels with ground truth (None: all), `z` (B, z_dim) noise or None."""

    cond: torch.Tensor | None
    target: torch.Tensor
    mask: torch.Tensor | None
    z: torch.Tensor | None


def _split_scales(outputs: list[list[torch.Tensor]], n: int):
    first = [[f[:n] for f in feats] for feats in outputs]
    second = [[f[n:] for f in feats] for feats in outputs]
    return first, second


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """Everything that rebuilds a stage's networks and runs its losses: sizes, widths, loss weights.

    Subclasses: `LayoutSpec`, `DepthSpec`, `ImageSpec`; make one with `stage_spec` (from a recipe)
    or `spec_from_dict` (from a checkpoint's "arch" record).
    """

    stage: ClassVar[str]
    arch: str  # name in the model registries of synthdata.models
    num_classes: int
    height: int
    width: int
    z_dim: int  # 0: no noise (conditional stages only)
    ngf: int
    ndf: int

    @property
    def stage_id(self) -> int:
        return STAGE_IDS[self.stage]

    def to_dict(self) -> dict[str, Any]:
        """Plain primitives, as stored under a checkpoint's "arch" key (`weights_only` loads)."""
        return {"stage": self.stage, **dataclasses.asdict(self)}

    def _config(self, cls: type) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in self.to_dict().items() if k in names})

    def _checked_build(self, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        """Model errors (unknown arch, a size the architecture cannot make) as recipe errors."""
        try:
            return build()
        except ValueError as e:
            raise ConfigError(f"stages.{self.stage} (arch={self.arch!r}, {self.height}x{self.width}): {e}") from e

    def noise(self, batch_size: int, generator: torch.Generator | None, device) -> torch.Tensor | None:
        """Noise (B, z_dim) drawn from `generator`, or None when the stage takes none."""
        if not self.z_dim:
            return None
        return torch.randn(batch_size, self.z_dim, generator=generator).to(device)

    def critic_inputs(self, inp: StageInputs, real: torch.Tensor, fake: torch.Tensor,
                      augment: Augment) -> tuple[torch.Tensor, torch.Tensor]:
        """Critic inputs for real and fake, (B, Ccond + Cout, H, W) each (layout stage: (B, C, H, W)).

        Real and fake pass through DiffAugment concatenated on channels, so each pair gets the same
        transform and feature matching compares like with like.
        """
        real, fake = self._critic_pair(inp, real, fake)
        fake = fake.to(real.dtype)
        if augment is None:
            return real, fake
        both = augment(torch.cat([real, fake], 1))
        return both[:, : real.shape[1]], both[:, real.shape[1]:]

    def _critic_pair(self, inp: StageInputs, real: torch.Tensor, fake: torch.Tensor):
        return real, fake

    def fake_for_critic(self, fake: torch.Tensor) -> torch.Tensor:
        return fake

    def observe_real(self, G_plain: torch.nn.Module, inp: StageInputs) -> None:
        """Called on each training micro-batch before the step (the layout stage remembers class sets)."""

    def sampling_condition(self, G: torch.nn.Module, seeds: list[int], device) -> torch.Tensor | None:
        """The condition an unconditional draw of `seeds` needs (class sets), or None."""
        return None

    # per stage: networks, inputs, generation, losses, decoding
    def build_generator(self) -> torch.nn.Module:
        raise NotImplementedError

    def build_discriminator(self) -> torch.nn.Module:
        raise NotImplementedError

    def inputs(self, batch: dict[str, Any], z: torch.Tensor | None) -> StageInputs:
        """Loader batch (image (B,3,H,W) in [0,1], layout (B,H,W), depth (B,1,H,W)) -> `StageInputs`."""
        raise NotImplementedError

    def generate(self, G: torch.nn.Module, inp: StageInputs) -> torch.Tensor:
        """Generator output in the target space: layout logits (B, C, H, W) or (B, Cout, H, W) in [-1, 1]."""
        raise NotImplementedError

    def d_loss(self, D, D_plain, inp: StageInputs, fake: torch.Tensor, augment: Augment, *,
               step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Critic loss on real `inp.target` vs detached `fake` at training step `step`. `D` may be
        DDP-wrapped; `D_plain` is the bare module (used for the gradient penalty's extra forward)."""
        raise NotImplementedError

    def g_loss(self, D_plain, inp: StageInputs, fake: torch.Tensor,
               augment: Augment) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Generator loss through a frozen critic `D_plain` (bare module, parameters not trainable)."""
        raise NotImplementedError

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Generator output -> data: layouts (B, H, W) int64, depth (B, H, W) metres, images in [0, 1]."""
        raise NotImplementedError

    def preview_rows(self, batch: dict[str, Any], fake: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Rows of a training sample grid: (condition,) decoded fake, real."""
        return [("fake", fake), ("real", batch[self.stage])]


@dataclass(frozen=True, kw_only=True)
class LayoutSpec(StageSpec):
    """The unconditional layout GAN (DCGAN / style generator, PatchGAN critic)."""

    stage: ClassVar[str] = "layout"
    upsample: str
    loss: str  # one of LAYOUT_LOSSES
    gp_weight: float
    gp_every: int
    gp_fraction: float
    gumbel_tau: float
    presence_weight: float
    presence_loss: str
    class_conditioning: bool
    local_critic: bool

    def __post_init__(self) -> None:
        if self.loss not in LAYOUT_LOSSES:
            raise ConfigError(f"unknown stages.layout.loss {self.loss!r}. Valid: {', '.join(LAYOUT_LOSSES)}")

    def build_generator(self) -> torch.nn.Module:
        return self._checked_build(lambda: models.build_layout_generator(
            self._config(LayoutStageConfig), num_classes=self.num_classes, height=self.height, width=self.width))

    def build_discriminator(self) -> torch.nn.Module:
        return self._checked_build(lambda: models.build_layout_critic(
            self._config(LayoutStageConfig), num_classes=self.num_classes, height=self.height, width=self.width))

    def inputs(self, batch: dict[str, Any], z: torch.Tensor | None) -> StageInputs:
        target = one_hot(batch["layout"], self.num_classes)
        # class-conditioned: the condition is each real layout's class set (B, C), a fake's to hold
        return StageInputs(models.class_sets(target) if self.class_conditioning else None, target, None, z)

    def generate(self, G: torch.nn.Module, inp: StageInputs) -> torch.Tensor:
        return G(inp.z, inp.cond) if self.class_conditioning else G(inp.z)

    def observe_real(self, G_plain: torch.nn.Module, inp: StageInputs) -> None:
        if self.class_conditioning:
            G_plain.remember_class_sets(inp.cond)

    def sampling_condition(self, G: torch.nn.Module, seeds: list[int], device) -> torch.Tensor | None:
        if not self.class_conditioning:
            return None
        return G.draw_class_sets([torch_generator(int(s), self.stage_id, CLASS_SET_TAG) for s in seeds]).to(device)

    def _critic_pair(self, inp, real, fake):
        if not self.class_conditioning:
            return real, fake
        planes = inp.cond[:, :, None, None].expand_as(real).to(real.dtype)
        return torch.cat([real, planes], 1), torch.cat([fake.to(real.dtype), planes], 1)

    def fake_for_critic(self, fake: torch.Tensor) -> torch.Tensor:
        # a soft softmax map is trivially told apart from a hard one-hot real one
        return straight_through_onehot(fake.float(), tau=self.gumbel_tau, hard=True)

    def d_loss(self, D, D_plain, inp, fake, augment, *, step):
        real_in, fake_in = self.critic_inputs(inp, inp.target, self.fake_for_critic(fake.detach()), augment)
        n = real_in.shape[0]
        out = D(torch.cat([real_in, fake_in], 0))  # one forward: one DDP reduction
        real_s, fake_s = out[:n].float(), out[n:].float()
        loss = LAYOUT_LOSSES[self.loss][0](real_s, fake_s)
        if self.loss == "wgan-gp":
            if (step + 1) % self.gp_every:  # a lazy step ("gp" logs 0); the last step before a log line has it
                return loss, {"d": loss.detach(), "gp": torch.zeros((), device=loss.device)}
            k = math.ceil(self.gp_fraction * n)  # the batch is shuffled: its first k are a random subset
            gp = losses.gradient_penalty(D_plain, real_in[:k].float(), fake_in[:k].detach().float())
            return loss + self.gp_weight * self.gp_every * gp, {"d": loss.detach(), "gp": gp.detach()}
        return loss, {"d": loss.detach()}

    def g_loss(self, D_plain, inp, fake, augment):
        _, fake_in = self.critic_inputs(inp, inp.target, self.fake_for_critic(fake), augment)
        score = D_plain(fake_in).float()
        loss = LAYOUT_LOSSES[self.loss][1](score)
        logs = {"g": loss.detach()}
        if self.presence_weight > 0:
            presence = (losses.class_set_loss(fake, inp.cond, form=self.presence_loss) if self.class_conditioning
                        else losses.class_presence_loss(fake, inp.target, form=self.presence_loss))
            loss = loss + self.presence_weight * presence
            logs["presence"] = presence.detach()
        return loss, logs

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return models.class_index(out)


@dataclass(frozen=True, kw_only=True)
class ConditionalSpec(StageSpec):
    """A SPADE / pix2pix generator on a condition stack, with a multiscale discriminator."""

    out_channels: ClassVar[int]
    num_discriminators: int
    lambda_fm: float
    lambda_l1: float
    max_depth: float | None  # depth normalisation range in metres (None: the stage sees no depth)
    # subclasses give `use_depth`: whether the condition stack ends with a depth channel

    @property
    def cond_channels(self) -> int:
        return self.num_classes + int(self.use_depth)

    def to_dict(self) -> dict[str, Any]:
        # the derived channels are written too: older readers of the record expect them
        return dict(super().to_dict(), use_depth=self.use_depth, cond_channels=self.cond_channels,
                    out_channels=self.out_channels)

    def condition(self, layout: torch.Tensor, depth: torch.Tensor | None) -> torch.Tensor:
        """One-hot layout (B, C, H, W) (+ depth (B, 1, H, W) metres) -> the condition (B, Ccond, H, W)."""
        if not self.use_depth:
            return layout
        norm, _ = normalize_depth(depth, self.max_depth)
        return torch.cat([layout, norm], 1)

    def build_generator(self) -> torch.nn.Module:
        return self._checked_build(lambda: models.build_conditional_generator(
            self._config(SpadeStageConfig), cond_channels=self.cond_channels, out_channels=self.out_channels,
            height=self.height, width=self.width))

    def build_discriminator(self) -> torch.nn.Module:
        return self._checked_build(lambda: models.build_conditional_discriminator(
            self._config(SpadeStageConfig), in_channels=self.cond_channels + self.out_channels))

    def generate(self, G: torch.nn.Module, inp: StageInputs) -> torch.Tensor:
        return G(inp.cond, inp.z)

    def _critic_pair(self, inp, real, fake):
        if inp.mask is not None:  # unknown depth is shown to D as 0 in real and fake alike
            real, fake = real * inp.mask, fake * inp.mask
        return torch.cat([inp.cond, real.to(inp.cond.dtype)], 1), torch.cat([inp.cond, fake.to(inp.cond.dtype)], 1)

    def loss_weight(self, critic_input: torch.Tensor) -> torch.Tensor | None:
        """Pixel weights (B, 1, H, W) of the losses from a critic input or condition (its first channels
        the one-hot layout, after any augmentation), or None: every pixel alike."""
        return None

    def d_loss(self, D, D_plain, inp, fake, augment, *, step):
        real_in, fake_in = self.critic_inputs(inp, inp.target, fake.detach(), augment)
        n = real_in.shape[0]
        real_o, fake_o = _split_scales(D(torch.cat([real_in, fake_in], 0)), n)  # one forward: one DDP reduction
        weight = self.loss_weight(real_in)
        loss = sum(losses.hinge_d_loss(r[-1].float(), f[-1].float(), weight) for r, f in zip(real_o, fake_o))
        return loss, {"d": loss.detach()}

    def g_loss(self, D_plain, inp, fake, augment):
        real_in, fake_in = self.critic_inputs(inp, inp.target, fake, augment)
        real_o, fake_o = _split_scales(D_plain(torch.cat([real_in, fake_in], 0)), real_in.shape[0])
        weight = self.loss_weight(real_in)
        adv = sum(losses.hinge_g_loss(f[-1].float(), weight) for f in fake_o)
        fm = losses.feature_matching_loss([[t.detach().float() for t in r] for r in real_o],
                                          [[t.float() for t in f] for f in fake_o], weight)
        pixel_weight = self.loss_weight(inp.cond)  # object weights (image stage; it has no mask), else depth's known pixels
        l1 = losses.l1_loss(fake.float(), inp.target.float(), inp.mask if pixel_weight is None else pixel_weight)
        loss = adv + self.lambda_fm * fm + self.lambda_l1 * l1
        return loss, {"g": adv.detach(), "fm": fm.detach(), "l1": l1.detach()}

    def preview_rows(self, batch, fake):
        return [("layout", batch["layout"]), *super().preview_rows(batch, fake)]


@dataclass(frozen=True, kw_only=True)
class DepthSpec(ConditionalSpec):
    """layout -> depth: target log-normalised depth (B, 1, H, W), L1 only where depth is known."""

    stage: ClassVar[str] = "depth"
    out_channels: ClassVar[int] = 1
    use_depth: ClassVar[bool] = False  # depth is the target, not part of the condition

    def __post_init__(self) -> None:
        if not self.max_depth or self.max_depth <= 0:
            raise ConfigError(f"the depth stage needs max_depth > 0 (metres), got {self.max_depth!r}")

    def inputs(self, batch, z):
        target, mask = normalize_depth(batch["depth"], self.max_depth)
        return StageInputs(one_hot(batch["layout"], self.num_classes), target, mask, z)

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return denormalize_depth(out[:, 0], self.max_depth)


@dataclass(frozen=True, kw_only=True)
class ImageSpec(ConditionalSpec):
    """layout (+ depth) -> RGB in [-1, 1].

    `composite_input`: the harmoniser of composite texturing (`stages.image.harmonise`): the
    condition ends with a composite image (3 channels in [-1, 1], batch key "composite") and the
    generator's output is a correction added to it, so an untrained harmoniser starts near the
    composite instead of from noise."""

    stage: ClassVar[str] = "image"
    out_channels: ClassVar[int] = 3
    use_depth: bool
    composite_input: bool = False
    # `stages.image.object_classes` as class indices (empty: unweighted losses) and their share of the weight
    object_ids: tuple[int, ...] = ()
    object_share: float = 0.5

    def __post_init__(self) -> None:
        if self.use_depth and (not self.max_depth or self.max_depth <= 0):
            raise ConfigError(f"the image stage conditioned on depth needs max_depth > 0, got {self.max_depth!r}")
        bad = [c for c in self.object_ids if not 0 <= c < self.num_classes]
        if bad:
            raise ConfigError(f"object class indices {bad} outside 0..{self.num_classes - 1}")
        if not 0 < self.object_share < 1:
            raise ConfigError(f"object_share must be in (0, 1), got {self.object_share!r}")

    def to_dict(self) -> dict[str, Any]:
        return dict(super().to_dict(), object_ids=list(self.object_ids))

    def loss_weight(self, critic_input: torch.Tensor) -> torch.Tensor | None:
        if not self.object_ids:
            return None
        return losses.object_weights(critic_input[:, : self.num_classes], self.object_ids, self.object_share)

    @property
    def cond_channels(self) -> int:
        return super().cond_channels + 3 * int(self.composite_input)

    def inputs(self, batch, z):
        cond = self.condition(one_hot(batch["layout"], self.num_classes), batch.get("depth"))
        if self.composite_input:
            cond = torch.cat([cond, batch["composite"].to(cond.dtype) * 2.0 - 1.0], 1)
        return StageInputs(cond, batch["image"] * 2.0 - 1.0, None, z)

    def generate(self, G: torch.nn.Module, inp: StageInputs) -> torch.Tensor:
        out = G(inp.cond, inp.z)
        if self.composite_input:
            out = (inp.cond[:, -3:].to(out.dtype) + out).clamp(-1.0, 1.0)
        return out

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return ((out.float() + 1.0) * 0.5).clamp(0, 1)

    def preview_rows(self, batch, fake):
        rows = super().preview_rows(batch, fake)
        return rows[:1] + [("composite", batch["composite"])] + rows[1:] if self.composite_input else rows


SPECS: dict[str, type[StageSpec]] = {"layout": LayoutSpec, "depth": DepthSpec, "image": ImageSpec}


# --------------------------------------------------------------------------------------------
# Making specs: from a recipe, from a checkpoint's record
# --------------------------------------------------------------------------------------------


def _typed(cls: type[StageSpec], values: dict[str, Any], where: str, error: type[Exception]) -> StageSpec:
    """`cls` from the fields it has in `values` (others ignored), each checked against its type;
    a missing or mistyped key, or an invalid combination, raises `error` naming it."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            raise error(f"{where}: missing key {f.name!r} (a {cls.stage} stage record needs "
                        f"{', '.join(x.name for x in dataclasses.fields(cls))})")
        kwargs[f.name] = _check_type(values[f.name], hints[f.name], f"{where}: key {f.name!r}", error)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise error(f"{where}: {e}") from e


def _check_type(value: Any, hint: Any, what: str, error: type[Exception]) -> Any:
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    if typing.get_origin(hint) is tuple and isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):  # tuple[int, ...]
        return tuple(value)
    kind = next((a for a in args if a is not type(None)), hint)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (bool, str) and isinstance(value, kind):
        return value
    raise error(f"{what} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def check_harmonise(cfg: Any) -> None:
    """`stages.image.harmonise` refines composites, so it needs `stages.image.arch=composite`."""
    if cfg.harmonise != "none" and cfg.arch != "composite":
        raise ConfigError(f"stages.image.harmonise={cfg.harmonise} refines composites: it needs "
                          f"stages.image.arch=composite, got arch={cfg.arch}")


def stage_spec(stage: str, recipe: Recipe, *, num_classes: int, use_depth: bool,
               max_depth: float | None, object_ids: Sequence[int] = ()) -> StageSpec:
    """The spec of `stage` from its recipe section + data sizes; `use_depth`: the image stage is
    conditioned on depth (other stages ignore it); `max_depth`: depth range (None: no depth);
    `object_ids`: `stages.image.object_classes` as class indices (`object_class_ids`)."""
    cfg = getattr(recipe.stages, check_stage(stage))
    values = dict(dataclasses.asdict(cfg), num_classes=num_classes, height=recipe.data.height,
                  width=recipe.data.width, max_depth=max_depth, use_depth=use_depth)
    if stage == "image":
        check_harmonise(cfg)
        values.update(composite_input=False, object_ids=tuple(object_ids))
        if cfg.arch == "flat":
            raise ConfigError("stages.image.arch=flat paints class colours: it has no network to build")
        if cfg.arch == "composite":  # the only network of composite texturing is its harmoniser
            if cfg.harmonise == "none":
                raise ConfigError("stages.image.arch=composite has no network to build unless "
                                  "stages.image.harmonise is spade or pix2pix")
            values.update(arch=cfg.harmonise, composite_input=True)
    return _typed(SPECS[stage], values, f"stages.{stage}", ConfigError)


def spec_from_dict(record: Any, *, where: str = "checkpoint arch record") -> StageSpec:
    """Inverse of `StageSpec.to_dict`; also reads the records older checkpoints stored (extra keys
    such as lr_g, betas or composite are ignored). Bad records raise `CheckpointError` naming the key."""
    if not isinstance(record, dict) or not record:
        raise CheckpointError(f"{where}: no stage architecture record (got {type(record).__name__}); "
                              "is this a generator stage checkpoint?")
    if "stage" not in record:
        raise CheckpointError(f"{where}: missing key 'stage' (one of {', '.join(STAGES)})")
    if record["stage"] not in SPECS:
        raise CheckpointError(f"{where}: unknown stage {record['stage']!r} under key 'stage'. "
                              f"Valid stages: {', '.join(STAGES)}")
    if record["stage"] == "image":  # records written before harmonisers or object weights existed
        record = {"composite_input": False, "object_ids": [], "object_share": 0.5, **record}
    if record["stage"] == "layout":  # records written before the presence term, the lazy or the partial
        # penalty, class conditioning, the presence loss's form or the local critic
        record = {"presence_weight": 0.0, "presence_loss": "l1", "gp_every": 1, "gp_fraction": 1.0,
                  "class_conditioning": False, "local_critic": False, **record}
    spec = _typed(SPECS[record["stage"]], record, where, CheckpointError)
    derived = spec.to_dict()
    for key in ("use_depth", "cond_channels", "out_channels"):
        if key in record and key in derived and record[key] != derived[key]:
            raise CheckpointError(f"{where}: key {key!r} is {record[key]!r} but the record's other "
                                  f"fields make {derived[key]!r}")
    return spec
