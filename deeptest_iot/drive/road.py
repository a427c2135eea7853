"""A procedural road: the centre line of the car's lane as piecewise clothoids, and where a car is on it.

World frame: ``x`` east, ``y`` north (metres), angles counter-clockwise from ``x`` (radians).
The centre line starts at the origin heading along ``x``. Its curvature ``kappa(s)`` (1/m,
positive = a LEFT bend) is a sequence of elements, each a clothoid (curvature changing linearly
with distance) from the previous curvature to a new one, then a constant-curvature arc (a
straight when the new curvature is 0). Curvature is continuous, so heading and position are
smooth; the road is sampled every ``DS`` metres and integrated with the midpoint rule.

Every road is a pure function of its seed. ``Roads`` stacks the roads of N cars (one per drive)
into (N, M) arrays so that projecting all the cars onto their roads is one vectorised call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deeptest_iot.errors import ConfigError

DS = 0.5  # m between centre-line samples
MAX_CURVATURE = 1 / 60  # 1/m: a 60 m radius; the sample model's scenes go to 1/50
MIN_CURVATURE = 1 / 400  # 1/m: gentler bends than this are drawn as straights
STRAIGHT_SHARE = 0.3  # chance that an element is a straight
TRANSITION = (15.0, 45.0)  # m, length of a clothoid between two curvatures
HOLD = (20.0, 90.0)  # m, length of the constant-curvature part of an element
LEAD_IN = 15.0  # m of straight road before the first element (where the car starts)
AHEAD = 120.0  # m of road generated past the end of a drive (the camera's table reaches 110 m)


@dataclass(frozen=True)
class Road:
    """One centre line, sampled every DS metres: arc length s, position (x, y), heading theta, curvature kappa."""

    s: np.ndarray
    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    kappa: np.ndarray
    lane_width: float

    @property
    def length(self) -> float:
        return float(self.s[-1])


def curvature_profile(length: float, rng: np.random.Generator, max_curvature: float = MAX_CURVATURE) -> np.ndarray:
    """Curvature (1/m) at s = 0, DS, 2 DS, ... up to ``length``: a lead-in straight, then clothoid + arc elements."""
    if not 0 < max_curvature <= 0.1:
        raise ConfigError(f"max_curvature must be in (0, 0.1] 1/m (a radius of at least 10 m), not {max_curvature}")
    n = int(np.ceil(length / DS)) + 1
    knots_s, knots_k = [0.0, LEAD_IN], [0.0, 0.0]
    lo = min(MIN_CURVATURE, max_curvature)
    while knots_s[-1] < length:
        if rng.uniform() < STRAIGHT_SHARE:
            k = 0.0
        else:
            k = float(rng.choice([-1.0, 1.0]) * rng.uniform(lo, max_curvature))
        ramp = rng.uniform(*TRANSITION)
        hold = rng.uniform(*HOLD)
        knots_s += [knots_s[-1] + ramp, knots_s[-1] + ramp + hold]
        knots_k += [k, k]
    s = np.arange(n) * DS
    return np.interp(s, knots_s, knots_k)


def make_road(length: float, seed, lane_width: float = 3.5, max_curvature: float = MAX_CURVATURE) -> Road:
    """A road at least ``length`` metres long (plus AHEAD for the camera), a pure function of ``seed``."""
    rng = np.random.default_rng(seed)
    kappa = curvature_profile(float(length) + AHEAD, rng, max_curvature)
    n = len(kappa)
    s = np.arange(n) * DS
    theta = np.concatenate([[0.0], np.cumsum((kappa[1:] + kappa[:-1]) / 2 * DS)])
    mid = (theta[1:] + theta[:-1]) / 2
    x = np.concatenate([[0.0], np.cumsum(np.cos(mid) * DS)])
    y = np.concatenate([[0.0], np.cumsum(np.sin(mid) * DS)])
    return Road(s=s, x=x, y=y, theta=theta, kappa=kappa, lane_width=float(lane_width))


@dataclass
class Projection:
    """Where N points lie relative to their roads' centre lines (all arrays (N,))."""

    index: np.ndarray  # sample index at or before the projection (a hint for the next call)
    s: np.ndarray  # arc length of the projection, m
    offset: np.ndarray  # signed distance from the centre line, m, positive = LEFT of it
    theta: np.ndarray  # road heading at the projection, rad
    kappa: np.ndarray  # road curvature at the projection, 1/m


