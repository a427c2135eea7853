"""The fog, rain and snow of deeptest-iot before issue 18 (commit 571611e), kept only to draw the
before/after pictures of ``benchmarks/weather_preview.py``. Not registered as transforms.

``before(name, severity)`` returns a function batch, seed -> batch with the old severity mapping:
fog density = s (horizon 0.4, airlight 230), rain density = wetness = s (length 0.1, angle 15 deg),
snow density = s (flake size 0.015).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from deeptest_iot.transforms.batch import LEVELS, as_rng, blend, blend_mask, per_image, to_levels

#: Depth scale of the fog model: the row ``FOG_NEAR`` of the way from the horizon down is at depth 1/2.
FOG_NEAR = 0.15
#: Extinction coefficient at density 1 (per unit of normalised depth).
FOG_BETA_MAX = 4.5


def fog_depth(h: int, horizon: float) -> np.ndarray:
    """Normalised depth (h,) in (0, 1] of each row of a flat road seen by a level camera.

    On a ground plane the distance of row y grows as 1 / (y - y_horizon). With r the fraction of
    the way from the horizon to the bottom row, d = FOG_NEAR / (r + FOG_NEAR): 1 at the horizon
    (and in the sky above it), FOG_NEAR / (1 + FOG_NEAR) at the bottom row.
    """
    y = (np.arange(h) + 0.5) / h
    r = np.maximum(y - horizon, 0.0) / max(1.0 - horizon, 1e-9)
    return FOG_NEAR / (r + FOG_NEAR)


def fog_transmission(h: int, p: dict) -> np.ndarray:
    """t = exp(-beta d) per row, beta = FOG_BETA_MAX * density."""
    return np.exp(-FOG_BETA_MAX * p["density"] * fog_depth(h, p["horizon"]))


def _fog(batch, p, rng):
    t = fog_transmission(batch.shape[1], p)[:, None, None]
    return blend(batch, t, p["airlight"] * (1.0 - t))


#: Colour of rain streaks (RGB, slightly blue-white) and their opacities at three depths.
RAIN_COLOR = np.array([200.0, 205.0, 215.0], np.float32)
RAIN_OPACITY = (0.3, 0.45, 0.6)


def rain_levels(h: int, w: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Streak opacity as 8-bit levels (h, w): slanted anti-aliased segments, three depth layers.

    All layers go on one canvas, far to near, each in one ``cv2.polylines`` call at its opacity:
    a near streak covers the far ones it crosses.
    """
    count = int(round(p["density"] * h * w / 120.0))
    canvas = np.zeros((h, w), np.uint8)
    if count == 0:
        return canvas
    length = max(1.0, p["length"] * h)
    a = math.radians(p["angle"])
    ddx, ddy = length * math.sin(a), length * math.cos(a)
    # Start points over an enlarged area so slanted streaks also enter through the edges.
    x0 = rng.uniform(-abs(ddx) - 1, w + abs(ddx) + 1, count)
    y0 = rng.uniform(-ddy - 1, h, count)
    layer = rng.integers(0, len(RAIN_OPACITY), count)
    shrink = np.array([0.6, 0.8, 1.0])[layer]  # far streaks are shorter
    pts = np.stack([x0, y0, x0 + ddx * shrink, y0 + ddy * shrink], axis=1)
    thick = max(1, int(round(min(h, w) / 240)))
    shift = 4  # sub-pixel precision of cv2.line
    pts = np.rint(pts * (1 << shift)).astype(np.int32).reshape(count, 2, 2)
    for k, opacity in enumerate(RAIN_OPACITY):
        lines = pts[layer == k]
        if len(lines):
            cv2.polylines(canvas, lines, False, int(round(255 * opacity)), thick, cv2.LINE_AA, shift)
    return canvas


