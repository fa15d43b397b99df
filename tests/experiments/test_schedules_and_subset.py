"""Mixing schedules (per-step source counts) and the `data.subset` low-data knob (by ids)."""

from __future__ import annotations

import json

import pytest

from synthdata.core.contract import ConfigError, DatasetError
from synthdata.core.recipe import SegConfig
from synthdata.core.recipe_loading import load_recipe
from synthdata.core.runtime import make_accelerator
from synthdata.data.readers.base import make_reader, subset_indices
from synthdata.segment import main as segment_main
from synthdata.segmentation.training import SegmentationRun, synthetic_per_step

TINY = ["data.height=32", "data.width=64", "data.split_sizes={train: 16, val: 4, test: 8}",
        "seg.model.encoder_depth=3", "seg.model.decoder_channels=[16,8,8]", "seg.batch_size=4",
        "eval.batch_size=4", "seg.val_every=0", "seg.checkpoint_every=0", "seg.mixed_precision='no'"]


def test_schedule_counts_per_step():
    assert synthetic_per_step(SegConfig(steps=4, batch_size=8, synthetic_ratio=0.5)) == [4, 4, 4, 4]
    low = synthetic_per_step(SegConfig(steps=50, batch_size=8, synthetic_ratio=0.1))
    assert sum(low) == 40 and set(low) == {0, 1}  # 10% exactly, not rounded to 1 of 8 per step
    assert sum(synthetic_per_step(SegConfig(steps=20, batch_size=8, synthetic_ratio=0.25))) == 40
    decay = synthetic_per_step(SegConfig(steps=5, batch_size=8, synthetic_ratio=1.0, synthetic_schedule="decay"))
    assert decay == [8, 6, 4, 2, 0]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    pre = SegConfig(steps=5, batch_size=4, synthetic_schedule="pretrain", pretrain_steps=2)
    assert synthetic_per_step(pre) == [4, 4, 0, 0, 0]
    with pytest.raises(ConfigError, match="pretrain_steps"):
        synthetic_per_step(SegConfig(steps=5, synthetic_schedule="pretrain", pretrain_steps=0))


def _shards(tmp_path):
    from synthdata.data.shard_writer import ShardWriter

    reader = make_reader(load_recipe("toy", TINY).data, "test")
    samples = [reader[i] for i in range(8)]
    for s in samples:
        s["meta"]["id"] = f"synth-{s['meta']['id']}"
    with ShardWriter(tmp_path / "synth", prefix="synth", shard_size=4, classes=reader.classes,
                     recipe={"name": "test"}, depth_scale=0.001) as writer:
        for i in range(0, 8, 4):
            writer.write_shard(i // 4, samples[i: i + 4])
    writer.finalize_manifest()
    return str(tmp_path / "synth")


@pytest.mark.parametrize("schedule, extra", [("decay", ["seg.synthetic_ratio=0.5"]),
                                             ("pretrain", ["seg.pretrain_steps=2"]),
                                             ("constant", ["seg.synthetic_ratio=0.25"])])
def test_each_schedule_feeds_the_sources_it_should(tmp_path, schedule, extra):
    recipe = load_recipe("toy", TINY + ["seg.steps=4", f"seg.synthetic={_shards(tmp_path)}",
                                        f"seg.synthetic_schedule={schedule}", *extra])
    run = SegmentationRun(recipe, tmp_path / "run", make_accelerator(mixed_precision="no"))
    result = run.run()
    expected = synthetic_per_step(recipe.seg)
    counts = result["source_counts"]
    assert counts["real"] + counts.get("synthetic", 0) == 16 and sum(run.step_sources) == counts.get("synthetic", 0)
    if schedule == "constant":  # today's mixed stream: 1 in 4 interleaved, then a shuffle buffer
        assert expected == [1, 1, 1, 1] and 1 <= counts["synthetic"] <= 8
    else:  # composed batches: exactly the scheduled count at every step
        assert run.step_sources == expected == ([2, 1, 1, 0] if schedule == "decay" else [4, 4, 0, 0])
    assert result["data"]["synthetic"]["schedule"] == schedule


def test_subset_by_fraction_every_k_and_id_file(tmp_path):
    ids = [f"img{i:03d}" for i in range(367)][::-1]  # any order: the rule sorts by id
    keep, rule = subset_indices(ids, 0.1)
    assert sorted(ids[i] for i in keep) == [f"img{i:03d}" for i in range(0, 367, 10)]  # CamVid: 37 images
    assert len(keep) == 37 and "every 10th" in rule
    assert subset_indices(ids, "every:10")[0] == keep
    listing = tmp_path / "ids.txt"
    listing.write_text("img005  # a comment\nimg007\n\n")
    assert sorted(ids[i] for i in subset_indices(ids, str(listing))[0]) == ["img005", "img007"]
    listing.write_text("img005\nnope-1\n")
    with pytest.raises(DatasetError, match="nope-1"):
        subset_indices(ids, str(listing))
    with pytest.raises(ConfigError, match="every:K"):
        subset_indices(ids, "every:x")


def test_subset_keeps_every_stage_to_its_ids(tmp_path, capsys):
    listing = tmp_path / "ids.txt"
    listing.write_text("toy-train-000003\ntoy-train-000011\n")
    recipe = load_recipe("toy", TINY + [f"data.subset={listing}"])
    train = make_reader(recipe.data, "train")
    assert [train[i]["meta"]["id"] for i in range(len(train))] == ["toy-train-000003", "toy-train-000011"]
    assert [train.item_id(i) for i in range(len(train))] == ["toy-train-000003", "toy-train-000011"]
    assert train.subset["kept"] == 2 and train.subset["of"] == 16
    assert len(make_reader(recipe.data, "val")) == 4  # evaluation is never subset
    # the generator stages, production (real layouts) and segmenters read the train split
    # through make_reader; the segmenter's report records the subset and sees only its ids
    run = tmp_path / "seg"
    assert segment_main(["recipe=toy", *TINY, f"data.subset={listing}", "seg.steps=1", f"run_dir={run}"]) == 0
    info = json.loads((run / "report" / "report.json").read_text())["info"]
    assert info["data_sources"]["real"]["data_subset"]["ids"] == ["toy-train-000003", "toy-train-000011"]
    assert info["recipe"]["data"]["subset"] == str(listing)
    listing.write_text("toy-train-000003\ntoy-train-999999\n")
    assert segment_main(["recipe=toy", *TINY, f"data.subset={listing}", "seg.steps=1",
                         f"run_dir={tmp_path / 'bad'}"]) == 2
    assert "toy-train-999999" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "report").exists()


def test_generator_training_sees_only_the_subset(tmp_path, monkeypatch):
    from synthdata.data.readers.toy import ToyReader
    from synthdata.train import main as train_main

    loaded = []
    original = ToyReader._load

    def spy(self, item):
        sample = original(self, item)
        loaded.append(sample["meta"]["id"])
        return sample

    monkeypatch.setattr(ToyReader, "_load", spy)
    gen = ["stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=16", "train.batch_size=2",
           "train.log_every=1", "train.sample_every=3", "train.checkpoint_every=3", "train.mixed_precision=no"]
    assert train_main(["recipe=toy", *TINY, *gen, "data.subset=every:8", "stage=layout", "train.steps=3",
                       f"run_dir={tmp_path / 'g'}"]) == 0
    train_ids = {i for i in loaded if i.startswith("toy-train-")}
    assert train_ids and train_ids <= {"toy-train-000000", "toy-train-000008"}
