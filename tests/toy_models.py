"""The suite's toy Keras models: tiny networks whose answers can be worked out by hand.

One builder per distinct model, each named for what it computes. ``conftest.py`` serves them as
fixtures (the saved ones once per session); test modules import the hand-worked constants below.
Keras is imported inside the builders so that collecting the suite does not start TensorFlow.

Brightness is a pixel value in [0, 1]: pixel / 255, the model card's default ``scale``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# -- the hand-weighted 2x2 steering model (test_model.py) -----------------------------------------
# One 2x2 frame: R = 10..40, G = 1..4, B = 5.
FRAME = np.stack([
    np.array([[10, 20], [30, 40]]),
    np.array([[1, 2], [3, 4]]),
    np.full((2, 2), 5),
], axis=-1).astype(np.uint8)[None]
RAW_CARD = {"input_size": [2, 2], "scale": 1.0, "offset": 0.0, "task": "steering"}
# Expected by hand: conv channel means R: (10+20+30+40)/4 = 25; relu(G+B-7) = [0,0,1,2] -> 0.75.
# steer = 0.5 * (10+20+30+40 + 0+0+1+2) + 1 = 52.5
EXPECTED_CONV = np.array([[25.0, 0.75]])
EXPECTED_STEER = 52.5


def set_hand_weights(conv, dense) -> None:
    """conv channel 0 = R; channel 1 = relu(G + B - 7); dense = 0.5 * sum(flattened) + 1."""
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = 1.0
    kernel[0, 0, 1, 1] = 1.0
    kernel[0, 0, 2, 1] = 1.0
    conv.set_weights([kernel, np.array([0.0, -7.0], np.float32)])
    dense.set_weights([np.full((8, 1), 0.5, np.float32), np.array([1.0], np.float32)])


def hand_steering():
    """Functional 2x2 model named "hand": conv (counted) -> flatten -> dropout -> dense "steer" (counted),
    with the hand weights: on FRAME it answers EXPECTED_STEER and its conv means are EXPECTED_CONV."""
    import keras

    inp = keras.Input((2, 2, 3))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="conv")
    dense = keras.layers.Dense(1, name="steer")
    out = dense(keras.layers.Dropout(0.5, name="drop")(keras.layers.Flatten(name="flat")(conv(inp))))
    model = keras.Model(inp, out, name="hand")
    set_hand_weights(conv, dense)
    return model


def hand_steering_sequential():
    """The hand model as a Sequential without an Input (unbuilt): returns (model, conv, dense), so a
    test can set the hand weights once a model card has built it."""
    import keras

    conv = keras.layers.Conv2D(2, 1, activation="relu", name="conv")
    dense = keras.layers.Dense(1, name="steer")
    return keras.Sequential([conv, keras.layers.Flatten(), dense]), conv, dense


def hand_steering_nested():
    """The hand model with its conv inside a nested Sequential named "backbone"."""
    import keras

    inner_conv = keras.layers.Conv2D(2, 1, activation="relu", name="conv")
    inner = keras.Sequential([keras.Input((2, 2, 3)), inner_conv], name="backbone")
    inp = keras.Input((2, 2, 3))
    dense = keras.layers.Dense(1, name="steer")
    model = keras.Model(inp, dense(keras.layers.Flatten()(inner(inp))))
    set_hand_weights(inner_conv, dense)
    return model


# -- models for layer counting, preprocessing and model-kind checks (test_model.py) ----------------

def layer_zoo():
    """4x4 input through one layer of each kind the counter must sort: rescale, conv_a, act, pool, bn,
    flat, fc (5 units), out (1 unit); the feature layers are conv_a, act, fc and out."""
    import keras

    inp = keras.Input((4, 4, 3))
    x = keras.layers.Rescaling(1.0, name="rescale")(inp)
    x = keras.layers.Conv2D(3, 3, name="conv_a")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(5, name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(1, name="out")(x))


def flatten_dense(height: int = 2, width: int = 4):
    """The smallest image model: flatten -> one dense unit (untrained)."""
    import keras

    return keras.Sequential([keras.Input((height, width, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])


def fixed_prior_classifier():
    """2x2 input, 3 logits that ignore the image: zero weights, biases log 1, log 2, log 5, so the
    softmax is (1/8, 2/8, 5/8) on every frame."""
    import keras

    inp = keras.Input((2, 2, 3))
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(inp)))
    model.layers[-1].set_weights([np.zeros((12, 3), np.float32),
                                  np.array([0.0, np.log(2.0), np.log(5.0)], np.float32)])
    return model


def lambda_steering():
    """2x2 steering model with a Lambda layer (t * 2): loading it runs Python bytecode."""
    import keras

    inp = keras.Input((2, 2, 3))
    out = keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2.0)(inp)))
    return keras.Model(inp, out)


def vector_input_model():
    """Input (10,): not an image."""
    import keras

    return keras.Sequential([keras.Input((10,)), keras.layers.Dense(1)])


def two_image_inputs():
    """Two 2x2 image inputs added together."""
    import keras

    a, b = keras.Input((2, 2, 3)), keras.Input((2, 2, 3))
    return keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Add()([a, b]))))


# -- models that campaigns, the CLI and the plugin run (saved once per session by conftest.py) -----

def small_steering_cnn(height: int = 8, width: int = 16, *, name: str = "small", units: int = 1,
                       activation: str = "relu", seed: int = 0):
    """Small steering CNN like the sample models: input "frame" -> Rescaling(1/255) "normalise" -> conv
    "conv" (4 channels, 3x3, ``activation``) -> flatten -> dense "steer" (``units``); 4 + units counted
    neurons. Random weights drawn from ``seed`` (another seed, other weights)."""
    import keras

    rng = np.random.default_rng(seed)
    inp = keras.Input((height, width, 3), name="frame")
    x = keras.layers.Rescaling(1 / 255.0, name="normalise")(inp)
    conv = keras.layers.Conv2D(4, 3, activation=activation, name="conv")
    x = keras.layers.Flatten(name="flatten")(conv(x))
    dense = keras.layers.Dense(units, name="steer")
    model = keras.Model(inp, dense(x), name=name)
    conv.set_weights([rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float32), np.array([0.1, -0.1, 0.0, 0.2], np.float32)])
    n_in = int(np.prod(x.shape[1:]))
    dense.set_weights([rng.normal(0, 0.1, (n_in, units)).astype(np.float32), np.zeros(units, np.float32)])
    return model


def erfinv_steering():
    """8x8 steering model with a Lambda computing erfinv(tanh(x) / 2): TFLite has no Erfinv op."""
    import keras

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: keras.ops.erfinv(keras.ops.tanh(t) * 0.5))(inp)
    return keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(x)), name="odd")


def selu_steering():
    """8x8 conv "conv" (2 channels) -> SELU "act" -> dense: TF 2.21's converter crashes on its
    full-integer int8 conversion."""
    import keras

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Activation("selu", name="act")(keras.layers.Conv2D(2, 3, name="conv")(inp))
    return keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(x)), name="selu")


def log_headroom_steering(headroom: float):
    """24x48 steering = log(headroom - mean brightness) (Rescaling inside: card scale 1.0): finite while
    the frame's mean brightness stays below ``headroom``, NaN once it passes it."""
    import keras

    inp = keras.Input((24, 48, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inp))
    out = keras.layers.Dense(1, name="steer")(keras.ops.log(keras.layers.Dense(1, name="shift")(x)))
    model = keras.Model(inp, out)
    model.get_layer("shift").set_weights([np.full((3, 1), -1 / 3, np.float32), np.array([headroom], np.float32)])
    return model


