"""Train the shipped sample models from scratch, reproducibly, on generated scenes or real frames.

One function per model; each generates its data with ``deeptest_iot.data.scenes`` (or, for
``udacity_steering``, reads real dashcam frames from a folder given with ``--frames``), trains with
fixed seeds and deterministic TensorFlow ops, measures its quality on a held-out set drawn from a
different scene seed (a contiguous block of frames it never saw), and writes ``<name>.keras``, the
model card ``<name>.toml`` and ``<name>.json`` (measured quality, how it was measured, training time)
into ``out``.

    python -m deeptest_iot.sample_models.train dave2_steering [--out DIR]
    deeptest-iot samples train dave2_steering [--out DIR]
    deeptest-iot samples train udacity_steering --frames DIR [--out DIR]

Each model trains in well under 15 minutes on 2 CPU cores. Scene seeds: training data uses seed
``TRAIN_SEED``, early stopping / validation ``VAL_SEED``, the reported quality ``TEST_SEED``
(tests use yet another seed).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from deeptest_iot.data import scenes  # noqa: E402
from deeptest_iot.fileio import atomic_write_json, atomic_write_text  # noqa: E402

HERE = Path(__file__).resolve().parent
TRAIN_SEED, VAL_SEED, TEST_SEED = 1000, 2000, 3000
FRAME_HW = (160, 320)

# Model cards (docs/interfaces.md). The training code feeds the networks exactly what
# deeptest_iot.model.core feeds them: crop by the card's fractions, bilinear resize, pixel*scale+offset.
CARDS = {
    "dave2_steering": {
        "task": "steering", "input_size": [66, 200], "color": "rgb", "crop": [0.3, 0.0, 0.0, 0.0],
        "scale": 1.0, "offset": 0.0, "output": 0, "units": "radians",
    },
    "sign_classifier": {
        "task": "classification", "input_size": [32, 32], "color": "rgb", "crop": [0.0, 0.0, 0.0, 0.0],
        "scale": 1.0, "offset": 0.0, "output": 0, "classes": list(scenes.SIGN_CLASSES),
    },
    "tiny_detector": {
        "task": "detection", "input_size": [128, 256], "color": "rgb", "crop": [0.0, 0.0, 0.0, 0.0],
        "scale": 1.0, "offset": 0.0, "output": 0, "classes": ["car", "pedestrian", "sign"],
        "decoder": "grid", "score_threshold": 0.3,
    },
    # Real dashcam frames; the network normalises its own input (a Rescaling layer), so the card
    # feeds it raw pixels 0..255: scale 1.0.
    "udacity_steering": {
        "task": "steering", "input_size": [66, 200], "color": "rgb", "crop": [0.45, 0.0, 0.0, 0.0],
        "scale": 1.0, "offset": 0.0, "output": 0, "units": "radians",
    },
}
TASKS = {name: card["task"] for name, card in CARDS.items()}
DETECTOR_CLASS_OF_SCENE_CLASS = np.array([0, 1] + [2] * len(scenes.SIGN_CLASSES))
"""Scene class index -> tiny_detector class index (every sign class is "sign")."""


# ---------------------------------------------------------------------------------------------
# shared helpers


def setup_determinism(seed: int = 0) -> None:
    """Fixed seeds and deterministic ops, so a retrain gives the same weights on the same machine."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def preprocess(frames: np.ndarray, card: dict, batch: int = 512) -> np.ndarray:
    """Network input exactly as deeptest_iot.model.core feeds the model (its ``preprocess_tf``), in batches."""
    from deeptest_iot.model.card import ModelCard
    from deeptest_iot.model.core import preprocess_tf

    model_card = ModelCard.from_dict(card, source="sample_models/train.py")
    out = [preprocess_tf(frames[i:i + batch], model_card).numpy() for i in range(0, len(frames), batch)]
    return np.concatenate(out) if out else np.zeros((0, *card["input_size"], 3), np.float32)


def _scene_frames(n: int, seed: int):
    return scenes.generate(n, seed=seed, height=FRAME_HW[0], width=FRAME_HW[1])


