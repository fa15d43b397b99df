"""Smoke tests of the benchmark tools in tools/ at tiny sizes (they must keep running; no timing)."""

import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("glibc_allocator")  # the tools run in the test process

TOOLS = Path(__file__).resolve().parents[2] / "tools"
TINY = ["recipe=toy", "data.height=32", "data.width=64", "data.split_sizes={train: 8, val: 4, test: 4}",
        "train.batch_size=2", "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.depth.ngf=8",
        "stages.depth.ndf=8", "stages.image.ngf=8", "stages.image.ndf=8"]


def run_tool(monkeypatch, name: str, args: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", [str(TOOLS / name), *args])
    runpy.run_path(str(TOOLS / name), run_name="__main__")


def test_bench_train_speed_and_quality(monkeypatch, tmp_path, capsys):
    run_tool(monkeypatch, "bench_train.py", ["speed", *TINY, "steps=1", "warmup=1", "precisions=no"])
    out = capsys.readouterr().out
    for stage in ("layout", "depth", "image"):
        assert re.search(rf"\| {stage} \| no \| [\d.]+ \| [\d.]+ \|", out), out

    from synthdata import train

    for stage in ("layout", "depth", "image"):
        assert train.main([*TINY, f"stage={stage}", f"run_dir={tmp_path}", "train.steps=1"]) == 0
    capsys.readouterr()
    run_tool(monkeypatch, "bench_train.py", ["quality", f"run_dir={tmp_path}", "num_layouts=4", "batch_size=4"])
    out = capsys.readouterr().out
    assert re.search(r"layout: JS divergence .* trained [\d.]+, untrained [\d.]+ \(4 generated", out), out
    assert re.search(r"\| depth \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", out) and re.search(r"\| image \| [\d.]+", out)


def test_bench_train_speed_skips_the_depth_stage_without_depth(monkeypatch, capsys):
    run_tool(monkeypatch, "bench_train.py", ["speed", *TINY, "data.has_depth=false", "stages.image.use_depth=false",
                                             "steps=1", "warmup=1", "precisions=no"])
    out = capsys.readouterr().out
    assert re.search(r"\| image \| no \| [\d.]+ \|", out) and "| depth |" not in out, out


def test_bench_reader_times_the_loader_with_and_without_the_cache(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "bench_reader.py", [*TINY, "epochs=2", "batch_size=2"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for cache in ("0 MB", "512 MB"):
        for epoch in (1, 2):
            assert re.search(rf"\| {cache} \| {epoch} \| [\d.]+ \| [\d.]+ \|", out), out


def test_bench_produce_runs_and_states_its_allocator(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "bench_produce.py", [*TINY, "num_samples=4", "batch_size=2", "shard_size=2",
                                                   "precisions=no", "repeats=1", "encode_workers=0"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert re.search(r"bench_produce: 32x64, 4 samples in 2 shards.*allocator: ", out), out
    assert re.search(r"no: overlapped writing is [\d.]+x the serial rate", out), out


def test_bench_toy_prints_a_row_per_size(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "bench_toy.py", ["--n", "2", "--sizes", "32x64", "64x128"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "allocator: " in out and re.search(r"\| 32x64 \| \d+ \| \d+ \|", out) and "| 64x128 |" in out, out


@pytest.mark.parametrize("stage,third,extra", [("image", None, []), ("image", "stage step, object-weighted", ["objects=2"]),
                                               ("layout", "plain loop", []),
                                               ("layout", "plain loop", ["stages.layout.loss=hinge"])])
def test_bench_stage_step_times_the_step_beside_its_networks(monkeypatch, capsys, stage, third, extra):
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "bench_stage_step.py", [*TINY, f"stage={stage}", "steps=1", "rounds=1", "classes=4", *extra])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("stage step", "networks alone", "generator alone", third):
        if name:
            assert re.search(rf"\| {name} \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \|", out), out


def test_bench_stage_step_times_a_class_conditioned_layout_stage(monkeypatch, capsys):
    """The step of a class-conditioned layout GAN (the unconditional textbook loop is left out, said)."""
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "bench_stage_step.py", [*TINY, "stage=layout", "steps=1", "rounds=1", "classes=4",
                                                      "stages.layout.class_conditioning=true",
                                                      "stages.layout.presence_weight=10"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert re.search(r"\| stage step \| [\d.]+ \|", out) and "plain loop: left out" in out, out
    assert "| plain loop |" not in out


def test_bench_stage_step_names_a_missing_reference_checkout(monkeypatch, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "bench_stage_step.py", [*TINY, "steps=1", "rounds=1", f"reference={tmp_path}"])
    assert exit_.value.code == 2
    assert "no NVlabs/SPADE checkout there" in capsys.readouterr().err


def _cells(root, variant, per_seed):
    """Finished cells of `variant` under `root`: (mIoU, per-class IoUs of classes road and pole or None) per seed."""
    import json

    for seed, (miou, ious) in enumerate(per_seed):
        cell = root / "cells" / variant.replace(" ", "-") / f"seed-{seed}"
        cell.mkdir(parents=True)
        result = {"miou": miou}
        if ious is not None:
            result |= {"classes": ["road", "pole"], "per_class_iou": ious}
        (cell / "result.json").write_text(json.dumps(result))


def test_compare_cells_pairs_seeds_across_two_studies(monkeypatch, capsys, tmp_path):
    _cells(tmp_path / "a", "x6 0.5", [(0.50, None), (0.52, None), (0.55, None)])
    _cells(tmp_path / "b", "real only", [(0.45, None), (0.50, None), (0.49, None)])
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "compare_cells.py", [str(tmp_path / "a"), "x6 0.5", str(tmp_path / "b"), "real only"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "| 2 | 55.0 | 49.0 | +6.0 |" in out and "A - B paired by seed (3): +4.3 [" in out and "Welch: +4.3 [" in out


def test_compare_cells_keeps_only_the_seeds_asked_for(monkeypatch, capsys, tmp_path):
    _cells(tmp_path / "a", "x6 0.5", [(0.50, None), (0.52, None), (0.55, None)])
    _cells(tmp_path / "b", "real only", [(0.45, None), (0.50, None), (0.49, None)])
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "compare_cells.py", [str(tmp_path / "a"), "x6 0.5", str(tmp_path / "b"), "real only",
                                                   "seeds=1,2"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "| 0 |" not in out and "A - B paired by seed (2): +4.0 [" in out and ": 2 seeds, 53.5" in out
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "compare_cells.py", [str(tmp_path / "a"), "x6 0.5", str(tmp_path / "b"), "real only",
                                                   "seeds=7"])
    assert exit_.value.code == 2 and "seeds=7: no finished cells" in capsys.readouterr().err


def test_compare_cells_per_class_pairs_each_class_and_skips_undefined_ious(monkeypatch, capsys, tmp_path):
    _cells(tmp_path / "a", "gan", [(0.5, [0.90, 0.10]), (0.6, [0.92, float("nan")]), (0.55, [0.94, 0.20])])
    _cells(tmp_path / "b", "real only", [(0.4, [0.80, 0.00]), (0.5, [0.90, 0.30]), (0.45, [0.90, 0.10])])
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "compare_cells.py", [str(tmp_path / "a"), "gan", str(tmp_path / "b"), "real only",
                                                   "per_class=true"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    # road: differences +10, +2, +4 over three seeds; pole: +10 and +10 over the two defined seeds
    assert "| road | 92.0 | 86.7 | +5.3 [" in out
    assert "| pole | 15.0 | 5.0 | +10.0 [+10.0, +10.0] |" in out


def test_compare_cells_per_class_names_cells_without_per_class_iou(monkeypatch, capsys, tmp_path):
    _cells(tmp_path / "a", "gan", [(0.5, None), (0.6, None)])
    _cells(tmp_path / "b", "real only", [(0.4, None), (0.5, None)])
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "compare_cells.py", [str(tmp_path / "a"), "gan", str(tmp_path / "b"), "real only",
                                                   "per_class=true"])
    assert exit_.value.code == 2
    assert "has no per-class IoU" in capsys.readouterr().err


def test_image_copies_tells_a_copy_of_its_own_photo_from_another_photos_image():
    tool = runpy.run_path(str(TOOLS / "image_copies.py"), run_name="image_copies")
    rng = np.random.default_rng(0)
    photos = {name: rng.integers(0, 256, (8, 12, 3), dtype=np.uint8) for name in ("a", "b", "c")}
    near_a = np.clip(photos["a"][:, ::-1].astype(int) + 2, 0, 255).astype(np.uint8)  # a, mirrored, a little brighter
    s = tool["copies"](photos, [("a", True, near_a), ("a", False, photos["b"])])
    assert s["samples"] == 2 and s["own_closest_share"] == 0.5  # the second is b's photo given a's layout
    assert s["photo_to_closest_photo"] > 50  # random photos: about 85 apart
    one = tool["copies"](photos, [("a", True, near_a)])
    assert 0 < one["own"] <= 2 and one["closest_other"] > 50 and one["own_closest_share"] == 1


def test_image_copies_reads_productions_and_draws_their_sheet(monkeypatch, capsys, tmp_path):
    """Two 'productions' of the toy training layouts: one their photos as they are (mirrored where the
    sample says so), one a brighter copy; one line each, and the sheet of photos over both."""
    import io
    import json
    import tarfile

    from synthdata.core.recipe_loading import load_recipe
    from synthdata.data.readers import make_reader
    from synthdata.data.shards import encode_sample

    recipe = load_recipe("toy", [a for a in TINY if a != "recipe=toy"])
    reader = make_reader(recipe.data, recipe.data.train_split)
    for name, shift in (("same", 0), ("brighter", 10)):
        with tarfile.open(tmp_path / f"{name}.tar", "w") as tar:
            for i in range(len(reader)):
                real, mirrored = reader[i], i % 2 == 1
                image = real["image"][:, ::-1] if mirrored else real["image"]
                sample = {"image": np.clip(image.astype(int) + shift, 0, 255).astype(np.uint8),
                          "layout": real["layout"], "meta": {"layout_source": "real", "hflip": mirrored,
                                                             "layout_id": reader.item_id(i)}}
                for member, data in encode_sample(sample, key=f"s{i:03d}").items():
                    if member != "__key__":
                        data = data if isinstance(data, bytes) else json.dumps(data).encode()
                        info = tarfile.TarInfo(f"s{i:03d}.{member}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
    sheet = tmp_path / "sheet.png"
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, "image_copies.py", [*TINY, f"shards=[{tmp_path / 'same.tar'},{tmp_path / 'brighter.tar'}]",
                                                  f"sheet={sheet}"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "same.tar: 8 samples; to their own layout's photo 0.0" in out and "own photo the closest in 100%" in out
    assert re.search(r"brighter.tar: 8 samples; to their own layout's photo ([5-9]|10)\.\d", out), out
    assert sheet.is_file()
