"""Shared by the study tests: a tiny toy recipe that trains every stage in seconds, a variants
file writer, a planner and finished cells made without training."""

from __future__ import annotations

import hashlib
import json

import pytest

from synthdata.core.recipe_loading import load_recipe
from synthdata.experiments.plan import cell_id
from synthdata.experiments.study import make_plan

STUDY_TINY = [
    "data.height=32", "data.width=64", "data.split_sizes={train: 8, val: 4, test: 4}",
    "train.batch_size=2", "train.mixed_precision=no", "train.steps=2", "train.checkpoint_every=2",
    "train.sample_every=2", "train.log_every=1",
    "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=16",
    "stages.depth.ngf=8", "stages.depth.ndf=8", "stages.depth.z_dim=8", "stages.depth.num_discriminators=1",
    "stages.image.ngf=8", "stages.image.ndf=8", "stages.image.z_dim=8", "stages.image.num_discriminators=1",
    "produce.num_samples=8", "produce.shard_size=4", "produce.batch_size=4", "produce.encode_workers=1",
    "seg.model.encoder_depth=3", "seg.model.decoder_channels=[16,8,8]", "seg.batch_size=4", "seg.steps=2",
    "seg.val_every=0", "seg.checkpoint_every=2", "seg.mixed_precision=no", "eval.batch_size=4",
    "study.seeds=2", "study.workers=2", "study.bootstrap=200",
]


@pytest.fixture
def study_tiny() -> list[str]:
    return list(STUDY_TINY)


@pytest.fixture
def write_variants():
    def write(tmp_path, variants: dict) -> str:
        path = tmp_path / "variants.yaml"
        path.write_text(json.dumps({"variants": variants}))  # JSON is YAML
        return str(path)
    return write


@pytest.fixture
def plan_for(study_tiny, write_variants):
    def plan(tmp_path, variants: dict, *extra: str):
        recipe = load_recipe("toy", study_tiny + [f"study.variants={write_variants(tmp_path, variants)}", *extra])
        return make_plan(recipe, tmp_path / "study-run")
    return plan


@pytest.fixture
def finish_cells():
    """Finish a plan's jobs without training: generator and production jobs get their done markers,
    each cell a segment run's report.json (scores from `mious`, else made up per cell) and a
    checkpoint, from which the study's own writer (`Job.on_done`) writes result.json. Refine
    variants are not supported."""
    def finish(plan, mious: dict | None = None) -> None:
        classes = ["sky", "road", "car"]
        for job in plan.jobs:
            if job.id.startswith("cells/"):
                cell = next(c for c in plan.cells if cell_id(c) == job.id)
                assert cell.refine is None, "finish_cells does not fake refine cells"
                miou = (mious or {}).get((cell.variant, cell.seed),
                                         0.5 + 0.01 * cell.seed + 0.03 * list(plan.variants).index(cell.variant))
                checkpoint = cell.run_dir / "checkpoints" / "segmenter" / "latest.pt"
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                checkpoint.write_bytes(f"weights of {job.id}".encode() * 1000)
                per_image = [{"id": f"img{i}", "per_class_iou": [miou + 0.01 * i, miou, miou - 0.01 * i]}
                             for i in range(4)]
                report = {"metrics": {"miou": miou, "pixel_accuracy": 0.9, "per_class_iou": [miou] * 3,
                                      "image_iou": {"per_image": per_image}},
                          "classes": {"classes": classes},
                          "info": {"steps": 2, "batch_size": 4, "source_counts": {"real": 8}, "train_seconds": 1.0,
                                   "checkpoint": str(checkpoint),
                                   "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
                                   "machine": {"cpu": "test CPU", "cpu_capability": "AVX2", "device": "cpu"},
                                   "protocol": {"resize_filters": {"labels": "nearest-exact"}}}}
                (cell.run_dir / "report").mkdir(parents=True, exist_ok=True)
                (cell.run_dir / "report" / "report.json").write_text(json.dumps(report))
            job.on_done(1.0)
            assert job.done(), job.id
    return finish
