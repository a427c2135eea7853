"""Which layers count as neurons, and a flat multi-output Keras model that exposes them.

A neuron is one unit of a Dense layer or one channel of a feature map, whose value is the channel's
spatial mean (docs/design.md). For each feature map the model also emits, per input, the [min, max] over
the whole map, which the reference NC scales by (coverage/criteria.py, ``NC``). Layers that only
move or rescale data (Input, Flatten, Reshape, Dropout, Pooling, Rescaling, Normalization, merges)
are not counted. Nested models are traced through, so their inner layers count too, named
``outer_model/inner_layer``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import keras

FEATURE_LAYER_TYPES: tuple[type, ...] = tuple(
    getattr(keras.layers, name)
    for name in (
        "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
        "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
        "Dense", "EinsumDense",
        "SimpleRNN", "LSTM", "GRU", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
        "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax",
    )
    if hasattr(keras.layers, name)
)


@dataclass(frozen=True)
class LayerTap:
    """A layer whose (spatially averaged) output is read as activations. ``spatial``: its output has
    more axes than (N, neurons) (a feature map or a sequence), so its neurons are means and the
    tapped model also emits the output's per-input [min, max]."""

    name: str
    type: str
    neurons: int
    spatial: bool = False


def is_feature_layer(layer) -> bool:
    return isinstance(layer, FEATURE_LAYER_TYPES) and not isinstance(layer, keras.Model)


def _selected(name: str, layer, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    """Default: feature layers. ``include`` patterns choose among all layers; ``exclude`` removes."""
    if include:
        chosen = any(fnmatch.fnmatchcase(name, pat) for pat in include)
    else:
        chosen = is_feature_layer(layer)
    return chosen and not any(fnmatch.fnmatchcase(name, pat) for pat in exclude)


def _is_graph_model(op) -> bool:
    return isinstance(op, keras.Model) and (isinstance(op, keras.Sequential) or hasattr(op, "_nodes_by_depth"))


def _graph_of(model):
    """The Functional graph behind a model (a built Sequential keeps one in ``_functional``)."""
    if isinstance(model, keras.Sequential):
        return model._functional
    return model


def _trace(model, inputs, prefix: str, records: list) -> object:
    """Re-run ``model``'s graph on symbolic ``inputs``, recording every plain layer's output.

    Nested models are entered instead of called, so their inner layers' outputs become tensors of
    the outer graph and can be model outputs of one flat model.
    """

    def operation_fn(op):
        if _is_graph_model(op):
            def call_nested(*args, **kwargs):
                return _trace(op, args[0] if len(args) == 1 else list(args), f"{prefix}{op.name}/", records)
            return call_nested

        def call_layer(*args, **kwargs):
            out = op(*args, **kwargs)
            records.append((f"{prefix}{op.name}", op, out))
            return out
        return call_layer

    graph = _graph_of(model)
    outputs = graph._run_through_graph(inputs, operation_fn=operation_fn)
    return outputs


def _reduce(tensor):
    """Mean over every axis but the batch and the last (channels): one value per neuron."""
    rank = len(tensor.shape)
    if rank <= 2:
        return tensor
    return keras.ops.mean(tensor, axis=tuple(range(1, rank - 1)))


def _range(tensor):
    """Per input, [min, max] over every element of the output but the batch axis: (N, 2)."""
    axes = tuple(range(1, len(tensor.shape)))
    return keras.ops.stack([keras.ops.min(tensor, axis=axes), keras.ops.max(tensor, axis=axes)], axis=-1)


def build_tapped_model(model, include=(), exclude=()):
    """A flat Keras model returning ``[*model_outputs, *reduced_activations, *ranges]`` and the taps
    it reads (``ranges``: one (N, 2) [min, max] per spatial tap, in tap order).

    One forward pass of it gives the predictions and every counted layer's activations; conv maps are
    averaged (and their extremes taken) inside the graph, so full feature maps never reach NumPy.
    """
    include, exclude = tuple(include), tuple(exclude)
    records: list = []
    nested = any(_is_graph_model(layer) for layer in model.layers)
    if nested:
        outputs = _trace(model, list(model.inputs) if len(model.inputs) > 1 else model.inputs[0], "", records)
    else:
        outputs = model.outputs
        for layer in _graph_of(model).layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            records.append((layer.name, layer, layer.output))
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    taps: list[LayerTap] = []
    tapped = []
    ranges = []
    seen = set()
    for name, layer, out in records:
        if name in seen or not _selected(name, layer, include, exclude):
            continue
        seen.add(name)
        out = out[0] if isinstance(out, (list, tuple)) else out
        reduced = _reduce(out)
        neurons = int(reduced.shape[-1]) if len(reduced.shape) > 1 else 1
        spatial = len(out.shape) > 2
        taps.append(LayerTap(name=name, type=type(layer).__name__, neurons=neurons, spatial=spatial))
        tapped.append(reduced)
        if spatial:
            ranges.append(_range(out))
    flat = keras.Model(inputs=model.inputs, outputs=outputs + tapped + ranges, name=f"{model.name}_tapped")
    return flat, taps, len(outputs)
