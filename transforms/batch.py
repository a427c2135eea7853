"""Batch plumbing shared by every transform: input checks, seeds, and fast uint8 pixel kernels.

The kernels work on the whole (N, H, W, 3) batch in fixed-point integer arithmetic or through one
OpenCV call on a reshaped view, because per-image float pipelines are what make transforms slow.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import cv2
import numpy as np

from deeptest_iot.errors import ConfigError, InputError

#: Images per chunk for the integer kernels: keeps the uint16 temporaries in cache.
CHUNK_BYTES = 1 << 20


def as_batch(images) -> tuple[np.ndarray, bool]:
    """``images`` as a C-contiguous (N, H, W, 3) uint8 array, and whether it was one (H, W, 3) frame."""
    if not isinstance(images, np.ndarray):
        raise InputError(f"images must be a numpy array (N, H, W, 3) uint8, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise InputError(f"images must be uint8 RGB, got dtype {images.dtype}; convert with "
                         f"np.clip(x, 0, 255).astype(np.uint8)")
    if images.ndim == 3 and images.shape[-1] == 3:
        return np.ascontiguousarray(images[None]), True
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"images must have shape (N, H, W, 3) (or one (H, W, 3) frame), got {images.shape}")
    return np.ascontiguousarray(images), False


def as_rng(seed) -> np.random.Generator:
    """A Generator from an int seed (a fresh ``default_rng(seed)``) or the Generator itself."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise ConfigError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")


