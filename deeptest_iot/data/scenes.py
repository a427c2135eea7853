"""Procedural front-camera driving scenes with exact ground truth (steering angle, boxes, classes).

No dataset or model hub is reachable, so deeptest-iot draws its own road frames: a road in
perspective (lanes, curvature, lateral offset, heading), sky, horizon skyline, grass, kerbs,
trees, varied lighting and colours, and labelled objects: cars, pedestrians and traffic signs of
six classes that differ by shape, colour and symbol. Everything is drawn with OpenCV primitives on
a few precomputed arrays, so one core makes well over 500 frames/s at 160x320.

Geometry (a pinhole camera over a flat road)
---------------------------------------------
Car coordinates: ``z`` metres ahead, ``y`` metres to the LEFT (ISO 8855). The camera sits
``CAMERA_HEIGHT`` = 1.3 m above the road, looks straight ahead with a 90 degree horizontal field of
view (focal length ``f = width / 2`` pixels) and the horizon at row ``horizon * height``. A ground
point (z, y) at height ``hgt`` appears at column ``width/2 - f*y/z`` and row
``horizon*height + f*(CAMERA_HEIGHT - hgt)/z``.

The centre of the car's own lane, ``z`` metres ahead, is at

    y_c(z) = -offset + heading * z + curvature * z**2 / 2

where ``offset`` (m) is how far the car sits LEFT of its lane centre, ``heading`` (rad) is the
road's direction relative to the car's (positive: the road turns away to the left) and
``curvature`` (1/m) is the road's curvature (positive: a LEFT bend). The car drives in the right
lane of a two-lane road (right-hand traffic).

``centre`` (default empty) replaces that parabola by a table of points ``((z, y_c), ...)``,
z increasing, interpolated linearly: the true centre line of a road whose curvature changes
ahead, as the closed-loop driver (``deeptest_iot.drive``) draws it from the car's pose. Generated
scenes never set it, so their frames and labels are the ones the sample models were trained on;
left empty, ``render`` draws exactly the same pixels as before it existed.

Ground-truth steering (pure pursuit)
------------------------------------
The label is the front-wheel angle that a pure-pursuit controller commands to reach the lane
centre ``LOOKAHEAD`` = 12 m ahead, for a car with ``WHEELBASE`` = 2.7 m:

    y_L      = y_c(LOOKAHEAD) = -offset + heading*LOOKAHEAD + curvature*LOOKAHEAD**2/2
               (or the ``centre`` table at LOOKAHEAD when it is given)
    steering = atan(2 * WHEELBASE * y_L / LOOKAHEAD**2)          (radians)

Sign convention: POSITIVE = STEER LEFT (counter-clockwise seen from above, as in ISO 8855 and ROS
REP 103). A straight road with the car centred and aligned gives exactly 0; a left bend gives a
positive angle; a car that sits left of its lane centre gets a negative (rightward) angle.
Mirroring a frame horizontally mirrors the scene, so the label of the mirrored scene is the
negated label (DeepTest's flip relation). Default parameter ranges give labels within about
+-0.12 rad (std about 0.04 rad).

Objects and boxes
-----------------
Up to ``MAX_OBJECTS`` objects per frame: cars ahead in the car's lane (at least 12 m away) or in
the oncoming lane, pedestrians on either pavement or crossing, signs beside the road (mostly on the
right). A box is the object's full extent in pixels (xyxy, float): a car's body and wheels, a
pedestrian from head to feet, a sign's panel without its post. Objects that would not lie wholly
inside the frame, would be smaller than 5% of the frame height, or would overlap an earlier object
by more than 25% of the smaller box are not drawn, so every box is visible and unoccluded by
more than a quarter. Trees are drawn behind all labelled objects and are not labelled.

Determinism
-----------
Frame ``i`` of ``generate(n, seed)`` is drawn from ``numpy.random.default_rng([seed, i])``, so
it does not depend on ``n`` and the same seed gives the same frames, pixel for pixel. Every frame
draws the same sequence of random numbers whatever is forced, so forcing ``curvature=0`` changes
the road's shape but not the colours, objects or lighting of that frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from deeptest_iot.errors import ConfigError

CLASSES = ("car", "pedestrian", "stop", "yield", "speed_limit", "no_entry", "ahead_only", "warning")
"""Object classes; ``SceneBatch.classes`` holds indices into this tuple."""
SIGN_CLASSES = CLASSES[2:]
"""The traffic-sign classes; ``sign_crops`` labels index into this tuple."""
CAR, PEDESTRIAN = 0, 1

CAMERA_HEIGHT = 1.3  # m
LOOKAHEAD = 12.0  # m, pure-pursuit look-ahead distance
WHEELBASE = 2.7  # m
MAX_OBJECTS = 6  # candidate objects drawn per frame (those that do not fit are dropped)
MAX_TREES = 6
Z_FAR = 90.0  # m, the road is drawn up to this distance

# Parameters a caller may force to a fixed value in generate(**options).
FORCEABLE = ("curvature", "offset", "heading", "lane_width", "horizon", "brightness", "n_objects",
             "objects")


def steering_angle(curvature, offset, heading):
    """Pure-pursuit steering angle in radians (positive = steer left); works on arrays."""
    y_l = -np.asarray(offset, np.float64) + np.asarray(heading, np.float64) * LOOKAHEAD \
        + np.asarray(curvature, np.float64) * LOOKAHEAD ** 2 / 2
    return pursuit_angle(y_l)


def pursuit_angle(y_lookahead):
    """Pure-pursuit steering angle (rad, + = left) toward the lane centre ``y_lookahead`` metres
    left of the car, LOOKAHEAD metres ahead."""
    return np.arctan(2.0 * WHEELBASE * np.asarray(y_lookahead, np.float64) / LOOKAHEAD ** 2)


@dataclass(frozen=True)
class SceneObject:
    """One labelled object: class index, distance ``z`` (m) and lateral position ``s`` (m, left
    positive) relative to the car's lane centre at that distance, plus its looks."""

    cls: int
    z: float
    s: float
    size: float  # scale factor around the class's nominal size
    color: tuple  # main colour, RGB
    color2: tuple  # secondary colour (pedestrian trousers, car roof tint)


