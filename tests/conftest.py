"""Fixtures shared by the suite: the toy Keras models of ``toy_models.py``.

Models a test needs as a file are saved once per session, each in its own folder with its model
card beside it; tests must not write next to them (copy a model into ``tmp_path`` first when a
command writes beside its model, as ``deeptest-iot profile`` does). In-memory models are built
fresh for each test, so a test may change their weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import toy_models

BRIGHTNESS_SCALE = "scale = 0.00392156862745098\n"  # 1/255: brightness in [0, 1], the card default


def _saved(factory, name: str, model, card: str | None = None) -> Path:
    return toy_models.save(model, factory.mktemp(name) / f"{name}.keras", card)


# -- saved once per session -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def mean_intensity_steering_path(tmp_path_factory) -> Path:
    """mean.keras: steering = the frame's mean brightness, exactly, at 24x48 (toy_models.mean_intensity_steering)."""
    return _saved(tmp_path_factory, "mean", toy_models.mean_intensity_steering(),
                  'task = "steering"\ninput_size = [24, 48]\n' + BRIGHTNESS_SCALE)


@pytest.fixture(scope="session")
def brightness_steering_path(tmp_path_factory) -> Path:
    """bright.keras: steering = 1.125 * mean brightness at 32x32, through a counted conv."""
    return _saved(tmp_path_factory, "bright", toy_models.brightness_steering(1.0, "bright"),
                  'task = "steering"\ninput_size = [32, 32]\n')


@pytest.fixture(scope="session")
def clipped_steering_path(tmp_path_factory) -> Path:
    """clip.keras: the bright model clipped at 0.5625 (toy_models.CLIP): the same answer as bright.keras on
    frames of mean brightness up to 0.5 (pixel 127.5), 0.5625 on brighter ones. A twin by construction."""
    return _saved(tmp_path_factory, "clip", toy_models.clipped_brightness_steering(toy_models.CLIP, "clip"),
                  'task = "steering"\ninput_size = [32, 32]\n')


@pytest.fixture(scope="session")
def constant_steering_path(tmp_path_factory) -> Path:
    """steady.keras: the brightness steering model with gain 0, so it always answers 0."""
    return _saved(tmp_path_factory, "steady", toy_models.brightness_steering(0.0, "steady"),
                  'task = "steering"\ninput_size = [32, 32]\n')


@pytest.fixture(scope="session")
def dark_bright_classifier_path(tmp_path_factory) -> Path:
    """cls.keras: 16x16, "bright" (class 1) exactly when the mean brightness is above 0.5."""
    return _saved(tmp_path_factory, "cls", toy_models.brightness_classifier(16, 0.5, "cls"),
                  'task = "classification"\ninput_size = [16, 16]\nclasses = ["dark", "bright"]\n')


@pytest.fixture(scope="session")
def day_night_classifier_path(tmp_path_factory) -> Path:
    """daynight.keras: 32x32, "day" (class 1) exactly when the mean brightness is above 0.3."""
    return _saved(tmp_path_factory, "daynight", toy_models.brightness_classifier(32, 0.3, "daynight"),
                  'task = "classification"\ninput_size = [32, 32]\nclasses = ["night", "day"]\n')


@pytest.fixture(scope="session")
def small_steering_cnn_path(tmp_path_factory) -> Path:
    """small.keras: the small 8x16 steering CNN with random weights (5 counted neurons), no model card."""
    return _saved(tmp_path_factory, "small", toy_models.small_steering_cnn(8, 16))


@pytest.fixture(scope="session")
def untrained_steering_path(tmp_path_factory) -> Path:
    """tiny.keras: the small steering CNN with random weights at 33x100 (a Dave-2 input halved); it
    rescales its input itself (card scale 1)."""
    return _saved(tmp_path_factory, "tiny", toy_models.small_steering_cnn(33, 100, name="tiny"),
                  'task = "steering"\ninput_size = [33, 100]\nscale = 1.0\n')


@pytest.fixture(scope="session")
def lambda_steering_paths(tmp_path_factory) -> dict[str, Path]:
    """The 2x2 Lambda steering model saved as lam.keras and lam.h5: {suffix: path}."""
    folder = tmp_path_factory.mktemp("lam")
    model = toy_models.lambda_steering()
    return {suffix: toy_models.save(model, folder / f"lam{suffix}") for suffix in (".keras", ".h5")}


# -- built fresh for each test --------------------------------------------------------------------

@pytest.fixture
def hand_steering():
    """The hand-weighted 2x2 functional steering model (toy_models.hand_steering)."""
    return toy_models.hand_steering()
