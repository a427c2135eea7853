"""Map points and boxes through a geometric transform's matrix (where did the objects go?)."""

from __future__ import annotations

import numpy as np

from deeptest_iot.errors import InputError


def _as_matrix(transform_or_matrix, frame_size):
    if transform_or_matrix is None:
        return None
    if hasattr(transform_or_matrix, "matrix"):
        if frame_size is None:
            raise InputError("frame_size=(h, w) is needed to get a transform's matrix")
        return transform_or_matrix.matrix(*frame_size)
    m = np.asarray(transform_or_matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise InputError(f"a transform matrix is 3x3, got shape {m.shape}")
    return m


def map_points(points, matrix, frame_size=None) -> np.ndarray:
    """Map (k, 2) pixel coordinates (x = column, y = row, pixel centres at integers) through a 3x3
    matrix, or a Transform/Chain's matrix at ``frame_size`` = (h, w). None keeps the points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = _as_matrix(matrix, frame_size)
    if m is None:
        return pts.copy()
    hom = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ m.T
    return hom[:, :2] / hom[:, 2:3]


def map_boxes(boxes, matrix, frame_size=None, clip: bool = True) -> np.ndarray:
    """Map (k, 4) xyxy boxes, whose edges are pixel borders (pixel x spans [x, x + 1)), through a
    matrix (or a Transform/Chain at ``frame_size`` = (h, w)): the axis-aligned hull of the four
    mapped corners, clipped to the frame when ``frame_size`` is given and ``clip``.

    A box that left the frame comes back with zero area; the count and order of boxes is kept.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    m = _as_matrix(matrix, frame_size)
    if m is None:
        out = b.copy()
    else:
        x0, y0, x1, y1 = b.T
        corners = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1),
                            np.stack([x1, y1], 1), np.stack([x0, y1], 1)], axis=1)  # (k, 4, 2)
        # Border coordinates are pixel-centre coordinates plus one half.
        mapped = map_points(corners.reshape(-1, 2) - 0.5, m).reshape(-1, 4, 2) + 0.5
        out = np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)
    if frame_size is not None and clip:
        h, w = frame_size
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
    return out
