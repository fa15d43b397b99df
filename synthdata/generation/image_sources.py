"""Where a production's images come from, chosen in one place: `image_source(recipe)`.

- `GanImages` (`stages.image.arch=spade|pix2pix`): the trained image stage of a run dir, after a
  depth stage when the data has depth and the image stage uses it.
- `CompositeImages` (`stages.image.arch=composite`): real pixels. Every region of a layout is
  textured from the segment bank in `RUN_DIR/bank` (`synthdata.texturing.pipeline`); there is no
  image network to train unless `stages.image.harmonise` names a harmoniser. Depth comes from the
  bank's segments, so no depth stage trains; pasted objects are bank segments with their own
  pixels.
- `FlatImages` (`stages.image.arch=flat`): each class painted its mean training colour
  (`synthdata.texturing.flat`), nothing to train: a baseline for what a generator's paint is worth
  beyond the labels. Pasted objects are cut from the training layouts, as for a GAN.

Training, production and studies ask the source what it needs (stages to train, what the image
stage's training means, the pipeline, the pool of objects to paste, where `copy_paste_classes=auto`
looks) instead of testing the arch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from synthdata.core.contract import CheckpointError, ConfigError
from synthdata.core.imageops import resize_labels
from synthdata.generation.sampler import load_pipeline
from synthdata.generation.stages import check_harmonise
from synthdata.texturing.bank_building import thing_classes
from synthdata.texturing.copy_paste import ObjectPool
from synthdata.texturing.flat import describe_colours, flat_pipeline
from synthdata.texturing.pipeline import build_for_training, composite_pipeline, harmoniser_inputs

if TYPE_CHECKING:
    from synthdata.core.recipe import Recipe

# `batch, seed -> (B, 3, H, W)`: the extra input of an image stage that refines composites
Composites = Callable[[dict[str, Any], int], Any]


def reader_object_classes(reader: Any, height: int, width: int, num_classes: int,
                          ignore_index: int | None) -> list[int]:
    """The object classes (not regions, `bank_building.thing_classes`) of a reader's layouts at height x width."""
    layouts: Iterable[np.ndarray] = (
        resize_labels(np.asarray(reader[i]["layout"]), height, width) for i in range(len(reader)))
    return thing_classes(layouts, num_classes, ignore_index=ignore_index)


class GanImages:
    """Images from the trained image stage (SPADE or pix2pix)."""

    name = "gan"
    trains_generator = True  # a mask-to-image generator SegGAN refinement can use
    real_pixels_everywhere = False  # true: every region is textured with real pixels already
    varies_with_seed = True  # a layout's image depends on the sample's seed (hardness copies differ)

    def stages(self, recipe: "Recipe") -> list[str]:
        """The stages after the layout stage that must be trained."""
        depth = recipe.data.has_depth and recipe.stages.image.use_depth
        return ["depth", "image"] if depth else ["image"]

    def trains_image_network(self, recipe: "Recipe") -> bool:
        """Whether the image stage trains a network (whose losses `stages.image.object_classes` weights)."""
        return True

    def prepare_image_training(self, recipe: "Recipe", run_dir: Path,
                               accelerator: Any) -> tuple[dict[str, Any] | None, Composites | None]:
        """`(summary, composites)`: a summary when nothing is left to train, and the extra input of
        the image network (None: layout and depth alone)."""
        return None, None

    def pipeline(self, recipe: "Recipe", run_dir: Path, *, accelerator: Any, autocast: bool):
        return load_pipeline(run_dir, device=accelerator.device, autocast=autocast, recipe_name=recipe.name)

    def paste_pool(self, pipeline: Any) -> ObjectPool | None:
        """Objects to paste (None: cut from the training layouts, drawn by the image stage)."""
        return None

    def object_classes(self, pipeline: Any, reader: Any, num_classes: int,
                       ignore_index: int | None) -> tuple[list[int], str]:
        """`copy_paste_classes=auto`: the object classes (not regions) of the training layouts at
        the production size, and where they were found."""
        found = reader_object_classes(reader, pipeline.height, pipeline.width, num_classes, ignore_index)
        return found, f"{len(reader)} training layouts"


