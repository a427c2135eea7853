"""Hand-checked pixel values, the registry, presets, chains, JSON round trips, points and boxes, errors."""

import json
import math

import cv2
import numpy as np
import pytest

from deeptest_iot.errors import ConfigError, InputError
from deeptest_iot.transforms import (PRESETS, REGISTRY, Chain, Transform, from_dict, get, map_boxes, map_points,
                                     names, presets_with)
from deeptest_iot.transforms.photometric import motion_offsets
from deeptest_iot.transforms.depth import FAR_M, focal_px, row_range
from deeptest_iot.transforms import weather
from deeptest_iot.transforms.weather import added_extinction


def frame(value, h=4, w=5, n=1):
    return np.full((n, h, w, 3), value, np.uint8)


# --- hand-checked values -------------------------------------------------------------------------

def test_brightness_adds_and_saturates():
    x = np.array([[[[0, 100, 250]]]], np.uint8)
    assert get("brightness", delta=10)(x).tolist() == [[[[10, 110, 255]]]]
    assert get("brightness", delta=-21)(x).tolist() == [[[[0, 79, 229]]]]


def test_contrast_is_deepteests_gain_by_default_and_pivots_on_request():
    x = np.array([[[[10, 100, 200]]]], np.uint8)
    assert get("contrast", alpha=2.0)(x).tolist() == [[[[20, 200, 255]]]]
    assert get("contrast", alpha=0.5, pivot=128)(x).tolist() == [[[[69, 114, 164]]]]


def test_gamma_and_night_darken():
    x = frame(128)
    assert get("gamma", gamma=2.0)(x)[0, 0, 0].tolist() == [64, 64, 64]  # 255 (128/255)^2 = 64.25
    night = get("night", darkness=1.0)(x)[0, 0, 0]
    v = 255 * (128 / 255) ** 2.2 * 0.2  # 4.44
    assert night.tolist() == [round(v * 0.75), round(v * 0.9), round(v)]
    assert night[2] >= night[1] >= night[0]  # bluer


def test_saturation_zero_is_grey_and_colour_cast_scales_channels():
    x = np.array([[[[200, 100, 50]]]], np.uint8)
    grey = get("saturation", factor=0.0)(x)[0, 0, 0]
    assert grey[0] == grey[1] == grey[2] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert get("color_cast", red=1.25, green=1.0, blue=0.5)(x)[0, 0, 0].tolist() == [250, 100, 25]


def test_blurs_match_opencv_on_each_image():
    x = np.random.default_rng(0).integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    for i in range(3):
        assert np.array_equal(get("blur_box", k=4)(x)[i], cv2.blur(x[i], (4, 4)))
        assert np.array_equal(get("blur_gaussian", k=5)(x)[i], cv2.GaussianBlur(x[i], (5, 5), 0))
        assert np.array_equal(get("blur_median", k=3)(x)[i], cv2.medianBlur(x[i], 3))
        assert np.array_equal(get("blur_bilateral", severity=1.0)(x)[i], cv2.bilateralFilter(x[i], 9, 75, 75))


def test_motion_blur_spreads_a_dot_along_its_line():
    x = frame(0, 9, 9)
    x[0, 4, 4] = 255
    y = get("blur_motion", length=3, angle=0)(x)[0, :, :, 0]
    assert y[4, 3:6].tolist() == [85, 85, 85] and y.sum() == 255
    dx, dy = motion_offsets(5, 90)
    assert dx.tolist() == [0] * 5 and sorted(dy.tolist()) == [-2, -1, 0, 1, 2]
    assert len(set(zip(*motion_offsets(2, 0)))) == 2  # even lengths still have distinct taps


def test_translation_moves_pixels_exactly_and_fills_black():
    x = np.arange(1, 13, dtype=np.uint8).reshape(1, 3, 4, 1).repeat(3, axis=3)
    y = get("translation", tx=1, ty=0)(x)[..., 0]
    assert y[0].tolist() == [[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11]]


def test_hflip_mirrors_and_says_so():
    x = np.arange(6, dtype=np.uint8).reshape(1, 1, 2, 3)
    assert get("hflip", flip=1)(x).tolist() == [[[[3, 4, 5], [0, 1, 2]]]]
    assert get("hflip", flip=1).mirrors_horizontally and not get("hflip").mirrors_horizontally
    assert not get("rotation", degrees=5).mirrors_horizontally


