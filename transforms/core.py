"""The transform value and its registry: named parameters with ranges, severity, validation, JSON.

A ``Transform`` is an immutable value (name + parameters). What it does to pixels lives in a
``TransformSpec`` registered under its name by the photometric/geometric/weather/sensor modules.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from deeptest_iot.errors import ConfigError
from .batch import as_batch, as_rng

KINDS = ("photometric", "geometric", "weather", "sensor")

#: name -> TransformSpec, filled when the transform modules are imported.
REGISTRY: dict[str, "TransformSpec"] = {}


@dataclass(frozen=True)
class Param:
    """One parameter: its range [lo, hi], and where severity 0 and 1 put it.

    ``identity`` and ``extreme`` are the values at severity 0 and 1 (None when severity does not
    move this parameter; it then takes ``default``). ``pool`` is DeepTest's random pool
    (lo, hi, step) when it differs from the documented range.
    """

    name: str
    lo: float
    hi: float
    default: float
    identity: float | None = None
    extreme: float | None = None
    integer: bool = False
    odd: bool = False
    pool: tuple[float, float, float] | None = None
    unit: str = ""
    doc: str = ""

    @property
    def severity_driven(self) -> bool:
        return self.identity is not None

    def check(self, transform: str, value: Any) -> float | int:
        """``value`` as a plain int/float, or a ConfigError saying what is wrong and what is allowed."""
        where = f"{transform}: {self.name}={value!r}"
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"{where} is not a number; {self.describe()}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where} is not finite; {self.describe()}")
        if not self.lo <= float(value) <= self.hi:
            raise ConfigError(f"{where} is outside its range [{_fmt(self.lo)}, {_fmt(self.hi)}]; "
                              f"{self.describe()}")
        if not self.integer:
            return float(value)
        if float(value) != int(value):
            raise ConfigError(f"{where} must be a whole number; {self.describe()}")
        if self.odd and int(value) % 2 == 0:
            raise ConfigError(f"{where} must be odd; {self.describe()}")
        return int(value)

    def describe(self) -> str:
        kind = "odd integer" if self.odd else "integer" if self.integer else "number"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} is a{'n' if kind[0] in 'aeiou' else ''} {kind} in [{_fmt(self.lo)}, {_fmt(self.hi)}]{unit}"

    def at_severity(self, s: float) -> float | int:
        """This parameter's value at severity ``s`` (linear from identity to extreme)."""
        if not self.severity_driven:
            return self.default
        v = self.identity + s * (self.extreme - self.identity)
        if self.integer:  # round half up, to the nearest odd value for odd parameters
            v = 2 * math.floor((v - 1) / 2 + 0.5) + 1 if self.odd else math.floor(v + 0.5)
            v = int(v)
        return min(max(v, self.lo), self.hi)

    def fraction(self, value: float) -> float:
        """How far ``value`` is from identity toward extreme, clipped to [0, 1] (0 if not driven)."""
        if not self.severity_driven or self.extreme == self.identity:
            return 0.0
        return float(min(max((value - self.identity) / (self.extreme - self.identity), 0.0), 1.0))

    def draw(self, rng: np.random.Generator) -> float | int:
        """A random value: from DeepTest's pool when there is one, else uniform over the range."""
        lo, hi, step = self.pool if self.pool else (self.lo, self.hi, None)
        if step is not None:
            n = int(round((hi - lo) / step)) + 1
            v = lo + step * int(rng.integers(n))
            return int(round(v)) if self.integer else round(float(v), 10)
        if self.odd:
            return int(2 * rng.integers((int(lo) - 1) // 2, (int(hi) - 1) // 2 + 1) + 1)
        if self.integer:
            return int(rng.integers(int(lo), int(hi) + 1))
        return float(rng.uniform(lo, hi))


def _fmt(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class TransformSpec:
    """What a named transform is: its kind, parameters, pixel function and (geometric) matrix.

    ``apply(images, params, rng)`` gets a validated (N, H, W, 3) uint8 batch with N, H, W >= 1
    and returns a new array of the same shape; ``matrix(h, w, params)`` returns the 3x3 matrix
    mapping input pixel coordinates to output ones (geometric transforms only).
    ``is_identity(params)`` overrides the default test (every severity-driven parameter at its
    identity value).

    ``seeded`` says whether the pixels depend on the randomness seed (rain drops, noise); a spec that
    is not seeded gives the same pixels for every seed, so cases that differ only by their seed share
    one call. ``apply_many(images, params_list, seeds)``, when given, transforms a batch in which
    image i has its own parameters ``params_list[i]`` (validated, not the identity) and seed
    ``seeds[i]``; it must return, byte for byte, what ``apply(images[i:i+1], params_list[i],
    default_rng(seeds[i]))`` returns for every i (``many.apply_each`` uses it; tests/test_batched.py
    checks the equality for every registered transform).
    """

    name: str
    kind: str
    params: tuple[Param, ...]
    apply: Callable[[np.ndarray, dict, np.random.Generator], np.ndarray] = field(repr=False)
    doc: str = ""
    matrix: Callable[[int, int, dict], np.ndarray] | None = field(default=None, repr=False)
    is_identity: Callable[[dict], bool] | None = field(default=None, repr=False)
    random_params: Callable[[np.random.Generator], dict] | None = field(default=None, repr=False)
    random_doc: str = ""
    seeded: bool = True
    apply_many: Callable[[np.ndarray, list, list], np.ndarray] | None = field(default=None, repr=False)

    @property
    def affine(self) -> bool:
        """Whether this transform moves pixels by a 3x3 matrix (counts toward the one-affine-per-chain rule)."""
        return self.kind == "geometric"

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        hint = difflib.get_close_matches(name, [p.name for p in self.params], n=1)
        also = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{self.name} has no parameter {name!r}{also}; its parameters are: {known}")

    def defaults(self) -> dict:
        return {p.name: p.at_severity(0.0) for p in self.params}

    def validate(self, params: Mapping[str, Any]) -> dict:
        """Complete ``params`` with defaults (severity 0) and check every value against its range."""
        out = self.defaults()
        for key, value in params.items():
            out[key] = self.param(key).check(self.name, value)
        return out

    def from_severity(self, severity: float, **overrides) -> "Transform":
        """The transform at ``severity`` in [0, 1] (0 = identity); ``overrides`` set parameters explicitly."""
        s = check_severity(severity, self.name)
        values = {p.name: p.at_severity(s) for p in self.params}
        values.update(overrides)
        return Transform(self.name, values)

    def random(self, rng: np.random.Generator | int | None = None) -> "Transform":
        """Random parameters: DeepTest's pools for its transforms, the documented ranges for the rest."""
        rng = as_rng(0 if rng is None else rng)
        if self.random_params is not None:
            return Transform(self.name, self.random_params(rng))
        return Transform(self.name, {p.name: p.draw(rng) for p in self.params})

    def identity_for(self, params: dict) -> bool:
        if self.is_identity is not None:
            return bool(self.is_identity(params))
        return all(params[p.name] == p.identity for p in self.params if p.severity_driven)

    def severity_of(self, params: dict) -> float:
        if self.identity_for(params):
            return 0.0
        return max((p.fraction(params[p.name]) for p in self.params), default=0.0)


def check_severity(severity: Any, what: str = "severity") -> float:
    if isinstance(severity, (bool, np.bool_)) or not isinstance(severity, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(severity) <= 1.0:
        raise ConfigError(f"{what}: severity={severity!r} must be a number in [0, 1] (0 is the identity)")
    return float(severity)


def spec(name: str) -> TransformSpec:
    """The registered spec for ``name``, or a ConfigError listing the known names."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        hint = difflib.get_close_matches(str(name), list(REGISTRY), n=1)
        also = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"unknown transform {name!r}{also} Known transforms: {', '.join(sorted(REGISTRY))}") \
            from None


def register(s: TransformSpec) -> TransformSpec:
    if s.kind not in KINDS:
        raise ValueError(f"bad kind {s.kind!r}")
    if s.name in REGISTRY:
        raise ValueError(f"transform {s.name!r} registered twice")
    REGISTRY[s.name] = s
    return s


class Transform:
    """An immutable transform value: ``name`` plus validated ``params``. Call it on a batch.

    ``Transform("fog", {"density": 0.5})`` or ``Transform("fog", density=0.5)``; parameters not
    given take their severity-0 (identity) value, or their default for shape parameters.
    """

    __slots__ = ("name", "_items")

    def __init__(self, name: str, params: Mapping[str, Any] | None = None, /, **kwargs):
        s = spec(name)
        values = s.validate({**(params or {}), **kwargs})
        object.__setattr__(self, "name", s.name)
        object.__setattr__(self, "_items", tuple((p.name, values[p.name]) for p in s.params))

    def __setattr__(self, key, value):
        raise AttributeError(f"Transform is immutable; use .replace({key}=...) for a changed copy")

    __delattr__ = __setattr__

    # --- what it is --------------------------------------------------------------------------
    @property
    def spec(self) -> TransformSpec:
        return REGISTRY[self.name]

    @property
    def params(self) -> dict:
        """A fresh dict of every parameter value (editing it does not change the transform)."""
        return dict(self._items)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def severity(self) -> float:
        """Derived from the parameters: the largest fraction of the way from identity to the
        severity-1 value over the severity-driven parameters, clipped to [0, 1]."""
        return self.spec.severity_of(self.params)

    @property
    def is_identity(self) -> bool:
        return self.spec.identity_for(self.params)

    @property
    def is_affine(self) -> bool:
        """Counts toward DeepHunter's at-most-one-affine-per-chain validity rule."""
        return self.spec.affine and not self.is_identity

    @property
    def mirrors_horizontally(self) -> bool:
        """True when the frame is mirrored left-right (the steering relation then expects -angle)."""
        return self.name == "hflip" and bool(self.params["flip"])

    def replace(self, **changes) -> "Transform":
        return Transform(self.name, {**self.params, **changes})

    # --- what it does ------------------------------------------------------------------------
    def __call__(self, images: np.ndarray, seed: int | np.random.Generator = 0) -> np.ndarray:
        """Transform a batch (N, H, W, 3) uint8 RGB (or one (H, W, 3) frame); same shape and dtype.

        Randomness (rain drops, noise) is drawn once per call from ``seed`` and shared by the
        whole batch, so each output image depends only on its input image, the value and the seed.
        """
        batch, single = as_batch(images)
        rng = as_rng(seed)
        if batch.size == 0 or self.is_identity:
            out = batch.copy()
        else:
            out = self.spec.apply(batch, self.params, rng)
        return out[0] if single else out

    def matrix(self, h: int, w: int) -> np.ndarray | None:
        """3x3 float64 matrix mapping input pixel coordinates (x = column, y = row, pixel centres at
        integers, as ``cv2.warpAffine`` uses) to output ones; None for non-geometric transforms."""
        if self.spec.matrix is None:
            return None
        return np.asarray(self.spec.matrix(int(h), int(w), self.params), dtype=np.float64)

    # --- values ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "params": self.params}

    def __eq__(self, other):
        return isinstance(other, Transform) and (self.name, self._items) == (other.name, other._items)

    def __hash__(self):
        return hash((self.name, self._items))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._items)
        return f"Transform({self.name!r}, {args})" if args else f"Transform({self.name!r})"

    def __reduce__(self):
        return (Transform, (self.name, self.params))


def get(name: str, severity: float | None = None, **params) -> Transform:
    """A transform by name: at ``severity`` in [0, 1], or with explicit parameters, or both
    (explicit parameters win). With neither, the identity (severity 0)."""
    s = spec(name)
    if severity is None:
        return Transform(s.name, params)
    return s.from_severity(severity, **params)


def from_dict(d: Mapping) -> "Transform":
    """Inverse of ``Transform.to_dict``: ``{"name", "params"}`` (a chain's JSON form is ``Chain.from_json``)."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"a transform must be a JSON object with 'name' and 'params', got {d!r}")
    if "name" not in d:
        raise ConfigError(f"a transform needs a 'name', got keys {sorted(d)}")
    params = d.get("params", {}) or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{d['name']}: 'params' must be an object, got {params!r}")
    return Transform(d["name"], dict(params))
