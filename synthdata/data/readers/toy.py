"""The procedural toy street world (recipe=toy): seeded (layout, depth, image) triplets, no download.

A pinhole camera looks down a street of z-buffered road, sidewalks, facades, poles, trees, cars and
people; colours depend on class, instance, sun shading and fog, so depth helps image synthesis.
`python -m synthdata.data.readers.toy --benchmark` measures triplets/s, `--grid PATH` draws scenes.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
import torch
from tqdm import tqdm

from synthdata.core.contract import ClassInfo, DatasetError
from synthdata.core.recipe import DataConfig
from synthdata.core.visualize import save_grid
from synthdata.data.readers.base import DatasetReader, register_reader

# Cityscapes names and colours (train ids of these classes), in the toy world's index order.
TOY_CLASSES = ("road", "sidewalk", "building", "pole", "vegetation", "sky", "person", "car")
TOY_PALETTE = np.array(
    [[128, 64, 128], [244, 35, 232], [70, 70, 70], [153, 153, 153],
     [107, 142, 35], [70, 130, 180], [220, 20, 60], [0, 0, 142]], dtype=np.uint8)
ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR = range(8)

# Sky and the ground beyond it sit on a far plane rather than 0 = unknown: depth supervision
# stays dense, and 60 m fits the uint16 depth.png at the default depth_scale (1 mm, max 65.5 m).
FAR_DEPTH = 60.0
NEAR = 0.5
SPLITS = ("train", "val", "test")
_SPLIT_SHIFT = 40  # scene seed = (split id + 1) << 40 | index: splits can never share a scene
# Per-class texture noise amplitude, fine (per pixel) and blotchy (a coarse field upsampled),
# as 256-entry tables indexed by class << 5 | noise byte >> 3 (classes < 8 fit in 3 bits).
_LEVELS = (np.arange(32, dtype=np.float32) + 0.5) / 32 - 0.5
_FINE = np.outer([0.10, 0.08, 0.08, 0.05, 0.25, 0.0, 0.06, 0.04], _LEVELS).astype(np.float32).ravel()
_BLOTCH = np.outer([0.12, 0.10, 0.10, 0.0, 0.55, 0.10, 0.0, 0.0], _LEVELS).astype(np.float32).ravel()
_FACADES = np.array([[185, 172, 150], [150, 150, 152], [160, 92, 72], [212, 206, 196],
                     [120, 110, 100], [195, 165, 120], [110, 125, 140]], np.float32)
_CARS = np.array([[235, 235, 235], [30, 30, 32], [160, 162, 168], [170, 30, 30], [30, 60, 140],
                  [80, 82, 86], [40, 90, 60], [200, 170, 60]], np.float32)

_ONE, _GLASS, _TYRE, _LAMP, _PANTS = (np.float32(v) for v in (1.0, 0.35, 0.12, 1.5, 0.55))
# A pattern maps world coordinates (s: metres across the surface, y: height) to an optional
# keep-mask, an optional albedo factor and an optional depth offset.
Pattern = Callable[[np.ndarray, np.ndarray], tuple[Any, Any, Any]]


def toy_classes(ignore_index: int = 255) -> ClassInfo:
    return ClassInfo(TOY_CLASSES, TOY_PALETTE.copy(), ignore_index)


def scene_seed(split: str, index: int) -> int:
    """The seed of scene `index` of `split`; seed ranges of different splits are disjoint."""
    if split not in SPLITS:
        raise DatasetError(f"toy: unknown split '{split}'. Valid splits: {', '.join(SPLITS)}")
    if not 0 <= index < 1 << _SPLIT_SHIFT:
        raise DatasetError(f"toy: scene index {index} out of range")
    return (SPLITS.index(split) + 1) << _SPLIT_SHIFT | index


@dataclass(frozen=True)
class _Light:
    """Sun direction (unit vector towards the sun; X right, Y up, Z forward) and ambient share."""

    sun: tuple[float, float, float]
    ambient: float

    def lambert(self, nx: float, ny: float, nz: float) -> float:
        sx, sy, sz = self.sun
        return self.ambient + (1.0 - self.ambient) * max(0.0, nx * sx + ny * sy + nz * sz)


@dataclass(frozen=True)
class _Street:
    """Cross-section in metres (camera at X = 0): road centre, half width, sidewalk widths."""

    xr: float
    hw: float
    walk: tuple[float, float]
    length: float  # where a cross row of buildings closes the street (beyond FAR_DEPTH: open)

    @property
    def curb(self) -> tuple[float, float]:
        return self.xr - self.hw, self.xr + self.hw

    @property
    def end(self) -> float:  # objects stand closer than this
        return min(self.length, FAR_DEPTH - 2)


class _Canvas:
    """Z-buffered raster of one scene: depth, an instance id per pixel (each instance has a class
    and a colour) and a factor for albedo pattern x lighting."""

    def __init__(self, height: int, width: int, f: float, cx: float, vh: float, hc: float):
        self.h, self.w, self.f, self.cx, self.vh, self.hc = height, width, f, cx, vh, hc
        self.rows = np.arange(height, dtype=np.float32)[:, None] + 0.5  # pixel centres
        self.cols = np.arange(width, dtype=np.float32) + 0.5
        self.z = np.full((height, width), FAR_DEPTH, np.float32)
        self.inst = np.zeros((height, width), np.int32)  # 0 = sky
        self.fac = np.ones((height, width), np.float32)
        self.colors, self.classes = [np.zeros(3)], [SKY]

    def instance(self, cls: int, rgb: np.ndarray) -> int:
        self.colors.append(rgb)
        self.classes.append(cls)
        return len(self.classes) - 1

    def _write(self, ys: slice, xs: slice, keep, depth, cls: int, rgb, fac) -> None:
        zv = self.z[ys, xs]
        m = depth < zv
        if keep is not None:
            m &= keep
        np.copyto(zv, depth, where=m)
        np.copyto(self.inst[ys, xs], np.int32(self.instance(cls, rgb)), where=m)
        np.copyto(self.fac[ys, xs], fac, where=m)

    def rect(self, x0: float, x1: float, y0: float, y1: float, z: float, cls: int, rgb,
             shade: float, pattern: Pattern | None = None, min_width: bool = False, bulge: float = 0.0) -> None:
        """A camera-facing rectangle at depth `z`, world extent [x0, x1] x [y0, y1] metres;
        `bulge` bounds how far the pattern's depth offsets come towards the camera."""
        if z <= NEAR:
            return
        k = self.f / z
        u0, u1 = self.cx + k * x0, self.cx + k * x1
        c0, c1 = math.ceil(u0 - 0.5), math.ceil(u1 - 0.5)  # pixel centres inside [u0, u1)
        if min_width and c1 <= c0:  # thin poles stay at least one pixel wide
            c0 = math.floor(0.5 * (u0 + u1))
            c1 = c0 + 1
        r0 = math.ceil(self.vh + k * (self.hc - y1) - 0.5)
        r1 = math.ceil(self.vh + k * (self.hc - y0) - 0.5)
        c0, c1, r0, r1 = max(c0, 0), min(c1, self.w), max(r0, 0), min(r1, self.h)
        if c1 <= c0 or r1 <= r0:
            return
        if self.z[r0:r1, c0:c1].max() <= z - bulge:  # hidden behind nearer things: skip the pattern
            return
        keep, fac, depth = None, shade, np.float32(z)
        if pattern is not None:
            s = (self.cols[None, c0:c1] - self.cx) / k
            y = self.hc - (self.rows[r0:r1] - self.vh) / k
            keep, pf, dz = pattern(s, y)
            fac = shade if pf is None else shade * pf
            depth = depth if dz is None else (z + dz).astype(np.float32)
        self._write(slice(r0, r1), slice(c0, c1), keep, depth, cls, rgb, fac)

    def side(self, xp: float, za: float, zb: float, y0: float, y1: float, cls: int, rgb,
             shade: float, pattern: Pattern | None = None) -> None:
        """A wall in the plane X = `xp` (parallel to the view axis), Z in [za, zb], Y in [y0, y1]."""
        za = max(za, NEAR)
        if zb <= za or abs(xp) < 1e-3:
            return
        ua, ub = self.cx + self.f * xp / za, self.cx + self.f * xp / zb
        c0 = max(math.ceil(min(ua, ub) - 0.5), 0)
        c1 = min(math.ceil(max(ua, ub) - 0.5), self.w)
        if c1 <= c0:
            return
        # Column centres lie strictly between ua and ub, so du has the sign of xp and is never 0.
        zc = np.minimum(np.maximum(self.f * xp / (self.cols[None, c0:c1] - self.cx), za), zb)
        top, bot = self.vh + self.f * (self.hc - y1) / zc, self.vh + self.f * (self.hc - y0) / zc
        r0 = max(math.ceil(float(top.min()) - 0.5), 0)
        r1 = min(math.ceil(float(bot.max()) - 0.5), self.h)
        if r1 <= r0:
            return
        rows = self.rows[r0:r1]
        keep = (rows >= top) & (rows < bot)
        fac = shade
        if pattern is not None:
            pk, pf, _ = pattern(zc, self.hc - (rows - self.vh) * zc / self.f)
            keep = keep if pk is None else keep & pk
            fac = shade if pf is None else shade * pf
        self._write(slice(r0, r1), slice(c0, c1), keep, zc, cls, rgb, fac)

    def top(self, y: float, x0: float, x1: float, za: float, zb: float, cls: int, rgb,
            shade: float) -> None:
        """A horizontal rectangle at height `y` below the camera (car lid, roof), X in [x0, x1],
        Z in [za, zb]: each pixel row sees it at one depth."""
        dh, za = self.hc - y, max(za, NEAR)
        if dh <= 0 or zb <= za:
            return
        r0 = max(math.ceil(self.vh + self.f * dh / zb - 0.5), 0)
        r1 = min(math.ceil(self.vh + self.f * dh / za - 0.5), self.h)
        if r1 <= r0:
            return
        zr = np.minimum(np.maximum(self.f * dh / (self.rows[r0:r1] - self.vh), za), zb)  # (n, 1)
        left, right = self.cx + self.f * x0 / zr, self.cx + self.f * x1 / zr
        c0 = max(math.ceil(float(left.min()) - 0.5), 0)
        c1 = min(math.ceil(float(right.max()) - 0.5), self.w)
        if c1 <= c0:
            return
        cols = self.cols[None, c0:c1]
        self._write(slice(r0, r1), slice(c0, c1), (cols >= left) & (cols < right), zr, cls, rgb, shade)


