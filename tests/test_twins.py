"""Twins: conversion, loading, coverage on LiteRT/ONNX tensors, check_twin, and the bad inputs (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")
pytest.importorskip("ai_edge_litert")

from deeptest_iot.cli import main  # noqa: E402
from deeptest_iot.errors import ConfigError, InputError, ModelError, UnsupportedError  # noqa: E402
from deeptest_iot.model.convert import convert, refusal_reason  # noqa: E402
from deeptest_iot.model.core import load_model  # noqa: E402
from deeptest_iot.model.twin_taps import layer_of_part, layers_of_name  # noqa: E402
from deeptest_iot.model.twins import check_twin, load_twin  # noqa: E402
from toy_models import erfinv_steering, selu_steering, small_steering_cnn  # noqa: E402

CARD = 'task = "steering"\ninput_size = [8, 8]\nscale = 1.0\n'


def _frames(n=16, size=8, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _needs_onnx():
    if not (_has("tf2onnx") and _has("onnxruntime")):
        pytest.skip("the [onnx] extra (tf2onnx, onnxruntime) is not installed")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small float model on disk, with its card, and its twins (converted once for the module)."""
    folder = tmp_path_factory.mktemp("twins")
    path = folder / "small.keras"
    small_steering_cnn(8, 8).save(path)  # Rescaling(1/255) -> conv(4) -> flatten -> dense
    (folder / "small.toml").write_text(CARD)
    mut = load_model(path)
    targets = ["int8", "float16"]
    if _has("tf2onnx") and _has("onnxruntime"):  # the [onnx] extra
        targets.append("onnx")
    twins = {to: convert(mut, to, folder / (f"small.{to}.tflite" if to != "onnx" else "small.onnx")).path
             for to in targets}
    return path, mut, twins


# -- names -------------------------------------------------------------------------------------------
def test_layer_names_from_tensor_names():
    assert layer_of_part("dave2_steering_1/conv1_1/Relu") == "conv1"
    assert layer_of_part("dave2_steering_1/conv1_1/Elu:0") == "conv1"
    assert layer_of_part("det_1/conv6_1/convolution/SpaceToBatchND") == "conv6"  # an op scope inside the layer
    assert layer_of_part("outer_1/backbone_1/conv_2/Relu") == "backbone/conv"  # nested model
    assert layer_of_part("model/dense/BiasAdd") == "dense"  # no _k suffixes: the first scope
    assert layer_of_part("tfl.quantize") is None and layer_of_part("StatefulPartitionedCall_1:0") is None
    assert layers_of_name("m_1/fc_1/MatMul;m_1/fc_1/Relu;m_1/fc_1/BiasAdd") == {"fc"}
    assert layers_of_name("m_1/act_1/Relu;m_1/conv_1/BiasAdd") == {"act", "conv"}  # fused: belongs to none


# -- conversion and coverage -------------------------------------------------------------------------
def test_card_copied_beside_each_twin(small):
    _, mut, twins = small
    for path in twins.values():
        card = path.with_suffix(".toml")
        assert card.is_file()
        assert "Model card of" in card.read_text() and 'input_size = [8, 8]' in card.read_text()
        assert load_model(path).card.input_size == mut.card.input_size


def test_float16_and_onnx_twins_give_the_keras_activations(small):
    _needs_onnx()
    _, mut, twins = small
    frames = _frames()
    ref = mut.run(frames)
    assert mut.layer_sizes == {"conv": 4, "steer": 1}
    for to, tol in (("float16", 2e-3), ("onnx", 1e-5)):
        twin = load_model(twins[to])
        assert twin.supports_coverage
        res = twin.run(frames)
        np.testing.assert_allclose(res.outputs, ref.outputs, atol=tol * 10)
        np.testing.assert_allclose(res.activations["conv"], ref.activations["conv"], atol=tol)
    # LiteRT: the last Dense became the model's output tensor and lost its name; ONNX keeps it
    assert load_model(twins["float16"]).layer_sizes == {"conv": 4}
    assert [t.type for t in load_model(twins["int8"]).layers] == ["CONV_2D"]
    assert load_model(twins["onnx"]).layer_sizes == {"conv": 4, "steer": 1}