def test_fog_follows_the_scattering_model_row_by_row(monkeypatch):
    monkeypatch.setattr(weather, "HORIZON_SPREAD", 0.0)  # the horizon exactly known: no averaging over it
    h, airlight, visibility, horizon = 50, 230.0, 100.0, 0.3
    x = frame(40, h, 3)  # dark: nothing above the horizon looks like sky, so it is on the far plane
    y = get("fog", visibility_m=visibility, horizon=horizon, airlight=airlight)(x)[0, :, 0, 0].astype(float)
    beta = 3.912 * (1 / visibility - 1 / 20000)  # Koschmieder, less the clear air already in the frame
    assert added_extinction(visibility) == pytest.approx(beta)
    d = row_range(h, horizon)
    t = np.exp(-beta * d)
    assert np.abs(y - (40 * t + airlight * (1 - t))).max() <= 1.0
    assert np.all(d[:15] == FAR_M) and np.all(np.diff(d[15:]) <= 0)  # far plane, then the road nearing
    # the bottom row: 1.5 m camera, 45 deg field of view, 34.5 rows below the horizon row 15
    a = math.atan((49.5 - 25) / focal_px(h, 45)) - math.atan((15 - 25) / focal_px(h, 45))
    assert d[-1] == pytest.approx(1.5 / math.sin(a))


def test_rain_draws_slanted_translucent_streaks():
    x = frame(20, 120, 160)
    t = get("rain", rate_mmh=50.0, wind_ms=4.0, speed_kmh=0.0, wetness=0.0)
    y = t(x, seed=4)[0].astype(int)
    base = np.median(y[..., 0])
    streak = y[..., 0] > base + 4
    assert 0.01 < streak.mean() < 0.4
    assert y.max() < 20 + 0.7 * (255 - 20)  # translucent: no streak is opaque
    # wind to the right: drops move right as they fall, streaks lean right going down
    m = streak.astype(float)
    along = (m[:-6, :-2] * m[6:, 2:]).mean()
    against = (m[:-6, 2:] * m[6:, :-2]).mean()
    assert along > 1.5 * against


def test_wet_road_darkens_below_the_horizon_only():
    x = frame(200, 60, 80)
    y = get("rain", wetness=1.0, horizon=0.5)(x)
    assert np.array_equal(y[0, :30], x[0, :30])  # no rain falling: the sky and far plane untouched
    assert y[0, 30:].mean() < 195 and y[0, -1].mean() < y[0, 31].mean()  # Fresnel: shinier far away


def test_glare_is_brightest_at_the_sun():
    x = frame(50, 60, 100)
    y = get("glare", intensity=1.0, x=0.8, y=0.2)(x)[0, :, :, 0]
    rows, cols = np.nonzero(y >= y.max() - 1)  # the saturated core, centred on the sun
    assert abs(rows.mean() - 0.2 * 60) <= 2 and abs(cols.mean() - 0.8 * 100) <= 2
    assert y.min() > 50  # the veil lifts the whole frame


def test_shadow_and_lens_dirt_only_darken():
    x = frame(180, 60, 100)
    for t in (get("shadow", strength=1.0), get("lens_dirt", coverage=0.2, opacity=1.0)):
        y = t(x, seed=2)
        assert y.max() <= 180 and y.min() < 120


def test_snow_whitens():
    x = frame(60, 60, 100)
    y = get("snow", severity=1.0)(x, seed=1)
    assert y.mean() > 60 + 0.25 * (155 - 60) and y.max() >= 150  # snow on a dark frame: a grey-white veil


def test_sensor_faults_hit_the_documented_share_of_pixels():
    x = frame(128, 100, 100)
    sp = get("salt_pepper", amount=0.1)(x, seed=0)[0, :, :, 0]
    assert abs((sp == 0).mean() - 0.05) < 0.01 and abs((sp == 255).mean() - 0.05) < 0.01
    dp = get("dead_pixels", fraction=0.02, stuck_share=0.5)(x, seed=0)[0]
    faulty = np.any(dp != 128, axis=-1)
    assert abs(faulty.mean() - 0.02) < 0.005
    dead = np.all(dp == 0, axis=-1)
    assert 0.3 < dead.sum() / faulty.sum() < 0.7
    noisy = get("gaussian_noise", sigma=10)(x, seed=0).astype(float)
    assert abs(noisy.std() - 10) < 0.3 and abs(noisy.mean() - 128) < 0.3


def test_jpeg_degrades_with_quality_and_keeps_colours_in_rgb_order():
    rng = np.random.default_rng(0)
    x = cv2.GaussianBlur(rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)[0], (9, 9), 3)[None]
    x[0, :32] = (220, 30, 30)  # pure red top half: must stay red, not turn blue
    err = [np.abs(get("jpeg", quality=q)(x).astype(int) - x).mean() for q in (90, 50, 10)]
    assert 0 < err[0] < err[1] < err[2]
    top = get("jpeg", quality=50)(x)[0, 8:24, 8:56].mean(axis=(0, 1))
    assert top[0] > 180 and top[2] < 70


# --- severity, registry, presets ------------------------------------------------------------------

