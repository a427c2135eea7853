"""Driving conditions: parsing, ramps, and the same transform and seed on every frame (time when animated)."""

from __future__ import annotations

import numpy as np
import pytest

from deeptest_iot.drive.condition import parse_condition
from deeptest_iot.errors import ConfigError
from deeptest_iot.transforms import REGISTRY, get


def test_constant_ramp_chain_and_none():
    c = parse_condition("fog:0.5")
    assert c.name == "fog" and c.text == "fog:0.5" and c.constant
    assert c.chain(0.7, 3.0).transforms == (get("fog", severity=0.5),)
    r = parse_condition("rain:0.3-0.8")
    assert r.text == "rain:0.3-0.8" and not r.constant
    assert r.links[0].severity(0.0) == 0.3 and r.links[0].severity(1.0) == 0.8
    assert r.links[0].severity(0.5) == pytest.approx(0.55)
    assert r.chain(0.5, 0.0).transforms == (get("rain", severity=0.55),)
    both = parse_condition(" fog:0.4 + rain:0.3 ")
    assert both.name == "fog+rain" and both.text == "fog:0.4+rain:0.3"
    assert [t.name for t in both.chain(0, 0)] == ["fog", "rain"]
    assert parse_condition(both.text) == both  # the text round-trips
    for none in ("none", "clear", "NONE"):
        assert parse_condition(none).links == () and parse_condition(none).chain(0, 0).is_identity


@pytest.mark.parametrize("text, message", [
    ("fgo:0.5", "unknown transform 'fgo'; did you mean 'fog'"),
    ("fog:1.5", "severity 1.5 of fog is outside [0, 1]"),
    ("fog:-0.2", "outside [0, 1]"),
    ("rain:0.3-1.2", "severity 1.2 of rain is outside [0, 1]"),
    ("rain:0.3-", "malformed severity '0.3-'"),
    ("rain:0.3-0.5-0.7", "malformed severity"),
    ("rain:high", "malformed severity 'high'"),
    ("fog", "fog has no severity"),
    ("fog:0.5+", "has no severity"),
    ("", "expected NAME:SEVERITY"),
])
def test_bad_conditions_say_what_is_wrong(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")):
        parse_condition(text)


def test_time_goes_into_a_t_parameter_when_a_transform_has_one(monkeypatch):
    """Animated weather (another engineer's work) gets a ``t`` parameter in seconds: the drive sets it
    each step. Stand-in: a transform whose only effect is to add t to every pixel."""
    from deeptest_iot.transforms.core import Param, TransformSpec

    spec = TransformSpec("anim_test", "weather", (Param("density", 0.0, 1.0, 0.0, identity=0.0, extreme=1.0),
                                                   Param("t", 0.0, 60.0, 0.0)),
                         apply=lambda b, p, rng: np.clip(b.astype(int) + int(p["t"]), 0, 255).astype(np.uint8))
    monkeypatch.setitem(REGISTRY, "anim_test", spec)
    c = parse_condition("anim_test:0.5")
    assert c.animated and not c.constant
    assert c.chain(0.0, 2.0).transforms[0].params["t"] == 2.0
    assert c.chain(0.0, 999.0).transforms[0].params["t"] == 60.0  # clipped to the parameter's range
    frame = np.zeros((1, 4, 4, 3), np.uint8)
    assert c.chain(0.0, 7.0)(frame, seed=3).max() == 7
    assert not parse_condition("fog:0.5").animated


def test_same_chain_and_seed_give_the_same_frame_every_step():
    frame = np.full((40, 60, 3), 120, np.uint8)
    fog = parse_condition("fog:0.6")
    a, b = fog.chain(0.1, 0.05)(frame, seed=11), fog.chain(0.9, 30.0)(frame, seed=11)
    assert np.array_equal(a, b) and not np.array_equal(a, frame)  # fog stays put
    rain = parse_condition("rain:0.6")
    assert rain.animated and rain.chain(0.0, 3.0).transforms[0].params["t"] == 3.0
    a = rain.chain(0.1, 0.05)(frame, seed=11)
    assert np.array_equal(a, rain.chain(0.1, 0.05)(frame, seed=11))  # same time, same seed: same drops
    assert not np.array_equal(a, rain.chain(0.1, 0.10)(frame, seed=11))  # a frame later they have moved
    assert not np.array_equal(a, rain.chain(0.1, 0.05)(frame, seed=12))  # another drive, other drops


def test_the_camera_and_the_car_go_into_the_transforms_that_describe_them():
    camera = {"horizon": 0.41, "vfov_deg": 50.3, "camera_height_m": 1.3, "speed_kmh": 43.2}
    rain = parse_condition("rain:0.5+brightness:0.2").chain(0.0, 1.0, camera).transforms
    assert {k: rain[0].params[k] for k in camera} == camera
    assert rain[1].params == get("brightness", severity=0.2).params  # nothing to set there
    fog = parse_condition("fog:0.5").chain(0.0, 1.0, {**camera, "camera_height_m": 99.0}).transforms[0]
    assert fog.params["horizon"] == 0.41 and fog.params["camera_height_m"] == 5.0  # clipped to its range