@dataclass(frozen=True)
class SceneParams:
    """Everything that defines one frame. ``render(params, h, w)`` draws it; ``to_dict`` is JSON-able."""

    curvature: float
    offset: float
    heading: float
    lane_width: float
    horizon: float  # horizon row as a fraction of the height
    brightness: float
    tint: tuple  # per-channel gain, RGB
    sky_top: tuple
    sky_bottom: tuple
    grass: tuple
    road: tuple
    marking: tuple  # colour of the centre line
    dashed: bool
    dash_phase: float
    kerbs: bool
    sidewalk: tuple
    skyline: tuple  # ((x0, x1, height_frac, (r, g, b)), ...) as fractions of the width / height
    trees: tuple  # ((z, s, crown_radius_m), ...)
    shadows: tuple  # ((z0, z1, darkness), ...) bands across the road
    noise_at: tuple  # (row, col) offsets into the shared noise texture
    objects: tuple = field(default_factory=tuple)
    centre: tuple = ()  # ((z, y_c), ...): the lane centre as a table, instead of the parabola (closed loop)

    @property
    def steering(self) -> float:
        if self.centre:
            z, y = np.asarray(self.centre, np.float64).T
            return float(pursuit_angle(np.interp(LOOKAHEAD, z, y)))
        return float(steering_angle(self.curvature, self.offset, self.heading))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["objects"] = [dict(o, cls_name=CLASSES[o["cls"]]) for o in d["objects"]]
        return d


@dataclass
class SceneBatch:
    """Generated frames and their ground truth."""

    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    steering: np.ndarray  # (N,) float32 radians, positive = steer left
    boxes: list  # N arrays (k, 4) float32, xyxy pixels
    classes: list  # N arrays (k,) int64, indices into CLASSES
    params: list  # N SceneParams

    def __len__(self) -> int:
        return len(self.images)


# ---------------------------------------------------------------------------------------------
# Sampling


