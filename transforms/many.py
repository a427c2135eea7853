"""Many cases at once: a batch in which every image has its own chain, built link by link.

A campaign batch holds a hundred cases whose chains all differ (random parameters, their own seeds).
Applying each chain on its own costs a Python call per image and per link, which on small frames
costs more than the pixels. Here the batch is built one link position at a time: the cases whose
link at that position is the same transform are transformed together, by one ``apply_many`` call
with one parameter set and one seed per image (``TransformSpec.apply_many``: per-image lookup tables
for point operations, one warp per image in a tight loop for the geometric ones), or, for a transform
without it, by one call per distinct (parameters, seed) (parameters only when the transform does not
use its seed).

The result is byte for byte what each case's chain gives on its seed alone
(``chain(seed_image)``): findings are recipes rendered again later, and must show what the model saw.
tests/test_batched.py checks it over random chains and seeds.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from .batch import as_batch, as_rng
from .chain import Chain
from .core import REGISTRY, Transform


def apply_each(transforms: Sequence[Transform], images: np.ndarray, seeds: Sequence[int]) -> np.ndarray:
    """Image i transformed by ``transforms[i]`` with seed ``seeds[i]``: a new (K, H, W, 3) array equal,
    byte for byte, to ``transforms[i](images[i:i+1], seed=seeds[i])`` for every i.

    All transforms must have the same name. Identity values leave their image as it is.
    """
    batch, single = as_batch(images)
    if len(transforms) != len(batch) or len(seeds) != len(batch):
        raise ValueError(f"apply_each: {len(batch)} images, {len(transforms)} transforms, {len(seeds)} seeds")
    if not len(batch):
        return batch.copy()
    names = {t.name for t in transforms}
    if len(names) != 1:
        raise ValueError(f"apply_each takes transforms of one name, got {sorted(names)}")
    spec = REGISTRY[names.pop()]
    params = [t.params for t in transforms]
    active = [i for i, p in enumerate(params) if not spec.identity_for(p)]
    out = batch.copy() if len(active) < len(batch) else None
    if not active or batch[0].size == 0:
        return out
    if len(active) == len(batch):
        part, sub_p, sub_s = batch, params, list(seeds)
    else:
        part, sub_p, sub_s = batch[active], [params[i] for i in active], [seeds[i] for i in active]
    done = _apply(spec, part, sub_p, sub_s)
    if out is None:
        return done
    out[active] = done
    return out


def _apply(spec, batch: np.ndarray, params: list[dict], seeds: list[int]) -> np.ndarray:
    """``spec`` on a batch of non-identity parameter sets: its ``apply_many``, or one ``apply`` per
    distinct (parameters, seed)."""
    if spec.apply_many is not None:
        return spec.apply_many(batch, params, seeds)
    groups: dict = {}
    for i, (p, s) in enumerate(zip(params, seeds)):
        groups.setdefault((tuple(p.items()), s if spec.seeded else None), []).append(i)
    if len(groups) == 1:
        return spec.apply(batch, params[0], as_rng(seeds[0]))
    out = np.empty_like(batch)
    for idx in groups.values():
        out[idx] = spec.apply(batch[idx], params[idx[0]], as_rng(seeds[idx[0]]))
    return out


def _apply_into(out: np.ndarray, members: list[int], transforms: list[Transform], seeds: list[int]) -> None:
    """Rows ``members`` of ``out`` transformed in place, row ``members[k]`` by ``transforms[k]`` with
    seed ``seeds[k]`` (one name): what ``out[members] = apply_each(transforms, out[members], seeds)``
    gives, without its copies. Identity rows are not touched; a transform without ``apply_many`` reads
    a single row as a view (transforms do not write into their input) and writes its result back."""
    spec = REGISTRY[transforms[0].name]
    act = [k for k, t in enumerate(transforms) if not spec.identity_for(t.params)]
    if not act or out[0].size == 0:
        return
    rows = [members[k] for k in act]
    if spec.apply_many is not None:
        out[rows] = spec.apply_many(out[rows], [transforms[k].params for k in act], [seeds[k] for k in act])
        return
    groups: dict = {}
    for k, r in zip(act, rows):
        groups.setdefault((tuple(transforms[k].params.items()), seeds[k] if spec.seeded else None),
                          (k, []))[1].append(r)
    for k, rs in groups.values():
        if len(rs) == 1:
            r = rs[0]
            out[r:r + 1] = spec.apply(out[r:r + 1], transforms[k].params, as_rng(seeds[k]))
        else:
            out[rs] = spec.apply(out[rs], transforms[k].params, as_rng(seeds[k]))


def link_seeds(chain: Chain) -> tuple[int, ...]:
    """The seeds ``chain(images)`` uses for its links: its own, or seed 0's when it has none."""
    return chain.seeds if chain.seeds is not None else Chain.link_seeds(0, len(chain.transforms))