class Roads:
    """The roads of N drives as (N, M) arrays (padded by extending each road's last sample)."""

    def __init__(self, roads: list[Road]):
        if not roads:
            raise ConfigError("no roads")
        m = max(len(r.s) for r in roads)

        def stack(name):
            out = np.empty((len(roads), m))
            for i, r in enumerate(roads):
                a = getattr(r, name)
                out[i, :len(a)] = a
                out[i, len(a):] = a[-1]
            return out

        self.roads = roads
        self.s, self.x, self.y = stack("s"), stack("x"), stack("y")
        self.theta, self.kappa = stack("theta"), stack("kappa")
        self.lane_width = np.array([r.lane_width for r in roads])
        self.m = m

    def __len__(self) -> int:
        return len(self.roads)

    def at(self, rows: np.ndarray, s: np.ndarray):
        """Centre-line position (x, y) and heading at arc lengths ``s`` (rows, K) of roads ``rows``."""
        rows = np.asarray(rows)
        f = np.clip(s / DS, 0, self.m - 1.000001)
        i = np.floor(f).astype(np.int64)
        t = f - i
        r = rows[:, None] if s.ndim == 2 else rows
        x = self.x[r, i] * (1 - t) + self.x[r, i + 1] * t
        y = self.y[r, i] * (1 - t) + self.y[r, i + 1] * t
        th = self.theta[r, i] * (1 - t) + self.theta[r, i + 1] * t
        return x, y, th

    def project(self, rows: np.ndarray, px: np.ndarray, py: np.ndarray, hint: np.ndarray,
                back: int = 8, ahead: int = 40) -> Projection:
        """Project points (px, py) of roads ``rows`` onto their centre lines, searching the samples
        ``hint - back .. hint + ahead`` (the car moves a few samples per step), then onto the
        segment on either side of the nearest sample."""
        rows = np.asarray(rows)
        idx = np.clip(hint[:, None] + np.arange(-back, ahead + 1)[None, :], 0, self.m - 1)
        r = rows[:, None]
        d2 = (self.x[r, idx] - px[:, None]) ** 2 + (self.y[r, idx] - py[:, None]) ** 2
        j = idx[np.arange(len(rows)), np.argmin(d2, axis=1)]
        # the segment (j-1, j) or (j, j+1) that the point projects onto
        best_i = np.clip(j, 0, self.m - 2)
        best_t = np.zeros(len(rows))
        best_d = np.full(len(rows), np.inf)
        for a in (np.clip(j - 1, 0, self.m - 2), np.clip(j, 0, self.m - 2)):
            ax, ay = self.x[rows, a], self.y[rows, a]
            bx, by = self.x[rows, a + 1], self.y[rows, a + 1]
            vx, vy = bx - ax, by - ay
            ll = np.maximum(vx * vx + vy * vy, 1e-12)
            t = np.clip(((px - ax) * vx + (py - ay) * vy) / ll, 0.0, 1.0)
            d = (ax + t * vx - px) ** 2 + (ay + t * vy - py) ** 2
            better = d < best_d
            best_i, best_t, best_d = np.where(better, a, best_i), np.where(better, t, best_t), np.where(better, d, best_d)
        i, t = best_i, best_t
        ax, ay = self.x[rows, i], self.y[rows, i]
        vx, vy = self.x[rows, i + 1] - ax, self.y[rows, i + 1] - ay
        norm = np.maximum(np.hypot(vx, vy), 1e-12)
        # signed distance: positive when the point is LEFT of the direction of travel
        cross = (vx * (py - ay) - vy * (px - ax)) / norm
        s = self.s[rows, i] + t * DS
        theta = self.theta[rows, i] * (1 - t) + self.theta[rows, i + 1] * t
        kappa = self.kappa[rows, i] * (1 - t) + self.kappa[rows, i + 1] * t
        return Projection(index=i, s=s, offset=cross, theta=theta, kappa=kappa)


# Where the camera's table of the centre line samples the road: arc lengths ahead of the car (m),
# geometric as image rows are (a ground point z metres ahead is f*h/z pixels below the horizon),
# past the renderer's far limit (90 m). Linear interpolation between them is off by at most
# kappa*gap^2/8: 1 cm at 20 m ahead, 0.2 m (a fifth of a pixel) at 80 m, on the sharpest bend.
CENTRE_S = np.geomspace(0.5, 110.0, 48)


def centre_ahead(roads: Roads, rows: np.ndarray, cx: np.ndarray, cy: np.ndarray, yaw: np.ndarray,
                 s0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lane centre ahead of N cameras in their own frames: (z, y) each (N, K), z metres ahead,
    y metres to the left, sampled at arc lengths ``s0 + CENTRE_S``. Elementwise only (no reduction),
    so a car's table does not depend on which other cars share the batch."""
    rows = np.asarray(rows)
    s = s0[:, None] + CENTRE_S[None, :]
    x, y, _ = roads.at(rows, s)
    dx, dy = x - cx[:, None], y - cy[:, None]
    c, sn = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    return dx * c + dy * sn, -dx * sn + dy * c


def centre_table(z: np.ndarray, y: np.ndarray) -> tuple:
    """One car's table ((z, y), ...) for the renderer: the points ahead of the camera while z increases
    (a bend sharper than a quarter circle within 110 m would fold back; the renderer draws to 90 m)."""
    keep = z > 0.1
    z, y = z[keep], y[keep]
    inc = np.concatenate([[True], np.diff(z) > 1e-6])
    stop = len(z) if inc.all() else int(np.argmin(inc))
    return tuple(zip(z[:stop].tolist(), y[:stop].tolist()))
