"""Photometric transforms: brightness, contrast, gamma, night, saturation, colour cast and blurs.

Point operations are 256-entry lookup tables applied to the whole batch in one OpenCV call;
blurs are OpenCV's per-image kernels (fast at camera sizes). Kernel sizes are in pixels, as in
DeepTest.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .batch import apply_lut, apply_luts, gray, per_image
from .core import Param, TransformSpec, register

_LEVELS = np.arange(256, dtype=np.float64)


def _lut(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# --- point operations ------------------------------------------------------------------------
# Each is a 256-entry table (one per channel for the coloured ones) made from the parameters. A batch
# with one parameter set per image (``apply_many``) gets one table per image, made by the same
# function, and one cv2.LUT per image: the same pixels as one image at a time, without the per-call
# overhead.

def _brightness_lut(p):
    return _lut(_LEVELS + p["delta"])


def _contrast_lut(p):
    pivot = p["pivot"]
    return _lut(pivot + p["alpha"] * (_LEVELS - pivot))


def _gamma_lut(p):
    return _lut(255.0 * (_LEVELS / 255.0) ** p["gamma"])


#: Per-channel gain at full darkness (R, G, B): dim light looks bluer (the Purkinje shift).
_NIGHT_TINT = np.array([0.75, 0.9, 1.0])


def _night_lut(p):
    d = p["darkness"]
    gain = 1.0 - 0.8 * d
    tone = 255.0 * (_LEVELS / 255.0) ** (1.0 + 1.2 * d) * gain
    tint = 1.0 - d * (1.0 - _NIGHT_TINT)
    return _lut(tone[:, None] * tint[None, :])


def _color_cast_lut(p):
    gains = np.array([p["red"], p["green"], p["blue"]])
    return _lut(_LEVELS[:, None] * gains[None, :])


def _point(make_lut):
    """(apply, apply_many) of a point operation whose table ``make_lut(params)`` gives."""
    def apply(batch, p, rng):
        return apply_lut(batch, make_lut(p))

    def apply_many(batch, params, seeds):
        return apply_luts(batch, [make_lut(p) for p in params])
    return apply, apply_many


_brightness, _brightness_many = _point(_brightness_lut)
_contrast, _contrast_many = _point(_contrast_lut)
_gamma, _gamma_many = _point(_gamma_lut)
_night, _night_many = _point(_night_lut)
_color_cast, _color_cast_many = _point(_color_cast_lut)


def _saturation(batch, p, rng):
    n, h, w, _ = batch.shape
    f = p["factor"]
    g = cv2.cvtColor(gray(batch).reshape(n * h, w), cv2.COLOR_GRAY2RGB)
    out = cv2.addWeighted(batch.reshape(n * h, w, 3), f, g, 1.0 - f, 0.0)
    return out.reshape(batch.shape)


def _saturation_many(batch, params, seeds):
    """One grey conversion for the batch, one ``cv2.addWeighted`` per image with its own factor."""
    n, h, w, _ = batch.shape
    g = cv2.cvtColor(gray(batch).reshape(n * h, w), cv2.COLOR_GRAY2RGB).reshape(batch.shape)
    out = np.empty_like(batch)
    for i, p in enumerate(params):
        f = p["factor"]
        cv2.addWeighted(batch[i], f, g[i], 1.0 - f, 0.0, dst=out[i])
    return out


# --- blurs -------------------------------------------------------------------------------------

def _blur_box(batch, p, rng):
    k = p["k"]
    return per_image(batch, lambda im: cv2.blur(im, (k, k)))


def _blur_gaussian(batch, p, rng):
    k = p["k"]
    return per_image(batch, lambda im: cv2.GaussianBlur(im, (k, k), 0))


def _blur_median(batch, p, rng):
    k = p["k"]
    return per_image(batch, lambda im: cv2.medianBlur(im, k))


def _blur_bilateral(batch, p, rng):
    d, sc, ss = p["d"], p["sigma_color"], p["sigma_space"]
    return per_image(batch, lambda im: cv2.bilateralFilter(im, d, sc, ss))


def motion_offsets(length: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer (dx, dy) of the ``length`` taps of a line kernel centred on 0 at ``angle`` degrees
    (0 = horizontal, positive = counter-clockwise on screen)."""
    k = np.arange(length) - (length - 1) / 2.0
    a = math.radians(angle)
    dx = np.floor(k * math.cos(a) + 0.5).astype(int)
    dy = np.floor(-k * math.sin(a) + 0.5).astype(int)
    return dx, dy


