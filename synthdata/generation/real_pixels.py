"""Real pixels for chosen classes of real layouts (`produce.real_pixel_classes`).

With `produce.layouts=real|mixed` and a GAN (or flat) image stage, the stage paints the whole of a real
training layout. `RealPixels` wraps the stage's pipeline and puts the real photo's pixels back
wherever the layout still holds its own labels of the chosen classes, so the generator paints the
scene's regions while the objects it paints poorly (CamVid's pedestrians on a CPU budget:
docs/studies.md) keep their real pixels. Objects pasted into a layout have no photo at their new
place and stay painted; generated layouts (a mixed source's other half) are left as they are.
Depth, when both the stage and the dataset have it, is taken from the photo's sample on the same
pixels where it is known.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


class RealPixels:
    """A pipeline whose `from_layouts` keeps the real pixels of `classes` on `real`'s layouts.

    `real`: the `RealLayouts` the layouts come from (its `photo(meta)`). Every sample's meta gets
    `real_pixel_share`, the fraction of its pixels taken from the photo (0 for generated layouts).
    """

    takes_layout_meta = True  # needs each layout's meta (which photo, mirrored or not)

    def __init__(self, pipeline: Any, real: Any, classes: Sequence[int]):
        self.pipeline, self.real = pipeline, real
        self.keep_classes = np.asarray(sorted({int(c) for c in classes}), np.int64)

    def __getattr__(self, name: str) -> Any:  # height, width, classes of the data, depth_scale, ...
        if name == "pipeline":
            raise AttributeError(name)
        return getattr(self.pipeline, name)

    def from_layouts(self, layouts: torch.Tensor, seeds: list[int],
                     metas: list[dict[str, Any]] | None = None, **kwargs: Any) -> dict[str, Any]:
        if getattr(self.pipeline, "takes_layout_meta", False):
            kwargs["metas"] = metas
        out = dict(self.pipeline.from_layouts(layouts, seeds, **kwargs))
        metas = metas if metas is not None else [{} for _ in seeds]
        drawn = out["layout"].cpu().numpy()
        height, width = drawn.shape[1:]
        masks = np.zeros((len(seeds), height, width), bool)
        photos = np.zeros((len(seeds), height, width, 3), np.float32)
        depth_masks = np.zeros_like(masks)
        depths = np.zeros((len(seeds), height, width), np.float32)
        for j, meta in enumerate(metas):
            photo = self.real.photo(meta)
            if photo is None:
                continue
            masks[j] = (drawn[j] == photo["layout"]) & np.isin(drawn[j], self.keep_classes)
            photos[j] = photo["image"].astype(np.float32) / 255.0
            if "depth" in photo:
                depths[j] = photo["depth"]
                depth_masks[j] = masks[j] & np.isfinite(photo["depth"]) & (photo["depth"] > 0)
        image = out["image"]
        keep = torch.from_numpy(masks).to(image.device)[:, None]
        out["image"] = torch.where(keep, torch.from_numpy(photos).permute(0, 3, 1, 2).to(image), image)
        if out.get("depth") is not None and depth_masks.any():
            depth = out["depth"]
            out["depth"] = torch.where(torch.from_numpy(depth_masks).to(depth.device),
                                       torch.from_numpy(depths).to(depth), depth)
        shares = [{"real_pixel_share": round(float(m.mean()), 4)} for m in masks]
        base = out.get("meta") or [{} for _ in seeds]
        out["meta"] = [{**b, **s} for b, s in zip(base, shares)]
        return out


__all__ = ["RealPixels"]
