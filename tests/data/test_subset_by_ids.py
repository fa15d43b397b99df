"""`data.subset` by sample ids: every stage (generator training, production with real layouts and
copy-paste donors, the composite segment bank, the segmenter and its SegGAN refinement) reads
only the listed training images. Every toy scene a reader decodes is recorded by (split, id), and
the shards' metas and the bank's header, which name their source ids, are checked too."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from synthdata.core.recipe_loading import load_recipe
from synthdata.data.readers.toy import ToyReader
from synthdata.texturing.pipeline import prepare_bank

SUBSET = ["toy-train-000002", "toy-train-000007", "toy-train-000013"]  # 3 of 16, no every-k rule
TINY = ["data.height=32", "data.width=64", "data.split_sizes={train: 16, val: 4, test: 2}"]
GENERATORS = ["train.batch_size=2", "train.steps=2", "train.checkpoint_every=2", "train.sample_every=2",
              "train.log_every=1", "train.mixed_precision=no",
              "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=16",
              "stages.depth.ngf=8", "stages.depth.ndf=8", "stages.depth.z_dim=8", "stages.depth.num_discriminators=1",
              "stages.image.ngf=8", "stages.image.ndf=8", "stages.image.z_dim=8", "stages.image.num_discriminators=1",
              "stages.image.use_depth=false"]  # SegGAN refinement needs an image stage without depth
PRODUCE = ["produce.layouts=real", "produce.copy_paste=3", "produce.num_samples=12", "produce.shard_size=4",
           "produce.batch_size=4", "produce.encode_workers=1", "produce.mixed_precision=no"]
SEGMENT = ["seg.model.encoder_depth=3", "seg.model.decoder_channels=[16,8,8]", "seg.batch_size=4", "seg.steps=2",
           "seg.val_every=0", "seg.checkpoint_every=0", "seg.mixed_precision=no", "eval.batch_size=4"]
REFINE = ["refine.steps=2", "refine.batch_size=2", "refine.checkpoint_every=2", "refine.mixed_precision=no"]


class Loads:
    """Every (split, id) a toy reader decodes while the module runs."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def train_ids_during(self, action) -> set[str]:
        self.seen.clear()
        action()
        return {sid for split, sid in self.seen if split == "train"}


@pytest.fixture(scope="module")
def loads():
    recorder = Loads()
    original = ToyReader._load

    def spy(self, item):
        sample = original(self, item)
        recorder.seen.append((self.split, sample["meta"]["id"]))
        return sample

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ToyReader, "_load", spy)
        yield recorder


@pytest.fixture(scope="module")
def args(tmp_path_factory) -> list[str]:
    """The tiny toy recipe restricted to SUBSET by an id file."""
    listing = tmp_path_factory.mktemp("subset") / "ids.txt"
    listing.write_text("# three of the sixteen training scenes\n" + "\n".join(SUBSET) + "\n")
    return ["recipe=toy", *TINY, f"data.subset={listing}"]


@pytest.fixture(scope="module")
def generators(tmp_path_factory, loads, args) -> tuple[Path, dict[str, set[str]]]:
    """Layout, depth and image stages trained on the subset; the training ids each stage read."""
    from synthdata.train import main as train_main

    run = tmp_path_factory.mktemp("generators")
    seen = {}
    for stage in ("layout", "depth", "image"):
        seen[stage] = loads.train_ids_during(
            lambda stage=stage: _ok(train_main([*args, *GENERATORS, f"stage={stage}", f"run_dir={run}"])))
    return run, seen


def _ok(code: int) -> None:
    assert code == 0


