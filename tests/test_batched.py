"""Batched building of test inputs gives, byte for byte, what each case's chain gives on its seed alone.

Findings are recipes rendered again later (report, export, show): the pixels a campaign built for the
model in a batch (link batching with per-image parameters, prefixes reused from earlier cases, a
thread pool) must be exactly those of ``case.chain(seed_image)``.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeptest_iot.data.seeds import generated_seeds
from deeptest_iot.engine import mutants
from deeptest_iot.engine.mutants import PrefixCache, build_images
from deeptest_iot.engine.search import Case, make_strategy
from deeptest_iot.transforms import REGISTRY, Chain, Transform
from deeptest_iot.transforms.many import apply_each, render

NAMES = list(REGISTRY)
SOME = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = generated_seeds(6, seed=2, height=30, width=44).images  # small odd-sized frames: SIMD tails too


def param_strategy(p):
    if p.odd:
        return st.integers((int(p.lo) - 1) // 2, (int(p.hi) - 1) // 2).map(lambda k: 2 * k + 1)
    if p.integer:
        return st.integers(int(p.lo), int(p.hi))
    return st.floats(p.lo, p.hi, allow_nan=False)


def value(name):
    """A transform of ``name``: random in-range parameters, its campaign draw, or its identity."""
    spec = REGISTRY[name]
    drawn = st.fixed_dictionaries({p.name: param_strategy(p) for p in spec.params}).map(lambda d: Transform(name, d))
    campaign = st.integers(0, 2**31 - 1).map(lambda s: spec.random(np.random.default_rng(s)))
    return st.one_of(drawn, campaign, st.just(Transform(name)))


links = st.sampled_from(NAMES).flatmap(value)
link_seed = st.integers(0, 2**31 - 1)
chains = st.lists(st.tuples(links, link_seed), min_size=0, max_size=3).map(
    lambda ls: Chain([t for t, _ in ls], [s for _, s in ls]))
cases = st.lists(st.tuples(st.integers(0, len(SEEDS) - 1), chains), min_size=1, max_size=12).map(
    lambda cs: [Case(i, s, c) for i, (s, c) in enumerate(cs)])


def one_by_one(seed_images, cs):
    return np.stack([c.chain(seed_images[c.seed_index]) for c in cs])


@SOME
@given(cs=cases, workers=st.sampled_from([1, 3]))
def test_build_images_is_each_chain_on_its_seed_alone(cs, workers):
    mutants.PREFIXES.clear()
    got = build_images(SEEDS, cs, workers=workers)
    assert got.dtype == np.uint8 and got.shape == (len(cs),) + SEEDS.shape[1:]
    assert np.array_equal(got, one_by_one(SEEDS, cs))


@SOME
@given(parents=cases, extra=st.lists(st.tuples(links, link_seed), min_size=1, max_size=2), workers=st.sampled_from([1, 3]))
def test_children_of_earlier_cases_start_from_their_image_and_match(parents, extra, workers):
    """DeepTest's and DeepHunter's children extend an earlier case's chain: they start from its kept
    image, and the pixels are still those of the whole chain applied to the seed."""
    cache = mutants.PREFIXES
    cache.clear()
    build_images(SEEDS, parents, workers=workers)
    children = [Case(100 + k, p.seed_index, Chain([p.chain, Chain([t for t, _ in extra], [s for _, s in extra])]))
                for k, p in enumerate(parents)]
    hits = cache.hits
    got = build_images(SEEDS, children, workers=workers)
    assert np.array_equal(got, one_by_one(SEEDS, children))
    assert cache.hits - hits == sum(len(p.chain) > 0 for p in parents)


@pytest.mark.parametrize("name", NAMES)
def test_apply_each_is_each_transform_alone(name):
    """Every registered transform, 12 images with their own parameters and seeds (some shared, some
    the identity), at an odd frame size: the same bytes as one call per image."""
    spec = REGISTRY[name]
    rng = np.random.default_rng(len(name))
    ts = [spec.random(rng) for _ in range(9)] + [Transform(name)]
    ts += [ts[0], ts[1]]  # repeated values: one call may serve several images
    seeds = [int(rng.integers(0, 2**31 - 1)) for _ in range(len(ts) - 1)] + [7]
    seeds[-2] = seeds[0]
    images = SEEDS[rng.integers(0, len(SEEDS), len(ts))]
    before = images.copy()
    got = apply_each(ts, images, seeds)
    assert np.array_equal(images, before), "the input batch must not be modified"
    want = np.stack([t(images[i], seed=s) for i, (t, s) in enumerate(zip(ts, seeds))])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_no_transform_writes_into_its_input(name):
    """render lets a transform read one row of its batch as a view and writes the result back there:
    that is only right if no transform writes into the array it is given."""
    spec = REGISTRY[name]
    rng = np.random.default_rng(len(name) + 1)
    for _ in range(4):
        t = spec.random(rng)
        if spec.identity_for(t.params):
            continue
        images = SEEDS[:3].copy()
        before = images.copy()
        spec.apply(images[1:2], t.params, np.random.default_rng(5))
        spec.apply(images, t.params, np.random.default_rng(5))
        assert np.array_equal(images, before)


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if not s.seeded])
def test_transforms_declared_unseeded_do_not_depend_on_the_seed(name):
    rng = np.random.default_rng(1)
    for _ in range(3):
        t = REGISTRY[name].random(rng)
        assert np.array_equal(t(SEEDS, seed=1), t(SEEDS, seed=123456))


def test_apply_each_refuses_mixed_names_and_lengths():
    with pytest.raises(ValueError):
        apply_each([Transform("fog"), Transform("rain")], SEEDS[:2], [0, 0])
    with pytest.raises(ValueError):
        apply_each([Transform("fog")], SEEDS[:2], [0, 0])


def test_render_of_no_case_and_of_empty_chains():
    assert render(SEEDS, [], []).shape == (0,) + SEEDS.shape[1:]
    out = render(SEEDS, [3, 1], [Chain(()), Chain((), ())])
    assert np.array_equal(out, SEEDS[[3, 1]]) and not np.shares_memory(out, SEEDS)


def test_strategy_campaign_batches_match_with_feedback():
    """The searches as a campaign drives them (children of cases that added coverage), several batches."""
    rng = np.random.default_rng(0)
    for name in ("deeptest", "deephunter", "random", "sweep"):
        mutants.PREFIXES.clear()
        strat = make_strategy(name, len(SEEDS), NAMES, 3)
        for _ in range(3):
            cs = strat.next_batch(40)
            assert np.array_equal(build_images(SEEDS, cs), one_by_one(SEEDS, cs))
            strat.feedback(cs, rng.integers(0, 3, len(cs)), np.zeros(len(cs), bool))


def test_prefix_cache_follows_its_seed_array_and_notices_changes():
    cache = PrefixCache()
    seeds = SEEDS.copy()
    link = ((Transform("brightness", delta=30),), (5,))
    longer = (link[0] + (Transform("contrast", alpha=2.0),), (5, 6))
    image = Chain(*link)(seeds[2])
    cache.store(seeds, [2], [link], image[None])
    assert cache.starts(seeds, [2], [longer])[0][0] == 1
    assert cache.starts(seeds, [1], [longer]) == [None]  # another seed
    seeds[2, 0, 0] ^= 255  # the seed changed in place: its entries go
    assert cache.starts(seeds, [2], [longer]) == [None]
    cache.store(seeds, [2], [link], image[None])
    assert cache.starts(seeds.copy(), [2], [longer]) == [None]  # another array: a fresh cache
    assert cache.bytes == 0


def test_prefix_cache_is_bounded():
    one = SEEDS[0].nbytes
    cache = PrefixCache(max_bytes=6 * one)
    cs = [((Transform("brightness", delta=d),), (0,)) for d in range(1, 11)]
    cache.store(SEEDS, [0] * 10, cs, np.stack([SEEDS[0]] * 10))
    assert cache.bytes <= 6 * one
    assert cache.stored == 10
    kept = [cache.starts(SEEDS, [0], [(c[0] + (Transform("gamma", gamma=2.0),), (0, 0))])[0] for c in cs]
    assert [k is not None for k in kept] == [False] * 5 + [True] * 5  # the oldest went first (a copy of the seed counts too)
