"""Hand-computed values of every coverage criterion on tiny arrays, including the edge conventions."""

import numpy as np
import pytest

from deeptest_iot.coverage import CoverageTracker, Profile, parse_spec
from deeptest_iot.errors import ConfigError, InputError


def acts(**layers):
    return {k: np.asarray(v, dtype=np.float64) for k, v in layers.items()}


# -- NC ------------------------------------------------------------------------------------------

def test_nc_hand_computed_with_constant_layer():
    tr = CoverageTracker(["nc:0.5"], {"l1": 3, "l2": 2})
    # input 0: l1 scaled [0, .5, 1] -> neuron 2 only (0.5 is not > 0.5); l2 constant -> all zeros
    # input 1: l1 scaled [1, 0, .5] -> neuron 0; l2 scaled [0, 1] -> neuron 1
    gains = tr.update(acts(l1=[[0, 1, 2], [2, 0, 1]], l2=[[3, 3], [1, 5]]))
    assert gains.tolist() == [1, 2]
    assert tr.coverage() == {"nc:0.5": pytest.approx(3 / 5)}
    per = tr.summary()["criteria"]["nc:0.5"]["per_layer"]
    assert per["l1"]["covered"] == 2 and per["l2"]["covered"] == 1
    # l1 scaled [.5, 1, 0] adds neuron 1; l2 [7, 7] constant adds nothing
    assert tr.update(acts(l1=[[5, 6, 4]], l2=[[7, 7]])).tolist() == [1]
    assert tr.coverage()["nc:0.5"] == pytest.approx(4 / 5)


def test_nc_constant_layer_gives_zero_even_at_threshold_zero():
    tr = CoverageTracker(["nc:0"], {"l": 4})
    assert tr.update(acts(l=[[2.5] * 4, [0.0] * 4])).tolist() == [0, 0]
    assert tr.coverage()["nc:0"] == 0.0


def test_two_inputs_hitting_the_same_new_neuron_only_first_counts():
    tr = CoverageTracker(["nc:0.5"], {"l": 3})
    assert tr.update(acts(l=[[0, 0, 1], [0, 0, 1], [1, 0, 0]])).tolist() == [1, 0, 1]
    assert tr.update(acts(l=[[0, 0, 1]])).tolist() == [0]


# -- profile-based criteria ------------------------------------------------------------------------

@pytest.fixture
def profile():
    # n0 in [0, 4] (k=4 sections of width 1), n1 in [-1, 1] (width 0.5), n2 constant 2 (zero width)
    return Profile.from_batches([acts(l=[[0, -1, 2], [4, 1, 2]])], fingerprint="model-A")


def test_profile_bounds(profile):
    assert profile.low["l"].tolist() == [0, -1, 2]
    assert profile.high["l"].tolist() == [4, 1, 2]


def test_kmnc_nbc_snac_hand_computed(profile):
    tr = CoverageTracker(["kmnc:4", "nbc", "snac"], {"l": 3}, profile)
    batch = acts(l=[[4.0, -1.0, 1.0],   # n0 == high -> last section 3; n1 == low -> section 0; n2 below
                    [5.0, 0.25, 2.0],   # n0 above (NBC upper, SNAC); n1 section 2; n2 == low == high
                    [-0.5, 2.0, 2.0],   # n0 below (NBC lower); n1 above (NBC upper, SNAC)
                    [1.5, 0.25, 2.0]])  # n0 section 1 (new); n1 section 2 already covered
    gains = tr.update(batch)
    g = tr.last_gains
    assert g["kmnc:4"].tolist() == [2, 2, 0, 1]  # input 1: n1 section 2 and n2's (zero-width) last section
    assert g["nbc"].tolist() == [1, 1, 2, 0]    # input 0: n2 below its low (2)
    assert g["snac"].tolist() == [0, 1, 1, 0]
    assert gains.tolist() == [3, 4, 3, 1]
    kmnc = tr.criteria["kmnc:4"].state["l"]      # shape (k, neurons)
    assert kmnc.shape == (4, 3)
    assert np.argwhere(kmnc).tolist() == [[0, 1], [1, 0], [2, 1], [3, 0], [3, 2]]
    cov = tr.coverage()
    assert cov["kmnc:4"] == pytest.approx(5 / 12)
    assert cov["nbc"] == pytest.approx(4 / 6)   # upper {n0, n1}, lower {n0, n2}
    assert cov["snac"] == pytest.approx(2 / 3)
    per = tr.summary()["criteria"]["nbc"]["per_layer"]["l"]
    assert (per["upper"], per["lower"]) == (2, 2)


