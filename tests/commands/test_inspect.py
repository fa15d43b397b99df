"""`synthdata inspect`: counts, class frequencies, problems, and the contact sheet."""

from __future__ import annotations

import cv2
import numpy as np

from synthdata.core.contract import ClassInfo
from synthdata.core.palette import default_palette
from synthdata.data.shard_writer import ShardWriter
from synthdata.inspection import main

CLASSES = ClassInfo(("road", "car", "sky"), default_palette(3))


def write(out, n=6, shard_size=4):
    samples = []
    for i in range(n):
        layout = np.zeros((32, 64), np.uint8)
        layout[16:] = 1  # half road, half car
        layout[0, :] = 255
        samples.append({"image": np.full((32, 64, 3), i * 20, np.uint8), "layout": layout,
                        "depth": np.full((32, 64), 5.0, np.float32), "meta": {"id": f"k{i}", "source": "synthetic"}})
    with ShardWriter(out, prefix="synth", shard_size=shard_size, classes=CLASSES, recipe={"name": "toy"},
                     depth_scale=0.001) as writer:
        for start in range(0, n, shard_size):
            writer.write_shard(start // shard_size, samples[start : start + shard_size])
    writer.finalize_manifest()


def test_inspect_prints_statistics_and_writes_contact_sheet(tmp_path, capsys):
    write(tmp_path / "shards")
    sheet = tmp_path / "sheet.png"
    assert main([str(tmp_path / "shards"), "n=3", f"out={sheet}"]) == 0
    out = capsys.readouterr().out
    assert "shards: 2   samples: 6" in out and "'64x32': 6" in out
    assert "manifest: recipe toy" in out and "sources: {'synthetic': 6}" in out
    # rows 1..15 road, 16..31 car, row 0 ignore: 15/32 and 16/32 of the pixels
    assert "road" in out and f"{15 / 32:.2%}" in out and f"{16 / 32:.2%}" in out
    assert "depth: in 6 samples, 100.0% of pixels known, range 5..5" in out
    assert "inspect: 6 samples in 2 shards, 0 problems, contact sheet" in out
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] >= 3 * 32 and image.shape[1] >= 3 * 64


def test_inspect_reports_problems(tmp_path, capsys):
    write(tmp_path / "shards")
    shard = tmp_path / "shards" / "synth-000001.tar"
    shard.write_bytes(shard.read_bytes()[:2000])
    assert main([str(tmp_path / "shards" / "synth-{000000..000001}.tar"), "n=0"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM: corrupt, truncated or unreadable shard" in out and "synth-000001.tar" in out
    assert main([str(tmp_path / "shards"), "n=0"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().out


def test_inspect_usage_errors(tmp_path, capsys):
    assert main([]) == 2
    assert main([str(tmp_path / "nothing-*.tar")]) == 2
    assert "matched no shards" in capsys.readouterr().err
    assert main([str(tmp_path), "bogus=1"]) == 2
    assert "unknown argument 'bogus'" in capsys.readouterr().err


def test_manifest_cannot_point_outside_its_folder(tmp_path, capsys):
    """Issue 15, defect 7: '../x.tar' or absolute shard names in a manifest are refused, not followed."""
    import json
    import shutil

    write(tmp_path / "shards")
    shutil.copy(tmp_path / "shards" / "synth-000000.tar", tmp_path / "outside.tar")
    manifest_path = tmp_path / "shards" / "manifest.json"
    original = json.loads(manifest_path.read_text())
    for name in ("../outside.tar", str(tmp_path / "outside.tar")):
        manifest = json.loads(json.dumps(original))
        manifest["shards"][0]["name"] = name
        manifest_path.write_text(json.dumps(manifest))
        assert main([str(tmp_path / "shards"), "n=0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "manifest.json" in err[0] and name in err[0]


def test_bad_argument_values_are_one_line(tmp_path, capsys):
    """Issue 15, defect 5: `inspect limit=abc` was a ValueError traceback."""
    write(tmp_path / "shards")
    for bad in ("limit=abc", "n=-1", "verify=maybe"):
        assert main([str(tmp_path / "shards"), bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and bad.split("=")[0] in err[0]