def mean_intensity_steering():
    """24x48 steering model whose answer is exactly the mean brightness: GlobalAveragePooling of the
    input, then a dense unit weighting each channel 1/3. A conv -> dense side branch ("conv", "feat")
    is counted for coverage but weighted 0 on the output."""
    import keras

    inp = keras.Input((24, 48, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(inp)
    feat = keras.layers.Dense(2, activation="relu", name="feat")(keras.layers.GlobalAveragePooling2D()(x))
    out = keras.layers.Dense(1, name="steer")(keras.layers.Concatenate()([pooled, feat]))
    model = keras.Model(inp, out, name="mean_intensity")
    w = np.zeros((5, 1), np.float32)
    w[:3, 0] = 1.0 / 3.0
    model.get_layer("steer").set_weights([w, np.zeros(1, np.float32)])
    return model


def brightness_steering(gain: float, name: str):
    """32x32 steering model answering gain * 1.125 * mean brightness through a counted path: a 1x1
    conv "conv" (4 relu channels = the pixel's brightness times 1, 0.5, 2, 1) -> global average ->
    dense "steer" (gain / 4 per channel); 5 counted neurons. Gain 0 always answers 0."""
    import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 1, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(1, name="steer")(x), name=name)
    channel_gain = np.array([1.0, 0.5, 2.0, 1.0], np.float32)
    model.get_layer("conv").set_weights([np.full((1, 1, 3, 4), 1 / 3, np.float32) * channel_gain,
                                         np.zeros(4, np.float32)])
    model.get_layer("steer").set_weights([np.full((4, 1), gain / 4, np.float32), np.zeros(1, np.float32)])
    return model


#: Where the clipped twin of the brightness model saturates: 1.125 * 0.5, the bright model's answer at
#: mean brightness 0.5.
CLIP = 0.5625


def clipped_brightness_steering(limit: float, name: str):
    """The brightness steering model (gain 1: 1.125 * mean brightness) with its answer clipped at
    ``limit`` by a ReLU(max_value) layer "clip": a stand-in "twin" that agrees with ``bright`` exactly
    on frames darker than limit / 1.125 and answers ``limit`` on brighter ones, as an int8 twin whose
    output quantisation saturates does."""
    import keras

    base = brightness_steering(1.0, name + "_base")
    out = keras.layers.ReLU(max_value=limit, name="clip")(base.output)
    return keras.Model(base.input, out, name=name)


def brightness_classifier(size: int, threshold: float, name: str):
    """size x size two-class classifier on the mean brightness: global average -> dense "probs" with
    softmax; class 1 (the bright class) wins exactly when the mean brightness is above ``threshold``
    (logit margin 20 * (brightness - threshold))."""
    import keras

    inp = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="probs")(x), name=name)
    model.get_layer("probs").set_weights([np.array([[-10, 10]] * 3, np.float32) / 3,
                                          np.array([10 * threshold, -10 * threshold], np.float32)])
    return model


def save(model, path: Path, card: str | None = None) -> Path:
    """Save ``model`` at ``path`` and, when given, its model card (TOML text) beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    if card is not None:
        path.with_suffix(".toml").write_text(card)
    return path
