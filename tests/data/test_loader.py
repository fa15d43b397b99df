"""Streaming loaders: decoding, distributed/worker splits, mixing ratios, augmentation,
reader sources, bad input (corrupt shards, missing members, class mismatches, empty patterns)."""

from __future__ import annotations

import collections
import io
import json
import re
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from synthdata.core.contract import ClassInfo, ShardError
from synthdata.core.palette import default_palette
from synthdata.core.recipe import DataConfig
from synthdata.core.seeding import numpy_rng
from synthdata.data.loader import Source, make_loader, source_classes
from synthdata.data.readers.base import DatasetReader
from synthdata.data.shard_writer import ShardWriter

CLASSES = ClassInfo(("road", "car", "sky"), default_palette(3))


def random_sample(i: int, tag: str = "s", h: int = 32, w: int = 64) -> dict:
    rng = numpy_rng(99, i)
    return {
        "image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "layout": rng.integers(0, 3, (h, w)).astype(np.uint8),
        "depth": rng.uniform(1.0, 50.0, (h, w)).astype(np.float32),
        "meta": {"id": f"{tag}.{i}"},
    }


def write(out: Path, n: int, shard_size: int = 4, tag: str = "s", classes: ClassInfo = CLASSES,
          size: tuple[int, int] = (32, 64)) -> list[dict]:
    samples = [random_sample(i, tag, *size) for i in range(n)]
    with ShardWriter(out, prefix=tag, shard_size=shard_size, classes=classes,
                     recipe={"name": "toy"}, depth_scale=0.001) as writer:
        for start in range(0, n, shard_size):
            writer.write_shard(start // shard_size, samples[start : start + shard_size])
    writer.finalize_manifest()
    return samples


def keys(loader) -> list[str]:
    return [k for batch in loader for k in batch["key"]]


class TinyReader(DatasetReader):
    """An in-memory reader of random samples (no files)."""

    needs_root = False
    default_classes = CLASSES.names
    default_palette = CLASSES.palette
    has_depth = True

    def _items(self):
        return list(range(6))

    def _load(self, item):
        return random_sample(item, "reader")


def test_batches_match_written_samples(tmp_path):
    samples = write(tmp_path, 10)
    loader = make_loader(Source(str(tmp_path), name="synthetic"), batch_size=4, augment=False,
                         shuffle=False, with_depth=True)
    batches = list(loader)
    assert [len(b["key"]) for b in batches] == [4, 4, 2]
    first = batches[0]
    assert first["image"].shape == (4, 3, 32, 64) and first["image"].dtype == torch.float32
    assert first["layout"].dtype == torch.int64 and first["depth"].shape == (4, 1, 32, 64)
    assert first["source"] == ["synthetic"] * 4 and first["key"][0] == "s_0"
    want = samples[1]
    np.testing.assert_array_equal((first["image"][1] * 255).round().byte().permute(1, 2, 0).numpy(), want["image"])
    np.testing.assert_array_equal(first["layout"][1].numpy(), want["layout"])
    assert (first["depth"][1, 0].numpy() - want["depth"]).__abs__().max() <= 0.0005 + 1e-5
    assert loader.classes.same_as(CLASSES) and source_classes(str(tmp_path)).names == CLASSES.names


@pytest.mark.filterwarnings("ignore:source 'real' has 2 shards")
@pytest.mark.parametrize("num_shards", [6, 2])  # more and fewer shards than 2 ranks x 2 workers
def test_two_ranks_two_workers_read_each_sample_once(tmp_path, num_shards):
    n = 24
    write(tmp_path, n, shard_size=n // num_shards)
    seen = []
    for rank in range(2):
        loader = make_loader(str(tmp_path), batch_size=3, augment=False, shuffle=True, num_workers=2,
                             rank=rank, world_size=2, seed=3)
        seen += keys(loader)
    assert sorted(seen) == sorted(f"s_{i}" for i in range(n))


def test_rank_and_world_size_come_from_the_launcher(tmp_path, monkeypatch):
    write(tmp_path, 8, shard_size=2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    seen = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        seen.append(keys(make_loader(str(tmp_path), batch_size=2, augment=False, shuffle=False)))
    assert len(seen[0]) == len(seen[1]) == 4 and not set(seen[0]) & set(seen[1])


def test_warns_when_fewer_shards_than_readers(tmp_path):
    write(tmp_path, 8, shard_size=4)
    with pytest.warns(UserWarning, match="2 shards for 2 processes x 2 workers"):
        make_loader(str(tmp_path), batch_size=2, num_workers=2, rank=0, world_size=2)


def test_mixing_ratio_holds_and_is_deterministic(tmp_path):
    write(tmp_path / "real", 16, tag="real", size=(4, 4))  # tiny: 10,000 decodes
    write(tmp_path / "synth", 16, tag="synth", size=(4, 4))
    sources = [Source(str(tmp_path / "real"), weight=1.0, name="real"),
               Source(str(tmp_path / "synth"), weight=3.0, name="synth")]
    loader = make_loader(sources, batch_size=100, augment=False, epoch_length=10_000, seed=5)
    names = [s for batch in loader for s in batch["source"]]
    assert len(names) == 10_000 and len(loader) == 100
    share = collections.Counter(names)["synth"] / len(names)
    assert abs(share - 0.75) < 0.02
    again = make_loader(sources, batch_size=100, augment=False, epoch_length=400, seed=5)
    first = make_loader(sources, batch_size=100, augment=False, epoch_length=400, seed=5)
    assert keys(again) == keys(first)
    assert keys(first) != keys(first)  # the next epoch reshuffles


def test_training_stream_with_workers_has_fixed_length(tmp_path):
    write(tmp_path, 8)
    loader = make_loader(str(tmp_path), batch_size=4, epoch_length=20, num_workers=2, seed=1)
    assert len(loader) == 5 and len(list(loader)) == 5
    with pytest.raises(ValueError, match="epoch_length must be >= 1"):
        make_loader(str(tmp_path), batch_size=4, epoch_length=0)


def test_augmentation_is_joint_and_keeps_labels_and_depth_values(tmp_path):
    samples = write(tmp_path, 4)
    loader = make_loader(str(tmp_path), batch_size=4, augment=True, shuffle=False, with_depth=True,
                         crop=(16, 32), seed=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 16, 32) and batch["layout"].shape == (4, 16, 32)
    for i, key in enumerate(batch["key"]):
        want = samples[int(key.split("_")[1])]
        # nearest interpolation: no new labels and no blended depth values
        assert set(batch["layout"][i].unique().tolist()) <= set(np.unique(want["layout"]).tolist())
        steps = np.rint(batch["depth"][i].numpy().astype(np.float64) / 0.001).astype(int)
        assert np.isin(steps, np.rint(want["depth"].astype(np.float64) / 0.001).astype(int)).all()
    again = next(iter(make_loader(str(tmp_path), batch_size=4, augment=True, shuffle=False, with_depth=True,
                                  crop=(16, 32), seed=0)))
    assert torch.equal(again["image"], batch["image"]) and torch.equal(again["depth"], batch["depth"])
    plain = make_loader(str(tmp_path), batch_size=4, augment=False, shuffle=False, crop=(16, 32))
    centre = next(iter(plain))
    np.testing.assert_array_equal(centre["layout"][0].numpy(), samples[0]["layout"][8:24, 16:48])
    assert not torch.equal(centre["image"], batch["image"])  # augmentation did something


def test_reader_source_and_as_tuple(tmp_path):
    reader = TinyReader(DataConfig(reader="tiny", height=32, width=64), "train")
    write(tmp_path, 6)
    images, layouts = next(iter(make_loader([Source(reader=reader, name="real")], batch_size=6,
                                            augment=False, shuffle=False, as_tuple=True)))
    assert images.shape == (6, 3, 32, 64) and layouts.dtype == torch.int64
    mixed = make_loader([Source(reader=reader, name="real"), Source(str(tmp_path), name="synthetic")],
                        batch_size=4, augment=False, shuffle=False)
    assert sorted(keys(mixed)) == sorted([f"reader.{i}" for i in range(6)] + [f"s_{i}" for i in range(6)])


def test_pipe_urls(tmp_path):
    write(tmp_path, 8)
    loader = make_loader(f"pipe:cat {tmp_path}/s-{{000000..000001}}.tar", batch_size=4, augment=False,
                         shuffle=False)
    assert keys(loader) == [f"s_{i}" for i in range(8)]
    assert loader.classes is None  # no manifest beside pipe: URLs
    listed = make_loader(Source([f"pipe:cat {tmp_path}/s-000001.tar", str(tmp_path / "s-000000.tar")]),
                         batch_size=4, augment=False, shuffle=False)
    assert keys(listed) == [f"s_{i}" for i in (4, 5, 6, 7, 0, 1, 2, 3)]
    assert listed.classes.same_as(CLASSES)  # the manifest beside the local shard
    with pytest.raises(ShardError, match="unreadable shard pipe:cat .*missing.tar.*exit 1"):
        keys(make_loader(f"pipe:cat {tmp_path}/missing.tar 2>/dev/null", batch_size=4, augment=False))


def test_mismatched_classes_between_sources(tmp_path):
    write(tmp_path / "a", 4)
    write(tmp_path / "b", 4, classes=ClassInfo(("road", "person", "sky"), default_palette(3)))
    with pytest.raises(ShardError, match="disagree on classes"):
        make_loader([Source(str(tmp_path / "a")), Source(str(tmp_path / "b"), name="synthetic")], batch_size=2)


def test_empty_pattern_and_missing_manifest(tmp_path):
    with pytest.raises(ShardError, match="matched no shards"):
        make_loader(str(tmp_path / "x-*.tar"), batch_size=2, epoch_length=10)
    with pytest.raises(ShardError, match="not found"):
        make_loader(str(tmp_path / "x-{000000..000001}.tar"), batch_size=2)
    with pytest.raises(ShardError, match="no manifest.json"):
        make_loader(str(tmp_path), batch_size=2)


def test_corrupt_shard_errors_or_is_skipped(tmp_path):
    write(tmp_path, 8)
    shard = tmp_path / "s-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    with pytest.raises(ShardError, match=re.escape("s-000001.tar")):
        keys(make_loader(str(tmp_path), batch_size=2, augment=False, shuffle=False))
    with pytest.warns(UserWarning, match="skipped bad data"):
        got = keys(make_loader(str(tmp_path), batch_size=2, augment=False, shuffle=False, tolerate_errors=True))
    assert got[:4] == [f"s_{i}" for i in range(4)] and len(got) < 8


def test_verify_source_names_a_changed_shard_and_reads_nothing_without_a_manifest(tmp_path, monkeypatch):
    """Issue 34: a shard whose bytes differ from its manifest's sha256 is named; a pattern over a
    folder without a manifest has nothing to compare with, and no shard is read for it."""
    import shutil

    from synthdata.data import shards as shards_module
    from synthdata.data.loader import verify_source

    write(tmp_path / "a", 8)
    assert verify_source(str(tmp_path / "a")) == 2 == verify_source(str(tmp_path / "a" / "*.tar"))
    shard = tmp_path / "a" / "s-000001.tar"
    with open(shard, "r+b") as f:  # past the last member: the loader itself reads the shard as before
        f.seek(-1, 2)
        f.write(b"\x01")
    assert len(keys(make_loader(str(tmp_path / "a"), batch_size=2, augment=False, shuffle=False))) == 8
    with pytest.raises(ShardError, match=re.escape(f"{shard}: its sha256 differs from the one "
                                                   f"{tmp_path / 'a' / 'manifest.json'} records")):
        verify_source(Source(str(tmp_path / "a"), name="synthetic"))
    (tmp_path / "b").mkdir()
    shutil.copy(shard, tmp_path / "b")
    monkeypatch.setattr(shards_module, "sha256_file", lambda path: pytest.fail(f"read {path}"))
    assert verify_source(str(tmp_path / "b" / "*.tar")) == 0
    assert verify_source(Source(reader=TinyReader(DataConfig(reader="tiny"), "train"))) == 0


def test_labels_beyond_the_manifest_classes_name_the_sample(tmp_path):
    """Issue 34: a label the manifest's classes do not have (40 of 3) would crash a segmenter's
    loss; the loader names the sample instead (skips it with tolerate_errors); ignore passes."""
    samples = [random_sample(i) for i in range(4)]
    samples[2]["layout"][0, 0] = 40
    samples[1]["layout"][0, 0] = 255  # ignore_index: fine
    wide = ClassInfo(CLASSES.names + tuple(f"x{i}" for i in range(38)), default_palette(41))
    with ShardWriter(tmp_path, prefix="s", shard_size=4, classes=wide, recipe={"name": "toy"}, depth_scale=0.001) as w:
        w.write_shard(0, samples)
    manifest = w.finalize_manifest()
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, **CLASSES.to_dict()}))
    with pytest.raises(ShardError, match=re.escape(f"sample 's_2' in {tmp_path / 's-000000.tar'}: labels [40] are not "
                                                   "among the 3 classes (0..2) nor ignore_index 255")):
        keys(make_loader(str(tmp_path), batch_size=2, augment=False, shuffle=False))
    with pytest.warns(UserWarning, match="labels \\[40\\]"):
        assert keys(make_loader(str(tmp_path), batch_size=2, augment=False, shuffle=False,
                                tolerate_errors=True)) == ["s_0", "s_1", "s_3"]


