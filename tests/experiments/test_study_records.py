"""Issue 34, studies that can prove their numbers: each cell records the code version that made it
(the report flags a mix), and the report checks every cell against the checksums it recorded when
it finished (its checkpoint, its own result.json)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

from synthdata.core.code_version import code_version, package_root
from synthdata.experiments.cells import RESULT_CHECKSUM, write_result
from synthdata.experiments.study import run_study


def report_only(plan, *extra: str) -> tuple[dict, str]:
    """The study's report of `plan`'s run dir, written from its cells; (summary, report.md)."""
    recipe = dataclasses.replace(plan.recipe, study=dataclasses.replace(plan.recipe.study, report_only=True))
    summary = run_study(recipe, plan.run_dir)
    return summary, (plan.run_dir / "study" / "report.md").read_text()


def rewrite(path, **changes) -> None:
    """A result.json changed the way a version of synthdata would have written it (its checksum resealed)."""
    result = {k: v for k, v in json.loads(path.read_text()).items() if k != RESULT_CHECKSUM}
    result.update(changes)
    write_result(path, {k: v for k, v in result.items() if v is not None})


def test_each_cell_records_the_code_version_and_the_report_flags_a_mix(tmp_path, plan_for, finish_cells):
    plan = plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    finish_cells(plan)
    paths = [c.result_path for c in plan.cells]
    version = code_version()
    assert all(json.loads(p.read_text())["code_version"] == version for p in paths)
    assert version["synthdata"] and ("commit" in version or len(version["sources_sha256"]) == 64)
    if (package_root() / ".git").exists() and shutil.which("git"):  # this checkout: its HEAD, read from .git
        head = subprocess.run(["git", "-C", str(package_root()), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert version["commit"] == head.stdout.strip()
    summary, report = report_only(plan)
    assert "code versions**" not in report and not any("code versions" in v for v in summary["verdicts"])
    assert f"({len(paths)} cells)." in report

    # one cell made by another commit: one warning line, in the report and beside the verdicts
    rewrite(paths[1], code_version={"synthdata": "0.1.0", "commit": "f" * 40})
    summary, report = report_only(plan)
    assert report.count("**Warning: the cells were made by 2 code versions**") == 1
    assert "0.1.0 git ffffffffffff: 1 cells" in report and f": {len(paths) - 1} cells" in report
    assert "made by 2 code versions" in summary["verdicts"][-1]

    # cells from before the record: "unknown", one line saying how many, never a warning of their own
    rewrite(paths[2], code_version=None)
    rewrite(paths[3], code_version=None)
    summary, report = report_only(plan)
    assert report.count("2 of 4 cells finished before cells recorded the code version that made them") == 1
    assert report.count("code versions**") == 1  # still the two known versions, not "unknown" as a third
    rewrite(paths[1], code_version=version)
    summary, report = report_only(plan)
    assert "code versions**" not in report and not any("code versions" in v for v in summary["verdicts"])
    assert report.count("2 of 4 cells finished before cells recorded the code version") == 1


def test_the_report_checks_each_cell_against_what_it_recorded(tmp_path, capsys, plan_for, finish_cells):
    plan = plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}, "quarter": {"seg.synthetic_ratio": 0.25}})
    finish_cells(plan)
    summary, report = report_only(plan)
    assert "- 6 of 6 cells match what they recorded when they finished (each checkpoint against its recorded " \
           "sha256; result.json against its own checksum in 6 cells)." in report
    assert "does not match" not in report and "do not match" not in report
    assert "study report:" not in capsys.readouterr().err
    cells = {(c.variant, c.seed): c for c in plan.cells}

    # a hand-edited result, a deleted checkpoint, an altered one
    edited = cells[("half", 0)].result_path
    result = json.loads(edited.read_text())
    result["miou"] = 0.95
    edited.write_text(json.dumps(result))
    (cells[("quarter", 0)].run_dir / "checkpoints" / "segmenter" / "latest.pt").unlink()
    altered = cells[("quarter", 1)].run_dir / "checkpoints" / "segmenter" / "latest.pt"
    altered.write_bytes(altered.read_bytes()[:-1] + b"!")
    summary, report = report_only(plan)
    err = capsys.readouterr().err
    expected = {"cells/half/seed-0": "result.json was changed after it was written",
                "cells/quarter/seed-0": "its checkpoint cells/quarter/seed-0/checkpoints/segmenter/latest.pt is missing",
                "cells/quarter/seed-1": "its checkpoint cells/quarter/seed-1/checkpoints/segmenter/latest.pt is not "
                                        "the one it scored (sha256 differs from the recorded one)"}
    for cell, problem in expected.items():
        (line,) = [x for x in report.splitlines() if x.startswith(f"- **Warning: {cell} ")]
        assert problem in line
        (line,) = [x for x in err.splitlines() if f"Warning: {cell} " in x]
        assert problem in line
    assert report.count("does not match what it recorded when it finished**") == 3
    assert "- 3 of 6 cells match what they recorded" in report
    verdicts = {line.split(":")[0]: line for line in summary["verdicts"]}
    assert "1 of the cells it compares does not match what it recorded (half seed 0)" in verdicts["half"]
    assert "2 of the cells it compares do not match what they recorded (quarter seed 0, quarter seed 1)" \
           in verdicts["quarter"]
    assert f"- {verdicts['half']}" in report and f"- {verdicts['quarter']}" in report
    rows = {r["variant"]: r for r in json.loads((plan.run_dir / "study" / "report.json").read_text())["summary"]["rows"]}
    assert rows["half"]["miou"]["0"] == 0.95  # the numbers are reported as they are, flagged

    # cells from before result.json held its checksum: "not verifiable" once, not per cell
    finish_cells(plan)
    for seed in (0, 1):
        path = cells[("real only", seed)].result_path
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != RESULT_CHECKSUM}))
    summary, report = report_only(plan)
    assert report.count("2 of 6 cells finished before result.json recorded its own checksum: their results are "
                        "not verifiable") == 1
    assert "does not match what it recorded" not in report and "- 6 of 6 cells match" in report
    assert "its own checksum in 4 cells" in report
    assert capsys.readouterr().err.count("not verifiable") == 1


def test_a_study_on_a_full_disk_stops_with_one_line_and_a_rerun_completes(tmp_path, plan_for, finish_cells,
                                                                        study_tiny, monkeypatch, capsys):
    """Issue 34: ENOSPC (here from fsync, where a full disk often shows) gave a traceback; now one line
    naming the study's run dir and the file, no temporary left, and the rerun writes the report."""
    import errno
    import os

    from synthdata.study import main as study_main

    plan = plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    finish_cells(plan)
    argv = ["recipe=toy", *study_tiny, f"study.variants={tmp_path / 'variants.yaml'}", f"run_dir={plan.run_dir}"]

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        assert study_main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {plan.run_dir}: no space left on device (writing {plan.run_dir / 'study' / 'keys.json'}); "
                   "free space and rerun the same command: it continues from what was finished\n"), err
    assert not [p for p in plan.run_dir.rglob("*.tmp")]
    assert study_main(argv) == 0
    assert "## " in (plan.run_dir / "study" / "report.md").read_text()