def _blur_motion(batch, p, rng):
    """Mean of ``length`` shifted copies along the motion line (edge-replicated), summed in uint16
    with one ``cv2.add`` per tap on views of an edge-padded copy of each image."""
    length = p["length"]
    dx, dy = motion_offsets(length, p["angle"])
    n, h, w, c = batch.shape
    rx, ry = int(np.abs(dx).max()), int(np.abs(dy).max())
    out = np.empty_like(batch)
    acc = np.empty((h, w, c), np.uint16)
    for i in range(n):
        padded = cv2.copyMakeBorder(batch[i], ry, ry, rx, rx, cv2.BORDER_REPLICATE).astype(np.uint16)
        acc.fill(length // 2)  # rounds the division
        for ox, oy in zip(dx.tolist(), dy.tolist()):
            cv2.add(acc, padded[ry + oy:ry + oy + h, rx + ox:rx + ox + w], dst=acc)
        np.floor_divide(acc, length, out=acc)
        out[i] = acc
    return out


_DT = "the far end of DeepTest's fixed sweep"

register(TransformSpec(
    "brightness", "photometric",
    (Param("delta", -100, 100, 0, identity=0, extreme=100, pool=(-21, 20, 1), unit="grey levels",
           doc="added to every channel, saturating (DeepTest's cv2.add)"),),
    _brightness, seeded=False, apply_many=_brightness_many, doc="Add a constant to every pixel. Severity 1 = +100, " + _DT + "."))

register(TransformSpec(
    "contrast", "photometric",
    (Param("alpha", 0.1, 3.0, 1.0, identity=1.0, extreme=3.0, pool=(0.1, 1.9, 0.1),
           doc="gain about the pivot"),
     Param("pivot", 0, 255, 0, unit="grey level",
           doc="fixed grey level; 0 is DeepTest's plain gain (cv2.multiply), 128 a mid-grey contrast")),
    _contrast, seeded=False, apply_many=_contrast_many, doc="out = pivot + alpha (in - pivot), saturating. Severity 1 = alpha 3.0, " + _DT + "."))

register(TransformSpec(
    "gamma", "photometric",
    (Param("gamma", 0.2, 5.0, 1.0, identity=1.0, extreme=3.0,
           doc="exponent: > 1 darkens the mid-tones (low light), < 1 brightens them"),),
    _gamma, seeded=False, apply_many=_gamma_many, doc="out = 255 (in / 255) ** gamma. Severity 1 = gamma 3 (dusk)."))

register(TransformSpec(
    "night", "photometric",
    (Param("darkness", 0.0, 1.0, 0.0, identity=0.0, extreme=1.0,
           doc="0 = day; 1 = gain 0.2, gamma 2.2 and a blue tint (R x0.75, G x0.9)"),),
    _night, seeded=False, apply_many=_night_many, doc="Low light: darker, steeper tone curve, bluer colour (no noise: chain gaussian_noise)."))

register(TransformSpec(
    "saturation", "photometric",
    (Param("factor", 0.0, 3.0, 1.0, identity=1.0, extreme=0.0,
           doc="0 = grey, 1 = unchanged, > 1 more saturated"),),
    _saturation, seeded=False, apply_many=_saturation_many, doc="Blend each pixel with its luma. Severity 1 = grey (washed-out sensor)."))

register(TransformSpec(
    "color_cast", "photometric",
    (Param("red", 0.5, 1.5, 1.0, identity=1.0, extreme=1.25, doc="red channel gain"),
     Param("green", 0.5, 1.5, 1.0, identity=1.0, extreme=1.0, doc="green channel gain"),
     Param("blue", 0.5, 1.5, 1.0, identity=1.0, extreme=0.7, doc="blue channel gain")),
    _color_cast, seeded=False, apply_many=_color_cast_many, doc="Per-channel gains (white balance error). Severity moves toward a warm "
                     "sodium-lamp cast (R 1.25, B 0.7)."))

register(TransformSpec(
    "blur_box", "photometric",
    (Param("k", 1, 9, 1, identity=1, extreme=6, integer=True, unit="px",
           doc="kernel side (cv2.blur); DeepTest used 3-6"),),
    _blur_box, seeded=False, doc="Averaging blur. Severity 1 = 6x6, " + _DT + "."))

register(TransformSpec(
    "blur_gaussian", "photometric",
    (Param("k", 1, 9, 1, identity=1, extreme=7, integer=True, odd=True, unit="px",
           doc="kernel side, sigma from OpenCV's rule 0.3((k-1)/2-1)+0.8; DeepTest used 3, 5, 7"),),
    _blur_gaussian, seeded=False, doc="Gaussian blur. Severity 1 = 7x7, " + _DT + "."))

register(TransformSpec(
    "blur_median", "photometric",
    (Param("k", 1, 5, 1, identity=1, extreme=5, integer=True, odd=True, unit="px",
           doc="aperture; DeepTest used 3 and 5 (7+ is 15x slower in OpenCV, so not offered)"),),
    _blur_median, seeded=False, doc="Median blur. Severity 1 = 5, " + _DT + "."))

register(TransformSpec(
    "blur_bilateral", "photometric",
    (Param("d", 1, 9, 1, identity=1, extreme=9, integer=True, unit="px",
           doc="neighbourhood diameter; 1 is the identity"),
     Param("sigma_color", 1, 200, 75, doc="range sigma (grey levels)"),
     Param("sigma_space", 1, 200, 75, unit="px", doc="space sigma")),
    _blur_bilateral, seeded=False, doc="Edge-preserving bilateral filter. Severity 1 = DeepTest's bilateral(9, 75, 75)."))

register(TransformSpec(
    "blur_motion", "photometric",
    (Param("length", 1, 31, 1, identity=1, extreme=21, integer=True, unit="px",
           doc="length of the motion path"),
     Param("angle", -90, 90, 0, unit="deg", doc="direction; 0 = horizontal (pan), 90 = vertical (bump)")),
    _blur_motion, seeded=False, doc="Linear motion blur: mean of the frame shifted along a line (edges replicated)."))
