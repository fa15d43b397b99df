"""How much of a composite production's real layouts is textured with their own image's pixels.

    python tools/composite_sources.py SHARDS [count=256]

Reads the samples' `json` (`layout_source`, `layout_id`, `sources`) of a `stages.image.arch=composite`
production and prints, over its real-layout samples, the share of layout components, and of their
area, whose bank segment comes from the layout's own image (retrieval by shape finds a real
layout's own segments; `stages.image.composite.leave_one_out=true` forbids them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthdata.core.contract import DatasetError  # noqa: E402
from synthdata.data.shards import iter_tar, resolve_urls  # noqa: E402


def own_shares(shards: str, count: int) -> dict[str, float]:
    urls, _ = resolve_urls(shards)
    samples = components = own = area = own_area = 0
    for url in urls:
        if samples >= count:
            break
        for raw in iter_tar(url):
            if samples >= count:
                break
            meta = json.loads(raw["json"])
            if meta.get("layout_source") != "real" or "sources" not in meta:
                continue
            samples += 1
            for entry in meta["sources"]:
                mine = entry["source"] == meta.get("layout_id")
                components, own = components + 1, own + mine
                area, own_area = area + entry["area"], own_area + entry["area"] * mine
    if not samples:
        raise DatasetError(f"{shards}: no composite samples of real layouts")
    return {"samples": samples, "components": own / components, "area": own_area / max(area, 1)}


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    value = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("count=")), "256")
    if not value.isdigit() or int(value) < 1:
        print(f"composite_sources: count=N needs a whole number >= 1, got {value!r}", file=sys.stderr)
        return 2
    try:
        shares = own_shares(argv[0], int(value))
    except DatasetError as e:  # no shards there, or none of real layouts
        print(f"composite_sources: {e}", file=sys.stderr)
        return 2
    print(f"{argv[0]}: {shares['samples']} real-layout samples: {shares['components']:.1%} of components, "
          f"{shares['area']:.1%} of their area textured from the layout's own image")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