def _windows(rng: np.random.Generator, origin: float, top: float) -> Pattern:
    """Facade pattern: a ground-floor shop band, then rows of dark windows per floor."""
    floor, spacing = rng.uniform(2.8, 3.6), rng.uniform(2.0, 3.5)
    wa, wb = rng.uniform(0.15, 0.35), rng.uniform(0.6, 0.85)
    glass, shop = np.float32(rng.uniform(0.3, 0.55)), np.float32(rng.uniform(0.6, 1.0))

    def pattern(s, y):
        a = (s - origin) * (1.0 / spacing)
        a -= np.floor(a)
        q = y * (1.0 / floor)
        b = q - np.floor(q)
        win = (a > wa) & (a < wb) & ((b > 0.3) & (b < 0.78) & (y < top - 0.8))
        return None, np.where(q < 1.0, shop, np.where(win, glass, _ONE)), None

    return pattern


def _car(cv: _Canvas, xc: float, z: float, w: float, h: float, length: float, rgb, light: _Light) -> None:
    """A car facing away: body box (rear, visible side, lid) with a narrower glazed cabin."""
    body, inset = 0.55 * h, 0.12
    back, up = light.lambert(0, 0, -1), light.lambert(0, 1, 0)

    def rear(s, y):
        edge = np.abs(s - xc) > w / 2 - 0.35
        fac = np.where(edge & (y < 0.45), _TYRE, _ONE)
        return None, np.where(edge & (y > body - 0.25) & (y < body - 0.1), _LAMP, fac), None

    def wheels(s, y):
        t = s - z
        hub = np.minimum(np.abs(t - 0.75), np.abs(t - length + 0.75)) ** 2 + (y - 0.32) ** 2 < 0.1
        return None, np.where(hub, _TYRE, _ONE), None

    za, zb, wc = z + 0.22 * length, z + 0.8 * length, w / 2 - inset

    def cabin_back(s, y):
        return None, np.where((np.abs(s - xc) < wc - 0.06) & (y < h - 0.06), _GLASS, _ONE), None

    def cabin_side(s, y):
        t = s - za
        pane = (y < h - 0.06) & (t > 0.1) & (t < zb - za - 0.1) & (np.abs(t - (zb - za) / 2) > 0.05)
        return None, np.where(pane, _GLASS, _ONE), None

    cv.rect(xc - w / 2, xc + w / 2, 0.0, body, z, CAR, rgb, back, rear)
    cv.top(body, xc - w / 2, xc + w / 2, z, z + length, CAR, rgb, up)
    cv.rect(xc - wc, xc + wc, body, h, za, CAR, rgb, back, cabin_back)
    cv.top(h, xc - wc, xc + wc, za, zb, CAR, rgb, up)
    for xs, xcab in ((xc - w / 2, xc - wc), (xc + w / 2, xc + wc)):
        if xs * (xs - xc) < 0:  # this side faces the camera
            shade = light.lambert(-float(np.sign(xs)), 0, 0)
            cv.side(xs, z, z + length, 0.0, body, CAR, rgb, shade, wheels)
            cv.side(xcab, za, zb, body, h, CAR, rgb, shade, cabin_side)


