"""Stage specs: made from a recipe, stored in checkpoints as plain dicts (weights_only loads),
rebuilt into the same networks; records of older checkpoints still load; bad records are named."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from synthdata import models
from synthdata.core.contract import CheckpointError, ConfigError
from synthdata.core.recipe_loading import available_recipes, load_recipe
from synthdata.generation import stages

TINY = ["data.height=32", "data.width=64", "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=8",
        "stages.depth.ngf=8", "stages.depth.ndf=8", "stages.depth.z_dim=4",
        "stages.image.ngf=8", "stages.image.ndf=8", "stages.image.z_dim=4"]
C = 3


def make(stage: str, *overrides: str, use_depth: bool = True) -> stages.StageSpec:
    recipe = load_recipe("toy", TINY + list(overrides))
    return stages.stage_spec(stage, recipe, num_classes=C, use_depth=use_depth,
                             max_depth=None if stage == "layout" else 50.0)


def legacy_record(stage: str, use_depth: bool = True) -> dict:
    """The "arch" dict checkpoints written before the specs stored (the old `stage_arch`)."""
    recipe = load_recipe("toy", TINY)
    record = dict(dataclasses.asdict(getattr(recipe.stages, stage)), stage=stage, num_classes=C,
                  height=32, width=64, max_depth=None if stage == "layout" else 50.0)
    if stage == "depth":
        record.update(cond_channels=C, out_channels=1, use_depth=False)
    elif stage == "image":
        record.update(cond_channels=C + int(use_depth), out_channels=3, use_depth=use_depth)
    return record


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    layout = torch.randint(0, C, (2, 32, 64), generator=g)
    layout[:, 0, 0] = 255  # an ignore pixel
    depth = torch.rand(2, 1, 32, 64, generator=g) * 40
    depth[:, :, :4] = 0  # unknown depth
    return {"layout": layout, "depth": depth, "image": torch.rand(2, 3, 32, 64, generator=g)}


@pytest.mark.parametrize("stage", stages.STAGES)
def test_spec_round_trips_through_a_weights_only_checkpoint(stage):
    spec = make(stage)
    assert isinstance(spec, stages.SPECS[stage]) and spec.stage == stage
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.height = 64  # type: ignore[misc]
    torch.manual_seed(0)
    G, D = spec.build_generator(), spec.build_discriminator()
    buffer = io.BytesIO()
    torch.save({"arch": spec.to_dict(), "model": G.state_dict(), "critic": D.state_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    again = stages.spec_from_dict(ckpt["arch"])
    assert again == spec and again.to_dict() == spec.to_dict()
    G2, D2 = again.build_generator().eval(), again.build_discriminator().eval()
    G2.load_state_dict(ckpt["model"])
    D2.load_state_dict(ckpt["critic"])
    assert type(G2) is type(G) and type(D2) is type(D)
    G.eval()
    inp = spec.inputs(batch(), spec.noise(2, torch.Generator().manual_seed(1), "cpu"))
    with torch.no_grad():
        torch.testing.assert_close(again.generate(G2, inp), spec.generate(G, inp), rtol=0, atol=0)


@pytest.mark.parametrize(("stage", "use_depth"), [("layout", True), ("depth", True), ("image", True), ("image", False)])
def test_records_of_older_checkpoints_still_load(stage, use_depth):
    record = legacy_record(stage, use_depth)
    spec = stages.spec_from_dict(record)
    assert spec == make(stage, use_depth=use_depth)
    # what the spec writes is what the old record said, under the same keys (lr/betas/composite dropped),
    # plus keys added since at the value old records meant (no harmoniser)
    written = spec.to_dict()
    assert written.pop("composite_input", False) is False
    assert written.pop("object_ids", []) == [] and written.pop("object_share", 0.5) == 0.5
    assert all(record[k] == v for k, v in written.items())
    assert spec.build_generator().state_dict().keys() == make(stage, use_depth=use_depth).build_generator().state_dict().keys()


def test_inputs_noise_and_decoding_per_stage():
    b = batch()
    layout, depth, image = make("layout"), make("depth"), make("image")
    inp = layout.inputs(b, None)
    assert inp.cond is None and inp.target.shape == (2, C, 32, 64) and inp.target[:, :, 0, 0].sum() == 0
    assert layout.decode(inp.target).shape == (2, 32, 64)
    inp = depth.inputs(b, None)
    assert inp.cond.shape == (2, C, 32, 64) and inp.mask[:, :, :4].sum() == 0 and inp.mask[:, :, 4:].all()
    torch.testing.assert_close(depth.decode(inp.target)[:, 4:], b["depth"][:, 0, 4:], rtol=1e-4, atol=1e-4)
    inp = image.inputs(b, None)
    assert image.use_depth and image.cond_channels == C + 1 and inp.cond.shape == (2, C + 1, 32, 64)
    torch.testing.assert_close(image.decode(inp.target), b["image"])
    assert make("image", use_depth=False).inputs(b, None).cond.shape == (2, C, 32, 64)
    assert layout.noise(2, torch.Generator().manual_seed(0), "cpu").shape == (2, 8)
    assert make("depth", "stages.depth.z_dim=0").noise(2, None, "cpu") is None


def test_bad_records_name_the_key():
    with pytest.raises(CheckpointError, match="unknown stage 'colour' under key 'stage'"):
        stages.spec_from_dict(dict(legacy_record("image"), stage="colour"))
    record = legacy_record("depth")
    del record["num_classes"]
    with pytest.raises(CheckpointError, match="ckpt.pt: missing key 'num_classes'"):
        stages.spec_from_dict(record, where="ckpt.pt")
    with pytest.raises(CheckpointError, match="missing key 'stage'"):
        stages.spec_from_dict({k: v for k, v in legacy_record("layout").items() if k != "stage"})
    with pytest.raises(CheckpointError, match="key 'height' must be int, got '32'"):
        stages.spec_from_dict(dict(legacy_record("layout"), height="32"))
    with pytest.raises(CheckpointError, match="key 'cond_channels' is 5"):
        stages.spec_from_dict(dict(legacy_record("image"), cond_channels=5))
    with pytest.raises(CheckpointError, match="stages.layout.loss"):
        stages.spec_from_dict(dict(legacy_record("layout"), loss="lsgan"))
    with pytest.raises(CheckpointError, match="max_depth"):
        stages.spec_from_dict(dict(legacy_record("depth"), max_depth=None))
    for bad in ({}, None, [1, 2]):
        with pytest.raises(CheckpointError, match="no stage architecture record"):
            stages.spec_from_dict(bad)


def test_bad_recipes_raise_config_errors():
    recipe = load_recipe("toy", TINY)
    with pytest.raises(ConfigError, match="Valid stages: layout, depth, image"):
        stages.stage_spec("colour", recipe, num_classes=C, use_depth=False, max_depth=None)
    with pytest.raises(ConfigError, match="stages.depth: the depth stage needs max_depth"):
        stages.stage_spec("depth", recipe, num_classes=C, use_depth=False, max_depth=None)
    with pytest.raises(ConfigError, match="stages.image: the image stage conditioned on depth needs max_depth"):
        stages.stage_spec("image", recipe, num_classes=C, use_depth=True, max_depth=None)
    spec = make("image", "data.height=33")
    with pytest.raises(ConfigError, match=r"stages.image \(arch='spade', 33x64\)"):
        spec.build_generator()


@pytest.mark.parametrize("name", available_recipes())
def test_every_shipped_recipe_builds_its_generators_at_its_own_size(name):
    """`synthdata train recipe=NAME` must not stop on the recipe's own data.height/width (CamVid's
    180x240 once did: the layout GAN only reaches sizes that double a small grid). Narrow
    networks: the sizes they reach do not depend on the channel counts."""
    recipe = load_recipe(name, [f"stages.{s}.{k}=4" for s in ("layout", "depth", "image") for k in ("ngf", "ndf")])
    chain = ["layout", "depth", "image"] if recipe.data.has_depth else ["layout", "image"]
    if recipe.stages.image.arch == "composite":  # real pixels (recipe folder): no image network to build
        chain.remove("image")
    for stage in chain:
        spec = stages.stage_spec(stage, recipe, num_classes=5, use_depth=recipe.data.has_depth,
                                 max_depth=10.0 if recipe.data.has_depth else None)
        spec.build_generator()
        spec.build_discriminator()


def test_layout_presence_term_adds_to_the_generator_loss_and_old_records_have_none():
    plain, weighted = make("layout"), make("layout", "stages.layout.presence_weight=10")
    torch.manual_seed(0)
    G, D = plain.build_generator(), plain.build_discriminator()
    inp = plain.inputs(batch(), plain.noise(2, torch.Generator().manual_seed(1), "cpu"))
    fake = plain.generate(G, inp)
    torch.manual_seed(2)  # the critic's Gumbel draw
    base, logs = plain.g_loss(D, inp, fake, None)
    torch.manual_seed(2)
    total, logs_w = weighted.g_loss(D, inp, fake, None)
    assert "presence" not in logs and logs_w["presence"] > 0
    torch.testing.assert_close(total, base + 10 * logs_w["presence"])
    record = {k: v for k, v in plain.to_dict().items() if k != "presence_weight"}  # a checkpoint from before
    assert stages.spec_from_dict(record).presence_weight == 0.0
    assert stages.spec_from_dict(record).presence_loss == "l1"


def test_class_conditioned_layout_stage_asks_each_fake_for_its_real_class_set():
    spec = make("layout", "stages.layout.class_conditioning=true", "stages.layout.presence_weight=10")
    torch.manual_seed(0)
    G, D = spec.build_generator(), spec.build_discriminator()
    b = batch()
    b["layout"][1][b["layout"][1] == 2] = 0  # the second layout lacks class 2
    inp = spec.inputs(b, spec.noise(2, torch.Generator().manual_seed(1), "cpu"))
    torch.testing.assert_close(inp.cond, torch.tensor([[1.0, 1, 1], [1, 1, 0]]))
    with pytest.raises(ValueError, match="class sets"):
        G(inp.z)
    fake = spec.generate(G, inp)
    _, logs = spec.g_loss(D, inp, fake, None)
    torch.testing.assert_close(logs["presence"], models.losses.class_set_loss(fake, inp.cond))
    bce = make("layout", "stages.layout.class_conditioning=true", "stages.layout.presence_weight=10",
               "stages.layout.presence_loss=bce")
    torch.testing.assert_close(bce.g_loss(D, inp, fake, None)[1]["presence"],
                               models.losses.class_set_loss(fake, inp.cond, form="bce"))
    real_in, fake_in = spec.critic_inputs(inp, inp.target, fake, None)
    assert real_in.shape[1] == fake_in.shape[1] == 2 * C  # layout + the set as constant planes
    torch.testing.assert_close(real_in[:, C:], fake_in[:, C:])
    assert spec.d_loss(D, D, inp, fake, None, step=0)[1]["gp"] > 0
    # sampling draws remembered real sets, by seed
    with pytest.raises(ValueError, match="never trained"):
        spec.sampling_condition(G, [0], "cpu")
    spec.observe_real(G, inp)
    draws = spec.sampling_condition(G, list(range(20)), "cpu")
    assert {tuple(r) for r in draws.tolist()} == {(1.0, 1.0, 1.0), (1.0, 1.0, 0.0)}
    torch.testing.assert_close(draws, spec.sampling_condition(G, list(range(20)), "cpu"))
    assert int(G.sets_seen) == 2 and int(G.state_dict()["sets_seen"]) == 2
    record = {k: v for k, v in make("layout").to_dict().items() if k != "class_conditioning"}  # from before
    assert stages.spec_from_dict(record).class_conditioning is False
    assert "set_memory" not in make("layout").build_generator().state_dict()
    with pytest.raises(ConfigError, match="dcgan only"):
        make("layout", "stages.layout.class_conditioning=true", "stages.layout.arch=style").build_generator()


def test_remembered_class_sets_wrap_around_the_ring():
    G = make("layout", "stages.layout.class_conditioning=true").build_generator()
    G.SET_MEMORY = 3  # an instance override: the ring's size is the buffer's
    G.set_memory = G.set_memory[:3].clone()
    G.remember_class_sets(torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    G.remember_class_sets(torch.tensor([[0.0, 0, 1], [1, 1, 1]]))
    assert int(G.sets_seen) == 4
    assert G.set_memory.tolist() == [[1, 1, 1], [0, 1, 0], [0, 0, 1]]


def critic_case(spec: stages.StageSpec):
    """A layout critic, inputs and a fixed fake; `d_loss(spec, step)` reseeds the Gumbel draw and
    the penalty's interpolation so two specs see the same draws."""
    torch.manual_seed(0)
    G, D = spec.build_generator(), spec.build_discriminator()
    inp = spec.inputs(batch(), spec.noise(2, torch.Generator().manual_seed(1), "cpu"))
    fake = spec.generate(G, inp).detach()

    def d_loss(other: stages.StageSpec, step: int = 0):
        torch.manual_seed(2)
        return other.d_loss(D, D, inp, fake, None, step=step)

    return D, inp, fake, d_loss


