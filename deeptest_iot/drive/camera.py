"""The camera: each car's frame drawn by the scene renderer from the car's pose on its road.

The renderer (``deeptest_iot.data.scenes.render``) draws a frame from local parameters of the
road ahead: the car's offset from its lane centre, its heading relative to the road and the road's
curvature, which make the lane centre ahead a parabola. The roads here change curvature ahead
(clothoids), which a parabola cannot follow (a cubic fitted over the view drew a straight road
before a right bend as bending left, and put the pure-pursuit target 0.3 m off), so the renderer
takes an optional table of the lane centre instead (``SceneParams.centre``; empty for generated
scenes, whose frames are unchanged): ``road.centre_ahead`` computes it from the car's pose at every
step, and every line of the road, the dashes, trees and shadows are drawn along it. The frame's
offset, heading and curvature are set to the true local values for the record. Everything else a
frame shows is the drive's own and stays put in the world as the car moves:

- colours, lighting, lane width, markings, kerbs and the horizon (the camera's pitch): drawn once
  per drive by ``scenes.sample_params`` (so they follow the distribution the sample model was
  trained on), with no labelled objects (cars, pedestrians, signs are not simulated);
- the centre-line dashes, trees and shadows: placed along the road (arc length), drawn at their
  distance ahead, so they come closer and pass;
- the skyline: buildings at fixed world bearings, so they slide across the frame as the car turns;
- sensor noise: a new window of the noise texture every frame, as the training frames had.

Frames are rendered per car (the renderer draws one frame at a time) in a thread pool: OpenCV
releases the GIL while it draws.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from deeptest_iot.data.scenes import CAMERA_HEIGHT, SceneParams, render, sample_params

DASH_PERIOD = 9.0  # m, the renderer's dash spacing
TREE_Z = (4.0, 75.0)  # m ahead: trees drawn
SHADOW_Z = 45.0  # m: shadows starting farther than this are not drawn (the scenes' go to 40 + 6 m)
MAX_SHADOWS = 2  # as in the scenes


@dataclass(frozen=True)
class DriveScene:
    """The look of one drive: the renderer's parameters that do not depend on the pose, and the
    world's roadside things (arc length along the road, lateral offset as the scenes define it)."""

    base: SceneParams
    dash_origin: float  # m: arc length at which a dash starts
    trees: tuple  # ((s, lateral, radius), ...)
    shadows: tuple  # ((s0, s1), ...)
    shadow_darkness: float
    buildings: tuple  # ((bearing0, bearing1, height_frac, colour), ...) world bearings, rad
    noise_base: tuple  # (a, b)

    @property
    def lane_width(self) -> float:
        return self.base.lane_width


def make_scene(rng: np.random.Generator, length: float) -> DriveScene:
    """A drive's look for a road of ``length`` metres, a pure function of ``rng``'s state."""
    base = sample_params(rng, n_objects=0)
    dash_origin = float(rng.uniform(0, DASH_PERIOD))
    # trees: mean spacing 12-60 m, either side, 8-16 m beyond the road edge (as in the scenes)
    spacing = rng.uniform(12.0, 60.0)
    n = int(length / spacing) + 4
    s = np.cumsum(rng.exponential(spacing, n))
    side = rng.choice([-1.0, 1.0], n)
    lateral = side * rng.uniform(8.0, 16.0, n)
    radius = rng.uniform(1.2, 2.4, n)
    trees = tuple((float(a), float(b), float(c)) for a, b, c in zip(s, lateral, radius) if a < length)
    # shadows across the road: bands 1.5-6 m long, mean spacing 30-120 m, one darkness per drive
    spacing = rng.uniform(30.0, 120.0)
    n = int(length / spacing) + 4
    s0 = np.cumsum(rng.exponential(spacing, n))
    s1 = s0 + rng.uniform(1.5, 6.0, n)
    shadows = tuple((float(a), float(b)) for a, b in zip(s0, s1) if a < length)
    darkness = float(rng.uniform(0.25, 0.55))
    # skyline: the scenes' buildings per 90 degrees of view, at random bearings all around
    n = 4 * len(base.skyline)
    b0 = rng.uniform(0, 2 * math.pi, n)
    width = rng.uniform(0.05, 0.2, n) * 2  # the scenes' widths are fractions of a 90-degree view
    heights = rng.uniform(0.03, 0.22, n)
    colours = [tuple(int(v) for v in np.clip(np.array([130, 115, 105]) + rng.uniform(-50, 50, 3), 0, 255))
               for _ in range(n)]
    buildings = tuple((float(a), float(a + w), float(h), c) for a, w, h, c in zip(b0, width, heights, colours))
    noise_base = (int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 16)))
    return DriveScene(base=dataclasses.replace(base, trees=(), shadows=(), skyline=(), objects=()),
                      dash_origin=dash_origin, trees=trees, shadows=shadows, shadow_darkness=darkness,
                      buildings=buildings, noise_base=noise_base)


