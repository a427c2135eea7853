"""Geometric transforms: translation, scale, shear, rotation, horizontal flip, each with its matrix.

Every transform is defined by a 3x3 matrix M that maps input pixel coordinates (x = column,
y = row, pixel centres at integers) to output ones; the pixels are ``cv2.warpAffine(img, M[:2])``
with bilinear interpolation and a black border, as DeepTest did, so the matrix a detection oracle
uses is exactly the warp that moved the pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .core import Param, TransformSpec, register


def _centre(h: int, w: int) -> tuple[float, float]:
    return (w - 1) / 2.0, (h - 1) / 2.0


def translation_matrix(h, w, p) -> np.ndarray:
    return np.array([[1.0, 0.0, p["tx"]], [0.0, 1.0, p["ty"]], [0.0, 0.0, 1.0]])


def scale_matrix(h, w, p) -> np.ndarray:
    s = p["factor"]
    cx, cy = _centre(h, w)
    return np.array([[s, 0.0, (1 - s) * cx], [0.0, s, (1 - s) * cy], [0.0, 0.0, 1.0]])


def shear_matrix(h, w, p) -> np.ndarray:
    k = -p["factor"]  # DeepTest's sign: it warps with [[1, -factor, 0], [0, 1, 0]]
    _, cy = _centre(h, w)
    return np.array([[1.0, k, -k * cy], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def rotation_matrix(h, w, p) -> np.ndarray:
    cx, cy = _centre(h, w)
    a = math.radians(p["degrees"])
    c, s = math.cos(a), math.sin(a)
    # cv2.getRotationMatrix2D: positive angles turn the picture counter-clockwise on screen.
    return np.array([[c, s, (1 - c) * cx - s * cy], [-s, c, s * cx + (1 - c) * cy], [0.0, 0.0, 1.0]])


def hflip_matrix(h, w, p) -> np.ndarray:
    if not p["flip"]:
        return np.eye(3)
    return np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _warp_into(dst: np.ndarray, image: np.ndarray, m: np.ndarray) -> None:
    h, w = image.shape[:2]
    cv2.warpAffine(image, m, (w, h), dst=dst, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _warp(matrix_fn):
    """(apply, apply_many) of the warp by ``matrix_fn``: one matrix for a batch, or one per image."""
    def apply(batch, p, rng):
        _, h, w, _ = batch.shape
        m = matrix_fn(h, w, p)[:2]
        out = np.empty_like(batch)
        for i in range(len(batch)):
            _warp_into(out[i], batch[i], m)
        return out

    def apply_many(batch, params, seeds):
        _, h, w, _ = batch.shape
        out = np.empty_like(batch)
        for i, p in enumerate(params):
            _warp_into(out[i], batch[i], matrix_fn(h, w, p)[:2])
        return out
    return apply, apply_many


_translation, _translation_many = _warp(translation_matrix)
_scale, _scale_many = _warp(scale_matrix)
_shear, _shear_many = _warp(shear_matrix)
_rotation, _rotation_many = _warp(rotation_matrix)


def _hflip(batch, p, rng):
    n, h, w, c = batch.shape
    return cv2.flip(batch.reshape(n * h, w, c), 1).reshape(batch.shape)  # rows flip independently


register(TransformSpec(
    "translation", "geometric",
    (Param("tx", -200, 200, 0, identity=0, extreme=100, pool=(-50, 49, 1), unit="px", doc="right is positive"),
     Param("ty", -200, 200, 0, identity=0, extreme=100, pool=(-50, 49, 1), unit="px", doc="down is positive")),
    _translation, matrix=translation_matrix, seeded=False, apply_many=_translation_many,
    doc="Shift the frame, black border. Severity 1 = (100, 100) px, the far end of DeepTest's sweep "
        "(10..100 px on both axes).",
    random_doc="tx and ty drawn independently from DeepTest's pool -50..49 px"))

register(TransformSpec(
    "scale", "geometric",
    (Param("factor", 0.5, 6.0, 1.0, identity=1.0, extreme=6.0, pool=(0.5, 1.9, 0.1),
           doc="> 1 zooms in, < 1 zooms out (black border)"),),
    _scale, matrix=scale_matrix, seeded=False, apply_many=_scale_many,
    doc="Zoom about the frame centre, same output size (DeepTest resized the whole frame). "
        "Severity 1 = 6.0, the far end of DeepTest's sweep."))

register(TransformSpec(
    "shear", "geometric",
    (Param("factor", -1.0, 1.0, 0.0, identity=0.0, extreme=1.0, pool=(-0.5, 0.4, 0.1),
           doc="x' = x - factor (y - cy): DeepTest's sign, about the centre row"),),
    _shear, matrix=shear_matrix, seeded=False, apply_many=_shear_many,
    doc="Horizontal shear about the centre row (DeepTest sheared about the top row, which also "
        "shifts the picture). Severity 1 = 1.0, the far end of DeepTest's sweep."))

register(TransformSpec(
    "rotation", "geometric",
    (Param("degrees", -180, 180, 0, identity=0, extreme=30, pool=(-30, 29, 1), unit="deg",
           doc="counter-clockwise on screen, about the frame centre"),),
    _rotation, matrix=rotation_matrix, seeded=False, apply_many=_rotation_many,
    doc="Rotate about the centre, black corners. Severity 1 = 30 deg, the far end of DeepTest's sweep."))

register(TransformSpec(
    "hflip", "geometric",
    (Param("flip", 0, 1, 0, identity=0, extreme=1, integer=True, doc="1 = mirror left-right, 0 = identity"),),
    _hflip, matrix=hflip_matrix, seeded=False, random_params=lambda rng: {"flip": 1},
    doc="Mirror left-right (the steering relation expects -angle). Flips at severity >= 0.5.",
    random_doc="always flips"))
