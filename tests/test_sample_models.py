"""The shipped sample models load through the adapter and reach their quality bars on fresh data.

Each check uses a small held-out set generated here with a scene seed no training run used, so
the figures are not the training script's own. Tests never train.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from deeptest_iot import sample_models as sm
from deeptest_iot.data import scenes
from deeptest_iot.tasks.boxes import mean_average_precision

FRESH_SEED = 4242  # not TRAIN_SEED, VAL_SEED or TEST_SEED of sample_models/train.py
# udacity_steering on its 200 shipped held-out frames, measured: MSE = 0.863 x label variance,
# correlation 0.40 (udacity_steering.json). Bars with margin; a constant predictor scores >= 1.0
# (its MSE is at least the variance) and has no correlation, so it fails both.
UDACITY_BAR = 0.95
UDACITY_MIN_CORRELATION = 0.3
DETECTOR_CLASS = np.array([0, 1] + [2] * len(scenes.SIGN_CLASSES))


def _load(name, **card):
    from deeptest_iot.model.core import load_model

    return load_model(sm.path(name), card=card or None)


@pytest.mark.parametrize("name", sm.names())
def test_shipped_files(name):
    p = sm.path(name)
    assert p.stat().st_size <= 5 * 1024 * 1024
    assert sm.card_path(name).is_file()
    rec = sm.info(name)
    assert rec["task"] == sm.TASKS[name] and rec["quality"] and rec["how"]


@pytest.mark.slow  # 4-7 s on 2 loaded cores
def test_dave2_steering_mse_under_10_percent_of_variance():
    mut = _load("dave2_steering")
    assert mut.card.task == "steering" and tuple(mut.card.input_size) == (66, 200)
    b = scenes.generate(300, seed=FRESH_SEED)
    pred = np.asarray(mut.predict(b.images))
    mse = np.mean((pred - b.steering) ** 2)
    assert mse <= 0.1 * np.var(b.steering), (mse, np.var(b.steering))
    # and the sign convention holds: a left bend, centred car, gives a positive angle
    left = scenes.generate(8, seed=FRESH_SEED, curvature=0.018, offset=0, heading=0)
    assert np.all(np.asarray(mut.predict(left.images)) > 0)


def test_sign_classifier_accuracy_at_least_95_percent():
    mut = _load("sign_classifier")
    assert list(mut.card.classes) == list(scenes.SIGN_CLASSES)
    crops, labels = scenes.sign_crops(360, seed=FRESH_SEED)
    probs = np.asarray(mut.predict(crops))
    assert probs.shape == (360, len(scenes.SIGN_CLASSES))
    assert np.mean(probs.argmax(1) == labels) >= 0.95


def _udacity_frames():
    from deeptest_iot.data.seeds import load_seeds

    folder = sm.frames_path("udacity_steering")
    return load_seeds(folder, labels=folder / "labels.csv")


def test_udacity_steering_normalises_itself_and_its_card_says_scale_1():
    import keras

    mut = _load("udacity_steering")
    card = mut.card
    assert card.task == "steering" and card.units == "radians" and tuple(card.input_size) == (66, 200)
    assert card.scale == 1.0 and card.offset == 0.0  # pixels 0..255 go in ...
    first = [layer for layer in mut.model.layers if not isinstance(layer, keras.layers.InputLayer)][0]
    assert isinstance(first, keras.layers.Rescaling)  # ... and the model normalises them itself
    assert [t.name for t in mut.layers] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2", "fc3", "steer"]


def test_udacity_steering_beats_the_mean_on_its_shipped_held_out_frames():
    """Bar derived from the measured figure (udacity_steering.json: shipped_frames_mse), with margin.
    Any constant predictor has MSE >= the label variance, so it fails this bar."""
    seeds = _udacity_frames()
    assert len(seeds) == 200 and seeds.images.shape[1:] == (150, 200, 3)
    y = np.asarray(seeds.labels, np.float64)
    pred = np.asarray(_load("udacity_steering").predict(seeds.images))
    mse, var = np.mean((pred - y) ** 2), np.var(y)
    assert mse <= UDACITY_BAR * var, (mse, var)
    assert np.corrcoef(pred, y)[0, 1] >= UDACITY_MIN_CORRELATION
    # the sign convention: mirroring a frame mirrors the steering (positive = left)
    mirrored = np.asarray(_load("udacity_steering").predict(seeds.images[:, :, ::-1].copy()))
    assert np.corrcoef(pred, -mirrored)[0, 1] > 0.8


def test_udacity_steering_model_and_frames_stay_small():
    folder = sm.frames_path("udacity_steering")
    frames = sum(p.stat().st_size for p in folder.iterdir())
    assert sm.path("udacity_steering").stat().st_size <= 2 * 1024 * 1024
    assert sm.path("udacity_steering").stat().st_size + frames <= 8 * 1024 * 1024
    assert (folder / "README.md").read_text().count("MIT") >= 1


def test_frames_path_refuses_models_without_frames():
    from deeptest_iot.errors import ConfigError

    with pytest.raises(ConfigError, match="ships no frames"):
        sm.frames_path("dave2_steering")


@pytest.mark.slow  # 4-6 s on 2 loaded cores
def test_tiny_detector_map50_at_least_0_7():
    mut = _load("tiny_detector", score_threshold=0.05)
    assert mut.card.task == "detection" and list(mut.card.classes) == ["car", "pedestrian", "sign"]
    b = scenes.generate(200, seed=FRESH_SEED)
    dets = mut.predict(b.images)  # boxes in frame pixels
    res = mean_average_precision(dets, b.boxes, [DETECTOR_CLASS[c] for c in b.classes], n_classes=3)
    assert res["map"] >= 0.7, res


@pytest.mark.parametrize("name", sm.names())
def test_profile_matches_the_model(name):
    from deeptest_iot.coverage import Profile

    mut = _load(name)
    prof = Profile.load(sm.profile_path(name), fingerprint=mut.fingerprint, layer_sizes=mut.layer_sizes)
    assert prof.count >= 1000


def test_samples_list_cli():
    from deeptest_iot.cli import main

    res = CliRunner().invoke(main, ["samples", "list"])
    assert res.exit_code == 0, res.output
    for name in sm.names():
        assert name in res.output
    res = CliRunner().invoke(main, ["samples", "list", "--json"])
    assert {r["name"] for r in json.loads(res.output)} == set(sm.names())
    res = CliRunner().invoke(main, ["samples", "train", "no_such_model"])
    assert res.exit_code == 2 and "unknown sample model" in res.output


def test_samples_train_udacity_needs_a_frames_folder(tmp_path):
    from deeptest_iot.cli import main

    for extra in ([], ["--frames", str(tmp_path / "missing")], ["--frames", str(tmp_path)]):
        res = CliRunner().invoke(main, ["samples", "train", "udacity_steering", "--out", str(tmp_path / "o"), *extra])
        assert res.exit_code == 2, res.output
        assert "--frames DIR" in res.output and "Traceback" not in res.output
        assert res.output.count("error:") == 1
    assert not (tmp_path / "o").exists()  # nothing was written
    res = CliRunner().invoke(main, ["samples", "train", "dave2_steering", "--frames", str(tmp_path)])
    assert res.exit_code == 2 and "only for udacity_steering" in res.output
