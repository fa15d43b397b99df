"""Confidence intervals for paired comparisons of segmenters (pure functions, no I/O).

`t_interval(diffs)`: the mean of paired differences (one per seed: variant minus baseline
trained with the same seed) with a Student-t interval over those differences; it measures how
much the answer moves when the training is repeated.

`paired_bootstrap(a, b)`: the mean per-image difference on the same evaluation images
(`a`, `b`: scores of shape (images,) or (seeds, images), image j the same image in both), with a
percentile interval from resampling images with replacement, drawn from a seeded numpy
Generator; it measures how much the answer moves with the choice of evaluation images, for the
trained models at hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval: `lo <= mean <= hi` (NaN when undefined)."""

    mean: float
    lo: float
    hi: float
    n: int  # differences (seeds) or images it rests on
    confidence: float
    method: str

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    def excludes_zero(self) -> bool:
        return self.defined and (self.lo > 0 or self.hi < 0)

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def t_interval(diffs: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of `diffs` +- t_{n-1} * sd / sqrt(n). With one difference the interval is undefined
    (NaN bounds); identical differences give a zero-width interval at their value."""
    x = np.asarray([float(d) for d in diffs], dtype=np.float64)
    if x.size == 0:
        raise ValueError("t_interval needs at least one difference")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, math.nan, math.nan, 1, confidence, "t over seeds")
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size), confidence, "t over seeds")


def paired_bootstrap(a: Any, b: Any, *, n_boot: int = 10000, seed: int = 0,
                     confidence: float = 0.95) -> Interval:
    """Mean over images of `a - b` (each image's difference averaged over seeds first), with a
    percentile interval over `n_boot` resamples of the images. NaN scores (an image where a
    model scores nothing) are left out of that image's seed average; images with no finite
    difference are dropped."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 1:
        a, b = a[None], b[None]
    if a.ndim != 2:
        raise ValueError(f"scores must be (images,) or (seeds, images), got shape {a.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = a - b
    finite = np.isfinite(d)
    counts = finite.sum(0)
    per_image = np.where(finite, d, 0.0).sum(0)[counts > 0] / counts[counts > 0]
    if per_image.size == 0:
        raise ValueError("paired_bootstrap: no image has a finite difference")
    rng = np.random.default_rng(seed)
    n = per_image.size
    means = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, 2_000_000 // n)  # resample in chunks: n_boot x n indices at once can be large
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = per_image[rng.integers(0, n, size=(stop - start, n))].mean(1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(per_image.mean()), float(lo), float(hi), int(n), confidence, "paired bootstrap over images")
