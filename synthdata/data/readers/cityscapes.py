"""Cityscapes in its official folder layout: 19 train classes, depth from disparity.

Label ids become train ids through cityscapesscripts' own label table (never a copied table).
Depth (metres) = baseline * fx / disparity, with disparity = (p - 1) / 256 for stored p > 0 and
p = 0 meaning unknown, as documented by the dataset (Cordts et al., CVPR 2016, README).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthdata.core.contract import ClassInfo, DatasetError
from synthdata.core.recipe import DataConfig
from synthdata.data.readers.base import DatasetReader, register_reader
from synthdata.data.readers.io import missing_files_error, read_json, read_labels, read_rgb

IMAGE_SUFFIX = "_leftImg8bit.png"


def cityscapes_labels() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """`(train-class names, palette (19, 3), lookup (256,) labelId -> trainId or 255)`."""
    from cityscapesscripts.helpers.labels import labels  # noqa: PLC0415  (only the Cityscapes reader needs its label table)

    train = sorted((lab for lab in labels if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId)
    names = tuple(lab.name for lab in train)
    palette = np.array([lab.color for lab in train], dtype=np.uint8)
    lut = np.full(256, 255, dtype=np.uint8)
    for lab in labels:
        if 0 <= lab.id < 256 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    return names, palette, lut


def disparity_to_depth(raw: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """Stored disparity PNG values `(H, W)` uint16 -> depth in metres, float32, 0 = unknown."""
    disparity = (raw.astype(np.float32) - 1.0) / 256.0
    valid = (raw > 0) & (disparity > 0)  # p = 1 is zero disparity: infinitely far, unknown
    depth = np.zeros(raw.shape, dtype=np.float32)
    depth[valid] = baseline * fx / disparity[valid]
    return depth


@register_reader("cityscapes")
class CityscapesReader(DatasetReader):
    splits = ("train", "val", "test")

    def __init__(self, cfg: DataConfig, split: str):
        names, palette, self.lut = cityscapes_labels()
        self.default_classes, self.default_palette = names, palette
        super().__init__(cfg, split)

    def _class_info(self, cfg: DataConfig) -> ClassInfo:
        if not self.default_classes:  # `declared_classes` asks before __init__ ran
            self.default_classes, self.default_palette = cityscapes_labels()[:2]
        return super()._class_info(cfg)

    def layout_help(self) -> str:
        return (
            "Expected the official layout: ROOT/leftImg8bit/{split}/{city}/*_leftImg8bit.png, "
            "ROOT/gtFine/{split}/{city}/*_gtFine_labelIds.png and optionally "
            "ROOT/disparity/{split}/{city}/*_disparity.png with ROOT/camera/{split}/{city}/*_camera.json."
        )

    def _items(self) -> list[dict[str, Any]]:
        image_dir = self.root / "leftImg8bit" / self.split
        if not image_dir.is_dir():
            raise DatasetError(f"cityscapes: {image_dir} does not exist. {self.layout_help()}")
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise DatasetError(f"cityscapes: no *{IMAGE_SUFFIX} files under {image_dir}. {self.layout_help()}")
        self.has_depth = (self.root / "disparity" / self.split).is_dir() and (
            self.root / "camera" / self.split
        ).is_dir()
        items, missing = [], []
        for image in images:
            city, stem = image.parent.name, image.name[: -len(IMAGE_SUFFIX)]
            item = {
                "id": stem,
                "image": image,
                "labels": self.root / "gtFine" / self.split / city / f"{stem}_gtFine_labelIds.png",
            }
            if self.has_depth:
                item["disparity"] = self.root / "disparity" / self.split / city / f"{stem}_disparity.png"
                item["camera"] = self.root / "camera" / self.split / city / f"{stem}_camera.json"
            missing += [item[k] for k in ("labels", "disparity", "camera") if k in item and not item[k].is_file()]
            items.append(item)
        if missing:
            raise missing_files_error(f"cityscapes {self.split}", "files missing for images in leftImg8bit", missing)
        return items

    def _load(self, item: dict[str, Any]) -> dict[str, Any]:
        raw = read_labels(item["labels"])
        if raw.max(initial=0) > 255:
            raise DatasetError(f"{item['labels']}: label ids above 255 (is this a labelIds file?)")
        sample = {
            "image": read_rgb(item["image"]),
            "layout": self.lut[raw.astype(np.int64)],
            "meta": {"id": item["id"], "path": str(item["image"]), "label_path": str(item["labels"])},
        }
        sample["layout"][sample["layout"] == 255] = self.classes.ignore_index
        if "disparity" in item:
            camera = read_json(item["camera"])
            try:
                baseline = float(camera["extrinsic"]["baseline"])
                fx = float(camera["intrinsic"]["fx"])
            except (KeyError, TypeError, ValueError) as e:
                raise DatasetError(f"{item['camera']}: expected extrinsic.baseline and intrinsic.fx ({e})") from e
            sample["depth"] = disparity_to_depth(read_labels(item["disparity"]), baseline, fx)
        return sample