def test_value_equal_to_high_is_last_section_and_not_boundary(profile):
    tr = CoverageTracker(["kmnc:4", "nbc", "snac"], {"l": 3}, profile)
    tr.update(acts(l=[[4.0, 1.0, 2.0]]))
    assert tr.criteria["kmnc:4"].state["l"][3].tolist() == [True, True, True]
    assert tr.coverage()["nbc"] == 0.0 and tr.coverage()["snac"] == 0.0


def test_outside_range_counts_only_for_nbc_and_snac(profile):
    tr = CoverageTracker(["kmnc:4", "nbc", "snac"], {"l": 3}, profile)
    # upper: n0 (4.0001), n2 (2.5), n1 (1e30); lower: n1 (-1.0001), n0 (-1e30), n2 (1.5)
    tr.update(acts(l=[[4.0001, -1.0001, 2.5], [-1e30, 1e30, 1.5]]))
    assert tr.coverage()["kmnc:4"] == 0.0
    assert tr.coverage()["nbc"] == pytest.approx(1.0)
    assert tr.coverage()["snac"] == pytest.approx(1.0)


def test_kmnc_float32_activations_match_float64(profile):
    batch = acts(l=[[0.5, -0.75, 2.0], [3.99, 0.9, 1.0], [2.0, 0.0, 2.0]])
    t64 = CoverageTracker(["kmnc:4"], {"l": 3}, profile)
    t32 = CoverageTracker(["kmnc:4"], {"l": 3}, profile)
    assert t64.update(batch).tolist() == t32.update({"l": batch["l"].astype(np.float32)}).tolist()
    assert np.array_equal(t64.criteria["kmnc:4"].state["l"], t32.criteria["kmnc:4"].state["l"])


def test_neuron_never_seen_stays_uncovered(profile):
    tr = CoverageTracker(["kmnc:4", "nbc", "nc:0.5", "tknc:1"], {"l": 3}, profile)
    tr.update(acts(l=[[3.5, 0.0, 2.0], [3.6, 0.1, 2.0]]))  # n0 always the largest, n1 inside, n2 flat
    s = tr.summary()["criteria"]
    assert tr.criteria["kmnc:4"].state["l"][:, 0].tolist() == [False, False, False, True]
    assert not tr.criteria["tknc:1"].state["l"][0, 1:].any()
    assert s["tknc:1"]["covered"] == 1 and s["nbc"]["covered"] == 0


def test_profile_criteria_without_profile_is_a_clear_config_error():
    for spec in ("kmnc:10", "nbc", "snac"):
        with pytest.raises(ConfigError, match="needs a training profile"):
            CoverageTracker([spec], {"l": 3})


# -- top-k -----------------------------------------------------------------------------------------

def test_tknc_hand_computed_with_ties():
    tr = CoverageTracker(["tknc:2"], {"a": 4, "b": 2})
    # a: [3,1,2,0] -> {0,2}; b: k >= layer size -> whole layer {0,1}
    # a: constant row -> ties broken by lower index -> {0,1}: neuron 1 is new
    gains = tr.update(acts(a=[[3, 1, 2, 0], [5, 5, 5, 5]], b=[[0, 1], [1, 0]]))
    assert gains.tolist() == [4, 1]
    assert tr.coverage()["tknc:2"] == pytest.approx(5 / 6)
    # ties at the k-th place: [1, 3, 3, 3] -> 3 wins, then the lowest-index 3s: {1, 2}
    tr2 = CoverageTracker(["tknc:2"], {"a": 4})
    tr2.update(acts(a=[[1, 3, 3, 3]]))
    assert tr2.criteria["tknc:2"].state["a"][0].tolist() == [False, True, True, False]


def test_tknp_counts_distinct_patterns():
    tr = CoverageTracker(["tknp:1"], {"a": 3, "b": 2})
    gains = tr.update(acts(a=[[1, 0, 0], [2, 1, 0], [0, 1, 0], [0, 9, 1]],
                           b=[[0, 1], [0, 5], [0, 1], [1, 1]]))
    # patterns: (a0, b1), (a0, b1) again, (a1, b1), (a1, b0 by the tie rule)
    assert gains.tolist() == [1, 0, 1, 1]
    assert tr.coverage()["tknp:1"] == 3
    assert tr.update(acts(a=[[0, 1, 0]], b=[[0, 2]])).tolist() == [0]


# -- specs and refusals ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec, name", [("nc", "nc:0.75"), ("NC:0.50", "nc:0.5"), ("kmnc", "kmnc:10"),
                                        (" kmnc : 100 ", "kmnc:100"), ("nbc", "nbc"), ("snac", "snac"),
                                        ("tknc", "tknc:3"), ("tknp:2", "tknp:2")])
