"""Sampling pipeline: shapes and dtypes, per-seed determinism independent of the batch, EMA
weights, missing stages named with the command that trains them, class and arch-record checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from synthdata.core.checkpoint import portable_checkpoint, save_atomic
from synthdata.core.contract import CheckpointError, ClassInfo
from synthdata.core.palette import default_palette
from synthdata.core.recipe_loading import load_recipe, recipe_to_dict
from synthdata.data.readers.base import READERS
from synthdata.generation import stages
from synthdata.generation.sampler import load_pipeline

TINY = [
    "data.height=32", "data.width=64", "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=16",
    "stages.depth.ngf=8", "stages.depth.z_dim=8", "stages.image.ngf=8", "stages.image.z_dim=8",
]
CLASSES = ClassInfo(("sky", "road", "car", "tree"), default_palette(4))
MAX_DEPTH = 80.0


def write_run(run_dir: Path, names: tuple[str, ...] = stages.STAGES, classes: ClassInfo = CLASSES,
              use_depth: bool = True, overrides: tuple[str, ...] = ()) -> Path:
    """Checkpoints as train.py writes them, for freshly initialised generators whose "ema"
    differs from "model" (so the use_ema switch is observable)."""
    recipe = load_recipe("toy", TINY + list(overrides))
    for name in names:
        torch.manual_seed(stages.STAGE_IDS[name])
        spec = stages.stage_spec(name, recipe, num_classes=classes.num_classes, use_depth=use_depth,
                                 max_depth=None if name == "layout" else MAX_DEPTH)
        G = spec.build_generator()
        ema = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in G.state_dict().items()}
        ckpt = portable_checkpoint(kind=f"generator-{name}", model=G.state_dict(), ema=ema, step=1,
                                   recipe=recipe_to_dict(recipe), classes=classes, arch=spec.to_dict())
        save_atomic(ckpt, run_dir / "checkpoints" / name / "latest.pt")
    return run_dir


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return load_pipeline(write_run(tmp_path_factory.mktemp("run")), device="cpu")


def test_sample_shapes_dtypes_and_ranges(pipe):
    out = pipe.sample([3, 1, 4])
    assert pipe.has_depth and (pipe.height, pipe.width) == (32, 64) and pipe.classes.same_as(CLASSES)
    assert pipe.depth_scale == pytest.approx(0.001)
    assert out["layout"].shape == (3, 32, 64) and out["layout"].dtype == torch.int64
    assert 0 <= int(out["layout"].min()) and int(out["layout"].max()) < CLASSES.num_classes
    assert out["depth"].shape == (3, 32, 64) and out["depth"].dtype == torch.float32
    assert 0 <= float(out["depth"].min()) and float(out["depth"].max()) <= MAX_DEPTH * (1 + 1e-5)
    assert out["image"].shape == (3, 3, 32, 64) and out["image"].dtype == torch.float32
    assert 0 <= float(out["image"].min()) and float(out["image"].max()) <= 1


def test_samples_depend_only_on_their_seed(pipe):
    together = pipe.sample([5, 6, 7])
    alone = pipe.sample([6])
    reordered = pipe.sample([7, 5])
    for key in ("depth", "image"):
        torch.testing.assert_close(together[key][1:2], alone[key], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(together[key][[2, 0]], reordered[key], atol=1e-5, rtol=1e-5)
    assert torch.equal(together["layout"][1:2], alone["layout"])
    assert not torch.allclose(together["image"][0], together["image"][2])  # seeds matter


def test_from_layouts_uses_the_given_layouts(pipe):
    layouts = torch.randint(0, CLASSES.num_classes, (2, 32, 64))
    out = pipe.from_layouts(layouts, [0, 1])
    assert torch.equal(out["layout"], layouts)
    with pytest.raises(ValueError, match="the generators make"):
        pipe.from_layouts(torch.zeros(2, 16, 16, dtype=torch.long), [0, 1])


def test_ema_weights_are_the_default(pipe, tmp_path):
    plain = load_pipeline(write_run(tmp_path), device="cpu", use_ema=False)
    assert not torch.allclose(plain.sample([0])["image"], pipe.sample([0])["image"])


def test_autocast_sampling_runs(pipe):
    pipe.autocast = True
    try:
        out = pipe.sample([0, 1])
    finally:
        pipe.autocast = False
    assert out["image"].dtype == torch.float32 and torch.isfinite(out["image"]).all()


def test_missing_stages_name_the_command(tmp_path):
    with pytest.raises(CheckpointError, match="stage=layout"):
        load_pipeline(tmp_path / "empty")
    p = load_pipeline(write_run(tmp_path / "layout-only", names=("layout",)))
    assert p.layouts_from_seeds([0, 1]).shape == (2, 32, 64)
    with pytest.raises(CheckpointError, match=r"synthdata train recipe=toy stage=image"):
        p.sample([0])
    p = load_pipeline(write_run(tmp_path / "no-depth", names=("layout", "image")))
    with pytest.raises(CheckpointError, match="stage=depth"):
        p.sample([0])


def test_bad_arch_records_name_the_checkpoint_and_key(tmp_path):
    run = write_run(tmp_path)
    path = run / "checkpoints" / "depth" / "latest.pt"
    ckpt = torch.load(path, weights_only=True)
    save_atomic(dict(ckpt, arch={k: v for k, v in ckpt["arch"].items() if k != "max_depth"}), path)
    with pytest.raises(CheckpointError, match=r"depth/latest.pt \(arch\): missing key 'max_depth'"):
        load_pipeline(run)
    save_atomic(torch.load(run / "checkpoints" / "image" / "latest.pt", weights_only=True), path)
    with pytest.raises(CheckpointError, match="is not a depth stage checkpoint"):
        load_pipeline(run)


def test_dataset_without_depth_samples_layout_then_image(tmp_path):
    run = write_run(tmp_path, names=("layout", "image"), use_depth=False,
                    overrides=("data.has_depth=false", "stages.image.use_depth=false"))
    out = load_pipeline(run).sample([0, 1])
    assert out["depth"] is None and out["image"].shape == (2, 3, 32, 64)


def test_stages_for_different_classes_are_refused(tmp_path):
    write_run(tmp_path, names=("layout",))
    write_run(tmp_path, names=("depth", "image"), classes=ClassInfo(("a", "b", "c", "d"), default_palette(4)))
    with pytest.raises(CheckpointError, match="trained for classes"):
        load_pipeline(tmp_path)


def test_pipeline_from_a_trained_toy_run(tmp_path):
    """The real chain: train each stage for a step on the toy world, then sample."""
    import synthdata.data.readers  # noqa: F401  (registers the readers)
    from synthdata.generation.training import train_stage

    if "toy" not in READERS:
        pytest.skip("the toy world reader is not available")
    recipe = load_recipe("toy", TINY + ["stages.layout.ndf=8", "stages.depth.ndf=8", "stages.image.ndf=8",
                                        "data.split_sizes={train: 4, val: 2, test: 2}", "train.batch_size=2",
                                        "train.steps=1", "train.mixed_precision=no"])
    for name in stages.STAGES:
        train_stage(recipe, stage=name, run_dir=tmp_path)
    pipe = load_pipeline(tmp_path)
    out = pipe.sample([0, 1])
    assert out["image"].shape == (2, 3, 32, 64) and np.isfinite(out["depth"].numpy()).all()
    assert pipe.classes.same_as(synthdata.data.readers.make_reader(recipe.data, "train").classes)
