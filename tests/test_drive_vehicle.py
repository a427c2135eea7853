"""The car: a kinematic bicycle integrated exactly, and a steering actuator with a rate and a lock."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeptest_iot.drive import vehicle
from deeptest_iot.drive.vehicle import CarState, actuate, step

L = 2.7


def _drive(delta: float, speed: float, dt: float, n: int) -> np.ndarray:
    s = CarState(np.zeros(1), np.zeros(1), np.zeros(1), np.full(1, delta))
    pts = [(0.0, 0.0)]
    for _ in range(n):
        s = step(s, speed, dt)
        pts.append((float(s.x[0]), float(s.y[0])))
    return np.array(pts)


def test_constant_steering_drives_a_circle_of_radius_L_over_tan_delta():
    delta = 0.1  # rad, left
    radius = L / math.tan(delta)  # 26.91 m, hand-computed: 2.7 / 0.10033
    assert radius == pytest.approx(26.9104, abs=1e-3)
    pts = _drive(delta, 12.0, 0.05, 400)
    # a left turn from the origin heading +x: the centre is at (0, R)
    dist = np.hypot(pts[:, 0], pts[:, 1] - radius)
    assert np.allclose(dist, radius, atol=1e-9)
    # after driving a quarter of the circumference the car heads +y at (R, R)
    quarter = math.pi / 2 * radius / 12.0  # seconds
    s = CarState(np.zeros(1), np.zeros(1), np.zeros(1), np.full(1, delta))
    s = step(s, 12.0, quarter)
    assert (s.x[0], s.y[0], s.psi[0]) == pytest.approx((radius, radius, math.pi / 2), abs=1e-9)


def test_right_steering_turns_right_and_zero_goes_straight():
    right = _drive(-0.1, 10.0, 0.05, 20)
    assert right[-1, 1] < 0  # y decreases: to the right of +x
    straight = _drive(0.0, 10.0, 0.05, 20)
    assert np.allclose(straight[:, 1], 0.0) and straight[-1, 0] == pytest.approx(10.0)


@settings(max_examples=40, deadline=None)
@given(delta=st.floats(-0.5, 0.5), dt=st.sampled_from([0.01, 0.05, 0.1]))
def test_exact_integration_does_not_depend_on_the_step(delta, dt):
    # the same time driven in steps of dt or in one step ends in the same place
    n = int(round(1.0 / dt))
    many = _drive(delta, 12.0, dt, n)[-1]
    one = _drive(delta, 12.0, 1.0, 1)[-1]
    assert many == pytest.approx(one, abs=1e-7)


def test_actuator_limits_rate_and_angle():
    dt = 0.05
    d = np.zeros(1)
    d = actuate(d, np.array([1.0]), dt)
    assert d[0] == pytest.approx(vehicle.MAX_RATE * dt)  # 0.02 rad per step
    for _ in range(200):
        d = actuate(d, np.array([1.0]), dt)
    assert d[0] == pytest.approx(vehicle.MAX_ANGLE)  # clipped at the lock
    d = actuate(np.array([0.01]), np.array([0.015]), dt)
    assert d[0] == pytest.approx(0.015)  # small changes pass as they are
