"""Any dataset as two folders of images and masks matched by file stem; classes from the recipe.

Looks for `ROOT/{split}/{images_dir}` first, then `ROOT/{images_dir}` (with an optional
`ROOT/{split}.txt` listing stems). Without split folders or files, a split other than the training
one is refused (it would be the training images), unless `data.val_fraction` holds out a
deterministic part by file name or `data.allow_train_as_val` says so (then every report does). Masks may be index PNGs/TIFFs, palette PNGs or RGB colour
masks (converted through `data.palette`; black is ignore unless it is a class colour).
"""

from __future__ import annotations

import hashlib
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
        image_dir = self.root / d.images_dir
        if d.val_fraction is not None:
            return image_dir, self.root / d.masks_dir, self._held_out_split(image_dir, d.val_fraction)
        if self.split not in ("all", d.train_split):
            if not d.allow_train_as_val:
                raise DatasetError(
                    f"folder: {self.root} has no '{self.split}' split folder or {self.split}.txt, so split "
                    f"'{self.split}' would be the training images; give data.val_fraction=0.1 (a deterministic "
                    f"held-out tenth, chosen by file name) or {self.split}.txt, or data.allow_train_as_val=true "
                    "(every report then says so)")
            warnings.warn(f"folder: {self.root} has no '{self.split}' split folder or {self.split}.txt; split "
                          f"'{self.split}' reads every image, the training images (data.allow_train_as_val=true)",
                          stacklevel=3)
            self.split_note = f"'{self.split}' is the training images (data.allow_train_as_val=true): not held out"
        return image_dir, self.root / d.masks_dir, None

    def _held_out_split(self, image_dir: Path, fraction: float) -> list[str]:
        """`data.val_fraction`: an image is held out when the sha256 of its file stem, read as a
        number in [0, 1), is below `fraction`, so the split depends only on the names (adding
        images never moves others); the training split is the rest, every other split the held-out part."""
        stems = sorted(_files_by_stem(image_dir)) if image_dir.is_dir() else []
        held = [s for s in stems if int(hashlib.sha256(s.encode()).hexdigest()[:15], 16) / 16**15 < fraction]
        if not held or len(held) == len(stems):
            raise DatasetError(f"folder: data.val_fraction={fraction} holds out {len(held)} of the {len(stems)} images "
                               f"in {image_dir}; choose a fraction that leaves images on both sides")
        train = self.split in ("all", self.cfg.train_split)
        chosen = stems if self.split == "all" else [s for s in stems if (s in set(held)) != train]
        if self.split != "all":
            self.split_note = (f"held out by data.val_fraction={fraction} (sha256 of the file name): "
                               f"{len(held)} of {len(stems)} images" + ("; this is the rest" if train else ""))
        return chosen

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