def test_lazy_gradient_penalty_runs_every_nth_critic_step_weighted_n_times_and_old_records_have_none():
    every, lazy = make("layout"), make("layout", "stages.layout.gp_every=4")
    _, _, _, d_loss = critic_case(every)

    for step in range(8):
        full, logs = d_loss(every, step)
        loss, logs_lazy = d_loss(lazy, step)
        torch.testing.assert_close(logs_lazy["d"], logs["d"])
        if step % 4 == 3:  # the step before a log line that is a multiple of 4 carries the penalty
            torch.testing.assert_close(logs_lazy["gp"], logs["gp"])
            torch.testing.assert_close(loss, logs["d"] + 10 * 4 * logs["gp"])
        else:
            assert float(logs_lazy["gp"]) == 0.0
            torch.testing.assert_close(loss, logs["d"])
        torch.testing.assert_close(full, logs["d"] + 10 * logs["gp"])
    record = {k: v for k, v in every.to_dict().items() if k != "gp_every"}  # a checkpoint from before
    assert stages.spec_from_dict(record).gp_every == 1
    with pytest.raises(ConfigError, match="gp_every"):
        make("layout", "stages.layout.gp_every=0")


def test_local_critic_is_recorded_and_old_records_have_none():
    plain, local = make("layout"), make("layout", "stages.layout.local_critic=true")
    assert local.build_discriminator().local is not None and plain.build_discriminator().local is None
    assert stages.spec_from_dict(local.to_dict()).local_critic is True
    record = {k: v for k, v in plain.to_dict().items() if k != "local_critic"}  # a checkpoint from before
    assert stages.spec_from_dict(record).local_critic is False
    D, _, _, d_loss = critic_case(local)
    loss, logs = d_loss(local)
    loss.backward()  # the critic loss, penalty included, trains the local critic too
    assert logs["gp"] > 0 and all(p.grad is not None for p in D.local.parameters())
    assert D.local[0].weight.grad.abs().sum() > 0  # (a score's bias cancels between real and fake)


