"""Chains: transforms applied one after the other, with their composed matrix and validity."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from deeptest_iot.errors import ConfigError

from .batch import as_batch
from .core import Transform, from_dict

#: DeepHunter's rule: at most this many affine (geometric) transforms in one chain.
MAX_AFFINE = 1


class Chain:
    """An immutable sequence of transforms, applied first to last.

    Any number of transforms may be chained; ``valid`` says whether the chain keeps DeepHunter's
    rule of at most one affine transform (``check_valid()`` raises a ConfigError if not). Nested
    chains are flattened.
    """

    __slots__ = ("transforms",)

    def __init__(self, transforms: Iterable[Transform | "Chain" | Mapping] = ()):
        flat: list[Transform] = []
        for t in transforms:
            if isinstance(t, Mapping):
                t = from_dict(t)
            if isinstance(t, Chain):
                flat.extend(t.transforms)
            elif isinstance(t, Transform):
                flat.append(t)
            else:
                raise ConfigError(f"a chain holds transforms, got {t!r}")
        object.__setattr__(self, "transforms", tuple(flat))

    def __setattr__(self, key, value):
        raise AttributeError("Chain is immutable")

    def __call__(self, images: np.ndarray, seed: int | np.random.Generator = 0) -> np.ndarray:
        """Apply every transform in order. Transform i draws its randomness from child i of the seed
        (``SeedSequence(seed).spawn`` for an int, ``Generator.spawn`` for a Generator)."""
        batch, single = as_batch(images)
        out = batch.copy()
        for t, rng in zip(self.transforms, _child_rngs(seed, len(self.transforms))):
            out = t(out, seed=rng)
        return out[0] if single else out

    def matrix(self, h: int, w: int) -> np.ndarray | None:
        """The product of the geometric transforms' matrices in application order, None if none moves pixels."""
        total = None
        for t in self.transforms:
            m = t.matrix(h, w)
            if m is not None:
                total = m if total is None else m @ total
        return total

    @property
    def affine_count(self) -> int:
        """Number of non-identity geometric transforms (translation, scale, shear, rotation, hflip)."""
        return sum(t.is_affine for t in self.transforms)

    @property
    def valid(self) -> bool:
        """DeepHunter's validity rule for chains: at most one affine transform."""
        return self.affine_count <= MAX_AFFINE

    def check_valid(self) -> "Chain":
        if not self.valid:
            names = [t.name for t in self.transforms if t.is_affine]
            raise ConfigError(f"chain {self.name!r} has {len(names)} affine transforms ({', '.join(names)}); "
                              f"at most {MAX_AFFINE} keeps the mutant realistic (DeepHunter)")
        return self

    @property
    def name(self) -> str:
        return "+".join(t.name for t in self.transforms) or "identity"

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(t.kind for t in self.transforms)

    @property
    def severity(self) -> float:
        return max((t.severity for t in self.transforms), default=0.0)

    @property
    def is_identity(self) -> bool:
        return all(t.is_identity for t in self.transforms)

    @property
    def mirrors_horizontally(self) -> bool:
        return sum(t.mirrors_horizontally for t in self.transforms) % 2 == 1

    def to_dict(self) -> dict:
        return {"chain": [t.to_dict() for t in self.transforms]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Chain":
        items = d.get("chain") if isinstance(d, Mapping) else None
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"a chain must be {{'chain': [transform, ...]}}, got {d!r}")
        return cls(items)

    def __len__(self):
        return len(self.transforms)

    def __iter__(self):
        return iter(self.transforms)

    def __eq__(self, other):
        return isinstance(other, Chain) and self.transforms == other.transforms

    def __hash__(self):
        return hash(("chain", self.transforms))

    def __repr__(self):
        return f"Chain({list(self.transforms)!r})"


def _child_rngs(seed, n: int) -> list[np.random.Generator]:
    if isinstance(seed, np.random.Generator):
        return seed.spawn(n)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)) and seed >= 0:
        return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]
    raise ConfigError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")