def rain_mask(h: int, w: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Streak opacity (h, w) in [0, 1] (``rain_levels`` / 255)."""
    return rain_levels(h, w, p, rng).astype(np.float32) / np.float32(255)


def _rain(batch, p, rng):
    n, h, w, _ = batch.shape
    m = rain_levels(h, w, p, rng)
    wet = p["wetness"]
    k = 1 + 2 * int(round(wet * min(h, w) / 120.0))
    if k > 1:  # wet lens: water film blurs the frame
        batch = per_image(batch, lambda im: cv2.blur(im, (k, k)))
    dim = 1.0 - 0.3 * wet  # and dims it
    return blend_mask(batch, m, dim * (1.0 - LEVELS), LEVELS, RAIN_COLOR)


SNOW_COLOR = np.array([245.0, 247.0, 250.0], np.float32)
#: Blur (px) of a flake layer on the shrunk canvas it is drawn on.
SNOW_SIGMA = 1.0


@functools.lru_cache(maxsize=16)
def _disc(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def flake(r: int, sigma: float) -> np.ndarray:
    """One flake, peak 1: a disc of radius ``r`` px blurred by ``sigma`` px, cut at 3 sigma."""
    half = r + math.ceil(3 * sigma)
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    k[half, half] = 1.0
    if r >= 1:
        k = cv2.dilate(k, _disc(r))
    k = cv2.GaussianBlur(k, (2 * math.ceil(3 * sigma) + 1,) * 2, sigma, borderType=cv2.BORDER_CONSTANT)
    return k / k.max()


@functools.lru_cache(maxsize=64)
def _stamp(r: int, sigma: float, opacity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero levels of ``flake(r, sigma)`` at ``opacity`` and their (row, column) in the sprite.
    Cached: small flakes all have sigma 0.5."""
    sprite = to_levels(flake(r, sigma), 255.0 * opacity)
    dy, dx = np.nonzero(sprite)  # a max with 0 changes nothing
    levels = sprite[dy, dx]
    for a in (levels, dy, dx):
        a.setflags(write=False)
    return levels, dy, dx


def snow_levels(h: int, w: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Flake opacity as 8-bit levels (h, w): many small far flakes and fewer large near ones, soft-edged.

    Each layer is discs of its radius blurred by half the radius, at the layer's opacity (the
    brighter flake wins where two overlap). Few small flakes are stamped one by one (``flake``);
    large ones are drawn and blurred on a canvas shrunk until the blur is ``SNOW_SIGMA`` px there,
    then enlarged bilinearly.
    """
    mask = np.zeros((h, w), np.uint8)
    count = int(round(p["density"] * h * w / 150.0))
    r_near = p["flake_size"] * h
    pad = int(round(r_near)) + math.ceil(3 * max(0.5, r_near / 2.0))  # half the largest sprite
    pw = w + 2 * pad
    stamp_at, stamp_val = [], []  # flat positions on a canvas padded by ``pad``, and levels
    for radius, share, opacity in ((r_near, 0.15, 0.95), (r_near * 0.6, 0.3, 0.85), (r_near * 0.3, 0.55, 0.7)):
        k = int(round(count * share))
        if k == 0:
            continue
        ys, xs = np.divmod(rng.integers(0, h * w, k), w)
        sigma = max(0.5, radius / 2.0)
        r = int(round(radius))
        f = sigma / SNOW_SIGMA
        half = r + math.ceil(3 * sigma)
        side = 2 * half + 1
        if k * side * side <= h * w or f <= 1.2 or min(h, w) < 8:
            if k * side * side <= 4 * h * w:  # stamp the flakes
                levels, dy, dx = _stamp(r, sigma, opacity)
                offsets = (dy + (pad - half)) * pw + (dx + (pad - half))
                stamp_at.append(((ys * pw + xs)[:, None] + offsets[None, :]).ravel())
                stamp_val.append(np.broadcast_to(levels, (k, len(levels))).ravel())
                continue
            hs, ws, scale = h, w, 1.0
        else:
            hs, ws = max(2, int(round(h / f))), max(2, int(round(w / f)))
            ys = np.minimum(((ys + 0.5) * (hs / h)).astype(np.intp), hs - 1)
            xs = np.minimum(((xs + 0.5) * (ws / w)).astype(np.intp), ws - 1)
            scale = 0.5 * (hs / h + ws / w)
        canvas = np.zeros((hs, ws), np.uint8)
        canvas[ys, xs] = 255
        r_s = int(round(radius * scale))
        if r_s >= 1:
            canvas = cv2.dilate(canvas, _disc(r_s))
        canvas = cv2.GaussianBlur(canvas.astype(np.float32), (0, 0), sigma * ws / w, sigmaY=sigma * hs / h)
        peak = max(float(canvas.max()), 1e-6)
        if (hs, ws) != (h, w):
            canvas = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_LINEAR)
        cv2.max(mask, to_levels(canvas, 255.0 * opacity / peak), dst=mask)
    if stamp_at:
        padded = np.zeros((h + 2 * pad, pw), np.uint8)
        at = stamp_at[0] if len(stamp_at) == 1 else np.concatenate(stamp_at)
        val = stamp_val[0] if len(stamp_val) == 1 else np.concatenate(stamp_val)
        np.maximum.at(padded.reshape(-1), at, val)
        cv2.max(mask, padded[pad:pad + h, pad:pad + w], dst=mask)
    return mask


def snow_mask(h: int, w: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Flake opacity (h, w) in [0, 1] (``snow_levels`` / 255)."""
    return snow_levels(h, w, p, rng).astype(np.float32) / np.float32(255)


def _snow(batch, p, rng):
    h, w = batch.shape[1:3]
    m = snow_levels(h, w, p, rng)
    haze = 0.3 * p["density"]  # falling snow veils the scene with white
    return blend_mask(batch, m, (1.0 - haze) * (1.0 - LEVELS), haze * (1.0 - LEVELS) + LEVELS, SNOW_COLOR)



_OLD = {"fog": (_fog, lambda s: {"density": s, "horizon": 0.4, "airlight": 230.0}),
        "rain": (_rain, lambda s: {"density": s, "length": 0.1, "angle": 15.0, "wetness": s}),
        "snow": (_snow, lambda s: {"density": s, "flake_size": 0.015})}


def before(name: str, severity: float):
    """The old transform ``name`` at ``severity``, as a function (batch, seed) -> batch."""
    fn, params = _OLD[name]

    def apply(batch: np.ndarray, seed: int = 0) -> np.ndarray:
        if severity == 0:
            return batch.copy()
        return fn(np.ascontiguousarray(batch), params(severity), as_rng(seed))

    return apply
