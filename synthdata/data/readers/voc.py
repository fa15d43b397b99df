"""Pascal VOC 2012 segmentation: 21 classes, palette PNG masks read as indices, 255 = ignore.

The root may be VOCdevkit, VOC2012, or the folder holding VOCdevkit; the split lists are
`ImageSets/Segmentation/{train,val}.txt` (Everingham et al., IJCV 2010).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from synthdata.core.contract import DatasetError
from synthdata.data.readers.base import DatasetReader, register_reader
from synthdata.data.readers.io import as_layout, missing_files_error, read_labels, read_rgb

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def voc_palette(num_classes: int = 21) -> np.ndarray:
    """The VOC colour map: bits of the class index spread over the high bits of R, G, B."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for i in range(num_classes):
        c, rgb = i, [0, 0, 0]
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        palette[i] = rgb
    return palette


@register_reader("voc")
class VOCReader(DatasetReader):
    default_classes = VOC_CLASSES
    default_palette = voc_palette(21)
    splits = ("train", "val", "trainval")

    def layout_help(self) -> str:
        return (
            "Expected VOC2012/JPEGImages/*.jpg, VOC2012/SegmentationClass/*.png and "
            "VOC2012/ImageSets/Segmentation/{train,val}.txt; ROOT may be VOCdevkit, VOC2012 or "
            "the folder holding VOCdevkit."
        )

    def _base(self) -> Path:
        for base in (self.root, self.root / "VOC2012", self.root / "VOCdevkit" / "VOC2012"):
            if (base / "JPEGImages").is_dir() and (base / "SegmentationClass").is_dir():
                return base
        raise DatasetError(f"voc: no JPEGImages/ and SegmentationClass/ under {self.root}. {self.layout_help()}")

    def _items(self) -> list[tuple[Path, Path]]:
        base = self._base()
        list_file = base / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        if not list_file.is_file():
            raise DatasetError(f"voc: split list {list_file} not found. {self.layout_help()}")
        ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise DatasetError(f"voc: split list {list_file} is empty")
        pairs = [(base / "JPEGImages" / f"{i}.jpg", base / "SegmentationClass" / f"{i}.png") for i in ids]
        missing = [p for pair in pairs for p in pair if not p.is_file()]
        if missing:
            raise missing_files_error(f"voc {self.split} ({list_file})", "listed files missing", missing)
        return pairs

    def _load(self, item: tuple[Path, Path]) -> dict[str, Any]:
        image_path, label_path = item
        layout = as_layout(read_labels(label_path))
        layout[layout == 255] = self.classes.ignore_index  # object boundaries and difficult regions
        return {
            "image": read_rgb(image_path),
            "layout": layout,
            "meta": {"id": image_path.stem, "path": str(image_path), "label_path": str(label_path)},
        }
