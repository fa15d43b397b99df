"""Interval statistics on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthdata.metrics.intervals import paired_bootstrap, t_interval


def test_t_interval_matches_the_textbook_value():
    # diffs 1, 2, 3: mean 2, sd 1, t_{0.975, 2} = 4.302653 -> half width 4.302653 / sqrt(3)
    iv = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert iv.mean == pytest.approx(2.0)
    assert (iv.lo, iv.hi) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert iv.n == 3 and iv.excludes_zero() is False
    assert t_interval([1.0, 1.1, 0.9, 1.0]).excludes_zero()  # a consistent gain


def test_t_interval_of_identical_runs_is_zero_and_one_seed_is_undefined():
    iv = t_interval([0.0, 0.0, 0.0])
    assert (iv.mean, iv.lo, iv.hi) == (0.0, 0.0, 0.0) and not iv.excludes_zero()
    one = t_interval([0.3])
    assert not one.defined and one.to_dict()["lo"] is None and not one.excludes_zero()
    with pytest.raises(ValueError):
        t_interval([])


def test_bootstrap_identical_models_give_an_interval_at_zero():
    scores = np.random.default_rng(1).uniform(0.2, 0.9, size=(3, 50))
    iv = paired_bootstrap(scores, scores.copy(), seed=0)
    assert (iv.mean, iv.lo, iv.hi) == (0.0, 0.0, 0.0)


def test_bootstrap_recovers_a_constructed_shift_and_is_seeded():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.2, 0.8, size=(2, 400))
    shifted = base + 0.05 + rng.normal(0, 0.02, size=base.shape)
    iv = paired_bootstrap(shifted, base, seed=7, n_boot=2000)
    assert iv.lo < 0.05 < iv.hi and iv.lo > 0.04 and iv.hi < 0.06 and iv.excludes_zero()
    assert iv.n == 400
    again = paired_bootstrap(shifted, base, seed=7, n_boot=2000)
    assert (again.lo, again.hi) == (iv.lo, iv.hi)
    # the interval narrows like 1/sqrt(images): 100x fewer images, ~10x wider
    few = paired_bootstrap(shifted[:, :4], base[:, :4], seed=7, n_boot=2000)
    assert few.hi - few.lo > 3 * (iv.hi - iv.lo)


def test_bootstrap_ignores_nan_scores_and_checks_shapes():
    a = np.array([[0.5, np.nan, 0.7], [0.5, np.nan, 0.9]])
    b = np.array([[0.4, 0.3, 0.6], [0.4, np.nan, 0.8]])
    iv = paired_bootstrap(a, b, n_boot=200)
    assert iv.n == 2 and iv.mean == pytest.approx(0.1)  # image 2 has no finite difference
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(a, b[:, :2])
