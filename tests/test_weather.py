"""Physics of the weather transforms: the depth model, Koschmieder fog, rain and snow rates, severity
mappings, the storm over time (``t``), the horizon estimate, wet roads, lens drops, snow on the road."""

import math

import numpy as np
import pytest

from deeptest_iot.errors import ConfigError
from deeptest_iot.transforms import REGISTRY, get
from deeptest_iot.transforms import particles as pt
from deeptest_iot.transforms.depth import (FAR_M, estimate_horizon, focal_px, ground_coordinates, horizon_groups,
                                           row_angles, row_range)
from deeptest_iot.transforms.scales import LateParam, LogParam, PowerParam
from deeptest_iot.transforms.weather import (CLEAR_VISIBILITY_M, MP_N0, added_extinction, mp_lambda,
                                             precipitation_mask, rain_extinction, rain_species, snow_cover,
                                             snow_species, snow_visibility, storm_key)

WEATHER = ("fog", "rain", "snow")


def road_frame(h=66, w=200, n=1, seed=0):
    """A crude road: sky above 0.45, a grey road below, some texture."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, h, w, 3), np.uint8)
    y = int(0.45 * h)
    x[:, :y] = (150, 180, 220)
    x[:, y:] = (90, 90, 95)
    return np.clip(x.astype(int) + rng.integers(-10, 11, x.shape), 0, 255).astype(np.uint8)


# --- depth model ---------------------------------------------------------------------------------

def test_focal_length_and_row_angles_by_hand():
    assert focal_px(100, 90) == pytest.approx(50.0)
    a = row_angles(100, 0.5, 90)
    assert a[49] == pytest.approx(-math.atan(0.5 / 50)) and a[50] == pytest.approx(math.atan(0.5 / 50))
    # a pitched camera: the horizon at row 30 of 100 means the optical axis looks down by atan(20/50)
    a = row_angles(100, 0.3, 90)
    assert a[74] == pytest.approx(math.atan(24.5 / 50) + math.atan(20 / 50))


def test_road_range_below_the_horizon_and_far_plane_above():
    r = row_range(100, 0.5, 90, 1.5)
    assert np.all(r[:50] == FAR_M)
    assert r[74] == pytest.approx(1.5 / math.sin(math.atan(24.5 / 50)))  # 3.41 m
    assert r[99] == pytest.approx(1.5 / math.sin(math.atan(49.5 / 50)))
    assert np.all(np.diff(r[50:]) <= 0)
    z, x = ground_coordinates(100, 200, 0.5, 90, 1.5)
    assert z[74] == pytest.approx(50 * 1.5 / 24.5) and np.isinf(z[10])
    assert x[74, 199] == pytest.approx(99.5 * 1.5 / 24.5)  # lateral metres: px * height / rows below


def test_horizon_estimate_stays_in_its_band_and_is_per_image():
    x = road_frame(66, 200, n=3)
    x[1] = road_frame(66, 200, seed=5)[0][::-1]  # upside down: a different answer is fine
    est = estimate_horizon(x)
    assert est.shape == (3,) and np.all((est >= 0.3) & (est <= 0.7))
    assert est[0] == pytest.approx(estimate_horizon(x[:1])[0])
    groups = horizon_groups(x, 0.5, auto=True)
    assert sorted(i for _, sel in groups for i in np.atleast_1d(sel)) == [0, 1, 2]
    assert horizon_groups(x, 0.42) == [(0.42, slice(None))]


def test_auto_horizon_keeps_images_independent_of_their_batch():
    x = np.concatenate([road_frame(40, 64, seed=s) for s in range(3)])
    for name in WEATHER:
        t = get(name, severity=0.7, auto_horizon=1)
        a = t(x, seed=2)
        for i in range(3):
            assert np.array_equal(a[i], t(x[i:i + 1], seed=2)[0])


# --- severity mappings ---------------------------------------------------------------------------

def test_severity_maps_to_physical_units():
    fog = REGISTRY["fog"]
    assert fog.from_severity(0).params["visibility_m"] == CLEAR_VISIBILITY_M
    assert fog.from_severity(1).params["visibility_m"] == pytest.approx(25.0)
    assert fog.from_severity(0.5).params["visibility_m"] == pytest.approx(math.sqrt(20000 * 25))  # log scale
    assert get("rain", severity=0.5).params["rate_mmh"] == pytest.approx(12.5)  # 50 s^2 mm/h
    assert get("rain", severity=1).params["rate_mmh"] == pytest.approx(50.0)
    assert get("snow", severity=1).params["rate_mmh"] == pytest.approx(5.0)
    assert get("snow", severity=0.5).params["accumulation"] == 0.0  # snow settles only above 0.5
    assert get("snow", severity=0.75).params["accumulation"] == pytest.approx(0.5)
    for name in WEATHER:
        for s in (0.1, 0.3, 0.5, 0.8, 1.0):
            assert get(name, severity=s).severity == pytest.approx(s, abs=1e-9)


def test_curved_params_invert():
    p = PowerParam("r", 0, 100, 0, identity=0.0, extreme=50.0, gamma=2.0)
    assert p.at_severity(0.3) == pytest.approx(4.5) and p.fraction(4.5) == pytest.approx(0.3)
    q = LogParam("v", 5, 20000, 20000, identity=20000.0, extreme=25.0)
    assert q.at_severity(0) == 20000.0 and q.fraction(q.at_severity(0.37)) == pytest.approx(0.37)
    r = LateParam("a", 0, 1, 0, identity=0.0, extreme=1.0, start=0.5)
    assert r.at_severity(0.4) == 0.0 and r.fraction(0.0) == 0.0 and r.fraction(r.at_severity(0.9)) == pytest.approx(0.9)


def test_extinction_by_hand():
    assert added_extinction(CLEAR_VISIBILITY_M) == 0.0
    assert added_extinction(100.0) == pytest.approx(3.912 / 100 - 3.912 / 20000)
    lam = 4.1 * 50 ** -0.21  # Marshall-Palmer at 50 mm/h
    assert mp_lambda(50) == pytest.approx(lam)
    assert rain_extinction(50) == pytest.approx(math.pi * MP_N0 / lam ** 3 * 1e-6)  # ~4.3 / km
    assert 3.912 / rain_extinction(50) == pytest.approx(910, rel=0.05)  # visibility in violent rain ~ 0.9 km
    assert rain_extinction(0) == 0.0
    assert snow_visibility(2.5) < 400 < 1000 < snow_visibility(0.5) * 1.01  # the weather service's classes


# --- fog -----------------------------------------------------------------------------------------

def test_dense_fog_keeps_near_lane_markings_visible():
    h, w = 120, 160
    x = np.full((1, h, w, 3), 60, np.uint8)
    x[:, :, 70:90] = 240  # a white line running from the horizon to the bottom
    y = get("fog", severity=1.0, horizon=0.45)(x)[0, :, :, 0].astype(float)
    near = y[-5:, 70:90].mean() - y[-5:, :60].mean()
    far = y[int(0.45 * h) + 1:int(0.45 * h) + 4, 70:90].mean() - y[int(0.45 * h) + 1:int(0.45 * h) + 4, :60].mean()
    assert near > 0.4 * 180 and far < 0.05 * 180


def test_fog_turns_sky_to_airlight_faster_than_the_road():
    x = road_frame(66, 200)
    y = get("fog", visibility_m=500.0, airlight=230.0)(x).astype(float)
    sky_change = np.abs(y[0, :20] - x[0, :20]).mean()
    road_change = np.abs(y[0, -10:] - x[0, -10:]).mean()
    assert sky_change > 3 * road_change


def test_fog_is_static_in_time():
    assert "t" not in REGISTRY["fog"].defaults()


# --- rain ----------------------------------------------------------------------------------------

def test_rain_rate_sets_drop_count_and_heavier_rain_keeps_the_lighter_storms_drops():
    motion = pt.Motion(2.0, 0.0, 0.008, 0.0)
    light = pt.state(rain_species(2.0), 7, 120, 160, 45, motion)
    heavy = pt.state(rain_species(30.0), 7, 120, 160, 45, motion)
    assert len(heavy["x"]) > 3 * len(light["x"])
    assert np.all(heavy["d"] >= 0.5) and np.all(heavy["d"] <= 6.0)
    speeds = heavy["vy"]
    assert 1.5 < speeds.min() and speeds.max() < 10.5  # terminal speeds of 0.5-6 mm drops


def test_rain_streaks_vary_and_stay_translucent():
    t = get("rain", severity=1.0)
    m = precipitation_mask("rain", t.params, 1, 240, 320)
    assert 0.02 < (m > 0).mean() < 0.8 and m.max() <= 0.6 * 255 + 1 and m.mean() < 0.1 * 255
    seg = pt.segments(rain_species(50.0), storm_key(np.random.default_rng(1)), 240, 320, 45,
                      pt.Motion(2.0, 30 / 3.6, 0.008, 0.0))
    length = np.hypot(*(seg["p1"] - seg["p0"]).T)
    assert length.std() > 0.3 * length.mean()  # lengths vary with depth and drop size
    assert seg["opacity"].std() > 0.2 * seg["opacity"].mean()
    angle = np.arctan2(*(seg["p1"] - seg["p0"]).T[::-1])
    assert angle.std() > 0.05  # slants vary (gusts, perspective)


def test_severity_one_rain_is_still_a_road_not_an_overlay():
    x = road_frame(120, 160)
    y = get("rain", severity=1.0)(x, seed=0)
    corr = np.corrcoef(x[0].astype(float).ravel(), y[0].astype(float).ravel())[0, 1]
    assert corr > 0.6


def test_lens_drops_only_change_pixels_inside_drops():
    x = road_frame(66, 200)
    t = get("rain", lens_drops=0.1)
    assert not t.is_identity
    y = t(x, seed=3)
    changed = np.any(y != x, axis=-1)[0]
    assert 0.03 < changed.mean() < 0.25
    assert np.array_equal(y, t(x, seed=3))
    more = t.replace(lens_drops=0.2)(x, seed=3)  # the same drops and more: a heavier shower
    assert np.array_equal(more[0][changed], y[0][changed]) and np.any(more != x, axis=-1).mean() > changed.mean()


def test_wet_road_reflects_the_bright_sky_more_far_away():
    x = road_frame(120, 160)
    y = get("rain", wetness=1.0, horizon=0.45)(x).astype(float)
    gain = (y[0] - x[0]).mean(axis=(1, 2))
    assert gain[56:60].mean() > gain[-5:].mean() + 5  # far road: Fresnel mirror of the sky; near: darker
    assert np.all(gain[:54] == 0)


# --- snow ----------------------------------------------------------------------------------------

def test_snow_flakes_vary_in_size_and_near_ones_blur():
    seg = pt.segments(snow_species(5.0), 11, 240, 320, 45, pt.Motion(0.5, 0.0, 0.008, 0.0))
    assert seg["width"].max() > 5 * np.median(seg["width"])
    near = seg["z"] < 1.0
    assert near.any() and seg["blur"][near].min() > seg["blur"][~near].max()


def test_snow_streaks_at_speed():
    still = pt.segments(snow_species(5.0), 11, 240, 320, 45, pt.Motion(0.5, 0.0, 0.008, 0.0))
    fast = pt.segments(snow_species(5.0), 11, 240, 320, 45, pt.Motion(0.5, 80 / 3.6, 0.008, 0.0))
    assert np.median(np.hypot(*(fast["p1"] - fast["p0"]).T)) > 2 * np.median(np.hypot(*(still["p1"] - still["p0"]).T))


def test_snow_settles_beside_the_tracks_below_the_horizon_only():
    m = snow_cover(0, 120, 160, 0.45, 45.0, 1.5, 1.0)
    assert np.all(m[:54] == 0)
    bottom = m[-1]
    # the camera's own wheel tracks (0.8 m either side of the lane centre) stay clear at the bottom row
    z, x = ground_coordinates(120, 160, 0.45, 45.0, 1.5)
    track = np.abs(np.abs(x[-1]) - 0.8) < 0.1
    between = np.abs(x[-1]) < 0.2
    assert bottom[track].mean() < 0.3 * bottom[between].mean()
    lighter = snow_cover(0, 120, 160, 0.45, 45.0, 1.5, 0.2)
    assert lighter.astype(int).sum() < m.astype(int).sum()


# --- the storm over time -------------------------------------------------------------------------

@pytest.mark.parametrize("species", [rain_species(20.0), snow_species(3.0)], ids=["rain", "snow"])
@pytest.mark.parametrize("vehicle", [0.0, 15.0])
def test_particles_move_by_velocity_times_dt(species, vehicle):
    """One 20 fps frame later every drop or flake has moved by its velocity times 1/20 s, or has left
    its box and come back on the far side (and a still camera keeps most of them in their boxes)."""
    dt = 1 / 20
    a = pt.state(species, 5, 66, 200, 45, pt.Motion(3.0, vehicle, 0.008, 12.0))
    b = pt.state(species, 5, 66, 200, 45, pt.Motion(3.0, vehicle, 0.008, 12.0 + dt))
    assert len(a["x"]) == len(b["x"]) > 100
    dx = b["x"] - a["x"] - 0.5 * (a["vx"] + b["vx"]) * dt  # flakes sway: trapezoid rule over the step
    dy = b["y"] - a["y"] - a["vy"] * dt
    dz = b["z"] - a["z"] - a["vz"] * dt

    def whole_boxes(delta, size, tol):  # moved by a whole number of box sizes (0 when it stayed)
        k = delta / size
        return np.abs(k - np.rint(k)) * size < tol

    assert np.all(whole_boxes(dx, 2 * a["half_x"], 2e-3) & whole_boxes(dy, 2 * a["half_y"], 1e-9)
                  & whole_boxes(dz, a["depth"], 1e-9))
    stayed = (np.abs(dx) < 2e-3) & (np.abs(dy) < 1e-9) & (np.abs(dz) < 1e-9)
    if vehicle == 0:  # rain falls 0.3-0.45 m a frame: the nearest boxes (about 1 m tall) lose a third
        assert stayed.mean() > (0.6 if species.name == "rain" else 0.9)


def _far_mask(species, key, t, h=66, w=200, z_min=2.0):
    seg = pt.segments(species, key, h, w, 45, pt.Motion(2.0, 0.0, 0.008, t))
    sel = seg["z"] > z_min
    return pt.render({k: v[sel] for k, v in seg.items()}, h, w)


def _best_corr(a, b):
    """Largest correlation of two masks over small shifts of b down and sideways."""
    a, b = a.astype(float), b.astype(float)
    best = -1.0
    for dy in range(0, 12):
        for dx in range(-4, 5):
            A = a[:a.shape[0] - dy, max(0, -dx):a.shape[1] - max(0, dx)]
            B = b[dy:, max(0, dx):b.shape[1] - max(0, -dx)]
            A, B = A - A.mean(), B - B.mean()
            best = max(best, float((A * B).sum() / math.sqrt((A * A).sum() * (B * B).sum() + 1e-9)))
    return best


def test_consecutive_snow_frames_share_the_flakes_independent_seeds_do_not():
    """Flakes beyond 2 m drift a few pixels per 20 fps frame at 66x200: the next frame is this one
    shifted (correlation about 0.5), a storm from another seed is not (about 0.03)."""
    species = snow_species(3.0)
    for key in (1, 2):
        now, nxt, other = _far_mask(species, key, 5.0), _far_mask(species, key, 5.05), _far_mask(species, key + 50, 5.0)
        assert _best_corr(now, nxt) > 0.35 and _best_corr(now, other) < 0.15


def test_rain_frames_drift_apart_continuously():
    """Raindrops fall 5-40 px per 20 fps frame at 66x200, so as in real video consecutive frames share
    few pixels; but the storm changes continuously with t (the masks differ less the closer the times)
    and a storm from another seed differs most."""
    t = get("rain", severity=0.8)

    def diff(dt, seed=1):
        a = precipitation_mask("rain", t.replace(t=5.0).params, 1, 66, 200).astype(int)
        b = precipitation_mask("rain", t.replace(t=5.0 + dt).params, seed, 66, 200).astype(int)
        return np.abs(a - b).mean()

    d = [diff(dt) for dt in (0.0, 0.001, 0.005, 0.02)]
    assert d[0] == 0 and d[1] < d[2] < d[3] and d[1] < 0.3 * diff(0.0, seed=2)


def test_time_moves_the_drops_but_not_the_road():
    x = road_frame(66, 200)
    t = get("rain", severity=0.8)
    a, b = t(x, seed=1), t.replace(t=0.05)(x, seed=1)
    assert not np.array_equal(a, b)
    assert np.array_equal(a, t.replace(t=0.0)(x, seed=1))
    dry = get("rain", wetness=0.8)  # no rain falling: nothing moves
    assert np.array_equal(dry(x, seed=1), dry.replace(t=3.0)(x, seed=1))
    with pytest.raises(ConfigError):
        t.replace(t=-1.0)


def test_random_parameters_are_realistic():
    rng = np.random.default_rng(0)
    fogs = [REGISTRY["fog"].random(rng).params for _ in range(200)]
    assert 30 <= min(f["visibility_m"] for f in fogs) and max(f["visibility_m"] for f in fogs) <= 3000
    rains = [REGISTRY["rain"].random(rng).params for _ in range(200)]
    assert 0.5 <= min(r["rate_mmh"] for r in rains) and max(r["rate_mmh"] for r in rains) <= 80
    assert 0.15 < np.mean([r["lens_drops"] > 0 for r in rains]) < 0.45
    snows = [REGISTRY["snow"].random(rng).params for _ in range(200)]
    assert all(s["accumulation"] == 0 for s in snows if s["rate_mmh"] <= 1.0)
    for p in fogs + rains + snows:
        assert p["horizon"] == 0.5 and p["auto_horizon"] == 0  # the camera is not weather