def _person(xc: float, h: float, stride: float) -> Pattern:
    """Silhouette of torso and two legs (the head is a separate ellipse)."""
    def pattern(s, y):
        d, yn = s - xc, y * (1.0 / h)
        torso = (yn > 0.47) & (np.abs(d) < 0.21 - 0.1 * np.minimum(np.maximum((yn - 0.78) / 0.08, 0), 1))
        legs = (yn <= 0.47) & (np.abs(np.abs(d) - 0.07 - stride * (0.47 - yn)) < 0.065)
        return torso | legs, np.where(yn <= 0.47, _PANTS, _ONE), None

    return pattern


def _crown(xc: float, yc: float, rx: float, ry: float, light: _Light) -> Pattern:
    """An ellipsoid (tree crown, head) bulging towards the camera, lit by its own normals."""

    (sx, sy, sz), ambient = light.sun, light.ambient

    def pattern(s, y):
        nx, ny = (s - xc) / rx, (y - yc) / ry
        rho2 = nx * nx + ny * ny
        nz = np.sqrt(np.maximum(1.0 - rho2, 0.0))
        lit = ambient + (1 - ambient) * np.maximum(nx * sx + ny * sy - nz * sz, 0)
        return rho2 < 1.0, lit, -rx * nz

    return pattern


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthdata.data.readers.toy", description=__doc__)
    parser.add_argument("--benchmark", action="store_true", help="measure triplets/s on one thread")
    parser.add_argument("--grid", help="write a PNG of --n scenes (image | layout | depth rows)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--n", type=int, default=None, help="scenes (default 500 / 16 for --grid)")
    parser.add_argument("--split", default="train", choices=SPLITS)
    args = parser.parse_args(argv)
    if not args.benchmark and not args.grid:
        parser.error("nothing to do: pass --benchmark and/or --grid PATH")
    if args.benchmark:
        n = args.n or 500
        wall, cpu = benchmark(args.height, args.width, n)
        print(f"toy world: {n} triplets at {args.height}x{args.width}: {wall:.0f} triplets/s wall clock, "
              f"{cpu:.0f} per CPU second (1 thread, 1 core)")
    if args.grid:

        n = args.n or 16
        reader = ToyReader(DataConfig(height=args.height, width=args.width, split_sizes={args.split: n}),
                           args.split)
        path = save_grid([reader[i] for i in range(n)], reader.classes, args.grid, max_rows=n)
        print(f"toy world: {n} {args.split} scenes at {args.height}x{args.width} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