def test_spec_defaults_and_canonical_names(spec, name):
    assert parse_spec(spec).name == name


@pytest.mark.parametrize("spec, message", [
    ("foo", "unknown coverage criterion"), ("nc:abc", "must be a number"), ("nc:1", r"\[0, 1\)"),
    ("nc:-0.1", r"\[0, 1\)"), ("kmnc:0", "k >= 1"), ("kmnc:2.5", "whole number"), ("nbc:3", "no parameter"),
    ("tknc:", "empty parameter"), (5, "must be a string")])
def test_bad_specs_raise_config_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


def test_duplicate_and_empty_criteria_refused():
    with pytest.raises(ConfigError, match="listed twice"):
        CoverageTracker(["nc:0.5", "NC:0.50"], {"l": 2})
    with pytest.raises(ConfigError, match="no coverage criteria"):
        CoverageTracker([], {"l": 2})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_activations_refused_without_changing_state(bad):
    tr = CoverageTracker(["nc:0.5", "tknc:1"], {"a": 2, "b": 3})
    before = tr.summary()
    batch = acts(a=[[0, 1], [1, 0]], b=[[0, 1, 2], [0, bad, 2]])
    with pytest.raises(InputError, match="layer 'b' contain.*rows \\[1\\]"):
        tr.update(batch)
    assert tr.summary() == before


def test_wrong_layers_and_shapes_refused():
    tr = CoverageTracker(["nc:0.5"], {"a": 2, "b": 3})
    with pytest.raises(InputError, match="missing \\['b'\\]"):
        tr.update(acts(a=[[0, 1]]))
    with pytest.raises(InputError, match="3 neurons in the activations but 2"):
        tr.update(acts(a=[[0, 1, 2]], b=[[0, 1, 2]]))
    with pytest.raises(InputError, match="same batch"):
        tr.update(acts(a=[[0, 1]], b=[[0, 1, 2], [0, 1, 2]]))
    with pytest.raises(ConfigError, match="layer_sizes"):
        CoverageTracker(["nc"], {})


def test_conv_feature_maps_are_spatially_averaged():
    fmap = np.zeros((1, 2, 2, 3))
    fmap[0, :, :, 2] = [[4, 0], [0, 0]]   # channel means [0, 0, 1]; the map spans [0, 4]
    tr = CoverageTracker(["nc:0.2", "nc:0.5", "nc-means:0.5"], {"conv": 3})
    # nc scales the whole map first (channel 2: mean of [[1, 0], [0, 0]] = 0.25); nc-means scales the means
    assert tr.update({"conv": fmap}).tolist() == [2]
    assert tr.criteria["nc:0.2"].state["conv"][0].tolist() == [False, False, True]
    assert tr.criteria["nc:0.5"].state["conv"][0].tolist() == [False, False, False]
    assert tr.criteria["nc-means:0.5"].state["conv"][0].tolist() == [False, False, True]


def test_empty_batch_returns_empty_gains():
    tr = CoverageTracker(["nc:0.5"], {"a": 2})
    assert tr.update({"a": np.zeros((0, 2))}).shape == (0,)


def test_kmnc_extreme_float32_values_and_dead_neurons():
    # n0 dead in training (low == high == 0, like a ReLU never active); n1 at the float32 edge
    prof = Profile.from_batches([{"l": np.array([[0.0, 3e38], [0.0, 3e38]], dtype=np.float32)}], "fp")
    tr = CoverageTracker(["kmnc:5", "nbc"], {"l": 2}, prof)
    gains = tr.update({"l": np.array([[0.0, -3.4e38], [0.0, 3e38], [-1e-30, 3.4e38]], dtype=np.float32)})
    assert tr.last_gains["kmnc:5"].tolist() == [1, 1, 0]
    assert np.argwhere(tr.criteria["kmnc:5"].state["l"]).tolist() == [[4, 0], [4, 1]]
    assert tr.last_gains["nbc"].tolist() == [1, 0, 2]
    assert gains.tolist() == [2, 1, 2]


def test_nc_float32_range_overflow():
    tr = CoverageTracker(["nc:0.5"], {"l": 3})
    # max - min overflows float32: scaled values must still be [0, 1, 0.5]
    assert tr.update({"l": np.array([[-3e38, 3e38, 0.0]], dtype=np.float32)}).tolist() == [1]
    assert tr.criteria["nc:0.5"].state["l"][0].tolist() == [False, True, False]
