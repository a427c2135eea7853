"""The closed loop: a perfect driver keeps its lane, a blind one leaves it, frames replay exactly,
and everything is a pure function of the seed."""

from __future__ import annotations

import numpy as np
import pytest

from deeptest_iot.data.scenes import render
from deeptest_iot.drive.camera import frame_params
from deeptest_iot.drive.loop import DriveSettings, lane_limit, replay_frames, setup_drive, simulate
from deeptest_iot.drive.metrics import aggregate, drive_metrics
from deeptest_iot.drive.road import Roads, centre_ahead, centre_table

HW = (24, 48)


def test_the_ground_truth_driver_keeps_its_lane_on_every_road():
    settings = DriveSettings(distance=400)
    setups = [setup_drive(0, i, settings) for i in range(8)]
    tr = simulate(None, setups, "none", settings, HW)
    assert not tr.departed.any() and (tr.steps_driven == settings.steps).all()
    per = [drive_metrics(tr, i, settings, s.road.lane_width) for i, s in enumerate(setups)]
    # it starts up to 0.3 m off the centre, and pure pursuit brings it back and holds it there
    assert max(d["max_abs_offset_m"] for d in per) < 0.45
    assert np.mean([d["mean_abs_offset_m"] for d in per]) < 0.08
    assert np.nanmax(np.abs(tr["heading_error"])) < 0.05


def test_a_driver_that_never_steers_leaves_its_lane():
    settings = DriveSettings(distance=400)
    setups = [setup_drive(1, i, settings) for i in range(4)]
    tr = simulate(lambda frames: np.zeros(len(frames)), setups, "none", settings, (16, 32))
    assert tr.departed.all()
    for i, s in enumerate(setups):
        n = tr.steps_driven[i]
        row = tr.row(i)
        # it ends at the first step with an axle over the limit (it starts turned by up to 0.02 rad, so
        # even a straight takes it out)
        limit = lane_limit(s.road.lane_width)
        assert max(abs(row["offset"][n]), abs(row["front_offset"][n])) > limit
        assert max(abs(row["offset"][n - 1]), abs(row["front_offset"][n - 1])) <= limit
        assert np.all(np.isnan(tr["offset"][i, n + 1:]))  # nothing after the departure
    m = aggregate([drive_metrics(tr, i, settings, s.road.lane_width) for i, s in enumerate(setups)])
    assert m["failures"] == 4 and m["failure_rate"] == 1.0 and m["min_distance_to_departure_m"] > 15


def test_frames_replay_exactly_and_runs_are_deterministic():
    settings = DriveSettings.from_steps(30)
    setups = [setup_drive(2, i, settings) for i in range(3)]
    seen = {}

    def keep(k, rows, frames):
        for j, r in enumerate(rows):
            seen[(int(r), k)] = frames[j].copy()

    def steer(frames):  # a driver that reacts to the pictures: the mean of the left half minus the right
        f = frames.astype(float)
        return (f[:, :, : f.shape[2] // 2].mean((1, 2, 3)) - f[:, :, f.shape[2] // 2:].mean((1, 2, 3))) / 500

    a = simulate(steer, setups, "rain:0.2-0.6+fog:0.3", settings, HW, on_frames=keep)
    b = simulate(steer, setups, "rain:0.2-0.6+fog:0.3", settings, HW)
    for k in a.data:
        assert np.array_equal(a.data[k], b.data[k], equal_nan=True), k
    assert frames_differ(seen[(0, 0)], seen[(0, 10)])  # the car moves: the picture changes
    for i in range(3):
        steps = [k for (r, k) in seen if r == i]
        again = replay_frames(setups[i], "rain:0.2-0.6+fog:0.3", settings, a.row(i), HW, steps)
        for k, frame in zip(steps, again):
            assert np.array_equal(frame, seen[(i, k)]), (i, k)
    # the same drive in other company is the same drive
    alone = simulate(steer, setups[1:2], "rain:0.2-0.6+fog:0.3", settings, HW)
    assert np.array_equal(alone.data["x"][0], a.data["x"][1], equal_nan=True)
    # a chain without randomness runs as one batched call per step: the same pixels as one per car
    seen.clear()
    c = simulate(steer, setups, "fog:0.2-0.5+rotation:0.1", settings, HW, on_frames=keep)
    for i in range(3):
        steps = [k for (r, k) in seen if r == i]
        again = replay_frames(setups[i], "fog:0.2-0.5+rotation:0.1", settings, c.row(i), HW, steps)
        assert all(np.array_equal(f, seen[(i, k)]) for k, f in zip(steps, again))


def frames_differ(a, b) -> bool:
    return np.abs(a.astype(int) - b.astype(int)).mean() > 1


def test_nan_outputs_hold_the_steering_and_are_counted():
    settings = DriveSettings.from_steps(10)
    setups = [setup_drive(3, i, settings) for i in range(2)]

    def steer(frames):
        out = np.zeros(len(frames))
        out[0] = np.nan
        return out

    tr = simulate(steer, setups, "none", settings, HW)
    assert tr.invalid[0] == 10 and tr.invalid[1] == 0
    assert (tr.steps_driven == 10).all()


def test_the_camera_shows_where_the_car_is():
    """A car left of its lane centre sees the road to its right, and the frame is the renderer's."""
    settings = DriveSettings()
    s = setup_drive(4, 0, settings)
    roads = Roads([s.road])
    h, w = 94, 200
    cols = []
    for offset in (0.8, -0.8):
        x, y, th = roads.at(np.array([0]), np.array([5.0]))
        cx, cy = x - np.sin(th) * offset, y + np.cos(th) * offset
        z, yc = centre_ahead(roads, np.array([0]), cx, cy, th, np.array([5.0]))
        p = frame_params(s.scene, offset, 0.0, 0.0, centre_table(z[0], yc[0]), 5.0, float(th[0]), 0, h, w)
        img = render(p, h, w)[0]
        road = np.abs(img[-3:].astype(int) - np.array(p.road)).sum(-1) < 60  # road-coloured pixels, bottom rows
        cols.append(np.nonzero(road)[1].mean())
    assert cols[0] > cols[1] + 20  # left of centre: the road lies further right in the picture


def test_settings_are_checked():
    from deeptest_iot.errors import ConfigError

    with pytest.raises(ConfigError, match="speed"):
        DriveSettings(speed=0)
    with pytest.raises(ConfigError, match="steps"):
        DriveSettings.from_steps(0)
    assert DriveSettings(distance=300, speed=12).steps == 500


def test_a_centre_table_of_the_parabola_draws_the_parabolas_frame():
    """The renderer's table path agrees with its parabola path (the one the sample model learned)."""
    import dataclasses

    from deeptest_iot.data.scenes import frame_rng, sample_params
    from deeptest_iot.drive.road import CENTRE_S

    for i in range(5):
        p = sample_params(frame_rng(7, i), n_objects=0)
        z = CENTRE_S
        table = tuple(zip(z.tolist(), (-p.offset + p.heading * z + p.curvature * z * z / 2).tolist()))
        q = dataclasses.replace(p, centre=table)
        a, b = render(p, 94, 200)[0], render(q, 94, 200)[0]
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.5
        assert q.steering == pytest.approx(p.steering, abs=2e-4)
