"""Weather as code: fog, rain and snow from physics on a depth model of the frame; cast shadows and
sun glare.

Fog, rain and snow see the frame through ``depth``: a camera ``camera_height_m`` above a flat road,
with the horizon at ``horizon`` and a vertical field of view ``vfov_deg`` (parameters of every
weather transform). Units are physical: visibility in metres, rain and snowfall rates in mm/h (of
water), wind in m/s, vehicle speed in km/h, exposure in ms, time in seconds. ``docs/weather.md``
has the equations, the severity mappings and pictures.

* fog: Koschmieder's law per pixel, I = J t + A (1 - t), t = exp(-beta d), beta = 3.912 / visibility
  (less the clear air the frame already shows), d from the depth model, the sky at ``SKY_M``.
* rain: Marshall-Palmer drops falling at their terminal speed (``particles``) leave streaks whose
  length, width, opacity and slant come from size, depth, wind, vehicle speed and exposure; the
  drops' extinction veils the distance; the sky is overcast; the road is wet (``wet``); optional
  drops on the lens.
* snow: Gunn-Marshall flakes drifting and swaying at about 1 m/s; large and defocused near the
  lens, streaked at speed; a white veil from the snowfall rate; snow settling on the road's edges.

Random patterns come from one key drawn from the seed, so the same (parameters, seed) is the same
storm, and ``t`` (seconds since the storm began) advances it: drops fall, flakes drift, fog and
the road stay. Everything is computed once per call and shared by the batch (per horizon, see
``depth.horizon_groups``), then blended in fixed point.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from . import particles as pt
from .batch import LEVELS, blend, blend_mask, chunk_size, soft_grid, soften, to_levels
from .core import Param, TransformSpec, register
from .depth import (DEFAULT_CAMERA_HEIGHT_M, DEFAULT_VFOV_DEG, FAR_M, SKY_M,
                    geometry_params, ground_coordinates, horizon_groups, row_range, sky_levels)
from .scales import LateParam, LogParam, PowerParam
from .wet import ground_noise, lens_drops, wet_road

# --- shared kernels ------------------------------------------------------------------------------

#: Koschmieder's constant: visibility is where contrast falls to 2%, exp(-3.912) = 0.02.
KOSCHMIEDER = 3.912
#: The visibility (m) of the clear air the frame already shows: fog adds extinction on top of it.
CLEAR_VISIBILITY_M = 20000.0


def added_extinction(visibility_m: float) -> float:
    """beta (1/m) that turns the frame's clear air into air of ``visibility_m``: 3.912 (1/V - 1/V_clear)."""
    return max(0.0, KOSCHMIEDER * (1.0 / visibility_m - 1.0 / CLEAR_VISIBILITY_M))


def storm_key(rng: np.random.Generator) -> int:
    """The one number a storm's random patterns come from (the first draw from the seed)."""
    return int(rng.integers(0, 2**31 - 1))


#: Static textures (puddles, snow on the road, lens drops) come from one of this many patterns, picked
#: by the storm key: they are cached per pattern and frame size, so a campaign drawing a new seed per
#: call does not rebuild them (the falling drops and flakes are new for every key).
TEXTURES = 16


def texture_key(key: int) -> int:
    return key % TEXTURES


def row_means(batch: np.ndarray) -> np.ndarray:
    """(N, H, 3) float64: the mean colour of every row of every image (OpenCV's area resize to one
    column, so to within half a grey level)."""
    n, h, w, _ = batch.shape
    m = cv2.resize(batch.reshape(n * h, w, 3), (1, n * h), interpolation=cv2.INTER_AREA)
    return m.reshape(n, h, 3).astype(np.float64)


