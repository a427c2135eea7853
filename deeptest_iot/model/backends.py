"""Models that are not Keras: TF SavedModel, LiteRT (.tflite) and ONNX Runtime (.onnx).

A SavedModel is output-only. LiteRT and ONNX models (typically the converted twins of a Keras
model, see ``deeptest_iot.model.convert``) support coverage when their tensor names map to layers
(``deeptest_iot.model.twin_taps``; docs/twins.md). LiteRT and ONNX Runtime are optional extras.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from deeptest_iot.model.card import ModelCard
from deeptest_iot.errors import ModelError, UnsupportedError
from deeptest_iot.model.core import ModelUnderTest, first_line
from deeptest_iot.model.layers import LayerTap
from deeptest_iot.quiet import quiet_stderr
from deeptest_iot.model.twin_taps import onnx_tap_map, reduce_tap, tflite_tap_map, with_tap_outputs


def _task_or_infer(card: ModelCard, first_output_shape, name: str) -> ModelCard:
    if card.task is not None:
        return card
    units = first_output_shape[-1] if first_output_shape else None
    if units == 1:
        return card.replace(task="steering")
    if units and len(first_output_shape) == 2:
        return card.replace(task="classification")
    raise ModelError(f"cannot tell the task of model {name!r} from its outputs; set task in its model card")


def _image_input_shape(path: Path, n_inputs: int, shape) -> tuple:
    """The one input's shape, refused clearly when there are several inputs or it is not (N, H, W, C)."""
    if n_inputs != 1:
        raise UnsupportedError(f"model {path} has {n_inputs} inputs; deeptest-iot tests models with one image input")
    shape = tuple(shape)
    if len(shape) != 4:
        raise ModelError(f"model {path}: input shape {shape} is not an image batch (N, H, W, C)")
    return shape


class SavedModelUnderTest(ModelUnderTest):
    """A TF SavedModel's serving signature."""

    kind = "TF SavedModel"

    def __init__(self, path: Path, card: ModelCard, fingerprint: str, batch_size: int):
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelError(f"model {path}: cannot load this SavedModel: {first_line(str(exc))}") from None
        if "serving_default" not in loaded.signatures:
            raise ModelError(f"model {path}: the SavedModel has no serving_default signature")
        self._loaded = loaded
        self._fn = loaded.signatures["serving_default"]
        _, kwargs = self._fn.structured_input_signature
        self._input_name, spec = next(iter(kwargs.items()), (None, None))
        shape = _image_input_shape(path, len(kwargs), spec.shape if spec is not None else ())
        self._out_names = sorted(self._fn.structured_outputs)
        super().__init__(card, shape[1:], path.name, fingerprint, str(path), batch_size)
        first = tuple(self._fn.structured_outputs[self._out_names[0]].shape)
        self.card = _task_or_infer(self.card, first, path.name)

    @property
    def output_names(self):
        return list(self._out_names)

    def _forward(self, frames, with_activations):
        import tensorflow as tf

        x = tf.constant(self.preprocess(frames))
        outs = self._fn(**{self._input_name: x})
        return [outs[n].numpy() for n in self._out_names], []


