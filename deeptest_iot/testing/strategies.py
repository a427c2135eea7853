"""Hypothesis strategies for model tests: transforms, chains, severities and seed images.

They are built so that a failing case shrinks to the *smallest change that still breaks the model*:

* **Severity** is drawn on a grid, ``k / resolution`` for an integer ``k``, and mapped to the
  transform with ``REGISTRY[name].from_severity``. Hypothesis shrinks integers toward 0 by
  binary search, so a failing severity shrinks to the weakest one that still fails (to within
  ``1 / resolution``). A plain ``st.floats(0, 1)`` would not do this: Hypothesis's float shrinker
  prefers "simple" floats, and shrinks a failure above severity 0.3 to 1.0, the strongest.
* **Transform names** come from ``st.sampled_from``, which shrinks toward the first name given.
* **Chains** are ``st.lists(..., min_size=1)`` of transforms, which shrink toward fewer links
  (and each link toward a weaker one). By default chains keep DeepHunter's validity rule (at most
  one affine transform).
* **Seed images** are a batch of distinct indices into a seed set (a folder, or generated
  scenes), which shrinks toward fewer images and toward the first ones.

Importing this module registers the Hypothesis settings profile ``"deeptest"``
(:data:`PROFILE`); load it with ``pytest --hypothesis-profile=deeptest`` or
``settings.load_profile("deeptest")``, or use ``@settings(settings.get_profile("deeptest"))``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from deeptest_iot.errors import ConfigError
from deeptest_iot.transforms import REGISTRY, Chain, Transform
from deeptest_iot.transforms import names as transform_names

__all__ = ["PROFILE", "PROFILE_SETTINGS", "severities", "transforms", "chains", "seed_images"]

#: Grid steps between severity 0 and 1: failing severities shrink to within 1/1000 of the weakest.
DEFAULT_RESOLUTION = 1000

#: Name of the settings profile for model tests.
PROFILE = "deeptest"

#: Why each setting: a forward pass of a real model takes tens of milliseconds and its first call
#: compiles a graph, so per-example deadlines only produce flaky failures (``deadline=None``) and
#: slow data generation is expected (``too_slow`` suppressed; ``data_too_large`` too, as image
#: batches are large draws). CI must give the same verdict on every run and on every machine:
#: ``derandomize=True`` derives the examples from each test's source, and ``database=None`` keeps a
#: failure found on one run from being replayed only there. Each example runs the model, so a
#: modest ``max_examples`` keeps a suite to minutes; ``print_blob`` prints how to reproduce.
PROFILE_SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

settings.register_profile(PROFILE, **PROFILE_SETTINGS)


def _check_range(what: str, lo: float, hi: float) -> None:
    if not 0.0 <= lo <= hi <= 1.0:
        raise ConfigError(f"{what}: need 0 <= min_severity <= max_severity <= 1, got {lo} and {hi}")


def severities(min_value: float = 0.0, max_value: float = 1.0,
               resolution: int = DEFAULT_RESOLUTION) -> st.SearchStrategy[float]:
    """Severities in [min_value, max_value] on a grid of ``1/resolution``; shrink toward ``min_value``."""
    _check_range("severities", min_value, max_value)
    if int(resolution) < 1:
        raise ConfigError(f"severities: resolution must be >= 1, got {resolution}")
    lo = int(np.ceil(min_value * resolution - 1e-9))
    hi = int(np.floor(max_value * resolution + 1e-9))
    if lo > hi:
        raise ConfigError(f"severities: no grid step of 1/{resolution} lies in [{min_value}, {max_value}]")
    return st.integers(lo, hi).map(lambda k: k / resolution)


def _names(names, kinds) -> list[str]:
    if names is None:
        chosen = [n for n in transform_names() if kinds is None or REGISTRY[n].kind in kinds]
    else:
        chosen = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in chosen if n not in REGISTRY]
        if unknown:
            raise ConfigError(f"unknown transform(s) {', '.join(map(repr, unknown))}; known: "
                              f"{', '.join(sorted(REGISTRY))}")
        if kinds is not None:
            chosen = [n for n in chosen if REGISTRY[n].kind in kinds]
    if not chosen:
        raise ConfigError(f"no transform left to draw from (names={names!r}, kinds={kinds!r})")
    return chosen


def transforms(names=None, max_severity: float = 1.0, min_severity: float = 0.0, kinds=None,
               resolution: int = DEFAULT_RESOLUTION) -> st.SearchStrategy[Transform]:
    """Transforms by name (all registered ones by default, or those of ``kinds``), at a drawn severity.

    Shrinks toward the first name and toward ``min_severity`` (0 is the identity).
    """
    chosen = _names(names, kinds)
    return st.builds(lambda name, s: REGISTRY[name].from_severity(s),
                     st.sampled_from(chosen), severities(min_severity, max_severity, resolution))


def chains(max_links: int = 3, names=None, max_severity: float = 1.0, min_severity: float = 0.0,
           min_links: int = 1, kinds=None, valid_only: bool = True,
           resolution: int = DEFAULT_RESOLUTION) -> st.SearchStrategy[Chain]:
    """Chains of ``min_links``..``max_links`` transforms; shrink toward fewer, weaker links.

    ``valid_only`` keeps DeepHunter's rule of at most one affine (geometric) link per chain.
    """
    if not 1 <= int(min_links) <= int(max_links):
        raise ConfigError(f"chains: need 1 <= min_links <= max_links, got {min_links} and {max_links}")
    links = st.lists(transforms(names, max_severity, min_severity, kinds, resolution),
                     min_size=int(min_links), max_size=int(max_links))
    out = links.map(Chain)
    return out.filter(lambda c: c.valid) if valid_only else out


@lru_cache(maxsize=8)
def _seed_pool(folder: str | None, labels: str | None, n: int, seed: int, height: int, width: int) -> np.ndarray:
    from deeptest_iot.data.seeds import generated_seeds, load_seeds

    if folder is None and labels is None:
        images = generated_seeds(n, seed=seed, height=height, width=width).images
    else:
        images = load_seeds(folder, labels=labels).images
    images.setflags(write=False)  # shared by every example: a test must not change it in place
    return images


def seed_images(folder=None, n: int = 16, labels=None, min_size: int = 1, max_size: int = 8, seed: int = 0,
                height: int = 160, width: int = 320) -> st.SearchStrategy[np.ndarray]:
    """Batches (k, H, W, 3) uint8 of distinct seed frames, ``min_size <= k <= max_size``.

    From ``folder`` (with an optional ``labels`` CSV that selects and orders the frames, see
    :func:`deeptest_iot.data.seeds.load_seeds`) or, without one, from ``n`` generated scenes of scene
    seed ``seed``. The frames are loaded once and shared (read-only). Shrinks toward fewer frames
    and toward the first ones.
    """
    if not 1 <= int(min_size) <= int(max_size):
        raise ConfigError(f"seed_images: need 1 <= min_size <= max_size, got {min_size} and {max_size}")
    key = (None if folder is None else str(Path(folder)), None if labels is None else str(Path(labels)),
           int(n), int(seed), int(height), int(width))

    @st.composite
    def batch(draw):
        pool = _seed_pool(*key)
        if len(pool) < min_size:
            raise ConfigError(f"seed_images: {len(pool)} seed frame(s) available, min_size is {min_size}")
        idx = draw(st.lists(st.integers(0, len(pool) - 1), min_size=int(min_size),
                                 max_size=min(int(max_size), len(pool)), unique=True))
        return pool[np.asarray(idx)]

    return batch()
