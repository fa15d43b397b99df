"""`synthdata demo` at the tiny budget: every stage runs, the report is written from the run's numbers."""

import json

import pytest

from synthdata import demo


def test_tiny_demo_end_to_end_and_rerun_reuses_stages(tmp_path, capsys):
    run_dir = tmp_path / "demo"
    assert demo.main([f"run_dir={run_dir}", "demo.budget=tiny"]) == 0
    out = capsys.readouterr().out
    report = (run_dir / "report.md").read_text()

    real = json.loads((run_dir / "segment-real" / "report" / "report.json").read_text())
    mixed = json.loads((run_dir / "segment-real+synthetic" / "report" / "report.json").read_text())
    for r in (real, mixed):
        assert f"{100 * r['metrics']['miou']:.1f}" in report
    assert f"real only:        mIoU {100 * real['metrics']['miou']:.1f}%" in out
    assert "demo report:" in out and str(run_dir / "report.md") in out
    # pictures the report links to exist
    for picture in ("pictures/real_scenes.png", "pictures/synthetic_samples.png", "pictures/composite_samples.png",
                    "compare/compare.png"):
        assert f"]({picture})" in report
        assert (run_dir / picture).is_file()
    assert "FID" in report  # computed or a line saying how to enable it
    manifest = json.loads((run_dir / "generators" / "shards" / "manifest.json").read_text())
    assert sum(s["samples"] for s in manifest["shards"]) == demo.BUDGETS["tiny"].samples

    timings = json.loads((run_dir / "demo_timings.json").read_text())
    assert {"train layout", "train depth", "train image", "produce", "segment real only"} <= set(timings)
    checkpoint = run_dir / "generators" / "checkpoints" / "layout" / "latest.pt"
    mtime = checkpoint.stat().st_mtime_ns
    assert demo.main([f"run_dir={run_dir}", "demo.budget=tiny"]) == 0
    assert checkpoint.stat().st_mtime_ns == mtime  # finished stages are not retrained


def test_unknown_budget_is_a_clear_error(tmp_path, capsys):
    assert demo.main([f"run_dir={tmp_path}", "demo.budget=huge"]) == 2
    assert "'demo.budget' must be one of ['tiny', 'small', 'full'], got 'huge'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(demo.BUDGETS))
def test_budget_sizes_are_buildable(name):
    budget = demo.BUDGETS[name]
    assert budget.height % 16 == 0 and budget.width % 16 == 0
    assert budget.samples % budget.shard_size == 0
