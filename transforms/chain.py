"""Chains: transforms applied one after the other, each with its own randomness seed.

A chain is the one recipe for a test input everywhere (campaign cases, the pytest helper,
findings.jsonl): its JSON form is a list of links ``[{"name", "params", "seed"}, ...]``. It answers
the geometry questions a relation asks (where did the pixels go? is the frame mirrored? how many
affine links?) so that no caller works them out again.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from deeptest_iot.errors import ConfigError

from .batch import as_batch
from .core import Transform, from_dict

#: DeepHunter's rule: at most this many affine (geometric) transforms in one chain.
MAX_AFFINE = 1


class Chain:
    """An immutable sequence of transforms, applied first to last, optionally with per-link seeds.

    ``seeds`` (one int per link) fix each link's randomness (rain drops, noise): a seeded chain is a
    complete recipe, the same pixels on every call. An unseeded chain called with ``seed=k`` uses
    the per-link seeds ``Chain.link_seeds(k, n)``. Any number of transforms may be chained;
    ``valid`` says whether the chain keeps DeepHunter's rule of at most one affine transform.
    Nested chains are flattened (with their seeds when every part is seeded).
    """

    __slots__ = ("transforms", "seeds")

    def __init__(self, transforms: Iterable[Transform | "Chain" | Mapping] = (), seeds: Sequence[int] | None = None):
        flat: list[Transform] = []
        flat_seeds: list[int] | None = []
        for t in transforms:
            if isinstance(t, Mapping):
                t = from_dict(t)
            if isinstance(t, Chain):
                flat.extend(t.transforms)
                flat_seeds = None if flat_seeds is None or t.seeds is None else flat_seeds + list(t.seeds)
            elif isinstance(t, Transform):
                flat.append(t)
                flat_seeds = None
            else:
                raise ConfigError(f"a chain holds transforms, got {t!r}")
        if seeds is not None:
            seeds = tuple(_link_seed(s) for s in seeds)
            if len(seeds) != len(flat):
                raise ConfigError(f"a chain of {len(flat)} transform(s) needs {len(flat)} seed(s), got {len(seeds)}")
        elif flat_seeds is not None and flat and len(flat_seeds) == len(flat):
            seeds = tuple(flat_seeds)
        object.__setattr__(self, "transforms", tuple(flat))
        object.__setattr__(self, "seeds", seeds)

    def __setattr__(self, key, value):
        raise AttributeError("Chain is immutable")

    # --- randomness ---------------------------------------------------------------------------
    @staticmethod
    def link_seeds(seed: int | np.random.Generator, n: int) -> tuple[int, ...]:
        """The per-link seeds an unseeded chain of ``n`` links uses when called with ``seed``:
        child i of ``SeedSequence(seed)`` for an int, ``n`` draws for a Generator."""
        if isinstance(seed, np.random.Generator):
            return tuple(int(v) for v in seed.integers(0, 2**32, n))
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)) and seed >= 0:
            return tuple(int(c.generate_state(1)[0]) for c in np.random.SeedSequence(int(seed)).spawn(n))
        raise ConfigError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")

    def seeded(self, seed: int | np.random.Generator = 0) -> "Chain":
        """This chain with per-link seeds: itself when it has them, else those derived from ``seed``."""
        if self.seeds is not None:
            return self
        return Chain(self.transforms, self.link_seeds(seed, len(self.transforms)))

    def then(self, transform: Transform, seed: int) -> "Chain":
        """A new seeded chain: this (seeded) chain plus one link."""
        if self.seeds is None and self.transforms:
            raise ConfigError("then() extends a seeded chain; call seeded() first")
        return Chain(self.transforms + (transform,), (self.seeds or ()) + (seed,))

    def __call__(self, images: np.ndarray, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Apply every transform in order, link i with its seed: the chain's own seeds when
        ``seed`` is None (seed 0's when it has none), else those derived from ``seed``."""
        batch, single = as_batch(images)
        if seed is None:
            seeds = self.seeds if self.seeds is not None else self.link_seeds(0, len(self.transforms))
        else:
            seeds = self.link_seeds(seed, len(self.transforms))
        out = batch.copy() if not self.transforms else batch
        for t, s in zip(self.transforms, seeds):
            out = t(out, seed=s)
        return out[0] if single else out

    # --- geometry ---------------------------------------------------------------------------
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

    def accepts_affine(self) -> bool:
        """Whether one more affine link would keep the chain valid."""
        return self.affine_count < MAX_AFFINE

    def check_valid(self) -> "Chain":
        if not self.valid:
            names = [t.name for t in self.transforms if t.is_affine]
            raise ConfigError(f"chain {self.name!r} has {len(names)} affine transforms ({', '.join(names)}); "
                              f"at most {MAX_AFFINE} keeps the mutant realistic (DeepHunter)")
        return self

    @property
    def mirrors_horizontally(self) -> bool:
        """True when the frame ends up mirrored left-right (an odd number of horizontal flips)."""
        return sum(t.mirrors_horizontally for t in self.transforms) % 2 == 1

    # --- description --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "+".join(t.name for t in self.transforms) or "identity"

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(t.kind for t in self.transforms)

    @property
    def family(self) -> str:
        """The kinds the chain mixes, sorted and joined ("geometric+weather"): what groups its findings."""
        return "+".join(sorted(set(self.kinds))) or "identity"

    @property
    def severity(self) -> float:
        return max((t.severity for t in self.transforms), default=0.0)

    @property
    def is_identity(self) -> bool:
        return all(t.is_identity for t in self.transforms)

    # --- values -------------------------------------------------------------------------------
    def to_json(self) -> list[dict]:
        """The chain's one JSON form: ``[{"name", "params", "seed"}, ...]`` (seed null when unseeded)."""
        seeds = self.seeds if self.seeds is not None else (None,) * len(self.transforms)
        return [{**t.to_dict(), "seed": s} for t, s in zip(self.transforms, seeds)]

    @classmethod
    def from_json(cls, links) -> "Chain":
        """Inverse of ``to_json``; links without a seed make an unseeded chain."""
        if isinstance(links, Mapping):  # one transform
            links = [links]
        if not isinstance(links, (list, tuple)):
            raise ConfigError(f"a chain is a list of {{'name', 'params', 'seed'}} links, got {links!r}")
        transforms, seeds = [], []
        for link in links:
            if not isinstance(link, Mapping):
                raise ConfigError(f"a chain link is an object with 'name' and 'params', got {link!r}")
            transforms.append(from_dict({k: v for k, v in link.items() if k != "seed"}))
            seeds.append(link.get("seed"))
        seeded = bool(seeds) and all(s is not None for s in seeds)
        return cls(transforms, seeds if seeded else None)

    def __len__(self):
        return len(self.transforms)

    def __iter__(self):
        return iter(self.transforms)

    def __eq__(self, other):
        return isinstance(other, Chain) and (self.transforms, self.seeds) == (other.transforms, other.seeds)

    def __hash__(self):
        return hash(("chain", self.transforms, self.seeds))

    def __repr__(self):
        if self.seeds is None:
            return f"Chain({list(self.transforms)!r})"
        return f"Chain({list(self.transforms)!r}, seeds={list(self.seeds)!r})"

    def __reduce__(self):
        return (Chain, (self.transforms, self.seeds))


def as_chain(value) -> Chain:
    """A Chain from a Chain, a Transform, a list of transforms, or a chain's JSON form."""
    if isinstance(value, Chain):
        return value
    if isinstance(value, Transform):
        return Chain([value])
    if value is None:
        return Chain(())
    if isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping)):
        return Chain.from_json(value)
    if isinstance(value, (list, tuple)):
        return Chain(value)
    if isinstance(value, str):
        raise ConfigError(f"transform {value!r}: pass a transform value, e.g. "
                          f"deeptest_iot.transforms.get({value!r}, severity=0.5)")
    raise ConfigError(f"expected a Transform, a Chain or a list of transforms, not {value!r}")


def _link_seed(seed) -> int:
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)) and seed >= 0:
        return int(seed)
    raise ConfigError(f"a link seed must be a non-negative int, got {seed!r}")
