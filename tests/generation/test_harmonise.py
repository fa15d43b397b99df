"""`stages.image.harmonise`: a conditional generator trained to turn composites into real images
(SIMS-style). Its training composites never use the target image's own segments; production
passes every composite through it; a plain image stage refuses a harmoniser checkpoint, and a
harmonise recipe without one stops with a message naming the folder."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from synthdata.core.contract import CheckpointError, ConfigError
from synthdata.core.recipe import CompositeConfig, DataConfig, Recipe
from synthdata.data.readers import make_reader
from synthdata.generation import stages
from synthdata.generation.sampler import load_pipeline
from synthdata.texturing.bank_building import build_bank
from synthdata.texturing.composite import composite
from synthdata.texturing.pipeline import LeaveOneOutComposites, PerturbedImages, harmoniser_inputs

H, W = 32, 64
SPLITS = "data.split_sizes={train: 16, val: 4, test: 2}"
HARMONISE = [
    "recipe=toy", f"data.height={H}", f"data.width={W}", SPLITS, "stages.image.arch=composite",
    "stages.image.harmonise=pix2pix", "stages.image.ngf=8", "stages.image.ndf=8",
    "stages.image.num_discriminators=1", "train.batch_size=4", "train.steps=2", "train.checkpoint_every=2",
    "train.sample_every=2", "train.mixed_precision='no'",
]
PRODUCE = ["produce.layouts=real", "produce.num_samples=6", "produce.shard_size=6", "produce.batch_size=3",
           "produce.encode_workers=1", "produce.mixed_precision='no'"]


def images_and_meta(out: Path) -> list[tuple[np.ndarray, dict]]:
    urls = [str(p) for p in sorted(out.glob("*.tar"))]
    return [(np.asarray(Image.open(io.BytesIO(s["image.png"]))), json.loads(s["json"]))
            for s in wds.WebDataset(urls, shardshuffle=False)]


@pytest.fixture(scope="module")
def toy_train():
    cfg = DataConfig(reader="toy", height=H, width=W, split_sizes={"train": 16, "val": 4, "test": 2})
    return make_reader(cfg, "train")


@pytest.fixture(scope="module")
def harmonised(tmp_path_factory) -> Path:
    """A run dir with a 2-step pix2pix harmoniser on the toy world."""
    from synthdata.train import main

    run_dir = tmp_path_factory.mktemp("harmonise")
    assert main([*HARMONISE, "stage=image", f"run_dir={run_dir}"]) == 0
    return run_dir


def test_training_composites_leave_out_the_target_image(toy_train):
    bank = build_bank(toy_train, progress=False)
    batch = [toy_train[i] for i in range(4)]
    keys = [s["meta"]["id"] for s in batch]
    for sample, key in zip(batch, keys):
        out = composite(sample["layout"], bank, 3, exclude_source=key)
        own = [e for e in out["meta"]["sources"] if e["source"] == key]
        # its own segments are used only for classes that no other image shows
        for e in own:
            others = [t for t in bank.class_segments(e["class_index"]) if bank.source_of(t) != key]
            assert not others, f"{key}: used its own {e['class']} segment although others exist"
        assert len(own) < len(out["meta"]["sources"])
        # without the exclusion, retrieval does pick the image's own segments (so the test can fail)
        assert any(e["source"] == key for e in composite(sample["layout"], bank, 3)["meta"]["sources"])
    composites = LeaveOneOutComposites(bank, CompositeConfig())
    layouts = torch.from_numpy(np.stack([s["layout"] for s in batch]))
    out = composites({"layout": layouts, "key": keys}, seed=5)
    assert out.shape == (4, 3, H, W) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, composites({"layout": layouts, "key": keys}, seed=5))  # seeded
    real = torch.from_numpy(np.stack([s["image"] for s in batch])).permute(0, 3, 1, 2).float() / 255
    assert (out - real).abs().mean() > 0.02  # not the target image pasted back


def test_an_untrained_harmoniser_starts_at_the_composite():
    spec = stages.ImageSpec(arch="pix2pix", num_classes=4, height=H, width=W, z_dim=0, ngf=8, ndf=8,
                            num_discriminators=1, lambda_fm=10.0, lambda_l1=10.0, max_depth=None,
                            use_depth=False, composite_input=True)
    assert spec.cond_channels == 4 + 3
    composite = torch.rand(2, 3, H, W)
    batch = {"layout": torch.zeros(2, H, W, dtype=torch.long), "image": torch.rand(2, 3, H, W), "composite": composite}
    inp = spec.inputs(batch, None)

    def no_correction(cond, z):
        return torch.zeros(cond.shape[0], 3, H, W)

    assert torch.allclose(spec.decode(spec.generate(no_correction, inp)), composite, atol=1e-6)
    assert spec.build_generator()(inp.cond).shape == (2, 3, H, W)


def test_train_then_produce_passes_composites_through_the_harmoniser(harmonised, tmp_path):
    from synthdata.produce import main

    ckpt = torch.load(harmonised / "checkpoints" / "image" / "latest.pt", weights_only=True)
    assert ckpt["arch"]["composite_input"] is True and ckpt["arch"]["arch"] == "pix2pix"
    assert (harmonised / "bank" / "segment_bank.npz").is_file()
    assert list((harmonised / "samples" / "image").glob("*.png"))
    assert main([*HARMONISE, *PRODUCE, f"run_dir={harmonised}", f"produce.out={tmp_path / 'on'}"]) == 0
    assert main([*HARMONISE, *PRODUCE, "stages.image.harmonise=none", f"run_dir={harmonised}",
                 f"produce.out={tmp_path / 'off'}"]) == 0
    on, off = images_and_meta(tmp_path / "on"), images_and_meta(tmp_path / "off")
    assert [m["harmonise"] for _, m in on] == ["pix2pix"] * 6
    assert all("harmonise" not in m for _, m in off)
    assert [m["sources"] for _, m in on] == [m["sources"] for _, m in off]  # same composites underneath
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(on, off))


def test_harmoniser_checkpoints_are_refused_where_they_do_not_fit(harmonised, tmp_path, capsys):
    from synthdata.produce import main

    pipeline = load_pipeline(harmonised, device="cpu")
    with pytest.raises(CheckpointError, match="harmoniser of composites"):
        pipeline.from_layouts(torch.zeros(1, H, W, dtype=torch.long), [0])
    # a harmonise recipe on a run dir without a harmoniser: one line naming the folder, exit code 2
    assert main([*HARMONISE, *PRODUCE, f"run_dir={tmp_path / 'empty'}", f"produce.out={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err
    assert "no harmoniser in" in err and str(tmp_path / "empty" / "checkpoints" / "image") in err
    assert "Traceback" not in err and not (tmp_path / "empty").exists()  # refused before the bank is built
    # spade recipe asked of a pix2pix harmoniser
    assert main([*HARMONISE, *PRODUCE, "stages.image.harmonise=spade", f"run_dir={harmonised}",
                 f"produce.out={tmp_path / 'y'}"]) == 2
    assert "not a spade harmoniser" in capsys.readouterr().err


def test_harmonise_needs_the_composite_arch(tmp_path, capsys):
    from synthdata.produce import main

    recipe = Recipe()
    recipe.stages.image = dataclasses.replace(recipe.stages.image, arch="spade", harmonise="pix2pix")
    with pytest.raises(ConfigError, match="needs stages.image.arch=composite"):
        stages.stage_spec("image", recipe, num_classes=4, use_depth=False, max_depth=None)
    # production refuses it too, instead of ignoring the key
    assert main(["recipe=toy", "stages.image.harmonise=pix2pix", f"run_dir={tmp_path}"]) == 2
    assert "stages.image.harmonise=pix2pix refines composites" in capsys.readouterr().err


def test_a_harmoniser_trains_on_the_reader_not_on_shards(tmp_path, capsys):
    from synthdata.train import main

    run_dir = tmp_path / "run"
    assert main([*HARMONISE, "stage=image", f"run_dir={run_dir}", f"train.shards={tmp_path}"]) == 2
    assert "unset train.shards" in capsys.readouterr().err
    assert not (run_dir / "bank").exists()  # refused before the bank is built


def test_image_records_written_before_harmonisers_still_load():
    spec = stages.ImageSpec(arch="spade", num_classes=4, height=H, width=W, z_dim=8, ngf=8, ndf=8,
                            num_discriminators=1, lambda_fm=10.0, lambda_l1=10.0, max_depth=None, use_depth=False)
    record = spec.to_dict()
    del record["composite_input"]
    assert stages.spec_from_dict(record) == spec


def test_perturbed_inputs_change_whole_segments_and_nothing_else(toy_train):
    from scipy import ndimage

    batch = [toy_train[i] for i in range(4)]
    layouts = torch.from_numpy(np.stack([s["layout"] for s in batch]))
    layouts[:, :2] = 255  # an unlabelled strip stays as it is
    real = torch.from_numpy(np.stack([s["image"] for s in batch])).permute(0, 3, 1, 2).float() / 255
    perturb = PerturbedImages(ignore_index=255)
    out = perturb({"layout": layouts, "image": real}, seed=3)
    assert out.shape == real.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, perturb({"layout": layouts, "image": real}, seed=3))  # seeded
    assert not torch.equal(out, perturb({"layout": layouts, "image": real}, seed=4))
    assert torch.equal(out[:, :, :2], real[:, :, :2])
    changed = total = 0
    for i in range(len(batch)):
        lay = layouts[i].numpy()
        for c in np.unique(lay[lay != 255]):
            components, n = ndimage.label(lay == c)
            for k in range(1, n + 1):
                diff = (out[i][:, torch.from_numpy(components == k)] - real[i][:, torch.from_numpy(components == k)]).abs()
                total += 1
                changed += bool(diff.max() > 1e-6)
    assert 0.2 < changed / total < 0.8  # about half the segments


def test_perturbed_harmoniser_trains_and_is_chosen_by_the_recipe(toy_train, tmp_path):
    from synthdata.core.recipe_loading import load_recipe
    from synthdata.train import main

    recipe = load_recipe("toy", HARMONISE[1:] + ["stages.image.harmonise_input=perturbed"])
    bank = build_bank(toy_train, progress=False)
    assert isinstance(harmoniser_inputs(recipe, bank), PerturbedImages)
    assert isinstance(harmoniser_inputs(load_recipe("toy", HARMONISE[1:]), bank), LeaveOneOutComposites)
    with pytest.raises(ConfigError, match="harmonise_input"):
        load_recipe("toy", ["stages.image.harmonise_input=blur"])
    run_dir = tmp_path / "run"
    assert main([*HARMONISE, "stages.image.harmonise_input=perturbed", "stage=image", f"run_dir={run_dir}"]) == 0
    ckpt = torch.load(run_dir / "checkpoints" / "image" / "latest.pt", weights_only=True)
    assert ckpt["step"] == 2
