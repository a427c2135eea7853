"""Tracker properties (Hypothesis), cross-checks against plain per-neuron loops, merge and files."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deeptest_iot.coverage import CoverageTracker, Profile
from deeptest_iot.errors import ConfigError

SIZES = {"a": 3, "b": 4}
ALL = ["nc:0.5", "kmnc:4", "nbc", "snac", "tknc:2", "tknp:1"]
PROFILE = Profile.from_batches([{"a": np.array([[-2.0, -1, 0], [2, 1, 0]]),
                                 "b": np.array([[-2.0, -2, -1, 0], [2, 0, 1, 0.5]])}], fingerprint="m")

# values on a 0.5 grid: ties, constant rows and values equal to the profiled bounds happen often
grid = st.integers(-6, 6).map(lambda i: i / 2)


@st.composite
def batches(draw, min_rows=0, max_rows=6):
    n = draw(st.integers(min_rows, max_rows))
    return {name: draw(arrays(np.float64, (n, size), elements=grid)) for name, size in SIZES.items()}


def tracker():
    return CoverageTracker(ALL, SIZES, PROFILE)


def state(tr):
    """Everything a tracker has covered, comparable with ==."""
    out = {}
    for name, crit in tr.criteria.items():
        out[name] = sorted(crit.patterns) if name.startswith("tknp") else crit.state_array().tolist()
    return out


def concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in SIZES}


def covered_items(tr):
    return sum(len(c.patterns) if n.startswith("tknp") else int(c.state_array().sum()) for n, c in tr.criteria.items())


PROPS = settings(max_examples=40, deadline=None)


@PROPS
@given(st.lists(batches(), min_size=1, max_size=4))
def test_coverage_never_decreases_and_gains_count_new_items(parts):
    tr = tracker()
    prev = tr.coverage()
    for b in parts:
        before = covered_items(tr)
        gains = tr.update(b)
        assert gains.shape == (len(b["a"]),) and (gains >= 0).all()
        assert int(gains.sum()) == covered_items(tr) - before
        now = tr.coverage()
        assert all(now[k] >= prev[k] for k in now)
        prev = now


@PROPS
@given(st.lists(batches(), min_size=1, max_size=4))
def test_one_batch_equals_several_smaller_batches(parts):
    whole, split = tracker(), tracker()
    g_whole = whole.update(concat(parts))
    g_split = np.concatenate([split.update(b) for b in parts])
    assert g_whole.tolist() == g_split.tolist()  # first-hit credit is batch-order invariant
    assert state(whole) == state(split)
    assert whole.coverage() == split.coverage()


@PROPS
@given(batches(), batches(), batches())
def test_merge_commutative_associative_and_equal_to_one_tracker(x, y, z):
    def fed(b):
        t = tracker()
        t.update(b)
        return t

    single = tracker()
    single.update(concat([x, y, z]))
    ab = fed(x).merge(fed(y))
    ba = fed(y).merge(fed(x))
    assert state(ab) == state(ba)
    left = fed(x).merge(fed(y)).merge(fed(z))
    right = fed(x).merge(fed(y).merge(fed(z)))
    assert state(left) == state(right) == state(single)
    assert left.coverage() == single.coverage()
    assert left.n_inputs == single.n_inputs


def test_merge_refuses_incompatible_trackers():
    with pytest.raises(ConfigError, match="different criteria"):
        tracker().merge(CoverageTracker(["nc:0.5"], SIZES))
    other_profile = Profile.from_batches([{"a": np.ones((2, 3)), "b": np.zeros((2, 4))}], fingerprint="m")
    with pytest.raises(ConfigError, match="different profiles"):
        tracker().merge(CoverageTracker(ALL, SIZES, other_profile))


# -- cross-checks against straightforward loops ----------------------------------------------------

def reference_nc(layers, t):
    covered = {name: [False] * a.shape[1] for name, a in layers.items()}
    gains = []
    for i in range(len(next(iter(layers.values())))):
        g = 0
        for name, a in layers.items():
            row = [float(v) for v in a[i]]
            lo, hi = min(row), max(row)
            for j, v in enumerate(row):
                scaled = 0.0 if hi == lo else (v - lo) / (hi - lo)
                if scaled > t and not covered[name][j]:
                    covered[name][j] = True
                    g += 1
        gains.append(g)
    return covered, gains


def reference_kmnc(layers, profile, k):
    hit, gains = set(), []
    for i in range(len(next(iter(layers.values())))):
        g = 0
        for name, a in layers.items():
            for j, v in enumerate(a[i]):
                low, high = profile.low[name][j], profile.high[name][j]
                if low <= v <= high:
                    s = k - 1 if v == high else int(np.floor((v - low) / (high - low) * k))
                    if (name, s, j) not in hit:
                        hit.add((name, s, j))
                        g += 1
        gains.append(g)
    return hit, gains


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nc_matches_per_neuron_reference_loop(seed):
    rng = np.random.default_rng(seed)
    sizes = {"conv1": 8, "conv2": 16, "dense": 5}
    tr = CoverageTracker(["nc:0.2", "nc:0.75"], sizes)
    all_gains = {0.2: [], 0.75: []}
    batches_ = []
    for n in (7, 1, 12):
        b = {k: rng.standard_normal((n, s)) * rng.uniform(0.1, 10) for k, s in sizes.items()}
        b["dense"][0] = 3.0  # a constant row
        batches_.append(b)
        tr.update(b)
        for t in all_gains:
            all_gains[t].extend(tr.last_gains[f"nc:{t:g}"].tolist())
    layers = concat_layers(batches_, sizes)
    for t in (0.2, 0.75):
        covered, gains = reference_nc(layers, t)
        assert gains == all_gains[t]
        for name in sizes:
            assert tr.criteria[f"nc:{t:g}"].state[name][0].tolist() == covered[name]


def concat_layers(parts, sizes):
    return {k: np.concatenate([p[k] for p in parts]) for k in sizes}


@pytest.mark.parametrize("n_test", [40, 150])  # 150 x 209 cells: the dense first-hit path runs too
def test_kmnc_matches_per_neuron_reference_loop(n_test):
    rng = np.random.default_rng(5)
    sizes = {"a": 6, "b": 9, "wide": 194}
    train = {k: rng.standard_normal((50, s)) for k, s in sizes.items()}
    prof = Profile.from_batches([train], fingerprint="m")
    test = {k: rng.standard_normal((n_test, s)) * 1.3 for k, s in sizes.items()}
    test["a"][3] = prof.high["a"]  # values exactly at the profiled max
    test["b"][4] = prof.low["b"]
    tr = CoverageTracker(["kmnc:7"], sizes, prof)
    gains = tr.update(test)
    hit, ref_gains = reference_kmnc(test, prof, 7)
    assert gains.tolist() == ref_gains
    got = {(name, int(s), int(j)) for name in sizes for s, j in np.argwhere(tr.criteria["kmnc:7"].state[name])}
    assert got == hit


@pytest.mark.parametrize("n_keys, size", [(50, 30), (50, 20000), (5000, 20000)])
def test_first_positions_both_paths_match_a_loop(n_keys, size):
    from deeptest_iot.coverage.criteria import first_positions

    rng = np.random.default_rng(size)
    keys = rng.integers(0, n_keys, size)
    positions = np.sort(rng.choice(10 * size, size, replace=False))
    ref = {}
    for k, p in zip(keys.tolist(), positions.tolist()):
        ref.setdefault(k, p)
    items, first = first_positions(keys, positions, n_keys)
    assert dict(zip(items.tolist(), first.tolist())) == ref


def test_tknc_matches_sorting_reference():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 4, size=(30, 10)).astype(float)  # many ties
    tr = CoverageTracker(["tknc:3"], {"a": 10})
    tr.update({"a": a})
    ref = np.zeros(10, bool)
    for row in a:
        ref[np.argsort(-row, kind="stable")[:3]] = True  # k largest, lower index first among ties
    assert tr.criteria["tknc:3"].state["a"][0].tolist() == ref.tolist()


# -- files and summaries ---------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tr = tracker()
    tr.update({k: rng.uniform(-3, 3, (20, s)) for k, s in SIZES.items()})
    path = tmp_path / "cov.npz"
    tr.save(path)
    back = CoverageTracker.load(path, fingerprint="m", layer_sizes=SIZES)
    assert state(back) == state(tr) and back.summary() == tr.summary()
    nxt = {k: rng.uniform(-3, 3, (9, s)) for k, s in SIZES.items()}
    assert back.update(nxt).tolist() == tr.update(nxt).tolist()
    assert state(back.merge(tr)) == state(tr)  # a loaded tracker merges with a live one
    assert [p.name for p in tmp_path.iterdir()] == ["cov.npz"]  # no temp file left behind
    with pytest.raises(ConfigError, match="another model"):
        CoverageTracker.load(path, fingerprint="other")
    with pytest.raises(ConfigError, match="other layers"):
        CoverageTracker.load(path, layer_sizes={"a": 3})
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot read"):
        CoverageTracker.load(tmp_path / "junk.npz")


def test_summary_is_json_and_per_layer():
    tr = tracker()
    tr.update({"a": np.array([[0.0, 1, 2]]), "b": np.array([[0.0, 1, 2, 3]])})
    s = json.loads(json.dumps(tr.summary(), allow_nan=False))
    assert s["inputs"] == 1 and s["neurons"] == 7
    assert set(s["criteria"]) == set(ALL)
    nc = s["criteria"]["nc:0.5"]
    assert nc["covered"] == sum(v["covered"] for v in nc["per_layer"].values()) == 3
    assert s["criteria"]["tknp:1"]["patterns"] == 1
    assert s["layers"] == [{"name": "a", "neurons": 3}, {"name": "b", "neurons": 4}]


def test_tracker_refuses_profile_of_another_model():
    with pytest.raises(ConfigError, match="another model"):
        CoverageTracker(ALL, SIZES, PROFILE, fingerprint="not-m")
    with pytest.raises(ConfigError, match="do not match"):
        CoverageTracker(ALL, {"a": 3, "b": 5}, PROFILE)


def test_large_batch_equals_one_input_at_a_time():
    """Batches larger than the tracker's internal chunk give the same gains as single inputs."""
    rng = np.random.default_rng(11)
    big = {k: rng.integers(-6, 7, size=(300, s)) / 2 for k, s in SIZES.items()}
    whole, single = tracker(), tracker()
    g_whole = whole.update(big)
    g_single = [int(single.update({k: v[i:i + 1] for k, v in big.items()})[0]) for i in range(300)]
    assert g_whole.tolist() == g_single
    assert state(whole) == state(single)
    assert {k: v.tolist() for k, v in whole.last_gains.items()}.keys() == set(ALL)