def z_near(base: SceneParams, height: int, width: int) -> float:
    """Distance (m) the renderer sees one row below the frame's bottom (its ``_Camera.z_near``)."""
    f = width / 2.0
    return f * CAMERA_HEIGHT / (height + 1 - base.horizon * height)


def frame_params(scene: DriveScene, offset: float, heading: float, curvature: float, centre: tuple,
                 s_car: float, yaw: float, step: int, height: int, width: int) -> SceneParams:
    """The renderer's parameters for a car at arc length ``s_car`` with world yaw ``yaw`` at ``step``:
    ``centre`` is the lane centre ahead ((z, y), ...) (``road.centre_table``), ``offset``,
    ``heading`` and ``curvature`` the true local values (recorded, not drawn)."""
    base = scene.base
    zn = z_near(base, height, width)
    dash_phase = (zn - (scene.dash_origin - s_car)) % DASH_PERIOD
    trees = tuple((s - s_car, lat, r) for s, lat, r in scene.trees if TREE_Z[0] < s - s_car < TREE_Z[1])
    shadows = tuple((a - s_car, b - s_car, scene.shadow_darkness) for a, b in scene.shadows
                    if b - s_car > 0 and a - s_car < SHADOW_Z)[:MAX_SHADOWS]
    skyline = []
    for b0, b1, hf, c in scene.buildings:
        # bearing relative to the car, wrapped to (-pi, pi]; drawn when inside the 90-degree view
        r0 = (b0 - yaw + math.pi) % (2 * math.pi) - math.pi
        r1 = r0 + (b1 - b0)
        if r1 < -math.pi / 4 or r0 > math.pi / 4:
            continue
        # column fraction of bearing r (left positive): 0.5 - tan(r)/2; r1 > r0 so x(r1) < x(r0)
        x0 = 0.5 - math.tan(min(r1, 1.2)) / 2
        x1 = 0.5 - math.tan(max(r0, -1.2)) / 2
        skyline.append((x0, x1, hf, c))
    a, b = scene.noise_base
    noise_at = ((a + 40503 * step) % 65536, (b + 22159 * step) % 65536)
    return dataclasses.replace(base, offset=float(offset), heading=float(heading), curvature=float(curvature),
                               centre=centre, dash_phase=float(dash_phase), trees=trees,
                               shadows=shadows, skyline=tuple(skyline), noise_at=noise_at)


_POOL = []


def _pool():
    from concurrent.futures import ThreadPoolExecutor

    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="deeptest-drive"))
    return _POOL[0]


def render_frames(params: list[SceneParams], height: int, width: int, post=None, threads: bool = True) -> np.ndarray:
    """Render one frame per car into an (N, H, W, 3) uint8 batch; ``post(i, frame)`` (the condition)
    is applied to frame ``i`` in the same worker."""
    out = np.empty((len(params), height, width, 3), np.uint8)

    def job(i):
        img = render(params[i], height, width)[0]
        out[i] = img if post is None else post(i, img)

    if threads and len(params) > 1:
        list(_pool().map(job, range(len(params))))
    else:
        for i in range(len(params)):
            job(i)
    return out
