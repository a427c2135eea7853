"""Whitening by a (possibly singular) covariance, shared by the KDE of LSA and by MDSA.

The covariance is the sample covariance (ddof = 1), as scipy's gaussian_kde uses.

A covariance with rank r < d (fewer traces than neurons, or collinear neurons) is handled like a
pseudo-inverse: eigenvalues below ``rcond`` x the largest are dropped and distances are measured
in the r-dimensional subspace the training traces span. This never produces NaN; ``rank`` says
how many directions were kept. A covariance that is entirely zero is refused with a clear message.
"""

from __future__ import annotations

import numpy as np

from deeptest_iot.errors import ConfigError

RCOND = 1e-10


class Whitener:
    """Maps traces x to z = (x - mean) @ W with z's covariance the identity on the kept subspace."""

    def __init__(self, traces: np.ndarray, what: str, rcond: float = RCOND):
        x = np.asarray(traces, dtype=np.float64)
        if x.shape[0] < 2:
            raise ConfigError(f"{what}: needs at least 2 training traces to estimate a covariance, got {x.shape[0]}")
        self.mean = x.mean(axis=0)
        cov = np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])
        evals, evecs = np.linalg.eigh(cov)
        top = float(evals[-1]) if evals.size else 0.0
        if not top > 0 or not np.isfinite(top):
            raise ConfigError(f"{what}: the training traces do not vary (covariance is zero), so no density or "
                              f"distance can be estimated; choose layers whose neurons vary on the training data")
        keep = evals > rcond * top
        self.rank = int(keep.sum())
        self.dim = x.shape[1]
        self.eigenvalues = evals[keep]
        self.W = evecs[:, keep] / np.sqrt(evals[keep])
        self.log_det = float(np.sum(np.log(evals[keep])))  # of the covariance on the kept subspace

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.W
