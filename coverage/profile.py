"""Per-neuron training profile (low = min, high = max, mean, std) from one streaming pass.

Batches are folded in with the parallel form of Welford's algorithm (Chan, Golub and LeVeque):
each batch contributes its count, mean and sum of squared deviations, so there is no per-sample
loop and two partial profiles merge exactly. ``std`` is the population standard deviation
(ddof = 0). Saved as .npz with the layer names, neuron counts and the model fingerprint, and
refused for a model it was not made for.
"""

from __future__ import annotations

import json

import os
from collections.abc import Iterable, Mapping

import numpy as np

from deeptest_iot.errors import ConfigError, InputError
from deeptest_iot.fileio import atomic_write

from .activations import BatchView, check_layer_sizes

FORMAT = "deeptest-iot-profile/1"


def profile_model(mut, frames, batch_size: int = 64) -> "Profile":
    """Profile a model under test (``mut.run``, ``mut.layer_sizes``, ``mut.fingerprint``) on training
    frames (N, H, W, 3), one forward pass per batch of ``batch_size`` frames."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    n = len(frames)
    if n == 0:
        raise InputError("no training frames were given, so there is nothing to profile")
    batches = (mut.run(frames[i:i + batch_size]).activations for i in range(0, n, batch_size))
    prof = Profile.from_batches(batches, fingerprint=mut.fingerprint, layer_sizes=mut.layer_sizes)
    card = getattr(mut, "card", None)
    prof.inputs = card.preprocessing() if card is not None else None
    return prof


def check_fingerprint(fingerprint) -> str:
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ConfigError(f"a profile needs the model fingerprint (a non-empty string, e.g. mut.fingerprint), "
                          f"got {fingerprint!r}")
    return fingerprint


class Profile:
    """Per-layer arrays ``low``, ``high``, ``mean``, ``std`` (float64, one value per neuron) and ``count``."""

    def __init__(self, layer_sizes: Mapping[str, int], fingerprint: str, inputs: Mapping | None = None):
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.fingerprint = check_fingerprint(fingerprint)
        # How frames became network input when the profile was made (the model card's preprocessing),
        # so that a campaign can tell a profile made under another card; None: not recorded.
        self.inputs = dict(inputs) if inputs is not None else None
        self.count = 0
        self.low = {n: np.full(s, np.inf) for n, s in self.layer_sizes.items()}
        self.high = {n: np.full(s, -np.inf) for n, s in self.layer_sizes.items()}
        self.mean = {n: np.zeros(s) for n, s in self.layer_sizes.items()}
        self._m2 = {n: np.zeros(s) for n, s in self.layer_sizes.items()}

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def from_batches(cls, batches: Iterable[Mapping], fingerprint: str, layer_sizes: Mapping[str, int] | None = None
                     ) -> "Profile":
        """One pass over activation batches {layer: (N, neurons)}; the first batch fixes the layers
        unless ``layer_sizes`` is given."""
        check_fingerprint(fingerprint)
        prof = None if layer_sizes is None else cls(layer_sizes, fingerprint)
        for acts in batches:
            if prof is None:
                if not isinstance(acts, Mapping) or not acts:
                    raise InputError("profile batches must be non-empty dicts {layer_name: (N, neurons) array}")
                bad = [k for k, v in acts.items() if np.ndim(v) < 2]
                if bad:
                    raise InputError(f"activations of layers {bad} must have shape (N, neurons)")
                prof = cls({k: np.shape(v)[-1] for k, v in acts.items()}, fingerprint)
            prof.update(acts)
        if prof is None or prof.count == 0:
            raise InputError("no training activations were given, so there is nothing to profile")
        return prof

    def update(self, acts: Mapping) -> "Profile":
        """Fold one batch into the running statistics (vectorised batched Welford)."""
        view = BatchView(acts, self.layer_sizes)
        nb = view.n
        if nb == 0:
            return self
        n_a, n = self.count, self.count + nb
        for name, a in view.arrays.items():
            mean_b = a.mean(axis=0, dtype=np.float64)
            dev = a - mean_b  # float64 because mean_b is
            m2_b = np.einsum("ij,ij->j", dev, dev)
            delta = mean_b - self.mean[name]
            self.mean[name] += delta * (nb / n)
            self._m2[name] += m2_b + delta * delta * (n_a * nb / n)
            np.minimum(self.low[name], a.min(axis=0), out=self.low[name])
            np.maximum(self.high[name], a.max(axis=0), out=self.high[name])
        self.count = n
        return self

    def merge(self, other: "Profile") -> "Profile":
        """A new profile equal (up to rounding) to one pass over both profiles' inputs."""
        self.check(other.fingerprint, other.layer_sizes)
        out = Profile(self.layer_sizes, self.fingerprint, self.inputs if self.inputs == other.inputs else None)
        n_a, n_b = self.count, other.count
        n = n_a + n_b
        out.count = n
        for name in self.layer_sizes:
            out.low[name] = np.minimum(self.low[name], other.low[name])
            out.high[name] = np.maximum(self.high[name], other.high[name])
            if n == 0:
                continue
            delta = other.mean[name] - self.mean[name]
            out.mean[name] = self.mean[name] + delta * (n_b / n)
            out._m2[name] = self._m2[name] + other._m2[name] + delta * delta * (n_a * n_b / n)
        return out

    def copy(self) -> "Profile":
        """An independent copy (trackers keep one, so later updates of this profile do not leak in)."""
        return Profile.from_arrays(self.to_arrays())

    # -- reading --------------------------------------------------------------------------------

    @property
    def std(self) -> dict[str, np.ndarray]:
        """Population standard deviation per neuron (0 before any input)."""
        return {n: np.sqrt(m2 / self.count) if self.count else np.zeros_like(m2) for n, m2 in self._m2.items()}

    @property
    def n_neurons(self) -> int:
        return sum(self.layer_sizes.values())

    def check(self, fingerprint: str | None = None, layer_sizes: Mapping[str, int] | None = None) -> None:
        """Raise ConfigError unless this profile was made for that model fingerprint and those layers."""
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise ConfigError(f"the profile was made for another model (profile fingerprint "
                              f"{self.fingerprint[:16]}..., model fingerprint {str(fingerprint)[:16]}...); "
                              f"profile this model's training data again")
        if layer_sizes is not None:
            want = check_layer_sizes(layer_sizes)
            if dict(want) != dict(self.layer_sizes):
                diff = sorted(set(want.items()) ^ set(self.layer_sizes.items()))
                raise ConfigError(f"the profile's layers do not match the model's layers (differences in "
                                  f"(layer, neurons): {diff[:6]}{' ...' if len(diff) > 6 else ''}); it was made "
                                  f"for another model or another layer selection, profile again")

    def check_ready(self) -> None:
        if self.count == 0:
            raise ConfigError("the profile holds no training inputs yet; update it with training activations first")

    def summary(self) -> dict:
        """JSON-able description: fingerprint, count and per-layer ranges."""
        return {"fingerprint": self.fingerprint, "inputs": self.count,
                "layers": {n: {"neurons": s,
                               "low_min": float(self.low[n].min()) if self.count else None,
                               "high_max": float(self.high[n].max()) if self.count else None}
                           for n, s in self.layer_sizes.items()}}

    # -- files ----------------------------------------------------------------------------------

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Flat arrays (layers concatenated in order) for an .npz file; also used by tracker files."""
        names = list(self.layer_sizes)
        return {
            prefix + "format": np.array(FORMAT),
            prefix + "fingerprint": np.array(self.fingerprint),
            prefix + "layer_names": np.array(names, dtype=str),
            prefix + "layer_sizes": np.array([self.layer_sizes[n] for n in names], dtype=np.int64),
            prefix + "count": np.array(self.count, dtype=np.int64),
            prefix + "low": np.concatenate([self.low[n] for n in names]),
            prefix + "high": np.concatenate([self.high[n] for n in names]),
            prefix + "mean": np.concatenate([self.mean[n] for n in names]),
            prefix + "m2": np.concatenate([self._m2[n] for n in names]),
            **({prefix + "inputs": np.array(json.dumps(self.inputs, sort_keys=True))} if self.inputs is not None else {}),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "", source: str = "profile") -> "Profile":
        try:
            if str(arrays[prefix + "format"]) != FORMAT:
                raise ConfigError(f"{source} is not a deeptest-iot profile (format {str(arrays[prefix + 'format'])!r})")
            names = [str(n) for n in arrays[prefix + "layer_names"]]
            sizes = [int(s) for s in arrays[prefix + "layer_sizes"]]
            inputs = json.loads(str(arrays[prefix + "inputs"])) if prefix + "inputs" in arrays else None
            prof = cls(dict(zip(names, sizes)), str(arrays[prefix + "fingerprint"]), inputs)
            prof.count = int(arrays[prefix + "count"])
            bounds = np.cumsum([0] + sizes)
            for key, store in (("low", prof.low), ("high", prof.high), ("mean", prof.mean), ("m2", prof._m2)):
                flat = np.asarray(arrays[prefix + key], dtype=np.float64)
                if flat.shape != (bounds[-1],):
                    raise ConfigError(f"{source} is damaged: {key} has shape {flat.shape}, expected ({bounds[-1]},)")
                for i, n in enumerate(names):
                    store[n] = flat[bounds[i]:bounds[i + 1]].copy()
        except KeyError as e:
            raise ConfigError(f"{source} is not a deeptest-iot profile (missing {e.args[0]!r})") from None
        return prof

    def save(self, path: str | os.PathLike) -> None:
        """Write an .npz file atomically (the name is used exactly as given)."""
        arrays = self.to_arrays()
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike, fingerprint: str | None = None,
             layer_sizes: Mapping[str, int] | None = None) -> "Profile":
        """Read a profile; with ``fingerprint``/``layer_sizes`` refuse one made for another model."""
        try:
            with np.load(path, allow_pickle=False) as z:
                prof = cls.from_arrays(dict(z), source=f"profile file {os.fspath(path)!r}")
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read profile file {os.fspath(path)!r}: {e}") from None
        prof.check(fingerprint, layer_sizes)
        return prof