def _color(rng, base, spread):
    c = np.asarray(base, np.float64) + rng.uniform(-spread, spread, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def sample_params(rng: np.random.Generator, **forced) -> SceneParams:
    """Draw one frame's parameters. Always draws the same sequence of numbers, then applies
    ``forced`` overrides (see ``FORCEABLE``), so forcing one parameter leaves the others alone."""
    unknown = set(forced) - set(FORCEABLE)
    if unknown:
        raise ConfigError(f"unknown scene option(s) {sorted(unknown)}; known: {', '.join(FORCEABLE)}")
    u = rng.uniform
    straight = u() < 0.25
    curvature = 0.0 if straight else u(-1 / 50, 1 / 50)
    offset = u(-0.9, 0.9)
    heading = u(-0.06, 0.06)
    lane_width = u(3.0, 3.8)
    horizon = u(0.36, 0.46)
    light = u()  # 0 dusk .. 1 bright noon
    brightness = 0.55 + 0.7 * light
    tint = tuple(float(v) for v in u(0.88, 1.12, 3))
    overcast = u() < 0.3
    sky_top = _color(rng, (150, 150, 155) if overcast else (60, 120, 215), 30)
    sky_bottom = _color(rng, (200, 200, 205) if overcast else (175, 205, 240), 25)
    grass = _color(rng, (70, 120, 45) if u() < 0.7 else (140, 125, 70), 25)
    road = _color(rng, (u(60, 135),) * 3, 7)  # grey asphalt, slightly tinted
    marking = (240, 240, 235) if u() < 0.6 else (235, 200, 40)
    dashed = bool(u() < 0.75)
    dash_phase = u(0, 9)
    kerbs = bool(u() < 0.6)
    sidewalk = _color(rng, (165, 160, 155), 20)
    n_build = int(rng.integers(0, 9))
    xs = np.sort(u(-0.1, 1.0, 9))
    skyline = tuple((float(xs[i]), float(xs[i] + u(0.05, 0.2)), float(u(0.03, 0.22)),
                     _color(rng, (130, 115, 105), 50)) for i in range(9))[:n_build]
    n_trees = int(rng.integers(0, MAX_TREES + 1))
    trees = tuple((float(u(10, 70)), float(rng.choice([-1, 1]) * u(8, 16)), float(u(1.2, 2.4)))
                  for _ in range(MAX_TREES))[:n_trees]
    n_shadows = int(rng.integers(0, 3))
    z0s, dzs, dks = u(4, 40, 2), u(1.5, 6, 2), u(0.25, 0.55, 2)
    shadows = tuple((float(a), float(a + b), float(c)) for a, b, c in zip(z0s, dzs, dks))[:n_shadows]
    noise_at = (int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 16)))
    n_objects = int(rng.integers(0, MAX_OBJECTS + 1))
    cands = [_sample_object(rng, lane_width) for _ in range(MAX_OBJECTS)]

    values = dict(curvature=curvature, offset=offset, heading=heading, lane_width=lane_width,
                  horizon=horizon, brightness=brightness)
    for k in values:
        if k in forced:
            values[k] = float(forced[k])
    if "n_objects" in forced:
        n_objects = int(np.clip(int(forced["n_objects"]), 0, MAX_OBJECTS))
    objects = tuple(cands[:n_objects])
    if "objects" in forced:
        objects = tuple(forced["objects"] or ())
    return SceneParams(tint=tint, sky_top=sky_top, sky_bottom=sky_bottom, grass=grass, road=road,
                       marking=marking, dashed=dashed, dash_phase=float(dash_phase), kerbs=kerbs,
                       sidewalk=sidewalk, skyline=skyline, trees=trees, shadows=shadows,
                       noise_at=noise_at, objects=objects, **values)


def _sample_object(rng, lane_width) -> SceneObject:
    """One candidate object, placed relative to the lane centre; always draws 9 numbers."""
    cls_r, z_r, where, lat, size = rng.uniform(size=5)
    col = rng.uniform(0, 255, 3)
    col2 = rng.uniform(0, 255, 3)
    w = lane_width
    if cls_r < 0.35:
        cls = CAR
        z = 7 + 28 * z_r
        s = 0.0 if where < 0.35 else w  # own lane ahead or the oncoming lane
        s += (lat - 0.5) * 0.6
        z = max(z, 12.0) if s < w / 2 else z
        size = 0.9 + 0.25 * size
    elif cls_r < 0.6:
        cls = PEDESTRIAN
        z = 5 + 20 * z_r
        if where < 0.12:  # crossing the road
            s = (lat - 0.3) * 2 * w
            z = max(z, 10.0)
        elif where < 0.7:  # right sidewalk
            s = -(w / 2 + 1.0 + 2.0 * lat)
        else:
            s = 1.5 * w + 1.0 + 2.0 * lat
        size = 0.88 + 0.2 * size
    else:
        cls = 2 + min(int((cls_r - 0.6) / 0.4 * len(SIGN_CLASSES)), len(SIGN_CLASSES) - 1)
        z = 6 + 13 * z_r
        s = -(w / 2 + 1.2 + 1.5 * lat) if where < 0.8 else 1.5 * w + 1.2 + 1.5 * lat
        size = 0.9 + 0.3 * size
    return SceneObject(cls=int(cls), z=float(z), s=float(s), size=float(size),
                       color=tuple(int(c) for c in col), color2=tuple(int(c) for c in col2))


