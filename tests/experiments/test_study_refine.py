"""SegGAN refinement as a study step after training: refine variants plan a segment job (or reuse
the segmenter of a cell that trains the same one), then a `synthdata refine` job through the image
stage of a study generator run; the control (the same
segmenter trained as many steps more) is paired in the report; bad refine input stops before any
training; `train.shards` with `data.subset` is refused."""

from __future__ import annotations

import json

import pytest

from synthdata.core.recipe_loading import load_recipe
from synthdata.experiments.study import run_study
from synthdata.study import main as study_main

REFINE = {"refine.steps": 2, "refine.batch_size": 2, "refine.checkpoint_every": 2, "refine.mixed_precision": "no"}


def tokens(job, index: int = 0) -> list[str]:
    return job.commands[index][3:]  # [python, -m, module, recipe=..., key=value ...]


def test_a_refine_variant_refines_the_baselines_segmenter_through_a_study_image_stage(tmp_path, plan_for):
    plan = plan_for(tmp_path, {"seggan": REFINE, "2 more steps": {"seg.steps": 4},
                               "synthetic": {"seg.synthetic_ratio": 0.5},
                               "seggan lr": {**REFINE, "seg.lr": 0.5}})
    # SegGAN's generator takes layouts alone: the refine-only variant gets a depth-free image stage
    assert plan.variants["seggan"] == {**REFINE, "stages.image.use_depth": False}
    gens = {name: key for key, g in plan.generators.items() for name in g["used_by"]}
    assert plan.generators[gens["seggan"]]["stages"] == ["image"] and gens["seggan"] != gens["synthetic"]
    assert not any("seggan" in p["used_by"] for p in plan.productions.values())  # it mixes no synthetic data
    jobs = {j.id: j for j in plan.jobs}
    order = [j.id for j in plan.jobs]
    (train,) = jobs[f"generators/{gens['seggan']}/image"].commands
    assert train[2] == "synthdata.train" and 'stage="image"' in train and "stages.image.use_depth=false" in train
    image = plan.run_dir / "generators" / gens["seggan"] / "checkpoints" / "image" / "latest.pt"
    for seed in (0, 1):
        # it would train the baseline's segmenter again (only refine.* and the image stage differ):
        # it refines the real-only cell's of the same seed instead
        cell = plan.run_dir / "cells" / "seggan" / f"seed-{seed}"
        baseline = plan.run_dir / "cells" / "real-only" / f"seed-{seed}"
        refine = jobs[f"cells/seggan/seed-{seed}"]
        assert f"cells/seggan/seed-{seed}/segment" not in jobs
        assert refine.commands[0][2] == "synthdata.refine" and refine.done_file == cell / "result.json"
        assert refine.deps == [f"cells/real-only/seed-{seed}", f"generators/{gens['seggan']}/image"]
        args = tokens(refine)
        assert "refine.steps=2" in args and "refine.batch_size=2" in args and f"seed={seed}" in args
        assert f'refine.generator="{image}"' in args
        assert f'refine.segmenter="{baseline / "checkpoints" / "segmenter" / "latest.pt"}"' in args
        assert f'run_dir="{cell}"' in args
        # a refine variant with its own seg.* trains its own segmenter first, in its cell
        cell = plan.run_dir / "cells" / "seggan-lr" / f"seed-{seed}"
        segment, refine = jobs[f"cells/seggan-lr/seed-{seed}/segment"], jobs[f"cells/seggan-lr/seed-{seed}"]
        assert order.index(segment.id) < order.index(refine.id)
        assert segment.commands[0][2] == "synthdata.segment" and segment.deps == []
        assert segment.done_file == cell / "segment.json" and refine.done_file == cell / "result.json"
        assert not any(t.startswith("refine.") for t in tokens(segment)) and "seg.lr=0.5" in tokens(segment)
        assert refine.deps == [segment.id, f"generators/{gens['seggan']}/image"]
        assert f'refine.segmenter="{cell / "checkpoints" / "segmenter" / "latest.pt"}"' in tokens(refine)
    # other cells keep one segment job each
    assert jobs["cells/2-more-steps/seed-0"].commands[0][2] == "synthdata.segment"
    assert "cells/2-more-steps/seed-0/segment" not in jobs
    # the control: the same segmenter trained seg.steps + refine.steps steps, without refining
    assert plan.controls == {"seggan": ["2 more steps"], "seggan lr": []}


