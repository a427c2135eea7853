"""Hypothesis strategies: what they draw, and that failures shrink to weaker transforms and fewer links."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from deeptest_iot.testing import strategies as S
from deeptest_iot.errors import ConfigError
from deeptest_iot.transforms import REGISTRY, Chain, Transform

FAST = settings(max_examples=30, deadline=None, derandomize=True, database=None)


def test_profile_is_registered_with_the_documented_settings():
    p = settings.get_profile(S.PROFILE)
    assert p.deadline is None and p.derandomize and p.database is None
    assert HealthCheck.too_slow in p.suppress_health_check
    assert 0 < p.max_examples <= 50


@FAST
@given(S.severities(0.25, 0.75, resolution=100))
def test_severities_stay_in_range_on_the_grid(s):
    assert 0.25 <= s <= 0.75
    assert abs(s * 100 - round(s * 100)) < 1e-9


@FAST
@given(S.transforms(["fog", "rain", "brightness"], max_severity=0.5))
def test_transforms_are_named_values_at_a_bounded_severity(t):
    assert isinstance(t, Transform) and t.name in ("fog", "rain", "brightness")
    assert t.severity <= 0.5 + 1e-6


@FAST
@given(S.transforms(kinds=["geometric"]))
def test_transforms_by_kind(t):
    assert REGISTRY[t.name].kind == "geometric"


@FAST
@given(S.chains(max_links=3, kinds=["geometric", "weather"]))
def test_chains_are_valid_by_default(c):
    assert isinstance(c, Chain) and 1 <= len(c) <= 3
    assert c.affine_count <= 1


def test_a_failing_severity_shrinks_to_the_weakest_that_still_fails():
    # A property that breaks above severity 0.37 ends at the grid step just past it, not at 1.0 as
    # a plain st.floats(0, 1) would give.
    t = find(S.transforms(["fog", "rain"]), lambda t: t.severity > 0.37)
    assert t.name == "fog"  # toward the first name
    assert t.severity == pytest.approx(0.371, abs=1e-6)
    s = find(S.severities(), lambda s: s >= 0.5)
    assert s == 0.5


def test_a_failing_chain_shrinks_to_fewer_and_weaker_links():
    # Fails when some link's severity reaches 0.3: the minimal case is one link, at 0.3.
    c = find(S.chains(max_links=4, names=["contrast", "fog"]), lambda c: c.severity >= 0.3)
    assert len(c) == 1 and c.transforms[0].name == "contrast"
    assert c.severity == pytest.approx(0.3, abs=1e-6)
    # Needs two links: the minimal case has exactly two, both at the identity.
    c = find(S.chains(max_links=4, names=["contrast", "fog"]), lambda c: len(c) >= 2)
    assert len(c) == 2 and c.severity == 0.0


def test_shrinking_on_pixels_ends_at_the_smallest_change_that_breaks_a_toy_model():
    # A "model" that reads the mean brightness; the relation breaks once it moves by more than 20.
    frames = np.full((1, 16, 16, 3), 100, np.uint8)

    def breaks(t):
        return abs(float(t(frames).mean()) - 100.0) > 20.0

    t = find(S.transforms(["brightness"]), breaks)
    weaker = REGISTRY["brightness"].from_severity(max(t.severity - 0.001, 0.0))
    assert breaks(t) and not breaks(weaker)


@FAST
@given(S.seed_images(n=6, max_size=3, height=40, width=80))
def test_seed_images_from_generated_scenes(batch):
    assert batch.dtype == np.uint8 and batch.shape[1:] == (40, 80, 3) and 1 <= len(batch) <= 3
    batch[0, 0, 0] = 0  # a copy: changing it does not touch the shared pool


def test_seed_images_shrink_to_fewer_frames_and_come_from_a_folder(tmp_path):
    import cv2

    for i in range(4):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((10, 12, 3), 50 * i, np.uint8))
    batch = find(S.seed_images(tmp_path, max_size=4), lambda b: len(b) >= 2)
    assert batch.shape == (2, 10, 12, 3)
    assert batch[0].max() == 0 and batch[1].max() == 50  # the first frames of the folder
    pool = S._seed_pool(str(tmp_path), None, 16, 0, 160, 320)
    assert not pool.flags.writeable


@pytest.mark.parametrize("make, message", [
    (lambda: S.severities(0.8, 0.2), "min_severity <= max_severity"),
    (lambda: S.transforms(["fgo"]), "unknown transform"),
    (lambda: S.transforms(kinds=["nothing"]), "no transform left"),
    (lambda: S.chains(max_links=0), "min_links <= max_links"),
    (lambda: S.seed_images(min_size=3, max_size=2), "min_size <= max_size"),
])
def test_bad_arguments_say_what_is_wrong(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_strategies_compose_with_st_data():
    @FAST
    @given(st.data())
    def inner(data):
        t = data.draw(S.transforms(["gaussian_noise"], max_severity=0.2))
        images = data.draw(S.seed_images(n=3, max_size=2, height=24, width=32))
        out = t(images, seed=0)
        assert out.shape == images.shape and out.dtype == np.uint8

    inner()
