"""The closed loop: N cars drive at once, one model call per time step for all of them.

Each step, for every car still in its lane: project the car onto its road, sample the true lane
centre ahead in the camera's frame, render the camera frame along it, apply the condition (the
drive's chain and seed), then ONE batched model call
gives every car its steering command; the actuator limits it and the bicycle model moves the car
by dt. A car whose wheel crosses an edge line of its lane (lane departure) stops there: its drive
has failed. Everything a drive does is a pure function of (campaign seed, drive index, condition,
settings): drive ``i`` is the same whether it runs with 1 or 100 others (up to the model's own
batch-size-dependent rounding, which is deterministic for a given campaign).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from deeptest_iot.data.scenes import CAMERA_HEIGHT, LOOKAHEAD, WHEELBASE, pursuit_angle
from deeptest_iot.drive import vehicle
from deeptest_iot.drive.camera import DriveScene, frame_params, make_scene, render_frames
from deeptest_iot.drive.condition import Condition, parse_condition
from deeptest_iot.drive.road import AHEAD, Road, Roads, centre_ahead, centre_table, make_road
from deeptest_iot.errors import ConfigError

START_OFFSET = 0.3  # m: a drive starts up to this far from its lane centre
START_HEADING = 0.02  # rad: and up to this far from the road's direction

# What the traces hold, (N, steps + 1) each, NaN after a drive ended.
TRACE_FIELDS = ("x", "y", "psi", "s", "offset", "front_offset", "heading_error", "curvature", "delta", "command",
                "label", "severity", "contrast")
CONTRAST_EVERY = 10  # steps between two measurements of the frames' contrast (pixel std)


@dataclass(frozen=True)
class DriveSettings:
    """How every drive of a campaign goes: its length, speed, time step and steering limits."""

    distance: float = 300.0  # m planned
    speed: float = 12.0  # m/s, constant (43 km/h)
    dt: float = vehicle.DT  # s per step (a 20 frames/s camera)
    max_rate: float = vehicle.MAX_RATE  # rad/s at the road wheels
    max_angle: float = vehicle.MAX_ANGLE  # rad
    max_curvature: float = 1 / 60  # 1/m, sharpest bend of the roads
    # One storm for every car (rain and snow drawn once per step for the whole batch) rather than one
    # per drive: every drive still has its own road and look; sharing the weather's randomness is what
    # lets a step's weather be one batched call (per-drive rain ran at 0.35 of plain inference).
    shared_weather: bool = True

    def __post_init__(self):
        for name, lo, hi in (("speed", 0.5, 60.0), ("dt", 1e-3, 1.0), ("distance", 1.0, 100_000.0),
                             ("max_rate", 1e-3, 100.0), ("max_angle", 1e-3, 1.2), ("max_curvature", 1e-4, 0.1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                raise ConfigError(f"drive {name} must be a number in [{lo:g}, {hi:g}], not {v!r}")

    @property
    def steps(self) -> int:
        """Model calls in a drive that keeps its lane to the end."""
        return max(1, int(math.ceil(self.distance / (self.speed * self.dt) - 1e-9)))

    @classmethod
    def from_steps(cls, steps: int, **kw) -> "DriveSettings":
        speed = kw.get("speed", cls.speed)
        dt = kw.get("dt", cls.dt)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be a whole number >= 1, not {steps!r}")
        return cls(distance=steps * speed * dt, **kw)

    def to_dict(self) -> dict:
        return {"distance_m": self.distance, "speed_mps": self.speed, "dt_s": self.dt, "steps": self.steps,
                "max_steering_rate_radps": self.max_rate, "max_steering_angle_rad": self.max_angle,
                "max_curvature_per_m": self.max_curvature, "wheelbase_m": WHEELBASE, "track_m": vehicle.TRACK,
                "shared_weather": self.shared_weather}


@dataclass(frozen=True)
class DriveSetup:
    """The world of one drive: its road, its look, where the car starts and the condition's seed."""

    index: int
    campaign_seed: int
    road: Road
    scene: DriveScene
    start_offset: float
    start_heading: float
    condition_seed: int


