"""Latent tools: lerp/slerp end points and norms, chain walks that end at the seed samples,
layout inversion of generated layouts, and tools/interpolate.py's strip PNG and GIF."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synthdata.core.checkpoint import portable_checkpoint, save_atomic
from synthdata.core.recipe_loading import load_recipe, recipe_to_dict, recipe_to_yaml
from synthdata.data.readers.toy import toy_classes
from synthdata.generation import stages
from synthdata.generation.latent import (
    chain_codes,
    interpolate,
    interpolate_chain,
    invert_layouts,
    lerp,
    pixel_accuracy,
    slerp,
)
from synthdata.generation.sampler import load_pipeline

TOOL = Path(__file__).resolve().parents[2] / "tools" / "interpolate.py"
TINY = ["data.height=32", "data.width=64", "data.split_sizes={train: 2, val: 1, test: 1}",
        "stages.layout.ngf=8", "stages.layout.z_dim=16", "stages.layout.upsample=transposed",
        "stages.depth.ngf=8", "stages.depth.z_dim=8", "stages.image.ngf=8", "stages.image.z_dim=8"]


def calibrate(G: torch.nn.Module, z_dim: int, logit_scale: float = 50.0) -> None:
    """Stand-in for brief training: batch-norm statistics from real forward passes (fresh ones
    leave activations tiny in eval mode) and confident logits, so the layout depends on z."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # plain average over the passes
        G.train()
        sets = (torch.ones(64, G.to_logits.out_channels),) if G.class_conditioning else ()
        for _ in range(4):
            G(torch.randn(64, z_dim), *sets)
        G.eval()
        G.to_logits.weight.mul_(logit_scale)


def write_run(run: Path, use_depth: bool = True, overrides: tuple[str, ...] = ()) -> Path:
    """A run dir with the stages as train.py saves them (toy classes, so real toy layouts can be
    inverted); without depth: layout and image stages only."""
    extra = [] if use_depth else ["data.has_depth=false", "stages.image.use_depth=false"]
    recipe = load_recipe("toy", TINY + extra + list(overrides))
    classes = toy_classes()
    for name in stages.STAGES if use_depth else ("layout", "image"):
        torch.manual_seed(stages.STAGE_IDS[name])
        spec = stages.stage_spec(name, recipe, num_classes=classes.num_classes, use_depth=use_depth,
                                 max_depth=None if name == "layout" else 80.0)
        G = spec.build_generator()
        if name == "layout":
            calibrate(G, spec.z_dim)
        ckpt = portable_checkpoint(kind=f"generator-{name}", model=G.state_dict(), ema=G.state_dict(), step=1,
                                   recipe=recipe_to_dict(recipe), classes=classes, arch=spec.to_dict())
        save_atomic(ckpt, run / "checkpoints" / name / "latest.pt")
    (run / "recipe.yaml").write_text(recipe_to_yaml(recipe))  # the tool reads the run's recipe
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def pipe(run_dir):
    return load_pipeline(run_dir, device="cpu")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("interpolate_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("fn", [lerp, slerp])
def test_interpolation_end_points_are_the_inputs(fn):
    a, b = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)).unbind()
    path = fn(a, b, [0.0, 0.5, 1.0])
    assert path.shape == (3, 16)
    torch.testing.assert_close(path[0], a, atol=1e-5, rtol=0)
    torch.testing.assert_close(path[2], b, atol=1e-5, rtol=0)
    torch.testing.assert_close(fn(a, b, 0.5), path[1])  # a number gives one code
    batch = fn(torch.stack([a, b]), torch.stack([b, a]), [0.0, 1.0])  # (T, B, D)
    assert batch.shape == (2, 2, 16) and torch.allclose(batch[1, 0], b, atol=1e-5)


def test_slerp_keeps_unit_norm_where_lerp_cuts_the_corner():
    a, b = torch.nn.functional.normalize(torch.randn(2, 32, generator=torch.Generator().manual_seed(1)), dim=1)
    t = torch.linspace(0, 1, 9)
    torch.testing.assert_close(slerp(a, b, t).norm(dim=1), torch.ones(9), atol=1e-5, rtol=0)
    assert float(lerp(a, b, 0.5).norm()) < 0.95
    mid = slerp(a, b, 0.5)  # halfway in angle
    assert float(mid @ a) == pytest.approx(float(mid @ b), abs=1e-5)


def test_slerp_of_parallel_codes_falls_back_to_lerp():
    a = torch.randn(8)
    out = slerp(a, 2 * a, [0.0, 0.25, 1.0])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, lerp(a, 2 * a, [0.0, 0.25, 1.0]))


def test_interpolate_checks_mode_and_steps():
    a, b = torch.zeros(4), torch.ones(4)
    assert interpolate(a, b, 5, "lerp").shape == (5, 4)
    with pytest.raises(ValueError, match="Valid modes: lerp, slerp"):
        interpolate(a, b, 5, "cubic")
    with pytest.raises(ValueError, match="at least 2"):
        interpolate(a, b, 1)


def test_pixel_accuracy_skips_unlabelled_pixels():
    target = torch.tensor([[[0, 1], [255, 255]]])
    assert pixel_accuracy(torch.tensor([[[0, 0], [1, 1]]]), target).tolist() == [0.5]


