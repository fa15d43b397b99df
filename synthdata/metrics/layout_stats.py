"""Layout statistics: how class frequencies and scene structure of generated layouts compare.

Per-class pixel frequency, presence rate and vertical place, the Jensen-Shannon divergence between
the real and generated pixel histograms, classes and connected components per image, how much two
layouts differ (spread), a warning per class that generated layouts lose, merge or misplace and one
when they are near copies of each other, and a bar chart.
`synthdata evaluate layouts real=SRC fake=SRC [count=N out=DIR]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import jensenshannon
from tqdm import tqdm

from synthdata.core.contract import ClassInfo


def count_components(layout: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """4-connected components of each class in one `(H, W)` label map -> `(C,)` int64.

    All present classes are labelled in one `scipy.ndimage.label` call on a `(K, H, W)` stack
    whose structuring element does not connect neighbouring planes; labels are numbered in scan
    order, so each plane's count is the rise of the running maximum label.
    """

    layout = np.asarray(layout)
    present = np.unique(layout)
    present = present[(present >= 0) & (present < num_classes) & (present != ignore_index)]
    counts = np.zeros(num_classes, dtype=np.int64)
    if len(present) == 0:
        return counts
    stack = layout[None] == present[:, None, None]
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(stack, structure=structure)
    top = np.maximum.accumulate(labels.reshape(len(present), -1).max(axis=1))
    counts[present] = np.diff(top, prepend=0)
    return counts


SPREAD_LAYOUTS, SPREAD_GRID = 64, 64  # layouts kept (a seeded uniform sample), pixels along their short side


def pairwise_difference(layouts: list[np.ndarray], num_classes: int) -> float | None:
    """Mean over pairs of `(H, W)` label maps of the share of pixels (labelled in both) where the two
    differ: near 0 when a generator draws one layout again and again. None for fewer than 2."""
    if len(layouts) < 2:
        return None
    # elementwise, not a matrix product: BLAS threads left spinning after one would count as busy
    # cores when the next command picks its thread count (core/runtime.py)
    stack = np.stack(layouts).reshape(len(layouts), -1)
    valid = (stack >= 0) & (stack < num_classes)
    shares = []
    for i in range(len(stack) - 1):
        both = valid[i + 1:] & valid[i]
        differ = (stack[i + 1:] != stack[i]) & both
        counted = both.sum(1)
        shares.append(np.divide(differ.sum(1), counted, out=np.zeros(len(counted)), where=counted > 0))
    return float(np.concatenate(shares).mean())


def layout_statistics(
    layouts: Iterable[np.ndarray], *, num_classes: int, ignore_index: int = 255, desc: str = "layouts"
) -> dict[str, Any]:
    """Statistics of `(H, W)` label maps: `pixel_frequency` and `presence_rate` `(C,)`,
    `components_per_class` `(C,)` (mean per image), `vertical_place` `(C,)` (where in the frame a
    class sits: the mean over the images that hold it of its pixels' mean row, 0 at the top and 1
    at the bottom; None for a class no image holds), `classes_per_image`, `components_per_image`,
    `num_images`, `labelled_pixels`, `pairwise_difference` (see `pairwise_difference`, over a
    seeded uniform sample of `SPREAD_LAYOUTS` layouts on a grid of about `SPREAD_GRID` pixels along
    the short side). Pixels equal to `ignore_index` are left out."""

    pixels = np.zeros(num_classes, dtype=np.int64)
    presence = np.zeros(num_classes, dtype=np.int64)
    components = np.zeros(num_classes, dtype=np.int64)
    place = np.zeros(num_classes, dtype=np.float64)
    images = 0
    kept: list[np.ndarray] = []
    rng = np.random.default_rng(0)
    for layout in tqdm(layouts, desc=desc, unit="layout", leave=False):
        layout = np.asarray(layout).astype(np.int64, copy=False)
        step = max(1, min(layout.shape) // SPREAD_GRID)
        slot = images if images < SPREAD_LAYOUTS else int(rng.integers(images + 1))  # reservoir sampling
        if slot < SPREAD_LAYOUTS:
            small = layout[::step, ::step].copy()
            if slot == len(kept):
                kept.append(small)
            else:
                kept[slot] = small
        valid = (layout >= 0) & (layout < num_classes)
        hist = np.bincount(layout[valid], minlength=num_classes)
        pixels += hist
        presence += hist > 0
        components += count_components(layout, num_classes, ignore_index)
        rows = np.broadcast_to((np.arange(layout.shape[0], dtype=np.float64) + 0.5)[:, None] / layout.shape[0],
                               layout.shape)
        row_sums = np.bincount(layout[valid], weights=rows[valid], minlength=num_classes)
        place += np.divide(row_sums, hist, out=np.zeros(num_classes), where=hist > 0)
        images += 1
    if images == 0:
        raise ValueError(f"{desc}: no layouts to measure")
    total = max(int(pixels.sum()), 1)
    return {
        "num_images": images,
        "labelled_pixels": int(pixels.sum()),
        "pixel_frequency": (pixels / total).tolist(),
        "presence_rate": (presence / images).tolist(),
        "components_per_class": (components / images).tolist(),
        "vertical_place": [float(p / n) if n else None for p, n in zip(place, presence)],
        "classes_per_image": float(presence.sum() / images),
        "components_per_image": float(components.sum() / images),
        "pairwise_difference": pairwise_difference(kept, num_classes) if len({k.shape for k in kept}) == 1 else None,
    }


def js_divergence(p: np.ndarray | list[float], q: np.ndarray | list[float]) -> float:
    """Jensen-Shannon divergence of two histograms (normalised here), base 2, so in [0, 1]."""

    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError(f"JS divergence needs two non-empty histograms of one length, got {p.shape} and {q.shape}")
    return float(jensenshannon(p, q, base=2) ** 2)  # scipy returns the distance, its square root


def compare_layouts(real: dict[str, Any], fake: dict[str, Any]) -> dict[str, Any]:
    """Summary metrics of generated (`fake`) against real layout statistics."""
    return {
        "js_pixel_frequency": js_divergence(real["pixel_frequency"], fake["pixel_frequency"]),
        "presence_rate_mae": float(np.abs(np.subtract(real["presence_rate"], fake["presence_rate"])).mean()),
        "classes_per_image_real": real["classes_per_image"],
        "classes_per_image_fake": fake["classes_per_image"],
        "components_per_image_real": real["components_per_image"],
        "components_per_image_fake": fake["components_per_image"],
        "pairwise_difference_real": real.get("pairwise_difference"),
        "pairwise_difference_fake": fake.get("pairwise_difference"),
        "num_real": real["num_images"],
        "num_fake": fake["num_images"],
    }


# A class is flagged when generated layouts hold it, or its objects, less than half as often as
# real ones; classes in fewer than 10% of real layouts, or with under one object per real layout,
# are too rare for a few hundred layouts to tell. More objects than real is never flagged
# (copy-paste adds them on purpose). A class is also flagged when it sits more than a fifth of the
# frame's height away from its real place: twice the largest shift between two real splits measured
# (CamVid's val against its 10% train subset: Tree 0.11; docs/studies.md).
FLAG_RATIO, MIN_PRESENCE, MIN_COMPONENTS, PLACE_SHIFT = 0.5, 0.1, 1.0, 0.2
# Generated layouts are flagged as near copies of each other when two of them differ in less than
# half as many pixels as two real ones (the same ratio as above), unless real ones differ in under 5%.
MIN_SPREAD = 0.05
NEAR_COPIES = "generated layouts are near copies of each other"


def layout_warnings(real: dict[str, Any], fake: dict[str, Any], names: Iterable[str]) -> list[str]:
    """One line per class that generated layouts lose (present far less often than in real
    layouts), merge (far fewer connected components per layout) or misplace (far higher or lower
    in the frame): the marks of a collapsed layout generator that class pixel frequencies can
    miss; and one line, first, when generated layouts are near copies of each other (a collapsed
    generator whose few layouts can still hold every class). Statistics from before
    `vertical_place` or `pairwise_difference` existed are checked without them."""
    out = []
    real_spread, fake_spread = real.get("pairwise_difference"), fake.get("pairwise_difference")
    if real_spread is not None and fake_spread is not None and real_spread >= MIN_SPREAD \
            and fake_spread < FLAG_RATIO * real_spread:
        out.append(f"{NEAR_COPIES}: two differ in {fake_spread:.0%} of "
                   f"their pixels, two real ones in {real_spread:.0%}")
    real_places, fake_places = real.get("vertical_place"), fake.get("vertical_place")
    for c, name in enumerate(names):
        real_presence, fake_presence = real["presence_rate"][c], fake["presence_rate"][c]
        real_objects, fake_objects = real["components_per_class"][c], fake["components_per_class"][c]
        real_place = real_places[c] if real_places else None
        fake_place = fake_places[c] if fake_places else None
        if real_presence >= MIN_PRESENCE and fake_presence < FLAG_RATIO * real_presence:
            out.append(f"{name}: in {fake_presence:.0%} of generated layouts, {real_presence:.0%} of real ones")
        elif real_objects >= MIN_COMPONENTS and fake_objects < FLAG_RATIO * real_objects:
            out.append(f"{name}: {fake_objects:.1f} objects per generated layout, {real_objects:.1f} per real one")
        elif (real_presence >= MIN_PRESENCE and real_place is not None and fake_place is not None
              and abs(fake_place - real_place) > PLACE_SHIFT):
            out.append(f"{name}: at {fake_place:.0%} of the frame's height in generated layouts, "
                       f"{real_place:.0%} in real ones (0% top)")
    return out


def plot_layout_stats(real: dict[str, Any], fake: dict[str, Any] | None, classes: ClassInfo, path: str | Path) -> Path:
    """Per-class bars (pixel frequency, presence rate): real in the class colour, generated
    hatched beside it. Written with the Agg backend, so no display is needed."""
    import matplotlib  # noqa: PLC0415  (matplotlib is slow to import; only plots need it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415  (matplotlib is slow to import; only plots need it)

    n = classes.num_classes
    x = np.arange(n)
    colours = np.asarray(classes.palette, dtype=np.float64)[:n] / 255.0
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.5 * n + 2), 6), sharex=True)
    for ax, key, label in zip(axes, ("pixel_frequency", "presence_rate"), ("pixel frequency", "presence rate")):
        width = 0.4 if fake else 0.8
        ax.bar(x - (0.2 if fake else 0), real[key], width, color=colours, edgecolor="black", label="real")
        if fake:
            ax.bar(x + 0.2, fake[key], width, color=colours, edgecolor="black", hatch="//", alpha=0.6, label="generated")
        ax.set_ylabel(label)
        ax.legend(loc="best")
    axes[-1].set_xticks(x, classes.names, rotation=60, ha="right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
