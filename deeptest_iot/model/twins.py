"""A float model and its deployed twin: load the twin with the float model's card, check they match.

``check_twin`` is what a differential run checks first: a twin must take the same network input
and give outputs of the same shape as the float model, or comparing them input by input is
meaningless. It also says which counted layers the two share (coverage on the twin is measured on
those of its layers whose tensors could be mapped, see ``twin_taps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeptest_iot.errors import ModelError

PREPROCESSING_KEYS = ("input_size", "color", "crop", "scale", "offset")


@dataclass
class TwinCheck:
    """What ``check_twin`` found: the twin is usable; which layers both count."""

    float_name: str
    twin_name: str
    twin_kind: str
    task: str
    input_size: tuple
    output_shapes: list  # raw output shapes without the batch axis, the same for both
    shared_layers: list = field(default_factory=list)  # counted by both, same neurons
    float_only_layers: list = field(default_factory=list)  # counted by the float model, not mapped in the twin
    twin_only_layers: list = field(default_factory=list)
    quantised_input: bool = False

    def describe(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def load_twin(path, float_mut=None, card=None, batch_size: int | None = None):
    """Load a twin (.tflite, .onnx, or any model ``load_model`` reads).

    Its card: ``card`` when given, else the ``.toml`` beside the twin, else the float model's card
    (a twin takes the same network input as the float model).
    """
    from deeptest_iot.model.card import card_path_for
    from deeptest_iot.model.core import DEFAULT_BATCH, load_model

    if card is None and float_mut is not None and not card_path_for(path).is_file():
        card = float_mut.card
    bs = batch_size or (float_mut.batch_size if float_mut is not None else DEFAULT_BATCH)
    return load_model(path, card, batch_size=bs)


def _raw_shapes(mut) -> list:
    h, w = mut.card.input_size
    frames = np.zeros((1, h, w, 3), np.uint8)
    frames[:, h // 4: 3 * h // 4] = 128  # not all zeros: some models normalise by the frame's range
    raw, _ = mut._forward(frames, False)  # raw outputs, before decoding reads them as the task's
    return [tuple(int(d) for d in r.shape[1:]) for r in raw]


def check_twin(float_mut, twin_mut) -> TwinCheck:
    """Refuse a twin that cannot be compared with its float model; report the layers both count.

    ModelError (exit 2) when the task, the network input (size, channels, the card's
    preprocessing) or the raw outputs' number or shapes differ.
    """
    fcard, tcard = float_mut.card, twin_mut.card
    who = f"twin {twin_mut.name!r} of {float_mut.name!r}"
    if fcard.task != tcard.task:
        raise ModelError(f"{who}: the float model's task is {fcard.task} but the twin's is {tcard.task}; "
                         "a twin must do the float model's job (check the twin's model card)")
    if tuple(fcard.input_size) != tuple(tcard.input_size):
        raise ModelError(f"{who}: the twin takes {tcard.input_size[0]}x{tcard.input_size[1]} inputs but the float "
                         f"model takes {fcard.input_size[0]}x{fcard.input_size[1]}; convert the twin from this "
                         "float model (deeptest-iot convert)")
    diffs = [k for k in PREPROCESSING_KEYS if getattr(fcard, k) != getattr(tcard, k)]
    if diffs:
        shown = ", ".join(f"{k} {getattr(fcard, k)!r} vs {getattr(tcard, k)!r}" for k in diffs)
        raise ModelError(f"{who}: the model cards preprocess frames differently ({shown}); the twin takes the "
                         "same network input as the float model, so give both the same card")
    f_shapes, t_shapes = _raw_shapes(float_mut), _raw_shapes(twin_mut)
    if len(f_shapes) != len(t_shapes):
        raise ModelError(f"{who}: the float model has {len(f_shapes)} output(s), the twin {len(t_shapes)}")
    for i, (a, b) in enumerate(zip(f_shapes, t_shapes)):
        if int(np.prod(a)) != int(np.prod(b)):
            raise ModelError(f"{who}: output {i} has shape {list(b)} in the twin but {list(a)} in the float model "
                             "(per input); the twin is not a conversion of this model")
    f_sizes = float_mut.layer_sizes if float_mut.supports_coverage else {}
    t_sizes = twin_mut.layer_sizes if twin_mut.supports_coverage else {}
    shared = [n for n in f_sizes if t_sizes.get(n) == f_sizes[n]]
    return TwinCheck(
        float_name=float_mut.name, twin_name=twin_mut.name, twin_kind=twin_mut.kind, task=fcard.task,
        input_size=tuple(fcard.input_size), output_shapes=[list(s) for s in f_shapes], shared_layers=shared,
        float_only_layers=[n for n in f_sizes if n not in shared],
        twin_only_layers=[n for n in t_sizes if n not in shared],
        quantised_input=bool(getattr(twin_mut, "quantised", False)))


def twin_path_for(model_path, to: str) -> Path:
    """The default file of a model's twin: ``dave2.keras`` -> ``dave2.int8.tflite`` / ``dave2.onnx``."""
    p = Path(model_path)
    return p.with_name(f"{p.stem}.onnx") if to == "onnx" else p.with_name(f"{p.stem}.{to}.tflite")


#: ``--twin int8`` (and the other conversion targets) means the twin ``deeptest-iot convert`` wrote beside the model.
TWIN_KINDS = ("int8", "float16", "dynamic", "onnx")


def resolve_twin_path(value, model_path, flag: str = "--twin") -> Path:
    """The file a ``--twin`` value names: a path, or a conversion target (``int8``, ``float16``,
    ``dynamic``, ``onnx``) for the twin beside ``model_path`` with ``convert``'s default name, when no
    file of that name exists. ConfigError (naming ``flag``) when the file is not there."""
    from deeptest_iot.errors import ConfigError

    text = str(value)
    path = Path(text).expanduser()
    if text in TWIN_KINDS and not path.exists():
        if model_path is None:
            raise ConfigError(f"{flag} {text}: the {text} twin beside which model? Give --model, or the twin's path")
        path = twin_path_for(model_path, text)
        if not path.exists():
            raise ConfigError(f"{flag} {text}: no {path.name} beside {model_path}; make it with `deeptest-iot convert "
                              f"{model_path} --to {text}` or give the twin's path")
        return path
    if not path.exists():
        raise ConfigError(f"{flag} {text}: no such file (a .tflite or .onnx twin, or one of {', '.join(TWIN_KINDS)} "
                          "for the twin beside the model)")
    return path