def test_chain_walk_ends_are_the_seed_samples(pipe):
    codes = chain_codes(pipe, [3, 17])
    assert set(codes) == {"layout", "depth", "image"}
    assert torch.equal(pipe.layouts_from_z(codes["layout"]), pipe.layouts_from_seeds([3, 17]))
    frames = interpolate_chain(pipe, {k: v[0] for k, v in codes.items()}, {k: v[1] for k, v in codes.items()},
                               steps=5, mode="slerp")
    ends = pipe.sample([3, 17])
    assert frames["image"].shape == (5, 3, 32, 64) and frames["depth"].shape == (5, 32, 64)
    assert torch.equal(frames["layout"][[0, -1]], ends["layout"])
    for key in ("depth", "image"):
        torch.testing.assert_close(frames[key][[0, -1]], ends[key], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(frames["image"][2], frames["image"][0])  # the middle is somewhere else


def test_inversion_recovers_a_generated_layout(pipe):
    G, spec = pipe.generator("layout")
    z_true = torch.randn(1, spec.z_dim, generator=torch.Generator().manual_seed(5))
    target = pipe.layouts_from_z(z_true)
    share = torch.bincount(target.flatten(), minlength=pipe.classes.num_classes).float() / target.numel()
    assert int((share > 0.05).sum()) >= 3  # a layout with structure, not one flat class
    baseline = pixel_accuracy(pipe.layouts_from_z(torch.randn(1, spec.z_dim)), target)
    # lr 0.05: a random-weight generator's landscape is rougher than a trained one's (0.01 there)
    inv = invert_layouts(G, target, z_dim=spec.z_dim, starts=8, steps=100, lr=0.05, progress=False)
    assert inv.z.shape == (1, spec.z_dim) and inv.loss.shape == (1,)
    assert float(inv.accuracy[0]) >= 0.9 > float(baseline[0])
    assert inv.accuracy.tolist() == pixel_accuracy(pipe.layouts_from_z(inv.z), target).tolist()
    assert not any(p.requires_grad or p.grad is not None for p in G.parameters()) and not G.training


def test_tool_writes_strip_and_gif(tool, run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = tool.main([f"run_dir={run_dir}", "seeds=3,17", "steps=4", "invert=recipe:train:0,recipe:train:1",
                    "starts=2", "invert_steps=3", f"out={out}"])
    assert rc == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "seeds 3->17: 4 frames" in summary and "pixel accuracy" in summary and str(out) in summary
    for stem in ("seeds-3-17-slerp", "invert-train0-train1-slerp"):
        strip = np.asarray(Image.open(out / f"{stem}.png"))
        assert strip.shape == (3 * 32 + 2 * 2, 4 * 64 + 3 * 2, 3)  # layout, depth, image rows
        with Image.open(out / f"{stem}.gif") as gif:
            assert gif.n_frames == 4 and gif.size == (3 * 64 + 2 * 2, 32 + 3)
    assert np.asarray(Image.open(out / "inversion.png")).shape == (2 * 32 + 2, 2 * 64 + 2, 3)


def test_tool_walks_a_path_through_several_seeds(tool, run_dir, tmp_path):
    assert tool.main([f"run_dir={run_dir}", "seeds=1,2,3", "steps=3", "mode=lerp", f"out={tmp_path}"]) == 0
    with Image.open(tmp_path / "seeds-1-2-3-lerp.gif") as gif:
        assert gif.n_frames == 5  # 3 + 3 frames, the shared middle once


def test_tool_on_a_run_without_depth_leaves_depth_out(tool, tmp_path):
    run = write_run(tmp_path / "run", use_depth=False)
    assert tool.main([f"run_dir={run}", "seeds=0,1", "steps=3", f"out={tmp_path}"]) == 0
    assert np.asarray(Image.open(tmp_path / "seeds-0-1-slerp.png")).shape == (2 * 32 + 2, 3 * 64 + 2 * 2, 3)
    with Image.open(tmp_path / "seeds-0-1-slerp.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (2 * 64 + 2, 32 + 3)  # image | layout


@pytest.mark.parametrize("arg, message", [("seeds=3", "at least two seeds"), ("mode=cubic", "Valid modes"),
                                          ("invert=train,val", "recipe:SPLIT:INDEX"),
                                          ("invert=recipe:train:0,recipe:train:9", "out of range")])
def test_tool_rejects_bad_arguments(tool, run_dir, tmp_path, capsys, arg, message):
    assert tool.main([f"run_dir={run_dir}", arg, f"out={tmp_path}", "starts=1", "invert_steps=0"]) == 2
    assert message in capsys.readouterr().err


def test_walks_and_inversion_refuse_a_class_conditioned_layout_generator(tool, tmp_path, capsys):
    run = write_run(tmp_path / "run", overrides=("stages.layout.class_conditioning=true",))
    assert tool.main([f"run_dir={run}", "seeds=0,1", f"out={tmp_path}"]) == 2
    assert "class-conditioned" in capsys.readouterr().err
    G, spec = load_pipeline(run, device="cpu").generator("layout")
    with pytest.raises(ValueError, match="class-conditioned"):
        invert_layouts(G, torch.zeros(1, 32, 64, dtype=torch.long), z_dim=spec.z_dim, starts=1, steps=0)
