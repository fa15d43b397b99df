"""The procedural toy street world (recipe=toy): seeded (layout, depth, image) triplets, no download.

A pinhole camera looks down a street of z-buffered road, sidewalks, facades, poles, trees, cars and
people; colours depend on class, instance, sun shading and fog, so depth helps image synthesis.
`python tools/bench_toy.py` measures triplets/s, `python tools/toy_world.py PATH` draws scenes.
"""

from __future__ import annotations

import os
import time
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from synthdata.core.contract import ClassInfo, DatasetError
from synthdata.core.recipe import DataConfig
from synthdata.data.readers.base import DatasetReader, register_reader

# Cityscapes names and colours (train ids of these classes), in the toy world's index order.
from synthdata.data.readers.toy_canvas import (
    _BLOTCH,
    _CARS,
    _FACADES,
    _FINE,
    BUILDING,
    CAR,
    FAR_DEPTH,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SKY,
    SPLITS,
    TOY_CLASSES,
    TOY_PALETTE,
    VEGETATION,
    _Canvas,
    _car,
    _crown,
    _Light,
    _person,
    _Street,
    _windows,
    scene_seed,
    toy_classes,
)

# what callers import from here: the world's classes and constants, rendering, the reader
__all__ = ["CAR", "FAR_DEPTH", "PERSON", "ROAD", "SKY", "TOY_CLASSES", "TOY_PALETTE", "ToyReader", "benchmark",
           "render_scene", "scene_seed", "toy_classes"]


def render_scene(seed: int, height: int, width: int) -> dict[str, Any]:
    """One street scene drawn from `seed`: a sample of the data contract.

    Returns `{"image": uint8 (H, W, 3), "layout": uint8 (H, W) toy class indices, "depth":
    float32 (H, W) metres along the view axis (sky = FAR_DEPTH), "meta": dict}`; the same
    arguments always give identical arrays.
    """
    if seed < 0:
        raise ValueError(f"toy: scene seed must be >= 0, got {seed}")
    if height < 8 or width < 8:
        raise ValueError(f"toy: resolution {height}x{width} is too small (need at least 8x8)")
    rng = np.random.default_rng(seed)
    f = width * rng.uniform(0.55, 0.95)
    cv = _Canvas(height, width, f, width * rng.uniform(0.4, 0.6), height * rng.uniform(0.36, 0.52),
                 rng.uniform(1.2, 2.2))
    overcast = rng.random() < 0.3
    ambient = rng.uniform(0.55, 0.75) if overcast else rng.uniform(0.3, 0.45)
    sun = np.array([rng.uniform(-1, 1), rng.uniform(0.4, 1.0), rng.uniform(-1, 0.6)])
    light = _Light(tuple((sun / np.linalg.norm(sun)).tolist()), ambient)
    horizon = (np.array([200, 202, 205]) if overcast else np.array([205, 218, 232])) + rng.uniform(-12, 12, 3)
    cv.colors[0] = (np.array([150, 155, 162]) if overcast else np.array([70, 125, 200])) + rng.uniform(-20, 20, 3)
    fog_dist = rng.uniform(30.0, 120.0)
    tint = 1.0 + rng.uniform(-0.06, 0.06, 3)  # colour of the light (time of day, weather)
    hw = rng.uniform(3.0, 7.5)
    st = _Street(rng.uniform(-0.7, 0.15) * hw, hw, tuple(rng.uniform(1.5, 5.0, 2)), rng.uniform(30.0, 90.0))
    road_rgb = np.array([88, 88, 92]) + rng.uniform(-15, 15, 3)
    walk_rgb = np.array([160, 155, 150]) + rng.uniform(-25, 25, 3)

    # Buildings are planned before the ground is drawn because their shadows fall on it.
    blocks, shadows, crossings = _buildings(cv, rng, st, light)
    _ground(cv, st, light, shadows, crossings, road_rgb, walk_rgb)
    for draw, args in blocks:
        draw(*args)
    _furniture(cv, rng, st, light, crossings)
    _traffic(cv, rng, st, light)

    index = cv.inst.astype(np.uint8) if len(cv.classes) <= 256 else cv.inst
    layout = _lookup(index, np.array(cv.classes, np.uint8))
    image = _compose(cv, index, layout, rng, horizon, fog_dist, tint)
    meta = {
        "dataset": "toy", "seed": int(seed), "far_depth": FAR_DEPTH,
        "camera": {"focal": float(f), "cx": float(cv.cx), "horizon": float(cv.vh), "height": float(cv.hc)},
        "fog": {"color": [float(c) for c in horizon], "distance": float(fog_dist)},
    }
    return {"image": image, "layout": layout, "depth": cv.z, "meta": meta}


