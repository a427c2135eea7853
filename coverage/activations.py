"""Check activation batches ({layer: (N, neurons)} in model order) and share per-batch work.

Every criterion of one update reads the same validated arrays and the same per-row minima and
maxima (which double as the NaN/Inf check: NaN and +-Inf propagate through min and max).

A conv layer's neuron is a channel and its value the channel's spatial mean, so the (N, neurons)
arrays no longer hold the feature map's extremes, which the reference NC scales by (DeepXplore's and
DeepTest's code min-max scale the whole map of one input, then average each channel). A batch may
therefore carry, per layer, each input's [min, max] over the layer's whole output: an
:class:`Activations` (what ``ModelUnderTest.run`` returns) has them in ``ranges``. Without them,
the range of a layer is taken from what was given: the full map when a (N, H, W, C) array is
passed, else the row's own values (exact for Dense layers, whose output is their neuron values).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deeptest_iot.errors import ConfigError, InputError


def check_layer_sizes(layer_sizes) -> dict[str, int]:
    """Return layer_sizes as an ordered {name: int}; ConfigError unless names are strings and sizes >= 1."""
    if not isinstance(layer_sizes, Mapping) or not layer_sizes:
        raise ConfigError(f"layer_sizes must be a non-empty dict {{layer_name: neurons}}, got {layer_sizes!r}")
    out: dict[str, int] = {}
    for name, size in layer_sizes.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"layer names must be non-empty strings, got {name!r}")
        try:
            n = int(size)
        except (TypeError, ValueError):
            raise ConfigError(f"layer {name!r}: neuron count must be an integer, got {size!r}") from None
        if n < 1 or n != size:
            raise ConfigError(f"layer {name!r}: neuron count must be a whole number >= 1, got {size!r}")
        out[name] = n
    return out


def as_float(a: np.ndarray) -> np.ndarray:
    """float32/float64 arrays stay as they are (no copy); anything else becomes float64."""
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _as_2d(name: str, value) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "fiub":
        raise InputError(f"activations of layer {name!r} must be numbers, got dtype {a.dtype}")
    if a.ndim == 2:
        return as_float(a)
    if a.ndim > 2:  # a channels-last feature map: a neuron is a channel, its value the spatial mean
        return as_float(a).mean(axis=tuple(range(1, a.ndim - 1)))
    raise InputError(f"activations of layer {name!r} must have shape (N, neurons), got shape {a.shape}")


class Activations(dict):
    """One batch of activations: {layer: (N, neurons) array} in model order, a plain dict to every
    reader (profile, KMNC, NBC, surprise adequacy), plus ``ranges``: {layer: (N, 2) array} holding,
    per input, the [min, max] over every element of that layer's whole output (all positions and
    channels of a conv feature map). Only layers whose output is larger than their neurons (feature
    maps, sequences) have an entry; for the others (Dense) the row's own min and max is the range.

    ``ModelUnderTest.run`` computes both in its one forward pass; ``CoverageTracker.update`` reads
    ``ranges`` for NC. Rebuilding the dict ({k: v[...] ...}) drops ``ranges`` (NC then scales over
    the channel means, as ``nc-means``): pass the object itself, or take inputs with ``rows``.
    """

    def __init__(self, arrays=(), ranges=None):
        super().__init__(arrays)
        self.ranges: dict[str, np.ndarray] = dict(ranges or {})

    def rows(self, start: int, stop: int) -> "Activations":
        """Inputs start..stop-1 (views, no copies), with their ranges."""
        return Activations({k: v[start:stop] for k, v in self.items()},
                           ranges={k: v[start:stop] for k, v in self.ranges.items()})

    def __repr__(self) -> str:
        return f"Activations({dict.__repr__(self)}, ranges={self.ranges!r})"


def _report_non_finite(name: str, a: np.ndarray) -> InputError:
    bad = ~np.isfinite(a)
    rows = np.flatnonzero(bad.any(axis=1))
    n_nan = int(np.isnan(a).sum())
    return InputError(f"activations of layer {name!r} contain {n_nan} NaN and {int(bad.sum()) - n_nan} Inf "
                      f"values (batch rows {rows[:10].tolist()}{' ...' if rows.size > 10 else ''}); "
                      f"the model produced non-finite values, so coverage cannot be measured")


class BatchView:
    """A validated batch: ``arrays[layer]`` (N, n) float, ``rowmin/rowmax[layer]`` (N, 1) over the
    neuron values, ``outmin/outmax[layer]`` (N, 1) over the layer's whole output (the given ranges,
    the full map's extremes, or rowmin/rowmax themselves; see the module docstring), and a cache.

    Criteria put shared intermediate results (above/below the profile, top-k masks) in ``cache``
    so that, say, NBC and SNAC compare with the profile only once per batch.
    """

    def __init__(self, acts, layer_sizes: Mapping[str, int]):
        if not isinstance(acts, Mapping):
            raise InputError(f"activations must be a dict {{layer_name: (N, neurons) array}}, got {type(acts).__name__}")
        missing = [n for n in layer_sizes if n not in acts]
        extra = [n for n in acts if n not in layer_sizes]
        if missing or extra:
            raise InputError(f"activation layers do not match the tracked layers: missing {missing}, "
                             f"unexpected {extra}; tracked layers are {list(layer_sizes)}")
        ranges = getattr(acts, "ranges", None) or {}
        if not isinstance(ranges, Mapping):
            raise InputError(f"activation ranges must be a dict {{layer_name: (N, 2) array}}, got {type(ranges).__name__}")
        extra = [n for n in ranges if n not in layer_sizes]
        if extra:
            raise InputError(f"activation ranges name layers {extra} that are not tracked; tracked layers are "
                             f"{list(layer_sizes)}")
        self.arrays: dict[str, np.ndarray] = {}
        self.rowmin: dict[str, np.ndarray] = {}
        self.rowmax: dict[str, np.ndarray] = {}
        self.outmin: dict[str, np.ndarray] = {}
        self.outmax: dict[str, np.ndarray] = {}
        self.cache: dict = {}
        n_inputs = None
        for name, size in layer_sizes.items():
            raw = np.asarray(acts[name])
            a = _as_2d(name, raw)
            if a.shape[1] != size:
                raise InputError(f"layer {name!r} has {a.shape[1]} neurons in the activations but "
                                 f"{size} in layer_sizes")
            if n_inputs is None:
                n_inputs = a.shape[0]
            elif a.shape[0] != n_inputs:
                raise InputError(f"layer {name!r} has {a.shape[0]} inputs but the first layer has {n_inputs}; "
                                 f"every layer must hold the same batch")
            if a.shape[0]:
                lo = a.min(axis=1, keepdims=True)
                hi = a.max(axis=1, keepdims=True)
                if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
                    raise _report_non_finite(name, a)
                self.rowmin[name], self.rowmax[name] = lo, hi
                self.outmin[name], self.outmax[name] = self._output_range(name, raw, ranges.get(name), lo, hi)
            self.arrays[name] = a
        self.n = int(n_inputs or 0)

    @staticmethod
    def _output_range(name: str, raw: np.ndarray, given, lo: np.ndarray, hi: np.ndarray):
        """(N, 1) min and max of a layer's whole output per input: ``given`` (N, 2) if any, else the
        full map's when ``raw`` is one, else the neuron values' own (``lo``, ``hi``)."""
        n = raw.shape[0]
        if given is not None:
            r = np.asarray(given)
            if r.shape != (n, 2) or r.dtype.kind not in "fiub":
                raise InputError(f"activation range of layer {name!r} must be a numeric (N, 2) array of "
                                 f"[min, max] per input with N = {n}, got shape {r.shape}, dtype {r.dtype}")
            r = as_float(r)
            if not np.isfinite(r).all():
                raise InputError(f"activation range of layer {name!r} contains NaN or Inf values; the model "
                                 f"produced non-finite values, so coverage cannot be measured")
            return r[:, :1], r[:, 1:]
        if raw.ndim > 2:
            axes = tuple(range(1, raw.ndim))
            return (as_float(raw.min(axis=axes)).reshape(n, 1), as_float(raw.max(axis=axes)).reshape(n, 1))
        return lo, hi

    def rows(self, start: int, stop: int) -> "BatchView":
        """The inputs start..stop-1 as a view of their own (no copies, an empty cache)."""
        sub = object.__new__(BatchView)
        sub.arrays = {k: v[start:stop] for k, v in self.arrays.items()}
        sub.rowmin = {k: v[start:stop] for k, v in self.rowmin.items()}
        sub.rowmax = {k: v[start:stop] for k, v in self.rowmax.items()}
        sub.outmin = {k: v[start:stop] for k, v in self.outmin.items()}
        sub.outmax = {k: v[start:stop] for k, v in self.outmax.items()}
        sub.cache = {}
        sub.n = len(range(start, stop)[:self.n])
        return sub