def chunk_size(batch: np.ndarray, bytes_per_item: int = 2) -> int:
    """How many images of ``batch`` fit in one cache-sized chunk (at least 1)."""
    per_image = max(1, batch[0].size * bytes_per_item) if len(batch) else 1
    return max(1, CHUNK_BYTES // per_image)


def apply_lut(batch: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Apply a 256-entry lookup table, one table (256,) for all channels or one per channel (256, 3)."""
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    n, h, w, c = batch.shape
    out = np.empty_like(batch)
    step = max(1, (1 << 28) // max(1, h * w * c))  # keep each cv2 Mat well below 2**31 elements
    for i in range(0, n, step):
        part = batch[i:i + step]
        if lut.ndim == 1:
            flat = part.reshape(-1, w * c)
            out[i:i + step] = cv2.LUT(flat, lut).reshape(part.shape)
        else:
            flat = part.reshape(-1, w, c)
            out[i:i + step] = cv2.LUT(flat, lut.reshape(256, 1, c)).reshape(part.shape)
    return out


def apply_luts(batch: np.ndarray, luts) -> np.ndarray:
    """Image i through its own table ``luts[i]`` ((256,) for all channels or (256, 3) per channel):
    one cv2.LUT per image in a tight loop, each exactly what ``apply_lut`` does to that image alone."""
    n, h, w, c = batch.shape
    out = np.empty_like(batch)
    flat_in, flat_out = batch.reshape(n, h, w * c), out.reshape(n, h, w * c)
    for i, lut in enumerate(luts):
        lut = np.ascontiguousarray(lut, dtype=np.uint8)
        if lut.ndim == 1:
            cv2.LUT(flat_in[i], lut, dst=flat_out[i])
        else:
            cv2.LUT(batch[i], lut.reshape(256, 1, c), dst=out[i])
    return out


def blend(batch: np.ndarray, weight, offset) -> np.ndarray:
    """``batch * weight + offset`` for a convex blend (weight in [0, 1], offset <= 255 (1 - weight)).

    ``weight`` and ``offset`` broadcast to (H, W, 3) and are shared by the batch. Computed in 8.8
    fixed point in uint16, in cache-sized chunks: exact to within one grey level of the float result.
    """
    n, h, w, c = batch.shape
    f32 = np.float32
    w16 = np.rint(np.clip(np.asarray(weight, f32), f32(0), f32(1)) * f32(256))
    off = np.clip(np.asarray(offset, f32), f32(0), f32(255)) * f32(256)
    o16 = np.rint(np.minimum(off, f32(65280) - f32(255) * w16)) + f32(128)  # no uint16 overflow; rounds the shift
    w16 = w16.astype(np.uint16).reshape(np.broadcast_shapes(w16.shape, (1, 1, 1)))
    o16 = o16.astype(np.uint16)
    return _fixed_point_blend(batch, w16, o16)


def _fixed_point_blend(batch: np.ndarray, w16, o16) -> np.ndarray:
    """``(batch * w16 + o16) >> 8`` in uint16 (8.8 fixed point), in cache-sized chunks of the batch."""
    n, h, w, c = batch.shape
    out = np.empty_like(batch)
    step = chunk_size(batch)
    tmp = np.empty((min(step, n), h, w, c), np.uint16)
    for i in range(0, n, step):
        part = batch[i:i + step]
        t = tmp[:len(part)]
        np.multiply(part, w16, out=t, dtype=np.uint16)
        t += o16
        t >>= 8
        out[i:i + step] = t
    return out


def add_signed(batch: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``clip(batch + delta, 0, 255)`` with an int16 ``delta`` broadcast to (H, W, 3), shared by the batch."""
    n = len(batch)
    out = np.empty_like(batch)
    d = np.asarray(delta, dtype=np.int16)
    step = chunk_size(batch)
    for i in range(0, n, step):
        t = np.add(batch[i:i + step], d, dtype=np.int16)
        np.clip(t, 0, 255, out=t)
        out[i:i + step] = t
    return out


def per_image(batch: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Run an OpenCV call on each (H, W, 3) image; cheap for OpenCV's fast per-image kernels."""
    out = np.empty_like(batch)
    for i in range(len(batch)):
        out[i] = fn(batch[i])
    return out


def gray(batch: np.ndarray) -> np.ndarray:
    """Luma (N, H, W) uint8 of an RGB batch (ITU-R BT.601 weights, as OpenCV uses)."""
    n, h, w, _ = batch.shape
    return cv2.cvtColor(batch.reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(n, h, w)


#: Mask level i of an 8-bit mask stands for the opacity i / 255.
LEVELS = np.arange(256, dtype=np.float64) / 255.0


def blend_mask(batch: np.ndarray, mask: np.ndarray, weight: np.ndarray, amount: np.ndarray, colour) -> np.ndarray:
    """``batch * weight[mask] + amount[mask] * colour`` for an 8-bit (H, W) ``mask`` shared by the batch.

    ``weight`` and ``amount`` are 256-entry tables (functions of the mask level, see ``LEVELS``) with
    ``weight + amount <= 1`` (a convex blend toward ``colour``, RGB grey levels). The tables are turned
    into 8.8 fixed point once, expanded to contiguous (H, W, 3) uint16 planes with OpenCV, and the
    batch is blended in uint16 without broadcasting over the 3-channel axis (which is what makes
    NumPy slow on small frames): exact to within one grey level of the float result.
    """
    n, h, w, c = batch.shape
    w16 = np.rint(np.clip(weight, 0.0, 1.0) * 256.0)
    a16 = np.minimum(np.rint(np.clip(amount, 0.0, 1.0) * 256.0), 256.0 - w16)  # no uint16 overflow
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    wt = cv2.cvtColor(cv2.LUT(mask, w16.astype(np.uint16)), cv2.COLOR_GRAY2RGB)
    col = _colour_row(tuple(float(v) for v in np.asarray(colour, np.float64).ravel()), w)
    if a16.any() and col.any():
        am = cv2.cvtColor(cv2.LUT(mask, a16.astype(np.uint16)), cv2.COLOR_GRAY2RGB)
        off = np.multiply(am.reshape(h, w * c), col, dtype=np.uint16).reshape(h, w, c)
        off += np.uint16(128)  # rounds the shift
    else:
        off = np.uint16(128)
    return _fixed_point_blend(batch, wt, off)


@functools.lru_cache(maxsize=32)
def _colour_row(colour: tuple, w: int) -> np.ndarray:
    """An RGB colour as whole grey levels repeated along a row of ``w`` pixels, (w * 3,) uint16."""
    row = np.tile(np.clip(np.rint(np.array(colour, np.float64)), 0, 255).astype(np.uint16), w)
    row.setflags(write=False)
    return row


def to_levels(mask: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """A float mask (opacity in [0, 1] at ``scale`` 255) as rounded, saturated 8-bit levels."""
    return cv2.convertScaleAbs(np.asarray(mask, np.float32), alpha=float(scale))


#: Blur (px) at which wide soft masks are computed, on a frame shrunk to make it so.
SOFT_SIGMA = 1.5


def soft_grid(h: int, w: int, sigma: float, feature: float) -> tuple[int, int]:
    """The (rows, columns) to draw a mask on that ``soften`` will blur by ``sigma`` px at (h, w).

    Wide blurs are smooth at the scale of ``sigma``, so their mask is drawn on a frame shrunk until
    the blur is about ``SOFT_SIGMA`` px there, blurred and enlarged bilinearly: within a few levels of
    the full-size blur at a small fraction of its cost. The frame shrinks no more than keeps
    ``feature`` (the thinnest part of the drawn shape, px) 2 px wide: anti-aliased drawing would
    thicken anything thinner. Draw a point (x, y) of the full frame at
    ((x + 0.5) ws / w - 0.5, (y + 0.5) hs / h - 0.5) and scale lengths by ws / w and hs / h.
    """
    f = min(sigma / SOFT_SIGMA, feature / 2.0)
    if f <= 2.0 or min(h, w) < 8:
        return h, w
    return max(2, int(round(h / f))), max(2, int(round(w / f)))


def soften(canvas: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    """Gaussian blur (``sigma`` px at the full size, reflected borders) of an 8-bit mask drawn on
    ``soft_grid(h, w, sigma)``, as (h, w) 8-bit levels."""
    hs, ws = canvas.shape
    if (hs, ws) == (h, w):
        if sigma < 0.3:
            return canvas
        return to_levels(cv2.GaussianBlur(canvas.astype(np.float32), (0, 0), sigma), 1.0)
    # Anti-aliased drawing (a 1 px box) and bilinear enlarging (a 1 px triangle) blur by variance
    # about 1/4 px^2 on the small frame already: blur the rest.
    sx, sy = ws / w, hs / h
    sig_x = math.sqrt(max((sigma * sx) ** 2 - 0.25, 0.25))
    sig_y = math.sqrt(max((sigma * sy) ** 2 - 0.25, 0.25))
    small = cv2.GaussianBlur(canvas.astype(np.float32), (0, 0), sig_x, sigmaY=sig_y)
    return to_levels(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), 1.0)
