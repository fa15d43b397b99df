"""Reports: files exist and hold the numbers; `synthdata compare` tabulates differences."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthdata.compare import main as compare_main
from synthdata.core.contract import ClassInfo
from synthdata.core.palette import default_palette
from synthdata.metrics.miou import ConfusionMatrix
from synthdata.metrics.report import write_report

CLASSES = ClassInfo(("road", "car", "sky"), default_palette(3), 255)


def metrics_for(seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 3, (2, 8, 12), generator=gen)
    pred = torch.where(torch.rand(2, 8, 12, generator=gen) < 0.7, target, torch.randint(0, 3, (2, 8, 12), generator=gen))
    cm = ConfusionMatrix(3, 255)
    cm.update(pred, target)
    out = cm.compute()
    out["examples"] = [{"image": np.zeros((8, 12, 3), np.uint8), "layout": target[0].numpy(), "pred": pred[0].numpy()}]
    return out


def test_write_report_files_hold_the_numbers(tmp_path):
    metrics = metrics_for(0)
    extra = tmp_path / "elsewhere.png"
    extra.write_bytes(b"\x89PNG fake")
    info = {"steps": 7, "protocol": {"height": 8, "width": 12, "ignore_index": 255}}
    json_path, md_path = write_report(tmp_path / "rep", title="real only", metrics=metrics,
                                      classes=CLASSES, info=info, images={"extra": extra})
    report = json.loads(json_path.read_text())
    assert report["metrics"]["miou"] == pytest.approx(metrics["miou"])
    assert report["metrics"]["per_class_iou"] == pytest.approx(metrics["per_class_iou"])
    assert report["info"]["steps"] == 7 and report["classes"]["classes"] == ["road", "car", "sky"]
    assert "examples" not in report["metrics"]
    md = md_path.read_text()
    assert f"{100 * metrics['miou']:.1f}" in md and "| car |" in md and "height: 8" in md
    for name in ("confusion_matrix.png", "per_class_iou.png", "predictions.png", "elsewhere.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
        assert f"({name})" in md


def test_nan_iou_becomes_null_and_dash(tmp_path):
    cm = ConfusionMatrix(3, 255)
    cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    json_path, md_path = write_report(tmp_path, title="t", metrics=cm.compute(), classes=CLASSES, info={})
    assert json.loads(json_path.read_text())["metrics"]["per_class_iou"] == [1.0, None, None]
    assert "| car | - | - |" in md_path.read_text()


def test_compare_table_has_difference_column(tmp_path, capsys):
    a, _ = write_report(tmp_path / "a", title="real", metrics=metrics_for(1), classes=CLASSES, info={})
    b, _ = write_report(tmp_path / "b", title="real+synthetic", metrics=metrics_for(2), classes=CLASSES, info={})
    assert compare_main([str(a), str(tmp_path / "b"), f"out={tmp_path / 'cmp'}"]) == 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    delta = 100 * (rb["metrics"]["miou"] - ra["metrics"]["miou"])
    assert "| real | real+synthetic | difference |" in md and f"{delta:+.1f}" in md
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    assert "compared 2 reports" in capsys.readouterr().out


def test_compare_rejects_missing_or_mismatched_reports(tmp_path, capsys):
    assert compare_main([str(tmp_path / "nope.json")]) == 2
    assert "report not found" in capsys.readouterr().err
    a, _ = write_report(tmp_path / "a", title="a", metrics=metrics_for(1), classes=CLASSES, info={})
    other = ClassInfo(("x", "y", "z"), default_palette(3), 255)
    b, _ = write_report(tmp_path / "b", title="b", metrics=metrics_for(1), classes=other, info={})
    assert compare_main([str(a), str(b), f"out={tmp_path}"]) == 2
    assert "other classes" in capsys.readouterr().err


def test_protocol_says_when_val_is_not_a_split_of_the_dataset(tmp_path):
    """`data.val_fraction` or `data.allow_train_as_val`: the reader's note goes into the report's protocol."""
    from synthdata.core.recipe_loading import load_recipe
    from synthdata.metrics.evaluation import run_info

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    recipe = load_recipe("toy", [])
    plain = run_info(recipe, checkpoint=checkpoint, split="val", num_images=3, window=None)
    assert "held_out" not in plain["protocol"]
    note = "'val' is the training images (data.allow_train_as_val=true): not held out"
    noted = run_info(recipe, checkpoint=checkpoint, split="val", num_images=3, window=None, split_note=note)
    assert noted["protocol"]["held_out"] == note
