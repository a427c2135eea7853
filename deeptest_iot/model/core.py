"""The model under test: raw frames in, predictions and chosen layers' activations out, in one pass.

``load_model`` accepts a ``.keras`` file (loaded with ``safe_mode``), a legacy ``.h5`` file, a Keras
model object, and, as output-only models that can be tested but not measured for coverage, a
TF SavedModel directory, a ``.tflite`` file (LiteRT) and an ``.onnx`` file (ONNX Runtime).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from deeptest_iot.model.card import ModelCard, resolve_card  # noqa: E402
from deeptest_iot.errors import ConfigError, InputError, ModelError, OutputError, UnsupportedError  # noqa: E402
from deeptest_iot.coverage.activations import Activations  # noqa: E402
from deeptest_iot.model.layers import LayerTap, build_tapped_model  # noqa: E402

DEFAULT_BATCH = 64


@dataclass
class RunResult:
    """What one forward pass gives: decoded outputs, activations per counted layer, raw outputs.

    ``activations`` is a dict {layer: (N, neurons) float32} that also carries, in its ``ranges``
    attribute, each feature map's per-input [min, max] (deeptest_iot.coverage.activations.Activations);
    pass it to ``CoverageTracker.update`` as it is."""

    outputs: Any
    activations: Activations | None
    raw: list[np.ndarray] = field(repr=False, default_factory=list)


def _tf():
    import tensorflow as tf

    return tf


def crop_box(frame_hw: tuple[int, int], crop: Sequence[float]) -> tuple[int, int, int, int]:
    """Pixel rows/cols (y0, y1, x0, x1) kept of a frame after the card's crop fractions."""
    h, w = frame_hw
    top, bottom, left, right = crop
    y0 = int(np.floor(top * h + 0.5))
    y1 = h - int(np.floor(bottom * h + 0.5))
    x0 = int(np.floor(left * w + 0.5))
    x1 = w - int(np.floor(right * w + 0.5))
    return y0, max(y1, y0 + 1), x0, max(x1, x0 + 1)


