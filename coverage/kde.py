"""Gaussian kernel density estimate in NumPy (scipy is not a dependency), for LSA.

Same model as scipy.stats.gaussian_kde: kernel covariance = factor^2 x the traces' covariance
(ddof = 1), Scott's factor n^(-1/(d+4)). Differences, on purpose: d is the covariance's rank
(see whiten.py: a singular covariance is handled in the subspace the traces span instead of
failing), and log densities are computed with log-sum-exp, so far-away inputs give a large
finite surprise rather than log(0).
"""

from __future__ import annotations

import numpy as np

from .whiten import Whitener

_CHUNK_CELLS = 2_000_000  # test x train distances computed per chunk (bounds memory to ~16 MB)


def logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """log(sum(exp(x))) per row without overflow; -inf for rows that are all -inf."""
    m = x.max(axis=1, keepdims=True)
    m[~np.isfinite(m)] = 0.0
    with np.errstate(divide="ignore"):
        return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


class GaussianKDE:
    """Fit on (n, d) traces; ``logpdf(x)`` gives the (N,) log density at test traces."""

    def __init__(self, traces: np.ndarray, what: str = "KDE", bandwidth: float | None = None):
        traces = np.asarray(traces, dtype=np.float64)
        self.whitener = Whitener(traces, what)
        n, r = traces.shape[0], self.whitener.rank
        self.factor = float(n ** (-1.0 / (r + 4))) if bandwidth is None else float(bandwidth)
        self.z = self.whitener(traces) / self.factor
        self.z_sq = np.einsum("ij,ij->i", self.z, self.z)
        # log of 1 / (n * sqrt((2 pi)^r det(factor^2 cov)))
        self.log_norm = -np.log(n) - 0.5 * (r * np.log(2 * np.pi) + self.whitener.log_det + 2 * r * np.log(self.factor))

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        zx = self.whitener(x) / self.factor
        out = np.empty(zx.shape[0])
        step = max(1, _CHUNK_CELLS // max(1, self.z.shape[0]))
        for i in range(0, zx.shape[0], step):  # chunks of inputs, to bound memory
            c = zx[i:i + step]
            d2 = np.einsum("ij,ij->i", c, c)[:, None] + self.z_sq[None, :] - 2.0 * (c @ self.z.T)
            np.maximum(d2, 0.0, out=d2)  # rounding can make tiny distances negative
            out[i:i + step] = logsumexp_rows(-0.5 * d2) + self.log_norm
        return out
