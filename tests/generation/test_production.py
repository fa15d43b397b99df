"""Production: seeds and keys, rejection redraws, hardness copies, process-count independence,
resume, and the `produce` entry point end to end on random-weight stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthdata.core.contract import ClassInfo, ConfigError
from synthdata.core.palette import default_palette
from synthdata.core.seeding import torch_generator
from synthdata.data.shard_writer import ShardWriter
from synthdata.data.shards import read_manifest, sha256_file
from synthdata.generation.layout_sources import GeneratedLayouts
from synthdata.generation.production import (
    RejectionError,
    ShardGenerator,
    produce_shards,
    sample_key,
    sample_seed,
)
from synthdata.generation.quality_controls import LayoutFilter, QualityControls
from synthdata.generation.shard_plan import check_same_production, shard_sizes

C, H, W = 4, 32, 64
CLASSES = ClassInfo(tuple("abcd"), default_palette(C))


class FakePipeline:
    """A deterministic stand-in for `synthdata.generation.sampler.Pipeline` (same methods)."""

    classes, height, width, has_depth, depth_scale = CLASSES, H, W, True, 0.001

    def __init__(self):
        self.mix = torch.nn.Conv2d(C, 3, 3, padding=1)
        torch.nn.init.normal_(self.mix.weight, generator=torch.Generator().manual_seed(0))
        torch.nn.init.zeros_(self.mix.bias)

    def layouts_from_seeds(self, seeds):
        coarse = torch.stack([torch.randn(C, 2, 4, generator=torch_generator(s)) for s in seeds])
        return F.interpolate(coarse, size=(H, W), mode="nearest").argmax(1)

    def from_layouts(self, layouts, seeds):
        onehot = F.one_hot(layouts.clamp(0, C - 1), C).permute(0, 3, 1, 2).float()
        style = torch.stack([torch.rand(3, generator=torch_generator(s, 1)) for s in seeds])
        image = torch.sigmoid(self.mix(onehot) + style[:, :, None, None])
        return {"layout": layouts, "depth": 1.0 + layouts.float(), "image": image}


class ConstantSegmenter(torch.nn.Module):
    def forward(self, images):
        return F.one_hot(torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.long), C).permute(0, 3, 1, 2).float()


def make_generator(controls=None, batch_size=3, **kw) -> ShardGenerator:
    pipe = FakePipeline()
    return ShardGenerator(
        pipe, GeneratedLayouts(pipe), controls or QualityControls(num_classes=C),
        seed=7, prefix="synth", batch_size=batch_size, **kw,
    )


def writer(out: Path, shard_size: int = 4) -> ShardWriter:
    return ShardWriter(out, prefix="synth", shard_size=shard_size, classes=CLASSES, recipe={"name": "test"},
                       depth_scale=0.001, encode_workers=1)


def test_shard_plan_seeds_and_keys():
    assert shard_sizes(10, 4) == [4, 4, 2] and shard_sizes(8, 4) == [4, 4] and shard_sizes(0, 4) == []
    assert sample_key("synth", 3, 12) == "synth-000003-000012" and "." not in sample_key("a", 1, 2, 1)
    seeds = {sample_seed(0, s, p, a) for s in range(3) for p in range(5) for a in range(3)}
    assert len(seeds) == 45 and sample_seed(0, 1, 2) == sample_seed(0, 1, 2, 0)


def test_generate_is_deterministic_and_batch_size_only_changes_rounding():
    a = make_generator().generate(2, 5)
    b = make_generator().generate(2, 5)
    c = make_generator(batch_size=5).generate(2, 5)
    assert [s["meta"]["id"] for s in a] == [sample_key("synth", 2, p) for p in range(5)]
    for x, y, z in zip(a, b, c):
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["layout"], y["layout"])
        assert np.array_equal(x["layout"], z["layout"])
        assert np.abs(x["image"].astype(int) - z["image"]).max() <= 1
    first = a[0]
    assert first["image"].dtype == np.uint8 and first["image"].shape == (H, W, 3)
    assert first["layout"].dtype == np.uint8 and first["depth"].dtype == np.float32
    assert first["meta"]["seed"] == sample_seed(7, 2, 0) and first["meta"]["layout_source"] == "generated"


def test_rejected_layouts_are_redrawn_deterministically():
    def gen():
        return make_generator(QualityControls(num_classes=C, layout_filter=LayoutFilter(C, min_classes=4)))

    g = gen()
    samples = g.generate(0, 6)
    assert g.attempts > 6 and g.controls.rejected["min_classes"] == g.attempts - 6
    assert all(len(np.unique(s["layout"])) >= 4 for s in samples)
    redrawn = [s for s in samples if s["meta"]["attempt"] > 0]
    assert redrawn and all(s["meta"]["seed"] == sample_seed(7, 0, s["meta"]["position"], s["meta"]["attempt"]) for s in redrawn)
    again = gen().generate(0, 6)
    assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(samples, again))


def test_impossible_filter_stops_with_a_clear_error():
    controls = QualityControls(num_classes=C, layout_filter=LayoutFilter(C, max_class_fraction=0.01))
    with pytest.raises(RejectionError, match=r"synth-000000-00000\d was rejected 3 times.*max_class_fraction"):
        make_generator(controls, max_attempts=3).generate(0, 2)


def test_hard_layouts_get_image_variants(tmp_path):
    controls = QualityControls(num_classes=C, hardness_segmenter=ConstantSegmenter(), max_copies=3)
    samples = make_generator(controls).generate(0, 3)
    keys = [s["meta"]["id"] for s in samples]
    assert len(samples) > 3 and any(k.endswith("-v2") for k in keys)
    for s in samples:
        if "copy_of" in s["meta"]:
            original = next(o for o in samples if o["meta"]["id"] == s["meta"]["copy_of"])
            assert np.array_equal(s["layout"], original["layout"])
            assert not np.array_equal(s["image"], original["image"])
            assert s["meta"]["hardness"] == original["meta"]["hardness"] > 0
    with writer(tmp_path, shard_size=9) as w:
        assert w.write_shard(0, samples)


def write_all(out: Path, world: int, sizes: list[int], overlap: bool = True) -> list[dict]:
    """Simulate `world` processes (round-robin shards), each with its own generator and writer."""
    stats = []
    for rank in range(world):
        with writer(out) as w:
            mine = [(s, n) for s, n in enumerate(sizes) if s % world == rank]
            stats.append(produce_shards(make_generator(), w, mine, overlap=overlap, progress=False))
    return stats


def shard_hashes(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.glob("*.tar"))}


def test_output_bytes_do_not_depend_on_process_count_or_overlap(tmp_path):
    sizes = shard_sizes(10, 4)
    write_all(tmp_path / "one", 1, sizes)
    write_all(tmp_path / "two", 2, sizes)
    write_all(tmp_path / "serial", 1, sizes, overlap=False)
    one = shard_hashes(tmp_path / "one")
    assert len(one) == 3 and one == shard_hashes(tmp_path / "two") == shard_hashes(tmp_path / "serial")
    with writer(tmp_path / "two") as w:
        manifest = w.finalize_manifest(range(3))
    assert manifest["num_samples"] == 10 and not manifest["missing_shards"]


def test_resume_skips_complete_shards_and_matches_a_fresh_run(tmp_path):
    sizes = shard_sizes(10, 4)
    with writer(tmp_path / "resumed") as w:
        produce_shards(make_generator(), w, [(1, 4)], progress=False)
    with writer(tmp_path / "resumed") as w:
        stats = produce_shards(make_generator(), w, list(enumerate(sizes)), progress=False)
    assert stats["skipped_shards"] == 1 and stats["samples"] == 6
    write_all(tmp_path / "fresh", 1, sizes)
    assert shard_hashes(tmp_path / "resumed") == shard_hashes(tmp_path / "fresh")


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    from synthdata.core.recipe_loading import load_recipe

    check_same_production(tmp_path, load_recipe("toy", ["produce.num_samples=10"]))
    (tmp_path / "synth-000000.tar").write_bytes(b"")  # settings bind only a folder that holds shards
    check_same_production(tmp_path, load_recipe("toy", ["produce.num_samples=20"]))  # extending is fine
    with pytest.raises(ConfigError, match="produce.prefix"):
        check_same_production(tmp_path, load_recipe("toy", ["produce.prefix=other"]))
    check_same_production(tmp_path, load_recipe("toy", ["data.cache_mb=0"]))  # a memory knob, not a setting
    # a folder from before stages.image.harmonise existed resumes at its old behaviour, not another
    recorded = json.loads((tmp_path / "production.json").read_text())
    del recorded["stages"]["image"]["harmonise"], recorded["stages"]["image"]["harmonise_input"]
    (tmp_path / "production.json").write_text(json.dumps(recorded))
    check_same_production(tmp_path, load_recipe("toy"))
    with pytest.raises(ConfigError, match="stages.image.harmonise"):
        check_same_production(tmp_path, load_recipe("toy", ["stages.image.harmonise=pix2pix"]))


# --------------------------------------------------------------------------------------------
# End to end: `synthdata produce` on random-weight stage checkpoints
# --------------------------------------------------------------------------------------------

TINY = [
    "data.height=32", "data.width=64", "data.classes=[a, b, c, d]", "data.reader=folder",
    "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=16",
    "stages.depth.ngf=8", "stages.depth.ndf=8", "stages.image.ngf=8", "stages.image.ndf=8",
    "produce.num_samples=10", "produce.shard_size=4", "produce.batch_size=3",
    "produce.mixed_precision='no'", "produce.encode_workers=1",
]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A run dir with randomly initialised layout/depth/image checkpoints and a tiny folder dataset."""
    import cv2

    from synthdata.core.checkpoint import portable_checkpoint, save_atomic
    from synthdata.core.recipe_loading import load_recipe, recipe_to_dict
    from synthdata.generation import stages

    root = tmp_path_factory.mktemp("produce_run")
    data = root / "data" / "train"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i in range(3):
        layout = np.zeros((H, W), np.uint8)
        layout[: H // 2] = 1
        layout[20:26, 8 * i : 8 * i + 10] = 2 + i % 2
        cv2.imwrite(str(data / "masks" / f"s{i}.png"), layout)
        cv2.imwrite(str(data / "images" / f"s{i}.png"), np.full((H, W, 3), 40 * i, np.uint8))
    recipe = load_recipe("toy", TINY + [f"data.root={root / 'data'}"])
    torch.manual_seed(0)
    for stage in stages.STAGES:
        spec = stages.stage_spec(stage, recipe, num_classes=C, use_depth=True, max_depth=50.0)
        model = spec.build_generator()
        ckpt = portable_checkpoint(kind=f"generator-{stage}", model=model.state_dict(), step=1,
                                   recipe=recipe_to_dict(recipe), classes=CLASSES, ema=model.state_dict(), arch=spec.to_dict())
        save_atomic(ckpt, root / "checkpoints" / stage / "latest.pt")
    return root


def produce(run_dir: Path, *extra: str) -> int:
    from synthdata.produce import main

    return main([f"run_dir={run_dir}", f"data.root={run_dir / 'data'}", *TINY, *extra])


def test_produce_end_to_end_writes_readable_shards_and_resumes(run_dir, tmp_path, capsys):
    import webdataset as wds

    out = tmp_path / "shards"
    assert produce(run_dir, f"produce.out={out}", "max_shards=1") == 0
    assert "2 shards left" in capsys.readouterr().out and not (out / "manifest.json").exists()
    assert not (out / "layout_check.json").exists()  # only a finished production is checked
    assert produce(run_dir, f"produce.out={out}") == 0
    assert "1 already complete" in capsys.readouterr().out
    check = json.loads((out / "layout_check.json").read_text())
    assert check["produced"]["num_images"] == 10 and check["real"]["num_images"] == 3
    assert check["real_split"] == "folder:train" and isinstance(check["warnings"], list)
    manifest = read_manifest(out)
    assert manifest["num_samples"] == 10 and len(manifest["shards"]) == 3 and manifest["classes"] == list("abcd")
    assert (out / "recipe.yaml").is_file()
    samples = list(wds.WebDataset(str(out / "synth-{000000..000002}.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [sample_key("synth", s, p) for s, n in enumerate([4, 4, 2]) for p in range(n)]
    assert {"image.png", "layout.png", "depth.png", "json"} <= set(samples[0])
    meta = json.loads(samples[5]["json"])
    assert meta["seed"] == sample_seed(0, 1, 1) and meta["source"] == "synthetic"
    # a fresh single run gives the same bytes as the interrupted + resumed one
    assert produce(run_dir, f"produce.out={tmp_path / 'fresh'}") == 0
    assert shard_hashes(out) == shard_hashes(tmp_path / "fresh")
    # other settings into the same folder are refused with exit code 2
    assert produce(run_dir, f"produce.out={out}", "seed=1") == 2
    assert "seed" in capsys.readouterr().err


def test_layout_check_warns_about_lost_classes_and_skips_without_real_data(run_dir, tmp_path, capsys, monkeypatch):
    import synthdata.metrics.layout_check as lc

    real = {"presence_rate": [1.0, 1.0, 0.0, 0.0], "components_per_class": [1.0, 1.0, 0.0, 0.0]}
    statistics = iter([{**real, "num_images": 3}, {"presence_rate": [1.0, 0.0, 0.0, 0.0],
                                                   "components_per_class": [1.0, 0.0, 0.0, 0.0], "num_images": 10}])
    monkeypatch.setattr(lc, "layout_statistics", lambda layouts, **kw: (list(layouts), next(statistics))[1])
    monkeypatch.setattr(lc, "compare_layouts", lambda real, fake: {})
    assert produce(run_dir, f"produce.out={tmp_path / 'lost'}") == 0
    assert "produce: warning: layouts unlike the real ones (a collapsed layout generator?): b: in 0% of generated " \
           "layouts, 100% of real ones" in capsys.readouterr().out
    monkeypatch.undo()
    # producing from checkpoints without the dataset: the check records why it was skipped
    out = tmp_path / "elsewhere"
    assert produce(run_dir, f"produce.out={out}", f"data.root={tmp_path / 'no-data'}") == 0
    assert "no real layouts" in json.loads((out / "layout_check.json").read_text())["skipped"]
    assert "warning" not in capsys.readouterr().out


def test_produce_real_layouts_with_filters(run_dir, tmp_path):
    out = tmp_path / "real"
    code = produce(run_dir, f"produce.out={out}", "produce.layouts=mixed", "produce.real_ratio=0.5",
                   "produce.copy_paste=2", "produce.copy_paste_classes=[c, d]", "produce.min_classes=2",
                   "produce.class_balance=true", "produce.balance_calibration=6")
    assert code == 0
    import webdataset as wds

    metas = [json.loads(s["json"]) for s in wds.WebDataset(str(out / "synth-{000000..000002}.tar"), shardshuffle=False)]
    assert {m["layout_source"] for m in metas} == {"real", "generated"}
    assert all(m["layout_id"] in {"s0", "s1", "s2"} for m in metas if m["layout_source"] == "real")


def test_produce_reports_missing_stages_and_bad_settings(tmp_path, run_dir, capsys):
    assert produce(tmp_path / "empty") == 2
    assert "synthdata train recipe=toy stage=layout" in capsys.readouterr().err
    assert produce(run_dir, f"produce.out={tmp_path / 'x'}", "produce.copy_paste_classes=[zebra]") == 2
    assert "zebra" in capsys.readouterr().err


def test_run_dir_defaults_to_runs_slash_recipe_name(tmp_path, monkeypatch, capsys):
    """`accelerate launch synthdata/produce.py recipe=cityscapes` as written in the brief."""
    from synthdata.produce import main

    monkeypatch.chdir(tmp_path)
    assert main(["recipe=cityscapes"]) == 2
    err = capsys.readouterr().err
    assert "runs/cityscapes/checkpoints" in err and "synthdata train recipe=cityscapes stage=layout" in err


def test_two_processes_write_the_same_bytes_as_one(run_dir, tmp_path, launch_two_processes):
    """A real distributed run (torchrun, gloo on CPU): shards round-robin, bytes unchanged."""
    result = launch_two_processes("synthdata/produce.py", f"run_dir={run_dir}", f"data.root={run_dir / 'data'}",
                                  *TINY, f"produce.out={tmp_path / 'two'}")
    assert "2 processes" in result.stdout
    assert produce(run_dir, f"produce.out={tmp_path / 'one'}") == 0
    two = shard_hashes(tmp_path / "two")
    assert len(two) == 3 and two == shard_hashes(tmp_path / "one")
    assert read_manifest(tmp_path / "two")["num_samples"] == 10


def test_produce_with_segmenter_fidelity_and_hardness(run_dir, tmp_path):
    """`load_segmenter` wiring: fidelity scores recorded and thresholded, hard layouts copied."""
    import webdataset as wds

    from synthdata.core.checkpoint import portable_checkpoint, save_atomic
    from synthdata.core.recipe import SegModelConfig
    from synthdata.models.segmenters import build_segmenter, segmenter_arch

    cfg = SegModelConfig(arch="unet", encoder="resnet18", encoder_depth=3, decoder_channels=[16, 8, 8])
    torch.manual_seed(0)
    model = build_segmenter(cfg, num_classes=C)
    path = save_atomic(
        portable_checkpoint(kind="segmenter", model=model.state_dict(), step=1, recipe={}, classes=CLASSES,
                            arch=segmenter_arch(cfg)),
        tmp_path / "segmenter.pt",
    )
    out = tmp_path / "scored"
    code = produce(run_dir, f"produce.out={out}", "produce.num_samples=4", f"produce.fidelity_segmenter={path}",
                   "produce.fidelity_threshold=0.01", f"produce.hardness_segmenter={path}",
                   "produce.hardness_max_copies=2")
    assert code == 0
    samples = list(wds.WebDataset(str(out / "synth-000000.tar"), shardshuffle=False))
    metas = [json.loads(s["json"]) for s in samples]
    originals = [m for m in metas if "copy_of" not in m]
    assert len(originals) == 4 and all(m["fidelity"] >= 0.01 and 0 <= m["hardness"] <= 1 for m in originals)
    # a random segmenter errs on most pixels: hardness > 0.5 gives every layout a second image
    copies = [m for m in metas if "copy_of" in m]
    assert len(copies) == sum(m["hardness"] >= 0.5 for m in originals)
    assert all("fidelity" not in m for m in copies)
    assert read_manifest(out)["num_samples"] == len(samples)


def test_console_script_runs_produce(tmp_path, capsys):
    from synthdata.cli import main as cli

    assert cli(["produce", f"run_dir={tmp_path}"]) == 2
    assert "stage=layout" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Issue 15: refusals before any work, and what a rerun may find in the folder
# --------------------------------------------------------------------------------------------


def test_checkpoint_classes_must_match_the_recipe(run_dir, tmp_path, capsys):
    """Defect 3: stages trained on other classes are refused with both lists, nothing written."""
    out = tmp_path / "other"
    assert produce(run_dir, f"produce.out={out}", "data.classes=[a, b, c, zebra]") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "['a', 'b', 'c', 'd']" in err[0] and "['a', 'b', 'c', 'zebra']" in err[0]
    assert str(run_dir / "checkpoints") in err[0] and not out.exists()


@pytest.mark.parametrize("bad, key", [("produce.num_samples=-5", "produce.num_samples"),
                                      ("produce.shard_size=0", "produce.shard_size"),
                                      ("produce.image_format=webp", "produce.image_format")])
def test_bad_production_settings_are_refused_before_anything_is_written(run_dir, tmp_path, capsys, bad, key):
    """Defects 4 and 5: one line naming the key, exit 2, no production.json left to block the fix."""
    out = tmp_path / "shards"
    assert produce(run_dir, f"produce.out={out}", bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and "Traceback" not in err[0]
    assert not out.exists()
    assert produce(run_dir, f"produce.out={out}", "produce.num_samples=4") == 0


def test_settings_file_without_shards_does_not_block_a_new_run(run_dir, tmp_path, capsys):
    """Defect 4: production.json left by a run that wrote no shard is replaced, not enforced."""
    from synthdata.core.recipe_loading import load_recipe

    out = tmp_path / "shards"
    check_same_production(out, load_recipe("toy", ["produce.prefix=other"]))  # a failed run's leftovers
    assert produce(run_dir, f"produce.out={out}", "produce.num_samples=4") == 0
    assert read_manifest(out)["num_samples"] == 4
    assert json.loads((out / "production.json").read_text())["produce"]["prefix"] == "synth"


def test_fewer_samples_than_the_folder_holds_is_refused(run_dir, tmp_path, capsys):
    """Defect 7: a rerun with a smaller num_samples says why instead of 'wrote 0 samples'."""
    out = tmp_path / "shards"
    assert produce(run_dir, f"produce.out={out}") == 0
    before = (out / "manifest.json").read_bytes()
    capsys.readouterr()
    assert produce(run_dir, f"produce.out={out}", "produce.num_samples=4") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 10 samples" in err[0] and "produce.num_samples=4" in err[0]
    assert (out / "manifest.json").read_bytes() == before


def test_progress_bar_counts_every_process_share(tmp_path, capsys):
    """Defect 7: rank 0 of 2 shows the whole job (10 samples), not its own 6."""
    sizes = shard_sizes(10, 4)
    with writer(tmp_path) as w:  # rank 1 has written its shard 1
        produce_shards(make_generator(), w, [(1, 4)], progress=False)
    with writer(tmp_path) as w:
        produce_shards(make_generator(), w, [(0, 4), (2, 2)], progress=True, job=list(enumerate(sizes)))
    bar = capsys.readouterr().err
    assert "10/10" in bar and "/6" not in bar


def test_copy_paste_classes_auto_picks_the_object_classes_and_pastes_into_generated_layouts(run_dir, tmp_path, capsys):
    """`auto`: the classes the region rule does not call regions (here the boxes c and d, not the
    halves a and b), the same shards as naming them; the pastes go into GAN layouts (the hybrid)."""
    import webdataset as wds

    auto, named = tmp_path / "auto", tmp_path / "named"
    assert produce(run_dir, f"produce.out={auto}", "produce.copy_paste=2", "produce.copy_paste_classes=auto") == 0
    assert "copy-paste classes (auto, 3 training layouts: not regions by median frame share" in capsys.readouterr().out
    assert produce(run_dir, f"produce.out={named}", "produce.copy_paste=2", "produce.copy_paste_classes=[c, d]") == 0
    assert shard_hashes(auto) == shard_hashes(named)
    metas = [json.loads(s["json"]) for s in wds.WebDataset(str(auto / "synth-{000000..000002}.tar"), shardshuffle=False)]
    assert all(m["layout_source"] == "generated" for m in metas)
    pasted = [p for m in metas for p in m.get("pasted", [])]
    assert pasted and {p["class_index"] for p in pasted} <= {2, 3}


def test_array_jobs_and_finalize_equal_one_run(run_dir, tmp_path, capsys):
    """Three independent array jobs (no process group) write exactly the shards of one run;
    none writes the manifest; finalize checks every shard and writes it."""
    one, jobs = tmp_path / "one", tmp_path / "jobs"
    assert produce(run_dir, f"produce.out={one}") == 0
    for index in range(3):
        assert produce(run_dir, f"produce.out={jobs}", f"job={index}/3") == 0
        assert not (jobs / "manifest.json").exists()
    assert "once every job has finished, the same command with finalize=true" in capsys.readouterr().out
    assert shard_hashes(jobs) == shard_hashes(one)
    assert produce(run_dir, f"produce.out={jobs}", "finalize=true") == 0
    assert "wrote 0 samples" in capsys.readouterr().out
    assert read_manifest(jobs)["shards"] == read_manifest(one)["shards"]
    assert (jobs / "layout_check.json").is_file()


def test_finalize_names_missing_and_foreign_shards(run_dir, tmp_path, capsys):
    out = tmp_path / "jobs"
    for index in (0, 2):  # job 1 of 3 never ran: shard 1 is missing
        assert produce(run_dir, f"produce.out={out}", f"job={index}/3") == 0
    capsys.readouterr()
    assert produce(run_dir, f"produce.out={out}", "finalize=true") == 2
    err = capsys.readouterr().err
    assert "1 of 3 planned shards are not in" in err and "synth-000001.tar" in err and "job=I/N" in err
    assert not (out / "manifest.json").exists()
    assert produce(run_dir, f"produce.out={out}", "job=1/3") == 0
    shard = out / "synth-000002.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF  # same size, other bytes: not the shard its sidecar describes
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert produce(run_dir, f"produce.out={out}", "finalize=true") == 2
    err = capsys.readouterr().err
    assert "not this production's" in err and "synth-000002.tar" in err and "sha256" in err
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize("bad", ["job=3/3", "job=1", "job=-1/2", "job=a/b"])
def test_bad_array_job_is_one_line(run_dir, tmp_path, capsys, bad):
    assert produce(run_dir, f"produce.out={tmp_path / 'x'}", bad) == 2
    err = capsys.readouterr().err
    assert "job must be I/N" in err and "Traceback" not in err
    assert produce(run_dir, f"produce.out={tmp_path / 'x'}", "job=0/2", "finalize=true") == 2
    assert "give it no job=" in capsys.readouterr().err


def test_two_nodes_over_localhost_write_the_same_bytes_as_one(run_dir, tmp_path):
    """A 2-node launch (two `torchrun --nnodes 2` node ranks, one process each, rendezvous over
    127.0.0.1) sharing one output folder writes the bytes of one process."""
    import os
    import socket
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    args = ["synthdata/produce.py", f"run_dir={run_dir}", f"data.root={run_dir / 'data'}", *TINY,
            f"produce.out={tmp_path / 'nodes'}"]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
                               "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
                               *args], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-4000:]
    assert "2 processes" in outputs[0][0]
    assert produce(run_dir, f"produce.out={tmp_path / 'one'}") == 0
    assert shard_hashes(tmp_path / "nodes") == shard_hashes(tmp_path / "one")
    assert read_manifest(tmp_path / "nodes")["num_samples"] == 10


def test_the_hint_to_train_first_names_a_recipe_file_that_loads(tmp_path, monkeypatch, capsys):
    """Issue 35: producing before training with a recipe file suggested `recipe=mine`, which fails
    (a file recipe is named after its stem); the hint names the file, and the command it names runs."""
    from synthdata.core.recipe_loading import load_recipe, resolve_recipe_path
    from synthdata.produce import main as produce_main

    monkeypatch.chdir(tmp_path)
    Path("mine.yaml").write_text("data: {reader: toy, height: 32, width: 64}\n")
    assert produce_main(["recipe=mine.yaml", f"run_dir={tmp_path / 'g'}"]) == 2
    err = capsys.readouterr().err
    assert "synthdata train recipe=mine.yaml stage=layout" in err, err
    assert load_recipe(str(resolve_recipe_path("mine.yaml"))).name == "mine"


def test_shards_another_node_wrote_elsewhere_stop_with_one_line(run_dir, tmp_path, capsys, monkeypatch):
    """Issue 37: processes on several nodes without a shared filesystem. The main process sees a
    shard another process reports as written but cannot find it: one line naming the remedy, not
    "shards left, run again" (which would write them again on every rerun)."""
    from synthdata.generation import production

    def two_processes(objects):  # as if process 1 (another node) had written shard 2 on its own disk
        return [*objects, {"shards": 1, "samples": 4, "skipped_shards": 0, "mine": [2], "attempts": 4, "rejected": {}}]

    monkeypatch.setattr(production, "gather_object", two_processes)
    out = tmp_path / "shards"
    assert produce(run_dir, f"produce.out={out}", "max_shards=1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {out}: 1 shards that other processes wrote are not in this folder") and \
        "a filesystem every node shares" in err and "finalize=true" in err, err


def test_real_pixel_classes_keep_the_photos_objects_on_real_layouts(run_dir, tmp_path, capsys):
    """`produce.real_pixel_classes=auto` on real layouts: the boxes (c, d) keep the photo's pixels
    (the fixture's photos are flat greys 0, 40, 80), the image stage paints the halves a and b."""
    import io

    import webdataset as wds
    from PIL import Image

    out = tmp_path / "real-pixels"
    assert produce(run_dir, f"produce.out={out}", "produce.layouts=real", "produce.real_pixel_classes=auto") == 0
    assert "real-pixel classes (auto, 3 training layouts" in capsys.readouterr().out
    checked = 0
    for sample in wds.WebDataset(str(out / "synth-{000000..000002}.tar"), shardshuffle=False):
        meta = json.loads(sample["json"])
        image = np.asarray(Image.open(io.BytesIO(sample["image.png"])))
        layout = np.asarray(Image.open(io.BytesIO(sample["layout.png"])))
        grey = 40 * int(meta["layout_id"].removeprefix("s"))
        boxes = layout >= 2
        assert boxes.any() and np.all(image[boxes] == grey)
        assert meta["real_pixel_share"] == round(boxes.mean(), 4)
        assert not np.all(image[~boxes] == grey)  # painted by the (random) image stage
        checked += 1
    assert checked == 10


def test_flat_pastes_lie_on_the_layouts_the_image_stage_paints(run_dir, tmp_path):
    """A painted-pastes study's control: with the same seeds `stages.image.arch=flat` gets the same
    layouts (the same objects pasted at the same places) as the trained image stage, so the two
    productions differ only in what fills the pasted masks."""
    import io

    import webdataset as wds
    from PIL import Image

    common = ["produce.layouts=real", "produce.copy_paste=2", "produce.real_pixel_classes=[a, b, c, d]"]
    for arch in ("spade", "flat"):
        assert produce(run_dir, f"produce.out={tmp_path / arch}", f"stages.image.arch={arch}", *common) == 0
    urls = {arch: [str(p) for p in sorted((tmp_path / arch).glob("*.tar"))] for arch in ("spade", "flat")}
    gan, flat = (list(wds.WebDataset(urls[a], shardshuffle=False)) for a in ("spade", "flat"))
    assert len(gan) == len(flat) == 10
    pasted = 0
    for g, f in zip(gan, flat):
        assert g["__key__"] == f["__key__"] and g["layout.png"] == f["layout.png"]
        image_g, image_f = (np.asarray(Image.open(io.BytesIO(s["image.png"]))).astype(int) for s in (g, f))
        own = json.loads(f["json"])["real_pixel_share"]
        assert own == json.loads(g["json"])["real_pixel_share"]
        painted = np.any(image_g != image_f, axis=-1)  # the (random) image stage's paint is never flat grey 40
        assert abs(painted.mean() - (1 - own)) < 1e-4  # the photo's pixels are the same in both (share rounded)
        assert np.all(image_f[painted] == 40)  # every class's mean over the fixture's photos (greys 0, 40, 80)
        pasted += own < 1
    assert pasted > 0
    # `all` names every class
    every = [c.replace("[a, b, c, d]", "all") for c in common]
    assert produce(run_dir, f"produce.out={tmp_path / 'all'}", "stages.image.arch=flat", *every) == 0
    assert shard_hashes(tmp_path / "all") == shard_hashes(tmp_path / "flat")


def test_flat_paints_generated_layouts_of_the_layout_stage(run_dir, tmp_path, capsys):
    import io

    import webdataset as wds
    from PIL import Image

    out = tmp_path / "flat"
    assert produce(run_dir, f"produce.out={out}", "stages.image.arch=flat", "produce.layouts=generated") == 0
    samples = list(wds.WebDataset([str(p) for p in sorted(out.glob("*.tar"))], shardshuffle=False))
    assert len(samples) == 10
    for sample in samples:
        image = np.asarray(Image.open(io.BytesIO(sample["image.png"])))
        assert np.all(image == 40) and json.loads(sample["json"])["layout_source"] == "generated"
    capsys.readouterr()
    # hardness copies of a flat image would be identical: refused in one line, nothing written
    assert produce(run_dir, f"produce.out={tmp_path / 'hard'}", "stages.image.arch=flat",
                   "produce.hardness_max_copies=2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "produce.hardness_max_copies" in err[0] and not (tmp_path / "hard").exists()
    # without a layout stage, generated layouts name the one stage flat needs
    empty = tmp_path / "empty"
    assert produce(empty, f"produce.out={tmp_path / 'none'}", "stages.image.arch=flat",
                   "produce.layouts=generated") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a trained layout stage" in err[0] and "stage=layout" in err[0]


@pytest.mark.parametrize("extra, says", [
    (["produce.real_pixel_classes=auto"], "produce.layouts=real or mixed"),
    (["produce.layouts=real", "produce.real_pixel_classes=[zebra]"], "zebra"),
    (["produce.layouts=real", "produce.real_pixel_classes=auto", "stages.image.arch=composite"], "real pixels already"),
    (["produce.layouts=real", "produce.real_pixel_unlabelled=true"], "produce.real_pixel_unlabelled"),
])
def test_bad_real_pixel_classes_are_one_line(run_dir, tmp_path, capsys, extra, says):
    out = tmp_path / "bad"
    assert produce(run_dir, f"produce.out={out}", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "produce.real_pixel_classes" in err[0] and says in err[0]
    assert not out.exists()


def test_object_weights_of_an_image_stage_that_trains_nothing_are_refused(run_dir, tmp_path, capsys):
    out = tmp_path / "bad"
    assert produce(run_dir, f"produce.out={out}", "produce.layouts=real", "stages.image.arch=flat",
                   "stages.image.object_classes=[a]") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stages.image.object_classes" in err[0] and "arch=flat trains none" in err[0]
    assert not out.exists()
