"""Surprise adequacy (Kim, Feldt, Yoo, ICSE 2019): LSA, DSA, MDSA and surprise coverage.

Traces are (N, d) arrays, or activation dicts {layer: (N, neurons)} whose layers are put side by
side in order. For classifiers pass the training traces' classes (Kim et al. used the training
labels) at fit time and the test inputs' predicted classes at scoring time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from deeptest_iot.errors import ConfigError, InputError

from .kde import GaussianKDE
from .whiten import Whitener

MIN_VARIANCE = 1e-5
_CHUNK_CELLS = 2_000_000


def as_traces(acts, layers: Sequence[str] | None = None, what: str = "traces") -> np.ndarray:
    """(N, d) float64 from an array or an activation dict (selected ``layers`` side by side); finite only."""
    if isinstance(acts, Mapping):
        names = list(acts) if layers is None else list(layers)
        missing = [n for n in names if n not in acts]
        if missing:
            raise InputError(f"{what}: layers {missing} are missing from the activations (have {list(acts)})")
        parts = [np.asarray(acts[n], dtype=np.float64).reshape(np.shape(acts[n])[0], -1) for n in names]
        x = np.concatenate(parts, axis=1) if parts else np.zeros((0, 0))
    else:
        x = np.asarray(acts, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise InputError(f"{what} must be (N, neurons) or an activation dict, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(f"{what} contain NaN or Inf values; surprise adequacy needs finite activations")
    return x


def _as_classes(classes, n: int, what: str) -> np.ndarray:
    c = np.asarray(classes)
    if c.shape != (n,):
        raise InputError(f"{what}: need one class per trace, shape ({n},), got shape {c.shape}")
    return c


def _overflow_is_inf(values: np.ndarray) -> np.ndarray:
    """Traces so far out that float64 overflows (inf - inf) are maximally surprising: +inf, not NaN."""
    values[np.isnan(values)] = np.inf
    return values


def _varying(x: np.ndarray, min_variance: float, what: str) -> np.ndarray:
    """Indices of neurons with variance >= min_variance in x (at least 2 traces needed)."""
    if x.shape[0] < 2:
        raise ConfigError(f"{what}: needs at least 2 training traces to estimate a spread, got {x.shape[0]}")
    keep = np.flatnonzero(x.var(axis=0) >= min_variance)
    if keep.size == 0:
        raise ConfigError(f"{what}: every neuron has variance < {min_variance:g} on the training traces, so "
                          f"nothing is left to estimate from; use other layers or more varied training inputs")
    return keep


class _PerClass:
    """Fit one model per class (or one for all when no classes); route test traces to their model."""

    def __init__(self, train, classes, layers, what):
        self.what, self.layers = what, layers
        x = as_traces(train, layers, f"{what} training traces")
        if x.shape[0] == 0:
            raise InputError(f"{what}: no training traces given")
        self.dim = x.shape[1]
        self.by_class = classes is not None
        if self.by_class:
            c = _as_classes(classes, x.shape[0], f"{what} training classes")
            self.groups = {cls: x[c == cls] for cls in np.unique(c).tolist()}
        else:
            self.groups = {None: x}

    def test(self, test, classes) -> tuple[np.ndarray, dict]:
        x = as_traces(test, self.layers, f"{self.what} test traces")
        if x.shape[1] != self.dim:
            raise InputError(f"{self.what}: test traces have {x.shape[1]} neurons, training traces {self.dim}")
        if not self.by_class:
            if classes is not None:
                raise InputError(f"{self.what} was fitted without classes; do not pass test classes")
            return x, {None: np.arange(x.shape[0])}
        if classes is None:
            raise InputError(f"{self.what} was fitted per class: pass the test inputs' predicted classes")
        c = _as_classes(classes, x.shape[0], f"{self.what} test classes")
        rows = {cls: np.flatnonzero(c == cls) for cls in np.unique(c).tolist()}
        unknown = [cls for cls in rows if cls not in self.groups]
        if unknown:
            raise InputError(f"{self.what}: no training traces of predicted classes {unknown}; "
                             f"training classes are {list(self.groups)}")
        return x, rows


class LSA(_PerClass):
    """Likelihood-based surprise: LSA(x) = -log KDE(a(x)), the KDE fitted on the training traces
    (of x's predicted class for classifiers). Neurons with variance < ``min_variance`` in the
    fitted traces are dropped (per class). Values can be negative where the density exceeds 1."""

    def __init__(self, train, classes=None, *, layers=None, min_variance: float = MIN_VARIANCE,
                 bandwidth: float | None = None):
        super().__init__(train, classes, layers, "LSA")
        self.kept, self.kdes = {}, {}
        for cls, x in self.groups.items():
            what = "LSA" if cls is None else f"LSA (class {cls!r})"
            self.kept[cls] = _varying(x, min_variance, what)
            self.kdes[cls] = GaussianKDE(x[:, self.kept[cls]], what, bandwidth)

    def __call__(self, test, classes=None) -> np.ndarray:
        x, rows = self.test(test, classes)
        out = np.empty(x.shape[0])
        for cls, idx in rows.items():  # a loop over classes
            with np.errstate(over="ignore", invalid="ignore"):
                out[idx] = -self.kdes[cls].logpdf(x[np.ix_(idx, self.kept[cls])])
        return _overflow_is_inf(out)


class MDSA(_PerClass):
    """Mahalanobis-distance surprise: sqrt((a(x) - mu)^T Sigma^-1 (a(x) - mu)) with mu, Sigma of the
    training traces (of the predicted class for classifiers); low-variance neurons dropped and a
    singular Sigma handled as a pseudo-inverse (whiten.py)."""

    def __init__(self, train, classes=None, *, layers=None, min_variance: float = MIN_VARIANCE):
        super().__init__(train, classes, layers, "MDSA")
        self.kept, self.whiteners = {}, {}
        for cls, x in self.groups.items():
            what = "MDSA" if cls is None else f"MDSA (class {cls!r})"
            self.kept[cls] = _varying(x, min_variance, what)
            self.whiteners[cls] = Whitener(x[:, self.kept[cls]], what)

    def __call__(self, test, classes=None) -> np.ndarray:
        x, rows = self.test(test, classes)
        out = np.empty(x.shape[0])
        for cls, idx in rows.items():
            with np.errstate(over="ignore", invalid="ignore"):
                z = self.whiteners[cls](x[np.ix_(idx, self.kept[cls])])
                out[idx] = np.sqrt(np.einsum("ij,ij->i", z, z))
        return _overflow_is_inf(out)


def _nearest(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Index into ``ref`` of each row of ``x``'s nearest neighbour (Euclidean), in chunks."""
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    out = np.empty(x.shape[0], dtype=np.int64)
    step = max(1, _CHUNK_CELLS // max(1, ref.shape[0]))
    for i in range(0, x.shape[0], step):
        c = x[i:i + step]
        out[i:i + step] = np.argmin(ref_sq[None, :] - 2.0 * (c @ ref.T), axis=1)  # |c|^2 is constant per row
    return out


class DSA(_PerClass):
    """Distance-based surprise (classifiers): dist(a(x), x_a) / dist(x_a, x_b), x_a the nearest
    training trace of x's predicted class, x_b the training trace of another class nearest to
    x_a. Distances are Euclidean on all neurons (no variance filter, as in Kim et al.).
    0 when a(x) equals x_a; +inf when x_a has an identical trace in another class."""

    def __init__(self, train, classes, *, layers=None):
        if classes is None:
            raise ConfigError("DSA needs the training traces' classes (it is defined for classifiers)")
        super().__init__(train, classes, layers, "DSA")
        if len(self.groups) < 2:
            raise ConfigError("DSA needs training traces of at least two classes")
        self._dist_b = {cls: np.full(x.shape[0], -1.0) for cls, x in self.groups.items()}
        self._others = {cls: np.concatenate([x for c, x in self.groups.items() if c != cls]) for cls in self.groups}

    def __call__(self, test, classes=None) -> np.ndarray:
        x, rows = self.test(test, classes)
        out = np.empty(x.shape[0])
        for cls, idx in rows.items():
            same, other, dist_b = self.groups[cls], self._others[cls], self._dist_b[cls]
            with np.errstate(over="ignore", invalid="ignore"):
                xa = _nearest(x[idx], same)
                dist_a = np.linalg.norm(x[idx] - same[xa], axis=1)  # exact distance to the chosen neighbour
            todo = np.unique(xa[dist_b[xa] < 0])
            if todo.size:  # distance from x_a to its nearest other-class trace, once per x_a
                xb = _nearest(same[todo], other)
                dist_b[todo] = np.linalg.norm(same[todo] - other[xb], axis=1)
            db = dist_b[xa]
            with np.errstate(divide="ignore", invalid="ignore"):
                out[idx] = np.where(dist_a == 0, 0.0, dist_a / db)
        return _overflow_is_inf(out)


def surprise_coverage(values, upper: float, n_buckets: int = 10, lower: float = 0.0) -> float:
    """Share of ``n_buckets`` equal buckets on [lower, upper] that the surprise values fall in.

    A value equal to ``upper`` counts in the last bucket; values outside [lower, upper] (and NaN)
    count in none. ``lower`` is 0 as in the design; pass e.g. the training minimum for LSA,
    which can be negative.
    """
    if not isinstance(n_buckets, (int, np.integer)) or n_buckets < 1:
        raise ConfigError(f"surprise coverage needs n_buckets >= 1, got {n_buckets!r}")
    if not (np.isfinite(upper) and np.isfinite(lower) and upper > lower):
        raise ConfigError(f"surprise coverage needs finite lower < upper, got [{lower}, {upper}]")
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[(v >= lower) & (v <= upper)]
    idx = np.minimum(((v - lower) / (upper - lower) * n_buckets).astype(np.int64), n_buckets - 1)
    return np.unique(idx).size / n_buckets
