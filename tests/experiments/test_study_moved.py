"""Issue 34: a study's run dir copied or moved elsewhere resumes with every cell done: fingerprints
hold paths inside the run dir relative to it. Issue 36: cells whose fingerprints hold the absolute
shard paths of older versions are upgraded once (`study_migration`), at the place they recorded."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from synthdata.core.recipe_loading import load_recipe
from synthdata.core.result_keys import result_tree
from synthdata.experiments.study import make_plan, run_study
from synthdata.experiments.study_keys import KEYS_FILE, SCHEMA, cell_fingerprint, digest
from synthdata.experiments.study_migration import older_fingerprints


def report_only(plan) -> tuple[dict, str]:
    """The study's report of `plan`'s run dir, written from its cells; (summary, report.md)."""
    recipe = dataclasses.replace(plan.recipe, study=dataclasses.replace(plan.recipe.study, report_only=True))
    summary = run_study(recipe, plan.run_dir)
    return summary, (plan.run_dir / "study" / "report.md").read_text()


def test_a_moved_study_run_dir_resumes_with_every_cell_done(tmp_path, study_tiny, write_variants, finish_cells):
    variants = write_variants(tmp_path, {
        "half": {"seg.synthetic_ratio": 0.5},
        "freemask": {"seg.synthetic_ratio": 0.5, "seg.synthetic_filter": "loss", "seg.filter_segmenter": "@baseline"}})
    recipe = load_recipe("toy", study_tiny + [f"study.variants={variants}"])
    old = tmp_path / "here" / "run"
    plan = make_plan(recipe, old)
    finish_cells(plan)
    # a cell finished by the code from before this change: its fingerprint holds the shards' absolute path
    cell = next(c for c in plan.cells if c.variant == "half" and c.seed == 1)
    tree = result_tree(dataclasses.replace(plan.resolved["half"], seed=cell.seed))
    tree["study"], tree["seg"]["synthetic"] = None, cell.overrides["seg.synthetic"]
    assert cell.overrides["seg.synthetic"].startswith(str(old))
    result = json.loads(cell.result_path.read_text())
    result.pop("result_sha256", None)  # (such cells hold no checksum of their result either,
    result.pop("schema")  # nor the schema of their keys)
    cell.result_path.write_text(json.dumps({**result, "fingerprint": digest(tree)}))
    assert cell_fingerprint(cell, plan.resolved["half"]) != digest(tree)
    (old / KEYS_FILE).unlink(missing_ok=True)  # made before keys.json existed: schema 1

    new = tmp_path / "elsewhere" / "moved"
    new.parent.mkdir()
    shutil.move(str(old), str(new))
    moved = make_plan(recipe, new)
    assert all(job.done() for job in moved.jobs)
    summary, report = report_only(moved)  # upgrades the run dir once, then reports
    assert summary["ran"] == [] and len(summary["skipped"]) == len(moved.jobs)
    assert "## Missing cells" not in report and "- 6 of 6 cells match what they recorded" in report
    assert "1 of 6 cells finished before result.json recorded its own checksum" in report  # the older one
    assert json.loads((new / KEYS_FILE).read_text())["schema"] == SCHEMA
    cell = next(c for c in moved.cells if c.variant == "half" and c.seed == 1)
    upgraded = json.loads(cell.result_path.read_text())
    assert upgraded["fingerprint"] == cell_fingerprint(cell, moved.resolved["half"])
    assert upgraded["migrated"] == {"from_schema": 1, "fingerprint": digest(tree)}
    summary = run_study(recipe, new)  # a rerun: nothing to train
    assert summary["ran"] == [] and summary["failed"] == {} and len(summary["skipped"]) == len(moved.jobs)
    # the old fingerprint was recognised with the place the cell recorded, for the same production only
    made_with = upgraded["overrides"]
    assert digest(tree) in older_fingerprints(cell, moved.resolved["half"], made_with)
    assert digest(tree) not in older_fingerprints(cell, moved.resolved["half"])
    other = made_with["seg.synthetic"].replace(cell.production, "0123456789ab")
    assert digest({**tree, "seg": {**tree["seg"], "synthetic": other}}) not in older_fingerprints(
        cell, moved.resolved["half"], {**made_with, "seg.synthetic": other})


@pytest.mark.parametrize("run_dir", ["relative", "absolute"])
def test_fingerprints_hold_no_path_of_the_run_dir(tmp_path, monkeypatch, plan_for, run_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    variants = {"half": {"seg.synthetic_ratio": 0.5}}
    first = plan_for(tmp_path / "a", variants)
    second = plan_for(tmp_path / "b", variants)
    if run_dir == "relative":
        first = make_plan(first.recipe, first.run_dir.relative_to(tmp_path))
    assert [cell_fingerprint(c, first.resolved[c.variant]) for c in first.cells] == [
        cell_fingerprint(c, second.resolved[c.variant]) for c in second.cells]


def test_a_report_while_another_study_holds_an_older_run_dir_says_so_in_one_line(tmp_path, capsys, study_tiny,
                                                                                 write_variants, finish_cells,
                                                                                 lock_holder):
    """A report runs beside a study but cannot upgrade the run dir while that study holds it: a cell
    of an older schema then gets one line naming it, not 'made with another recipe'."""
    from synthdata.study import main as study_main

    variants = write_variants(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    recipe = load_recipe("toy", study_tiny + [f"study.variants={variants}"])
    plan = make_plan(recipe, tmp_path / "run")
    finish_cells(plan)
    cell = next(c for c in plan.cells if c.variant == "half")
    result = json.loads(cell.result_path.read_text())
    tree = result_tree(dataclasses.replace(plan.resolved["half"], seed=cell.seed))
    tree["study"], tree["seg"]["synthetic"] = None, cell.overrides["seg.synthetic"]
    for key in ("result_sha256", "schema"):
        result.pop(key)
    cell.result_path.write_text(json.dumps({**result, "fingerprint": digest(tree)}))
    (plan.run_dir / KEYS_FILE).unlink(missing_ok=True)
    argv = ["recipe=toy", *study_tiny, f"study.variants={variants}", f"run_dir={plan.run_dir}", "study.report_only=true"]
    with lock_holder(plan.run_dir / "study"):
        assert study_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{cell.result_path} holds a fingerprint of an older synthdata" in err
    assert study_main(argv) == 0  # once the study is gone, the report upgrades the run dir
    assert json.loads(cell.result_path.read_text())["migrated"]["fingerprint"] == digest(tree)