def test_severity_one_is_the_far_end_of_deeptests_sweeps():
    assert get("translation", severity=1).params == {"tx": 100.0, "ty": 100.0}
    assert get("scale", severity=1).params == {"factor": 6.0}
    assert get("shear", severity=1).params == {"factor": 1.0}
    assert get("rotation", severity=1).params == {"degrees": 30.0}
    assert get("contrast", severity=1).params["alpha"] == 3.0
    assert get("brightness", severity=1).params == {"delta": 100.0}
    assert get("blur_bilateral", severity=1).params == {"d": 9, "sigma_color": 75.0, "sigma_space": 75.0}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_severity_is_recovered_from_the_parameters(name):
    for s in (0.0, 0.25, 0.5, 1.0):
        t = get(name, severity=s)
        tol = 0.5 if any(p.integer for p in REGISTRY[name].params) else 1e-9  # integer rounding
        assert t.severity == pytest.approx(s, abs=tol)
    assert get(name, severity=1.0).severity == 1.0


def test_explicit_parameters_override_severity():
    t = get("fog", severity=0.5, horizon=0.3)
    assert t.params["visibility_m"] == pytest.approx(math.sqrt(20000 * 25)) and t.params["horizon"] == 0.3


def test_random_uses_deeptests_pools_and_the_seed():
    spec = REGISTRY["translation"]
    draws = [spec.random(np.random.default_rng(i)).params for i in range(200)]
    txs = [d["tx"] for d in draws]
    assert min(txs) >= -50 and max(txs) <= 49 and all(v == int(v) for v in txs)
    assert spec.random(7) == spec.random(7) and spec.random(7) != spec.random(8)
    alphas = {REGISTRY["contrast"].random(np.random.default_rng(i)).params["alpha"] for i in range(300)}
    assert alphas <= {round(0.1 * k, 10) for k in range(1, 20)} and len(alphas) > 10
    deltas = [REGISTRY["brightness"].random(i).params["delta"] for i in range(200)]
    assert min(deltas) >= -21 and max(deltas) <= 20
    assert REGISTRY["hflip"].random(0).mirrors_horizontally
    for name, s in REGISTRY.items():  # every random value is a valid one
        s.random(np.random.default_rng(1))


def test_presets_hold_deeptests_fixed_sweeps():
    assert len(PRESETS["deeptest-sweep"]) == 70
    assert [t.params["tx"] for t in PRESETS["deeptest-translation"]] == [10.0 * p for p in range(1, 11)]
    assert [t.params["factor"] for t in PRESETS["deeptest-scale"]] == [1 + 0.5 * p for p in range(1, 11)]
    assert [t.params["degrees"] for t in PRESETS["deeptest-rotation"]] == [3.0 * p for p in range(1, 11)]
    assert PRESETS["deeptest-contrast"][-1].params["alpha"] == 3.0
    assert [(t.name, t.params.get("k", t.params.get("d"))) for t in PRESETS["deeptest-blur"]] == [
        ("blur_box", 3), ("blur_box", 4), ("blur_box", 5), ("blur_box", 6), ("blur_gaussian", 3),
        ("blur_gaussian", 5), ("blur_gaussian", 7), ("blur_median", 3), ("blur_median", 5), ("blur_bilateral", 9)]
    assert "deeptest-sweep" in presets_with("rotation") and presets_with("fog") == ["weather"]
    with pytest.raises(TypeError):
        PRESETS["mine"] = ()


def test_names_and_kinds():
    assert set(names()) == set(REGISTRY)
    assert set(names("weather")) == {"fog", "rain", "snow", "shadow", "glare"}
    assert {"gaussian_noise", "salt_pepper", "dead_pixels", "jpeg", "lens_dirt"} == set(names("sensor"))
    assert {s.kind for s in REGISTRY.values()} == {"photometric", "geometric", "weather", "sensor"}
    assert all(get(n).matrix(10, 10) is None for n in names() if REGISTRY[n].kind != "geometric")


# --- values, JSON, chains --------------------------------------------------------------------------

def test_transforms_are_immutable_hashable_values():
    t = get("fog", visibility_m=500.0)
    with pytest.raises(AttributeError):
        t.name = "rain"
    t.params["visibility_m"] = 90.0
    assert t.params["visibility_m"] == 500.0
    assert t == get("fog", visibility_m=500) and hash(t) == hash(get("fog", visibility_m=500))
    assert t.replace(visibility_m=70).params["visibility_m"] == 70 and t.params["visibility_m"] == 500
    assert eval(repr(t), {"Transform": Transform}) == t