def test_sample_missing_layout(tmp_path):
    bad = tmp_path / "bad-000000.tar"
    with tarfile.open(bad, "w") as tar:
        for name, data in [("a.image.png", b"not read"), ("a.json", b"{}")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ShardError, match="'a' in .*bad-000000.tar: missing layout.png"):
        keys(make_loader(str(bad), batch_size=1, augment=False))
    with pytest.warns(UserWarning, match="missing layout.png"):
        assert keys(make_loader(str(bad), batch_size=1, augment=False, tolerate_errors=True)) == []


def test_docs_loader_snippets_run_as_written(tmp_path, monkeypatch):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "loader.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) == 2
    write(tmp_path / "shards" / "real", 8, tag="real")
    write(tmp_path / "shards" / "synth", 8, tag="synth")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/loader.md", "exec"), namespace)
    assert isinstance(namespace["loss"], torch.Tensor) and namespace["logits"].shape == (4, 3, 32, 64)


def test_docs_stock_webdataset_snippet_runs_as_written(tmp_path, monkeypatch):
    """docs/loader.md's stock-pipeline snippet (fenced `py`) reads our shards as written."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "loader.md").read_text()
    (block,) = re.findall(r"```py\n(.*?)```", doc, flags=re.S)
    write(tmp_path / "shards" / "real", 8, tag="real")  # 2 shards: one per DataLoader worker
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "docs/loader.md", "exec"), namespace)
    assert namespace["images"].shape == (4, 3, 32, 64) and namespace["images"].dtype == torch.float32
    assert namespace["masks"].shape == (4, 32, 64) and namespace["masks"].dtype == torch.int64


def test_loader_benchmark_runs(monkeypatch, capsys, glibc_allocator):
    import runpy
    import sys

    tool = Path(__file__).resolve().parents[2] / "tools" / "bench_loader.py"
    monkeypatch.setattr(sys, "argv", [str(tool), "--num", "8", "--height", "32", "--width", "64", "--workers", "0",
                                      "--batch-size", "4", "--shard-size", "4", "--passes", "1", "--rounds", "1"])
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        runpy.run_path(str(tool), run_name="__main__")
    finally:  # the tool pins threads for itself; give them back to the other tests
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    out = capsys.readouterr().out
    assert re.search(r"loader benchmark: 8 samples 32x64.*shards [\d.]+ samples/s.*ratio [\d.]+x", out)
    assert re.search(r"tar parsing alone \(no decoding\): ours [\d.]+ CPU ms/sample", out)


def test_loader_benchmark_ratios_survive_a_cpu_time_of_zero():
    # CI once ran the tiny benchmark inside one 10 ms tick of the CPU clock: 0 CPU ms per sample
    import runpy

    tool = Path(__file__).resolve().parents[2] / "tools" / "bench_loader.py"
    times = runpy.run_path(str(tool))["times"]
    assert times(2.5, 0.0) == "n/a"
    assert times(3.0, 2.0) == "1.50x"


def _discs(h: int, w: int, radius: float, seed: int) -> np.ndarray:
    """30 discs of `radius` at random places."""
    rng = numpy_rng(seed)
    ys, xs = np.mgrid[:h, :w]
    layout = np.zeros((h, w), np.uint8)
    for _ in range(30):
        cy, cx = rng.uniform(2 * radius, h - 2 * radius), rng.uniform(2 * radius, w - 2 * radius)
        layout[(ys - cy) ** 2 + (xs - cx) ** 2 < radius**2] = 1
    return layout


def _label_offset(image: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """Centroid of the label-1 pixels minus the intensity centroid of the image, (dy, dx) pixels."""
    g = image.astype(np.float64).mean(-1)
    g = (g - g.min()) / (g.max() - g.min())
    ys, xs = np.mgrid[: g.shape[0], : g.shape[1]]
    my, mx = np.nonzero(layout == 1)
    return np.array([my.mean() - (ys * g).sum() / g.sum(), mx.mean() - (xs * g).sum() / g.sum()])


def test_labels_stay_on_their_images_when_resized_and_augmented():
    """Nearest-neighbour label resizing with pixel centres aligned: OpenCV's plain INTER_NEAREST
    (albumentations' default for masks) shifted labels by about half a pixel against the image."""
    from synthdata.core.imageops import resize_sample
    from synthdata.data.transforms import SampleTransform

    # one small disc at a time at random sub-pixel places, against where the resize puts its centre;
    # 164x250 -> 96x128 is the particle reader's ratio (656 rows -> 384) and a non-integer one across
    rng, ys, xs, shifts = numpy_rng(0), *np.mgrid[:164, :250], []
    for _ in range(200):
        cy, cx = rng.uniform(10, 154), rng.uniform(10, 240)
        layout = (((ys - cy) ** 2 + (xs - cx) ** 2) < 5.3**2).astype(np.uint8)
        sample = resize_sample({"image": np.repeat(layout[..., None] * 255, 3, -1).astype(np.uint8),
                                "layout": layout}, 96, 128)
        oy, ox = np.nonzero(layout)
        my, mx = np.nonzero(sample["layout"])
        shifts.append([my.mean() - ((oy.mean() + 0.5) * 96 / 164 - 0.5), mx.mean() - ((ox.mean() + 0.5) * 128 / 250 - 0.5)])
    assert np.abs(np.mean(shifts, axis=0)).max() < 0.05  # INTER_NEAREST: +0.5 both ways
    offsets = []
    for seed in range(20):
        layout = _discs(384, 512, 12.3, seed=seed)
        out = SampleTransform(augment=True, crop=(256, 256), with_depth=False, seed=seed)(
            {"image": np.repeat(layout[..., None] * 255, 3, -1).astype(np.uint8), "layout": layout})
        offsets.append(_label_offset(out["image"], out["layout"]))
    assert np.abs(np.mean(offsets, axis=0)).max() < 0.15  # INTER_NEAREST: 0.4 down, 0.2 right


def test_workers_start_after_opencv_used_its_threads_in_this_process(tmp_path):
    """OpenCV's thread pool, busy in the parent before the DataLoader forks its workers, hung every
    worker in its first OpenCV call (found when the bad-input catalogue ran before this file in one
    process). In a subprocess, so a hang is a timeout rather than a stuck suite."""
    import subprocess
    import sys
    import textwrap

    write(tmp_path / "shards", 8)
    code = textwrap.dedent(f"""
        import cv2, numpy as np
        cv2.setNumThreads(4)
        for _ in range(20):  # OpenCV's parallel_for spins up its pool
            cv2.GaussianBlur(np.zeros((1024, 1024, 3), np.uint8), (31, 31), 0)
        from synthdata.data.loader import Source, make_loader
        loader = make_loader(Source({str(tmp_path / 'shards')!r}), batch_size=2, augment=False, shuffle=False,
                             num_workers=2)
        print(sum(len(b["key"]) for b in loader))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "8"
