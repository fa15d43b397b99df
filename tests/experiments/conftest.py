"""Shared by the study tests: a tiny toy recipe that trains every stage in seconds, a variants
file writer and a planner."""

from __future__ import annotations

import json

import pytest

from synthdata.core.recipe_loading import load_recipe
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
