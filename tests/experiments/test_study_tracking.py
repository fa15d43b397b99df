"""A study with experiment trackers (`log_with`): each cell's segment run is tracked as
VARIANT/seed-N, with `study.variant` and `study.seed` in its config."""

from __future__ import annotations

import json

import pytest
from accelerate import Accelerator

from synthdata.core import tracking
from synthdata.study import main as study_main


@pytest.mark.filterwarnings("ignore:`log_with=")  # Accelerate: none of them installed (here they need not be)
def test_each_cell_run_is_named_with_its_variant_and_seed(tmp_path, monkeypatch, study_tiny, write_variants):
    # trackers are recorded, not started: the test needs none installed and writes nothing outside tmp_path
    monkeypatch.setattr(tracking, "installed_trackers", lambda: {"tensorboard", "mlflow"})
    started = []
    monkeypatch.setattr(Accelerator, "init_trackers", lambda self, project, config=None, init_kwargs=None:
                        started.append((project, config, init_kwargs)))
    variants = write_variants(tmp_path, {"longer": {"seg.steps": 3}})  # real data only: no generator runs
    run_dir = tmp_path / "run"
    assert study_main(["recipe=toy", *study_tiny, f"study.variants={variants}", f"run_dir={run_dir}",
                       "study.seeds=[4]", "study.workers=1", "log_with=[tensorboard, mlflow]"]) == 0
    assert len(started) == 2
    runs = {(config["study.variant"], config["study.seed"]): (project, config, kwargs) for project, config, kwargs in started}
    assert set(runs) == {("real only", 4), ("longer", 4)}
    project, config, kwargs = runs[("longer", 4)]
    assert project == "segment" and config["seed"] == 4 and config["seg.steps"] == 3
    assert config["log_with"] == '["tensorboard", "mlflow"]'  # the flattened recipe
    assert kwargs["mlflow"] == {"run_name": "longer/seed-4", "tags": {"study.variant": "longer", "study.seed": "4"}}
    assert kwargs["tensorboard"] == {}  # its run is the cell's folder: cells/longer/seed-4/logs/segment
    # the cells' results are those of an untracked study (log_with is in no fingerprint)
    plan = json.loads((run_dir / "study" / "plan.json").read_text())
    assert any("study_variant=\"longer\"" in job["commands"][0] for job in plan["jobs"])
