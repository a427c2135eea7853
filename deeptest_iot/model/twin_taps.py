"""Coverage on converted models: which LiteRT / ONNX tensors are the Keras layers' outputs.

A converted twin has no Keras layers, only tensors named after the TensorFlow ops they came from.
Keras 3 (TensorFlow backend) runs every layer call inside a name scope ``<layer>_<k>`` nested in
the model's scope ``<model>_<k>``, so an op of layer ``conv1`` is called
``dave2_steering_1/conv1_1/Relu`` (TF appends ``_<k>`` to a scope used before; the converter and
the ONNX exporter keep these names). The rules, applied to the twin alone:

1. **Activation tensors** are the tensors computed from the graph input (constant weights, and
   ops computing only on constants, such as the float16 twins' weight DEQUANTIZE, are left out).
2. **Layer of a tensor.** A name is split on ``;`` (the converter joins the names of fused ops);
   each part ``model_k/a_k/b_k/Op`` gives the layer path ``a/b``: the scopes after the model's
   that carry the ``_<k>`` suffix, with the suffix removed (a scope without one, such as
   ``convolution`` in ``conv6_1/convolution/SpaceToBatchND``, is inside the layer). When the model
   scope has no ``_<k>`` suffix, only the first scope after it is taken. A tensor whose parts name
   different layers (a layer fused into the next one) belongs to none: the twin holds no value
   equal to either layer's own output.
3. **Unnamed tensors** (``tfl.quantize``, a model output renamed ``StatefulPartitionedCall:0``,
   ONNX ``Transpose__40``) inherit the layer of their one computed input when their op only
   re-encodes or activates it (QUANTIZE, DEQUANTIZE, activations, Transpose, Identity): so a
   ``Dense(activation="softmax")`` whose softmax became the model output is still mapped, to the
   softmax output.
4. **Counted layers** are those with a feature op among their tensors' producers (convolutions,
   fully connected / MatMul / Gemm, recurrent ops, activations), as Keras counts Conv, Dense,
   recurrent and Activation layers; Rescaling (MUL/ADD), Flatten (RESHAPE), pooling and
   GlobalAveragePooling (MEAN) are not counted.
5. **The layer's output** is its last activation tensor in execution order (after a fused or
   separate activation, after a requantisation).

Values are dequantised with each tensor's scale and zero point, then reduced as the Keras taps
are: a (N, H, W, C) map to its per-channel spatial means (N, C); (N, units) as it is. The per-input
minimum and maximum of the whole map are kept too. ONNX maps are channel-first after a Conv (the
ONNX operator spec), so the channel axis is tracked through Transpose permutations from the
graph input (NHWC) and reset to 1 by Conv, pooling and normalisation ops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

SUFFIX = re.compile(r"^(.*)_(\d+)$")

#: LiteRT builtin ops that compute features (Conv, Dense, recurrent, Activation layers).
TFLITE_FEATURE_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "CONV_3D_TRANSPOSE", "TRANSPOSE_CONV", "FULLY_CONNECTED",
    "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
    "BIDIRECTIONAL_SEQUENCE_RNN", "LSTM", "SVDF", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "ELU",
    "LOGISTIC", "TANH", "SOFTMAX", "LEAKY_RELU", "PRELU", "HARD_SWISH", "GELU",
})
#: LiteRT ops whose output is the same value as their input, re-encoded or activated.
TFLITE_PASS_OPS = frozenset({
    "QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "ELU", "LOGISTIC", "TANH",
    "SOFTMAX", "LEAKY_RELU", "HARD_SWISH", "GELU",
})
ONNX_FEATURE_OPS = frozenset({
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "Gemm", "MatMul", "MatMulInteger", "QLinearMatMul",
    "LSTM", "GRU", "RNN", "Relu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Softmax", "LeakyRelu",
    "PRelu", "HardSwish", "Gelu", "Softplus", "Mish", "Celu", "ThresholdedRelu",
})
ONNX_PASS_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "Identity", "Transpose", "Relu", "Elu", "Selu", "Sigmoid",
    "HardSigmoid", "Tanh", "Softmax", "LeakyRelu", "HardSwish", "Gelu", "Softplus", "Mish", "Celu", "Cast",
})
#: ONNX ops whose (rank-4) output is channel-first by the operator spec.
ONNX_NCHW_OPS = frozenset({
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool",
    "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "InstanceNormalization", "LRN",
})
#: ONNX ops that keep the layout of their first computed input.
ONNX_SAME_LAYOUT_OPS = ONNX_PASS_OPS - {"Transpose"} | frozenset({
    "Add", "Sub", "Mul", "Div", "Max", "Min", "Clip", "Pad", "Concat", "Resize", "Upsample", "Abs", "Neg",
    "Sqrt", "Exp", "Log", "Pow", "Sum", "Mean",
})


@dataclass(frozen=True)
class TensorTap:
    """A counted layer of a twin: the tensor holding its output and how to read it."""

    name: str  # the Keras layer path it maps to
    type: str  # the layer's first feature op (LiteRT builtin or ONNX op type), e.g. CONV_2D, Conv
    neurons: int
    tensor: object  # LiteRT tensor index, or ONNX value name
    channel_axis: int  # axis of the neurons in the tensor (last for NHWC and (N, units))
    scale: np.ndarray | None = field(default=None, compare=False)  # dequantisation, None for float
    zero_point: np.ndarray | None = field(default=None, compare=False)
    quantized_dimension: int = 0


@dataclass
class TapMap:
    """The counted layers found in a twin, and why others were left out."""

    taps: list
    skipped: dict  # layer path -> reason (e.g. fused into another layer)

    @property
    def layer_sizes(self) -> dict:
        return {t.name: t.neurons for t in self.taps}


def layer_of_part(part: str) -> str | None:
    """The Keras layer path of one op name (``model_1/conv1_1/Relu`` -> ``conv1``), or None."""
    part = part.split(":")[0]
    segs = [s for s in part.split("/") if s]
    if len(segs) < 3:
        return None
    if not SUFFIX.match(segs[0]):
        return segs[1]
    path = []
    for seg in segs[1:-1]:
        m = SUFFIX.match(seg)
        if not m:
            break
        path.append(m.group(1))
    return "/".join(path) or None


def layers_of_name(name: str) -> set:
    """Every layer path named by a (possibly fused, ``;``-joined) tensor name."""
    return {p for p in (layer_of_part(part) for part in name.split(";")) if p}


def _attribute(producers, is_activation, pass_ops):
    """Layer of each produced activation tensor, following rules 2 and 3 of the module docstring.

    ``producers``: list of (op type, [computed input ids], [(output id, name)]) in execution order.
    Returns ({tensor id: layer}, {layer: reason}) for the ambiguous (fused) layers.
    """
    layer_of: dict = {}
    fused: dict = {}
    for op, inputs, outputs in producers:
        for tid, name in outputs:
            if not is_activation(tid):
                continue
            layers = layers_of_name(name)
            if len(layers) == 1:
                layer_of[tid] = next(iter(layers))
            elif len(layers) > 1:
                for layer in layers:
                    fused[layer] = f"its output is fused with layer(s) {', '.join(sorted(layers - {layer}))}"
            elif op in pass_ops and len(inputs) == 1 and inputs[0] in layer_of:
                layer_of[tid] = layer_of[inputs[0]]
    return layer_of, fused


def _counted(producers, layer_of, feature_ops):
    """Layers with a feature op among their producers: (layer, its last tensor, its first feature op)."""
    feature: dict = {}  # layer -> its first feature op (what `inspect` shows as the layer's type)
    last: dict = {}
    for op, _inputs, outputs in producers:
        for tid, _name in outputs:
            layer = layer_of.get(tid)
            if layer is None:
                continue
            if op in feature_ops:
                feature.setdefault(layer, op)
            last[layer] = tid
    has_feature = set(feature)
    order = []
    for op, _inputs, outputs in producers:
        for tid, _name in outputs:
            layer = layer_of.get(tid)
            if layer in has_feature and layer not in order:
                order.append(layer)
    return [(layer, last[layer], feature[layer]) for layer in order]


# -- LiteRT ----------------------------------------------------------------------------------------
def tflite_tap_map(interp) -> TapMap:
    """Counted layers of a LiteRT interpreter's main subgraph (see the module docstring)."""
    try:
        ops = [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]
    except AttributeError:  # pragma: no cover - an interpreter without the op listing
        return TapMap([], {"*": "this LiteRT interpreter does not list its ops"})
    details = {t["index"]: t for t in interp.get_tensor_details()}
    active = {int(d["index"]) for d in interp.get_input_details()}
    producers = []
    for op in ops:
        ins = [int(i) for i in op["inputs"] if int(i) in active]
        outs = [int(o) for o in op["outputs"] if int(o) >= 0]
        if ins:
            active.update(outs)
        producers.append((op["op_name"], ins, [(o, details[o]["name"]) for o in outs if o in details]))
    layer_of, fused = _attribute(producers, lambda t: t in active, TFLITE_PASS_OPS)
    taps, skipped = [], dict(fused)
    for layer, tid, op in _counted(producers, layer_of, TFLITE_FEATURE_OPS):
        d = details[tid]
        shape = [int(v) for v in d["shape"]]
        if len(shape) < 2:
            skipped[layer] = f"its tensor has shape {shape}"
            continue
        q = d.get("quantization_parameters") or {}
        scales = np.asarray(q.get("scales", []), np.float32)
        zps = np.asarray(q.get("zero_points", []), np.float32)
        quantised = np.dtype(d["dtype"]).kind in "iu"
        if quantised and (scales.size == 0 or not (scales > 0).all()):
            skipped[layer] = "its tensor is integer without quantisation parameters"
            continue
        taps.append(TensorTap(name=layer, type=op, neurons=shape[-1], tensor=tid, channel_axis=len(shape) - 1,
                              scale=scales if quantised else None, zero_point=zps if quantised else None,
                              quantized_dimension=int(q.get("quantized_dimension", 0))))
    for layer in [t.name for t in taps]:
        skipped.pop(layer, None)
    return TapMap(taps, skipped)


