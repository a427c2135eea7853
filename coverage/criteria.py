"""The six criteria as state + vectorised update: NC, KMNC, NBC, SNAC, TKNC, TKNP.

Each criterion owns boolean "covered" arrays per layer (TKNP: a set of seen patterns). An update
marks what the batch covered and adds, to each input's gain, the items that input covered first
(in batch order). Definitions follow the literature as docs/design.md fixes them (NC:
docs/coverage-nc.md); every edge convention is written next to the code that implements it.
"""

from __future__ import annotations

import numpy as np

from deeptest_iot.errors import ConfigError

from .activations import BatchView
from .profile import Profile
from .specs import CriterionSpec
from .topk import topk_indices, topk_mask


def add_first_hits(hit: np.ndarray, covered: np.ndarray, gains: np.ndarray) -> None:
    """Mark columns of ``hit`` (N, n) that are not yet ``covered`` (n,); credit each to its first row."""
    cand = np.logical_or.reduce(hit, axis=0)
    cand &= ~covered
    cols = np.flatnonzero(cand)
    if cols.size:
        rows = hit[:, cols].argmax(axis=0)  # first True row of each newly covered column
        covered[cols] = True
        gains += np.bincount(rows, minlength=gains.size)


def first_positions(keys: np.ndarray, positions: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``keys`` (< n_keys) and, for each, its smallest position (``positions`` ascending).

    Few keys (the usual case once a campaign is warm): a small stable sort. Many keys (the first
    batches): a scatter-min into a dense array, linear time instead of a sort of millions.
    """
    if keys.size <= 8192 or keys.size * 8 < n_keys:
        items, idx = np.unique(keys, return_index=True)  # return_index: first occurrences
        return items, positions[idx]
    first = np.full(n_keys, np.iinfo(np.int64).max)
    np.minimum.at(first, keys, positions)
    items = np.flatnonzero(first != np.iinfo(np.int64).max)
    return items, first[items]


class ProfileBounds:
    """The profile's low/high per layer, in the activations' dtype when that is exact (fast compares)."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self._cache: dict = {}

    def get(self, layer: str, dtype) -> tuple[np.ndarray, np.ndarray]:
        key = (layer, np.dtype(dtype))
        if key not in self._cache:
            low, high = self.profile.low[layer], self.profile.high[layer]
            lo_c, hi_c = low.astype(dtype), high.astype(dtype)
            exact = np.array_equal(lo_c, low) and np.array_equal(hi_c, high)
            self._cache[key] = (lo_c, hi_c) if exact else (low, high)
        return self._cache[key]

    def outside(self, view: BatchView, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(above, below) masks of a layer: value > high, value < low; computed once per batch."""
        key = ("outside", layer)
        if key not in view.cache:
            a = view.arrays[layer]
            low, high = self.get(layer, a.dtype)
            view.cache[key] = (a > high, a < low)
        return view.cache[key]


def cached_topk(view: BatchView, layer: str, k: int) -> np.ndarray:
    key = ("topk", layer, k)
    if key not in view.cache:
        view.cache[key] = topk_mask(view.arrays[layer], k)
    return view.cache[key]


class Criterion:
    """Common shape: ``update(view, gains)``, counts per layer, ``merge_from``, state for files."""

    def __init__(self, spec: CriterionSpec, layer_sizes: dict[str, int], bounds: ProfileBounds | None):
        self.spec = spec
        self.layer_sizes = layer_sizes
        self.bounds = bounds
        if spec.needs_profile and bounds is None:
            raise ConfigError(f"coverage criterion {spec.name!r} needs a training profile (per-neuron low/high): "
                              f"build one with Profile.from_batches(training_activations, fingerprint=...) "
                              f"and pass CoverageTracker(..., profile=profile)")

    @property
    def name(self) -> str:
        return self.spec.name


class MaskCriterion(Criterion):
    """A criterion whose items are (row, neuron) cells of a bool array ``rows x neurons`` per layer."""

    rows = 1  # rows of the boolean state per neuron: NC/SNAC/TKNC 1, NBC 2 (upper, lower), KMNC k
    row_names: tuple[str, ...] = ()

    def __init__(self, spec, layer_sizes, bounds):
        super().__init__(spec, layer_sizes, bounds)
        self.state = {n: np.zeros((self.rows, s), dtype=bool) for n, s in layer_sizes.items()}

    def layer_counts(self) -> dict[str, tuple[int, int]]:
        """{layer: (covered items, total items)}."""
        return {n: (int(np.count_nonzero(st)), st.size) for n, st in self.state.items()}

    def coverage(self) -> float:
        covered = sum(c for c, _ in self.layer_counts().values())
        total = sum(t for _, t in self.layer_counts().values())
        return covered / total

    def layer_extra(self, layer: str) -> dict:
        return {rn: int(np.count_nonzero(self.state[layer][i])) for i, rn in enumerate(self.row_names)}

    def merge_from(self, other: "MaskCriterion") -> None:
        for n in self.state:
            self.state[n] |= other.state[n]

    def state_array(self) -> np.ndarray:
        """All layers side by side: (rows, total neurons) bool."""
        return np.concatenate([self.state[n] for n in self.layer_sizes], axis=1)

    def load_state_array(self, arr: np.ndarray) -> None:
        bounds = np.cumsum([0] + list(self.layer_sizes.values()))
        for i, n in enumerate(self.layer_sizes):
            self.state[n][...] = arr[:, bounds[i]:bounds[i + 1]]


def scaled_above(a: np.ndarray, lo: np.ndarray, hi: np.ndarray, t: float) -> np.ndarray:
    """(a - lo) / (hi - lo) > t, row by row (``lo``, ``hi``: (N, 1)); a row with hi == lo scales to
    0 everywhere (DeepTest's code returns zeros; DeepXplore's divides 0 by 0, NaN, which is never > t
    either). In the activations' precision; a range that overflows it is done in float64."""
    with np.errstate(over="ignore"):
        span = hi - lo
    if not np.isfinite(span).all():  # the range overflows float32: this layer in float64
        a, lo = a.astype(np.float64), lo.astype(np.float64)
        span = hi.astype(np.float64) - lo
    span = np.where(span == 0, np.inf, span)  # constant output: (v - min) / inf = 0, never > t
    scaled = a - lo
    scaled /= span
    return scaled > t


class NC(MaskCriterion):
    """Neuron coverage exactly as DeepXplore's and DeepTest's code compute it: for one input and one
    layer, min-max scale the layer's WHOLE output, v' = (v - min) / (max - min) with min and max over
    every element (all positions and channels of a conv feature map; all zeros when max == min),
    THEN take each neuron's value (a channel's spatial mean of v'; a Dense unit's v'); the neuron is
    covered when that value > t for some input.

    The scaling is affine per input, so mean_c(v') = (mean_c(v) - min) / (max - min): the model's
    one forward pass emits the channel means and, per input and layer, the map's [min, max]
    (``Activations.ranges``), and this criterion scales the means by that range. For Dense layers
    the range is the units' own min and max (the same thing). Without ranges (a plain dict of
    channel means) the range falls back to the given values', which is ``nc-means``; pass full
    (N, H, W, C) maps or an ``Activations`` to get the reference. Rounding: the means are float32
    means of the unscaled map, so a neuron within float32 rounding of ``t`` may differ from a
    float32 computation in the reference order.
    """

    def update(self, view: BatchView, gains: np.ndarray) -> None:
        t = self.spec.param
        for name, a in view.arrays.items():
            hit = scaled_above(a, view.outmin[name], view.outmax[name], t)
            add_first_hits(hit, self.state[name][0], gains)


class NCMeans(MaskCriterion):
    """``nc-means``: neuron coverage with the min-max scaling over the layer's neuron VALUES of one
    input, v' = (v - min) / (max - min) with v the channel means of a conv map (average first, then
    scale); covered when v' > t for some input. This is what deeptest-iot called ``nc`` before it
    followed the reference code; it differs on conv layers only (on a ReLU Dave-orig trained on real
    frames it covered dozens more conv neurons at t = 0.2, because the channel means span a narrower
    range than the map). Kept for comparison with results of earlier versions."""

    def update(self, view: BatchView, gains: np.ndarray) -> None:
        t = self.spec.param
        for name, a in view.arrays.items():
            hit = scaled_above(a, view.rowmin[name], view.rowmax[name], t)
            add_first_hits(hit, self.state[name][0], gains)


class NBC(MaskCriterion):
    """Neuron boundary coverage: item "upper" when a value > high was seen, "lower" when < low.
    A value equal to high or low is inside the range and counts for neither."""

    rows = 2
    row_names = ("upper", "lower")

    def update(self, view: BatchView, gains: np.ndarray) -> None:
        for name in view.arrays:
            above, below = self.bounds.outside(view, name)
            add_first_hits(above, self.state[name][0], gains)
            add_first_hits(below, self.state[name][1], gains)


class SNAC(MaskCriterion):
    """Strong neuron activation coverage: neurons seen with a value > high, / neurons."""

    row_names = ("upper",)

    def update(self, view: BatchView, gains: np.ndarray) -> None:
        for name in view.arrays:
            above, _ = self.bounds.outside(view, name)
            add_first_hits(above, self.state[name][0], gains)


class TKNC(MaskCriterion):
    """Top-k neuron coverage: union over inputs and layers of each layer's top-k neurons, / neurons.
    Ties at the k-th place go to the lower neuron index; k >= layer size selects the whole layer."""

    def update(self, view: BatchView, gains: np.ndarray) -> None:
        for name in view.arrays:
            add_first_hits(cached_topk(view, name, self.spec.param), self.state[name][0], gains)


class KMNC(MaskCriterion):
    """k-multisection neuron coverage: [low, high] split into k equal sections; section
    i = floor((v - low) * k / (high - low)), a value equal to high in the last section (k - 1);
    values outside [low, high] count for no section. Neurons with low == high (e.g. a ReLU
    never active in training) have k zero-width sections: a value equal to them counts in the
    last section (it equals high).
    Section indices are computed in the activations' precision (float32 for float32 inputs)."""

    def __init__(self, spec, layer_sizes, bounds):
        self.rows = spec.param
        super().__init__(spec, layer_sizes, bounds)
        too_big = [n for n, s in layer_sizes.items() if s * self.rows >= 2 ** 31]
        if too_big:
            raise ConfigError(f"{spec.name} on layers {too_big} needs 2**31 or more cells per layer; use a smaller k")
        # Stored neuron-major, (n, k) C-contiguous, so one input's cells lie in increasing memory
        # order (a cache-friendly gather); ``state[layer]`` is its (k, n) transposed view.
        self._cells = {n: np.zeros((s, self.rows), dtype=bool) for n, s in layer_sizes.items()}
        self.state = {n: c.T for n, c in self._cells.items()}
        self._sections: dict = {}

    def _section_params(self, layer: str, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (layer, np.dtype(dtype))
        if key not in self._sections:
            prof = self.bounds.profile
            low, high = prof.low[layer].astype(dtype), prof.high[layer].astype(dtype)
            width = high - low
            zero = width <= 0
            with np.errstate(divide="ignore", over="ignore"):
                scale = (self.rows / np.where(zero, 1, width)).astype(dtype)
            zero |= ~np.isfinite(scale)  # a range too narrow for the precision: treated as zero-width
            scale[zero] = 0
            # a zero-width neuron's only in-range value (== low == high) gives x = 0; its column
            # base points at its last section, where a value equal to high belongs
            colbase = (np.arange(low.size, dtype=np.int32) * np.int32(self.rows)
                       + np.where(zero, self.rows - 1, 0).astype(np.int32))
            self._sections[key] = (low, scale, colbase)
        return self._sections[key]

    def update(self, view: BatchView, gains: np.ndarray) -> None:
        k = self.rows
        for name, a in view.arrays.items():
            n = a.shape[1]
            start, scale, colbase = self._section_params(name, a.dtype)
            above, below = self.bounds.outside(view, name)
            with np.errstate(over="ignore", invalid="ignore"):
                x = a - start  # in range: finite, and x * scale in [0, k]; out of range: anything,
                x *= scale  # even inf * 0 = NaN, giving a junk key that take(mode="clip") keeps
                np.clip(x, 0, k - 1, out=x)  # in bounds and the above/below masks discard
                key = x.astype(np.int32)
            del x  # keep the peak memory of an update down
            key += colbase  # flat index neuron * k + section into the (n, k) cells
            state = self._cells[name].reshape(-1)  # a view: the cells are C-contiguous
            seen = np.take(state, key, mode="clip")
            seen |= above
            seen |= below  # values outside [low, high] hit no section
            if not seen.all():
                where = np.flatnonzero(~seen)  # flat positions row * n + neuron of unseen cells, ascending
                items, first = first_positions(key.reshape(-1)[where], where, state.size)
                state[items] = True
                gains += np.bincount(first // n, minlength=gains.size)


class TKNP(Criterion):
    """Top-k neuron patterns: the number of distinct per-input tuples (layer 1 top-k set, ...,
    layer L top-k set). A pattern is stored as the bytes of its sorted global neuron indices
    (int32), so merging two trackers is a set union."""

    def __init__(self, spec, layer_sizes, bounds):
        super().__init__(spec, layer_sizes, bounds)
        self.patterns: set[bytes] = set()
        self._offsets = dict(zip(layer_sizes, np.cumsum([0] + list(layer_sizes.values()))[:-1].tolist()))
        self.width = sum(min(spec.param, s) for s in layer_sizes.values())  # indices per pattern

    def update(self, view: BatchView, gains: np.ndarray) -> None:
        k = self.spec.param
        parts = [topk_indices(cached_topk(view, n, k), k) + np.int32(self._offsets[n]) for n in view.arrays]
        rows = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.int32)
        seen = self.patterns
        for i, row in enumerate(rows):  # a loop over inputs (set lookups), not over neurons
            p = row.tobytes()
            if p not in seen:
                seen.add(p)
                gains[i] += 1

    def coverage(self) -> int:
        return len(self.patterns)

    def merge_from(self, other: "TKNP") -> None:
        self.patterns |= other.patterns

    def state_array(self) -> np.ndarray:
        """(patterns, width) int32, sorted so the same state always gives the same file."""
        if not self.patterns:
            return np.zeros((0, self.width), dtype=np.int32)
        arr = np.frombuffer(b"".join(sorted(self.patterns)), dtype=np.int32)
        return arr.reshape(-1, self.width)

    def load_state_array(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=np.int32)
        if arr.ndim != 2 or arr.shape[1] != self.width:
            raise ConfigError(f"tracker file is damaged: {self.name} patterns have shape {arr.shape}, "
                              f"expected (n, {self.width})")
        self.patterns = {r.tobytes() for r in arr}


CRITERIA = {"nc": NC, "nc-means": NCMeans, "kmnc": KMNC, "nbc": NBC, "snac": SNAC, "tknc": TKNC, "tknp": TKNP}


def make_criterion(spec: CriterionSpec, layer_sizes: dict[str, int], bounds: ProfileBounds | None) -> Criterion:
    return CRITERIA[spec.kind](spec, layer_sizes, bounds)