def setup_drive(campaign_seed: int, index: int, settings: DriveSettings) -> DriveSetup:
    """Drive ``index`` of campaign seed ``campaign_seed``: each part from its own Generator."""
    seed, index = int(campaign_seed), int(index)
    scene = make_scene(np.random.default_rng([seed, index, 1]), settings.distance + AHEAD)
    road = make_road(settings.distance, [seed, index, 2], lane_width=scene.lane_width,
                     max_curvature=settings.max_curvature)
    rng = np.random.default_rng([seed, index, 3])
    start_offset = float(rng.uniform(-START_OFFSET, START_OFFSET))
    start_heading = float(rng.uniform(-START_HEADING, START_HEADING))
    condition_seed = int(rng.integers(0, 2**31 - 1))
    if settings.shared_weather:  # the campaign's one storm
        condition_seed = int(np.random.default_rng([seed, 0x57EA]).integers(0, 2**31 - 1))
    return DriveSetup(index=index, campaign_seed=seed, road=road, scene=scene, start_offset=start_offset,
                      start_heading=start_heading, condition_seed=condition_seed)


@dataclass
class Traces:
    """Everything that happened, per drive (row) and step (column): see TRACE_FIELDS.

    ``steps_driven[i]`` model calls were made in drive i; columns 0..steps_driven[i] hold its
    states (the last one where it ended: at the planned distance, or over the edge line).
    ``departed[i]`` is True when drive i left its lane; ``invalid[i]`` counts the steps whose
    model output was NaN or Inf (the car then held its steering).
    """

    data: dict[str, np.ndarray]
    steps_driven: np.ndarray
    departed: np.ndarray
    invalid: np.ndarray
    seconds: float = 0.0
    timing: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def row(self, i: int) -> dict[str, np.ndarray]:
        n = int(self.steps_driven[i]) + 1
        return {k: v[i, :n] for k, v in self.data.items()}


def lane_limit(lane_width) -> np.ndarray:
    """|offset| (m) past which a wheel is over an edge line of the lane: half the lane less half the track."""
    return np.asarray(lane_width, np.float64) / 2 - vehicle.TRACK / 2


Steer = Callable[[np.ndarray], np.ndarray]