def test_int8_twin_activations_are_dequantised(small):
    _, mut, twins = small
    twin = load_model(twins["int8"])
    assert twin.kind == "LiteRT" and twin.layer_sizes == {"conv": 4}
    frames = _frames(40)
    ref, res = mut.run(frames), twin.run(frames)
    # dequantised channel means, within a few quantisation steps of the float ones
    err = np.abs(res.activations["conv"] - ref.activations["conv"]).max()
    spread = ref.activations["conv"].max() - ref.activations["conv"].min()
    assert err < 0.05 * spread
    assert np.corrcoef(res.outputs, ref.outputs)[0, 1] > 0.98
    # the per-input (min, max) of each whole map: ReLU output, so min >= 0 and max >= every channel mean
    rng = twin.last_ranges["conv"]
    assert rng.shape == (40, 2) and (rng[:, 0] >= 0).all()
    assert (rng[:, 1] + 1e-6 >= res.activations["conv"].max(axis=1)).all()


def test_one_pass_per_batch_and_coverage_tracker(small):
    from deeptest_iot.coverage import CoverageTracker

    twin = load_model(small[2]["int8"], batch_size=8)
    calls = []
    original = twin._forward

    def counting(frames, with_activations):
        calls.append((len(frames), with_activations))
        return original(frames, with_activations)

    twin._forward = counting
    res = twin.run(_frames(20))
    assert calls == [(8, True), (8, True), (4, True)]
    assert res.activations["conv"].shape == (20, 4) and twin.last_ranges["conv"].shape == (20, 2)
    tracker = CoverageTracker(["nc:0.1", "tknc:1"], twin.layer_sizes)
    assert tracker.update(res.activations).shape == (20,)
    assert 0 < tracker.coverage()["tknc:1"] <= 1


def test_int8_io_twin_quantises_its_input(small, tmp_path):
    path, mut, _ = small
    out = convert(mut, "int8", tmp_path / "io.tflite", int8_io=True)
    twin = load_model(out.path)
    assert twin.input_details["dtype"] == np.int8 and twin.quantised
    frames = _frames(40)
    assert np.corrcoef(twin.predict(frames), mut.predict(frames))[0, 1] > 0.98
    # the same network input as the float model: the quantised input dequantises to the card's input
    q = twin.input_details["quantization_parameters"]
    x = mut.preprocess(frames)
    xq = np.clip(np.round(x / q["scales"][0] + q["zero_points"][0]), -128, 127)
    assert np.abs((xq - q["zero_points"][0]) * q["scales"][0] - x).max() <= q["scales"][0] / 2 + 1e-4
    # the calibration covers the whole pixel range (a black and a white frame are added): no clipping
    assert abs(q["scales"][0] - 1.0) < 1e-6 and q["zero_points"][0] == -128


def test_dynamic_twin_and_calibration_folder(small, tmp_path):
    import cv2

    _, mut, _ = small
    assert load_model(convert(mut, "dynamic", tmp_path / "d.tflite").path).predict(_frames(2)).shape == (2,)
    folder = tmp_path / "frames"
    (folder / "sub").mkdir(parents=True)
    for i, img in enumerate(_frames(5, size=12)):
        cv2.imwrite(str(folder / "sub" / f"{i}.png"), img)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")  # skipped, not fatal
    result = convert(mut, "int8", tmp_path / "c.tflite", calibration=folder)
    assert result.calibration_frames == 5 and result.calibration == str(folder)


def test_check_twin_reports_shared_layers(small):
    _needs_onnx()
    _, mut, twins = small
    check = check_twin(mut, load_twin(twins["onnx"], mut))
    assert check.shared_layers == ["conv", "steer"] and check.float_only_layers == []
    check = check_twin(mut, load_twin(twins["int8"], mut))
    assert check.shared_layers == ["conv"] and check.float_only_layers == ["steer"]
    assert check.output_shapes == [[1]] and check.task == "steering"


# -- bad input: one clear message, exit 2 ------------------------------------------------------------
def test_twin_with_another_input_size_or_output_shape(tmp_path, small):
    _, mut, _ = small
    other = tmp_path / "other.keras"
    small_steering_cnn(10, 10, name="other").save(other)
    (tmp_path / "other.toml").write_text(CARD.replace("[8, 8]", "[10, 10]"))
    twin = convert(load_model(other), "float16", tmp_path / "other.tflite").path
    with pytest.raises(ModelError, match="10x10 inputs but the float model takes 8x8"):
        check_twin(mut, load_model(twin))
    classifier = CARD.replace("steering", "classification")
    with pytest.raises(ModelError, match="task is steering but the twin's is classification"):
        check_twin(mut, load_model(twin, {"task": "classification", "input_size": [8, 8]}))
    three, four = tmp_path / "three.keras", tmp_path / "four.keras"
    small_steering_cnn(8, 8, name="three", units=3).save(three)
    small_steering_cnn(8, 8, name="four", units=4).save(four)
    for p in (three, four):
        p.with_suffix(".toml").write_text(classifier)
    twin = convert(load_model(four), "float16", tmp_path / "four.tflite").path
    with pytest.raises(ModelError, match=r"output 0 has shape \[4\] in the twin but \[3\]"):
        check_twin(load_model(three), load_model(twin))


