"""Water on the road and on the lens: a wet road that mirrors the scene, and refracting lens drops.

Wet road
--------
Below the horizon the road is a ground plane (``depth``). Water fills the pores of the asphalt, which
darkens it (diffuse albedo times ``1 - WET_DARKEN * wetness``), and its film is a mirror whose
reflectance follows Fresnel's law for water (Schlick's approximation, F0 = 0.02): about 0.05 looking
steeply down, 0.6 a few degrees below the horizon. A row looking ``a`` below the horizon mirrors the
row ``a`` above it (a flat mirror reflects a distant scene about the horizon), smeared vertically by
the film's ripples (a box ``REFLECTION_SMEAR`` of the height long), so bright things (sky, lamps,
white cars) leave vertical streaks on the road. Wetness varies over the road in puddles: a smooth
random texture laid on the ground plane (metres, so it is foreshortened with distance).

Lens drops
----------
A drop on the lens or windscreen is a small plano-convex lens far out of focus: it shows a blurred,
upside-down, shrunk view of the scene around it (``DROP_FIELD`` times its own radius), with a dark
rim where light is refracted away and a small highlight. Each drop is an ellipse; the frame inside
it is replaced by that view (``cv2.remap`` of a box-blurred copy of the image), with a soft edge.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from .depth import focal_px, ground_coordinates, row_angles

WET_DARKEN = 0.35
FRESNEL_F0 = 0.02
REFLECTION_SMEAR = 0.06
#: Metres between the random values of the puddle texture on the road.
PUDDLE_SCALE_M = 1.6
DROP_FIELD = 2.5


def fresnel(h: int, horizon: float, vfov_deg: float) -> np.ndarray:
    """(h,) reflectance of a water film for each row below the horizon (0 at and above it)."""
    a = row_angles(h, horizon, vfov_deg)
    cos_i = np.sin(np.clip(a, 0.0, math.pi / 2))
    f = FRESNEL_F0 + (1.0 - FRESNEL_F0) * (1.0 - cos_i) ** 5
    return np.where(a > 0, f, 0.0)


def value_noise(key: int, shape: tuple[int, int], salt: int = 0) -> np.ndarray:
    """A periodic grid of uniform [0, 1) values (the texture sampled by ``ground_noise``)."""
    return np.random.default_rng([int(key), 7919, salt]).random(shape)


@functools.lru_cache(maxsize=64)
def ground_noise(key: int, h: int, w: int, horizon: float, vfov_deg: float, camera_height_m: float,
                 scale_m: float, salt: int = 0) -> np.ndarray:
    """(h, w) float32 smooth noise in [0, 1] laid on the road (bilinear value noise with a grid of
    ``scale_m`` metres); 0.5 at and above the horizon. Read-only, cached."""
    grid = value_noise(key, (64, 64), salt)
    z, x = ground_coordinates(h, w, horizon, vfov_deg, camera_height_m)
    out = np.full((h, w), 0.5, np.float32)
    rows = np.isfinite(z)
    if rows.any():
        gz = np.broadcast_to((z[rows] / scale_m)[:, None], (int(rows.sum()), w))
        gx = x[rows] / scale_m + 32.0
        # Toward the horizon a grid cell shrinks below a pixel: fade the texture to its mean there
        # instead of letting it alias into row-to-row stripes. Rows per cell: scale_m * dZ/dy.
        f = focal_px(h, vfov_deg)
        dy = f * camera_height_m / z[rows]  # rows below the horizon
        rows_per_cell = scale_m * dy * dy / (f * camera_height_m)
        fade = np.clip((rows_per_cell - 1.0) / 3.0, 0.0, 1.0)[:, None]
        out[rows] = 0.5 + (_bilinear_periodic(grid, gz, gx) - 0.5) * fade
    out.setflags(write=False)
    return out


def _bilinear_periodic(grid: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    gh, gw = grid.shape
    y0, x0 = np.floor(gy), np.floor(gx)
    fy, fx = gy - y0, gx - x0
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep: no grid creases
    y0 = np.mod(y0.astype(np.int64), gh)
    x0 = np.mod(x0.astype(np.int64), gw)
    y1, x1 = (y0 + 1) % gh, (x0 + 1) % gw
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bot = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def wet_road(batch: np.ndarray, horizon: float, wetness: float, vfov_deg: float, camera_height_m: float,
             key: int) -> np.ndarray:
    """The batch with a wet road below ``horizon`` (a new array; rows above are copied unchanged)."""
    n, h, w, _ = batch.shape
    out = batch.copy()
    y0 = int(math.floor(horizon * h + 0.5))
    if y0 >= h or wetness <= 0:
        return out
    y0 = max(y0, 0)
    rows = np.arange(y0, h)
    src = np.clip(np.rint(2 * horizon * h - (rows + 0.5) - 0.5).astype(np.int64), 0, h - 1)
    puddles = ground_noise(key, h, w, float(horizon), float(vfov_deg), float(camera_height_m), PUDDLE_SCALE_M)[y0:]
    wet = np.clip(wetness * (0.55 + 0.9 * puddles), 0.0, 1.0)  # (hr, w): drier patches, puddles
    f = fresnel(h, horizon, vfov_deg)[y0:, None] * wet  # reflectance
    keep = (1.0 - WET_DARKEN * wet) * (1.0 - f)  # what is left of the road's own light
    k = 2 * int(round(REFLECTION_SMEAR * h / 2)) + 1
    pad = k // 2
    hr = len(rows)
    # Each image's mirrored rows padded with copies of its end rows, stacked: a vertical box blur of
    # the stack then never mixes two images.
    src = np.concatenate([np.full(pad, src[0]), src, np.full(pad, src[-1])])
    refl = batch[:, src].reshape(n * (hr + 2 * pad), w * 3)
    if k > 1:
        refl = cv2.blur(refl, (1, k), borderType=cv2.BORDER_REPLICATE)
    refl = refl.reshape(n, hr + 2 * pad, w * 3)[:, pad:pad + hr]
    k16 = np.repeat(np.rint(keep * 256).astype(np.uint16), 3, axis=1)  # (hr, w*3)
    f16 = np.repeat(np.rint(f * 256).astype(np.uint16), 3, axis=1)
    own = batch.reshape(n, h, w * 3)[:, y0:]
    dst = out.reshape(n, h, w * 3)
    step = max(1, (1 << 20) // max(1, 2 * own[0].size))
    for i in range(0, n, step):
        acc = np.multiply(own[i:i + step], k16, dtype=np.uint16)
        acc += np.multiply(refl[i:i + step], f16, dtype=np.uint16)
        acc += np.uint16(128)
        acc >>= 8
        dst[i:i + step, y0:] = acc
    return out


# --- lens drops ------------------------------------------------------------------------------------

#: Lens drops are taken from one layout per (texture key, frame size), covering up to this share.
MAX_DROP_COVERAGE = 0.5


@functools.lru_cache(maxsize=64)
def drop_layout(key: int, h: int, w: int) -> tuple[np.ndarray, ...]:
    """(map_x, map_y, alpha, shade, label, covered) of the lens drops of an (h, w) frame.

    Drops (ellipses of lognormal size at random places) are added one after the other until they
    cover ``MAX_DROP_COVERAGE`` of the frame; ``covered[i]`` is the area (px) of the first i + 1.
    ``label`` (int32) says which drop a pixel shows, -1 for none: earlier drops are drawn on top,
    so the drops of a smaller coverage (a prefix of the list) look exactly the same when more are
    added. ``map_x``/``map_y`` (float32) say where each pixel inside a drop samples the blurred
    frame, ``alpha`` (float32 in [0, 1]) how much of the drop's view replaces the frame, ``shade``
    (float32) the drop's brightness factor (dark rim, highlight). Read-only, cached.
    """
    rng = np.random.default_rng([int(key), 104729])
    s = math.sqrt(h * w)
    target = MAX_DROP_COVERAGE * h * w
    radii, covered = [], []
    while (not covered or covered[-1] < target) and len(radii) < 1000:
        r = s * math.exp(rng.normal(math.log(0.035), 0.5))
        radii.append(r)
        covered.append((covered[-1] if covered else 0.0) + math.pi * r * r)
    m = len(radii)
    cx = rng.uniform(0, w, m)
    cy = rng.uniform(0, h, m)
    ratio = rng.uniform(0.75, 1.25, m)
    r_arr = np.array(radii)
    ax_all, ay_all = np.maximum(0.5, r_arr * ratio), np.maximum(0.5, r_arr / ratio)
    label = np.zeros((h, w), np.int32)
    for i in range(m - 1, -1, -1):  # the first drops last: on top
        cv2.ellipse(label, (int(round(cx[i] * 16)), int(round(cy[i] * 16))),
                    (int(round(ax_all[i] * 16)), int(round(ay_all[i] * 16))), 0.0, 0.0, 360.0, int(i + 1), -1,
                    cv2.LINE_8, 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    inside = label > 0
    idx = label[inside] - 1
    ax, ay = ax_all[idx], ay_all[idx]
    dx = (xx[inside] - cx[idx]) / ax
    dy = (yy[inside] - cy[idx]) / ay
    rho = np.minimum(np.hypot(dx, dy), 1.0)
    map_x = xx.copy()
    map_y = yy.copy()
    # Inverted, shrunk view: the drop shows DROP_FIELD times its size, upside down, shifted up a
    # little (a drop on a sloped windscreen sees more of what is above it).
    map_x[inside] = cx[idx] - DROP_FIELD * dx * ax
    map_y[inside] = cy[idx] - DROP_FIELD * dy * ay - 0.6 * ay
    alpha = np.zeros((h, w))
    edge = np.clip((1.0 - rho) / 0.25, 0.0, 1.0)
    alpha[inside] = edge * edge * (3 - 2 * edge)
    shade = np.ones((h, w))
    rim = np.clip((rho - 0.65) / 0.35, 0.0, 1.0)
    hl = np.exp(-((dx + 0.35) ** 2 + (dy + 0.4) ** 2) / 0.02)
    shade[inside] = 1.05 - 0.45 * rim + 0.5 * hl
    out = (np.clip(map_x, 0, w - 1).astype(np.float32), np.clip(map_y, 0, h - 1).astype(np.float32),
           alpha.astype(np.float32), shade.astype(np.float32), label - 1, np.array(covered))
    for a in out:
        a.setflags(write=False)
    return out


def lens_drops(batch: np.ndarray, coverage: float, key: int) -> np.ndarray:
    """The batch seen through drops on the lens covering about ``coverage`` of the frame (the first
    drops of the frame's layout whose areas add up to it)."""
    n, h, w, _ = batch.shape
    map_x, map_y, alpha, shade, label, covered = drop_layout(int(key), h, w)
    k = int(np.searchsorted(covered, coverage * h * w)) + 1  # drops 0 .. k-1
    alpha = np.where(label < k, alpha, np.float32(0))
    rows = np.flatnonzero(alpha.any(axis=1))
    out = batch.copy()
    if not len(rows):
        return out
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    b = max(1, int(round(math.sqrt(h * w) / 60))) * 2 + 1
    mx, my = map_x[r0:r1], map_y[r0:r1]
    a = np.ascontiguousarray(alpha[r0:r1])
    keep = np.ascontiguousarray(1.0 - a)
    sh = cv2.merge([shade[r0:r1]] * 3)
    for i in range(n):  # four OpenCV calls per image (tens of microseconds at 66x200)
        view = cv2.remap(cv2.blur(batch[i], (b, b)), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        view = cv2.multiply(view, sh, dtype=cv2.CV_8U)
        out[i, r0:r1] = cv2.blendLinear(batch[i, r0:r1], view, keep, a)
    return out