def check_frames(frames: Any) -> np.ndarray:
    """Frames must be uint8 (N, H, W, 3) RGB; a single (H, W, 3) frame is taken as a batch of one."""
    if not isinstance(frames, np.ndarray):
        raise InputError(f"frames must be a NumPy array (N, H, W, 3) of uint8, not {type(frames).__name__}")
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must have shape (N, H, W, 3) (RGB), not {frames.shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8 (raw camera pixels 0..255), not {frames.dtype}")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise InputError(f"frames must be at least 1x1 pixels, not {frames.shape[1]}x{frames.shape[2]}")
    return frames


def preprocess_tf(frames, card: ModelCard):
    """Crop, resize, reorder channels and scale a uint8 batch of a known frame size, as TF ops.

    The one definition of "what the network sees": ``run`` compiles it into the model's graph and
    the sample models' training uses it eagerly. The frame size is static, so the crop and whether
    to resize at all are decided in Python: frames already at the input size pay no resize.
    """
    tf = _tf()
    h, w = int(frames.shape[1]), int(frames.shape[2])
    y0, y1, x0, x1 = crop_box((h, w), card.crop)
    if (y0, y1, x0, x1) != (0, h, 0, w):
        frames = frames[:, y0:y1, x0:x1, :]
    x = tf.cast(frames, tf.float32)
    if (y1 - y0, x1 - x0) != tuple(card.input_size):
        x = tf.image.resize(x, card.input_size, method="bilinear")
    if card.color == "bgr":
        x = x[..., ::-1]
    elif card.color == "gray":
        x = tf.image.rgb_to_grayscale(x)
    if card.scale != 1.0:
        x = x * card.scale
    if card.offset != 0.0:
        x = x + card.offset
    return x


class ModelUnderTest:
    """Common part of every backend: the card, preprocessing, output decoding and checks."""

    supports_coverage = False
    kind = "model"

    def __init__(self, card: ModelCard, input_hwc: tuple[int, int, int], name: str, fingerprint: str,
                 path: str | None = None, batch_size: int = DEFAULT_BATCH):
        h, w, c = input_hwc
        if card.input_size is None:
            if h is None or w is None:
                raise ModelError(f"model {name!r} accepts any image size; give input_size = [height, width] "
                                 "in its model card")
            card = card.replace(input_size=(int(h), int(w)))
        if c not in (1, 3):
            raise ModelError(f"model {name!r} takes {c} channels; deeptest-iot feeds camera frames "
                             "(3 channels, or 1 with color = \"gray\" in the model card)")
        if c == 1 and card.color != "gray":
            card = card.replace(color="gray")
        self.card = card
        self.name = name
        self.fingerprint = fingerprint
        self.path = path
        self.batch_size = batch_size
        self._functions: dict = {}

    # -- preprocessing -------------------------------------------------------------------------
    def _preprocess_tf(self, frames):
        """The card's preprocessing as TF ops, for frames of one static size (see ``_function``)."""
        return preprocess_tf(frames, self.card)

    def _function(self, kind: str, frame_hw: tuple[int, int], body):
        """A tf.function of ``body(frames)`` for uint8 frames of one size, compiled once per (kind, size)."""
        key = (kind, int(frame_hw[0]), int(frame_hw[1]))
        fn = self._functions.get(key)
        if fn is None:
            tf = _tf()
            spec = [tf.TensorSpec([None, key[1], key[2], 3], tf.uint8)]
            fn = self._functions[key] = tf.function(body, input_signature=spec)
        return fn

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """The network input (N, h, w, c) float32 the card makes of raw frames."""
        frames = check_frames(frames)
        return self._function("preprocess", frames.shape[1:3], self._preprocess_tf)(frames).numpy()

    # -- running -------------------------------------------------------------------------------
    @property
    def layers(self) -> list[LayerTap]:
        return []

    @property
    def layer_sizes(self) -> dict[str, int]:
        return {tap.name: tap.neurons for tap in self.layers}

    @property
    def neurons(self) -> int:
        return sum(self.layer_sizes.values())

    def _forward(self, frames: np.ndarray, with_activations: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
        raise NotImplementedError

    def run(self, frames: np.ndarray, with_activations: bool = True) -> RunResult:
        """Predictions and (if asked) activations of every counted layer, from one forward pass per batch."""
        frames = check_frames(frames)
        if with_activations and not self.supports_coverage:
            raise UnsupportedError(
                f"coverage needs a Keras model (.keras or .h5); {self.name!r} is a {self.kind} model, which "
                "deeptest-iot can test for metamorphic relations but not measure for neuron coverage "
                "(run without coverage criteria, e.g. --coverage none)")
        raw_parts: list[list[np.ndarray]] = []
        act_parts: list[list[np.ndarray]] = []
        for start in range(0, len(frames), self.batch_size):
            raw, acts = self._forward(frames[start:start + self.batch_size], with_activations)
            raw_parts.append(raw)
            act_parts.append(acts)
        if raw_parts:
            raw = [_join(parts) for parts in zip(*raw_parts)]
        else:
            raw = self._empty_raw()
        activations = None
        if with_activations:
            taps = self.layers
            names = [tap.name for tap in taps]
            spatial = [tap.name for tap in taps if tap.spatial]
            if act_parts and act_parts[0]:
                # per batch: the taps' means, then the spatial taps' [min, max] (layers.build_tapped_model)
                joined = [_join(parts).astype(np.float32, copy=False) for parts in zip(*act_parts)]
                activations = Activations(zip(names, joined[:len(names)]),
                                          ranges=dict(zip(spatial, joined[len(names):])))
            else:
                activations = Activations({tap.name: np.zeros((0, tap.neurons), np.float32) for tap in taps},
                                          ranges={n: np.zeros((0, 2), np.float32) for n in spatial})
            bad = list(dict.fromkeys(n for n, a in [*activations.items(), *activations.ranges.items()]
                                     if a.size and not np.isfinite(a).all()))
            if bad:
                rows = np.flatnonzero(~np.all([np.isfinite(activations[n]).all(axis=1) for n in bad], axis=0))
                raise OutputError(f"model {self.name!r} produced NaN or Inf activations in layer(s) "
                                  f"{', '.join(bad[:5])} for {len(rows)} of {len(frames)} input(s) (first: "
                                  f"{', '.join(str(i) for i in rows[:5])}); check the model and its card's "
                                  "scale/offset", inputs=rows)
        outputs = self.decode(raw, frames.shape[1:3])
        return RunResult(outputs=outputs, activations=activations, raw=raw)

    def predict(self, frames: np.ndarray):
        """Decoded outputs only."""
        return self.run(frames, with_activations=False).outputs

    def _empty_raw(self) -> list[np.ndarray]:
        return [np.zeros((0, 1), np.float32)]

    # -- reading outputs -----------------------------------------------------------------------
    def output_index(self, raw: list[np.ndarray]) -> int:
        """Which raw output the card names (by index or by the model's output name)."""
        out = self.card.output
        if isinstance(out, str):
            names = self.output_names
            if out not in names:
                raise ConfigError(f"model card: output {out!r} not found; the model's outputs are "
                                  f"{', '.join(names)}")
            return names.index(out)
        if not 0 <= out < len(raw):
            raise ConfigError(f"model card: output index {out} out of range; the model has {len(raw)} output(s)")
        return out

    @property
    def output_names(self) -> list[str]:
        return []

    @property
    def task(self):
        """The rules of the card's task (relation, decoding, labels, drawing)."""
        from deeptest_iot.tasks import get_task

        return get_task(self.card.task)

    def decode(self, raw: list[np.ndarray], frame_hw: tuple[int, int]):
        """Turn raw outputs into the task's outputs (angles, class probabilities, detections); the task
        refuses NaN/Inf in the outputs it reads (``check_finite``)."""
        return self.task.decode(raw, self, frame_hw)

    def check_finite(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` (a raw output of a batch), or an OutputError naming the inputs that gave NaN or Inf."""
        _check_finite(arr, self.name)
        return arr

    def describe(self) -> dict[str, Any]:
        """What `inspect` prints: card, input, layers counted."""
        return {
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "card": self.card.to_dict(),
            "input": {"size": list(self.card.input_size), "color": self.card.color,
                      "frames": "uint8 RGB (N, H, W, 3), any H and W"},
            "coverage": self.supports_coverage,
            "layers": [{"name": t.name, "type": t.type, "neurons": t.neurons} for t in self.layers],
            "neurons": self.neurons,
        }

    def throughput(self, seconds: float = 2.0, batch: int = 64) -> float:
        """Frames per second of ``run`` (with activations when the model supports coverage)."""
        h, w = self.card.input_size
        frames = np.random.default_rng(0).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
        self.run(frames, with_activations=self.supports_coverage)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.run(frames, with_activations=self.supports_coverage)
            n += batch
        return n / (time.perf_counter() - start)


def _join(parts) -> np.ndarray:
    """Concatenate per-batch arrays, without a copy when there was one batch."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.size and not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
        first = ", ".join(str(i) for i in bad[:5])
        raise OutputError(f"model {name!r} output NaN or Inf for {len(bad)} of {len(arr)} input(s) "
                          f"(first: {first}); deeptest-iot reports them instead of averaging them away. "
                          "Check the model and its card's scale/offset", inputs=bad)


# -- Keras ---------------------------------------------------------------------------------------
class KerasModelUnderTest(ModelUnderTest):
    """A Keras model with a compiled function that returns outputs and reduced activations together."""

    supports_coverage = True
    kind = "keras"

    def __init__(self, model, card: ModelCard, include=(), exclude=(), path: str | None = None,
                 batch_size: int = DEFAULT_BATCH):
        import keras

        if not isinstance(model, keras.Model):
            raise ModelError(f"not a Keras model: {type(model).__name__}")
        model = _ensure_built(model, card)
        if len(model.inputs) != 1:
            raise UnsupportedError(f"model {model.name!r} has {len(model.inputs)} inputs; deeptest-iot tests "
                                   "models with one image input (several image inputs are not supported)")
        shape = tuple(model.inputs[0].shape)
        if len(shape) != 4:
            raise ModelError(f"model {model.name!r} input has shape {shape}, which is not an image batch "
                             "(N, H, W, C); deeptest-iot tests camera models")
        self.model = model
        super().__init__(card, shape[1:], model.name, _keras_fingerprint(model), path, batch_size)
        self.card = _infer_task(self.card, model)
        self.card, note = _match_input_normalisation(self.card, model)
        self.notes = [note] if note else []
        try:
            self._tapped, self._taps, self._n_outputs = build_tapped_model(model, include, exclude)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise UnsupportedError(f"cannot read the layers of model {model.name!r}: {exc}") from None
        if (include or exclude) and not self._taps:
            raise ConfigError(f"no layer of {model.name!r} matches include={list(include)} "
                              f"exclude={list(exclude)}; its layers are: "
                              + ", ".join(layer.name for layer in model.layers))

    @property
    def layers(self) -> list[LayerTap]:
        return list(self._taps)

    @property
    def output_names(self) -> list[str]:
        return [getattr(t, "name", str(i)) for i, t in enumerate(self.model.outputs)]

    def _compiled(self, with_activations: bool, frame_hw: tuple[int, int]):
        """One compiled function per frame size: preprocessing and the model (with its taps) together."""
        if with_activations:
            tapped = self._tapped
            return self._function("full", frame_hw,
                                  lambda frames: tapped(self._preprocess_tf(frames), training=False))
        model = self.model
        return self._function("outputs", frame_hw, lambda frames: model(self._preprocess_tf(frames), training=False))

    def _forward(self, frames, with_activations):
        outs = self._compiled(with_activations, frames.shape[1:3])(_tf().convert_to_tensor(frames))
        outs = [o.numpy() for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
        if with_activations:
            return outs[:self._n_outputs], outs[self._n_outputs:]
        return outs, []

    def _empty_raw(self):
        return [np.zeros((0,) + tuple(int(d) for d in o.shape[1:]), np.float32) for o in self.model.outputs]


def _ensure_built(model, card: ModelCard):
    """A Sequential model built without an Input layer is built from the card's input size."""
    try:
        model.inputs  # noqa: B018 - raises on an unbuilt Sequential
        if model.inputs:
            return model
    except (AttributeError, ValueError):
        pass
    if card.input_size is None:
        raise ModelError(f"model {model.name!r} has no Input layer and was never built; give input_size = "
                         "[height, width] in its model card so deeptest-iot can build it")
    channels = 1 if card.color == "gray" else 3
    model.build((None, *card.input_size, channels))
    return model


def _input_normalisation(model):
    """The Rescaling or Normalization layer a model applies to its input first (inside nested
    models too), or None."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers:
        return None
    first = layers[0]
    if isinstance(first, (keras.layers.Rescaling, keras.layers.Normalization)):
        return first
    if isinstance(first, keras.Model):
        return _input_normalisation(first)
    return None


def _match_input_normalisation(card: ModelCard, model) -> tuple[ModelCard, str | None]:
    """A model that normalises its input itself must get raw 0..255 pixels: the card's default scale
    (1/255) would shrink them twice and blind the model. Change the default, saying so; warn when a
    card asks for both."""
    layer = _input_normalisation(model)
    if layer is None:
        return card, None
    what = f"{type(layer).__name__} layer {layer.name!r}"
    if "scale" not in card.given and "offset" not in card.given:
        return card.replace(scale=1.0, offset=0.0), (
            f"model {model.name!r} normalises its input itself ({what}): it is fed raw 0..255 pixels (card "
            "scale 1, offset 0); set scale in its model card to change that")
    if card.scale != 1.0 or card.offset != 0.0:
        return card, (f"model {model.name!r} normalises its input itself ({what}) and its card scales pixels too "
                      f"(x * {card.scale:g} + {card.offset:g}): the model sees them normalised twice unless that is "
                      "intended")
    return card, None


def _infer_task(card: ModelCard, model) -> ModelCard:
    if card.task is not None:
        return card
    units = model.outputs[0].shape[-1] if len(model.outputs) == 1 else None
    if units == 1:
        return card.replace(task="steering")
    if units is not None and len(model.outputs[0].shape) == 2:
        return card.replace(task="classification")
    raise ModelError(f"cannot tell the task of model {model.name!r} from its outputs; set task = "
                     "\"steering\", \"classification\" or \"detection\" in its model card")


def _keras_fingerprint(model) -> str:
    """sha256 of the architecture and the weights, so results name exactly the model they came from."""
    h = hashlib.sha256()
    h.update(model.to_json().encode())
    for w in model.weights:
        h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
    return "sha256:" + h.hexdigest()


def _file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(p.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


# -- loading -------------------------------------------------------------------------------------
TRUST_HINT = ("it holds a Lambda layer with Python bytecode, which runs arbitrary code when loaded; "
              "deeptest-iot refuses it unless you trust the file and pass --trust-model (trust=True)")


def load_model(model, card: ModelCard | dict | str | Path | None = None, *, task: str | None = None,
               trust: bool = False, include: Sequence[str] = (), exclude: Sequence[str] = (),
               batch_size: int = DEFAULT_BATCH) -> ModelUnderTest:
    """Load a model to test: a path (.keras, .h5, .tflite, .onnx, SavedModel dir) or a Keras model.

    ``card``: a ModelCard, a card TOML path, or a dict of card options layered on the card beside
    the model (default: that card, else defaults). ``task`` overrides the card's task; ``include`` /
    ``exclude`` are layer-name globs for coverage; ``trust`` allows Lambda bytecode (runs code!).
    """
    import keras

    if isinstance(model, keras.Model):
        card_obj = _with_task(resolve_card(None, card), task)
        return KerasModelUnderTest(model, card_obj, include, exclude, batch_size=batch_size)
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(f"expected a model path or a Keras model, not {type(model).__name__}")
    path = Path(model)
    if not path.exists():
        raise ModelError(f"model {path}: no such file or directory")
    card_obj = _with_task(resolve_card(path, card), task)
    suffix = path.suffix.lower()
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            from deeptest_iot.model.backends import SavedModelUnderTest

            return SavedModelUnderTest(path, card_obj, _file_fingerprint(path), batch_size)
        raise ModelError(f"model {path}: a directory, but not a TF SavedModel (no saved_model.pb)")
    if suffix == ".tflite":
        from deeptest_iot.model.backends import TFLiteModelUnderTest

        return TFLiteModelUnderTest(path, card_obj, _file_fingerprint(path), batch_size)
    if suffix == ".onnx":
        from deeptest_iot.model.backends import OnnxModelUnderTest

        return OnnxModelUnderTest(path, card_obj, _file_fingerprint(path), batch_size)
    if suffix == ".keras" or (suffix not in (".h5", ".hdf5") and zipfile.is_zipfile(path)):
        if not zipfile.is_zipfile(path):
            raise ModelError(f"model {path}: not a .keras archive (the file is truncated or corrupt, or not a "
                             "Keras model)")
        kmodel = load_keras_file(path, trust, ".keras")
    elif suffix in (".h5", ".hdf5") or _is_hdf5(path):
        if not _is_hdf5(path):
            raise ModelError(f"model {path}: not an HDF5 file (the file is truncated or corrupt, or not a "
                             "Keras model)")
        kmodel = load_keras_file(path, trust, ".h5")
    else:
        raise ModelError(f"model {path}: not a model file deeptest-iot can read; expected .keras, .h5, "
                         ".tflite, .onnx or a TF SavedModel directory")
    return KerasModelUnderTest(kmodel, card_obj, include, exclude, path=str(path), batch_size=batch_size)


def _with_task(card: ModelCard, task: str | None) -> ModelCard:
    return card.replace(task=task) if task else card


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


MIN_KERAS = (3, 11, 3)  # earlier Keras 3 releases have known safe_mode bypasses


def _check_keras_version(version: str) -> None:
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts < MIN_KERAS:
        raise ModelError(f"Keras {version} is installed; deeptest-iot loads model files only with Keras >= "
                         f"{'.'.join(map(str, MIN_KERAS))}, whose safe_mode has no known bypass "
                         "(pip install -U 'keras>=3.11.3')")


def load_keras_file(path: Path, trust: bool, fmt: str):
    """Load a .keras or .h5 file with Keras 3, turning each way it can fail into one ModelError line."""
    import keras

    _check_keras_version(keras.__version__)
    import_user_modules()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except Exception as exc:  # corrupt archives raise anything from zipfile, h5py or json
        text = str(exc)
        legacy = _legacy_h5(path) if fmt == ".h5" else None
        if legacy is not None:
            version, has_lambda = legacy
            raise ModelError(
                f"model {path}: a legacy Keras {version} .h5 file, which Keras {keras.__version__} cannot read"
                + (" (it holds a Lambda layer: Python code, which --trust-model cannot revive from this format)"
                   if has_lambda else "")
                + ". Move it: rebuild the architecture in Keras 3 code (a Rescaling layer instead of a Lambda "
                  "normalisation), call model.load_weights() on this file's weights, and save it as .keras") from None
        if isinstance(exc, ValueError) and "lambda" in text.lower() and "safe_mode" in text:
            raise ModelError(f"model {path}: {TRUST_HINT}") from None
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
        if unknown:
            raise ModelError(
                f"model {path}: it uses {unknown.group(1)!r}, a custom class this Python session does not define. "
                "Define it in a module, decorated with @keras.saving.register_keras_serializable(), and have "
                f"deeptest-iot import that module first: set {IMPORT_ENV}=your.module (comma-separated for "
                "several), or import it yourself before load_model (e.g. in conftest.py)") from None
        if isinstance(exc, ValueError):
            raise ModelError(f"model {path}: cannot load this {fmt} file: {first_line(text)}") from None
        raise ModelError(f"model {path}: cannot load this {fmt} file (truncated or corrupt?): "
                         f"{type(exc).__name__}: {first_line(text)}") from None


#: Modules to import before a model is loaded (custom layers registered with Keras), comma-separated.
IMPORT_ENV = "DEEPTEST_IMPORT"


def import_user_modules() -> None:
    """Import the modules named in $DEEPTEST_IMPORT, so that their custom Keras classes are registered."""
    import importlib

    for name in filter(None, (n.strip() for n in os.environ.get(IMPORT_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ModelError(f"{IMPORT_ENV}: cannot import {name!r}: {exc}") from None


def _legacy_h5(path: Path) -> tuple[str, bool] | None:
    """(Keras version, holds a Lambda layer) of an .h5 file written by Keras 1 or 2, else None."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
            config = f.attrs.get("model_config")
    except Exception:  # not readable as HDF5 at all: the caller's generic message applies
        return None
    version = version.decode() if isinstance(version, bytes) else str(version or "")
    if not version or not version.split(".")[0].isdigit() or int(version.split(".")[0]) >= 3:
        return None
    config = config.decode() if isinstance(config, bytes) else str(config or "")
    return version, '"Lambda"' in config


def first_line(text: str) -> str:
    """The first line of an error text, capped, so a library's message fits one line of ours."""
    return text.strip().splitlines()[0][:300] if text.strip() else ""
