"""CoverageTracker: several criteria over the same layers, updated batch by batch, mergeable.

``update`` returns what each input newly covered (summed over criteria, counted in batch order)
because that is what coverage-guided search keeps or drops inputs by. Merging is a union of the
covered sets, so it is commutative, associative and equal to one tracker fed every input.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import numpy as np

from deeptest_iot.errors import ConfigError
from deeptest_iot.fileio import atomic_write

from .activations import BatchView, check_layer_sizes
from .criteria import TKNP, Criterion, MaskCriterion, ProfileBounds, make_criterion
from .profile import Profile
from .specs import CriterionSpec, parse_spec, parse_specs

FORMAT = "deeptest-iot-coverage/2"
#: Files of format 1 were written when "nc" scaled over the channel means; they load with their NC
#: state under the name that definition has now, "nc-means".
OLD_FORMATS = {"deeptest-iot-coverage/1": {"nc": "nc-means"}}
CHUNK_ROWS = 64  # inputs per internal step of update(): about 10% faster than whole batches of 256

DEFINITIONS = {
    "nc": "neurons whose value (a conv channel's spatial mean) exceeds t, for some input, once that input's "
          "whole layer output is scaled by (v - min)/(max - min) over every element (DeepXplore/DeepTest code), "
          "/ neurons",
    "nc-means": "neurons with (v - min)/(max - min) > t for some input, min and max over the layer's neuron "
                "values (conv channel means) of that input, / neurons",
    "kmnc": "hit sections of k equal sections of [low, high] per neuron, / (k * neurons)",
    "nbc": "(neurons seen above high + neurons seen below low) / (2 * neurons)",
    "snac": "neurons seen above high / neurons",
    "tknc": "neurons in some input's per-layer top-k, / neurons",
    "tknp": "distinct per-input tuples of per-layer top-k neuron sets (a count)",
}


def _profile_digest(profile: Profile | None) -> str:
    if profile is None:
        return ""
    h = hashlib.sha256()
    for key, arr in sorted(profile.to_arrays().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class CoverageTracker:
    """Holds the state of several criteria over the layers ``layer_sizes`` ({name: neurons}, model order)."""

    def __init__(self, criteria_specs, layer_sizes: Mapping[str, int], profile: Profile | None = None, *,
                 fingerprint: str | None = None):
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.specs = parse_specs(criteria_specs)
        if profile is not None:
            if not isinstance(profile, Profile):
                raise ConfigError(f"profile must be a deeptest_iot.coverage.Profile, got {type(profile).__name__}")
            profile.check(fingerprint, self.layer_sizes)
            profile.check_ready()
            profile = profile.copy()  # a snapshot: KMNC/NBC/SNAC items must keep meaning the same ranges
        self.profile = profile
        self.fingerprint = fingerprint if fingerprint is not None else (profile.fingerprint if profile else None)
        self._profile_digest = _profile_digest(profile)
        bounds = ProfileBounds(profile) if profile is not None else None
        self.criteria: dict[str, Criterion] = {s.name: make_criterion(s, self.layer_sizes, bounds) for s in self.specs}
        self.n_inputs = 0
        #: per-criterion gains of the last update, {name: (N,) int}
        self.last_gains: dict[str, np.ndarray] = {}

    @property
    def names(self) -> list[str]:
        """Canonical criterion names, the keys of coverage() (e.g. "nc:0.75", "kmnc:10", "nbc")."""
        return list(self.criteria)

    @property
    def n_neurons(self) -> int:
        return sum(self.layer_sizes.values())

    def update(self, acts: Mapping) -> np.ndarray:
        """Fold in a batch {layer: (N, neurons)}; return (N,) int64 new items per input, in batch order.

        An item newly covered by several inputs of the batch is credited to the first of them only.
        Raises InputError for NaN/Inf, missing layers or wrong shapes (before changing any state).
        """
        view = BatchView(acts, self.layer_sizes)
        total = np.zeros(view.n, dtype=np.int64)
        self.last_gains = {name: np.zeros(view.n, dtype=np.int64) for name in self.criteria}
        # Inputs are processed in chunks, in order, so the temporaries stay in cache; the gains
        # are the same as for one pass because each chunk sees the state the earlier ones left.
        for start in range(0, view.n, CHUNK_ROWS):
            part = view.rows(start, start + CHUNK_ROWS)
            for name, crit in self.criteria.items():
                crit.update(part, self.last_gains[name][start:start + CHUNK_ROWS])
        for g in self.last_gains.values():
            total += g
        self.n_inputs += view.n
        return total

    def coverage(self) -> dict[str, float | int]:
        """{criterion: fraction covered in [0, 1]}; TKNP gives a count of distinct patterns."""
        return {name: c.coverage() for name, c in self.criteria.items()}

    # -- combining ------------------------------------------------------------------------------

    def _check_compatible(self, other: "CoverageTracker") -> None:
        if not isinstance(other, CoverageTracker):
            raise ConfigError(f"can only merge another CoverageTracker, got {type(other).__name__}")
        if self.names != other.names:
            raise ConfigError(f"cannot merge trackers with different criteria: {self.names} vs {other.names}")
        if self.layer_sizes != other.layer_sizes:
            raise ConfigError("cannot merge trackers over different layers or neuron counts")
        if self.fingerprint != other.fingerprint:
            raise ConfigError(f"cannot merge trackers of different models (fingerprints {self.fingerprint!r} "
                              f"and {other.fingerprint!r})")
        uses_profile = any(s.needs_profile for s in self.specs)
        if uses_profile and self._profile_digest != other._profile_digest:
            raise ConfigError("cannot merge trackers built on different profiles: KMNC/NBC/SNAC items would "
                              "mean different value ranges")

    def merge(self, other: "CoverageTracker") -> "CoverageTracker":
        """Fold ``other`` into this tracker (union of covered items); returns self.

        The result does not depend on order: merge is commutative and associative.
        """
        self._check_compatible(other)
        for name, crit in self.criteria.items():
            crit.merge_from(other.criteria[name])
        self.n_inputs += other.n_inputs
        return self

    def copy(self) -> "CoverageTracker":
        """An independent tracker with the same configuration and state."""
        out = CoverageTracker(self.specs, self.layer_sizes, self.profile, fingerprint=self.fingerprint)
        return out.merge(self)

    # -- reporting ------------------------------------------------------------------------------

    def summary(self) -> dict:
        """JSON-able: totals and, per criterion, the value, covered/total items and a per-layer split."""
        criteria = {}
        for name, crit in self.criteria.items():
            entry = {"definition": DEFINITIONS[crit.spec.kind]}
            if isinstance(crit, TKNP):
                entry.update(patterns=crit.coverage(), per_layer=None)
            else:
                counts = crit.layer_counts()
                entry.update(coverage=crit.coverage(), covered=sum(c for c, _ in counts.values()),
                             total=sum(t for _, t in counts.values()))
                entry["per_layer"] = {
                    layer: {"coverage": c / t, "covered": c, "total": t, **crit.layer_extra(layer)}
                    for layer, (c, t) in counts.items()}
            criteria[name] = entry
        return {
            "inputs": self.n_inputs,
            "neurons": self.n_neurons,
            "layers": [{"name": n, "neurons": s} for n, s in self.layer_sizes.items()],
            "fingerprint": self.fingerprint,
            "profile": None if self.profile is None else {"inputs": self.profile.count,
                                                           "fingerprint": self.profile.fingerprint},
            "criteria": criteria,
        }

    def state_nbytes(self) -> int:
        """Bytes held by the coverage state (bool arrays and TKNP pattern bytes)."""
        total = 0
        for crit in self.criteria.values():
            if isinstance(crit, MaskCriterion):
                total += sum(s.nbytes for s in crit.state.values())
            else:
                total += sum(len(p) for p in crit.patterns)
        return total

    # -- files ----------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the tracker (configuration, profile, state; bool state bit-packed) as .npz, atomically."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FORMAT),
            "criteria": np.array(self.names, dtype=str),
            "layer_names": np.array(list(self.layer_sizes), dtype=str),
            "layer_sizes": np.array(list(self.layer_sizes.values()), dtype=np.int64),
            "fingerprint": np.array("" if self.fingerprint is None else self.fingerprint),
            "has_fingerprint": np.array(self.fingerprint is not None),
            "n_inputs": np.array(self.n_inputs, dtype=np.int64),
            "has_profile": np.array(self.profile is not None),
        }
        if self.profile is not None:
            arrays.update(self.profile.to_arrays(prefix="profile."))
        for i, crit in enumerate(self.criteria.values()):
            st = crit.state_array()
            arrays[f"state{i}"] = st if isinstance(crit, TKNP) else np.packbits(st, axis=None)
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike, fingerprint: str | None = None,
             layer_sizes: Mapping[str, int] | None = None) -> "CoverageTracker":
        """Read a tracker written by save(); with ``fingerprint``/``layer_sizes`` refuse another model's."""
        where = f"coverage tracker file {os.fspath(path)!r}"
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = dict(z)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {where}: {e}") from None
        try:
            fmt = str(arrays["format"])
            if fmt != FORMAT and fmt not in OLD_FORMATS:
                raise ConfigError(f"{where} is not a deeptest-iot coverage file")
            renamed = OLD_FORMATS.get(fmt, {})
            sizes = dict(zip((str(n) for n in arrays["layer_names"]), (int(s) for s in arrays["layer_sizes"])))
            fp = str(arrays["fingerprint"]) if bool(arrays["has_fingerprint"]) else None
            profile = Profile.from_arrays(arrays, prefix="profile.", source=where) if bool(arrays["has_profile"]) else None
            specs = [parse_spec(str(s)) for s in arrays["criteria"]]
            specs = [CriterionSpec(renamed.get(s.kind, s.kind), s.param) for s in specs]
            tracker = cls(specs, sizes, profile, fingerprint=fp)
            for i, crit in enumerate(tracker.criteria.values()):
                st = arrays[f"state{i}"]
                if isinstance(crit, TKNP):
                    crit.load_state_array(st)
                else:
                    shape = crit.state_array().shape
                    bits = np.unpackbits(st, count=shape[0] * shape[1]).astype(bool)
                    crit.load_state_array(bits.reshape(shape))
            tracker.n_inputs = int(arrays["n_inputs"])
        except KeyError as e:
            raise ConfigError(f"{where} is damaged or not a coverage file (missing {e.args[0]!r})") from None
        if fingerprint is not None and fp != fingerprint:
            raise ConfigError(f"{where} was made for another model (fingerprint {fp!r}, expected {fingerprint!r})")
        if layer_sizes is not None and check_layer_sizes(layer_sizes) != tracker.layer_sizes:
            raise ConfigError(f"{where} tracks other layers than the model's: {list(tracker.layer_sizes.items())[:6]}")
        return tracker