class CompositeImages(GanImages):
    """Images textured with real pixels from the segment bank (`stages.image.arch=composite`)."""

    name = "composite"
    trains_generator = False
    real_pixels_everywhere = True

    def stages(self, recipe: "Recipe") -> list[str]:
        return ["image"]  # builds the bank (and trains the harmoniser, if any)

    def trains_image_network(self, recipe: "Recipe") -> bool:
        return recipe.stages.image.harmonise != "none"

    def prepare_image_training(self, recipe: "Recipe", run_dir: Path,
                               accelerator: Any) -> tuple[dict[str, Any] | None, Composites | None]:
        harmonise = recipe.stages.image.harmonise != "none"
        if harmonise and recipe.train.shards:
            raise ConfigError("stages.image.harmonise trains on the recipe's reader (its composites come from the "
                              "bank of the same images); unset train.shards")
        built, bank = build_for_training(recipe, run_dir, accelerator=accelerator)
        return (None, harmoniser_inputs(recipe, bank)) if harmonise else (built, None)

    def pipeline(self, recipe: "Recipe", run_dir: Path, *, accelerator: Any, autocast: bool):
        try:  # trained stages give layouts (and depth, a harmoniser) when there are any
            base = super().pipeline(recipe, run_dir, accelerator=accelerator, autocast=autocast)
        except CheckpointError:
            if recipe.produce.layouts != "real":  # generated layouts need the layout stage
                raise
            base = None  # real layouts + composite: nothing to train
        return composite_pipeline(recipe, run_dir, accelerator=accelerator, base=base,
                                  progress=accelerator.is_local_main_process)

    def paste_pool(self, pipeline: Any) -> ObjectPool | None:
        return ObjectPool.from_bank(pipeline.bank)

    def object_classes(self, pipeline: Any, reader: Any, num_classes: int,
                       ignore_index: int | None) -> tuple[list[int], str]:
        bank = pipeline.bank
        return sorted({int(c) for c in bank.seg_class if not bank.region[int(c)]}), "the segment bank"


class FlatImages(GanImages):
    """Each class painted its mean colour over the training photos (`stages.image.arch=flat`)."""

    name = "flat"
    trains_generator = False
    varies_with_seed = False

    def stages(self, recipe: "Recipe") -> list[str]:
        return ["image"]  # says what it will paint; nothing to train

    def trains_image_network(self, recipe: "Recipe") -> bool:
        return False

    def prepare_image_training(self, recipe: "Recipe", run_dir: Path,
                               accelerator: Any) -> tuple[dict[str, Any] | None, Composites | None]:
        check_harmonise(recipe.stages.image)  # flat has nothing a harmoniser could refine
        main = accelerator is None or accelerator.is_main_process
        colours = describe_colours(recipe, progress=main)
        if main:
            print("image: stages.image.arch=flat: no weights to train; each class is painted its mean colour over "
                  "the training split: " + ", ".join(f"{name} {tuple(c['rgb'])}" for name, c in colours.items()))
        return {"stage": "image", "steps": 0, "step": 0, "colours": colours}, None

    def pipeline(self, recipe: "Recipe", run_dir: Path, *, accelerator: Any, autocast: bool):
        base = None
        if recipe.produce.layouts != "real":  # generated layouts need the layout stage; real ones need nothing
            try:
                base = super().pipeline(recipe, run_dir, accelerator=accelerator, autocast=autocast)
            except CheckpointError as e:
                raise CheckpointError(f"produce.layouts={recipe.produce.layouts} needs a trained layout stage "
                                      f"(stages.image.arch=flat needs no other): {e}") from e
        return flat_pipeline(recipe, base=base, accelerator=accelerator,
                             progress=accelerator.is_local_main_process)


def image_source(recipe: "Recipe") -> GanImages:
    """The image source `recipe.stages.image.arch` names."""
    arch = recipe.stages.image.arch
    return CompositeImages() if arch == "composite" else FlatImages() if arch == "flat" else GanImages()


__all__ = ["CompositeImages", "FlatImages", "GanImages", "image_source"]
