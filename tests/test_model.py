"""The model under test: hand-computed activations, layer selection, model kinds, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from deeptest_iot.model.card import ModelCard  # noqa: E402
from deeptest_iot.errors import ConfigError, InputError, ModelError, OutputError, UnsupportedError  # noqa: E402
from deeptest_iot.model.core import load_model  # noqa: E402
from toy_models import (EXPECTED_CONV, EXPECTED_STEER, FRAME, RAW_CARD, fixed_prior_classifier,  # noqa: E402
                        flatten_dense, hand_steering_nested, hand_steering_sequential,
                        layer_zoo, set_hand_weights, two_image_inputs, vector_input_model)
from toy_models import hand_steering as new_hand_steering  # noqa: E402


def test_hand_computed_outputs_and_activations(hand_steering):
    mut = load_model(hand_steering, RAW_CARD)
    assert mut.layer_sizes == {"conv": 2, "steer": 1}
    res = mut.run(FRAME)
    np.testing.assert_allclose(res.outputs, [EXPECTED_STEER], rtol=1e-6)
    np.testing.assert_allclose(res.activations["conv"], EXPECTED_CONV, rtol=1e-6)
    np.testing.assert_allclose(res.activations["steer"], [[EXPECTED_STEER]], rtol=1e-6)


def test_sequential_without_input_is_built_from_card():
    model, conv, dense = hand_steering_sequential()
    with pytest.raises(ModelError, match="input_size"):
        load_model(model, {"scale": 1.0})
    mut = load_model(model, RAW_CARD)
    set_hand_weights(conv, dense)
    res = mut.run(FRAME)
    np.testing.assert_allclose(res.outputs, [EXPECTED_STEER], rtol=1e-6)
    np.testing.assert_allclose(res.activations["conv"], EXPECTED_CONV, rtol=1e-6)


def test_nested_model_layers_are_counted_with_prefix():
    mut = load_model(hand_steering_nested(), RAW_CARD)
    assert mut.layer_sizes == {"backbone/conv": 2, "steer": 1}
    res = mut.run(FRAME)
    np.testing.assert_allclose(res.activations["backbone/conv"], EXPECTED_CONV, rtol=1e-6)
    np.testing.assert_allclose(res.outputs, [EXPECTED_STEER], rtol=1e-6)


def test_layer_selection_patterns():
    model = layer_zoo()
    assert list(load_model(model).layer_sizes) == ["conv_a", "act", "fc", "out"]
    assert load_model(model).layer_sizes == {"conv_a": 3, "act": 3, "fc": 5, "out": 1}
    assert list(load_model(model, exclude=["out", "act"]).layer_sizes) == ["conv_a", "fc"]
    assert list(load_model(model, include=["conv_*", "pool"]).layer_sizes) == ["conv_a", "pool"]
    with pytest.raises(ConfigError, match="no layer"):
        load_model(model, include=["nothing*"])


def test_preprocessing_crop_resize_colour_scale():
    model = flatten_dense(2, 4)
    card = {"input_size": [2, 4], "crop": [0.5, 0.0, 0.0, 0.0], "color": "bgr", "scale": 0.5, "offset": -1.0}
    mut = load_model(model, card)
    frame = np.zeros((1, 4, 4, 3), np.uint8)
    frame[0, 2:, :, 0] = 200  # red in the kept bottom half
    frame[0, :2, :, 2] = 100  # blue in the cropped top half
    x = mut.preprocess(frame)
    assert x.shape == (1, 2, 4, 3)
    np.testing.assert_allclose(x[0, :, :, 2], 200 * 0.5 - 1.0)  # red moved to the last channel (BGR)
    np.testing.assert_allclose(x[0, :, :, 0], -1.0)  # blue was cropped away


def test_resize_of_large_frames_is_batched_and_consistent(hand_steering):
    mut = load_model(hand_steering, RAW_CARD)
    big = np.repeat(np.repeat(FRAME, 8, axis=1), 8, axis=2)  # 16x16, each pixel an 8x8 block
    batch = np.concatenate([big, big])
    res = mut.run(batch)
    assert res.outputs.shape == (2,)
    np.testing.assert_allclose(res.outputs[0], res.outputs[1])
    np.testing.assert_allclose(res.outputs, EXPECTED_STEER, rtol=1e-4)


def test_one_forward_pass_per_batch(monkeypatch, hand_steering):
    mut = load_model(hand_steering, RAW_CARD, batch_size=4)
    calls = []
    original = mut._forward

    def counting(frames, with_activations):
        calls.append(len(frames))
        return original(frames, with_activations)

    monkeypatch.setattr(mut, "_forward", counting)
    frames = np.repeat(FRAME, 10, axis=0)
    res = mut.run(frames)
    assert calls == [4, 4, 2]
    assert res.activations["conv"].shape == (10, 2)


def test_classification_outputs_become_probabilities():
    mut = load_model(fixed_prior_classifier(), {"input_size": [2, 2], "classes": ["a", "b", "c"]})
    assert mut.card.task == "classification"
    np.testing.assert_allclose(mut.predict(FRAME), [[1 / 8, 2 / 8, 5 / 8]], rtol=1e-6)


def test_card_file_beside_model_is_used(tmp_path, hand_steering):
    path = tmp_path / "hand.keras"
    hand_steering.save(path)
    (tmp_path / "hand.toml").write_text('task = "steering"\ninput_size = [2, 2]\nscale = 1.0\n')
    mut = load_model(path)
    assert mut.card.source.endswith("hand.toml")
    np.testing.assert_allclose(mut.predict(FRAME), [EXPECTED_STEER], rtol=1e-6)
    (tmp_path / "hand.toml").write_text('task = "steering"\nwheels = 4\n')
    with pytest.raises(ConfigError, match="wheels"):
        load_model(path)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_round_trip_keeps_outputs_and_fingerprint(tmp_path, suffix, hand_steering):
    model = hand_steering
    before = load_model(model, RAW_CARD)
    path = tmp_path / f"m{suffix}"
    model.save(path)
    after = load_model(path, RAW_CARD)
    np.testing.assert_allclose(after.predict(FRAME), before.predict(FRAME), rtol=1e-6)
    assert after.layer_sizes == before.layer_sizes
    assert after.fingerprint == before.fingerprint


def test_fingerprint_changes_with_weights(hand_steering):
    a = hand_steering
    b = new_hand_steering()
    b.get_layer("steer").set_weights([np.full((8, 1), 0.25, np.float32), np.array([1.0], np.float32)])
    assert load_model(a, RAW_CARD).fingerprint != load_model(b, RAW_CARD).fingerprint


# -- bad input -----------------------------------------------------------------------------------
def test_missing_path(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        load_model(tmp_path / "nope.keras")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_truncated_file(tmp_path, suffix, hand_steering):
    path = tmp_path / f"m{suffix}"
    hand_steering.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        load_model(path)


def test_file_that_is_not_a_model(tmp_path):
    for name in ("notes.keras", "notes.h5", "notes.bin"):
        path = tmp_path / name
        path.write_text("hello, I am not a model\n")
        with pytest.raises(ModelError, match=str(path.name)):
            load_model(path)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_bytecode_refused_unless_trusted(lambda_steering_paths, suffix):
    path = lambda_steering_paths[suffix]
    with pytest.raises(ModelError, match="--trust-model"):
        load_model(path, RAW_CARD)
    mut = load_model(path, RAW_CARD, trust=True)
    assert mut.predict(FRAME).shape == (1,)


def test_input_not_an_image():
    with pytest.raises(ModelError, match="not an image"):
        load_model(vector_input_model())


def test_several_image_inputs_not_supported():
    with pytest.raises(UnsupportedError, match="not supported"):
        load_model(two_image_inputs())


def test_nan_outputs_reported_not_averaged(hand_steering):
    model = hand_steering
    weights = model.get_layer("steer").get_weights()
    weights[1][:] = np.nan
    model.get_layer("steer").set_weights(weights)
    mut = load_model(model, RAW_CARD)
    with pytest.raises(OutputError, match="NaN or Inf"):
        mut.predict(np.repeat(FRAME, 3, axis=0))


@pytest.mark.parametrize("frames, match", [
    (np.zeros((1, 2, 2, 3), np.float32), "uint8"),
    (np.zeros((1, 2, 2, 4), np.uint8), "shape"),
    (np.zeros((2, 2), np.uint8), "shape"),
    ([[1, 2, 3]], "NumPy"),
])
def test_bad_frames(frames, match, hand_steering):
    mut = load_model(hand_steering, RAW_CARD)
    with pytest.raises(InputError, match=match):
        mut.run(frames)


def test_bad_card_values():
    with pytest.raises(ConfigError, match="task"):
        ModelCard(task="parking")
    with pytest.raises(ConfigError, match="crop"):
        ModelCard(crop=(0.6, 0.5, 0.0, 0.0))


# -- output-only backends ------------------------------------------------------------------------
def test_saved_model_is_output_only(tmp_path, hand_steering):
    model = hand_steering
    path = tmp_path / "saved"
    model.export(str(path), format="tf_saved_model", verbose=False)
    mut = load_model(path, RAW_CARD)
    np.testing.assert_allclose(mut.predict(FRAME), [EXPECTED_STEER], rtol=1e-5)
    with pytest.raises(UnsupportedError, match="coverage needs a Keras model"):
        mut.run(FRAME)


def test_tflite_model(tmp_path, hand_steering):
    pytest.importorskip("ai_edge_litert")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(hand_steering)
    path = tmp_path / "m.tflite"
    path.write_bytes(converter.convert())
    mut = load_model(path, RAW_CARD)
    np.testing.assert_allclose(mut.predict(np.repeat(FRAME, 3, axis=0)), [EXPECTED_STEER] * 3, rtol=1e-5)
    # coverage on the twin (docs/twins.md): conv maps by name; steer's output became the model output
    assert mut.layer_sizes == {"conv": 2}
    np.testing.assert_allclose(mut.run(FRAME).activations["conv"], EXPECTED_CONV, rtol=1e-5)
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(ModelError, match="tflite"):
        load_model(path, RAW_CARD)


def test_onnx_model(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    # NHWC input -> flatten -> matmul with 0.5 -> + 1: the sum of all 12 input values / 2 + 1.
    weight = numpy_helper.from_array(np.full((12, 1), 0.5, np.float32), "w")
    bias = numpy_helper.from_array(np.array([1.0], np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1),
         helper.make_node("MatMul", ["f", "w"], ["m"]),
         helper.make_node("Add", ["m", "b"], ["y"])],
        "sum", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    mut = load_model(path, RAW_CARD)
    expected = FRAME.astype(np.float64).sum() * 0.5 + 1.0
    np.testing.assert_allclose(mut.predict(FRAME), [expected], rtol=1e-5)
    with pytest.raises(UnsupportedError, match="coverage"):
        mut.run(FRAME)
    path.write_bytes(b"not onnx at all")
    with pytest.raises(ModelError, match="ONNX"):
        load_model(path, RAW_CARD)


def test_old_keras_with_safe_mode_bypasses_is_refused():
    from deeptest_iot.model.core import _check_keras_version

    _check_keras_version("3.11.3")
    _check_keras_version("3.15.1")
    for old in ("3.11.2", "3.8.0", "2.15.0"):
        with pytest.raises(ModelError, match="3.11.3"):
            _check_keras_version(old)
