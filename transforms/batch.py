"""Batch plumbing shared by every transform: input checks, seeds, and fast uint8 pixel kernels.

The kernels work on the whole (N, H, W, 3) batch in fixed-point integer arithmetic or through one
OpenCV call on a reshaped view, because per-image float pipelines are what make transforms slow.
"""

from __future__ import annotations

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