def _buildings(cv: _Canvas, rng: np.random.Generator, st: _Street, light: _Light) -> tuple[list, list, list]:
    """Each side of the street is a run of blocks (own setback, height, facade) with hedges,
    gaps and side streets. Returns the deferred draw calls, `(side, za, zb, facade x, height)`
    per block (for shadows) and `(side, za, zb)` per side street."""
    blocks, shadows, crossings = [], [], []
    front = light.lambert(0, 0, -1)
    for i, side in enumerate((-1, 1)):
        z = rng.uniform(-12.0, 4.0)
        while z < st.end:
            length = rng.uniform(6.0, 25.0)
            x = st.curb[i] + side * (st.walk[i] + rng.uniform(0.0, 2.5) * (rng.random() < 0.5))
            zb = min(z + length, FAR_DEPTH - 1)
            kind = rng.random()
            if kind < 0.78:
                hgt = rng.uniform(5.0, 30.0)
                rgb = _FACADES[rng.integers(len(_FACADES))] + rng.uniform(-18, 18, 3)
                blocks.append((cv.side, (x, z, zb, 0.0, hgt, BUILDING, rgb, light.lambert(-side, 0, 0),
                                         _windows(rng, z, hgt))))
                blocks.append((cv.rect, (*sorted((x, x + side * rng.uniform(8, 15))), 0.0, hgt, z,
                                         BUILDING, rgb, front, _windows(rng, x, hgt))))
                shadows.append((side, z, zb, x, hgt))
            elif kind < 0.9:  # hedge / park strip
                rgb = np.array([70, 105, 45]) + rng.uniform(-15, 15, 3)
                blocks.append((cv.side, (x, z, zb, 0.0, rng.uniform(0.8, 2.5), VEGETATION, rgb,
                                         light.lambert(-side, 0, 0))))
            elif rng.random() < 0.7:  # a side street opens between the blocks
                length = max(length, rng.uniform(7.0, 12.0) + 1.0)
                crossings.append((side, z + 0.5, z + length - 0.5))
            z += length + rng.uniform(0.0, 6.0) * (rng.random() < 0.3)
    if st.length < FAR_DEPTH - 2:  # the street ends at a cross row of buildings
        rgb = _FACADES[rng.integers(len(_FACADES))] + rng.uniform(-18, 18, 3)
        hgt = rng.uniform(8.0, 30.0)
        blocks.append((cv.rect, (st.xr - 80, st.xr + 80, 0.0, hgt, st.length, BUILDING, rgb, front,
                                 _windows(rng, st.xr, hgt))))
    return blocks, shadows, crossings


def _furniture(cv: _Canvas, rng: np.random.Generator, st: _Street, light: _Light, crossings: list) -> None:
    """Poles (some with lamp arms) near the curbs and rows of trees on the sidewalks, but not in
    the mouths of side streets."""
    front = light.lambert(0, 0, -1)
    for i, side in enumerate((-1, 1)):
        gaps = [(za - 1.0, zb + 1.0) for s, za, zb in crossings if s == side]
        if rng.random() < 0.8:
            z, x = rng.uniform(2.0, 12.0), st.curb[i] + side * 0.4
            grey = rng.uniform(90, 170) + rng.uniform(-10, 10, 3)
            while z < st.end:
                hgt, arm = rng.uniform(4.0, 9.0), rng.uniform(1.0, 2.5) * (rng.random() < 0.5)
                if not any(za < z < zb for za, zb in gaps):
                    cv.rect(x - 0.1, x + 0.1, 0.0, hgt, z, POLE, grey, front, min_width=True)
                    if arm:  # a street lamp reaching over the road
                        cv.rect(*sorted((x, x - side * arm)), hgt - 0.18, hgt, z, POLE, grey, front)
                z += rng.uniform(10.0, 30.0)
        if rng.random() < 0.6:
            z, x = rng.uniform(2.0, 10.0), st.curb[i] + side * rng.uniform(0.6, 1.3)
            while z < st.end:
                rx, trunk = rng.uniform(1.2, 2.6), rng.uniform(1.8, 3.0)
                ry = rx * rng.uniform(0.8, 1.4)
                bark = np.array([90, 70, 50]) + rng.uniform(-15, 15, 3)
                leaf = np.array([80, 120, 45]) + rng.uniform(-25, 25, 3)
                xc = x + rng.uniform(-0.3, 0.3)
                if not any(za - rx < z < zb + rx for za, zb in gaps):
                    cv.rect(x - 0.13, x + 0.13, 0.0, trunk + ry, z, VEGETATION, bark, front, min_width=True)
                    cv.rect(xc - rx, xc + rx, trunk, trunk + 2 * ry, z, VEGETATION, leaf, 1.0,
                            _crown(xc, trunk + ry, rx, ry, light), bulge=rx)
                z += rng.uniform(6.0, 14.0)


