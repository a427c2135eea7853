"""Falling particles (rain drops, snow flakes) in the air in front of the camera, and the streaks
they leave on one exposure.

The air from ``z_near`` to ``z_far`` metres ahead is cut into ``layers`` slabs (geometric spacing).
Each slab holds particles in a box wide and tall enough to fill the camera's view at the slab's far
side, at a number density (per m^3) given by the species' size distribution, counting only the
particles at least ``min_width`` px (default ``MIN_WIDTH_PX``) wide on the frame being drawn at the slab's near side (smaller
ones are too faint to see one by one: their light is in the veil), and at most ``max_count`` per
slab. A bigger frame therefore shows more, finer drops (and a storm is the same storm only at the
same frame size).

Every particle has a fixed size, speed and opacity draw, and a position that moves with time:

    p(t) = wrap(p0 + v t),  v = (wind + gust, fall speed, -vehicle speed)   (x right, y down, z ahead)

wrapped inside its slab's box (a particle that leaves at the bottom comes back at the top; one that
passes the camera comes back at the slab's far side). ``t`` is seconds since the storm began, so the
same (parameters, seed) at ``t`` and ``t + 1/20`` shows the same drops one 20 fps frame later.

On the sensor a particle leaves the segment between its projections at ``t - exposure`` and ``t``:
long when it is near or fast. Its opacity on the pixels it crosses is the share of the exposure it
spent there times how much of a pixel it covers (energy is conserved: long streaks are fainter, far
drops thinner), times the species' ``gain``. Segments are drawn anti-aliased with OpenCV, a few
polyline calls per depth class, and near classes are blurred by the lens's defocus (focus at
infinity: blur diameter = f x aperture / z).

The random draws live in a bank keyed by (seed key, slab) whose first rows never change when it
grows, so a heavier rain adds drops to the same storm instead of drawing a new one.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .depth import focal_px

#: Particles are kept if they are at least MIN_WIDTH_PX wide on the frame.
MIN_WIDTH_PX = 0.25
#: Lens aperture (m) for the defocus blur: a 4 mm lens at f/2.
APERTURE_M = 0.002
#: Draw columns of the bank: x, y, z, size, speed, opacity, gust, phase.
_COLUMNS = 8
_BANK: "OrderedDict[tuple[int, str, int], np.ndarray]" = OrderedDict()
_BANK_SIZE = 128
_BANK_LOCK = threading.Lock()  # campaigns build batches on a thread pool


def bank(key: int, species: str, layer: int, n: int) -> np.ndarray:
    """(n, 8) uniform draws in [0, 1) for slab ``layer`` of a storm; row i never depends on n."""
    k = (int(key), species, int(layer))
    with _BANK_LOCK:
        have = _BANK.get(k)
        if have is not None and len(have) >= n:
            _BANK.move_to_end(k)
            return have[:n]
    size = max(n, 2 * len(have) if have is not None else 64)
    have = np.random.default_rng([int(key), sum(map(ord, species)), int(layer)]).random((size, _COLUMNS))
    have.setflags(write=False)
    with _BANK_LOCK:
        _BANK[k] = have
        _BANK.move_to_end(k)
        while len(_BANK) > _BANK_SIZE:
            _BANK.popitem(last=False)
    return have[:n]


@dataclass(frozen=True)
class Species:
    """What falls, and how it looks on the sensor.

    ``count(d_min)`` is the number density (per m^3) of particles of diameter > d_min mm;
    ``size(u, d_min)`` maps uniform draws to diameters (mm) above d_min; ``speed(d)`` is the
    terminal fall speed (m/s); ``flutter`` the amplitude (m/s) of a sideways sway of period
    ``flutter_period`` s (snow); ``gust`` the spread of each particle's sideways speed as a
    share of the wind plus 0.5 m/s; ``gain`` multiplies the opacity (see the module doc);
    ``max_opacity`` caps it; ``area`` says whether a particle narrower than a pixel covers it by
    its width (a thin streak, rain) or by its area (a dot, snow).
    """

    name: str
    count: Callable[[float], float]
    size: Callable[[np.ndarray, float], np.ndarray]
    speed: Callable[[np.ndarray], np.ndarray]
    z_near: float
    z_far: float
    layers: int
    gain: float
    max_opacity: float
    area: bool
    flutter: float = 0.0
    flutter_period: float = 1.0
    gust: float = 0.15
    max_count: int = 3000
    min_width: float = MIN_WIDTH_PX


@dataclass(frozen=True)
class Motion:
    """How the camera and the air move: wind (m/s, + = to the right), vehicle speed (m/s, forward),
    exposure (s), time since the storm began (s)."""

    wind: float
    vehicle: float
    exposure: float
    t: float


def state(species: Species, key: int, h: int, w: int, vfov_deg: float, motion: Motion,
          density_scale: float = 1.0) -> dict[str, np.ndarray] | None:
    """Every particle of the storm at time ``motion.t``, in camera coordinates (m): position ``x``,
    ``y``, ``z`` (wrapped into its slab's box), velocity ``vx``, ``vy``, ``vz`` (m/s, at t), diameter
    ``d`` (mm), opacity draw ``u`` in [0, 1), and the slab's box ``half_x``, ``half_y``, ``za``,
    ``depth`` per particle. None when there are none. Row i is the same particle at every t."""
    f = focal_px(h, vfov_deg)
    tx, ty = (w / 2.0) / f, (h / 2.0) / f
    ratio = (species.z_far / species.z_near) ** (1.0 / species.layers)
    fall_max = float(species.speed(np.array([10.0]))[0])
    reach = (fall_max + abs(motion.wind) + species.flutter) * max(motion.exposure, 0.0) + 0.05
    banks, consts = [], []
    for k in range(species.layers):  # per slab: a few numbers and its bank rows
        za, zb = species.z_near * ratio ** k, species.z_near * ratio ** (k + 1)
        d_min = species.min_width * za / f * 1000.0  # mm: narrowest kept at the slab's near side
        half_x, half_y = zb * tx * 1.05 + reach, zb * ty * 1.05 + reach
        expected = species.count(d_min) * density_scale * (2 * half_x) * (2 * half_y) * (zb - za)
        n = min(int(expected), species.max_count)  # beyond it: too faint to see one by one (the veil)
        if n > 0:
            banks.append(bank(key, species.name, k, n))
            consts.append(np.broadcast_to(np.array([za, zb - za, d_min, half_x, half_y]), (n, 5)))
    if not banks:
        return None
    u = np.concatenate(banks)
    za, depth, d_min, half_x, half_y = np.concatenate(consts).T
    d = species.size(u[:, 3], d_min)  # mm
    vx = motion.wind + (u[:, 6] - 0.5) * 2 * species.gust * (abs(motion.wind) + 0.5)
    vy = species.speed(d) * (0.9 + 0.2 * u[:, 4])
    vz = np.full(len(u), -motion.vehicle)
    t = motion.t
    x = u[:, 0] * 2 * half_x + vx * t
    y = u[:, 1] * 2 * half_y + vy * t
    z = u[:, 2] * depth + vz * t
    if species.flutter:  # a sideways sway: velocity flutter * cos(omega t + phase)
        phase = 2 * math.pi * u[:, 7]
        omega = 2 * math.pi / species.flutter_period
        x = x + species.flutter / omega * (np.sin(omega * t + phase) - np.sin(phase))
        vx = vx + species.flutter * np.cos(omega * t + phase)
    return {"x": np.mod(x, 2 * half_x) - half_x, "y": np.mod(y, 2 * half_y) - half_y, "z": np.mod(z, depth) + za,
            "vx": vx, "vy": vy, "vz": vz, "d": d, "u": u[:, 5], "half_x": half_x, "half_y": half_y, "za": za,
            "depth": depth}


def segments(species: Species, key: int, h: int, w: int, vfov_deg: float, motion: Motion,
             density_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Every visible particle's segment on an (h, w) frame at time ``motion.t``.

    Returns arrays: ``p0``/``p1`` (n, 2) tail and head in pixel coordinates (x, y; pixel centres at
    integers), ``width`` (px), ``opacity`` (in [0, max_opacity]), ``blur`` (defocus diameter, px),
    ``z`` (m). ``density_scale`` multiplies the number density.
    """
    s = state(species, key, h, w, vfov_deg, motion, density_scale)
    if s is None:
        return {"p0": np.zeros((0, 2)), "p1": np.zeros((0, 2)), **{k: np.zeros(0) for k in
                                                                   ("width", "opacity", "blur", "z")}}
    f = focal_px(h, vfov_deg)
    x, y, z = s["x"], s["y"], s["z"]
    te = motion.exposure
    xt, yt, zt = x - s["vx"] * te, y - s["vy"] * te, z - s["vz"] * te
    cx, cy = w / 2.0 - 0.5, h / 2.0 - 0.5
    hx, hy = cx + f * x / z, cy + f * y / z
    qx, qy = cx + f * xt / zt, cy + f * yt / zt
    width = f * s["d"] / 1000.0 / z
    length = np.hypot(hx - qx, hy - qy)
    if species.area:  # a dot covers pi/4 w^2 of a pixel
        cover = np.where(width >= 1.0, 1.0, (math.pi / 4) * width ** 2)
    else:  # a streak covers w of each pixel it crosses
        cover = np.minimum(1.0, width)
    dwell = np.minimum(1.0, (1.0 + width) / (1.0 + length))
    opacity = np.minimum(species.max_opacity, species.gain * cover * dwell * (0.6 + 0.8 * s["u"]))
    margin = width + 2
    inside = (np.maximum(hx, qx) > -margin) & (np.minimum(hx, qx) < w + margin) \
        & (np.maximum(hy, qy) > -margin) & (np.minimum(hy, qy) < h + margin) & (opacity * 255 >= _LEVELS[0])
    return {"p0": np.stack([qx[inside], qy[inside]], 1), "p1": np.stack([hx[inside], hy[inside]], 1),
            "width": width[inside], "opacity": opacity[inside], "blur": (f * APERTURE_M / z)[inside],
            "z": z[inside]}


#: Opacity levels segments are grouped into (8-bit); a segment below the first is not drawn.
_LEVELS = np.array([2, 3, 4, 6, 8, 11, 15, 20, 27, 36, 48, 64, 85, 113, 150, 200, 255], np.float64)
#: Defocus classes: (largest blur diameter in px, Gaussian sigma the class is blurred by).
_BLUR_CLASSES = ((1.2, 0.0), (3.0, 0.8), (7.0, 2.0), (math.inf, 4.0))
_SHIFT = 4  # sub-pixel bits of cv2 drawing


def render(seg: dict[str, np.ndarray], h: int, w: int) -> np.ndarray:
    """The segments as one (h, w) uint8 opacity mask (level / 255 = opacity).

    Segments are grouped by defocus class, line thickness and opacity level; each group is one
    ``cv2.polylines`` call on its class's canvas, fainter groups first, and each class's canvas is
    blurred by its defocus before the classes are added (saturating).
    """
    mask = np.zeros((h, w), np.uint8)
    n = len(seg["width"])
    if n == 0:
        return mask
    level = np.searchsorted(_LEVELS, seg["opacity"] * 255.0, side="right") - 1
    keep = level >= 0
    thick = np.maximum(1, np.rint(seg["width"])).astype(np.int64)
    thick = np.where(thick <= 3, thick, np.minimum(2 ** np.ceil(np.log2(thick)), min(4095, max(h, w)))).astype(np.int64)
    blur = seg["blur"]
    cls = np.zeros(n, np.int64)
    for top, _ in _BLUR_CLASSES[:-1]:
        cls += blur > top
    pts = np.rint(np.stack([seg["p0"], seg["p1"]], 1) * (1 << _SHIFT))
    pts = np.clip(pts, -(1 << 28), 1 << 28).astype(np.int32)
    for c in np.unique(cls[keep]):
        sigma = _BLUR_CLASSES[c][1]
        canvas = mask if sigma == 0 else np.zeros((h, w), np.uint8)
        sel = keep & (cls == c)
        groups = level[sel] * 4096 + thick[sel]  # fainter groups first
        order = np.argsort(groups, kind="stable")
        g_sorted = groups[order]
        idx = np.flatnonzero(sel)[order]
        bounds = np.flatnonzero(np.diff(g_sorted)) + 1
        for part in np.split(np.arange(len(idx)), bounds):
            if not len(part):
                continue
            gval = g_sorted[part[0]]
            lv, th = int(gval // 4096), int(gval % 4096)
            lines = pts[idx[part]]
            cv2.polylines(canvas, list(lines) if len(lines) < 2 else lines, False, int(_LEVELS[lv]), th,
                          cv2.LINE_AA, _SHIFT)
        if sigma:
            blurred = cv2.GaussianBlur(canvas, (0, 0), sigma)
            cv2.add(mask, blurred, dst=mask)
    return mask
