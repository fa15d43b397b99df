"""The toy world's drawing kit: class ids and colours, camera and street geometry, the z-buffered
canvas that rasterises surfaces of a scene, and the texture patterns of facades, cars, people and
trees (`synthdata.data.readers.toy` composes them into scenes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from synthdata.core.contract import ClassInfo, DatasetError

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