def simulate(steer: Steer | None, setups: list[DriveSetup], condition: Condition | str, settings: DriveSettings,
             frame_hw: tuple[int, int], on_frames: Callable | None = None, threads: bool = True,
             progress: Callable[[int, int, int], None] | None = None) -> Traces:
    """Drive every setup at once. ``steer(frames)`` maps an (n, H, W, 3) uint8 batch to n steering
    angles (rad, positive = left); ``steer=None`` drives by the ground truth, pure pursuit on the true
    lane centre (the labels' controller: what a perfect model would do), and renders no frames unless
    ``on_frames`` wants them. ``on_frames(step, rows, frames)`` sees every batch the model saw
    (tests, pictures). ``progress(step, steps, active)`` is called once per step."""
    condition = parse_condition(condition)
    if not setups:
        raise ConfigError("no drives to run")
    h, w = int(frame_hw[0]), int(frame_hw[1])
    n, steps, dt = len(setups), settings.steps, settings.dt
    roads = Roads([s.road for s in setups])
    data = {k: np.full((n, steps + 1), np.nan) for k in TRACE_FIELDS}
    steps_driven = np.zeros(n, np.int64)
    departed = np.zeros(n, bool)
    invalid = np.zeros(n, np.int64)
    limit = lane_limit(roads.lane_width)
    seeds = [s.condition_seed for s in setups]
    timing = {"geometry": 0.0, "render": 0.0, "model": 0.0}

    # start: on the road at s = 0, off the centre line by start_offset, turned by start_heading
    all_rows = np.arange(n)
    x0, y0, th0 = roads.at(all_rows, np.zeros(n))
    off0 = np.array([s.start_offset for s in setups])
    state = vehicle.CarState(x=x0 - np.sin(th0) * off0, y=y0 + np.cos(th0) * off0,
                             psi=th0 - np.array([s.start_heading for s in setups]), delta=np.zeros(n))
    hint = np.zeros(n, np.int64)
    active = all_rows.copy()
    cameras = [camera_values(s, settings, (h, w)) for s in setups]
    constant_chains = [condition.chain(0.0, 0.0, c) for c in cameras] if condition.constant else None
    start = time.perf_counter()

    for k in range(steps + 1):
        t0 = time.perf_counter()
        rows = active
        st = _take(state, rows)
        proj = roads.project(rows, st.x, st.y, hint[rows])
        hint[rows] = proj.index
        fx, fy = st.front()
        fproj = roads.project(rows, fx, fy, proj.index, back=2, ahead=12)
        heading_error = _wrap(proj.theta - st.psi)
        cz, cy = centre_ahead(roads, rows, st.x, st.y, st.psi, proj.s)
        label = pursuit_angle(_at_lookahead(cz, cy))
        progress_k = k / steps
        sev = max((link.severity(progress_k) for link in condition.links), default=0.0)
        for name, value in (("x", st.x), ("y", st.y), ("psi", st.psi), ("s", proj.s), ("offset", proj.offset),
                            ("front_offset", fproj.offset), ("heading_error", heading_error),
                            ("curvature", proj.kappa), ("delta", st.delta), ("label", label)):
            data[name][rows, k] = value
        data["severity"][rows, k] = sev
        steps_driven[rows] = k
        out = np.maximum(np.abs(proj.offset), np.abs(fproj.offset)) > limit[rows]
        departed[rows[out]] = True
        keep = ~out
        if k == steps or not keep.any():
            active = rows[keep]
            break
        kept = np.flatnonzero(keep)
        rows, st = rows[keep], _take(st, keep)
        s_car, off, head, kap = proj.s[keep], proj.offset[keep], heading_error[keep], proj.kappa[keep]
        timing["geometry"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        if steer is None and on_frames is None:  # the pure-pursuit driver needs no pictures
            command = label[keep]
            data["command"][rows, k] = command
            _move(state, st, rows, command, settings)
            active = rows
            continue
        params = [frame_params(setups[r].scene, off[j], head[j], kap[j], centre_table(cz[kept[j]], cy[kept[j]]),
                               s_car[j], st.psi[j], k, h, w) for j, r in enumerate(rows)]
        if constant_chains is not None:
            chains = [constant_chains[r] for r in rows]
        else:
            chains = [condition.chain(progress_k, k * dt, cameras[r]) for r in rows]
        post, batched = _plan_condition(chains, [seeds[r] for r in rows])
        frames = render_frames(params, h, w, post=post, threads=threads)
        for chain, js, seed in batched:  # one call for all the cars that share the chain (and its seed)
            frames[js] = chain(frames[js], seed=seed)
        timing["render"] += time.perf_counter() - t0
        if on_frames is not None:
            on_frames(k, rows.copy(), frames)
        if k % CONTRAST_EVERY == 0:
            data["contrast"][rows, k] = frames.reshape(len(rows), -1).std(axis=1)

        t0 = time.perf_counter()
        command = label[keep] if steer is None else np.asarray(steer(frames), np.float64).reshape(-1)
        timing["model"] += time.perf_counter() - t0
        if command.shape != (len(rows),):
            raise ConfigError(f"the steering function returned {command.shape} values for {len(rows)} frames")
        data["command"][rows, k] = command
        bad = ~np.isfinite(command)
        if bad.any():
            invalid[rows[bad]] += 1
            command = np.where(bad, st.delta, command)
        _move(state, st, rows, command, settings)
        active = rows
        if progress is not None:
            progress(k, steps, len(rows))

    return Traces(data=data, steps_driven=steps_driven, departed=departed, invalid=invalid,
                  seconds=time.perf_counter() - start, timing={k: round(v, 3) for k, v in timing.items()})


_PROBE = np.random.default_rng(20240516).integers(0, 256, (1, 24, 32, 3), dtype=np.uint8)
_SEEDED: dict = {}


def _uses_seed(chain) -> bool:
    """Whether ``chain``'s pixels depend on its randomness seed (rain, snow, noise do; fog, brightness,
    blur and geometric transforms do not), tried once on a random probe frame. A chain that does
    not is applied to every car's frame in one batched call: transforms treat each image of a batch
    on its own (``Transform.__call__``), so the pixels are those of one call per car."""
    # the time and the camera do not decide whether a transform draws random numbers: probe once per
    # chain without them (a rain ramp: once per step; constant animated rain: once per campaign)
    key = tuple((t.name, tuple((k, v) for k, v in t.params.items() if k not in _NOT_RANDOMNESS)) for t in chain)
    if key not in _SEEDED:
        if len(_SEEDED) > 4096:
            _SEEDED.clear()
        _SEEDED[key] = not np.array_equal(chain(_PROBE, seed=1), chain(_PROBE, seed=2))
    return _SEEDED[key]


_NOT_RANDOMNESS = ("t", "horizon", "vfov_deg", "camera_height_m", "speed_kmh")


def _plan_condition(chains: list, row_seeds: list[int]):
    """How to apply each car's chain: ``[(chain, indices, seed), ...]``, one batched call for the cars
    that share a chain and (when its pixels depend on it) a seed, and ``post(j, frame)`` for the rest
    (each car with a seed of its own: one call per frame, in the render workers). A transform treats
    each image of a batch on its own with the call's randomness (``Transform.__call__``), so a batched
    call gives each car the pixels of a call of its own with that seed."""
    groups: dict = {}
    for j, chain in enumerate(chains):
        if not chain.is_identity:
            groups.setdefault((chain, row_seeds[j] if _uses_seed(chain) else 0), []).append(j)
    batched = [(chain, np.array(js), seed) for (chain, seed), js in groups.items() if len(js) > 1 or not seed]
    alone = {js[0] for (chain, seed), js in groups.items() if len(js) == 1 and seed}
    if not alone:
        return None, batched

    def post(j, img):
        return chains[j](img, seed=row_seeds[j]) if j in alone else img

    return post, batched


def camera_values(setup: "DriveSetup", settings: DriveSettings, frame_hw: tuple[int, int]) -> dict:
    """What a condition's transforms may need to know about the camera and the car, from the drive:
    the horizon row (fraction of the height), the vertical field of view of the renderer's camera
    (focal length w/2 pixels: 2 atan(h/w)), its height and the car's speed."""
    h, w = frame_hw
    return {"horizon": float(setup.scene.base.horizon), "vfov_deg": math.degrees(2 * math.atan(h / w)),
            "camera_height_m": CAMERA_HEIGHT, "speed_kmh": settings.speed * 3.6}


def _move(state: vehicle.CarState, st: vehicle.CarState, rows: np.ndarray, command: np.ndarray,
          settings: DriveSettings) -> None:
    """Apply the commands through the actuator, advance the cars ``rows`` by one step, in place."""
    st.delta = vehicle.actuate(st.delta, command, settings.dt, settings.max_rate, settings.max_angle)
    moved = vehicle.step(st, settings.speed, settings.dt)
    for name in ("x", "y", "psi", "delta"):
        getattr(state, name)[rows] = getattr(moved, name)


def _wrap(angle):
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _at_lookahead(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The lane centre's y (N,) at LOOKAHEAD metres ahead, interpolated linearly in each row of the
    camera tables (N, K) (z increases over the first metres of every table)."""
    i = np.clip((z < LOOKAHEAD).sum(axis=1), 1, z.shape[1] - 1)
    r = np.arange(len(z))
    z0, z1, y0, y1 = z[r, i - 1], z[r, i], y[r, i - 1], y[r, i]
    return y0 + (y1 - y0) * (LOOKAHEAD - z0) / (z1 - z0)


def _take(state: vehicle.CarState, rows) -> vehicle.CarState:
    return vehicle.CarState(state.x[rows], state.y[rows], state.psi[rows], state.delta[rows])


def replay_frames(setup: DriveSetup, condition: Condition | str, settings: DriveSettings, traces_row: dict,
                  frame_hw: tuple[int, int], steps) -> np.ndarray:
    """The frames drive ``setup`` showed its model at ``steps``, re-rendered from its trace: the same
    pixels the model saw (the trace holds every input of the renderer and of the condition)."""
    condition = parse_condition(condition)
    h, w = frame_hw
    roads = Roads([setup.road])
    out = []
    for k in steps:
        pose = [np.array([traces_row[name][k]]) for name in ("x", "y", "psi", "s")]
        cz, cy = centre_ahead(roads, np.zeros(1, np.int64), *pose)
        p = frame_params(setup.scene, traces_row["offset"][k], traces_row["heading_error"][k],
                         traces_row["curvature"][k], centre_table(cz[0], cy[0]), traces_row["s"][k],
                         traces_row["psi"][k], int(k), h, w)
        img = render_frames([p], h, w, threads=False)[0]
        chain = condition.chain(k / settings.steps, k * settings.dt, camera_values(setup, settings, (h, w)))
        if not chain.is_identity:
            img = chain(img, seed=setup.condition_seed)
        out.append(img)
    return np.stack(out) if out else np.zeros((0, h, w, 3), np.uint8)
