"""Shared fixtures: tiny recipes and the optional real datasets beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> Path:
    """`../shared/datasets` (CamVid, SEM particles); the test skips when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is not present")
    return SHARED_DATASETS


@pytest.fixture
def tiny_toy_overrides() -> list[str]:
    """Overrides that make the toy recipe small enough for tests that train for real."""
    return [
        "data.height=32",
        "data.width=64",
        "data.split_sizes={train: 16, val: 8, test: 8}",
        "train.batch_size=2",
    ]
