"""Per-input top-k neurons of a layer, with a fixed tie rule so TKNC/TKNP are deterministic.

The top-k set of an input is its k largest values; among equal values at the k-th place the
lower neuron indices win. k larger than the layer means the whole layer.
"""

from __future__ import annotations

import numpy as np


def topk_mask(a: np.ndarray, k: int) -> np.ndarray:
    """(N, n) bool mask with exactly min(k, n) True per row: each row's top-k neurons."""
    n_rows, n = a.shape
    if k >= n:
        return np.ones(a.shape, dtype=bool)
    kth = np.partition(a, n - k, axis=1)[:, n - k:n - k + 1]  # k-th largest value per row
    sel = a >= kth
    count = np.count_nonzero(sel, axis=1)
    tied = np.flatnonzero(count > k)
    if tied.size:  # more than k values >= the k-th: keep all larger ones, then the lowest-index ties
        sub, th = a[tied], kth[tied]
        gt = sub > th
        need = k - np.count_nonzero(gt, axis=1, keepdims=True)
        eq = sub == th
        sel[tied] = gt | (eq & (np.cumsum(eq, axis=1) <= need))
    return sel


def topk_indices(mask: np.ndarray, k: int) -> np.ndarray:
    """(N, min(k, n)) int32 sorted column indices of a mask made by topk_mask."""
    n_rows, n = mask.shape
    return np.nonzero(mask)[1].astype(np.int32).reshape(n_rows, min(k, n))
