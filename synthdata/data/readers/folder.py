"""Any dataset as two folders of images and masks matched by file stem; classes from the recipe.

Looks for `ROOT/{split}/{images_dir}` first, then `ROOT/{images_dir}` (with an optional
`ROOT/{split}.txt` listing stems). Masks may be index PNGs/TIFFs, palette PNGs or RGB colour
masks (converted through `data.palette`; black is ignore unless it is a class colour).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from synthdata.core.contract import DatasetError
from synthdata.core.palette import IGNORE_COLOR, rgb_to_index
from synthdata.data.readers.base import DatasetReader, register_reader
from synthdata.data.readers.io import as_layout, missing_files_error, read_labels, read_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_STEM_SUFFIXES = ("", "_mask", "_m", "_label", "_labels", "_gt")  # tried in this order


def _files_by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            files.setdefault(path.stem, path)
    return files


@register_reader("folder")
class FolderReader(DatasetReader):
    splits = ("train", "val", "test", "all")

    def layout_help(self) -> str:
        d = self.cfg
        return (
            f"Expected ROOT/{{split}}/{d.images_dir}/ and ROOT/{{split}}/{d.masks_dir}/, or "
            f"ROOT/{d.images_dir}/ and ROOT/{d.masks_dir}/ (images and masks matched by file stem)."
        )

    def _folders(self) -> tuple[Path, Path, list[str] | None]:
        d = self.cfg
        split_dir = self.root / self.split
        if (split_dir / d.images_dir).is_dir():
            return split_dir / d.images_dir, split_dir / d.masks_dir, None
        if not (self.root / d.images_dir).is_dir():
            raise DatasetError(f"folder: no image folder for split '{self.split}' under {self.root}. {self.layout_help()}")
        list_file = self.root / f"{self.split}.txt"
        if list_file.is_file():
            stems = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
            return self.root / d.images_dir, self.root / d.masks_dir, stems
        if self.split != "all":
            warnings.warn(
                f"folder: {self.root} has no '{self.split}' split folder or {self.split}.txt; "
                f"split '{self.split}' reads every image (train and val are the same files)",
                stacklevel=3,
            )
        return self.root / d.images_dir, self.root / d.masks_dir, None

    def _items(self) -> list[tuple[Path, Path]]:
        image_dir, mask_dir, stems = self._folders()
        if not mask_dir.is_dir():
            raise DatasetError(f"folder: mask folder {mask_dir} does not exist. {self.layout_help()}")
        images, masks = _files_by_stem(image_dir), _files_by_stem(mask_dir)
        if stems is not None:
            unknown = [image_dir / s for s in stems if s not in images]
            if unknown:
                raise missing_files_error(f"folder {self.split}", "listed images not found", unknown)
            images = {s: images[s] for s in stems}
        if not images:
            raise DatasetError(f"folder: no images in {image_dir}. {self.layout_help()}")
        pairs, unmatched = [], []
        for stem, image in sorted(images.items()):
            mask = next((masks[stem + s] for s in MASK_STEM_SUFFIXES if stem + s in masks), None)
            if mask is None:
                unmatched.append(image)
            else:
                pairs.append((image, mask))
        if unmatched:
            raise missing_files_error(f"folder {self.split}", f"images without a mask in {mask_dir}", unmatched)
        return pairs

    def _load(self, item: tuple[Path, Path]) -> dict[str, Any]:
        image_path, mask_path = item
        raw = read_labels(mask_path, allow_rgb=True)
        layout = self._colour_to_index(raw, mask_path) if raw.ndim == 3 else as_layout(raw)
        return {
            "image": read_rgb(image_path),
            "layout": layout,
            "meta": {"id": image_path.stem, "path": str(image_path), "label_path": str(mask_path)},
        }

    def _colour_to_index(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        palette = self.classes.palette
        index, unknown = rgb_to_index(rgb, palette)
        if not (palette == np.array(IGNORE_COLOR)).all(1).any():
            ignore = (rgb == np.array(IGNORE_COLOR, dtype=rgb.dtype)).all(-1)
            index[ignore] = self.classes.ignore_index
            unknown &= ~ignore
        if unknown.any():
            colours = sorted({tuple(int(v) for v in c) for c in rgb[unknown][:10000]})[:5]
            raise DatasetError(
                f"{path}: {int(unknown.sum())} pixels have colours not in the class palette, "
                f"e.g. {colours}; set data.palette to the mask colours (one RGB per class)"
            )
        return index.astype(np.int64)
