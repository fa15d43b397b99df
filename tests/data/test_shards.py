"""Shard writing and reading: round trips, 16-bit layouts, depth precision, crash safety,
resume, manifests and their verification, refusing to mix class lists."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from synthdata.core.contract import ClassInfo, ShardError
from synthdata.core.palette import default_palette
from synthdata.core.seeding import numpy_rng
from synthdata.data.shard_writer import ShardWriter
from synthdata.data.shards import decode_sample, encode_sample, iter_tar, read_manifest, verify_manifest

CLASSES = ClassInfo(("road", "car", "sky"), default_palette(3))


def random_sample(i: int, num_classes: int = 3, h: int = 32, w: int = 64) -> dict:
    rng = numpy_rng(1234, i)
    layout = rng.integers(0, num_classes, (h, w))
    layout[0, :4] = 255 if num_classes <= 255 else 65535  # some ignore pixels
    return {
        "image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "layout": layout.astype(np.uint8 if num_classes <= 255 else np.uint16),
        "depth": rng.uniform(0.5, 60.0, (h, w)).astype(np.float32),
        "meta": {"id": f"scene.{i:04d}", "seed": i},
    }


def write(out: Path, n: int, shard_size: int = 4, classes: ClassInfo = CLASSES, **kw) -> list[dict]:
    samples = [random_sample(i, classes.num_classes) for i in range(n)]
    with ShardWriter(out, prefix="synth", shard_size=shard_size, classes=classes,
                     recipe={"name": "toy"}, depth_scale=0.001, **kw) as writer:
        for start in range(0, n, shard_size):
            writer.write_shard(start // shard_size, samples[start : start + shard_size])
    writer.finalize_manifest(range((n + shard_size - 1) // shard_size))
    return samples


def test_round_trip_with_synthdata_and_plain_webdataset(tmp_path):
    samples = write(tmp_path, 6)
    manifest = read_manifest(tmp_path)
    assert [s["name"] for s in manifest["shards"]] == ["synth-000000.tar", "synth-000001.tar"]
    assert manifest["num_samples"] == 6 and manifest["classes"] == ["road", "car", "sky"]
    by_id = {s["meta"]["id"].replace(".", "_"): s for s in samples}

    ours = [decode_sample(raw) for raw in iter_tar(str(tmp_path / "synth-000000.tar"))]
    plain = list(wds.WebDataset(str(tmp_path / "synth-{000000..000001}.tar"), shardshuffle=False).decode())
    assert len(ours) == 4 and len(plain) == 6
    assert "depth" not in decode_sample(next(iter_tar(str(tmp_path / "synth-000000.tar"))), depth=False)
    for got in ours:
        want = by_id[got["meta"]["key"]]
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["layout"], want["layout"])
    for raw in plain:  # stock webdataset + PIL, no synthdata code
        want = by_id[raw["__key__"]]
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(raw["image.png"])).convert("RGB")), want["image"])
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(raw["layout.png"]))), want["layout"])
        assert raw["json"]["seed"] == want["meta"]["seed"] and raw["json"]["depth_scale"] == 0.001
        depth = np.asarray(Image.open(io.BytesIO(raw["depth.png"]))).astype(np.float64) * 0.001
        assert np.abs(depth - want["depth"]).max() <= 0.0005 + 1e-5


def test_sixteen_bit_layouts_for_many_classes(tmp_path):
    names = tuple(f"c{i}" for i in range(300))
    many = ClassInfo(names, default_palette(300), ignore_index=65535)
    samples = write(tmp_path, 2, classes=many)
    raw = next(iter_tar(str(tmp_path / "synth-000000.tar")))
    assert np.asarray(Image.open(io.BytesIO(raw["layout.png"]))).dtype == np.uint16
    got = decode_sample(raw)
    assert got["layout"].dtype == np.uint16 and got["layout"].max() == 65535
    np.testing.assert_array_equal(got["layout"], samples[0]["layout"])
    assert read_manifest(tmp_path)["layout_bits"] == 16


def test_depth_precision_unknown_and_saturation():
    depth = np.array([[0.0, np.nan, 1.2344, 70000.0]], np.float32)
    sample = {"image": np.zeros((1, 4, 3), np.uint8), "layout": np.zeros((1, 4), np.uint8),
              "depth": depth, "meta": {"id": "d"}}
    got = decode_sample(encode_sample(sample, depth_scale=0.01))["depth"]
    assert got[0, 0] == 0 and got[0, 1] == 0  # unknown stays unknown
    assert abs(got[0, 2] - 1.2344) <= 0.005 + 1e-5
    assert got[0, 3] == pytest.approx(655.35)  # saturates instead of wrapping around


def test_encode_rejects_bad_samples():
    good = random_sample(0)
    with pytest.raises(ShardError, match="missing 'layout'"):
        encode_sample({"image": good["image"], "meta": {"id": "x"}})
    with pytest.raises(ShardError, match="differs from image"):
        encode_sample(dict(good, layout=good["layout"][:10]))
    with pytest.raises(ShardError, match="outside 0..255"):
        encode_sample(dict(good, layout=np.full((32, 64), 300, np.int64)))
    with pytest.raises(ShardError, match=r"labels \[7\] are not among the 3 classes"):
        encode_sample(dict(good, layout=np.full((32, 64), 7, np.uint8)), classes=CLASSES)
    encode_sample(good, classes=CLASSES)  # 0..2 and ignore 255 are fine


def test_rewriting_gives_identical_bytes_and_resume_skips(tmp_path):
    write(tmp_path / "a", 5)
    write(tmp_path / "b", 5)
    for name in ("synth-000000.tar", "synth-000001.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with ShardWriter(tmp_path / "a", prefix="synth", shard_size=4, classes=CLASSES,
                     recipe={"name": "toy"}, depth_scale=0.001) as writer:
        assert writer.is_complete(0) and not writer.is_complete(2)
        assert writer.write_shard(0, [random_sample(0)]) is False


def test_refuses_to_mix_classes_or_recipes(tmp_path):
    write(tmp_path, 2)
    other = ClassInfo(("road", "person", "sky"), default_palette(3))
    with pytest.raises(ShardError, match="never mix"):
        ShardWriter(tmp_path, prefix="synth", shard_size=4, classes=other, recipe={"name": "toy"}, depth_scale=0.001)
    with pytest.raises(ShardError, match="never mix"):
        ShardWriter(tmp_path, prefix="synth", shard_size=4, classes=CLASSES, recipe={"name": "camvid"}, depth_scale=0.001)


def test_verify_manifest_reports_sha_mismatch_and_unlisted(tmp_path):
    write(tmp_path, 8)
    assert verify_manifest(tmp_path) == []
    shard = tmp_path / "synth-000001.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF
    shard.write_bytes(bytes(data))
    (tmp_path / "extra-000000.tar").write_bytes(b"")
    problems = verify_manifest(tmp_path)
    assert any("synth-000001.tar: sha256 mismatch" in p for p in problems)
    assert any("extra-000000.tar: not listed" in p for p in problems)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ShardError, match="no manifest.json"):
        verify_manifest(tmp_path)


def test_truncated_or_garbled_shard_is_named(tmp_path):
    write(tmp_path, 4)
    shard = tmp_path / "synth-000000.tar"
    whole = shard.read_bytes()
    shard.write_bytes(whole[:5000])
    with pytest.raises(ShardError, match="synth-000000.tar"):
        list(iter_tar(str(shard), expected=4))
    garbled = bytearray(whole)
    garbled[5] ^= 0xFF  # a byte of the first member's name: its header checksum no longer holds
    shard.write_bytes(bytes(garbled))
    with pytest.raises(ShardError, match="synth-000000.tar.*checksum"):
        list(iter_tar(str(shard)))


CRASHING_WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import synthdata.data.shard_writer as shards
    from test_shards import CLASSES, random_sample
    slow_add = shards._add_member
    def add_member(tar, name, data):  # slow enough to be killed while a shard is half written
        time.sleep(0.05)
        slow_add(tar, name, data)
    shards._add_member = add_member
    with shards.ShardWriter({out!r}, prefix="synth", shard_size=4, classes=CLASSES,
                            recipe={{"name": "toy"}}, depth_scale=0.001) as writer:
        for index in range(3):
            writer.write_shard(index, [random_sample(i) for i in range(4 * index, 4 * index + 4)])
    """
)


