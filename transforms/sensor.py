"""Sensor and link faults of IoT cameras: noise, salt and pepper, dead/stuck pixels, JPEG, lens dirt.

Random patterns (noise, faulty pixels, dirt) are drawn once per call from the seed and shared by
the batch: a faulty sensor's defects stay put from frame to frame, and one image can be replayed
alone with the same seed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .batch import LEVELS, add_signed, blend_mask, soft_grid, soften
from .core import Param, TransformSpec, register


#: Bits of fixed point in the noise tables.
_NOISE_SHIFT = 7


def _normal_levels() -> np.ndarray:
    """The 256 quantiles (i + 1/2) / 256 of the standard normal, rescaled to variance exactly 1/2."""
    y = 2.0 * (np.arange(256) + 0.5) / 256.0 - 1.0
    z = np.sqrt(2.0) * _erfinv(y)
    return z / np.sqrt(2.0 * np.mean(z * z))


def _erfinv(y: np.ndarray) -> np.ndarray:
    """Inverse error function: Winitzki's approximation polished by Newton steps on math.erf."""
    a = 0.147
    ln = np.log1p(-y * y)
    t = 2.0 / (math.pi * a) + ln / 2.0
    x = np.sign(y) * np.sqrt(np.sqrt(t * t - ln / a) - t)
    erf = np.frompyfunc(math.erf, 1, 1)
    for _ in range(4):
        x = x - (erf(x).astype(np.float64) - y) / (2.0 / math.sqrt(math.pi) * np.exp(-x * x))
    return x


#: Quantile table of the noise (see ``_gaussian_noise``).
_NORMAL_LEVELS = _normal_levels()


