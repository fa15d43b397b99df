"""TiO2 particles in SEM images (Ruehle et al., Sci. Rep. 2021): background vs particle.

`images/NNN.tif` (8-bit grey, stored as a palette TIFF) with `masks/NNN_m.tif` (0/255). The
microscope's data bar at the bottom is cropped from image and mask alike. There is no official
split: `val` is a fixed hold-out of 5 stems, `train` the rest, `all` everything (sorted by stem).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from synthdata.core.contract import DatasetError
from synthdata.data.readers.base import DatasetReader, register_reader
from synthdata.data.readers.io import as_layout, missing_files_error, read_labels, read_tiff, to_uint8

# Hold-out for benchmarks: every 6th of the 30 shared stems (sorted), starting at the 3rd.
VAL_STEMS = ("1908252", "1908268", "1908284", "1908300", "1908316")


def detect_databar(gray: np.ndarray, min_fraction: float = 0.8) -> int:
    """Rows of the SEM data bar at the bottom of `gray` `(H, W)`, 0 if there is none.

    The bar is a band of uniform background (one grey value on >= `min_fraction` of a row) with
    text; it opens with a few solid rows. On the shared Zeiss images it is rows 712..767 (56
    rows; the last 2 rows are scan residue below the bar and are cropped with it).
    """
    height = gray.shape[0]
    start = height * 2 // 3
    uniform = np.array([np.bincount(row.ravel()).max() / row.size for row in gray[start:]]) >= min_fraction
    for offset in range(len(uniform) - 3):
        if uniform[offset : offset + 4].all() and uniform[offset:].mean() >= 0.5:
            return height - (start + offset)
    return 0


@register_reader("particles")
class ParticlesReader(DatasetReader):
    default_classes = ("background", "particle")
    default_palette = np.array([[0, 0, 0], [255, 255, 0]], dtype=np.uint8)
    splits = ("train", "val", "all")

    def layout_help(self) -> str:
        return "Expected ROOT/images/NNN.tif with ROOT/masks/NNN_m.tif (the BAM SEM particles layout)."

    def _items(self) -> list[tuple[Path, Path]]:
        if self.split not in self.splits:
            raise DatasetError(f"particles: unknown split '{self.split}'. Valid splits: {', '.join(self.splits)}")
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        if not image_dir.is_dir() or not mask_dir.is_dir():
            raise DatasetError(f"particles: {image_dir} or {mask_dir} missing. {self.layout_help()}")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
        if not images:
            raise DatasetError(f"particles: no .tif images in {image_dir}. {self.layout_help()}")
        if self.split == "val":
            images = [p for p in images if p.stem in VAL_STEMS]
            if not images:
                raise DatasetError(f"particles: none of the validation stems {VAL_STEMS} are in {image_dir}")
        elif self.split == "train":
            images = [p for p in images if p.stem not in VAL_STEMS]
        pairs = [(p, mask_dir / f"{p.stem}_m{p.suffix}") for p in images]
        missing = [m for _, m in pairs if not m.is_file()]
        if missing:
            raise missing_files_error(f"particles {self.split}", "images without a mask", missing)
        return pairs

    def _load(self, item: tuple[Path, Path]) -> dict[str, Any]:
        image_path, mask_path = item
        # The stored values are the grey levels: the TIFF colour map is the identity except for
        # a few entries (9, 18, ...) that recolour the data-bar text, so it is not applied.
        image = read_tiff(image_path)
        gray = image if image.ndim == 2 else image[..., 0]
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        mask = read_labels(mask_path)
        # Both files are 768 rows x 1024 columns as arrays: the "1024x768" of the images and the
        # "768x1024" of the masks are width x height vs height x width of the same orientation
        # (checked by overlaying outlines); a genuine transpose would fail the size check below.
        if mask.shape != gray.shape:
            raise DatasetError(
                f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
                f"{image_path.name} size {gray.shape[1]}x{gray.shape[0]}"
            )
        bar = self.cfg.databar_height if self.cfg.databar_height is not None else detect_databar(gray)
        if bar < 0 or bar >= gray.shape[0]:
            raise DatasetError(f"{image_path}: data.databar_height={bar} does not fit {gray.shape[0]} rows")
        keep = gray.shape[0] - bar
        # Masks are 0/255 (some files 0/1); any other value stays raw and is flagged as out of range.
        layout = as_layout(mask[:keep])
        layout[mask[:keep] == 255] = 1
        return {
            "image": np.ascontiguousarray(to_uint8(image[:keep], image_path)),
            "layout": layout,
            "meta": {"id": image_path.stem, "path": str(image_path), "label_path": str(mask_path), "databar_rows": int(bar)},
        }