class _TwinCoverage:
    """What LiteRT and ONNX models share: coverage from mapped tensors (``twin_taps``), or a reason."""

    supports_coverage = False
    tap_map = None
    #: per-layer (N, 2) [min, max] of the whole map of each input, from the last run with activations
    last_ranges: dict | None = None

    def _set_taps(self, tap_map, path: Path) -> None:
        self.tap_map = tap_map
        self._taps = list(tap_map.taps)
        self.supports_coverage = bool(self._taps)
        if not self._taps:
            why = ("no tensor name maps to a layer (deeptest-iot maps tensors named like "
                   "'model_1/conv1_1/Relu', as the TFLite converter and the Keras ONNX exporter name them)")
            if tap_map.skipped:
                why = "; ".join(f"{k}: {v}" for k, v in list(tap_map.skipped.items())[:3])
            self._no_coverage = (f"coverage is not available for {self.kind} model {path.name}: {why}; test it "
                                 "without coverage criteria (e.g. --coverage none)")

    @property
    def layers(self) -> list[LayerTap]:
        return [LayerTap(name=t.name, type=t.type, neurons=t.neurons) for t in getattr(self, "_taps", [])]

    def run(self, frames, with_activations: bool = True):
        if with_activations and not self.supports_coverage:
            raise UnsupportedError(getattr(self, "_no_coverage", "coverage is not available for this model"))
        self._range_parts = []
        result = super().run(frames, with_activations)
        if with_activations:
            parts = self._range_parts
            self.last_ranges = ({name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts
                                else {t.name: np.zeros((0, 2), np.float32) for t in self._taps})
            result.activations.ranges.update(self.last_ranges)  # what NC scales by (coverage.activations)
        return result

    def _reduce_taps(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Channel means per tap, and the per-input [min, max] of each map kept in ``last_ranges``."""
        acts, ranges = [], {}
        for tap, arr in zip(self._taps, arrays):
            means, lo, hi = reduce_tap(tap, arr)
            acts.append(means)
            ranges[tap.name] = np.stack([lo, hi], axis=1)
        self._range_parts.append(ranges)
        return acts


def _dequantise(arr: np.ndarray, detail: dict) -> np.ndarray:
    q = detail.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), np.float32)
    if np.dtype(arr.dtype).kind not in "iu" or scales.size == 0:
        return arr
    zps = np.asarray(q.get("zero_points", []), np.float32)
    if scales.size > 1:
        shape = [1] * arr.ndim
        shape[int(q.get("quantized_dimension", 0))] = -1
        scales, zps = scales.reshape(shape), zps.reshape(shape)
    return ((arr.astype(np.float32) - zps) * scales).astype(np.float32)


def _quantise(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return x.astype(dtype, copy=False)
    q = detail["quantization_parameters"]
    scale, zp = float(q["scales"][0]), float(q["zero_points"][0])
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def _check_quantisation(path: Path, what: str, detail: dict) -> None:
    """An integer input/output must carry a scale and zero point, or its numbers mean nothing."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        return
    q = detail.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), np.float64)
    if scales.size == 0 or not (scales > 0).all():
        raise ModelError(f"model {path}: its {what} {detail['name']!r} is {dtype.name} but carries no quantisation "
                         "parameters (scale and zero point), so deeptest-iot cannot relate it to camera pixels; "
                         "convert the model with a representative dataset (deeptest-iot convert --to int8)")


class _LiteRunner:
    """One LiteRT interpreter, resized to each batch size it is given."""

    def __init__(self, interp):
        self.interp = interp
        self.input = interp.get_input_details()[0]
        self.outputs = interp.get_output_details()
        self.batch = None

    def invoke(self, x: np.ndarray) -> None:
        if self.batch != len(x):
            self.interp.resize_tensor_input(self.input["index"], list(x.shape))
            with quiet_stderr():
                self.interp.allocate_tensors()
            self.input = self.interp.get_input_details()[0]
            self.outputs = self.interp.get_output_details()
            self.batch = len(x)
        self.interp.set_tensor(self.input["index"], _quantise(x, self.input))
        self.interp.invoke()

    def outputs_float(self) -> list[np.ndarray]:
        return [_dequantise(self.interp.get_tensor(o["index"]), o) for o in self.outputs]


