"""Search strategies: determinism, DeepTest's depth-first greedy loop, DeepHunter's queue, sweeps, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deeptest_iot.errors import ConfigError
from deeptest_iot.engine.search import DeepHunterStrategy, DeepTestStrategy, SweepStrategy, make_strategy

NAMES = ["brightness", "contrast", "fog", "rotation", "translation"]


def _ids(cases):
    return [(c.case_id, c.seed_index, json.dumps(c.chain.to_json())) for c in cases]


@pytest.mark.parametrize("name", ["random", "deeptest", "deephunter", "sweep"])
def test_same_seed_same_cases(name):
    a = make_strategy(name, 5, NAMES, 7)
    b = make_strategy(name, 5, NAMES, 7)
    assert _ids(a.next_batch(30)) == _ids(b.next_batch(30))
    c = make_strategy(name, 5, NAMES, 8)
    if name != "sweep":  # a sweep is the same plan whatever the seed (only link seeds differ)
        assert _ids(a.next_batch(30)) != _ids(c.next_batch(30))


def test_case_does_not_depend_on_batch_size():
    a = make_strategy("random", 5, NAMES, 3)
    b = make_strategy("random", 5, NAMES, 3)
    assert _ids(a.next_batch(10) + a.next_batch(10)) == _ids(b.next_batch(20))


def test_unknown_names_refused():
    with pytest.raises(ConfigError, match="unknown transform"):
        make_strategy("random", 3, ["fog", "teleport"], 0)
    with pytest.raises(ConfigError, match="unknown strategy"):
        make_strategy("annealing", 3, NAMES, 0)


def test_deeptest_is_breadth_first_and_reuses_winners():
    """Every seed gets its try before any child is deepened (issue 13: depth first visited 13 of 200
    real seeds); a child that raised coverage is deepened after the pass, within the chain cap."""
    s = DeepTestStrategy(3, ["brightness", "contrast", "fog", "gamma", "rain"], 0, tries=4, max_depth=2, max_links=3)
    first = s.next_batch(3)
    assert [c.seed_index for c in first] == [0, 1, 2]  # one try per seed
    assert all(len(c.chain) == 2 for c in first)
    s.feedback(first, np.array([0, 5, 0]), np.zeros(3, bool))
    winner = tuple(t.name for t in first[1].chain)
    assert s.winners[0] == winner
    nxt = s.next_batch(4)
    # The pass ends with the new child (seed 1's successful chain), then the seeds' second tries.
    assert [c.seed_index for c in nxt] == [1, 0, 1, 2]
    child = nxt[0]
    assert len(child.chain) == 3 and child.chain.to_json()[:2] == first[1].chain.to_json()  # capped at 3 links
    assert tuple(t.name for t in nxt[1].chain) == winner  # the seeds' second try reuses the winner first
    s.feedback(nxt, np.array([9, 0, 0, 0]), np.zeros(4, bool))  # depth 2 (and 3 links) reached: not deepened
    assert all(node[2] <= 1 for node in s.frontier)


def test_deeptest_reaches_every_seed_within_a_budget_of_a_few_times_the_seeds():
    s = DeepTestStrategy(200, NAMES, 0)
    seen = set()
    for _ in range(5):
        cases = s.next_batch(200)
        seen |= {c.seed_index for c in cases}
        s.feedback(cases, np.ones(len(cases)), np.zeros(len(cases), bool))  # every try raises coverage
    assert seen == set(range(200))
    assert max(len(c.chain) for c in cases) <= 3


@pytest.mark.parametrize("name", ["random", "deeptest", "deephunter", "sweep"])
def test_every_strategy_tries_every_seed_within_five_times_the_seeds(name):
    s = make_strategy(name, 50, NAMES, 3)
    seen, tried = set(), 0
    while tried < 250 and not s.done:
        cases = s.next_batch(25)
        tried += len(cases)
        seen |= {c.seed_index for c in cases}
        s.feedback(cases, np.ones(len(cases)), np.zeros(len(cases), bool))
    assert seen == set(range(50))


@pytest.mark.parametrize("name", ["random", "deeptest", "deephunter"])
def test_chains_respect_the_link_cap(name):
    s = make_strategy(name, 3, NAMES, 1, max_links=2)
    for _ in range(20):
        cases = s.next_batch(10)
        assert all(1 <= len(c.chain) <= 2 for c in cases)
        s.feedback(cases, np.ones(len(cases)), np.zeros(len(cases), bool))


def test_deephunter_queue_grows_with_coverage_and_keeps_one_affine():
    s = DeepHunterStrategy(2, ["rotation", "translation", "fog"], 0, mutants=8)
    cases = s.next_batch(8)
    assert len(s.queue) == 2
    gains = np.zeros(8)
    geometric = [i for i, c in enumerate(cases) if c.chain.transforms[0].kind == "geometric"]
    assert geometric, "with 2 of 3 names geometric, 8 mutants should include one"
    gains[geometric[0]] = 3
    s.feedback(cases, gains, np.zeros(8, bool))
    assert len(s.queue) == 3
    # Mutants of the new element add no second affine transform.
    for _ in range(20):
        for c in s.next_batch(8):
            assert c.chain.affine_count <= 1


def test_deephunter_selection_prefers_less_fuzzed():
    s = DeepHunterStrategy(2, NAMES, 0, mutants=1)
    s.fuzzed = [10, 0]
    w = s._weights()
    assert w[1] > w[0]
    np.testing.assert_allclose(w, np.array([0.3, 0.8]) / 1.1)


def test_sweep_covers_every_preset_transform_on_every_seed_once():
    s = SweepStrategy(3, ["rotation", "brightness"], 0, presets=("deeptest-rotation", "deeptest-brightness"))
    cases = []
    while not s.done:
        cases += s.next_batch(7)
    assert len(cases) == 20 * 3
    seen = {(json.dumps(c.chain.transforms[0].to_dict(), sort_keys=True), c.seed_index) for c in cases}
    assert len(seen) == 60


@pytest.mark.parametrize("name", ["random", "deeptest", "deephunter", "sweep"])
def test_state_round_trip_continues_identically(name):
    a = make_strategy(name, 4, NAMES, 1)
    first = a.next_batch(12)
    a.feedback(first, np.arange(len(first)) % 3, np.zeros(len(first), bool))
    state = json.loads(json.dumps(a.state()))
    b = make_strategy(name, 4, NAMES, 1)
    b.restore(state)
    assert _ids(a.next_batch(12)) == _ids(b.next_batch(12))


@pytest.mark.parametrize("name", ["random", "deeptest", "deephunter"])
def test_at_most_one_affine_transform_per_chain(name):
    s = make_strategy(name, 3, ["rotation", "translation", "scale", "hflip", "fog"], 5)
    for _ in range(15):
        cases = s.next_batch(20)
        for c in cases:
            assert c.chain.affine_count <= 1, c.name
        s.feedback(cases, np.ones(len(cases)), np.zeros(len(cases), bool))
