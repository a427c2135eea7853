"""Procedural roads: deterministic, smooth, within the curvature the model knows; projection and the
camera's view of the centre line are right on hand-checkable roads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deeptest_iot.drive.road import (DS, LEAD_IN, MAX_CURVATURE, Road, Roads, centre_ahead, centre_table,
                                     make_road)


def _circle(radius: float, length: float = 400.0) -> Road:
    """A left-hand circle of ``radius`` through the origin heading +x (centre at (0, R))."""
    s = np.arange(0, length + DS, DS)
    th = s / radius
    return Road(s=s, x=radius * np.sin(th), y=radius * (1 - np.cos(th)), theta=th, kappa=np.full_like(s, 1 / radius),
                lane_width=3.5)


def test_same_seed_same_road_and_different_seeds_differ():
    a, b = make_road(300, [0, 1, 2]), make_road(300, [0, 1, 2])
    assert np.array_equal(a.x, b.x) and np.array_equal(a.kappa, b.kappa)
    assert not np.array_equal(a.kappa, make_road(300, [0, 2, 2]).kappa)


def test_curvature_is_continuous_bounded_and_starts_straight():
    for seed in range(20):
        r = make_road(500, seed)
        assert r.length >= 500
        assert np.abs(r.kappa).max() <= MAX_CURVATURE + 1e-12
        assert np.all(r.kappa[: int(LEAD_IN / DS)] == 0)
        # clothoids: curvature changes by at most max_curvature over the shortest transition (15 m)
        assert np.abs(np.diff(r.kappa)).max() <= 2 * MAX_CURVATURE / 15 * DS + 1e-12
        # heading is the integral of curvature, and positions follow the heading
        assert np.abs(np.diff(r.theta) - (r.kappa[1:] + r.kappa[:-1]) / 2 * DS).max() < 1e-12
        assert np.allclose(np.hypot(np.diff(r.x), np.diff(r.y)), DS, atol=1e-3)


def test_projection_gives_signed_offset_left_positive():
    road = make_road(300, 5)
    roads = Roads([road])
    i = 300  # a sample 150 m along
    nx, ny = -math.sin(road.theta[i]), math.cos(road.theta[i])  # unit normal pointing left
    for d in (-1.2, -0.3, 0.0, 0.4, 1.0):
        px, py = road.x[i] + d * nx, road.y[i] + d * ny
        p = roads.project(np.array([0]), np.array([px]), np.array([py]), np.array([i - 5]))
        assert p.offset[0] == pytest.approx(d, abs=2e-3)
        assert p.s[0] == pytest.approx(road.s[i], abs=0.02)


def test_camera_sees_a_straight_road_as_a_constant_offset():
    s = np.arange(0, 300, DS)
    road = Road(s=s, x=s, y=np.zeros_like(s), theta=np.zeros_like(s), kappa=np.zeros_like(s), lane_width=3.5)
    roads = Roads([road])
    # a car 0.5 m left of the centre line, heading along it: the centre is 0.5 m to its right
    z, y = centre_ahead(roads, np.array([0]), np.array([10.0]), np.array([0.5]), np.array([0.0]), np.array([10.0]))
    assert np.allclose(y, -0.5) and np.allclose(z[0, :3], [0.5, z[0, 1], z[0, 2]])
    # turned 0.05 rad to the left: the road appears to turn right, y = -0.5 / cos(0.05) - tan(0.05) z
    z, y = centre_ahead(roads, np.array([0]), np.array([10.0]), np.array([0.5]), np.array([0.05]), np.array([10.0]))
    assert np.allclose(y[0, :20], -0.5 / math.cos(0.05) - z[0, :20] * math.tan(0.05), atol=1e-9)


def test_camera_sees_a_circle_as_the_scenes_parabola_near_the_car():
    radius = 60.0
    roads = Roads([_circle(radius)])
    z, y = centre_ahead(roads, np.array([0]), np.array([0.0]), np.array([0.0]), np.array([0.0]), np.array([0.0]))
    # every point on the circle, up to the chord of the 0.5 m samples between which positions are
    # interpolated (at most DS^2 / (8 R) inside it)
    r = np.hypot(z[0], y[0] - radius)
    assert np.all(r <= radius + 1e-9) and np.all(r >= radius - DS ** 2 / (8 * radius) - 1e-9)
    # near the car it is the scenes' parabola for curvature 1/R, y = z^2 / (2R): within 1.5 cm up to
    # the look-ahead (12 m)
    near = z[0] < 12.5
    assert np.abs(y[0, near] - z[0, near] ** 2 / (2 * radius)).max() < 0.015
    table = centre_table(z[0], y[0])
    zs = np.array([p[0] for p in table])
    assert np.all(np.diff(zs) > 0) and zs[-1] < radius + 1e-6  # folds back after a quarter circle: cut there
