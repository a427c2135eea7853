"""A labelled grid of transforms at several severities: the picture that shows whether weather looks like weather."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .core import REGISTRY, get

SEVERITIES = (1 / 3, 2 / 3, 1.0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LABEL_H = 18


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` with ``text`` in a white strip above it."""
    strip = np.full((_LABEL_H, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, _LABEL_H - 5), _FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], axis=0)


def preview_grid(image: np.ndarray, names: Sequence[str] | None = None,
                 severities: Sequence[float] = SEVERITIES, seed: int = 0,
                 tile_width: int = 240, per_row: int = 2, gap: int = 6) -> np.ndarray:
    """An RGB uint8 grid: the original, then each transform at each severity, labelled.

    Transforms run on ``image`` at its own resolution; tiles are resized to ``tile_width``.
    Each grid row holds ``per_row`` transforms side by side.
    """
    names = list(REGISTRY) if names is None else list(names)
    h, w = image.shape[:2]
    th = max(1, int(round(tile_width * h / w)))

    def tile(img, text):
        interp = cv2.INTER_AREA if tile_width < w else cv2.INTER_NEAREST
        return _label(cv2.resize(img, (tile_width, th), interpolation=interp), text)

    cells = [[tile(get(n, severity=s)(image[None], seed=seed)[0], f"{n} {s:.2f}") for s in severities]
             for n in names]
    cell_h, cell_w = th + _LABEL_H, tile_width
    group_w = len(severities) * (cell_w + gap) + gap
    rows = (len(cells) + per_row - 1) // per_row
    header = tile(image, "original")
    canvas = np.full((gap + cell_h + 2 * gap + rows * (cell_h + gap), per_row * group_w, 3), 255, np.uint8)
    canvas[gap:gap + cell_h, gap:gap + cell_w] = header
    top = gap + cell_h + 2 * gap
    for i, row in enumerate(cells):
        y = top + (i // per_row) * (cell_h + gap)
        x0 = (i % per_row) * group_w + gap
        for j, c in enumerate(row):
            x = x0 + j * (cell_w + gap)
            canvas[y:y + cell_h, x:x + cell_w] = c
    return canvas