def render(seed_images: np.ndarray, seed_index: Sequence[int], chains: Sequence[Chain],
           mapper: Callable[[Callable, Iterable], Iterable] | None = None, pieces: int = 1,
           starts: Sequence[tuple[int, np.ndarray] | None] | None = None) -> np.ndarray:
    """Image i = ``chains[i]`` applied to ``seed_images[seed_index[i]]``: a new (N, H, W, 3) array equal,
    byte for byte, to ``chains[i](seed_images[seed_index[i]])`` for every i.

    Built one link position at a time; at each, the cases whose link is the same transform go through
    ``apply_each`` together. ``mapper`` (say ``ThreadPoolExecutor.map``) runs the jobs of one link
    position concurrently (``_jobs``: the groups cut for ``pieces`` threads); jobs write disjoint
    rows and every image depends only on its own case, so the result does not depend on the cut.

    ``starts[i]``, when not None, is ``(k, image)``: ``image`` is what the first ``k`` links of
    ``chains[i]`` make of the seed (rendered earlier), and case i continues from there. A chain's links
    apply one after the other, so this gives the same bytes as starting from the seed.
    """
    seeds_batch, _ = as_batch(seed_images)
    if len(seed_index) != len(chains):
        raise ValueError(f"render: {len(seed_index)} seed indices for {len(chains)} chains")
    idx = np.asarray(seed_index, dtype=np.intp).reshape(-1)
    out = seeds_batch[idx]  # a copy: every case starts from its seed
    first = [0] * len(chains)
    for i, start in enumerate(starts or ()):
        if start is not None:
            first[i], out[i] = start
    links = [(c.transforms, link_seeds(c)) for c in chains]
    depth = max((len(t) for t, _ in links), default=0)
    for position in range(depth):
        groups: dict[str, list[int]] = {}
        for i, (ts, _) in enumerate(links):
            if first[i] <= position < len(ts):
                groups.setdefault(ts[position].name, []).append(i)

        def build(members: list[int], position=position) -> None:
            _apply_into(out, members, [links[i][0][position] for i in members],
                        [links[i][1][position] for i in members])

        if mapper is None:
            for members in groups.values():
                build(members)
        else:
            for _ in mapper(build, _jobs(groups, links, position, pieces)):
                pass
    return out


def _jobs(groups: dict[str, list[int]], links: list, position: int, pieces: int) -> list[list[int]]:
    """The groups of one link position cut into jobs for ``pieces`` threads, slowest first.

    A transform with ``apply_many`` is cheap per image: its group stays whole unless it holds more
    than a ``pieces``-th of the cases. A transform without it costs a call per distinct (parameters,
    seed) (rain, snow, noise: milliseconds each), so each such call is its own job and the pool
    shares them out; those jobs go first, so that no thread is left with a slow one at the end.
    """
    total = sum(map(len, groups.values()))
    limit = max(1, -(-total // max(1, pieces)))
    slow, fast = [], []
    for name, members in groups.items():
        spec = REGISTRY[name]
        if spec.apply_many is None:
            calls: dict = {}
            for i in members:
                t, s = links[i][0][position], links[i][1][position]
                calls.setdefault((t, s if spec.seeded else None), []).append(i)
            slow.extend(calls.values())
        else:
            fast.extend(members[start:start + limit] for start in range(0, len(members), limit))
    return slow + fast
