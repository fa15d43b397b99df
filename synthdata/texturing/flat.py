"""`stages.image.arch=flat`: every class painted one colour, its mean over the training photos.

No network and no bank: a baseline that says what an image stage's paint is worth beyond the labels
it is given. With `produce.layouts=real`, `produce.copy_paste=N` and `produce.real_pixel_classes=all`,
the photo keeps its labelled pixels and the objects pasted into it are flat in their class's colour
(unlabelled pixels are the neutral grey): the same layouts a trained image stage would paint with
the same seeds (the objects are cut from the training layouts, as for `spade`), so the two
productions differ in what fills the pasted masks and the unlabelled pixels, nothing else.

The colours are the per-class means of the training split's images (`data.train_split`, after
`data.subset`) at the reader's resolution, read once per production; a class no training pixel
shows, ignored pixels and any value outside the classes are the neutral grey of composite texturing.
Samples carry no depth, and a layout's image does not depend on its seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from synthdata.core.contract import CheckpointError, ClassInfo
from synthdata.data.readers import make_reader
from synthdata.texturing.composite import IGNORE_FILL
from synthdata.texturing.pipeline import production_frame

if TYPE_CHECKING:
    from synthdata.core.recipe import Recipe


def class_colours(reader: Any, num_classes: int, ignore_index: int | None = None, *,
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`(colours, pixels)`: each class's mean RGB over `reader`'s images (uint8, (num_classes, 3);
    `IGNORE_FILL` where a class has no pixel) and its pixel count ((num_classes,) int64)."""
    sums = np.zeros((num_classes, 3), np.float64)
    counts = np.zeros(num_classes, np.int64)
    for i in tqdm(range(len(reader)), desc="class colours", disable=not progress, leave=False, mininterval=1.0):
        sample = reader[i]
        layout = np.asarray(sample["layout"]).astype(np.int64).ravel()
        image = np.asarray(sample["image"]).reshape(-1, 3).astype(np.float64)
        keep = (layout >= 0) & (layout < num_classes)
        if ignore_index is not None:
            keep &= layout != ignore_index
        counts += np.bincount(layout[keep], minlength=num_classes)
        for channel in range(3):
            sums[:, channel] += np.bincount(layout[keep], weights=image[keep, channel], minlength=num_classes)
    colours = np.tile(np.asarray(IGNORE_FILL, np.float64), (num_classes, 1))
    seen = counts > 0
    colours[seen] = sums[seen] / counts[seen, None]
    return np.rint(colours).astype(np.uint8), counts


class FlatPipeline:
    """A `Pipeline` stand-in that paints each layout pixel its class's colour. `base` (trained
    stages, or None) gives generated layouts when there are any."""

    def __init__(self, colours: np.ndarray, *, classes: ClassInfo, height: int, width: int, depth_scale: float,
                 base: Any = None, device: torch.device | str = "cpu"):
        self.classes, self.height, self.width, self.depth_scale = classes, int(height), int(width), depth_scale
        self.base, self.device, self.has_depth = base, torch.device(device), False
        table = np.tile(np.asarray(IGNORE_FILL, np.uint8), (classes.num_classes + 1, 1))
        table[: classes.num_classes] = colours[: classes.num_classes]
        self.table = torch.from_numpy(table).float().div_(255.0)  # class colours, then grey, in [0, 1]

    def layouts_from_seeds(self, seeds: list[int]) -> torch.Tensor:
        if self.base is None:
            raise CheckpointError("produce.layouts=generated needs a trained layout stage, but the run dir has "
                                  "none; train it with `synthdata train recipe=... stage=layout` "
                                  "(stages.image.arch=flat needs no image stage)")
        return self.base.layouts_from_seeds(seeds)

    def from_layouts(self, layouts: torch.Tensor, seeds: Sequence[int], noise: dict | None = None) -> dict[str, Any]:
        """Layouts (B, H, W) -> {"layout", "depth": None, "image" (B, 3, H, W) float32 in [0, 1],
        "meta"}, like `Pipeline.from_layouts`."""
        layouts = torch.as_tensor(layouts).long()
        if layouts.dim() != 3 or layouts.shape[0] != len(seeds):
            raise ValueError(f"layouts must be (B, H, W) with B = len(seeds) = {len(seeds)}, got {tuple(layouts.shape)}")
        if tuple(layouts.shape[1:]) != (self.height, self.width):
            raise ValueError(f"layouts are {tuple(layouts.shape[1:])}, this production makes {(self.height, self.width)}")
        index = layouts.cpu()
        grey = len(self.table) - 1  # ignored pixels and anything outside the classes
        index = torch.where((index >= 0) & (index < grey), index, torch.full_like(index, grey))
        image = self.table[index].permute(0, 3, 1, 2).contiguous()
        return {"layout": layouts.to(self.device), "depth": None, "image": image.to(self.device),
                "meta": [{"texturing": "flat"} for _ in seeds]}

    def sample(self, seeds: list[int]) -> dict[str, Any]:
        return self.from_layouts(self.layouts_from_seeds(seeds), seeds)


def flat_pipeline(recipe: "Recipe", *, base: Any = None, accelerator: Any = None,
                  progress: bool = True) -> FlatPipeline:
    """The training split's class colours as a pipeline; `base` from `load_pipeline` when layouts
    are generated (None: real layouts, and the recipe's reader gives classes and size)."""
    reader = make_reader(recipe.data, recipe.data.train_split)
    classes, height, width, depth_scale = production_frame(recipe, base, reader)
    colours, _ = class_colours(reader, classes.num_classes, classes.ignore_index, progress=progress)
    return FlatPipeline(colours, classes=classes, height=height, width=width, depth_scale=depth_scale, base=base,
                        device=accelerator.device if accelerator is not None else "cpu")


def describe_colours(recipe: "Recipe", *, progress: bool = True) -> dict[str, Any]:
    """`train stage=image` with arch=flat: nothing to train; the colours it will paint, per class."""
    reader = make_reader(recipe.data, recipe.data.train_split)
    classes = reader.classes
    colours, counts = class_colours(reader, classes.num_classes, classes.ignore_index, progress=progress)
    return {name: {"rgb": colours[c].tolist(), "pixels": int(counts[c])} for c, name in enumerate(classes.names)}


__all__ = ["FlatPipeline", "class_colours", "describe_colours", "flat_pipeline"]
