"""`segment` (and `train`, `study`) with experiment trackers (`log_with`): TensorBoard events under the
run dir that hold the logged losses, none by default, and one line with exit 2 for a missing package."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from synthdata.core import tracking
from synthdata.segment import main as segment_main
from synthdata.study import main as study_main
from synthdata.train import main as train_main

TINY = ["recipe=toy", "data.height=32", "data.width=64", "data.split_sizes={train: 8, val: 4, test: 4}",
        "seg.model.encoder_depth=3", "seg.model.decoder_channels=[16,8,8]", "seg.batch_size=4", "eval.batch_size=4",
        "seg.steps=3", "seg.val_every=2", "seg.checkpoint_every=0", "seg.mixed_precision=no"]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from the TensorBoard event files under `folder` (TFRecord framing:
    length u64, its crc u32, the Event proto, its crc u32)."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
    except ImportError:
        from tensorboardX.proto.event_pb2 import Event
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_segment_logs_its_losses_to_tensorboard_under_the_run_dir(tmp_path, capsys):
    if "tensorboard" not in tracking.installed_trackers():
        pytest.skip("TensorBoard is not installed (pip install 'synthdata[tensorboard]')")
    run = tmp_path / "run"
    assert segment_main([*TINY, f"run_dir={run}", "log_with=[tensorboard]"]) == 0
    assert "segment: 3 steps" in capsys.readouterr().out
    logged = scalars(run / "logs" / "segment")
    assert [step for step, _ in logged["segment/loss"]] == [1, 2, 3]
    assert all(loss > 0 for _, loss in logged["segment/loss"]) and len(logged["segment/lr"]) == 3
    assert [step for step, _ in logged["segment/val_miou"]] == [2, 3]  # seg.val_every=2, and the final one
    report = json.loads((run / "report" / "report.json").read_text())
    assert logged["segment/loss"][-1][1] == pytest.approx(report["info"]["final_loss"], rel=1e-6)
    assert logged["segment/val_miou"][-1][1] == pytest.approx(report["metrics"]["miou"], rel=1e-6)
    assert list((run / "logs" / "segment").rglob("hparams.yml"))  # the flattened recipe as the run's config


def test_segment_without_the_key_writes_no_tracker_files(tmp_path):
    run = tmp_path / "run"
    assert segment_main([*TINY, "seg.steps=2", f"run_dir={run}"]) == 0
    assert not (run / "logs").exists() and not list(run.rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("command", ["segment", "train", "study"])
def test_a_missing_tracker_package_stops_before_any_work(tmp_path, capsys, monkeypatch, command):
    monkeypatch.setattr(tracking, "installed_trackers", lambda: set())  # as where none is installed
    main = {"segment": segment_main, "train": train_main, "study": study_main}[command]
    args = [*TINY, f"run_dir={tmp_path / 'run'}", "log_with=[tensorboard]"] + (["stage=layout"] if command == "train" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == "error: log_with: tensorboard is not installed; pip install 'synthdata[tensorboard]' (or leave log_with unset)\n"
    assert not (tmp_path / "run").exists()