def shard_metas(out: Path) -> list[dict]:
    metas = []
    for path in sorted(out.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    metas.append(json.loads(tar.extractfile(member).read()))
    return metas


def donor_ids(metas: list[dict]) -> tuple[set[str], set[str], set[str]]:
    """(real layout ids, copy-paste donor ids, composite segment source ids) named by the metas."""
    layouts = {m["layout_id"] for m in metas if "layout_id" in m}
    pasted = {p["source"] for m in metas for p in m.get("pasted", [])}
    segments = {s["source"] for m in metas for s in m.get("sources", []) if s.get("source") is not None}
    return layouts, pasted, segments


def test_generator_training_reads_only_the_subset(generators):
    _, seen = generators
    for stage, ids in seen.items():
        assert ids and ids <= set(SUBSET), (stage, sorted(ids))


def test_production_real_layouts_and_copy_paste_donors_come_from_the_subset(generators, loads, args):
    from synthdata.produce import main as produce_main

    run, _ = generators
    out = run / "shards-real"
    read = loads.train_ids_during(lambda: _ok(produce_main([*args, *GENERATORS, *PRODUCE, f"run_dir={run}",
                                                            f"produce.out={out}"])))
    assert read and read <= set(SUBSET)
    metas = shard_metas(out)
    layouts, pasted, _ = donor_ids(metas)
    assert len(metas) == 12 and layouts and pasted  # real layouts, and objects pasted into them
    assert layouts <= set(SUBSET) and pasted <= set(SUBSET), (sorted(layouts), sorted(pasted))


def test_composite_bank_and_its_donors_come_from_the_subset(tmp_path, loads, args):
    from synthdata.produce import main as produce_main

    composite = [*args, *PRODUCE, "stages.image.arch=composite", f"run_dir={tmp_path}"]
    read = loads.train_ids_during(lambda: _ok(produce_main([*composite, f"produce.out={tmp_path / 'shards'}"])))
    assert read and read <= set(SUBSET)
    bank = prepare_bank(load_recipe("toy", composite[1:-1]), tmp_path, progress=False, log=None)  # the one produce built
    assert bank.source_ids == SUBSET
    layouts, pasted, segments = donor_ids(shard_metas(tmp_path / "shards"))
    assert layouts and pasted and segments
    assert layouts | pasted | segments <= set(SUBSET)


def test_segmenter_and_its_seggan_refinement_read_only_the_subset(generators, loads, args, tmp_path):
    from synthdata.refine import main as refine_main
    from synthdata.segment import main as segment_main

    run, _ = generators
    read = loads.train_ids_during(lambda: _ok(segment_main([*args, *SEGMENT, f"run_dir={tmp_path}"])))
    assert read and read <= set(SUBSET)
    info = json.loads((tmp_path / "report" / "report.json").read_text())["info"]
    assert info["data_sources"]["real"]["data_subset"]["ids"] == SUBSET
    generator = run / "checkpoints" / "image" / "latest.pt"
    read = loads.train_ids_during(lambda: _ok(refine_main([*args, *SEGMENT, *REFINE, f"refine.generator={generator}",
                                                           f"run_dir={tmp_path}"])))
    assert read and read <= set(SUBSET)


def test_generators_from_shards_refuse_a_subset(tmp_path, args, capsys):
    """`train.shards` reads real data from shards, which `data.subset` cannot restrict: the
    combination stops before any training, naming both keys; the subset exported as shards is
    the way to train from shards on it."""
    from synthdata.export import main as export_main
    from synthdata.train import main as train_main

    shards = tmp_path / "subset-shards"
    assert export_main([*args, "split=train", f"out={shards}", "export.shard_size=2"]) == 0
    assert sorted(m["id"] for m in shard_metas(shards)) == SUBSET  # export obeys the subset, ids kept
    capsys.readouterr()
    layout = [*GENERATORS, "stage=layout", f"train.shards={shards}", f"run_dir={tmp_path / 'g'}"]
    assert train_main([*args, *layout]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "train.shards" in err and "data.subset" in err and "synthdata export" in err
    assert not (tmp_path / "g" / "checkpoints").exists()
    no_subset = [a for a in args if not a.startswith("data.subset=")]
    assert train_main([*no_subset, *layout]) == 0  # the exported subset, without data.subset