def _traffic(cv: _Canvas, rng: np.random.Generator, st: _Street, light: _Light) -> None:
    """Cars in two lanes and parked at both curbs; people on the sidewalks, a few crossing."""
    curb = st.curb
    lanes = (st.xr - st.hw / 2, st.xr + st.hw / 2, curb[0] + 1.1, curb[1] - 1.1)
    taken: list[tuple[int, float]] = []
    for _ in range(rng.poisson(4.5)):
        lane, z = int(rng.integers(4)), rng.uniform(3.0, min(st.length, 50.0))
        length = rng.uniform(3.8, 4.8)
        if any(ln == lane and abs(z - zz) < length + 1.5 for ln, zz in taken):
            continue
        taken.append((lane, z))
        w, h = rng.uniform(1.65, 1.95), rng.uniform(1.35, 1.7)
        xc = lanes[lane] + rng.uniform(-0.4, 0.4)
        rgb = _CARS[rng.integers(len(_CARS))] + rng.uniform(-12, 12, 3)
        _car(cv, xc, z, w, h, length, rgb, light)
    front = light.lambert(0, 0, -1)
    for _ in range(rng.poisson(3.5)):
        i = int(rng.integers(2))
        if rng.random() < 0.15:
            x = rng.uniform(curb[0], curb[1])
        else:
            x = curb[i] + (2 * i - 1) * rng.uniform(0.3, max(st.walk[i] - 0.3, 0.4))
        z, h = rng.uniform(2.5, min(st.length, 40.0)), rng.uniform(1.5, 1.95)
        cv.rect(x - 0.26, x + 0.26, 0.0, 0.86 * h, z, PERSON, rng.uniform(20, 220, 3), front,
                _person(x, h, rng.uniform(0.0, 0.35)))
        skin = np.array([225, 180, 150]) * rng.uniform(0.45, 1.0)
        r = 0.07 * h
        cv.rect(x - r, x + r, 0.85 * h, h, z - 0.05, PERSON, skin, 1.0, _crown(x, h - r, r, r * 1.05, light), bulge=r)


def _ground(cv: _Canvas, st: _Street, light: _Light, shadows: list, crossings: list, road_rgb,
            walk_rgb) -> None:
    """Road and sidewalks on the plane Y = 0 below the horizon, lane marks, curbs and shadows."""
    r0 = min(max(int(np.floor(cv.vh - 0.5)) + 1, 0), cv.h)
    gz = np.minimum(cv.f * cv.hc / np.maximum(cv.rows[r0:] - cv.vh, 1e-4), FAR_DEPTH)  # (gh, 1)
    x = (cv.cols[None] - cv.cx) * (gz / cv.f)  # (gh, W) lateral metres
    hw, (sx, sy, _) = st.hw, light.sun
    ad = np.abs(x - np.float32(st.xr))
    road = ad < hw
    for side, za, zb in crossings:
        road |= ((gz >= za) & (gz < zb)) & (side * (x - np.float32(st.xr)) > 0)
    dashes = (gz / 9.0) % 1.0 < 0.45
    marks = road & (((ad < 0.08) & dashes) | (np.abs(ad - np.float32(hw - 0.3)) < 0.08))
    fac = np.where(marks, np.float32(2.6), np.where((ad >= hw) & (ad < hw + 0.25), np.float32(1.25), np.float32(1.0)))
    # Facades on the sunny side shade the ground out to height * tan(sun zenith angle).
    s = 1.0 if sx > 0 else -1.0
    edge = np.full(gz.shape, s * 1e9, np.float32)
    for side, za, zb, xf, hgt in shadows:
        if side == s:
            edge[(gz >= za) & (gz < zb)] = xf - s * hgt * abs(sx) / sy
    fac *= np.where(s * (x - edge) > 0, np.float32(light.ambient), np.float32(light.lambert(0, 1, 0)))
    cv.z[r0:] = gz
    cv.inst[r0:] = np.where(road, np.int32(cv.instance(ROAD, road_rgb)), np.int32(cv.instance(SIDEWALK, walk_rgb)))
    cv.fac[r0:] = fac


