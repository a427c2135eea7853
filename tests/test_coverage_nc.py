"""NC as DeepXplore's and DeepTest's code compute it: min-max scale a layer's whole output of one
input (every element of a conv map), then average each channel; ``nc-means`` averages first.

(a) hand-computed values on a tiny conv model run through load_model (one forward pass carries the
channel means and each map's [min, max]); (b) the shipped real-frames model against a plain
re-implementation of the reference code (a Keras sub-model per layer, NumPy min-max over the map,
then channel means) on shipped frames: the same covered neurons.
"""

import numpy as np
import pytest

from deeptest_iot.coverage import CoverageTracker
from deeptest_iot.coverage.activations import Activations
from deeptest_iot.errors import InputError

# One 2x2 RGB frame. A 1x1 identity convolution copies R, G, B into channels c0, c1, c2:
#   c0 = R = [[0, 10], [20, 30]]  mean 15
#   c1 = G = [[5, 5], [5, 5]]     mean 5
#   c2 = B = [[40, 0], [0, 0]]    mean 10
# Whole map: min 0, max 40. Reference: channel means of (v - 0) / 40 = [0.375, 0.125, 0.25].
# nc-means: (means - 5) / (15 - 5) = [1, 0, 0.5].
FRAME = np.zeros((1, 2, 2, 3), np.uint8)
FRAME[0, :, :, 0] = [[0, 10], [20, 30]]
FRAME[0, :, :, 1] = 5
FRAME[0, 0, 0, 2] = 40
# The dense layer reads c0 at (1, 1) = 30, c1 at (0, 0) = 5 and c2 at (0, 0) = 40: scaled over its
# units [25/35, 0, 1] under both definitions.
EXPECTED = {  # t: (reference conv, means conv, dense)
    0.1: ([True, True, True], [True, False, True], [True, False, True]),
    0.2: ([True, False, True], [True, False, True], [True, False, True]),
    0.3: ([True, False, False], [True, False, True], [True, False, True]),
    0.8: ([False, False, False], [True, False, False], [False, False, True]),
}


@pytest.fixture(scope="module")
def tiny():
    import keras

    from deeptest_iot.model.core import load_model

    inp = keras.Input((2, 2, 3))
    conv = keras.layers.Conv2D(3, 1, use_bias=False, name="conv")
    x = conv(inp)
    flat = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(3, use_bias=False, name="fc")
    out = dense(flat)
    model = keras.Model(inp, out)
    conv.set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3)])
    k = np.zeros((12, 3), np.float32)  # flat index (row * 2 + col) * 3 + channel
    k[(1 * 2 + 1) * 3 + 0, 0] = 1
    k[0 + 1, 1] = 1
    k[0 + 2, 2] = 1
    dense.set_weights([k])
    return load_model(model, card={"task": "classification", "scale": 1.0})


def test_run_carries_each_maps_range(tiny):
    acts = tiny.run(FRAME).activations
    assert isinstance(acts, Activations) and list(acts) == ["conv", "fc"]
    np.testing.assert_allclose(acts["conv"], [[15, 5, 10]])
    np.testing.assert_allclose(acts["fc"], [[30, 5, 40]])
    assert list(acts.ranges) == ["conv"]  # Dense output is its neuron values: no separate range
    np.testing.assert_allclose(acts.ranges["conv"], [[0, 40]])
    assert [t.spatial for t in tiny.layers] == [True, False]


@pytest.mark.parametrize("t", sorted(EXPECTED))
def test_nc_hand_computed_on_tiny_conv_model(tiny, t):
    ref_conv, means_conv, dense = EXPECTED[t]
    tr = CoverageTracker([f"nc:{t}", f"nc-means:{t}"], tiny.layer_sizes, fingerprint=tiny.fingerprint)
    gains = tr.update(tiny.run(FRAME).activations)
    nc, means = tr.criteria[f"nc:{t:g}"].state, tr.criteria[f"nc-means:{t:g}"].state
    assert nc["conv"][0].tolist() == ref_conv
    assert means["conv"][0].tolist() == means_conv
    assert nc["fc"][0].tolist() == dense and means["fc"][0].tolist() == dense
    assert gains.tolist() == [sum(ref_conv) + sum(means_conv) + 2 * sum(dense)]


def test_constant_map_covers_nothing_and_full_maps_give_the_reference(tiny):
    # An all-zero frame: every map is constant (max == min), scaled to zeros, nothing covered even at t = 0.
    tr = CoverageTracker(["nc:0"], tiny.layer_sizes)
    tr.update(tiny.run(np.zeros((1, 2, 2, 3), np.uint8)).activations)
    assert tr.coverage()["nc:0"] == 0.0
    # Plain dicts: a full (N, H, W, C) map gives the reference; channel means alone give nc-means.
    conv_map = FRAME.astype(np.float32)  # the identity conv's output is the frame itself
    fc = np.array([[30, 5, 40]], np.float32)
    full = CoverageTracker(["nc:0.3"], tiny.layer_sizes)
    full.update({"conv": conv_map, "fc": fc})
    assert full.criteria["nc:0.3"].state["conv"][0].tolist() == EXPECTED[0.3][0]
    means_only = CoverageTracker(["nc:0.3"], tiny.layer_sizes)
    means_only.update({"conv": conv_map.mean(axis=(1, 2)), "fc": fc})
    assert means_only.criteria["nc:0.3"].state["conv"][0].tolist() == EXPECTED[0.3][1]