# -- ONNX ------------------------------------------------------------------------------------------
def onnx_tap_map(model, input_channel_axis: int) -> TapMap:
    """Counted layers of an ONNX ModelProto; ``input_channel_axis`` is 3 (NHWC) or 1 (NCHW)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shape inference is best effort
        inferred = model
    g = inferred.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    inits = {i.name for i in g.initializer}
    graph_inputs = [i.name for i in g.input if i.name not in inits]
    active = set(graph_inputs)
    axis = {name: input_channel_axis for name in graph_inputs}
    producers = []
    for node in g.node:
        ins = [i for i in node.input if i in active]
        outs = [o for o in node.output if o]
        if ins:
            active.update(outs)
            first = ins[0]
            if node.op_type in ONNX_NCHW_OPS:
                out_axis = 1
            elif node.op_type == "Transpose":
                perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
                old = axis.get(first)
                out_axis = perm.index(old) if perm is not None and old is not None and old in perm else None
            elif node.op_type in ONNX_SAME_LAYOUT_OPS:
                out_axis = axis.get(first)
            else:
                out_axis = None
            for o in outs:
                axis[o] = out_axis
        label = node.name if layers_of_name(node.name) else (outs[0] if outs else "")
        producers.append((node.op_type, ins, [(o, label) for o in outs]))
    layer_of, fused = _attribute(producers, lambda t: t in active, ONNX_PASS_OPS)
    taps, skipped = [], dict(fused)
    for layer, value, op in _counted(producers, layer_of, ONNX_FEATURE_OPS):
        shape = shapes.get(value)
        if not shape or len(shape) < 2:
            skipped[layer] = "its tensor's shape is unknown"
            continue
        ch = len(shape) - 1 if len(shape) == 2 else axis.get(value)
        if ch is None:
            skipped[layer] = "the layout of its tensor is unknown (which axis holds the channels)"
            continue
        if shape[ch] is None:
            skipped[layer] = "its number of channels is unknown"
            continue
        taps.append(TensorTap(name=layer, type=op, neurons=int(shape[ch]), tensor=value, channel_axis=ch))
    for layer in [t.name for t in taps]:
        skipped.pop(layer, None)
    return TapMap(taps, skipped)


def with_tap_outputs(model, taps) -> bytes:
    """The ONNX model with the taps' tensors added as graph outputs, serialised."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    for t in taps:
        if t.tensor not in present:
            m.graph.output.append(onnx.ValueInfoProto(name=t.tensor))
    return m.SerializeToString()


