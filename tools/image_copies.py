"""How close a real-layout production's images are to the training photos of their own layouts.

    python tools/image_copies.py recipe=camvid data.root=DIR [data.* as the production] shards=SHARDS [count=256]
        [sheet=PATH.jpg]     # shards=[A,B]: several productions of the same layouts, one line each

For each of the first `count` samples with a real layout (`layout_source: real` in its json), the
mean absolute difference (0-255, over pixels and channels) between its image and the photo of its
own layout (mirrored as the sample was), and the smallest such difference to any other training
photo (either way round). Prints both means, the share of samples whose closest photo is their own,
and for scale the mean difference between each training photo and its closest other photo. An
image generator that reproduces its training photos draws images far closer to their own photo
than any photo is to another. `sheet=` draws the first eight samples' photos over each production's
images of them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import MISSING
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from synthdata.core.contract import ConfigError, DatasetError  # noqa: E402
from synthdata.core.recipe_loading import parse_command_line  # noqa: E402
from synthdata.core.visualize import save_image_grid  # noqa: E402
from synthdata.data.readers import make_reader  # noqa: E402
from synthdata.data.shards import decode_sample, iter_tar, resolve_urls  # noqa: E402


def mean_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean |a - b| over the last three axes (broadcast over the leading ones)."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=(-3, -2, -1))


def copies(photos: dict[str, np.ndarray], samples: list[tuple[str, bool, np.ndarray]]) -> dict[str, float]:
    """`photos`: id -> HxWx3 uint8; `samples`: (layout id, mirrored, image) -> the summary numbers."""
    ids = list(photos)
    stack = np.stack([photos[i] for i in ids])
    both = np.concatenate([stack, stack[:, :, ::-1]])  # every photo either way round
    own_d, other_d, own_closest = [], [], 0
    for layout_id, mirrored, image in samples:
        k = ids.index(layout_id)
        own = stack[k, :, ::-1] if mirrored else stack[k]
        d = mean_abs(both, image[None])
        d[[k, k + len(ids)]] = np.inf
        own_d.append(float(mean_abs(own, image)))
        other_d.append(float(d.min()))
        own_closest += own_d[-1] < other_d[-1]
    between = []
    for k in range(len(ids)):
        d = mean_abs(both, stack[k][None])
        d[[k, k + len(ids)]] = np.inf
        between.append(float(d.min()))
    return {"samples": len(samples), "own": float(np.mean(own_d)), "closest_other": float(np.mean(other_d)),
            "own_closest_share": own_closest / max(len(samples), 1), "photo_to_closest_photo": float(np.mean(between))}


def real_layout_samples(shards: str, count: int, photos: dict[str, np.ndarray], where: str) -> list[tuple[str, bool, np.ndarray]]:
    """(layout id, mirrored, image) of the first `count` samples with a real layout in `shards`."""
    urls, _ = resolve_urls(shards)
    samples: list[tuple[str, bool, np.ndarray]] = []
    for url in urls:
        for raw in iter_tar(url):
            meta = json.loads(raw["json"])
            if meta.get("layout_source") != "real":
                continue
            if meta["layout_id"] not in photos:
                raise DatasetError(f"{url}: sample {meta.get('id')} has layout {meta['layout_id']}, which is not in {where}")
            samples.append((meta["layout_id"], bool(meta.get("hflip")), decode_sample(raw, depth=False)["image"]))
            if len(samples) >= count:
                return samples
    if not samples:
        raise DatasetError(f"no sample with a real layout in {shards}")
    return samples


def main(argv: list[str]) -> int:
    try:
        recipe, args = parse_command_line(argv, {"shards": MISSING, "count": 256, "sheet": None})
        reader = make_reader(recipe.data, recipe.data.train_split)
        photos = {reader.item_id(i): reader[i]["image"] for i in range(len(reader))}
        where = f"the training split of {recipe.data.reader} read with these data.* keys"
        productions = args["shards"] if isinstance(args["shards"], list) else [args["shards"]]
        found = {str(s): real_layout_samples(str(s), int(args["count"]), photos, where) for s in productions}
    except (ConfigError, DatasetError) as e:
        print(f"image_copies: {e}", file=sys.stderr)
        return 2
    print(f"against {len(photos)} training photos (mean |difference| over pixels and channels, 0-255)")
    for shards, samples in found.items():
        s = copies(photos, samples)
        print(f"{shards}: {s['samples']} samples; to their own layout's photo {s['own']:.1f}, to the closest other "
              f"photo {s['closest_other']:.1f}; own photo the closest in {100 * s['own_closest_share']:.0f}%; "
              f"a photo to its closest other photo {s['photo_to_closest_photo']:.1f}")
    if args["sheet"]:
        first = [smp[:2] for smp in next(iter(found.values()))[:8]]
        if any([smp[:2] for smp in samples[:8]] != first for samples in found.values()):
            print("image_copies: no sheet: the productions' first samples have other layouts", file=sys.stderr)
            return 2
        rows = [[photos[i][:, ::-1] if mirrored else photos[i] for i, mirrored in first]]
        rows += [[smp[2] for smp in samples[:8]] for samples in found.values()]
        save_image_grid([image for row in rows for image in row], args["sheet"], ncols=len(first))
        print(f"sheet: {args['sheet']} (the photos, then each production's images, one row each)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
