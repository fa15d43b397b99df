"""`synthdata export`: a reader split as shards, deterministic to the byte, resumable, and
readable by the loader like synthetic shards."""

from __future__ import annotations

import numpy as np
import pytest

from synthdata.core.seeding import numpy_rng
from synthdata.data.loader import make_loader
from synthdata.data.readers.base import READERS, DatasetReader
from synthdata.data.shards import read_manifest, verify_manifest
from synthdata.export import main


class DottedReader(DatasetReader):
    """Five random samples whose ids contain dots (as file names do)."""

    needs_root = False
    default_classes = ("a", "b", "c")
    has_depth = True

    def _items(self):
        return list(range(5))

    def _load(self, item):
        rng = numpy_rng(7, item)
        return {
            "image": rng.integers(0, 256, (32, 64, 3), dtype=np.uint8),
            "layout": rng.integers(0, 3, (32, 64)).astype(np.uint8),
            "depth": rng.uniform(1, 20, (32, 64)).astype(np.float32),
            "meta": {"id": f"frame.{item:03d}.png"},
        }


@pytest.fixture
def dotted_reader(monkeypatch):
    monkeypatch.setitem(READERS, "dotted", DottedReader)
    monkeypatch.setattr(DottedReader, "name", "dotted")
    return ["recipe=toy", "data.reader=dotted", "data.height=32", "data.width=64", "export.shard_size=2"]


def test_export_reader_split_is_deterministic_and_loadable(tmp_path, dotted_reader, capsys):
    assert main(dotted_reader + ["split=train", f"out={tmp_path / 'a'}"]) == 0
    assert "export: 5 samples in 3 shards" in capsys.readouterr().out
    assert main(dotted_reader + ["split=train", f"out={tmp_path / 'b'}"]) == 0
    manifest = read_manifest(tmp_path / "a")
    assert [s["name"] for s in manifest["shards"]] == [f"train-{i:06d}.tar" for i in range(3)]
    assert manifest["classes"] == ["a", "b", "c"] and manifest["recipe"]["data"]["reader"] == "dotted"
    assert verify_manifest(tmp_path / "a") == []
    for entry in manifest["shards"]:
        assert (tmp_path / "a" / entry["name"]).read_bytes() == (tmp_path / "b" / entry["name"]).read_bytes()

    batch = next(iter(make_loader(str(tmp_path / "a"), batch_size=5, augment=False, shuffle=False)))
    assert batch["key"] == [f"frame_{i:03d}_png" for i in range(5)]  # dots replaced
    np.testing.assert_array_equal(batch["layout"][3].numpy(), DottedReader._load(None, 3)["layout"])

    # a rerun skips every complete shard and rewrites nothing
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").glob("*.tar")}
    assert main(dotted_reader + ["split=train", f"out={tmp_path / 'a'}"]) == 0
    assert "(0 written now" in capsys.readouterr().out
    assert before == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").glob("*.tar")}


def test_export_toy_split_with_limit(tmp_path, tiny_toy_overrides, capsys):
    out = tmp_path / "toy"
    assert main(["recipe=toy", *tiny_toy_overrides, "split=val", f"out={out}", "limit=3"]) == 0
    manifest = read_manifest(out)
    assert manifest["num_samples"] == 3 and manifest["shards"][0]["name"] == "val-000000.tar"
    batch = next(iter(make_loader(str(out), batch_size=3, augment=False, shuffle=False, with_depth=True)))
    assert batch["key"][0] == "toy-val-000000" and batch["image"].shape == (3, 3, 32, 64)
    assert (batch["depth"] > 0).any()


def test_export_errors_are_clear(tmp_path, dotted_reader, capsys):
    assert main(dotted_reader + ["split=train"]) == 2
    assert "out" in capsys.readouterr().err
    assert main(dotted_reader + ["split=train", f"out={tmp_path}", "export.shard_size=0"]) == 2
    assert "shard_size must be >= 1" in capsys.readouterr().err


def test_two_ranks_export_the_same_shards_as_one(tmp_path, dotted_reader):
    from synthdata.commands.export import export_split
    from synthdata.core.recipe_loading import load_recipe, recipe_to_dict
    from synthdata.data.readers.base import make_reader
    from synthdata.data.shard_writer import ShardWriter

    recipe = load_recipe("toy", [t for t in dotted_reader if t != "recipe=toy"])
    reader = make_reader(recipe.data, "train")
    options = dict(recipe=recipe_to_dict(recipe), prefix="train", shard_size=2, depth_scale=0.001, progress=False)
    for out, world in ((tmp_path / "one", 1), (tmp_path / "two", 2)):
        stats = [export_split(reader, out, rank=r, world_size=world, **options) for r in range(world)]
        assert sum(s["samples"] for s in stats) == 5
        with ShardWriter(out, prefix="train", shard_size=2, classes=reader.classes,
                         recipe=options["recipe"], depth_scale=0.001) as writer:
            assert writer.finalize_manifest(range(3))["missing_shards"] == []
    assert read_manifest(tmp_path / "one")["shards"] == read_manifest(tmp_path / "two")["shards"]


def test_export_runs_as_a_file_like_accelerate_launch_does(tmp_path, tiny_toy_overrides):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    # `accelerate launch synthdata/export.py` puts synthdata/ first on sys.path, beside inspect.py
    done = subprocess.run([sys.executable, str(root / "synthdata" / "export.py"), "recipe=toy", *tiny_toy_overrides,
                           "split=val", f"out={tmp_path}", "limit=1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_manifest(tmp_path)["num_samples"] == 1