def test_gradient_penalty_on_a_fraction_of_the_batch_and_old_records_use_all_of_it():
    from synthdata.models import losses

    whole, half = make("layout"), make("layout", "stages.layout.gp_fraction=0.5")
    D, inp, fake, d_loss = critic_case(whole)

    loss, logs = d_loss(half)
    _, logs_whole = d_loss(whole)
    torch.testing.assert_close(logs["d"], logs_whole["d"])
    torch.manual_seed(2)
    fake_in = half.fake_for_critic(fake)  # the same Gumbel draw, then the penalty's on the first sample
    expected = losses.gradient_penalty(D, inp.target[:1].float(), fake_in[:1].float())
    torch.testing.assert_close(logs["gp"], expected)
    torch.testing.assert_close(loss, logs["d"] + 10 * expected)
    assert not torch.allclose(logs["gp"], logs_whole["gp"])
    record = {k: v for k, v in whole.to_dict().items() if k != "gp_fraction"}  # a checkpoint from before
    assert stages.spec_from_dict(record).gp_fraction == 1.0
    with pytest.raises(ConfigError, match="gp_fraction"):
        make("layout", "stages.layout.gp_fraction=0")


def test_object_weights_give_the_named_classes_their_share_of_every_image_loss():
    b = batch()
    onehot = torch.nn.functional.one_hot(b["layout"].clamp_max(C - 1), C).permute(0, 3, 1, 2).float()
    onehot[:, :, 0, 0] = 0  # the ignore pixel
    inside = onehot[:, 1:2]
    p = float(inside.mean())
    plain = make("image")
    recipe = load_recipe("toy", TINY + ["stages.image.object_share=0.8"])
    weighted = stages.stage_spec("image", recipe, num_classes=C, use_depth=True, max_depth=50.0, object_ids=[1])
    fair = dataclasses.replace(weighted, object_share=p)  # the share the class has anyway: no reweighting
    torch.manual_seed(0)
    G, D = plain.build_generator(), plain.build_discriminator()
    inp = plain.inputs(b, plain.noise(2, torch.Generator().manual_seed(1), "cpu"))
    fake = plain.generate(G, inp).detach()
    base, logs = plain.g_loss(D, inp, fake, None)
    same, _ = fair.g_loss(D, inp, fake, None)
    torch.testing.assert_close(same, base, rtol=1e-4, atol=1e-5)  # weights 1 up to float rounding of the share
    torch.testing.assert_close(fair.d_loss(D, D, inp, fake, None, step=0)[0], plain.d_loss(D, D, inp, fake, None, step=0)[0],
                               rtol=1e-4, atol=1e-5)
    _, logs_w = weighted.g_loss(D, inp, fake, None)
    diff = (fake - inp.target).abs().mean(1, keepdim=True)
    expected = 0.8 * diff[inside.bool()].mean() + 0.2 * diff[~inside.bool()].mean()
    torch.testing.assert_close(logs_w["l1"], expected)
    assert not torch.allclose(logs_w["g"], logs["g"]) and not torch.allclose(logs_w["fm"], logs["fm"])
    assert not torch.allclose(weighted.d_loss(D, D, inp, fake, None, step=0)[0], plain.d_loss(D, D, inp, fake, None, step=0)[0])
    # the record round-trips; records from before object weights load unweighted
    assert stages.spec_from_dict(weighted.to_dict()) == weighted
    old = {k: v for k, v in plain.to_dict().items() if k not in ("object_ids", "object_share")}
    assert stages.spec_from_dict(old) == plain and plain.object_ids == ()
    with pytest.raises(ConfigError, match="outside 0..2"):
        stages.stage_spec("image", recipe, num_classes=C, use_depth=True, max_depth=50.0, object_ids=[3])