def ambient(rows: np.ndarray, top: float = 0.45) -> np.ndarray:
    """(N, 3): the colour of the brightest band of rows in the top ``top`` of each image (the sky, or
    what lights the scene when no sky is in view): the light drops refract and fog scatters.
    ``rows`` is ``row_means(batch)``."""
    n, h, _ = rows.shape
    r = max(1, int(round(top * h)))
    rows = rows[:, :r]
    k = max(1, r // 6)
    if r > k:
        c = np.cumsum(rows, axis=1)
        rows = np.concatenate([c[:, k - 1:k], c[:, k:] - c[:, :-k]], axis=1) / k  # bands of k rows
    luma = rows @ np.array([0.299, 0.587, 0.114])
    return rows[np.arange(n), luma.argmax(axis=1)]


def _chunks(x: np.ndarray):
    """Slices of the batch that keep a uint16 copy of each in about 1 MB (cache-sized work)."""
    step = chunk_size(x)
    for i in range(0, len(x), step):
        yield slice(i, i + step)


def row_blend(x: np.ndarray, weight: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``x * weight[y] + offset[i, y]``: x (N, H, W, 3) uint8, weight (H,) in [0, 1] shared by the
    batch, offset (N, H, 3) grey levels per image and row, with weight + offset / 255 <= 1. 8.8 fixed
    point, in cache-sized chunks."""
    n, h, w, c = x.shape
    w16 = np.rint(np.clip(weight, 0.0, 1.0) * 256.0)
    o16 = np.minimum(np.rint(np.clip(offset, 0.0, 255.0) * 256.0), 65280.0 - 255.0 * w16[None, :, None]) + 128.0
    w16 = w16.astype(np.uint16)[None, :, None]
    o16 = o16.astype(np.uint16)
    flat = x.reshape(n, h, w * c)
    out = np.empty_like(flat)
    for sl in _chunks(x):
        acc = np.multiply(flat[sl], w16, dtype=np.uint16)
        part = o16[sl]
        acc += cv2.resize(part.reshape(-1, 1, c), (w, len(part) * h),
                          interpolation=cv2.INTER_NEAREST).reshape(len(part), h, w * c)  # RGB along the row
        acc >>= 8
        out[sl] = acc
    return out.reshape(x.shape)


def overlay(x: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``x (1 - a) + a colour[i]``: a = mask / 255 (an (H, W) uint8 mask shared by the batch), colour
    (N, 3) per image or (3,) for all. 8.8 fixed point, in cache-sized chunks, only on the rows the
    mask touches."""
    n, h, w, c = x.shape
    rows = np.flatnonzero(mask.any(axis=1))
    out = x.copy()
    if not len(rows):
        return out
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    a16 = cv2.LUT(mask[r0:r1], np.rint(LEVELS * 256.0).astype(np.uint16))  # in [0, 256]
    a16 = cv2.cvtColor(a16, cv2.COLOR_GRAY2RGB).reshape(r1 - r0, w * c)
    inv = np.uint16(256) - a16
    col = np.clip(np.rint(np.asarray(colour, np.float64)), 0, 255).astype(np.uint16)
    col = np.broadcast_to(col.reshape(-1, 3), (n, 3))
    crow = np.tile(col, (1, w))[:, None, :]  # (n, 1, w*3)
    flat = x.reshape(n, h, w * c)[:, r0:r1]
    dst = out.reshape(n, h, w * c)
    for sl in _chunks(x):
        acc = np.multiply(flat[sl], inv, dtype=np.uint16)
        acc += a16 * crow[sl]
        acc += np.uint16(128)
        acc >>= 8
        dst[sl, r0:r1] = acc
    return out


def desaturate(x: np.ndarray, amount: float) -> np.ndarray:
    """``x (1 - amount) + amount * luma``: colours fade under an overcast sky (OpenCV, per pixel)."""
    if amount <= 0:
        return x
    n, h, w, c = x.shape
    flat = x.reshape(n * h, w, c)
    grey = cv2.cvtColor(cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(flat, 1.0 - amount, grey, amount, 0.0).reshape(x.shape)


def _geometry(p: dict) -> tuple[float, float, float]:
    return p["horizon"], p["vfov_deg"], p["camera_height_m"]


# --- fog -----------------------------------------------------------------------------------------

#: Visibility (m) at severity 1 and its log-linear mapping from the clear air at severity 0.
FOG_VISIBILITY_1 = 25.0


#: The horizon is known to a few percent of the height at best: the transmission of a row is averaged
#: over horizons spread around the given one with this standard deviation (fractions of the height),
#: which softens the step from road to far plane that a misplaced horizon would otherwise draw.
HORIZON_SPREAD = 0.02
_SPREAD = np.linspace(-2.0, 2.0, 9)
_SPREAD_W = np.exp(-0.5 * _SPREAD ** 2) / np.exp(-0.5 * _SPREAD ** 2).sum()


def fog_transmission(h: int, visibility_m: float, horizon: float, vfov_deg: float = DEFAULT_VFOV_DEG,
                     camera_height_m: float = DEFAULT_CAMERA_HEIGHT_M) -> np.ndarray:
    """(h,) t = exp(-beta d) per row for the road and the far plane (the sky has its own, see ``_fog``),
    averaged over the horizon's uncertainty (``HORIZON_SPREAD``)."""
    beta = added_extinction(visibility_m)
    t = np.zeros(h)
    for dz, wgt in zip(_SPREAD * HORIZON_SPREAD, _SPREAD_W):
        t += wgt * np.exp(-beta * row_range(h, float(np.clip(horizon + dz, 0.0, 1.0)), vfov_deg, camera_height_m))
    return t


def _fog(batch, p, rng):
    n, h, w, _ = batch.shape
    beta = added_extinction(p["visibility_m"])
    airlight = float(p["airlight"])
    _, vfov, cam = _geometry(p)
    out = np.empty_like(batch)
    t_sky = math.exp(-beta * SKY_M)
    for hz, sel in horizon_groups(batch, p["horizon"], bool(p["auto_horizon"])):
        x = batch[sel]
        t = fog_transmission(h, p["visibility_m"], hz, vfov, cam)
        res = blend(x, t[:, None, None], (airlight * (1.0 - t))[:, None, None])
        y_h = min(h, max(0, int(math.floor(hz * h + 0.5))))
        if y_h > 0 and t_sky < 1.0:
            # Above the horizon a pixel that looks like sky (score s) is at SKY_M, not on the far
            # plane: t = t_far - s (t_far - t_sky). Starting from the far plane's result r, that is
            # r + a (A - r) with a = s (1 - t_sky / t_far): one more blend toward the airlight.
            m = len(res)
            a = sky_levels(x, y_h).astype(np.float32)
            a *= ((1.0 - t_sky / np.maximum(t[:y_h], 1e-12)) / 255.0).astype(np.float32)[None, :, None]
            top = np.ascontiguousarray(res[:, :y_h]).reshape(m * y_h, w, 3)
            a = a.reshape(m * y_h, w)
            res[:, :y_h] = cv2.blendLinear(top, np.full_like(top, int(round(airlight))), 1.0 - a, a).reshape(m, y_h, w, 3)
        out[sel] = res
    return out


# --- rain ----------------------------------------------------------------------------------------

#: Marshall-Palmer drop sizes: N(D) = N0 exp(-Lambda D) per m^3 per mm, Lambda = 4.1 R^-0.21 per mm.
MP_N0 = 8000.0
RAIN_D_MIN, RAIN_D_MAX = 0.5, 6.0
#: Rain rate (mm/h) at severity 1 ("violent" rain starts at 50 mm/h); severity s gives s^2 of it.
RAIN_RATE_1 = 50.0
#: Streaks are drawn this many times more opaque than a drop of that size leaves on the sensor in
#: the exposure (see ``particles``): daylight rain is nearly invisible to a camera, the rain a driver
#: notices is the bright streaks against dark backgrounds. Tuned by eye on udacity-dev frames.
RAIN_GAIN = 4.0
#: Overcast: at the heaviest rain the frame loses these shares of its contrast, light and colour.
RAIN_FLATTEN, RAIN_DIM, RAIN_GREY = 0.3, 0.25, 0.5


def mp_lambda(rate_mmh: float) -> float:
    return 4.1 * max(rate_mmh, 1e-6) ** -0.21


def rain_extinction(rate_mmh: float) -> float:
    """beta (1/m) of rain: drops much larger than the wavelength remove twice their cross-section
    (extinction efficiency 2), integrated over Marshall-Palmer: pi N0 / Lambda^3 (in mm^2/m^3 -> 1/m)."""
    if rate_mmh <= 0:
        return 0.0
    return math.pi * MP_N0 / mp_lambda(rate_mmh) ** 3 * 1e-6


def terminal_speed_rain(d_mm: np.ndarray) -> np.ndarray:
    """Terminal fall speed (m/s) of a drop of diameter d mm (Atlas et al. 1973)."""
    return np.maximum(0.1, 9.65 - 10.3 * np.exp(-0.6 * d_mm))


@functools.lru_cache(maxsize=64)
def rain_species(rate_mmh: float) -> pt.Species:
    lam = mp_lambda(rate_mmh)

    def count(d_min):
        d_min = max(d_min, RAIN_D_MIN)
        if d_min >= RAIN_D_MAX:
            return 0.0
        return MP_N0 / lam * (math.exp(-lam * d_min) - math.exp(-lam * RAIN_D_MAX))

    def size(u, d_min):  # inverse CDF of the exponential cut to [d_min, RAIN_D_MAX]
        d_min = np.maximum(d_min, RAIN_D_MIN)
        span = -np.expm1(-lam * np.maximum(RAIN_D_MAX - d_min, 0.0))
        return d_min - np.log1p(-u * span) / lam

    return pt.Species("rain", count, size, terminal_speed_rain, z_near=0.5, z_far=12.0, layers=5,
                      gain=RAIN_GAIN, max_opacity=0.6, area=False, gust=0.15, max_count=2000)


def _rain_gloom(rate_mmh: float) -> float:
    return min(1.0, math.sqrt(max(rate_mmh, 0.0) / RAIN_RATE_1))


def _rain(batch, p, rng):
    key = storm_key(rng)
    n, h, w, _ = batch.shape
    _, vfov, cam = _geometry(p)
    rate = p["rate_mmh"]
    gloom = _rain_gloom(rate)
    c, d = RAIN_FLATTEN * gloom, RAIN_DIM * gloom
    rows = row_means(batch)
    amb = ambient(rows)
    mean = rows.mean(axis=1)  # (n, 3)
    beta = rain_extinction(rate)
    out = np.empty_like(batch)
    grey = amb @ np.array([0.299, 0.587, 0.114])
    amb = amb + RAIN_GREY * gloom * (grey[:, None] - amb)  # an overcast sky is grey
    for hz, sel in horizon_groups(batch, p["horizon"], bool(p["auto_horizon"])):
        x = desaturate(batch[sel], RAIN_GREY * gloom)
        t = np.exp(-beta * row_range(h, hz, vfov, cam))
        veil = amb[sel] * (1.0 - d)
        weight = (1.0 - c) * (1.0 - d) * t
        offset = (c * (1.0 - d) * mean[sel])[:, None, :] * t[None, :, None] + veil[:, None, :] * (1.0 - t)[None, :, None]
        if c or d or beta:
            x = row_blend(x, weight, offset)
        if p["wetness"] > 0:
            x = wet_road(x, hz, p["wetness"], vfov, cam, texture_key(key))
        out[sel] = x
    if rate > 0:
        motion = pt.Motion(p["wind_ms"], p["speed_kmh"] / 3.6, p["exposure_ms"] / 1000.0, p["t"])
        seg = pt.segments(rain_species(float(rate)), key, h, w, vfov, motion, 1.0)
        mask = pt.render(seg, h, w)
        if mask.any():
            colour = np.clip(amb * (1.0 - d) + 35.0, 0, 255)  # drops refract the bright sky
            out = overlay(out, mask, colour)
    if p["lens_drops"] > 0:
        out = lens_drops(out, p["lens_drops"], texture_key(key))
    return out


def precipitation_mask(name: str, params: dict, seed, h: int, w: int) -> np.ndarray:
    """The (h, w) uint8 opacity mask of the falling drops or flakes that transform ``name`` ("rain" or
    "snow") with ``params`` (all of them, as ``Transform.params``) draws for ``seed`` on an (h, w)
    frame: for tests and pictures of the storm alone."""
    from .batch import as_rng

    key = storm_key(as_rng(seed))
    species = rain_species(float(params["rate_mmh"])) if name == "rain" else snow_species(float(params["rate_mmh"]))
    motion = pt.Motion(params["wind_ms"], params["speed_kmh"] / 3.6, params["exposure_ms"] / 1000.0, params["t"])
    return pt.render(pt.segments(species, key, h, w, params["vfov_deg"], motion), h, w)


# --- snow ----------------------------------------------------------------------------------------

#: Gunn-Marshall (1958) snow: N(D) = N0 exp(-Lambda D), N0 = 3800 R^-0.87 per m^3 per mm, Lambda =
#: 2.55 R^-0.48 per mm, D the melted diameter; a flake is SNOW_FLUFF times wider than its melt drop.
SNOW_FLUFF = 3.0
SNOW_D_MAX = 15.0
#: Snowfall (mm/h of water) at severity 1 (very heavy snow, some 5 cm of snow an hour); s^2 of it at s.
SNOW_RATE_1 = 5.0
#: Visibility in falling snow: V = SNOW_V1 * R^-SNOW_V_EXP metres (a fit through the US weather
#: service's classes: light snow above 1 km, heavy under 400 m; real storms scatter by 3x-10x).
SNOW_V1, SNOW_V_EXP = 566.0, 0.82
SNOW_GAIN = 3.0
SNOW_WHITE = np.array([236.0, 240.0, 246.0])
#: Where tyres keep the road clear: two tracks per lane, TRACK_OFFSET_M either side of each lane's
#: centre, on a two-lane road with right-hand traffic, the camera over the centre of the right lane
#: (metres, + = right). Snow lies everywhere else, thinning toward the tracks.
LANE_CENTRES_M = (0.0, -3.6)
TRACK_OFFSET_M = 0.8
TRACK_HALF_WIDTH_M = 0.3
def snow_visibility(rate_mmh: float) -> float:
    return SNOW_V1 * max(rate_mmh, 1e-6) ** -SNOW_V_EXP


def terminal_speed_snow(d_mm: np.ndarray) -> np.ndarray:
    """Fall speed (m/s) of an aggregate snowflake of diameter d mm (Locatelli and Hobbs 1974)."""
    return 0.8 * np.maximum(d_mm, 0.1) ** 0.16


@functools.lru_cache(maxsize=64)
def snow_species(rate_mmh: float) -> pt.Species:
    r = max(rate_mmh, 1e-6)
    n0, lam = 3800.0 * r ** -0.87, 2.55 * r ** -0.48
    lam_f = lam / SNOW_FLUFF  # per mm of flake diameter

    def count(d_min):
        if d_min >= SNOW_D_MAX:
            return 0.0
        return n0 / lam * (math.exp(-lam_f * d_min) - math.exp(-lam_f * SNOW_D_MAX))

    def size(u, d_min):
        span = -np.expm1(-lam_f * np.maximum(SNOW_D_MAX - d_min, 0.0))
        return d_min - np.log1p(-u * span) / lam_f

    return pt.Species("snow", count, size, terminal_speed_snow, z_near=0.4, z_far=15.0, layers=6,
                      gain=SNOW_GAIN, max_opacity=0.95, area=True, flutter=0.35, flutter_period=1.4,
                      gust=0.3, max_count=2000, min_width=0.4)


@functools.lru_cache(maxsize=64)
def snow_cover(key: int, h: int, w: int, horizon: float, vfov_deg: float, camera_height_m: float,
               amount: float) -> np.ndarray:
    """(h, w) uint8 opacity of snow lying on the ground below the horizon.

    Tyres keep two tracks per lane clear (``LANE_CENTRES_M``, ``TRACK_OFFSET_M``): at ``amount`` 1
    only the tracks (``TRACK_HALF_WIDTH_M``) are dark; as ``amount`` falls the cleared band around
    each track widens (by up to 1.5 m) until snow lies only on the verges and the road's edges.
    The outline is patchy (ground noise) and fades in over the rows just below the horizon, where
    the flat-road model is least right.
    """
    z, x = ground_coordinates(h, w, horizon, vfov_deg, camera_height_m)
    coarse = ground_noise(key, h, w, horizon, vfov_deg, camera_height_m, 1.0, 1)
    fine = ground_noise(key, h, w, horizon, vfov_deg, camera_height_m, 0.3, 2)
    noise = 0.7 * coarse + 0.3 * fine - 0.5
    tracks = [c + s * TRACK_OFFSET_M for c in LANE_CENTRES_M for s in (-1, 1)]
    with np.errstate(invalid="ignore"):
        d = np.abs(x - tracks[0])  # metres to the nearest track
        for c in tracks[1:]:
            np.minimum(d, np.abs(x - c), out=d)
        clear = TRACK_HALF_WIDTH_M + 1.5 * (1.0 - amount)
        cover = np.clip((d - clear) / 0.35 + 1.6 * noise + 0.5, 0.0, 1.0)
    cover = cover * cover * (3 - 2 * cover) * (0.6 + 0.35 * amount)
    below = np.clip((np.arange(h) + 0.5 - horizon * h) / max(1.0, 0.08 * h), 0.0, 1.0)
    cover = np.where(np.isfinite(z)[:, None], np.nan_to_num(cover), 0.0) * below[:, None]
    m = to_levels(cover)
    m.setflags(write=False)
    return m


def _snow(batch, p, rng):
    key = storm_key(rng)
    n, h, w, _ = batch.shape
    _, vfov, cam = _geometry(p)
    rate = p["rate_mmh"]
    rows = row_means(batch)
    amb = ambient(rows)
    light = np.clip((amb @ np.array([0.299, 0.587, 0.114])) / 190.0, 0.65, 1.0)[:, None]  # (n, 1)
    white = SNOW_WHITE[None, :] * light
    beta = added_extinction(snow_visibility(rate)) if rate > 0 else 0.0
    gloom = min(1.0, math.sqrt(rate / SNOW_RATE_1))
    c = 0.25 * gloom
    mean = rows.mean(axis=1)
    out = np.empty_like(batch)
    for hz, sel in horizon_groups(batch, p["horizon"], bool(p["auto_horizon"])):
        x = desaturate(batch[sel], 0.3 * gloom)
        t = np.exp(-beta * row_range(h, hz, vfov, cam))
        weight = (1.0 - c) * t
        offset = (c * mean[sel])[:, None, :] * t[None, :, None] + (white[sel] * 0.97)[:, None, :] * (1.0 - t)[None, :, None]
        if c or beta:
            x = row_blend(x, weight, offset)
        if p["accumulation"] > 0:
            x = overlay(x, snow_cover(texture_key(key), h, w, float(hz), float(vfov), float(cam), float(p["accumulation"])),
                        white[sel])
        out[sel] = x
    if rate > 0:
        motion = pt.Motion(p["wind_ms"], p["speed_kmh"] / 3.6, p["exposure_ms"] / 1000.0, p["t"])
        seg = pt.segments(snow_species(float(rate)), key, h, w, vfov, motion, 1.0)
        mask = pt.render(seg, h, w)
        if mask.any():
            out = overlay(out, mask, np.minimum(white * 1.03, 255))
    return out


# --- shadow and glare ------------------------------------------------------------------------------

def shadow_levels(h: int, w: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Shadow opacity as 8-bit levels (h, w): a slanted band across the lower part of the frame (the
    shadow of a tree, a building or a bridge on the road), over a random span, with a soft penumbra."""
    top_l, top_r = rng.uniform(0.5, 0.85, 2) * h
    thick_l, thick_r = rng.uniform(0.08, 0.3, 2) * h
    span = rng.uniform(0.5, 1.0) * w
    x0 = rng.uniform(-0.1 * w, w - span + 0.1 * w)
    x1 = x0 + span
    quad = np.array([[x0, top_l], [x1, top_r], [x1, top_r + thick_r], [x0, top_l + thick_l]])
    sigma = p["softness"] * w
    hs, ws = soft_grid(h, w, sigma, min(thick_l, thick_r, span))
    sx, sy = ws / w, hs / h
    quad = (quad + 0.5) * (sx, sy) - 0.5
    # cv2 fills the pixels whose centres lie on the outline too (half a pixel more on every side);
    # on a shrunk canvas pull the outline in so that the extra half pixel is half a full-size one.
    quad += np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * (0.5 * (1 - sx), 0.5 * (1 - sy))
    canvas = np.zeros((hs, ws), np.uint8)
    cv2.fillPoly(canvas, [np.rint(quad * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return soften(canvas, h, w, sigma)


def shadow_mask(h: int, w: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    """Shadow opacity (h, w) in [0, 1] (``shadow_levels`` / 255)."""
    return shadow_levels(h, w, p, rng).astype(np.float32) / np.float32(255)


def _shadow(batch, p, rng):
    h, w = batch.shape[1:3]
    m = shadow_levels(h, w, p, rng)
    return blend_mask(batch, m, 1.0 - 0.75 * p["strength"] * LEVELS, np.zeros(256), (0, 0, 0))


GLARE_COLOR = np.array([255.0, 248.0, 230.0], np.float32)


def glare_mask(h: int, w: int, p: dict) -> np.ndarray:
    """Glare opacity (h, w): a bright core around the sun, a veil over the frame, two lens ghosts."""
    return _glare_levels(h, w, p["intensity"], p["x"], p["y"], p["radius"]).astype(np.float32) / np.float32(255)


@functools.lru_cache(maxsize=32)
def _glare_levels(h: int, w: int, intensity: float, x: float, y: float, radius: float) -> np.ndarray:
    """The glare mask as 8-bit levels. Every term is a Gaussian of the distance to a point, so it is
    the outer product of a column and a row profile; the ghosts are computed in their boxes only."""
    diag = math.hypot(h, w)
    ys = ((np.arange(h, dtype=np.float32) + 0.5) / h) * np.float32(h / diag)  # in frame diagonals
    xs = ((np.arange(w, dtype=np.float32) + 0.5) / w) * np.float32(w / diag)

    def profiles(cx, cy, s2):  # exp(-d^2 / s2) = ey[:, None] * ex[None, :]
        return (np.exp(-np.square(ys - np.float32(cy * h / diag)) / np.float32(s2)),
                np.exp(-np.square(xs - np.float32(cx * w / diag)) / np.float32(s2)))

    sx, sy, rad = x, y, radius
    ey, ex = profiles(sx, sy, rad * rad / 4.0)
    g = np.multiply(ey[:, None], ex[None, :])
    g += np.float32(0.15)
    e1 = np.float32(math.exp(-1.0))
    for t, size, strength in ((0.7, 0.12, 0.25), (1.35, 0.06, 0.3)):  # ghosts on the line to the centre
        ey, ex = profiles(sx + t * (0.5 - sx) * 2, sy + t * (0.5 - sy) * 2, (size * rad) ** 2)
        rows, cols = np.flatnonzero(ey > e1), np.flatnonzero(ex > e1)  # the disc's bounding box
        if len(rows) and len(cols):
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            e = np.multiply(ey[r0:r1, None], ex[None, c0:c1])
            e *= e > e1  # inside the ghost's disc: distance < size * radius
            g[r0:r1, c0:c1] += np.float32(strength) * e
    m = to_levels(g, 255.0 * intensity)
    m.setflags(write=False)  # cached: shared by every call with the same value and size
    return m


def _glare(batch, p, rng):
    h, w = batch.shape[1:3]
    m = _glare_levels(h, w, p["intensity"], p["x"], p["y"], p["radius"])
    return blend_mask(batch, m, 1.0 - LEVELS, LEVELS, GLARE_COLOR)



# --- registry ------------------------------------------------------------------------------------

def _time_params(wind: float) -> tuple[Param, ...]:
    return (
        Param("wind_ms", -25.0, 25.0, wind, unit="m/s", doc="crosswind; + blows to the right"),
        Param("speed_kmh", 0.0, 200.0, 30.0, unit="km/h", doc="vehicle speed: the drops or flakes rush at the camera"),
        Param("exposure_ms", 0.1, 66.0, 8.0, unit="ms", doc="exposure time: streak length"),
        Param("t", 0.0, 1e6, 0.0, unit="s",
              doc="seconds since the storm began: the same seed at t + 0.05 is the next 20 fps frame"),
    )


def _geometry_draw(rng: np.random.Generator) -> dict:
    """Geometry stays at its defaults in random draws (it describes the camera, not the weather)."""
    return {}


def _motion_draw(rng: np.random.Generator, wind_sd: float) -> dict:
    return {"wind_ms": float(np.clip(rng.normal(0.0, wind_sd), -15, 15)),
            "speed_kmh": float(rng.uniform(0.0, 100.0)),
            "exposure_ms": float(math.exp(rng.uniform(math.log(2.0), math.log(20.0)))),
            "t": float(rng.uniform(0.0, 600.0))}


def _fog_random(rng):
    return {"visibility_m": float(math.exp(rng.uniform(math.log(30.0), math.log(3000.0)))),
            "airlight": float(rng.uniform(180.0, 245.0)), **_geometry_draw(rng)}


def _rain_random(rng):
    rate = float(math.exp(rng.uniform(math.log(0.5), math.log(80.0))))
    return {"rate_mmh": rate, "wetness": float(np.clip(0.4 + 0.15 * math.log(rate) + rng.normal(0, 0.1), 0.1, 1.0)),
            "lens_drops": float(rng.uniform(0.02, 0.2)) if rng.random() < 0.3 else 0.0,
            **_motion_draw(rng, 3.0), **_geometry_draw(rng)}


def _snow_random(rng):
    rate = float(math.exp(rng.uniform(math.log(0.1), math.log(8.0))))
    return {"rate_mmh": rate, "accumulation": float(rng.uniform(0.0, 1.0)) if rate > 1.0 else 0.0,
            **_motion_draw(rng, 2.0), **_geometry_draw(rng)}


register(TransformSpec(
    "fog", "weather",
    (LogParam("visibility_m", 5.0, CLEAR_VISIBILITY_M, CLEAR_VISIBILITY_M, identity=CLEAR_VISIBILITY_M,
              extreme=FOG_VISIBILITY_1, unit="m",
              doc=f"meteorological visibility (2% contrast); {CLEAR_VISIBILITY_M:g} = clear air, no fog; "
                  f"severity s gives {CLEAR_VISIBILITY_M:g} * ({FOG_VISIBILITY_1:g}/{CLEAR_VISIBILITY_M:g})^s"),
     Param("airlight", 0.0, 255.0, 225.0, unit="grey level", doc="brightness A of the fog (225: daylight)"),
     *geometry_params()),
    _fog, seeded=False,
    doc="Koschmieder: I = J t + A (1 - t), t = exp(-beta d), beta = 3.912 / visibility_m less the clear "
        f"air's; d: the road below the horizon (camera_height_m / sin(angle below it)), {FAR_M:g} m at and "
        f"above it, {SKY_M / 1000:g} km for pixels that look like sky. Static in time.",
    random_params=_fog_random, random_doc="visibility log-uniform 30-3000 m, airlight 180-245"))

register(TransformSpec(
    "rain", "weather",
    (PowerParam("rate_mmh", 0.0, 200.0, 0.0, identity=0.0, extreme=RAIN_RATE_1, gamma=2.0, unit="mm/h",
                doc=f"rain rate; severity s gives {RAIN_RATE_1:g} s^2 (light < 2.5, heavy > 7.6, violent > 50)"),
     Param("wetness", 0.0, 1.0, 0.0, identity=0.0, extreme=1.0,
           doc="water on the road: darker asphalt and Fresnel reflections (1 = a film everywhere)"),
     Param("lens_drops", 0.0, 0.5, 0.0, doc="share of the lens covered by refracting drops (0 = none)"),
     *_time_params(2.0), *geometry_params()),
    _rain,
    doc="Marshall-Palmer drops at terminal speed as streaks (length from speed x exposure / depth, "
        "slant from wind and vehicle speed, defocused near the lens), their extinction as a veil, an "
        "overcast dim, a wet road mirroring the scene, optional lens drops. Drops fall with t.",
    is_identity=lambda p: p["rate_mmh"] == 0 and p["wetness"] == 0 and p["lens_drops"] == 0,
    random_params=_rain_random,
    random_doc="rate log-uniform 0.5-80 mm/h, wetness rising with the rate, lens drops in 30% of draws, "
               "wind N(0, 3) m/s, speed 0-100 km/h, exposure 2-20 ms, t 0-600 s"))

register(TransformSpec(
    "snow", "weather",
    (PowerParam("rate_mmh", 0.0, 20.0, 0.0, identity=0.0, extreme=SNOW_RATE_1, gamma=2.0, unit="mm/h",
                doc=f"snowfall as melted water; severity s gives {SNOW_RATE_1:g} s^2"),
     LateParam("accumulation", 0.0, 1.0, 0.0, identity=0.0, extreme=1.0, start=0.5,
               doc="snow lying on the road, leaving the tyre tracks: 0 up to severity 0.5, then rising to 1"),
     *_time_params(0.5), *geometry_params()),
    _snow,
    doc="Gunn-Marshall flakes falling about 1 m/s with sway and wind, small and faint far away, "
        "large and defocused near the lens, streaked at speed; a white veil (visibility from the rate); "
        "snow settling on the road beside the tyre tracks. Flakes drift with t.",
    is_identity=lambda p: p["rate_mmh"] == 0 and p["accumulation"] == 0,
    random_params=_snow_random,
    random_doc="rate log-uniform 0.1-8 mm/h, accumulation 0-1 above 1 mm/h, wind N(0, 2) m/s, "
               "speed 0-100 km/h, exposure 2-20 ms, t 0-600 s"))

register(TransformSpec(
    "shadow", "weather",
    (Param("strength", 0.0, 1.0, 0.0, identity=0.0, extreme=1.0,
           doc="fraction of light removed in the shadow is 0.75 strength"),
     Param("softness", 0.0, 0.2, 0.03, doc="penumbra sigma as a fraction of the width")),
    _shadow, doc="A cast shadow: a slanted band across the lower frame darkens the road. "
                 "Its place and shape come from the seed."))

register(TransformSpec(
    "glare", "weather",
    (Param("intensity", 0.0, 1.0, 0.0, identity=0.0, extreme=1.0, doc="opacity of the glare at the sun"),
     Param("x", 0.0, 1.0, 0.75, doc="sun column as a fraction of the width"),
     Param("y", 0.0, 1.0, 0.15, doc="sun row as a fraction of the height"),
     Param("radius", 0.05, 1.0, 0.35, doc="glare radius as a fraction of the frame diagonal")),
    _glare, seeded=False, doc="Sun glare: a bright core, a veil over the whole frame (15% of the intensity) and "
                "two lens ghosts on the line through the centre."))
