"""ADE20K SceneParsing (ADEChallengeData2016): 150 classes, annotation 0 = other -> ignore.

Annotations store 1..150 for the classes of the MIT SceneParsing benchmark (Zhou et al., CVPR
2017); they are shifted to 0..149 and 0 becomes the ignore index. Splits train/val read the
`training`/`validation` folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthdata.core.contract import DatasetError
from synthdata.data.readers.base import DatasetReader, register_reader
from synthdata.data.readers.io import as_layout, missing_files_error, read_labels, read_rgb

# The 150 SceneParsing class names, in annotation order (value 1 = "wall").
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip
SPLIT_FOLDERS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


@register_reader("ade20k")
class ADE20KReader(DatasetReader):
    default_classes = ADE20K_CLASSES

    def layout_help(self) -> str:
        return (
            "Expected ROOT/ADEChallengeData2016/images/{training,validation}/*.jpg and "
            "ROOT/ADEChallengeData2016/annotations/{training,validation}/*.png (ROOT may also be "
            "the ADEChallengeData2016 folder itself)."
        )

    def _base(self) -> Path:
        for base in (self.root / "ADEChallengeData2016", self.root):
            if (base / "images").is_dir() and (base / "annotations").is_dir():
                return base
        raise DatasetError(f"ade20k: no images/ and annotations/ folders under {self.root}. {self.layout_help()}")

    def _items(self) -> list[tuple[Path, Path]]:
        if self.split not in SPLIT_FOLDERS:
            raise DatasetError(f"ade20k: unknown split '{self.split}'. Valid splits: train, val")
        base, folder = self._base(), SPLIT_FOLDERS[self.split]
        images = sorted((base / "images" / folder).glob("*.jpg"))
        if not images:
            raise DatasetError(f"ade20k: no .jpg images in {base / 'images' / folder}. {self.layout_help()}")
        pairs = [(p, base / "annotations" / folder / f"{p.stem}.png") for p in images]
        missing = [label for _, label in pairs if not label.is_file()]
        if missing:
            raise missing_files_error(f"ade20k {self.split}", "images without an annotation", missing)
        return pairs

    def _load(self, item: tuple[Path, Path]) -> dict[str, Any]:
        image_path, label_path = item
        raw = read_labels(label_path)
        layout = as_layout(raw)
        # 0 ("other objects") is not a class; keeping the dtype means 0 - 1 never wraps below.
        layout[raw == 0] = self.classes.ignore_index
        labelled = raw > 0
        layout[labelled] = raw[labelled] - 1
        return {
            "image": read_rgb(image_path),
            "layout": layout,
            "meta": {"id": image_path.stem, "path": str(image_path), "label_path": str(label_path)},
        }