def test_int8_twin_without_quantisation_parameters(tmp_path):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.int8)])
    def f(x):
        return tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2, 3])[:, None]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path = tmp_path / "noparams.tflite"
    path.write_bytes(conv.convert())
    with pytest.raises(ModelError, match="int8 but carries no quantisation parameters"):
        load_model(path, {"task": "steering", "input_size": [8, 8]})
    (tmp_path / "noparams.toml").write_text(CARD)
    result = CliRunner().invoke(main, ["inspect", str(path), "--no-speed"])
    assert result.exit_code == 2 and "quantisation parameters" in result.output
    assert "Traceback" not in result.output


def test_conversion_the_converter_refuses(tmp_path):
    mut = load_model(erfinv_steering(), {"task": "steering", "scale": 1.0})
    with pytest.raises(ModelError) as info:
        convert(mut, "float16", tmp_path / "odd.tflite")
    message = str(info.value)
    assert "refused" in message and "Erfinv" in message and "\n" not in message
    assert not (tmp_path / "odd.tflite").exists()


def test_converter_crash_is_a_clear_error(tmp_path, monkeypatch):
    """TF 2.21's converter segfaults on full-integer int8 of some ops (SELU, softplus), though not on
    every run: the CLI converts in a child process and reports its death. The child's crash is
    simulated here, so that the handling is tested every time."""
    import signal
    import subprocess

    selu_steering().save(tmp_path / "selu.keras")
    (tmp_path / "selu.toml").write_text(CARD)
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: subprocess.CompletedProcess(
        args, -int(signal.SIGSEGV), b"", b"Fatal Python error: Segmentation fault"))
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "selu.keras"), "--to", "int8"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "crashed (SIGSEGV)" in result.output and "--to float16" in result.output


def test_refusal_reason_is_one_line():
    text = ('Could not translate MLIR to FlatBuffer.<unknown>:0: error: loc(callsite(fused["Erfinv:", "x"] at '
            'y)): \'tf.Erfinv\' op is neither a custom op nor a flex op\n<unknown>:0: note: called from\n'
            '<unknown>:0: error: failed while converting: \'main\': \nCustom ops: Erfinv\nDetails:\n')
    assert refusal_reason(text) == "'tf.Erfinv' op is neither a custom op nor a flex op"
    assert refusal_reason("<unknown>:0: error: failed while converting: 'main'\nFlex ops: FooBar\n").endswith("(ops: FooBar)")
    assert refusal_reason("ValueError: something odd\nmore") == "ValueError: something odd"


def test_calibration_folder_without_usable_frames(small, tmp_path):
    path, mut, _ = small
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no usable frames"):
        convert(mut, "int8", tmp_path / "x.tflite", calibration=empty)
    (empty / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match="1 image file"):
        convert(mut, "int8", tmp_path / "x.tflite", calibration=empty)
    result = CliRunner().invoke(main, ["convert", str(path), "--to", "int8", "--calibration", str(empty),
                                       "--out", str(tmp_path / "x.tflite")])
    assert result.exit_code == 2, result.output
    assert "no usable frames" in result.output and "Traceback" not in result.output


def test_bad_convert_options(small, tmp_path):
    path, mut, twins = small
    with pytest.raises(ConfigError, match="suffix"):
        convert(mut, "int8", tmp_path / "x.onnx")
    with pytest.raises(ConfigError, match="int8 only"):
        convert(mut, "float16", tmp_path / "x.tflite", int8_io=True)
    with pytest.raises(ModelError, match="needs a Keras model"):
        convert(twins["float16"], "int8", tmp_path / "y.tflite")


def test_convert_command(small, tmp_path):
    path, _, _ = small
    out = tmp_path / "cli.tflite"
    result = CliRunner().invoke(main, ["convert", str(path), "--to", "float16", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["to"] == "float16" and info["layers_mapped"] == ["conv"] and info["layers_not_mapped"] == ["steer"]
    assert out.is_file() and out.with_suffix(".toml").is_file()


def test_onnx_without_scoped_names_says_why_no_coverage(tmp_path):
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((12, 1), 0.5, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "plain.onnx"
    path.write_bytes(model.SerializeToString())
    mut = load_model(path, {"task": "steering", "input_size": [2, 2], "scale": 1.0})
    assert not mut.supports_coverage
    with pytest.raises(UnsupportedError, match="no tensor name maps to a layer"):
        mut.run(np.zeros((1, 2, 2, 3), np.uint8))
