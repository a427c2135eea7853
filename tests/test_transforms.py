"""Properties of every transform over its parameter space (Hypothesis): identity, shape, determinism,
monotone brightness, fog depth, flips, matrices that match the pixels, and clear refusals."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from deeptest_iot.errors import ConfigError
from deeptest_iot.transforms import REGISTRY, Transform, get, map_points

NAMES = list(REGISTRY)
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def param_strategy(p):
    if p.odd:
        return st.integers((int(p.lo) - 1) // 2, (int(p.hi) - 1) // 2).map(lambda k: 2 * k + 1)
    if p.integer:
        return st.integers(int(p.lo), int(p.hi))
    return st.floats(p.lo, p.hi, allow_nan=False)


def transform_strategy(names=NAMES):
    def build(name):
        params = st.fixed_dictionaries({p.name: param_strategy(p) for p in REGISTRY[name].params})
        return params.map(lambda d: Transform(name, d))
    return st.sampled_from(names).flatmap(build)


def images(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


sizes = st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40))


@pytest.mark.parametrize("name", NAMES)
def test_severity_zero_is_the_identity(name):
    for n, h, w in [(2, 1, 1), (1, 1, 7), (3, 17, 5), (2, 66, 200)]:
        x = images(n, h, w, seed=h * w)
        y = get(name, severity=0.0)(x, seed=3)
        assert y is not x and np.array_equal(y, x)
    assert get(name, severity=0.0).severity == 0.0
    assert get(name).is_identity


@SOME
@given(t=transform_strategy(), size=sizes, seed=st.integers(0, 2**32))
def test_any_in_range_value_keeps_shape_and_dtype_at_any_size(t, size, seed):
    x = images(*size, seed=seed % 1000)
    before = x.copy()
    y = t(x, seed=seed)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert np.array_equal(x, before), "the input batch must not be modified"
    single = t(x[0], seed=seed)  # one (H, W, 3) frame in, one frame out
    assert single.shape == x.shape[1:]


@pytest.mark.parametrize("name", NAMES)
def test_every_transform_runs_at_full_severity_on_1x1_and_thin_frames(name):
    t = get(name, severity=1.0)
    for shape in [(1, 1, 1, 3), (2, 1, 9, 3), (1, 9, 1, 3), (0, 5, 5, 3), (1, 2, 2, 3)]:
        x = np.full(shape, 200, np.uint8)
        assert t(x, seed=0).shape == shape


@FEW
@given(t=transform_strategy(), seed=st.integers(0, 2**32))
def test_same_value_and_seed_give_the_same_pixels_batch_by_batch_or_one_by_one(t, seed):
    x = images(3, 23, 31, seed=1)
    a = t(x, seed=seed)
    assert np.array_equal(a, t(x, seed=seed))
    assert np.array_equal(a, Transform(t.name, t.params)(x, seed=seed))
    assert np.array_equal(a, t(x, seed=np.random.default_rng(seed)))
    for i in range(3):  # an image's pixels do not depend on its batch neighbours
        assert np.array_equal(a[i], t(x[i:i + 1], seed=seed)[0])


@pytest.mark.parametrize("name", ["rain", "snow", "shadow", "gaussian_noise", "salt_pepper", "dead_pixels",
                                  "lens_dirt"])
def test_random_patterns_come_from_the_seed(name):
    x = np.full((2, 66, 200, 3), 120, np.uint8)
    t = get(name, severity=0.7)
    a = t(x, seed=1)
    assert np.array_equal(a, t(x, seed=1))
    assert np.array_equal(a[1], t(x[1:], seed=1)[0])
    assert not np.array_equal(a, t(x, seed=2))


@SOME
@given(d1=st.floats(-100, 100), d2=st.floats(-100, 100), seed=st.integers(0, 1000))
def test_brightness_raises_mean_intensity_monotonically(d1, d2, seed):
    lo, hi = sorted((d1, d2))
    x = images(2, 12, 16, seed=seed)
    m_lo = get("brightness", delta=lo)(x).mean()
    m_hi = get("brightness", delta=hi)(x).mean()
    assert m_lo <= m_hi
    if hi - lo >= 1:  # a random image is not saturated everywhere, so the mean strictly rises
        assert m_lo < m_hi


def _row_contrast(img, rows):
    return float(img[:, rows].astype(np.float64).std())


@FEW
@given(s1=st.floats(0, 1), s2=st.floats(0, 1), horizon=st.floats(0.1, 0.6))
def test_fog_lowers_contrast_with_severity_and_more_near_the_horizon(s1, s2, horizon):
    assume(abs(s1 - s2) > 0.05)
    lo, hi = sorted((s1, s2))
    h = 120
    x = images(1, h, 160, seed=5)
    y_h = int(horizon * h)
    near_horizon = slice(y_h + 1, y_h + 6)
    bottom = slice(h - 5, h)
    light, dense = get("fog", severity=lo, horizon=horizon)(x), get("fog", severity=hi, horizon=horizon)(x)
    for rows in (near_horizon, bottom):
        assert _row_contrast(dense, rows) <= _row_contrast(light, rows) + 1e-9
    if hi >= 0.3:  # visibility under 2.7 km (log scale from 20 km at 0 to 25 m at 1): measurable
        assert _row_contrast(dense, near_horizon) < _row_contrast(dense, bottom)
        assert _row_contrast(dense, bottom) < _row_contrast(x, bottom)


@FEW
@given(size=sizes, seed=st.integers(0, 1000))
def test_flip_twice_is_the_identity(size, seed):
    x = images(*size, seed=seed)
    flip = get("hflip", flip=1)
    assert np.array_equal(flip(flip(x)), x)
    assert np.array_equal(flip(x), x[:, :, ::-1])


GEOMETRIC = [n for n, s in REGISTRY.items() if s.kind == "geometric"]


def _landing_error(t, x0, y0, h=121, w=161, sigma=1.5):
    """Distance between where the matrix sends (x0, y0) and where a smooth mark there lands
    (intensity centroid), or None when the mark would be cut by the frame edge."""
    m = t.matrix(h, w)
    (mx, my), = map_points([[x0, y0]], m)
    margin = 4 * sigma * max(1.0, abs(np.linalg.det(m[:2, :2])) ** 0.5) + 2
    if not (margin <= mx <= w - 1 - margin and margin <= my <= h - 1 - margin):
        return None
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.zeros((1, h, w, 3), np.uint8)
    img[0, :, :, 1] = np.rint(255 * np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma ** 2)))
    out = t(img)[0, :, :, 1].astype(np.float64)
    cx, cy = (out * xs).sum() / out.sum(), (out * ys).sum() / out.sum()
    return math.hypot(cx - mx, cy - my)


# Bilinear warping moves a mark's centroid by < 0.05 px; 0.25 px still catches off-by-one and
# half-pixel-centre mistakes in a matrix.
TOLERANCE = 0.25


@SOME
@given(t=transform_strategy(GEOMETRIC), px=st.floats(0.2, 0.8), py=st.floats(0.2, 0.8))
def test_the_reported_matrix_maps_a_marked_pixel_to_where_it_lands(t, px, py):
    err = _landing_error(t, px * 161, py * 121)
    assume(err is not None)
    assert err <= TOLERANCE, t


@pytest.mark.parametrize("name", GEOMETRIC)
@pytest.mark.parametrize("severity", [0.1, 0.5, 1.0])
def test_matrix_matches_pixels_at_each_severity(name, severity):
    t = get(name, severity=severity)
    points = [(x, y) for x in (60.3, 80.0, 95.5) for y in (50.0, 60.7, 70.2)] + [(25.5, 8.5)]
    errors = [_landing_error(t, x, y) for x, y in points]
    errors = [e for e in errors if e is not None]
    assert errors, "no test point stayed in the frame"
    assert max(errors) <= TOLERANCE


@SOME
@given(data=st.data(), name=st.sampled_from(NAMES))
def test_a_parameter_outside_its_range_is_refused_clearly(data, name):
    spec = REGISTRY[name]
    p = data.draw(st.sampled_from(spec.params))
    above = data.draw(st.booleans())
    gap = data.draw(st.sampled_from([1, 2, 10, 1000]))
    bad = p.hi + gap if above else p.lo - gap
    with pytest.raises(ConfigError) as err:
        get(name, **{p.name: bad})
    msg = str(err.value)
    assert name in msg and p.name in msg and "range" in msg and f"{p.hi:g}" in msg


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "3", None, True])
def test_non_numbers_are_refused(bad):
    with pytest.raises(ConfigError, match="fog: visibility_m"):
        get("fog", visibility_m=bad)
