"""FID and KID between two sample sources, on images, coloured layouts or depth maps.

FID (Heusel et al. 2017) uses pytorch-fid's TF-Inception port and Frechet distance; KID
(Binkowski et al. 2018, "Demystifying MMD GANs") is the unbiased MMD^2 with the cubic polynomial
kernel over random subsets. `synthdata evaluate fid real=SRC fake=SRC [modality=image|layout|depth]`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from synthdata.core.contract import ClassInfo, DatasetError
from synthdata.core.palette import colorize
from synthdata.core.seeding import numpy_rng
from synthdata.metrics.sources import SampleSource, take

MODALITIES = ("image", "layout", "depth")
MAX_CACHED_FEATURES = 10000  # rows kept in a statistics cache for KID (10000 x 2048 fp32 = 80 MB)

# images (B, 3, H, W) float in [0, 1] -> features (B, D)
FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]


# --- samples -> network input -> features ------------------------------------------------------


def sample_to_tensor(sample: dict[str, Any], modality: str, classes: ClassInfo | None) -> torch.Tensor:
    """One sample as the (3, H, W) float [0, 1] picture FID sees: the image, the layout coloured
    with the class palette, or the depth min-max normalised over its known pixels and repeated to
    3 channels (as the depth-aware generation paper evaluates depth with FID)."""
    if modality == "image":
        pixels = sample["image"].astype(np.float32) / 255.0
    elif modality == "layout":
        if classes is None:
            raise ValueError("colouring layouts for FID needs the source's classes")
        pixels = colorize(np.asarray(sample["layout"]), classes.palette, classes.ignore_index) / np.float32(255.0)
    elif modality == "depth":
        depth = np.asarray(sample["depth"], dtype=np.float32)
        known = np.isfinite(depth) & (depth > 0)
        pixels = np.zeros_like(depth)
        if known.any():
            lo, hi = depth[known].min(), depth[known].max()
            pixels[known] = (depth[known] - lo) / max(hi - lo, 1e-6)
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    else:
        raise ValueError(f"unknown FID modality '{modality}'; valid: {', '.join(MODALITIES)}")
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)


@torch.no_grad()
def extract_features(
    samples: Iterable[dict[str, Any]],
    extractor: FeatureExtractor,
    *,
    modality: str = "image",
    classes: ClassInfo | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    desc: str = "features",
) -> np.ndarray:
    """Features `(N, D)` float32 of every sample. Consecutive samples of one size share a batch;
    sizes mixed within a source are allowed (the Inception resizes each to 299x299) and warned."""

    chunks: list[np.ndarray] = []
    batch: list[torch.Tensor] = []
    sizes: set[tuple[int, int]] = set()

    def flush() -> None:
        if batch:
            feats = extractor(torch.stack(batch).to(device))
            chunks.append(feats.float().reshape(len(batch), -1).cpu().numpy())
            batch.clear()

    for sample in tqdm(samples, desc=desc, unit="img", leave=False):
        pixels = sample_to_tensor(sample, modality, classes)
        size = tuple(pixels.shape[1:])
        if batch and (size != tuple(batch[0].shape[1:]) or len(batch) >= batch_size):
            flush()
        sizes.add(size)
        batch.append(pixels)
    flush()
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for h, w in sorted(sizes)[:4])  # width x height
        warnings.warn(
            f"{desc}: image sizes are mixed ({shown}); each is resized bilinearly to 299x299 inside "
            "InceptionV3 (pytorch-fid resize_input=True), so FID compares the resized pictures",
            stacklevel=3,  # past torch.no_grad's wrapper, to the caller
        )
    if not chunks:
        raise DatasetError(f"{desc}: the source yielded no samples")
    return np.concatenate(chunks)


# --- the distances -----------------------------------------------------------------------------


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean `(D,)` and covariance `(D, D)` of features `(N, D)`, as pytorch-fid computes them."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), pytorch-fid's stable implementation."""

    from pytorch_fid.fid_score import calculate_frechet_distance  # noqa: PLC0415  (pytorch-fid only when FID is asked for)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # it prints its singular-product fallback
        distance = float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
    if printed.getvalue().strip():
        warnings.warn(f"pytorch-fid: {printed.getvalue().strip()}", stacklevel=2)
    return distance


