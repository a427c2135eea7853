"""DeepHunter's validity constraint: is a mutant still a plausible version of its seed?

Two rules (DeepHunter, Xie et al. ISSTA 2019):

* **pixel rule** (per image, vectorised over the batch): the mutant ``s'`` of seed ``s`` is valid
  iff ``L0(s, s') < alpha * size(s)`` or ``Linf(s, s') <= beta * 255``. ``L0`` counts the array
  elements (pixel channels) that differ and ``size(s)`` is the number of elements ``H * W * C``,
  as DeepHunter counts with ``np.size``; ``Linf`` is the largest absolute change of one element.
  A mutant may change a few pixels arbitrarily, or every pixel a little, not both.
* **chain rule**: at most one affine transform per chain (``Chain.valid``: geometric links that
  move pixels; a horizontal flip is affine too, a geometric transform at its identity is not).
  Repeated affine transforms compound into frames no camera would produce.

Weather and sensor transforms change most pixels by design (fog greys the whole frame, noise
touches every pixel), so the pixel rule would reject them all. For a chain that contains any link
of ``.kind`` ``"weather"`` or ``"sensor"`` the pixel rule is waived for the whole chain and those
links are judged by their own severity bound instead: valid iff each such link's ``.severity`` (when
it exposes one) is at most ``max_severity`` (1.0 by default: the transform's documented range,
which the transforms package already enforces when the transform is built). The chain rule always
applies.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from deeptest_iot.errors import ConfigError, InputError
from deeptest_iot.tasks.base import per_chain, per_input_chains
from deeptest_iot.transforms import as_chain

__all__ = ["Validity", "check_validity", "is_valid", "pixel_distances", "chain_is_valid",
           "DEFAULT_ALPHA", "DEFAULT_BETA", "WAIVED_KINDS"]

#: DeepHunter's defaults.
DEFAULT_ALPHA = 0.02
DEFAULT_BETA = 0.2
#: Transform kinds judged by their own severity bound instead of the pixel rule.
WAIVED_KINDS = frozenset({"weather", "sensor"})


class Validity(NamedTuple):
    """Per-mutant validity and the reasons behind it, each (N,)."""

    valid: np.ndarray  # bool: the mutant may be kept
    l0: np.ndarray  # int64: elements that changed
    linf: np.ndarray  # int64: largest absolute change, 0..255
    pixel_ok: np.ndarray  # bool: the pixel rule holds (True where waived)
    chain_ok: np.ndarray  # bool: at most one affine link, and weather/sensor links within bounds
    waived: np.ndarray  # bool: the pixel rule was waived (weather or sensor link in the chain)


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return v


def pixel_distances(originals, mutants) -> tuple[np.ndarray, np.ndarray]:
    """``(L0, Linf)`` per mutant: changed elements and the largest absolute change, each (N,) int64.

    ``originals`` is (N, H, W, C) or one (H, W, C) seed shared by every mutant; both uint8.
    """
    o = np.asarray(originals)
    m = np.asarray(mutants)
    if m.ndim != 4:
        raise InputError(f"mutants must be a batch (N, H, W, C), got shape {m.shape}")
    if o.ndim == 3:
        o = o[None]
    if o.shape[1:] != m.shape[1:] or o.shape[0] not in (1, m.shape[0]):
        raise InputError(f"originals {np.asarray(originals).shape} and mutants {m.shape} do not match")
    if o.dtype != np.uint8 or m.dtype != np.uint8:
        raise InputError(f"images must be uint8, got {o.dtype} and {m.dtype}")
    diff = np.abs(o.astype(np.int16) - m.astype(np.int16)).reshape(m.shape[0], -1)
    return np.count_nonzero(diff, axis=1).astype(np.int64), diff.max(axis=1, initial=0).astype(np.int64)


def chain_is_valid(chain, max_severity: float = 1.0) -> tuple[bool, bool]:
    """``(chain_ok, waived)`` for one chain (a transform, a Chain, a list of transforms, or None)."""
    chain = as_chain(chain)
    waived = any(t.kind in WAIVED_KINDS for t in chain)
    within = all(t.severity <= max_severity for t in chain if t.kind in WAIVED_KINDS)
    return chain.valid and within, waived


def check_validity(originals, mutants, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA,
                   chains=None, max_severity: float = 1.0) -> Validity:
    """Validity of each mutant against its seed (not its parent: DeepHunter compares with the seed).

    ``chains`` is None (pixel rule only), one chain for the whole batch, or one chain per mutant.
    """
    alpha = _fraction("alpha", alpha)
    beta = _fraction("beta", beta)
    max_severity = _fraction("max_severity", max_severity)
    l0, linf = pixel_distances(originals, mutants)
    n = l0.shape[0]
    size = int(np.prod(np.asarray(mutants).shape[1:]))
    pixel_ok = (l0 < alpha * size) | (linf <= beta * 255)

    flags = per_chain(per_input_chains(chains, n, "mutant"), lambda c: chain_is_valid(c, max_severity))
    chain_ok = np.array([f[0] for f in flags], dtype=bool).reshape(n)
    waived = np.array([f[1] for f in flags], dtype=bool).reshape(n)
    pixel_ok = pixel_ok | waived
    return Validity(pixel_ok & chain_ok, l0, linf, pixel_ok, chain_ok, waived)


def is_valid(originals, mutants, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA, chains=None,
             max_severity: float = 1.0) -> np.ndarray:
    """(N,) bool: which mutants DeepHunter would keep. See :func:`check_validity` for the reasons."""
    return check_validity(originals, mutants, alpha, beta, chains, max_severity).valid
