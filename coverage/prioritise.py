"""Test-input prioritisers (Weiss and Tonella, ISSTA 2022) and APFD to compare orderings.

Every scorer returns (N,) floats where HIGHER means "more likely to fail, test first";
``order(scores)`` turns them into a ranking. Classifier scorers take softmax probabilities (N, C).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deeptest_iot.errors import ConfigError, InputError


def _probs(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"class probabilities must have shape (N, classes >= 2), got {p.shape}")
    if not np.isfinite(p).all():
        raise InputError("class probabilities contain NaN or Inf")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise InputError("class probabilities must be non-negative and sum to 1 per input (pass softmax outputs)")
    return p


def deepgini(p) -> np.ndarray:
    """DeepGini impurity 1 - sum_c p_c^2."""
    p = _probs(p)
    return 1.0 - np.einsum("ij,ij->i", p, p)


def max_softmax(p) -> np.ndarray:
    """1 - max_c p_c (the vanilla softmax confidence, turned into a priority)."""
    return 1.0 - _probs(p).max(axis=1)


def margin(p) -> np.ndarray:
    """1 - (p_top1 - p_top2): a small margin between the two likeliest classes ranks first."""
    p = np.sort(_probs(p), axis=1)
    return 1.0 - (p[:, -1] - p[:, -2])


def entropy(p) -> np.ndarray:
    """Shannon entropy -sum_c p_c ln p_c in nats (0 ln 0 = 0)."""
    p = _probs(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def mc_dropout_variance(samples_or_model: np.ndarray | Callable, inputs=None, t: int = 20) -> np.ndarray:
    """Variance over T stochastic forward passes, summed over output components (ddof = 0).

    Pass an array of T outputs, shape (T, N) for steering or (T, N, C) for classifiers, or a
    callable ``run(inputs) -> outputs`` that runs the model with dropout on, called ``t`` times.
    """
    if callable(samples_or_model):
        if inputs is None:
            raise ConfigError("mc_dropout_variance with a model callable needs the inputs")
        if not isinstance(t, (int, np.integer)) or t < 2:
            raise ConfigError(f"mc_dropout_variance needs t >= 2 stochastic passes, got {t!r}")
        s = np.stack([np.asarray(samples_or_model(inputs), dtype=np.float64) for _ in range(t)])
    else:
        s = np.asarray(samples_or_model, dtype=np.float64)
    if s.ndim < 2 or s.shape[0] < 2:
        raise InputError(f"MC-dropout samples must have shape (T >= 2, N, ...), got {s.shape}")
    if not np.isfinite(s).all():
        raise InputError("MC-dropout outputs contain NaN or Inf")
    v = s.var(axis=0)
    return v.reshape(v.shape[0], -1).sum(axis=1)


def order(scores) -> np.ndarray:
    """Indices by descending score; ties keep input order (stable), so the ranking is deterministic."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or np.isnan(s).any():
        raise InputError("priority scores must be a 1-D array without NaN")
    return np.argsort(-s, kind="stable")


def apfd(ranking, faults) -> float:
    """Average Percentage of Faults Detected: 1 - sum(TF_i) / (n m) + 1 / (2 n).

    ``ranking``: the order the n inputs are run in (a permutation of 0..n-1). ``faults``: (n,)
    bool, each failing input its own fault (the usual setting for DNN prioritisation), or (n, m)
    bool, input i reveals fault j. TF_i is the 1-based position of the first input revealing
    fault i. Every fault must be revealed by some input.
    """
    r = np.asarray(ranking)
    f = np.asarray(faults, dtype=bool)
    n = f.shape[0] if f.ndim else 0
    if n == 0 or f.ndim not in (1, 2):
        raise InputError(f"faults must have shape (n,) or (n, m) with n >= 1, got {f.shape}")
    if r.shape != (n,) or not np.array_equal(np.sort(r), np.arange(n)):
        raise InputError(f"ranking must be a permutation of 0..{n - 1}")
    if f.ndim == 1:
        positions = np.flatnonzero(f[r]) + 1.0
    else:
        ranked = f[r]
        if not ranked.any(axis=0).all():
            raise InputError(f"faults {np.flatnonzero(~ranked.any(axis=0)).tolist()} are revealed by no input; "
                             f"APFD is undefined for them")
        positions = ranked.argmax(axis=0) + 1.0
    m = positions.size
    if m == 0:
        raise InputError("no input reveals a fault, so APFD is undefined")
    return float(1.0 - positions.sum() / (n * m) + 1.0 / (2 * n))