def test_refine_variants_that_mix_synthetic_data_or_bring_a_generator(tmp_path, plan_for):
    generator = tmp_path / "image.pt"
    generator.write_bytes(b"a checkpoint")  # only its presence is checked when planning
    plan = plan_for(tmp_path, {
        "synthetic": {"seg.synthetic_ratio": 0.5, "stages.image.use_depth": False},
        "synthetic seggan": {"seg.synthetic_ratio": 0.5, "stages.image.use_depth": False, **REFINE},
        "own generator": {**REFINE, "refine.generator": str(generator)},
        "4 steps": {"seg.steps": 4},
    })
    gens = {name: key for key, g in plan.generators.items() for name in g["used_by"]}
    # production and refinement share one generator run (its image stage serves both)
    assert gens["synthetic seggan"] == gens["synthetic"] and "own generator" not in gens
    jobs = {j.id: j for j in plan.jobs}
    refine = jobs["cells/synthetic-seggan/seed-0"]
    # ... and it refines the segmenter of the "synthetic" cell (same seg.*, seed and shards)
    assert refine.deps[0] == "cells/synthetic/seed-0" and f"generators/{gens['synthetic']}/image" in refine.deps
    assert any(t.startswith("seg.synthetic=") for t in tokens(refine))  # the same recipe as its segment run
    own = jobs["cells/own-generator/seed-0"]
    assert own.deps == ["cells/real-only/seed-0"] and f'refine.generator="{generator}"' in tokens(own)
    # controls match seg.* and the synthetic data: "4 steps" pairs with the real-only refine variant only
    assert plan.controls == {"synthetic seggan": [], "own generator": ["4 steps"]}


def test_tiny_refine_study_end_to_end(tmp_path, capsys, study_tiny, write_variants):
    variants = write_variants(tmp_path, {"seggan": REFINE, "2 more steps": {"seg.steps": 4}})
    run_dir = tmp_path / "run"
    args = ["recipe=toy", *study_tiny, f"study.variants={variants}", f"run_dir={run_dir}", "study.workers=1"]
    assert study_main(args) == 0
    out = capsys.readouterr().out
    # the image stage and 3 variants x 2 seeds: the refine cells refine the real-only cells' segmenters
    assert "study: ran 7 jobs, 0 already done, 0 failed" in out
    cell = run_dir / "cells" / "seggan" / "seed-1"
    result = json.loads((cell / "result.json").read_text())
    assert not (cell / "segment.json").exists() and result["refine"]["segmenter_cell"] == "cells/real-only/seed-1"
    before = json.loads((run_dir / "cells" / "real-only" / "seed-1" / "result.json").read_text())
    after = json.loads((cell / "refine" / "after" / "report.json").read_text())
    assert result["miou"] == after["metrics"]["miou"] and result["refine"]["miou_before"] == before["miou"]
    assert result["steps"] == 2 and result["refine"]["steps"] == 2 and result["refine"]["batch_size"] == 2
    assert result["source_counts"] == {"real": 8} and len(result["per_image"]) == 4
    assert (cell / "checkpoints" / "refine" / "latest.pt").is_file()
    report = (run_dir / "study" / "report.md").read_text()
    assert "| steps | refine steps |" in report and "| 2 | 2 | 12 |" in report  # 2 x 4 real, then 2 x 2 refining
    assert "## SegGAN refinement" in report and "segmenter 2 steps, then 2 SegGAN steps" in report
    assert "- seggan vs 2 more steps: " in report and "  seggan vs 2 more steps: " in out
    rows = {r["variant"]: r for r in json.loads((run_dir / "study" / "report.json").read_text())["summary"]["rows"]}
    (control,) = rows["seggan"]["controls"]
    more = [json.loads((run_dir / "cells" / "2-more-steps" / f"seed-{s}" / "result.json").read_text())["miou"]
            for s in (0, 1)]
    refined = [json.loads((run_dir / "cells" / "seggan" / f"seed-{s}" / "result.json").read_text())["miou"]
               for s in (0, 1)]
    assert control["t_interval"]["mean"] == pytest.approx((refined[0] - more[0] + refined[1] - more[1]) / 2)
    # a kill during refinement loses only the refine job: the segmenter is not trained again
    (cell / "result.json").unlink()
    summary = run_study(load_recipe("toy", study_tiny + [f"study.variants={variants}", "study.workers=1"]), run_dir)
    assert summary["ran"] == ["cells/seggan/seed-1"] and summary["failed"] == {}