# -- reduction -------------------------------------------------------------------------------------
def reduce_tap(tap: TensorTap, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channel means (N, C), per-input min (N,), per-input max (N,)) of a tap's tensor, dequantised.

    Per-tensor quantisation is affine, so the mean, min and max are taken on the integers and
    dequantised after (no float copy of the map); per-channel parameters dequantise first.
    """
    n = arr.shape[0]
    a = np.moveaxis(arr, tap.channel_axis, -1) if tap.channel_axis != arr.ndim - 1 else arr
    per_channel = tap.scale is not None and tap.scale.size > 1
    if per_channel:
        shape = [1] * arr.ndim
        shape[tap.quantized_dimension] = -1
        deq = (arr.astype(np.float32) - tap.zero_point.reshape(shape)) * tap.scale.reshape(shape)
        return reduce_tap(TensorTap(tap.name, tap.type, tap.neurons, tap.tensor, tap.channel_axis), deq)
    flat = a.reshape(n, -1, a.shape[-1])
    means = flat.mean(axis=1, dtype=np.float32)
    lo = flat.reshape(n, -1).min(axis=1).astype(np.float32)
    hi = flat.reshape(n, -1).max(axis=1).astype(np.float32)
    if tap.scale is not None:
        s, z = float(tap.scale[0]), float(tap.zero_point[0]) if tap.zero_point.size else 0.0
        means, lo, hi = (means - z) * s, (lo - z) * s, (hi - z) * s
    return means.astype(np.float32, copy=False), lo, hi