def _gaussian_noise(batch, p, rng):
    """Each noise value is the sum of two independent draws from a 256-level quantile table of a normal
    with variance sigma^2 / 2: a normal with variance sigma^2 (tails cut at 4 sigma), drawn from
    random bytes and two ``cv2.LUT`` calls instead of float samples."""
    h, w = batch.shape[1:3]
    one = 1 << _NOISE_SHIFT
    table = np.rint(_NORMAL_LEVELS * (p["sigma"] * one)).astype(np.int16)  # |value| < 2**14
    table += np.int16(one // 4)  # the two halves sum to +one/2: rounds the shift
    bits = np.frombuffer(rng.bytes(2 * h * w * 3), np.uint8).reshape(2 * h, w * 3)
    noise = cv2.add(cv2.LUT(bits[:h], table), cv2.LUT(bits[h:], table), dtype=cv2.CV_16S)
    noise >>= _NOISE_SHIFT
    return add_signed(batch, noise.reshape(h, w, 3))


def _uniform16(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) uniform uint16 draws from random bytes: thresholds at k / 65536 are probabilities."""
    return np.frombuffer(rng.bytes(2 * h * w), np.uint16).reshape(h, w)


def _threshold(p: float) -> int:
    return int(round(p * 65536))


def _apply_masks(batch: np.ndarray, keep: np.ndarray, paint: np.ndarray) -> np.ndarray:
    """``(batch & keep) | paint`` with (h, w, 3) uint8 masks shared by the batch."""
    out = np.bitwise_and(batch, keep)
    out |= paint
    return out


def _salt_pepper(batch, p, rng):
    h, w = batch.shape[1:3]
    u = _uniform16(rng, h, w)
    amount = p["amount"]
    hit = u < _threshold(amount)
    salt = hit & (u >= _threshold(amount / 2))  # the lower half of the hits is pepper (black)
    keep = hit.view(np.uint8) - np.uint8(1)  # 0 where hit, 255 elsewhere
    salt = np.negative(salt.view(np.uint8))  # 255 where salt
    return _apply_masks(batch, cv2.cvtColor(keep, cv2.COLOR_GRAY2RGB), cv2.cvtColor(salt, cv2.COLOR_GRAY2RGB))


#: Colours a stuck pixel shows: one saturated primary, or white (a "hot" pixel).
STUCK_COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)


def _dead_pixels(batch, p, rng):
    h, w = batch.shape[1:3]
    faulty = np.flatnonzero(_uniform16(rng, h, w) < _threshold(p["fraction"]))
    stuck = faulty[rng.random(len(faulty)) < p["stuck_share"]]
    keep = np.full(h * w, 255, np.uint8)
    keep[faulty] = 0  # dead: black; stuck: painted
    paint = np.zeros((h * w, 3), np.uint8)
    paint[stuck] = STUCK_COLORS[rng.integers(0, len(STUCK_COLORS), len(stuck))]
    return _apply_masks(batch, cv2.cvtColor(keep.reshape(h, w), cv2.COLOR_GRAY2RGB), paint.reshape(h, w, 3))


def _jpeg(batch, p, rng):
    n, h, w, _ = batch.shape
    q = [cv2.IMWRITE_JPEG_QUALITY, int(p["quality"])]
    bgr = cv2.cvtColor(batch.reshape(n * h, w, 3), cv2.COLOR_RGB2BGR).reshape(batch.shape)  # encoder wants BGR
    out = np.empty_like(batch)
    for i in range(n):
        ok, buf = cv2.imencode(".jpg", bgr[i], q)
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 frame
            raise RuntimeError("JPEG encoding failed")
        out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
    return out


DIRT_COLOR = np.array([70.0, 62.0, 52.0], np.float32)


def dirt_levels(h: int, w: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Dirt opacity as 8-bit levels (h, w): overlapping soft ellipses covering about ``coverage`` of the frame."""
    target = p["coverage"] * h * w
    sigma = 0.1 * math.sqrt(max(target, 1.0))
    hs, ws = soft_grid(h, w, sigma, 2.0 * math.sqrt(target / (24 * math.pi)))  # smallest ellipse's minor axis
    sx, sy = ws / w, hs / h
    mask = np.zeros((hs, ws), np.uint8)
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    for _ in range(6):
        area = target / 3.0 * rng.uniform(0.5, 1.5)
        ratio = rng.uniform(0.5, 2.0)
        ax = math.sqrt(area / math.pi * ratio) * 16
        ay = math.sqrt(area / math.pi / ratio) * 16
        dx, dy = rng.normal(0.0, 0.35, 2) * math.sqrt(target)
        centre = (int(round(((cx + dx + 0.5) * sx - 0.5) * 16)), int(round(((cy + dy + 0.5) * sy - 0.5) * 16)))
        cv2.ellipse(mask, centre, (max(0, int(round(ax * sx - 8 * (1 - sx)))), max(0, int(round(ay * sy - 8 * (1 - sy))))), float(rng.uniform(0, 180)),
                    0.0, 360.0, 255, -1, cv2.LINE_AA, 4)  # axes less the extra half pixel cv2 fills (see shadow)
    return soften(mask, h, w, sigma)


def dirt_mask(h: int, w: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Dirt opacity (h, w) in [0, 1] (``dirt_levels`` / 255)."""
    return dirt_levels(h, w, p, rng).astype(np.float32) / np.float32(255)


def _lens_dirt(batch, p, rng):
    h, w = batch.shape[1:3]
    m = dirt_levels(h, w, p, rng)
    a = p["opacity"] * LEVELS
    return blend_mask(batch, m, 1.0 - a, a, DIRT_COLOR)


register(TransformSpec(
    "gaussian_noise", "sensor",
    (Param("sigma", 0.0, 50.0, 0.0, identity=0.0, extreme=40.0, unit="grey levels",
           doc="standard deviation of the additive noise, independent per pixel and channel"),),
    _gaussian_noise, doc="Additive Gaussian read noise, saturating. Severity 1 = sigma 40."))

register(TransformSpec(
    "salt_pepper", "sensor",
    (Param("amount", 0.0, 0.3, 0.0, identity=0.0, extreme=0.1,
           doc="fraction of pixels forced to black or white (half each)"),),
    _salt_pepper, doc="Impulse noise from bit errors on the link. Severity 1 = 10% of pixels."))

register(TransformSpec(
    "dead_pixels", "sensor",
    (Param("fraction", 0.0, 0.05, 0.0, identity=0.0, extreme=0.01, doc="fraction of faulty pixels"),
     Param("stuck_share", 0.0, 1.0, 0.5,
           doc="share of faulty pixels stuck on a primary or white; the rest are dead (black)")),
    _dead_pixels, doc="Dead (black) and stuck (saturated) sensor pixels. Severity 1 = 1% of pixels."))

register(TransformSpec(
    "jpeg", "sensor",
    (Param("quality", 1, 100, 100, identity=100, extreme=10, integer=True,
           doc="JPEG quality (OpenCV, 4:2:0); 100 means no re-encoding (the identity)"),),
    _jpeg, seeded=False, doc="Compression artefacts of a low-bandwidth link: encode and decode at the quality. "
               "Severity 1 = quality 10."))

register(TransformSpec(
    "lens_dirt", "sensor",
    (Param("coverage", 0.0, 0.5, 0.0, identity=0.0, extreme=0.3, doc="fraction of the frame covered"),
     Param("opacity", 0.0, 1.0, 0.85, doc="1 = an opaque occluder, lower = a dirty smudge")),
    _lens_dirt, doc="A dirty or occluded patch on the lens: soft dark blobs at a place drawn from "
                    "the seed. Severity 1 = 30% of the frame."))
