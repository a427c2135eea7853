"""Sensor and link faults of IoT cameras: noise, salt and pepper, dead/stuck pixels, JPEG, lens dirt.

Random patterns (noise, faulty pixels, dirt) are drawn once per call from the seed and shared by
the batch: a faulty sensor's defects stay put from frame to frame, and one image can be replayed
alone with the same seed.
"""

from __future__ import annotations

import cv2
import numpy as np

from .batch import add_signed, blend
from .core import Param, TransformSpec, register


def _gaussian_noise(batch, p, rng):
    h, w = batch.shape[1:3]
    noise = np.rint(rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(p["sigma"]))
    return add_signed(batch, np.clip(noise, -255, 255).astype(np.int16))


def _salt_pepper(batch, p, rng):
    h, w = batch.shape[1:3]
    u = rng.random((h, w))
    amount = p["amount"]
    out = batch.copy()
    out[:, u < amount / 2] = 0
    out[:, (u >= amount / 2) & (u < amount)] = 255
    return out


#: Colours a stuck pixel shows: one saturated primary, or white (a "hot" pixel).
STUCK_COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)


def _dead_pixels(batch, p, rng):
    h, w = batch.shape[1:3]
    faulty = rng.random((h, w)) < p["fraction"]
    stuck = faulty & (rng.random((h, w)) < p["stuck_share"])
    dead = faulty & ~stuck
    out = batch.copy()
    out[:, dead] = 0
    colors = STUCK_COLORS[rng.integers(0, len(STUCK_COLORS), int(stuck.sum()))]
    out[:, stuck] = colors
    return out


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


def dirt_mask(h: int, w: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Dirt opacity (h, w) in [0, 1]: overlapping soft ellipses covering about ``coverage`` of the frame."""
    mask = np.zeros((h, w), np.uint8)
    target = p["coverage"] * h * w
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    for _ in range(6):
        area = target / 3.0 * rng.uniform(0.5, 1.5)
        ratio = rng.uniform(0.5, 2.0)
        ax = np.sqrt(area / np.pi * ratio) * 16
        ay = np.sqrt(area / np.pi / ratio) * 16
        dx, dy = rng.normal(0.0, 0.35, 2) * np.sqrt(target)
        centre = (int(round((cx + dx) * 16)), int(round((cy + dy) * 16)))
        cv2.ellipse(mask, centre, (int(round(ax)), int(round(ay))), float(rng.uniform(0, 180)),
                    0.0, 360.0, 255, -1, cv2.LINE_AA, 4)
    m = mask.astype(np.float32) / 255.0
    sigma = 0.1 * np.sqrt(max(target, 1.0))
    if sigma >= 0.3:
        m = cv2.GaussianBlur(m, (0, 0), sigma)
    return m


def _lens_dirt(batch, p, rng):
    h, w = batch.shape[1:3]
    m = dirt_mask(h, w, p, rng)[:, :, None] * p["opacity"]
    return blend(batch, 1.0 - m, m * DIRT_COLOR)


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
    _jpeg, doc="Compression artefacts of a low-bandwidth link: encode and decode at the quality. "
               "Severity 1 = quality 10."))

register(TransformSpec(
    "lens_dirt", "sensor",
    (Param("coverage", 0.0, 0.5, 0.0, identity=0.0, extreme=0.3, doc="fraction of the frame covered"),
     Param("opacity", 0.0, 1.0, 0.85, doc="1 = an opaque occluder, lower = a dirty smudge")),
    _lens_dirt, doc="A dirty or occluded patch on the lens: soft dark blobs at a place drawn from "
                    "the seed. Severity 1 = 30% of the frame."))
