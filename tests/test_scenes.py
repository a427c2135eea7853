"""The scene generator is deterministic and its ground truth is right (its speed, frames per second,
is measured by benchmarks/bench_scenes.py: no timing assertion here)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeptest_iot.errors import ConfigError
from deeptest_iot.data.scenes import (CLASSES, SIGN_CLASSES, SceneObject, frame_rng, generate, render,
                                 sample_params, sign_crops, steering_angle)


def test_same_seed_same_frames_and_frame_i_does_not_depend_on_n():
    a = generate(6, seed=3)
    b = generate(6, seed=3)
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.steering, b.steering)
    c = generate(2, seed=3, start=4)
    assert np.array_equal(c.images, a.images[4:])
    for x, y in zip(a.boxes[4:], c.boxes):
        assert np.array_equal(x, y)
    d = generate(6, seed=4)
    assert not np.array_equal(a.images, d.images)


def test_shapes_and_dtypes():
    b = generate(4, seed=0, height=96, width=200)
    assert b.images.shape == (4, 96, 200, 3) and b.images.dtype == np.uint8
    assert b.steering.shape == (4,) and b.steering.dtype == np.float32
    assert len(b.boxes) == len(b.classes) == len(b.params) == 4
    for bx, cl in zip(b.boxes, b.classes):
        assert bx.dtype == np.float32 and bx.shape == (len(cl), 4)
        assert np.all((cl >= 0) & (cl < len(CLASSES)))


def test_straight_centred_road_gives_zero():
    b = generate(5, seed=1, curvature=0, offset=0, heading=0)
    assert np.all(b.steering == 0.0)


def test_left_bend_steers_left_positive_and_right_bend_negative():
    left = generate(4, seed=2, curvature=0.015, offset=0, heading=0)
    right = generate(4, seed=2, curvature=-0.015, offset=0, heading=0)
    assert np.all(left.steering > 0.01)
    assert np.allclose(right.steering, -left.steering)
    # the picture agrees: on a left bend the far road lies left of where it lies on a right bend
    for i in range(4):
        p = dataclasses.replace(sample_params(frame_rng(2, i), offset=0, heading=0, brightness=1.0), shadows=(), trees=(),
                                skyline=(), objects=())
        img_l, _, _ = render(dataclasses.replace(p, curvature=0.015))
        img_r, _, _ = render(dataclasses.replace(p, curvature=-0.015))
        assert _far_road_column(img_l, p) < _far_road_column(img_r, p) - 20


def _far_road_column(img, p):
    """Mean column of road-coloured pixels in a band of rows just below the horizon."""
    h, w, _ = img.shape
    road = np.median(img[h - 6:, w // 2 - 3:w // 2 + 3].reshape(-1, 3), 0)
    top = int(p.horizon * h) + 3
    band = img[top:top + 8].astype(float)
    rows, cols = np.nonzero(np.abs(band - road).sum(-1) < 30)
    assert len(cols) > 10
    return cols.mean()


def test_car_left_of_lane_centre_steers_right():
    b = generate(3, seed=5, curvature=0, heading=0, offset=0.5)
    assert np.all(b.steering < 0)


@settings(max_examples=30, deadline=None)
@given(c=st.floats(-0.02, 0.02), o=st.floats(-1, 1), h=st.floats(-0.06, 0.06))
def test_steering_formula_is_odd_and_matches_pure_pursuit(c, o, h):
    a = float(steering_angle(c, o, h))
    assert a == pytest.approx(-float(steering_angle(-c, -o, -h)), abs=1e-12)
    y = -o + h * 12 + c * 72
    assert a == pytest.approx(np.arctan(2 * 2.7 * y / 144), abs=1e-12)


def test_boxes_inside_frame_and_on_the_objects():
    b = generate(40, seed=11)
    assert sum(len(c) for c in b.classes) > 40
    h, w = b.images.shape[1:3]
    for img, boxes, params in zip(b.images, b.boxes, b.params):
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
        assert np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        empty, none, _ = render(dataclasses.replace(params, objects=()), h, w)
        assert len(none) == 0
        for x0, y0, x1, y1 in boxes:
            inner = (slice(int(np.ceil(y0)), int(y1)), slice(int(np.ceil(x0)), int(x1)))
            diff = np.abs(img[inner].astype(int) - empty[inner].astype(int)).sum(-1)
            # most of the box is covered by the object, not the background
            assert np.mean(diff > 30) > 0.4


def test_every_class_appears_and_signs_differ():
    b = generate(200, seed=0)
    seen = set(np.concatenate(b.classes).tolist())
    assert seen == set(range(len(CLASSES)))


def test_forcing_objects_and_counts():
    empty = generate(3, seed=0, objects=())
    assert all(len(c) == 0 for c in empty.classes)
    obj = SceneObject(cls=CLASSES.index("stop"), z=8.0, s=-3.5, size=1.0, color=(0, 0, 0), color2=(0, 0, 0))
    one = generate(2, seed=0, objects=[obj], offset=0, heading=0, curvature=0)
    assert [c.tolist() for c in one.classes] == [[2], [2]]
    with pytest.raises(ConfigError, match="unknown scene option"):
        generate(1, seed=0, weather="rain")


def test_forcing_one_parameter_keeps_the_others():
    p = sample_params(frame_rng(9, 0))
    q = sample_params(frame_rng(9, 0), curvature=0.0)
    assert q.curvature == 0.0
    assert dataclasses.replace(q, curvature=p.curvature) == p


def test_sign_crops_balanced_and_distinct():
    imgs, labels = sign_crops(60, seed=1, size=32)
    assert imgs.shape == (60, 32, 32, 3) and imgs.dtype == np.uint8
    assert np.bincount(labels, minlength=len(SIGN_CLASSES)).tolist() == [10] * len(SIGN_CLASSES)
    again, _ = sign_crops(60, seed=1, size=32)
    assert np.array_equal(imgs, again)
    # the mean colour of the centre separates blue, red and white signs
    centre = imgs[:, 12:20, 12:20].reshape(60, -1, 3).mean(1)
    ahead = labels == SIGN_CLASSES.index("ahead_only")
    assert np.all(centre[ahead, 2] > centre[ahead, 0])


def test_params_are_json_able():
    import json

    b = generate(3, seed=0)
    for p in b.params:
        json.dumps(p.to_dict())

