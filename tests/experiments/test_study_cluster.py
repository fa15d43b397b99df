"""`study.executor=submitit`: the study's jobs as submitit jobs (its local executor here, SLURM on a
cluster) give the same results as local worker processes; without the package, one line."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from synthdata.study import main as study_main

# not the checkpoint file's sha256: it holds the recipe, whose shard paths name the run dir
COMPARED = ("miou", "per_class_iou", "per_image", "steps", "source_counts", "fingerprint")


def results(run_dir) -> dict:
    """Per cell: its scores and counts, and its segmenter's weights."""
    out = {}
    for p in sorted(run_dir.glob("cells/*/seed-*/result.json")):
        weights = torch.load(p.parent / "checkpoints" / "segmenter" / "latest.pt", weights_only=True)["model"]
        out[str(p.relative_to(run_dir))] = {k: json.loads(p.read_text())[k] for k in COMPARED} | {
            "weights": [weights[k].tolist() for k in sorted(weights)]}
    return out


def test_a_study_on_submitit_gives_the_local_executors_results(tmp_path, capsys, study_tiny, write_variants):
    pytest.importorskip("submitit")
    variants = write_variants(tmp_path, {"copy-paste": {"seg.synthetic_ratio": 0.5, "produce.layouts": "real",
                                                        "produce.copy_paste": 2, "stages.image.arch": "composite"}})
    common = ["recipe=toy", *study_tiny, f"study.variants={variants}", "study.workers=2"]
    assert study_main([*common, f"run_dir={tmp_path / 'local'}"]) == 0
    assert study_main([*common, f"run_dir={tmp_path / 'cluster'}", "study.executor=submitit",
                       "study.executor_parameters={timeout_min: 30}"]) == 0
    local, cluster = results(tmp_path / "local"), results(tmp_path / "cluster")
    assert len(local) == 4 and cluster == local
    log = (tmp_path / "cluster" / "study" / "study.log").read_text()
    assert "executor: submitit (local)" in log and "submitted cells/real-only/seed-0 as job" in log
    assert list((tmp_path / "cluster" / "study" / "submitit").iterdir())  # submitit's own job files
    capsys.readouterr()
    assert study_main([*common, f"run_dir={tmp_path / 'cluster'}", "study.executor=submitit"]) == 0
    assert "0 failed" in capsys.readouterr().out  # a rerun: every job already done


def test_without_submitit_the_key_is_one_line(tmp_path, capsys, study_tiny, write_variants, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    variants = write_variants(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    args = ["recipe=toy", *study_tiny, f"study.variants={variants}", f"run_dir={tmp_path / 'run'}",
            "study.executor=submitit"]
    assert study_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "pip install 'synthdata[cluster]'" in err
    assert not (tmp_path / "run").exists()


def test_an_unknown_submitit_parameter_names_the_key(tmp_path, capsys, study_tiny, write_variants):
    pytest.importorskip("submitit")
    variants = write_variants(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    args = ["recipe=toy", *study_tiny, f"study.variants={variants}", f"run_dir={tmp_path / 'run'}",
            "study.executor=submitit", "study.executor_parameters={no_such_parameter: 1}"]
    assert study_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "study.executor_parameters" in err, err