def _lookup(index: np.ndarray, table: np.ndarray) -> np.ndarray:
    """`table[index]`: a cv2 look-up table for uint8 indices (several times faster than numpy)."""
    if index.dtype == np.uint8:
        padded = np.zeros(256, table.dtype)
        padded[: len(table)] = table
        return cv2.LUT(index, padded)
    return np.take(table, index)


def _compose(cv: _Canvas, index: np.ndarray, layout: np.ndarray, rng: np.random.Generator,
             horizon: np.ndarray, fog_dist: float, tint: np.ndarray) -> np.ndarray:
    """Albedo x shading x texture noise, then fog towards the horizon colour; uint8 (H, W, 3)."""
    h, w = cv.h, cv.w
    code = layout << 5
    fine = np.frombuffer(rng.bytes(h * w), np.uint8).reshape(h, w)
    coarse = np.frombuffer(rng.bytes((h // 4 + 2) * (w // 4 + 2)), np.uint8).reshape(h // 4 + 2, w // 4 + 2)
    blotch = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    fac = cv.fac * (1.0 + cv2.LUT(code | (fine >> 3), _FINE) + cv2.LUT(code | (blotch >> 3), _BLOTCH))
    haze = np.exp(cv.z * np.float32(-1.0 / fog_dist))  # atmospheric attenuation (Koschmieder)
    # The sky blends from the horizon colour (pixel rows at the horizon) to the zenith colour.
    t = np.minimum(np.maximum((cv.vh - cv.rows) / max(cv.vh, 1.0), 0.0), 1.0) ** 0.6
    np.copyto(haze, t, where=layout == SKY)
    fac *= haze
    fog = 1.0 - haze
    table = np.array(cv.colors, np.float32).T.copy()
    table[:, 1:] *= tint[:, None].astype(np.float32)  # lit surfaces, not the sky (instance 0)
    # Channel planes, merged once: much faster than broadcasting over a trailing RGB axis.
    planes = [_lookup(index, table[c]) * fac + np.float32(horizon[c]) * fog for c in range(3)]
    return cv2.convertScaleAbs(cv2.merge(planes))


@register_reader("toy")
class ToyReader(DatasetReader):
    """Splits `train`/`val`/`test` of `data.split_sizes` scenes each, rendered at data.height x
    data.width; a scene depends only on (split, index), never on the recipe seed."""

    default_classes = TOY_CLASSES
    default_palette = TOY_PALETTE
    splits = SPLITS
    has_depth = True
    needs_root = False

    def _class_info(self, cfg: DataConfig) -> ClassInfo:
        if cfg.classes is not None and tuple(cfg.classes) != TOY_CLASSES:
            raise DatasetError(f"toy: data.classes must be {list(TOY_CLASSES)} (the rendered classes), "
                               f"got {cfg.classes}")
        return super()._class_info(cfg)

    def _items(self) -> list[int]:
        if self.split not in SPLITS:
            raise DatasetError(f"toy: unknown split '{self.split}'. Valid splits: {', '.join(SPLITS)}")
        if self.split not in self.cfg.split_sizes:
            raise DatasetError(f"toy: data.split_sizes has no entry for split '{self.split}'")
        size = int(self.cfg.split_sizes[self.split])
        if size < 0:
            raise DatasetError(f"toy: data.split_sizes.{self.split} must be >= 0, got {size}")
        return list(range(size))

    def _load(self, item: int) -> dict[str, Any]:
        height, width = self.cfg.height or 128, self.cfg.width or 256
        sample = render_scene(scene_seed(self.split, item), height, width)
        sample["meta"].update(split=self.split, index=item, id=f"toy-{self.split}-{item:06d}", source="real")
        return sample


def benchmark(height: int = 128, width: int = 256, n: int = 500) -> tuple[float, float]:
    """Triplets per second through `ToyReader` on one thread, pinned to one core where the OS
    allows: `(per wall-clock second, per CPU second)`; the second ignores time lost to other
    processes sharing the core."""
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        if cores:
            os.sched_setaffinity(0, {min(cores)})
        reader = ToyReader(DataConfig(height=height, width=width, split_sizes={"train": n}), "train")
        reader[0]  # warm-up: first-call allocations and imports
        start, cpu = time.perf_counter(), time.process_time()
        for i in tqdm(range(n), desc=f"toy {height}x{width}", leave=False, mininterval=1.0):
            reader[i]
        return n / (time.perf_counter() - start), n / max(time.process_time() - cpu, 1e-9)
    finally:  # leave the calling process as it was (tests call this in-process)
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
        if cores:
            os.sched_setaffinity(0, cores)