def test_killed_writer_leaves_no_partial_shard_and_rerun_completes(tmp_path):
    out = tmp_path / "crash"
    script = CRASHING_WRITER.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 300  # generous: on a loaded 2-core machine the child's imports alone took over 60 s
    try:
        # kill once shard 0 is complete and shard 1 is half written
        while not (list(out.glob(".synth-000001.tar.*.tmp")) and (out / "synth-000000.tar.json").exists()):
            assert proc.poll() is None, "writer exited before it could be killed"
            assert time.time() < deadline, "writer never started shard 1"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finals = sorted(p.name for p in out.glob("*.tar"))
    assert "synth-000002.tar" not in finals
    for name in finals:  # whatever exists under a final name is whole
        json_side = json.loads((out / f"{name}.json").read_text())
        assert len(list(iter_tar(str(out / name)))) == json_side["samples"] == 4

    write(out, 12)  # the rerun: skips complete shards, writes the rest
    write(tmp_path / "clean", 12)  # an uninterrupted run
    assert not list(out.glob(".*.tmp"))
    assert verify_manifest(out) == []
    clean = read_manifest(tmp_path / "clean")["shards"]
    assert read_manifest(out)["shards"] == clean
    for entry in clean:
        assert (out / entry["name"]).read_bytes() == (tmp_path / "clean" / entry["name"]).read_bytes()


@pytest.mark.parametrize("num_classes", [3, 300])
def test_readme_stock_webdataset_snippet_gets_masks_right(tmp_path, monkeypatch, num_classes):
    """docs/python.md's stock-webdataset snippet, run as written (only the shard path changed): images
    uint8 RGB, masks the exact integer label maps, 8- and 16-bit alike."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "docs" / "python.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "runs/g/shards/synth-" in b)
    assert "synthdata" not in block
    names = tuple(f"c{i}" for i in range(num_classes))
    classes = ClassInfo(names, default_palette(num_classes), ignore_index=255 if num_classes <= 255 else 65535)
    out = tmp_path / "runs" / "g" / "shards"
    samples = write(out, 16, classes=classes)  # four shards, as the snippet's brace pattern names
    monkeypatch.chdir(tmp_path)
    seen: list = []
    exec(block.replace("    break\n", "    seen.append((image, mask))\n"), {"seen": seen})
    assert len(seen) == 16
    for (image, mask), want in zip(seen, samples):
        assert image.dtype == np.uint8 and image.shape == want["image"].shape
        np.testing.assert_array_equal(image, want["image"])
        assert mask.dtype == want["layout"].dtype and mask.ndim == 2
        np.testing.assert_array_equal(mask, want["layout"])