def _lite_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class TFLiteModelUnderTest(_TwinCoverage, ModelUnderTest):
    """A LiteRT flatbuffer, run by ai-edge-litert's interpreter (extra: deeptest-iot[litert]).

    Integer (int8/uint8) inputs are fed the card's float network input quantised with the input's
    own scale and zero point; integer outputs are dequantised. Coverage reads the mapped
    intermediate tensors (see ``twin_taps``) from a second interpreter that preserves all tensors,
    made on the first run that asks for activations.
    """

    kind = "LiteRT"

    def __init__(self, path: Path, card: ModelCard, fingerprint: str, batch_size: int):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UnsupportedError(f"model {path}: .tflite models need LiteRT; install it with "
                                   "pip install 'deeptest-iot[litert]'") from None
        self._Interpreter = Interpreter
        try:
            with quiet_stderr():
                interp = Interpreter(model_path=str(path), num_threads=_lite_threads())
                interp.allocate_tensors()
        except Exception as exc:
            raise ModelError(f"model {path}: not a valid .tflite model (truncated or corrupt?): "
                             f"{first_line(str(exc))}") from None
        inputs = interp.get_input_details()
        shape = _image_input_shape(path, len(inputs), (int(d) for d in inputs[0]["shape"]) if inputs else ())
        _check_quantisation(path, "input", inputs[0])
        outs = interp.get_output_details()
        for o in outs:
            _check_quantisation(path, "output", o)
        self._path = path
        self._runner = _LiteRunner(interp)
        self._tapped = None
        super().__init__(card, shape[1:], path.name, fingerprint, str(path), batch_size)
        self._out_names = [o["name"] for o in outs]
        self.card = _task_or_infer(self.card, tuple(outs[0]["shape"]), path.name)
        self.quantised = np.dtype(inputs[0]["dtype"]).kind in "iu"
        self._set_taps(self._read_taps(), path)

    def _read_taps(self):
        with warnings.catch_warnings(), quiet_stderr():
            warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": we want exactly that
            interp = self._Interpreter(model_path=str(self._path), num_threads=_lite_threads(),
                                       experimental_preserve_all_tensors=True)
            interp.allocate_tensors()
        self._tapped = _LiteRunner(interp)
        return tflite_tap_map(interp)

    @property
    def output_names(self):
        return list(self._out_names)

    @property
    def input_details(self) -> dict:
        """The LiteRT input tensor (name, shape, dtype, quantisation parameters)."""
        return dict(self._runner.input)

    def _forward(self, frames, with_activations):
        x = self.preprocess(frames)
        runner = self._tapped if with_activations else self._runner
        runner.invoke(x)
        outs = runner.outputs_float()
        if not with_activations:
            return outs, []
        arrays = [runner.interp.get_tensor(t.tensor) for t in self._taps]
        return outs, self._reduce_taps(arrays)


class OnnxModelUnderTest(_TwinCoverage, ModelUnderTest):
    """An ONNX graph run by ONNX Runtime on the CPU (extra: deeptest-iot[onnx]).

    NHWC input is assumed; an input shaped (N, C, H, W) with C in (1, 3) is fed transposed.
    Coverage adds the mapped intermediate values (see ``twin_taps``) as graph outputs of a second
    session, made on the first run that asks for activations.
    """

    kind = "ONNX"

    def __init__(self, path: Path, card: ModelCard, fingerprint: str, batch_size: int):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UnsupportedError(f"model {path}: .onnx models need ONNX Runtime; install it with "
                                   "pip install 'deeptest-iot[onnx]'") from None
        self._ort = ort
        try:
            self._sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"model {path}: not a valid ONNX model (truncated or corrupt?): "
                             f"{first_line(str(exc))}") from None
        inputs = self._sess.get_inputs()
        shape = _image_input_shape(path, len(inputs),
                                   (d if isinstance(d, int) else None for d in inputs[0].shape) if inputs else ())
        self._input_name = inputs[0].name
        self._nchw = shape[1] in (1, 3) and shape[3] not in (1, 3)
        hwc = (shape[2], shape[3], shape[1]) if self._nchw else shape[1:]
        super().__init__(card, hwc, path.name, fingerprint, str(path), batch_size)
        outs = self._sess.get_outputs()
        self._out_names = [o.name for o in outs]
        first = tuple(d if isinstance(d, int) else None for d in outs[0].shape)
        self.card = _task_or_infer(self.card, first, path.name)
        self._path = path
        self._tapped = None
        self._set_taps(self._read_taps(), path)

    def _read_taps(self):
        try:
            import onnx
        except ImportError:
            from deeptest_iot.model.twin_taps import TapMap

            return TapMap([], {"*": "reading ONNX layers needs the onnx package (pip install onnx)"})
        self._proto = onnx.load(str(self._path))
        return onnx_tap_map(self._proto, 1 if self._nchw else 3)

    @property
    def output_names(self):
        return list(self._out_names)

    def _tapped_session(self):
        if self._tapped is None:
            data = with_tap_outputs(self._proto, self._taps)
            self._tapped = self._ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return self._tapped

    def _forward(self, frames, with_activations):
        x = self.preprocess(frames)
        if self._nchw:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if not with_activations:
            return [np.asarray(o) for o in self._sess.run(None, {self._input_name: x})], []
        names = self._out_names + [t.tensor for t in self._taps]
        got = self._tapped_session().run(names, {self._input_name: x})
        n = len(self._out_names)
        return [np.asarray(o) for o in got[:n]], self._reduce_taps([np.asarray(a) for a in got[n:]])
