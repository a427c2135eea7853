"""Output-only models: TF SavedModel, LiteRT (.tflite) and ONNX Runtime (.onnx).

They can be tested for metamorphic relations, but their internals are not Keras layers, so they
cannot be measured for neuron coverage. LiteRT and ONNX Runtime are optional extras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deeptest_iot.model.card import ModelCard
from deeptest_iot.errors import ModelError, UnsupportedError
from deeptest_iot.model.core import ModelUnderTest, _first_line


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
            raise ModelError(f"model {path}: cannot load this SavedModel: {_first_line(str(exc))}") from None
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


class TFLiteModelUnderTest(ModelUnderTest):
    """A LiteRT flatbuffer, run by ai-edge-litert's interpreter (extra: deeptest-iot[litert])."""

    kind = "LiteRT"

    def __init__(self, path: Path, card: ModelCard, fingerprint: str, batch_size: int):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UnsupportedError(f"model {path}: .tflite models need LiteRT; install it with "
                                   "pip install 'deeptest-iot[litert]'") from None
        try:
            self._interp = Interpreter(model_path=str(path))
        except Exception as exc:
            raise ModelError(f"model {path}: not a valid .tflite model (truncated or corrupt?): "
                             f"{_first_line(str(exc))}") from None
        inputs = self._interp.get_input_details()
        shape = _image_input_shape(path, len(inputs), (int(d) for d in inputs[0]["shape"]) if inputs else ())
        self._input = inputs[0]
        self._batch = None
        super().__init__(card, shape[1:], path.name, fingerprint, str(path), batch_size)
        outs = self._interp.get_output_details()
        self._out_names = [o["name"] for o in outs]
        self.card = _task_or_infer(self.card, tuple(outs[0]["shape"]), path.name)

    @property
    def output_names(self):
        return list(self._out_names)

    def _forward(self, frames, with_activations):
        x = self.preprocess(frames)
        if self._batch != len(x):
            self._interp.resize_tensor_input(self._input["index"], list(x.shape))
            self._interp.allocate_tensors()
            self._batch = len(x)
        self._interp.set_tensor(self._input["index"], x.astype(self._input["dtype"]))
        self._interp.invoke()
        return [self._interp.get_tensor(o["index"]).copy() for o in self._interp.get_output_details()], []


class OnnxModelUnderTest(ModelUnderTest):
    """An ONNX graph run by ONNX Runtime on the CPU (extra: deeptest-iot[onnx]).

    NHWC input is assumed; an input shaped (N, C, H, W) with C in (1, 3) is fed transposed.
    """

    kind = "ONNX"

    def __init__(self, path: Path, card: ModelCard, fingerprint: str, batch_size: int):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UnsupportedError(f"model {path}: .onnx models need ONNX Runtime; install it with "
                                   "pip install 'deeptest-iot[onnx]'") from None
        try:
            self._sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"model {path}: not a valid ONNX model (truncated or corrupt?): "
                             f"{_first_line(str(exc))}") from None
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

    @property
    def output_names(self):
        return list(self._out_names)

    def _forward(self, frames, with_activations):
        x = self.preprocess(frames)
        if self._nchw:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return [np.asarray(o) for o in self._sess.run(None, {self._input_name: x})], []