# ---------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=8)
def _noise_texture(h: int, w: int) -> np.ndarray:
    """A fixed sensor/texture noise field, twice the frame size, from which frames take windows."""
    rng = np.random.default_rng(12345)
    n = rng.normal(0, 1, (2 * h, 2 * w, 1)) * 5
    return np.clip(np.repeat(n, 3, axis=2) + 8, 0, 16).astype(np.uint8)


class _Camera:
    """Projects car coordinates to pixels for one frame's geometry."""

    def __init__(self, p: SceneParams, h: int, w: int):
        self.h, self.w = h, w
        self.f = w / 2.0
        self.cx = w / 2.0
        self.yh = p.horizon * h
        self.p = p
        self.centre = np.asarray(p.centre, np.float64).T if p.centre else None

    def lane_y(self, z):
        p = self.p
        if self.centre is not None:  # only the closed-loop driver sets it: generated frames stay as they were
            return np.interp(z, self.centre[0], self.centre[1])
        return -p.offset + p.heading * z + p.curvature * z * z / 2

    def col(self, z, y):
        return self.cx - self.f * y / z

    def row(self, z, hgt=0.0):
        return self.yh + self.f * (CAMERA_HEIGHT - hgt) / z

    def z_near(self):
        """Distance seen at one row below the image bottom."""
        return self.f * CAMERA_HEIGHT / (self.h + 1 - self.yh)


_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def _fx(a):
    """Pixel coordinates to cv2 fixed point, clipped so that curves far off-screen stay valid."""
    return np.round(np.clip(a, -4000, 4000) * _ONE).astype(np.int32)


def _strip(cam, zs, s0, s1):
    """Polygon of the ground band between lateral offsets s0 and s1 (m, from the lane centre)."""
    yc = cam.lane_y(zs)
    rows = cam.row(zs)
    left = np.stack([cam.col(zs, yc + s0), rows], 1)
    right = np.stack([cam.col(zs, yc + s1), rows], 1)
    return _fx(np.concatenate([left, right[::-1]]))


def _strips(cam, zs, bounds):
    """``[_strip(cam, zs, s0, s1) for s0, s1 in bounds]`` in one vectorised pass (the same values:
    the same elementwise operations in the same order, only without a Python loop)."""
    yc = cam.lane_y(zs)
    rows = cam.row(zs)
    b = np.asarray(bounds, np.float64)
    n = len(zs)
    pts = np.empty((len(b), 2 * n, 2))
    pts[:, :n, 0] = cam.col(zs, yc + b[:, :1])
    pts[:, n:, 0] = cam.col(zs, yc + b[:, 1:])[:, ::-1]
    pts[:, :n, 1] = rows
    pts[:, n:, 1] = rows[::-1]
    return list(_fx(pts))


def _dashes(cam, z0, z1, s0, s1):
    """The quadrilaterals of dashes from z0[i] to z1[i] between lateral offsets s0 and s1, as
    ``_strip(cam, np.array([z0[i], z1[i]]), s0, s1)`` gives them, in one vectorised pass."""
    z = np.stack([z0, z1], 1)
    yc = cam.lane_y(z)
    rows = cam.row(z)
    left, right = cam.col(z, yc + s0), cam.col(z, yc + s1)
    pts = np.stack([np.stack([left[:, 0], rows[:, 0]], 1), np.stack([left[:, 1], rows[:, 1]], 1),
                    np.stack([right[:, 1], rows[:, 1]], 1), np.stack([right[:, 0], rows[:, 0]], 1)], 1)
    return list(_fx(pts))


@lru_cache(maxsize=64)
def _distances(zn: float) -> np.ndarray:
    """The distances the road's polygons are drawn at (cached: a drive's frames share them)."""
    zs = np.geomspace(zn, Z_FAR, 28)
    zs.flags.writeable = False
    return zs


@lru_cache(maxsize=64)
def _sky(yh: int, w: int, top: tuple, bottom: tuple) -> np.ndarray:
    """The sky's rows (yh, w * 3): a vertical gradient from ``top`` to ``bottom`` (cached)."""
    t = np.linspace(0.0, 1.0, max(yh, 1))[:, None]
    sky = (np.asarray(top) * (1 - t) + np.asarray(bottom) * t).astype(np.uint8)
    rows = np.tile(sky[:yh], (1, w))
    rows.flags.writeable = False
    return rows


@lru_cache(maxsize=64)
def _colour_row(colour: tuple, w: int) -> np.ndarray:
    """One image row (w * 3,) of a flat colour (cached)."""
    row = np.tile(np.asarray(colour, np.uint8), w)
    row.flags.writeable = False
    return row