def _save(model, name: str, out: Path, quality: dict, seconds: float, notes: str) -> Path:
    """Save an uncompiled copy (no custom loss to deserialise), the card and the quality record."""
    import keras
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    clean = keras.Model.from_config(model.get_config())  # same graph, not compiled
    clean.set_weights(model.get_weights())
    path = out / f"{name}.keras"
    tmp = out / f".{name}.tmp.keras"
    clean.save(tmp)
    os.replace(tmp, path)
    card = dict(CARDS[name])
    atomic_write_text(out / f"{name}.toml", _toml(card, name, quality))
    record = {
        "name": name, "task": card["task"], "quality": quality, "how": notes,
        "train_seconds": round(seconds, 1), "cpu_seconds": round(time.process_time(), 1),
        "params": int(model.count_params()),
        "file_bytes": path.stat().st_size,
        "environment": {"tensorflow": tf.__version__, "keras": keras.__version__,
                        "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    atomic_write_json(out / f"{name}.json", record)
    return path


def make_profile(name: str, out: Path, frames: np.ndarray, batch: int = 256, how: str | None = None) -> Path | None:
    """Profile of the saved model's training activations (``NAME.profile.npz``), made through
    ``deeptest_iot.model.core.load_model`` and ``deeptest_iot.coverage.Profile`` so that it carries the
    fingerprint and layers those give. ``frames`` are raw uint8 RGB training frames."""
    from deeptest_iot.coverage import Profile
    from deeptest_iot.model.core import load_model

    out = Path(out)
    mut = load_model(out / f"{name}.keras")

    def batches():
        for i in range(0, len(frames), batch):
            yield mut.run(frames[i:i + batch]).activations

    prof = Profile.from_batches(batches(), fingerprint=mut.fingerprint, layer_sizes=mut.layer_sizes)
    prof.inputs = mut.card.preprocessing()  # campaigns warn when their card preprocesses otherwise
    path = out / f"{name}.profile.npz"
    prof.save(path)
    rec_path = out / f"{name}.json"
    rec = json.loads(rec_path.read_text())
    rec["profile"] = {"file": path.name, "frames": int(len(frames)), "neurons": int(mut.neurons),
                      "layers": list(mut.layer_sizes),
                      "how": how or (f"activations of the first {len(frames)} training frames (scene seed "
                                     f"{TRAIN_SEED}) through deeptest_iot.model.core.load_model(...).run")}
    atomic_write_json(rec_path, rec)
    return path


PROFILE_FRAMES = 2000


def profile_frames(name: str, n: int = PROFILE_FRAMES, frames_dir=None) -> np.ndarray:
    """The training frames a model's profile is made from (the first ``n`` of its training data;
    for udacity_steering: its training frames and their mirror images, read from ``frames_dir``)."""
    if name == "udacity_steering":
        x = udacity_split(read_udacity_frames(frames_dir))["train"][1]
        return np.concatenate([x, x[:, :, ::-1]])[:n]
    if name == "sign_classifier":
        return scenes.sign_crops(n, seed=TRAIN_SEED)[0]
    return _scene_frames(n, TRAIN_SEED).images


CARD_NOTES = {
    "udacity_steering": "# scale = 1.0: raw pixels 0..255 go in; the model normalises them itself (its first layer "
                        "is a Rescaling).",
}


def _toml(card: dict, name: str, quality: dict) -> str:
    from deeptest_iot.sample_models import quality_summary

    lines = [f"# Model card of the shipped sample model {name} (see docs/interfaces.md).",
             f"# Measured: {quality_summary({'quality': quality})}; how it was measured: {name}.json"]
    if name in CARD_NOTES:
        lines.append(CARD_NOTES[name])
    for k, v in card.items():
        lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def fit(model, x: np.ndarray, y: np.ndarray, epochs: int, batch: int, seed: int, val=None,
        verbose: int = 2, label: str = "", augment=None) -> None:
    """Mini-batch training from uint8 (or float) arrays without copying them to float32 whole:
    each batch is converted as it is used, in an order drawn from ``seed`` (deterministic).
    ``augment(xb, yb, rng)``, if given, returns an augmented float32 batch and its labels, drawing
    its randomness from the same generator (so it is deterministic too)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for e in range(epochs):
        order = rng.permutation(len(x))
        losses = []
        for i in range(0, len(order), batch):
            idx = np.sort(order[i:i + batch])
            xb, yb = x[idx].astype(np.float32), y[idx]
            if augment is not None:
                xb, yb = augment(xb, yb, rng)
            out = model.train_on_batch(xb, yb, return_dict=True)
            losses.append(out["loss"])
        if verbose:
            msg = f"{label} epoch {e + 1}/{epochs} {time.perf_counter() - t0:.0f}s loss {np.mean(losses):.4g}"
            if val is not None:
                res = model.evaluate(val[0].astype(np.float32), val[1], batch_size=256, verbose=0, return_dict=True)
                msg += " val " + " ".join(f"{k} {v:.4g}" for k, v in res.items())
            print(msg, flush=True)


def _threads() -> None:
    import tensorflow as tf

    n = int(os.environ.get("DEEPTEST_TRAIN_THREADS", "2"))
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)


# ---------------------------------------------------------------------------------------------
# dave2_steering


def build_dave2():
    """NVIDIA Dave-2 (Bojarski et al. 2016): 5 conv + 4 dense layers on 66x200 input. The
    normalisation is a Rescaling layer (the original's Lambda is refused by safe loading); a final
    Rescaling maps the unit-scale output to radians (labels have a std of about 0.04 rad)."""
    import keras
    from keras import layers

    inp = keras.Input((66, 200, 3), name="frame")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(inp)
    for i, (f, k, s) in enumerate([(24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1)]):
        x = layers.Conv2D(f, k, strides=s, activation="elu", name=f"conv{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, u in enumerate([100, 50, 10]):
        x = layers.Dense(u, activation="elu", name=f"fc{i + 1}")(x)
    x = layers.Dense(1, name="steer")(x)
    out = layers.Rescaling(0.05, name="radians")(x)
    return keras.Model(inp, out, name="dave2_steering")


def train_dave2_steering(out: Path = HERE, n_train: int = 14000, epochs: int = 14, verbose: int = 2) -> dict:
    import keras

    _threads()
    setup_determinism(0)
    t0 = time.perf_counter()
    card = CARDS["dave2_steering"]
    data = {}
    for split, n, seed in (("train", n_train, TRAIN_SEED), ("val", 1500, VAL_SEED), ("test", 2000, TEST_SEED)):
        b = _scene_frames(n, seed)
        data[split] = (np.round(preprocess(b.images, card)).astype(np.uint8), b.steering.astype(np.float32))
    model = build_dave2()
    steps = epochs * int(np.ceil(n_train / 64))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps, alpha=0.02)),
                  loss="mse")
    fit(model, *data["train"], epochs=epochs, batch=64, seed=1, val=data["val"], verbose=verbose, label="dave2")
    xte, yte = data["test"]
    pred = np.concatenate([model.predict_on_batch(xte[i:i + 256].astype(np.float32))[:, 0]
                           for i in range(0, len(xte), 256)])
    mse = float(np.mean((pred - yte) ** 2))
    var = float(np.var(yte))
    quality = {"heldout_mse": mse, "label_variance": var, "mse_over_variance": mse / var,
               "heldout_frames": len(yte)}
    notes = (f"held-out MSE in rad^2 on {len(yte)} generated 160x320 scenes (deeptest_iot.data.scenes.generate, "
             f"seed {TEST_SEED}), preprocessed by the model card; bar: MSE <= 10% of the label variance. "
             f"Trained on {n_train} scenes (seed {TRAIN_SEED}), {epochs} epochs, Adam with cosine decay.")
    _save(model, "dave2_steering", Path(out), quality, time.perf_counter() - t0, notes)
    return quality


# ---------------------------------------------------------------------------------------------
# sign_classifier


def build_sign_classifier(n_classes: int = len(scenes.SIGN_CLASSES)):
    """A small CNN on 32x32 sign crops: 3 conv blocks, global pooling, softmax."""
    import keras
    from keras import layers

    inp = keras.Input((32, 32, 3), name="crop")
    x = layers.Rescaling(1 / 255.0, name="normalise")(inp)
    for i, f in enumerate([16, 32, 64]):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i + 1}a")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i + 1}b")(x)
        x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(64, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="sign_classifier")


def train_sign_classifier(out: Path = HERE, n_train: int = 12000, epochs: int = 10, verbose: int = 2) -> dict:
    import keras

    _threads()
    setup_determinism(0)
    t0 = time.perf_counter()
    card = CARDS["sign_classifier"]
    xtr, ytr = scenes.sign_crops(n_train, seed=TRAIN_SEED)
    xva, yva = scenes.sign_crops(1200, seed=VAL_SEED)
    xte, yte = scenes.sign_crops(3000, seed=TEST_SEED)
    model = build_sign_classifier()
    steps = epochs * int(np.ceil(n_train / 64))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.02)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fit(model, preprocess(xtr, card), ytr, epochs=epochs, batch=64, seed=1, val=(preprocess(xva, card), yva),
        verbose=verbose, label="signs")
    pred = model.predict_on_batch(preprocess(xte, card)).argmax(1)
    acc = float(np.mean(pred == yte))
    per_class = {c: float(np.mean(pred[yte == i] == i)) for i, c in enumerate(scenes.SIGN_CLASSES)}
    quality = {"heldout_accuracy": acc, "per_class_accuracy": per_class, "heldout_crops": len(yte)}
    notes = (f"top-1 accuracy on {len(yte)} held-out 32x32 crops (deeptest_iot.data.scenes.sign_crops, seed "
             f"{TEST_SEED}, balanced over {len(scenes.SIGN_CLASSES)} classes); bar: >= 95%. Trained on "
             f"{n_train} crops (seed {TRAIN_SEED}), {epochs} epochs.")
    _save(model, "sign_classifier", Path(out), quality, time.perf_counter() - t0, notes)
    return quality


# ---------------------------------------------------------------------------------------------
# tiny_detector


def build_tiny_detector(input_hw=(128, 256), n_classes: int = 3):
    """A single-shot grid detector (stride 8, ~160k weights): seven 3x3 conv layers (one dilated
    for context) and four 1x1 heads for objectness, centre offset, sqrt box size and class
    probabilities, concatenated into one (N, H/8, W/8, 5 + C) output that
    ``deeptest_iot.tasks.boxes.decode_grid`` reads. No batch norm: it halves CPU training speed."""
    import keras
    from keras import layers

    inp = keras.Input((*input_hw, 3), name="frame")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(inp)
    spec = [(16, 2, 1), (32, 2, 1), (48, 1, 1), (64, 2, 1), (64, 1, 1), (64, 1, 2), (64, 1, 1)]
    for i, (f, s, d) in enumerate(spec):
        x = layers.Conv2D(f, 3, strides=s, dilation_rate=d, padding="same", activation="relu",
                          name=f"conv{i + 1}")(x)
    obj = layers.Conv2D(1, 1, activation="sigmoid", name="objectness")(x)
    off = layers.Conv2D(2, 1, activation="sigmoid", name="centre")(x)
    size = layers.Conv2D(2, 1, activation="sigmoid", name="size")(x)
    cls = layers.Conv2D(n_classes, 1, activation="softmax", name="classes")(x)
    out = layers.Concatenate(name="grid")([obj, off, size, cls])
    return keras.Model(inp, out, name="tiny_detector")


def grid_loss(y_true, y_pred):
    """Loss of the grid format: weighted objectness cross-entropy on every cell, squared error of
    centre and sqrt size and class cross-entropy on cells that hold an object; summed over cells,
    averaged over images."""
    import keras.ops as K

    eps = 1e-6
    t_obj, p_obj = y_true[..., 0], K.clip(y_pred[..., 0], eps, 1 - eps)
    bce = -(t_obj * K.log(p_obj) * 4.0 + (1 - t_obj) * K.log(1 - p_obj))
    box = K.sum(K.square(y_true[..., 1:3] - y_pred[..., 1:3]), -1) + \
        4.0 * K.sum(K.square(y_true[..., 3:5] - y_pred[..., 3:5]), -1)
    ce = -K.sum(y_true[..., 5:] * K.log(K.clip(y_pred[..., 5:], eps, 1.0)), -1)
    per_cell = bce + t_obj * (5.0 * box + ce)
    return K.mean(K.sum(per_cell, axis=(1, 2)))


def detector_data(n: int, seed: int, start: int = 0):
    """Network inputs (uint8, rounded), ground truth in input pixels (detector classes), targets."""
    card = CARDS["tiny_detector"]
    ih, iw = card["input_size"]
    b = scenes.generate(n, seed=seed, height=FRAME_HW[0], width=FRAME_HW[1], start=start)
    x = np.round(preprocess(b.images, card)).astype(np.uint8)
    sy, sx = ih / FRAME_HW[0], iw / FRAME_HW[1]
    boxes = [bx * np.array([sx, sy, sx, sy], np.float32) for bx in b.boxes]
    classes = [DETECTOR_CLASS_OF_SCENE_CLASS[c] for c in b.classes]
    from deeptest_iot.tasks.boxes import encode_grid

    y = np.stack([encode_grid(bx, c, input_hw=(ih, iw), grid_hw=(ih // 8, iw // 8), n_classes=3)
                  for bx, c in zip(boxes, classes)])
    return x, boxes, classes, y


def evaluate_detector(model, x, boxes, classes, score_threshold: float) -> dict:
    from deeptest_iot.tasks.boxes import decode_grid, mean_average_precision

    raw = np.concatenate([model.predict_on_batch(x[i:i + 128].astype(np.float32)) for i in range(0, len(x), 128)])
    dets = decode_grid([raw], input_hw=CARDS["tiny_detector"]["input_size"], score_threshold=score_threshold)
    res = mean_average_precision(dets, boxes, classes, iou_threshold=0.5, n_classes=3)
    names = CARDS["tiny_detector"]["classes"]
    return {"map50": res["map"], "ap50": {names[c]: v for c, v in res["ap"].items()},
            "gt_objects": {names[c]: v for c, v in res["gt"].items()}}


def train_tiny_detector(out: Path = HERE, chunk: int = 5000, epochs: int = 22, verbose: int = 2) -> dict:
    """Each epoch sees ``chunk`` fresh scenes (scene seed TRAIN_SEED, frames e*chunk ...), so the
    detector never sees a training frame twice."""
    import keras

    _threads()
    setup_determinism(0)
    t0 = time.perf_counter()
    model = build_tiny_detector()
    steps = epochs * int(np.ceil(chunk / 32))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        2e-3, steps, alpha=0.02)), loss=grid_loss)
    xva, bva, cva, _ = detector_data(600, VAL_SEED)
    for e in range(epochs):
        x, _, _, y = detector_data(chunk, TRAIN_SEED, start=e * chunk)
        fit(model, x, y, epochs=1, batch=32, seed=e, verbose=0)
        if verbose and (e % 3 == 2 or e == epochs - 1):
            val = evaluate_detector(model, xva, bva, cva, 0.05)
            print(f"epoch {e + 1}/{epochs} {time.perf_counter() - t0:.0f}s val mAP@0.5 {val['map50']:.3f} "
                  f"{val['ap50']}", flush=True)
    xte, bte, cte, _ = detector_data(2000, TEST_SEED)
    quality = evaluate_detector(model, xte, bte, cte, 0.05)
    quality["map50_at_card_threshold"] = evaluate_detector(
        model, xte, bte, cte, CARDS["tiny_detector"]["score_threshold"])["map50"]
    quality["heldout_frames"] = len(xte)
    notes = (f"VOC mAP@0.5 (deeptest_iot.tasks.boxes.mean_average_precision) over car, pedestrian, sign on "
             f"{len(xte)} held-out generated scenes (seed {TEST_SEED}), detections decoded at score >= 0.05 "
             f"(and, as map50_at_card_threshold, at the card's score_threshold); boxes compared in "
             f"network-input pixels; bar: mAP@0.5 >= 0.7. Trained on {epochs} x {chunk} fresh scenes "
             f"(seed {TRAIN_SEED}), Adam with cosine decay.")
    _save(model, "tiny_detector", Path(out), quality, time.perf_counter() - t0, notes)
    return quality


# ---------------------------------------------------------------------------------------------
# udacity_steering: a Dave-orig-style CNN trained on real dashcam frames

UDACITY_HW = (150, 200)
"""Working size of the real frames: each 640x480 JPEG is decoded once and shrunk to 200x150 with
cv2.INTER_AREA; training, evaluation, the profile and the shipped frames all use this size (the
card's crop and bilinear resize then make the 66x200 network input of it)."""
UDACITY_TEST = (1 / 3, 8 / 15)  # held-out block, as fractions of the sequence: frames 500-799 of 1,500
UDACITY_VAL = (11 / 15, 5 / 6)  # validation block (best epoch): frames 1100-1249 of 1,500
UDACITY_GAP = 20  # frames (1 s at 20 frames/s) left unused on each side of those two blocks
UDACITY_SHIPPED = 200  # held-out frames shipped in udacity_steering_frames/, evenly spaced over the block
UDACITY_JPEG_QUALITY = 90
UDACITY_FRAMES_DIR = "udacity_steering_frames"
FRAMES_HINT = ("udacity_steering trains on real dashcam frames: pass --frames DIR, a folder holding labels.csv "
               "(frame_id,steering_angle in radians, positive = left) and the frames <frame_id>.jpg (in DIR or "
               "DIR/frames), such as the Udacity self-driving car challenge frames described in docs/sample-models.md")
NEEDS_FRAMES = ("udacity_steering",)


def frames_folder(folder) -> tuple[Path, Path]:
    """(labels.csv, folder of the JPEGs) of a real-frames folder; ConfigError when it is not given or
    not such a folder."""
    from deeptest_iot.errors import ConfigError

    if folder is None:
        raise ConfigError(FRAMES_HINT)
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--frames {folder}: no such folder. {FRAMES_HINT}")
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise ConfigError(f"--frames {folder}: no labels.csv in it. {FRAMES_HINT}")
    return labels, (folder / "frames" if (folder / "frames").is_dir() else folder)


def read_udacity_frames(folder) -> dict:
    """{"ids": [...], "frames": (N, 150, 200, 3) uint8 RGB, "angles": (N,) float32} of a folder of
    Udacity-style frames (``labels.csv`` frame_id,steering_angle and ``<frame_id>.jpg``), in capture
    order (frame id = capture time in ns). Every problem is a ConfigError/InputError saying what to do."""
    import csv

    import cv2

    from deeptest_iot.errors import InputError

    labels, images = frames_folder(folder)
    with open(labels, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"frame_id", "steering_angle"} <= set(rows[0]):
        raise InputError(f"{labels}: expected a header frame_id,steering_angle and one row per frame")
    try:
        rows.sort(key=lambda r: int(r["frame_id"]))
        angles = np.array([float(r["steering_angle"]) for r in rows], np.float32)
    except ValueError as exc:
        raise InputError(f"{labels}: frame ids must be integers (capture time in ns) and angles numbers: "
                         f"{exc}") from None
    if len(rows) < 300:
        raise InputError(f"{labels}: {len(rows)} frames; udacity_steering needs a sequence of at least 300 "
                         "consecutive frames (1,500 were used for the shipped model)")
    h, w = UDACITY_HW
    frames = np.empty((len(rows), h, w, 3), np.uint8)
    for i, r in enumerate(rows):
        path = images / f"{r['frame_id']}.jpg"
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"{path}: missing or not a readable JPEG (labels.csv names frame {r['frame_id']})")
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        frames[i] = img[:, :, ::-1]
    return {"ids": [r["frame_id"] for r in rows], "frames": frames, "angles": angles}


def udacity_blocks(n: int) -> dict:
    """Frame index ranges {"test": (a, b), "val": (a, b)} of a sequence of ``n`` frames."""
    return {k: (round(lo * n), round(hi * n)) for k, (lo, hi) in (("test", UDACITY_TEST), ("val", UDACITY_VAL))}


def udacity_split(data: dict) -> dict:
    """{"train"|"val"|"test": (indices, frames, angles)}: contiguous blocks, never a random split
    (neighbouring frames, 50 ms apart, are near-duplicates). Training gets every frame more than
    UDACITY_GAP frames away from the held-out and validation blocks."""
    n = len(data["angles"])
    idx = np.arange(n)
    parts = {}
    keep = np.ones(n, bool)
    for name, (a, b) in udacity_blocks(n).items():
        parts[name] = idx[a:b]
        keep &= (idx < a - UDACITY_GAP) | (idx >= b + UDACITY_GAP)
    parts["train"] = idx[keep]
    return {k: (v, data["frames"][v], data["angles"][v]) for k, v in parts.items()}


def build_udacity_steering(input_hw=(66, 200), dense=(100, 50, 10), dropout: float = 0.0):
    """Dave-orig (DeepXplore's driving model, NVIDIA's Dave-2 layout): 5 ReLU conv layers 24/36/48/64/64
    (5x5 stride 2 three times, then 3x3), ReLU dense layers, one output unit. Smaller than the original:
    the 1,164-unit first dense layer (7 MB) is left out. The model normalises its own input (a
    Rescaling layer, pixels 0..255 in) and a final Rescaling maps the unit-scale output to radians
    (the original's atan Lambda would be refused by safe loading)."""
    import keras
    from keras import layers

    inp = keras.Input((*input_hw, 3), name="frame")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(inp)
    for i, (f, k, s) in enumerate([(24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1)]):
        x = layers.Conv2D(f, k, strides=s, activation="relu", name=f"conv{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    if dropout:
        x = layers.Dropout(dropout, seed=0, name="dropout")(x)
    for i, u in enumerate(dense):
        x = layers.Dense(u, activation="relu", name=f"fc{i + 1}")(x)
    x = layers.Dense(1, name="steer")(x)
    out = layers.Rescaling(0.1, name="radians")(x)
    return keras.Model(inp, out, name="udacity_steering")


def augment_mirror_light(xb: np.ndarray, yb: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Mirror half of the batch left-right (negating its angles) and jitter each image's contrast
    (x0.7-1.3) and brightness (+-25 levels)."""
    n = len(xb)
    flip = rng.random(n) < 0.5
    xb[flip] = xb[flip][:, :, ::-1]
    yb = np.where(flip, -yb, yb).astype(np.float32)
    gain = rng.uniform(0.7, 1.3, (n, 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(-25, 25, (n, 1, 1, 1)).astype(np.float32)
    return np.clip(xb * gain + bias, 0, 255), yb


def _predict(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([model.predict_on_batch(x[i:i + batch].astype(np.float32))[:, 0]
                           for i in range(0, len(x), batch)]).astype(np.float64)


def _mse(pred, y) -> float:
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(y, np.float64)) ** 2))


def train_udacity_steering(out: Path = HERE, frames=None, epochs: int = 15, verbose: int = 2,
                           dense=(100, 50, 10), dropout: float = 0.0, lr: float = 3e-4, batch: int = 32,
                           augment: bool = True, ship_frames: bool = True) -> dict:
    """Train on the frames of ``frames`` (see read_udacity_frames) outside the held-out and validation
    blocks, keep the weights of the epoch with the lowest validation MSE, measure on the held-out
    block, and (``ship_frames``) write 200 held-out frames to ``out/udacity_steering_frames``."""
    import keras

    data = read_udacity_frames(frames)  # first: a missing folder fails before any training
    _threads()
    setup_determinism(0)
    t0 = time.perf_counter()
    card = CARDS["udacity_steering"]
    split = udacity_split(data)
    net = {k: (np.round(preprocess(v[1], card)).astype(np.uint8), v[2]) for k, v in split.items()}
    model = build_udacity_steering(dense=dense, dropout=dropout)
    steps = epochs * int(np.ceil(len(net["train"][1]) / batch))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.02)),
                  loss="mse")
    best = (np.inf, model.get_weights(), 0)
    for e in range(epochs):
        fit(model, *net["train"], epochs=1, batch=batch, seed=100 + e, verbose=0,
            augment=augment_mirror_light if augment else None)
        val_mse = _mse(_predict(model, net["val"][0]), net["val"][1])
        if val_mse < best[0]:
            best = (val_mse, model.get_weights(), e + 1)
        if verbose:
            print(f"udacity epoch {e + 1}/{epochs} {time.perf_counter() - t0:.0f}s val mse {val_mse:.3g}"
                  f"{' *' if best[2] == e + 1 else ''}", flush=True)
    model.set_weights(best[1])
    xte, yte = net["test"]
    pred = _predict(model, xte)
    ytr = net["train"][1]
    blocks = udacity_blocks(len(data["angles"]))
    mse, var = _mse(pred, yte), float(np.var(yte))
    mean_mse = _mse(np.full(len(yte), float(np.mean(ytr))), yte)
    quality = {
        "heldout_mse": mse, "label_variance": var, "mse_over_variance": mse / var,
        "mean_predictor_mse": mean_mse, "beats_mean_predictor": bool(mse < min(mean_mse, var)),
        "heldout_correlation": float(np.corrcoef(pred, yte)[0, 1]),
        "heldout_frames": len(yte), "heldout_block": list(blocks["test"]),
        "val_mse": float(best[0]), "val_block": list(blocks["val"]), "best_epoch": best[2],
        "train_frames": len(ytr), "sequence_frames": len(data["angles"]),
    }
    notes = (f"held-out MSE in rad^2 on frames {blocks['test'][0]}-{blocks['test'][1] - 1} of a "
             f"{len(data['angles'])}-frame dashcam sequence (a contiguous block never used in training; "
             f"{UDACITY_GAP} frames on each side unused too), frames shrunk to {UDACITY_HW[1]}x{UDACITY_HW[0]} "
             f"(cv2.INTER_AREA) and preprocessed by the model card; label_variance is that block's label "
             f"variance (the MSE of the best constant, which knows the block's mean); mean_predictor_mse is the "
             f"MSE of predicting the training labels' mean. Trained on the {len(ytr)} frames outside the held-out "
             f"and validation blocks and their gaps (each batch: half mirrored with negated angle, brightness "
             f"and contrast jittered), Adam with cosine decay, batch "
             f"{batch}, {epochs} epochs, weights of the epoch with the lowest MSE on the validation block "
             f"(frames {blocks['val'][0]}-{blocks['val'][1] - 1}): epoch {best[2]}. Labels are an approximate "
             f"steering signal derived from camera motion.")
    out = Path(out)
    _save(model, "udacity_steering", out, quality, time.perf_counter() - t0, notes)
    if ship_frames:
        folder = export_udacity_frames(data, split, out / UDACITY_FRAMES_DIR)
        quality.update(measure_on_frames(out / "udacity_steering.keras", folder))
        rec = json.loads((out / "udacity_steering.json").read_text())
        rec["quality"] = quality
        rec["shipped_frames"] = {"folder": UDACITY_FRAMES_DIR, "frames": UDACITY_SHIPPED,
                                 "bytes": sum(p.stat().st_size for p in folder.iterdir()),
                                 "how": "shipped_frames_mse: the model through deeptest_iot.model.core.load_model "
                                        "on the shipped JPEGs, against their labels.csv"}
        atomic_write_json(out / "udacity_steering.json", rec)
    return quality


def export_udacity_frames(data: dict, split: dict, folder: Path) -> Path:
    """Write UDACITY_SHIPPED frames of the held-out block, evenly spaced, as 200x150 JPEGs with
    ``labels.csv`` and a ``README.md`` giving their provenance. Old JPEGs in ``folder`` are removed."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jpg"):
        old.unlink()
    block = split["test"][0]
    pick = block[np.round(np.linspace(0, len(block) - 1, min(UDACITY_SHIPPED, len(block)))).astype(int)]
    lines = ["frame_id,steering_angle"]
    for i in pick:
        fid = data["ids"][i]
        ok, buf = cv2.imencode(".jpg", data["frames"][i][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, UDACITY_JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"cannot encode frame {fid}")
        (folder / f"{fid}.jpg").write_bytes(buf.tobytes())
        lines.append(f"{fid},{float(data['angles'][i]):.6f}")
    atomic_write_text(folder / "labels.csv", "\n".join(lines) + "\n")
    a, b = udacity_blocks(len(data["angles"]))["test"]
    atomic_write_text(folder / "README.md", FRAMES_README.format(
        n=len(pick), w=UDACITY_HW[1], h=UDACITY_HW[0], q=UDACITY_JPEG_QUALITY, a=a, b=b - 1,
        total=len(data["angles"]), secs=len(data["angles"]) / 20))
    return folder


FRAMES_README = """\
# udacity_steering_frames: {n} real dashcam frames for tests and the demo

{n} front-camera frames of daytime driving on a two-lane road, {w}x{h} JPEG (quality {q}), shrunk
from 640x480 with OpenCV `INTER_AREA`. Source: the Udacity self-driving car challenge data
(MIT licence), as redistributed in the DeepXplore repository's driving test set. They are spread
evenly over frames {a}-{b} of a {total}-frame (20 frames/s, {secs:g} s) sequence: the contiguous
block the sample model `udacity_steering` never saw in training (its held-out block). File name =
frame id = capture time in nanoseconds.

`labels.csv`: `frame_id,steering_angle`, in radians, positive = left. The angles are
**approximate**: derived from the camera's motion (horizontal shift of the horizon band between
consecutive frames, under an assumed 60 degree field of view, 2.85 m wheelbase and 12 m/s,
smoothed over 9 frames), because the steering column distributed with these frames is not
usable. Their sign and shape follow the road; their scale is approximate.

Made by `deeptest-iot samples train udacity_steering --frames DIR` (`export_udacity_frames` in
`sample_models/train.py`). Use: `deeptest_iot.sample_models.frames_path("udacity_steering")`.
"""


def measure_on_frames(model_path: Path, folder: Path) -> dict:
    """MSE of the saved model, loaded as users load it, on a folder of frames with labels.csv."""
    from deeptest_iot.data.seeds import load_seeds
    from deeptest_iot.model.core import load_model

    seeds = load_seeds(folder, labels=Path(folder) / "labels.csv")
    pred = load_model(model_path).predict(seeds.images)
    y = np.asarray(seeds.labels, np.float64)
    return {"shipped_frames_mse": _mse(pred, y), "shipped_frames_label_variance": float(np.var(y)),
            "shipped_frames": len(y)}


# ---------------------------------------------------------------------------------------------
# command line


TRAINERS = {
    "dave2_steering": train_dave2_steering,
    "sign_classifier": train_sign_classifier,
    "tiny_detector": train_tiny_detector,
    "udacity_steering": train_udacity_steering,
}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", choices=sorted(TRAINERS))
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--profile-only", action="store_true", help="only (re)make NAME.profile.npz")
    ap.add_argument("--frames", type=Path, default=None,
                    help="folder of real frames with labels.csv (udacity_steering only)")
    args = ap.parse_args(argv)
    print(json.dumps(train_and_profile(args.name, args.out, args.frames, profile_only=args.profile_only), indent=2))
    return 0


def check_frames_option(name: str, frames) -> None:
    """ConfigError unless ``frames`` is given (and a frames folder) exactly for the models that need it."""
    from deeptest_iot.errors import ConfigError

    if name in NEEDS_FRAMES:
        frames_folder(frames)
    elif frames is not None:
        raise ConfigError(f"--frames is only for {', '.join(NEEDS_FRAMES)}; {name} trains on generated scenes")


def train_and_profile(name: str, out: Path = HERE, frames=None, profile_only: bool = False) -> dict:
    """Train ``name`` into ``out`` (unless ``profile_only``) and make its profile; return its quality.
    ``frames``: the real-frames folder udacity_steering needs (ConfigError when missing); refused for
    the models trained on generated scenes."""
    check_frames_option(name, frames)
    out = Path(out)
    quality = None
    if not profile_only:
        quality = TRAINERS[name](out, frames=frames) if name in NEEDS_FRAMES else TRAINERS[name](out)
    how = None
    if name in NEEDS_FRAMES:
        how = ("activations of the model's training frames (every frame outside the held-out and validation "
               "blocks and their gaps) and of their mirror images, through deeptest_iot.model.core.load_model(...).run")
    make_profile(name, out, profile_frames(name, frames_dir=frames), how=how)
    return quality if quality is not None else json.loads((out / f"{name}.json").read_text())["quality"]


if __name__ == "__main__":
    raise SystemExit(main())
