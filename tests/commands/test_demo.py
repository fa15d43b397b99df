"""`synthdata demo` at the tiny budget: every stage runs, the segmenter comparison is a small study
(real only vs the best variant, 2 seeds) and the report states its table and intervals from the
run's numbers."""

import json
from pathlib import Path

import pytest

from synthdata.commands import demo
from synthdata.experiments.study import read_variants


def _bounds(iv):
    return f"[{100 * iv['lo']:+.1f}, {100 * iv['hi']:+.1f}]"


def test_tiny_demo_end_to_end_and_rerun_reuses_stages(tmp_path, capsys):
    run_dir = tmp_path / "demo"
    assert demo.main([f"run_dir={run_dir}", "demo.budget=tiny"]) == 0
    out = capsys.readouterr().out
    report = (run_dir / "report.md").read_text()
    tiny = demo.BUDGETS["tiny"]

    # the comparison is a study: 2 arms x the budget's seeds, one shared composite production
    study = json.loads((run_dir / "comparison" / "study" / "report.json").read_text())
    rows = {r["variant"]: r for r in study["summary"]["rows"]}
    assert list(rows) == ["real only", demo.BEST_VARIANT]
    results = sorted((run_dir / "comparison" / "cells").glob("*/seed-*/result.json"))
    assert len(results) == 2 * tiny.seeds
    best = rows[demo.BEST_VARIANT]
    assert best["samples"]["synthetic"] > 0 and rows["real only"]["samples"]["synthetic"] == 0
    # the report states the paired difference with both intervals, the table and every seed's mIoU
    t, boot = best["t_interval"], best["bootstrap"]
    assert best["paired_seeds"] == [0, 1] and t["lo"] is not None
    interval_line = (f"{100 * t['mean']:+.1f} mIoU points ({tiny.seeds} seeds, paired by seed), "
                     f"95% interval over seeds {_bounds(t)}, 95% per-image bootstrap interval {_bounds(boot)}; "
                     f"verdict: {best['verdict']}")
    assert interval_line in report and f"difference: {interval_line}" in out
    assert "| arm | seeds | mIoU % mean +- std | mIoU per seed | difference [95% t over seeds] |" in report
    for r in rows.values():
        assert f"| {r['variant']} | {tiny.seeds} | {100 * r['miou_mean']:.1f} +- {100 * r['miou_std']:.1f} |" in report
        assert f"{r['variant']}: mIoU {100 * r['miou_mean']:.1f} +- {100 * r['miou_std']:.1f}%" in out
    for path in results:
        assert f"{100 * json.loads(path.read_text())['miou']:.1f}" in report
    assert "demo report:" in out and str(run_dir / "report.md") in out
    # pictures the report links to exist: real scenes, GAN samples, the synthetic arm's composites, per-class bars
    for picture in ("pictures/real_scenes.png", "pictures/synthetic_samples.png", "pictures/composite_samples.png",
                    "comparison/study/per_class_difference.png", "comparison/study/differences.png"):
        assert f"]({picture})" in report
        assert (run_dir / picture).is_file()
    assert "FID" in report  # computed or a line saying how to enable it
    manifest = json.loads((run_dir / "generators" / "shards-gan" / "manifest.json").read_text())
    assert sum(s["samples"] for s in manifest["shards"]) == tiny.gan_samples
    (production,) = json.loads((run_dir / "comparison" / "study" / "plan.json").read_text())["productions"].values()
    manifest = json.loads((Path(production["shards"]) / "manifest.json").read_text())
    assert sum(s["samples"] for s in manifest["shards"]) == tiny.samples

    timings = json.loads((run_dir / "demo_timings.json").read_text())
    assert {"train layout", "train depth", "train image", "produce GAN samples", "segmenter study"} <= set(timings)
    assert "| &nbsp;&nbsp;of which: segmenter, real only, seed 0 | " in report
    checkpoint = run_dir / "generators" / "checkpoints" / "layout" / "latest.pt"
    before = {p: p.stat().st_mtime_ns for p in [checkpoint, *results]}
    assert demo.main([f"run_dir={run_dir}", "demo.budget=tiny"]) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished stages and cells are not rerun
    assert interval_line in (run_dir / "report.md").read_text()


def test_the_demo_variant_is_the_measured_one():
    # the demo's synthetic arm is the toy-composite study's variant (docs/studies.md)
    assert read_variants("toy-composite")[demo.BEST_VARIANT] == demo.STUDY_VARIANTS[demo.BEST_VARIANT]


def test_unknown_budget_is_a_clear_error(tmp_path, capsys):
    assert demo.main([f"run_dir={tmp_path}", "demo.budget=huge"]) == 2
    assert "'demo.budget' must be one of ['tiny', 'small', 'full'], got 'huge'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(demo.BUDGETS))
def test_budget_sizes_are_buildable(name):
    budget = demo.BUDGETS[name]
    assert budget.height % 16 == 0 and budget.width % 16 == 0
    assert budget.samples % budget.shard_size == 0 and budget.gan_samples % budget.shard_size == 0
    assert budget.seeds >= 2 or name == "tiny"  # the small and full studies report an interval over seeds