def test_bad_ranges_are_refused_before_any_state_changes():
    tr = CoverageTracker(["nc:0.2"], {"conv": 3})
    acts = Activations({"conv": np.ones((2, 3))}, ranges={"conv": np.zeros((2, 3))})
    with pytest.raises(InputError, match="range of layer 'conv'"):
        tr.update(acts)
    with pytest.raises(InputError, match="not tracked"):
        tr.update(Activations({"conv": np.ones((2, 3))}, ranges={"other": np.zeros((2, 2))}))
    with pytest.raises(InputError, match="NaN or Inf"):
        tr.update(Activations({"conv": np.ones((2, 3))}, ranges={"conv": np.array([[0, np.inf], [0, 1]])}))
    assert tr.coverage()["nc:0.2"] == 0.0 and tr.n_inputs == 0


def test_old_tracker_files_load_their_nc_as_nc_means(tmp_path):
    tr = CoverageTracker(["nc:0.5", "tknc:1"], {"l": 3})
    tr.update({"l": np.array([[0.0, 1.0, 2.0]])})
    path = tmp_path / "old.npz"
    tr.save(path)
    with np.load(path) as z:  # rewrite it as a format-1 file, as earlier versions wrote it
        arrays = dict(z)
    arrays["format"] = np.array("deeptest-iot-coverage/1")
    np.savez(path, **arrays)
    old = CoverageTracker.load(path)
    assert old.names == ["nc-means:0.5", "tknc:1"]
    assert old.criteria["nc-means:0.5"].state["l"][0].tolist() == [False, False, True]


# -- (b) the real-frames sample model against a plain re-implementation of the reference code ------


def reference_nc(keras_model, layer_names, net_input, t):
    """What DeepXplore's / DeepTest's update_coverage does, one input at a time: the layer's output
    through a sub-model, min-max scaled over the whole output, then each channel's mean > t."""
    import keras

    covered = {}
    for name in layer_names:
        sub = keras.Model(keras_model.inputs[0], keras_model.get_layer(name).output)
        out = np.asarray(sub(net_input, training=False), np.float64)
        hits = []
        for one in out:  # per input, as the reference (which predicts one image at a time)
            span = one.max() - one.min()
            scaled = (one - one.min()) / span if span > 0 else np.zeros_like(one)
            hits.append(scaled.reshape(-1, scaled.shape[-1]).mean(axis=0) > t)
        covered[name] = np.logical_or.reduce(hits)
    return covered


@pytest.fixture(scope="module")
def real():
    from deeptest_iot import sample_models as sm
    from deeptest_iot.data.seeds import load_seeds
    from deeptest_iot.model.core import load_model

    folder = sm.frames_path("udacity_steering")
    seeds = load_seeds(folder, labels=folder / "labels.csv")
    mut = load_model(sm.path("udacity_steering"))
    frames = seeds.images[::25]  # 8 frames spread over the shipped block
    return mut, frames, mut.run(frames).activations


@pytest.mark.parametrize("t", [0.2, 0.5])
def test_nc_matches_plain_reference_on_real_frames_model(real, t):
    mut, frames, acts = real
    tr = CoverageTracker([f"nc:{t}", f"nc-means:{t}"], mut.layer_sizes, fingerprint=mut.fingerprint)
    tr.update(acts)
    ref = reference_nc(mut.model, list(mut.layer_sizes), mut.preprocess(frames), t)
    ours = tr.criteria[f"nc:{t:g}"].state
    for name in mut.layer_sizes:
        assert ours[name][0].tolist() == ref[name].tolist(), name
    # and the averaged-first variant really is another definition on this model's conv layers
    means = tr.criteria[f"nc-means:{t:g}"].state
    conv = [t_.name for t_ in mut.layers if t_.spatial]
    assert any(not np.array_equal(means[n], ours[n]) for n in conv)


def test_twin_activations_carry_the_ranges_nc_needs(real):
    pytest.importorskip("ai_edge_litert")
    from deeptest_iot import sample_models as sm
    from deeptest_iot.model.twins import load_twin, twin_path_for

    mut, frames, acts = real
    twin = load_twin(twin_path_for(sm.path("udacity_steering"), "float16"), mut)
    tacts = twin.run(frames).activations
    conv = [t.name for t in mut.layers if t.spatial]
    assert set(conv) <= set(tacts.ranges)
    for n in conv:
        r = tacts.ranges[n]
        assert r.shape == (len(frames), 2)
        assert (r[:, :1] <= tacts[n] + 1e-4).all() and (tacts[n] <= r[:, 1:] + 1e-4).all()
        np.testing.assert_allclose(r, acts.ranges[n], rtol=0.05, atol=0.05)