def render(p: SceneParams, height: int = 160, width: int = 320):
    """Draw one frame. Returns (image (H,W,3) uint8 RGB, boxes (k,4) float32 xyxy, classes (k,))."""
    h, w = height, width
    cam = _Camera(p, h, w)
    img = np.empty((h, w, 3), np.uint8)
    yh = int(round(cam.yh))
    # sky: vertical gradient; grass below (filled as whole rows: numpy broadcasts a 3-vector slowly)
    rows = img.reshape(h, w * 3)
    rows[:yh] = _sky(yh, w, tuple(p.sky_top), tuple(p.sky_bottom))
    rows[yh:] = _colour_row(tuple(p.grass), w)
    # skyline of buildings standing on the horizon
    for x0, x1, hf, c in p.skyline:
        top = yh - hf * h
        cv2.rectangle(img, (int(x0 * w), int(top)), (int(x1 * w), yh), c, -1)
        wc = tuple(int(v * 0.7) for v in c)
        cv2.line(img, (int(x0 * w) + 2, int(top + 3)), (int(x1 * w) - 2, int(top + 3)), wc, 1)
    # road, shoulders, markings
    zn = cam.z_near()
    zs = _distances(zn)
    lw = p.lane_width
    # every band over the same distances in one pass: kerbs, sidewalk, road, edge lines, solid centre line
    bands = [(-lw / 2 - 3.0, 1.5 * lw + 3.0), (-lw / 2 - 0.5, 1.5 * lw + 0.5)] if p.kerbs else []
    bands += [(-lw / 2 - 0.35, 1.5 * lw + 0.35), (-lw / 2 - 0.2, -lw / 2 - 0.05), (1.5 * lw + 0.05, 1.5 * lw + 0.2)]
    if not p.dashed:
        bands.append((lw / 2 - 0.08, lw / 2 + 0.08))
    polys = _strips(cam, zs, bands)
    if p.kerbs:
        cv2.fillPoly(img, [polys.pop(0)], p.sidewalk, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(img, [polys.pop(0)], (200, 200, 195), cv2.LINE_8, _SHIFT)
    cv2.fillPoly(img, [polys[0]], p.road, cv2.LINE_8, _SHIFT)
    edge = (235, 235, 230)
    cv2.fillPoly(img, polys[1:3], edge, cv2.LINE_AA, _SHIFT)
    if p.dashed:
        z0 = zn - p.dash_phase + 9 * np.arange(0, 9)
        z0 = z0[(z0 + 3 > zn) & (z0 < 70)]
        if len(z0):
            dashes = _dashes(cam, np.maximum(z0, zn * 0.9), z0 + 3.0, lw / 2 - 0.08, lw / 2 + 0.08)
            cv2.fillPoly(img, dashes, p.marking, cv2.LINE_AA, _SHIFT)
    else:
        cv2.fillPoly(img, [polys[3]], p.marking, cv2.LINE_AA, _SHIFT)
    # trees (never labelled, drawn behind every labelled object so they hide none)
    for z, s, r in sorted(p.trees, reverse=True):
        y = cam.lane_y(z) + (s if s < 0 else s + lw)
        x = cam.col(z, y)
        ground = cam.row(z)
        trunk_top = cam.row(z, 2.2)
        cv2.line(img, (int(x), int(ground)), (int(x), int(trunk_top)), (90, 60, 35), max(1, int(cam.f * 0.3 / z)))
        cv2.circle(img, (int(x), int(cam.row(z, 2.2 + r * 0.8))), max(1, int(cam.f * r / z)),
                   (40, 95 + int(r * 20), 35), -1)
    # shadows across the road
    if p.shadows:
        shade = img.copy()
        for z0, z1, dk in p.shadows:
            if z1 <= zn:
                continue
            band = np.array([max(z0, zn), z1])
            cv2.fillPoly(shade, [_strip(cam, band, -lw / 2 - 1.0, 1.5 * lw + 1.0)], (0, 0, 0), cv2.LINE_8, _SHIFT)
        dk = p.shadows[0][2]  # one darkness for all bands of a frame
        img = cv2.addWeighted(img, 1 - dk, shade, dk, 0)
    # labelled objects, far to near
    boxes, classes = _draw_objects(img, cam, p)
    # lighting, tint and sensor noise
    gain = p.brightness * np.asarray(p.tint)
    lut = np.clip(np.arange(256)[:, None] * gain[None, :], 0, 255).astype(np.uint8).reshape(256, 1, 3)
    img = cv2.LUT(img, lut)
    tex = _noise_texture(h, w)
    r0, c0 = p.noise_at[0] % h, p.noise_at[1] % w
    img = cv2.add(img, tex[r0:r0 + h, c0:c0 + w])
    r1, c1 = (p.noise_at[0] // h) % h, (p.noise_at[1] // w) % w
    img = cv2.subtract(img, tex[r1:r1 + h, c1:c1 + w])
    return img, boxes, classes


# Objects whose box is smaller than this (fractions of the frame height / width) are not drawn.
_MIN_BOX_H = 0.05
_MIN_BOX_W = 0.012


def _object_box(cam, o: SceneObject):
    """Projected box (x0, y0, x1, y1) of an object, and its centre column and ground row. Nominal
    sizes: cars 1.8 m wide, 1.5 m high; pedestrians 0.54 x 1.75 m; sign panels 0.9 m across with
    their centre 2.45 m above the road; all times the object's ``size``."""
    y = cam.lane_y(o.z) + o.s
    x = cam.col(o.z, y)
    ground = cam.row(o.z)
    k = cam.f / o.z
    if o.cls == CAR:
        half, top = 0.9 * o.size * k, cam.row(o.z, 1.5 * o.size)
        return (x - half, top, x + half, ground), x, ground
    if o.cls == PEDESTRIAN:
        half, top = 0.27 * o.size * k, cam.row(o.z, 1.75 * o.size)
        return (x - half, top, x + half, ground), x, ground
    r = 0.45 * o.size * k
    cy = cam.row(o.z, 2.0 + 0.45 * o.size)
    return (x - r, cy - r, x + r, cy + r), x, ground


def _draw_objects(img, cam, p: SceneParams):
    h, w = cam.h, cam.w
    kept = []
    for o in p.objects:
        if o.z <= cam.z_near():
            continue
        box, x, ground = _object_box(cam, o)
        x0, y0, x1, y1 = box
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            continue
        if (y1 - y0) < _MIN_BOX_H * h or (x1 - x0) < _MIN_BOX_W * w:
            continue
        b = np.array(box)
        if any(_overlap(b, np.array(k[1])) > 0.25 for k in kept):
            continue
        kept.append((o, box, x, ground))
    kept.sort(key=lambda t: -t[0].z)
    for o, box, x, ground in kept:
        if o.cls == CAR:
            _draw_car(img, o, box)
        elif o.cls == PEDESTRIAN:
            _draw_pedestrian(img, o, box)
        else:
            x0, y0, x1, y1 = box
            r = (x1 - x0) / 2
            cv2.line(img, _pt(x, ground), _pt(x, y1), (120, 120, 125), max(1, int(r * 0.25)), cv2.LINE_8, _SHIFT)
            draw_sign(img, CLASSES[o.cls], (x0 + x1) / 2, (y0 + y1) / 2, r)
    boxes = np.array([k[1] for k in kept], np.float32).reshape(-1, 4)
    classes = np.array([k[0].cls for k in kept], np.int64)
    return boxes, classes


def _overlap(a, b):
    """Intersection over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(small, 1e-9)


def _pt(x, y):
    return int(round(x * _ONE)), int(round(y * _ONE))


def _rect(img, x0, y0, x1, y1, color):
    pts = _fx(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
    cv2.fillPoly(img, [pts], color, cv2.LINE_8, _SHIFT)


def _draw_car(img, o: SceneObject, box):
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    body = o.color
    dark = tuple(int(c * 0.45) for c in body)
    # shadow under the car, wheels, body, rear window, lights
    _rect(img, x0 - bw * 0.02, y1 - bh * 0.08, x1 + bw * 0.02, y1, (25, 25, 25))
    _rect(img, x0 + bw * 0.06, y1 - bh * 0.22, x0 + bw * 0.26, y1, (15, 15, 15))
    _rect(img, x1 - bw * 0.26, y1 - bh * 0.22, x1 - bw * 0.06, y1, (15, 15, 15))
    _rect(img, x0, y0 + bh * 0.38, x1, y1 - bh * 0.12, body)
    roof = _fx(np.array([[x0 + bw * 0.14, y0], [x1 - bw * 0.14, y0], [x1 - bw * 0.04, y0 + bh * 0.4],
                         [x0 + bw * 0.04, y0 + bh * 0.4]]))
    cv2.fillPoly(img, [roof], body, cv2.LINE_8, _SHIFT)
    win = _fx(np.array([[x0 + bw * 0.2, y0 + bh * 0.07], [x1 - bw * 0.2, y0 + bh * 0.07],
                        [x1 - bw * 0.1, y0 + bh * 0.36], [x0 + bw * 0.1, y0 + bh * 0.36]]))
    cv2.fillPoly(img, [win], (40 + o.color2[0] // 8, 50 + o.color2[1] // 8, 60 + o.color2[2] // 8),
                 cv2.LINE_8, _SHIFT)
    _rect(img, x0 + bw * 0.04, y0 + bh * 0.5, x0 + bw * 0.2, y0 + bh * 0.62, (220, 30, 25))
    _rect(img, x1 - bw * 0.2, y0 + bh * 0.5, x1 - bw * 0.04, y0 + bh * 0.62, (220, 30, 25))
    _rect(img, x0 + bw * 0.35, y0 + bh * 0.66, x1 - bw * 0.35, y0 + bh * 0.76, dark)


def _draw_pedestrian(img, o: SceneObject, box):
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    shirt, trousers = o.color, tuple(int(c * 0.5) for c in o.color2)
    skin = (225 - o.color2[0] // 4, 180 - o.color2[1] // 4, 150 - o.color2[2] // 4)
    # legs, torso with arms, head
    _rect(img, x0 + bw * 0.12, y0 + bh * 0.52, cx - bw * 0.04, y1, trousers)
    _rect(img, cx + bw * 0.04, y0 + bh * 0.52, x1 - bw * 0.12, y1, trousers)
    _rect(img, x0, y0 + bh * 0.17, x1, y0 + bh * 0.55, shirt)
    cv2.ellipse(img, _pt(cx, y0 + bh * 0.085), (int(bw * 0.3 * _ONE), int(bh * 0.085 * _ONE)), 0, 0, 360,
                skin, -1, cv2.LINE_8, _SHIFT)


_OCT = np.array([[math.cos(a), math.sin(a)] for a in np.radians(22.5 + 45 * np.arange(8))])
_TRI_DOWN = np.array([[-1.0, -0.8], [1.0, -0.8], [0.0, 0.95]])
_TRI_UP = _TRI_DOWN * [1, -1]
_RED, _WHITE, _BLACK, _BLUE = (200, 20, 30), (245, 245, 245), (20, 20, 20), (20, 70, 190)


def _poly(img, unit, cx, cy, r, color):
    cv2.fillPoly(img, [_fx(unit * r + [cx, cy])], color, cv2.LINE_AA, _SHIFT)


def draw_sign(img: np.ndarray, name: str, cx: float, cy: float, r: float) -> None:
    """Draw the panel of a traffic sign of class ``name`` centred at (cx, cy), radius ``r`` px.

    stop: red octagon, white rim and white lettering bar; yield: white downward triangle, red rim;
    speed_limit: white disc, red ring, two black digits; no_entry: red disc, white horizontal bar;
    ahead_only: blue disc, white upward arrow; warning: white upward triangle, red rim, black "!".
    """
    c = (cx, cy)
    if name == "stop":
        _poly(img, _OCT, cx, cy, r, _WHITE)
        _poly(img, _OCT, cx, cy, r * 0.86, _RED)
        _rect(img, cx - r * 0.6, cy - r * 0.16, cx + r * 0.6, cy + r * 0.16, _WHITE)
    elif name == "yield":
        _poly(img, _TRI_DOWN, cx, cy, r, _RED)
        _poly(img, _TRI_DOWN, cx, cy + r * 0.05, r * 0.55, _WHITE)
    elif name == "warning":
        _poly(img, _TRI_UP, cx, cy, r, _RED)
        _poly(img, _TRI_UP, cx, cy - r * 0.05, r * 0.6, _WHITE)
        _rect(img, cx - r * 0.07, cy - r * 0.25, cx + r * 0.07, cy + r * 0.22, _BLACK)
        _rect(img, cx - r * 0.07, cy + r * 0.32, cx + r * 0.07, cy + r * 0.44, _BLACK)
    elif name == "speed_limit":
        cv2.circle(img, _pt(*c), int(r * _ONE), _RED, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(img, _pt(*c), int(r * 0.74 * _ONE), _WHITE, -1, cv2.LINE_AA, _SHIFT)
        _rect(img, cx - r * 0.42, cy - r * 0.38, cx - r * 0.08, cy + r * 0.38, _BLACK)
        _rect(img, cx - r * 0.3, cy - r * 0.2, cx - r * 0.16, cy + r * 0.05, _WHITE)
        _rect(img, cx + r * 0.08, cy - r * 0.38, cx + r * 0.42, cy + r * 0.38, _BLACK)
        _rect(img, cx + r * 0.18, cy - r * 0.24, cx + r * 0.32, cy + r * 0.24, _WHITE)
    elif name == "no_entry":
        cv2.circle(img, _pt(*c), int(r * _ONE), _RED, -1, cv2.LINE_AA, _SHIFT)
        _rect(img, cx - r * 0.68, cy - r * 0.2, cx + r * 0.68, cy + r * 0.2, _WHITE)
    elif name == "ahead_only":
        cv2.circle(img, _pt(*c), int(r * _ONE), _BLUE, -1, cv2.LINE_AA, _SHIFT)
        _rect(img, cx - r * 0.13, cy - r * 0.1, cx + r * 0.13, cy + r * 0.65, _WHITE)
        _poly(img, np.array([[-0.45, 0.0], [0.45, 0.0], [0.0, -0.65]]), cx, cy, r, _WHITE)
    else:
        raise ConfigError(f"unknown sign class {name!r}; known: {', '.join(SIGN_CLASSES)}")


# ---------------------------------------------------------------------------------------------
# Public entry points


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """The Generator frame ``index`` of seed ``seed`` draws from."""
    return np.random.default_rng([int(seed), int(index)])


def generate(n: int, seed: int = 0, height: int = 160, width: int = 320, start: int = 0,
             **options) -> SceneBatch:
    """Generate frames ``start .. start+n-1`` of scene seed ``seed``.

    ``options`` force scene parameters for every frame: ``curvature`` (1/m, + = left bend),
    ``offset`` (m, + = car left of its lane centre), ``heading`` (rad), ``lane_width`` (m),
    ``horizon`` (fraction of the height), ``brightness`` (gain), ``n_objects`` (0..6 candidates)
    or ``objects`` (a sequence of ``SceneObject``, () for an empty road).
    """
    if n < 0 or height < 16 or width < 16:
        raise ConfigError(f"need n >= 0 and a frame of at least 16x16, got n={n}, {height}x{width}")
    if seed < 0 or start < 0:
        raise ConfigError(f"seed and start must be >= 0, got seed={seed}, start={start}")
    images = np.empty((n, height, width, 3), np.uint8)
    steering = np.empty(n, np.float32)
    boxes, classes, params = [], [], []
    for i in range(n):
        p = sample_params(frame_rng(seed, start + i), **options)
        images[i], b, c = render(p, height, width)
        steering[i] = p.steering
        boxes.append(b)
        classes.append(c)
        params.append(p)
    return SceneBatch(images, steering, boxes, classes, params)


def sign_crops(n: int, seed: int = 0, size: int = 32):
    """``n`` square RGB crops (n, size, size, 3) uint8 of single traffic signs on roadside
    backgrounds, with labels (n,) int64 indexing ``SIGN_CLASSES``; classes are balanced.

    Each crop is cut from a generated scene, with a sign drawn at a random scale (panel diameter
    45-90% of the crop), position jitter, lighting, blur and noise, as a detector's crop would be.
    """
    if n < 0 or size < 8:
        raise ConfigError(f"need n >= 0 and size >= 8, got n={n}, size={size}")
    out = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    bg_h = max(96, size + 1)  # a crop is at most ``size`` scene pixels wide (scale >= 1)
    bg_w = 2 * bg_h
    for i in range(n):
        rng = np.random.default_rng([int(seed), i, 7])
        label = i % len(SIGN_CLASSES)
        bg_params = sample_params(rng, n_objects=0)
        bg, _, _ = render(bg_params, bg_h, bg_w)
        scale = rng.uniform(1.0, 2.5)  # scene pixels -> crop pixels
        src = size / scale
        x0 = rng.uniform(0, bg_w - src)
        y0 = rng.uniform(0, bg_h - src)
        m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
        crop = cv2.warpAffine(bg, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        r = size * rng.uniform(0.45, 0.9) / 2
        cx = size / 2 + rng.uniform(-0.12, 0.12) * size
        cy = size / 2 + rng.uniform(-0.12, 0.12) * size
        if rng.uniform() < 0.7:
            cv2.line(crop, _pt(cx, cy), _pt(cx, size), (120, 120, 125), max(1, int(r * 0.2)), cv2.LINE_8, _SHIFT)
        draw_sign(crop, SIGN_CLASSES[label], cx, cy, r)
        gain = rng.uniform(0.5, 1.25) * rng.uniform(0.88, 1.12, 3)
        crop = np.clip(crop * gain + rng.normal(0, 4, crop.shape), 0, 255).astype(np.uint8)
        if rng.uniform() < 0.4:
            crop = cv2.GaussianBlur(crop, (3, 3), rng.uniform(0.3, 1.0))
        out[i] = crop
        labels[i] = label
    return out, labels