@pytest.mark.parametrize("name", list(REGISTRY))
def test_json_round_trip(name):
    t = REGISTRY[name].random(3)
    assert from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_chain_applies_in_order_with_child_seeds_and_composes_matrices():
    x = np.random.default_rng(0).integers(0, 256, (2, 30, 40, 3), dtype=np.uint8)
    rot, tr, rain = get("rotation", degrees=10), get("translation", tx=5, ty=-3), get("rain", severity=0.6)
    chain = Chain((rot, rain))
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(9).spawn(2)]  # child i of seed 9
    assert chain.seeded(9).seeds == tuple(seeds) == Chain.link_seeds(9, 2)
    expected = rain(rot(x, seed=seeds[0]), seed=seeds[1])
    assert np.array_equal(chain(x, seed=9), expected)
    assert np.array_equal(chain(x, seed=9), chain(x, seed=9))
    assert np.array_equal(chain.seeded(9)(x), expected)  # a seeded chain is a complete recipe
    assert np.array_equal(Chain((rot, rain), seeds=(5, 6))(x), rain(rot(x, seed=5), seed=6))
    assert Chain.from_json(json.loads(json.dumps(chain.seeded(9).to_json()))) == chain.seeded(9)
    assert np.allclose(Chain((rot, rain, tr)).matrix(30, 40), tr.matrix(30, 40) @ rot.matrix(30, 40))
    assert Chain((rain, get("fog", severity=0.5))).matrix(30, 40) is None
    assert chain.valid and chain.affine_count == 1
    two = Chain((rot, chain, tr))  # nested chains flatten
    assert len(two) == 4 and two.affine_count == 3 and not two.valid
    with pytest.raises(ConfigError, match="at most 1"):
        two.check_valid()
    assert Chain((get("rotation"), tr)).valid  # an identity rotation does not count
    assert Chain((get("hflip", flip=1), get("hflip", flip=1))).mirrors_horizontally is False
    assert Chain.from_json(json.loads(json.dumps(two.to_json()))) == two
    assert two.name == "rotation+rotation+rain+translation"


# --- points and boxes -------------------------------------------------------------------------------

def test_map_points_matches_opencv_transform():
    t = get("rotation", degrees=23)
    pts = np.array([[0.0, 0.0], [10.5, 3.0], [39.0, 29.0]])
    m = t.matrix(30, 40)
    ref = cv2.transform(pts[None].astype(np.float64), m[:2])[0]
    assert np.allclose(map_points(pts, m), ref)
    assert np.allclose(map_points(pts, t, frame_size=(30, 40)), ref)
    assert np.array_equal(map_points(pts, None), pts)


def test_map_boxes_uses_pixel_edges():
    boxes = np.array([[10.0, 5.0, 20.0, 15.0]])
    assert map_boxes(boxes, get("hflip", flip=1), frame_size=(40, 100)).tolist() == [[80.0, 5.0, 90.0, 15.0]]
    assert map_boxes(boxes, get("translation", tx=3, ty=-2), (40, 100)).tolist() == [[13.0, 3.0, 23.0, 13.0]]
    zoom = map_boxes([[40.0, 15.0, 60.0, 25.0]], get("scale", factor=2.0), (40, 100))  # about (50, 20)
    assert np.allclose(zoom, [[30.0, 10.0, 70.0, 30.0]])
    gone = map_boxes(boxes, get("translation", tx=200), (40, 100))[0]
    assert gone[2] - gone[0] == 0  # left the frame: zero area, still in place in the list
    square = map_boxes([[0, 0, 10, 10]], get("rotation", degrees=45), (100, 100), clip=False)[0]
    assert square[2] - square[0] == pytest.approx(10 * math.sqrt(2))


# --- errors -------------------------------------------------------------------------------------------

def test_unknown_names_and_parameters_suggest_the_right_one():
    with pytest.raises(ConfigError, match="unknown transform 'fgo'; did you mean 'fog'"):
        get("fgo")
    with pytest.raises(ConfigError, match="fog has no parameter 'visibility'.*'visibility_m'.*its parameters are"):
        get("fog", visibility=50)
    with pytest.raises(ConfigError, match="must be odd"):
        get("blur_gaussian", k=4)
    with pytest.raises(ConfigError, match="whole number"):
        get("blur_box", k=2.5)
    with pytest.raises(ConfigError, match=r"severity=1.5 must be a number in \[0, 1\]"):
        get("rain", severity=1.5)
    with pytest.raises(ConfigError, match="name"):
        from_dict({"params": {}})


def test_bad_images_and_seeds_are_refused():
    t = get("fog", severity=0.5)
    with pytest.raises(InputError, match="uint8"):
        t(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"\(N, H, W, 3\)"):
        t(np.zeros((1, 4, 4, 4), np.uint8))
    with pytest.raises(InputError, match="numpy array"):
        t([[0, 0, 0]])
    with pytest.raises(ConfigError, match="seed"):
        t(frame(0), seed=-1)
    with pytest.raises(ConfigError, match="seed"):
        Chain((t,))(frame(0), seed="a")