def kernel_inception_distance(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """KID: mean and std over `subsets` random subsets of the unbiased MMD^2 estimate with
    k(x, y) = (x.y / D + 1)^3 (Binkowski et al. 2018). Unbiased, so ~0 (possibly < 0) for two
    sets from one distribution even with few samples. Kernels are float64 on `device`."""

    n, dims = min(len(real), len(fake)), real.shape[1]
    m = min(subset_size, n)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per side, got {len(real)} real and {len(fake)} fake")
    rng = numpy_rng(seed, m, subsets)
    real_t = torch.as_tensor(np.asarray(real), dtype=torch.float64, device=device)
    fake_t = torch.as_tensor(np.asarray(fake), dtype=torch.float64, device=device)
    values = np.empty(subsets)
    for i in range(subsets):
        x = real_t[torch.from_numpy(rng.choice(len(real), m, replace=False)).to(device)]
        y = fake_t[torch.from_numpy(rng.choice(len(fake), m, replace=False)).to(device)]
        kxx, kyy, kxy = ((a @ b.T / dims + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off_diagonal = (kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / (m * (m - 1))
        values[i] = float(off_diagonal - 2.0 * kxy.mean())
    return float(values.mean()), float(values.std())


# --- sources -> metrics, with a cache for the real side -----------------------------------------


def source_features(
    source: SampleSource,
    extractor: FeatureExtractor,
    *,
    extractor_id: str | None = None,
    modality: str = "image",
    count: int | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """`{"mu", "sigma", "features", "count", "cache", "cached"}` of a source. With `cache_dir` and
    `extractor_id`, the statistics go to an `.npz` keyed by (spec, data fingerprint, modality,
    extractor, count), and a later call with the same key reads it instead of the data."""
    source.require(modality)
    cache = None
    if cache_dir is not None and extractor_id is not None and source.fingerprint:
        key = json.dumps([1, source.spec, source.fingerprint, modality, extractor_id, count])
        name = "".join(c if c.isalnum() else "_" for c in source.spec)[-40:]
        cache = Path(cache_dir) / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return {"mu": z["mu"], "sigma": z["sigma"], "features": z["features"],
                        "count": int(z["count"]), "cache": str(cache), "cached": True}
    features = extract_features(
        take(source, count), extractor, modality=modality, classes=source.classes,
        batch_size=batch_size, device=device, desc=source.spec,
    )
    mu, sigma = feature_statistics(features)
    kept = features
    if len(features) > MAX_CACHED_FEATURES:  # enough rows for KID subsets; keeps the file small
        kept = features[np.random.default_rng(0).choice(len(features), MAX_CACHED_FEATURES, replace=False)]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, mu=mu, sigma=sigma, features=kept.astype(np.float32), count=len(features))
        os.replace(tmp, cache)
    return {"mu": mu, "sigma": sigma, "features": kept, "count": len(features),
            "cache": None if cache is None else str(cache), "cached": False}


def compute_fid(
    real: SampleSource,
    fake: SampleSource,
    extractor: FeatureExtractor,
    *,
    extractor_id: str | None = None,
    modality: str = "image",
    count: int | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """FID and KID of `fake` against `real` (only the real side is cached). Warns when there are
    fewer samples than feature dimensions: the covariance is then rank-deficient and FID biased
    upwards, so compare KID instead."""
    common = dict(modality=modality, count=count, batch_size=batch_size, device=device)
    r = source_features(real, extractor, extractor_id=extractor_id, cache_dir=cache_dir, **common)
    f = source_features(fake, extractor, **common)
    dims = r["mu"].shape[0]
    n = min(r["count"], f["count"])
    if n < 2:
        raise DatasetError(f"FID needs at least 2 samples per side, got {r['count']} real and {f['count']} fake")
    if n < dims:
        warnings.warn(
            f"FID from {n} samples with {dims}-dimensional features: the covariance is rank-deficient "
            "and FID is strongly biased; compare KID (reported too) or use more samples",
            stacklevel=2,
        )
    kid_mean, kid_std = kernel_inception_distance(
        r["features"], f["features"], subsets=kid_subsets, subset_size=kid_subset_size, seed=seed, device=device
    )
    return {
        "fid": frechet_distance(r["mu"], r["sigma"], f["mu"], f["sigma"]),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "kid_subset_size": min(kid_subset_size, len(r["features"]), len(f["features"])),
        "num_real": r["count"],
        "num_fake": f["count"],
        "dims": int(dims),
        "modality": modality,
        "real_cache": r["cache"],
        "real_cached": r["cached"],
    }


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "synthdata" / "fid_stats"
