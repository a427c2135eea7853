"""What one drive did, in numbers, and the campaign's aggregate.

Per drive (from its trace; offsets in metres, positive = left of the lane centre):

- ``departed``: a wheel crossed an edge line of the lane: at the rear or the front axle,
  |offset| > lane_width/2 - track/2 (track 1.6 m). The drive fails and ends there.
- ``distance_to_departure_m``, ``time_to_departure_s``: how far and how long the car drove before
  (None when it kept its lane).
- ``max_abs_offset_m``, ``mean_abs_offset_m``: of the rear axle (the camera), over the drive;
  ``max_abs_axle_offset_m``: the larger of the rear and front axles' (what departure is judged on).
- ``steering_jerk_radps2``: the mean absolute second time-derivative of the model's steering
  commands, |c[k+1] - 2 c[k] + c[k-1]| / dt^2 (rad/s^2): how much the command shakes from frame to
  frame. A smooth driver on these roads stays below ~0.05; a condition that makes the model's
  answer jump frame to frame raises it even when the car keeps its lane.
- ``steering_error_rms_rad``: RMS of (command - pure-pursuit label of the same frame): the offline
  error, measured along the closed-loop trajectory.
- ``frame_contrast``: mean pixel standard deviation of the frames (grey levels, every 10th
  step); below ``UNUSABLE_CONTRAST`` the frames are close to a flat colour (``frames_unusable``).
- ``invalid_outputs``: steps whose model output was NaN or Inf (the car held its steering).
"""

from __future__ import annotations

import math

import numpy as np

from deeptest_iot.drive.vehicle import TRACK

UNUSABLE_CONTRAST = 4.0  # grey levels: a frame this flat shows no road to speak of


def _f(v, digits: int = 6):
    """A JSON-able rounded float (None for NaN)."""
    if v is None:
        return None
    v = float(v)
    return None if not math.isfinite(v) else round(v, digits)


def drive_metrics(traces, i: int, settings, lane_width: float | None = None) -> dict:
    """The metrics of drive ``i`` of ``traces`` (see the module doc)."""
    row = traces.row(i)
    n = int(traces.steps_driven[i])
    dt = settings.dt
    off = np.abs(row["offset"])
    axle = np.maximum(off, np.abs(row["front_offset"]))
    cmd = row["command"][:n]
    cmd = cmd[np.isfinite(cmd)]
    jerk = float(np.mean(np.abs(np.diff(cmd, 2)))) / dt ** 2 if len(cmd) >= 3 else 0.0
    err = row["command"][:n] - row["label"][:n]
    err = err[np.isfinite(err)]
    contrast = row["contrast"][np.isfinite(row["contrast"])]
    departed = bool(traces.departed[i])
    out = {
        "departed": departed,
        "steps": n,
        "distance_m": _f(n * settings.speed * dt, 3),
        "distance_to_departure_m": _f(n * settings.speed * dt, 3) if departed else None,
        "time_to_departure_s": _f(n * dt, 3) if departed else None,
        "max_abs_offset_m": _f(off.max()),
        "mean_abs_offset_m": _f(off.mean()),
        "max_abs_axle_offset_m": _f(axle.max()),
        "steering_jerk_radps2": _f(jerk),
        "steering_error_rms_rad": _f(math.sqrt(float(np.mean(err ** 2)))) if len(err) else None,
        "frame_contrast": _f(contrast.mean(), 3) if len(contrast) else None,
        "frames_unusable": bool(len(contrast) and contrast.mean() < UNUSABLE_CONTRAST),
        "invalid_outputs": int(traces.invalid[i]),
    }
    if lane_width is not None:
        out["lane_width_m"] = _f(lane_width, 3)
        out["lane_limit_m"] = _f(lane_width / 2 - TRACK / 2, 3)
    return out


def aggregate(per_drive: list[dict]) -> dict:
    """Campaign figures over the drives: failure rate, and means and maxima of the drive metrics."""
    n = len(per_drive)
    failed = [d for d in per_drive if d["departed"]]

    def mean(key, rows=per_drive):
        vals = [d[key] for d in rows if d.get(key) is not None]
        return _f(sum(vals) / len(vals)) if vals else None

    def worst(key):
        vals = [d[key] for d in per_drive if d.get(key) is not None]
        return _f(max(vals)) if vals else None

    return {
        "drives": n,
        "failures": len(failed),
        "failure_rate": _f(len(failed) / n if n else 0.0),
        "mean_distance_to_departure_m": mean("distance_to_departure_m", failed),
        "min_distance_to_departure_m": _f(min(d["distance_to_departure_m"] for d in failed)) if failed else None,
        "mean_time_to_departure_s": mean("time_to_departure_s", failed),
        "max_abs_offset_m": worst("max_abs_offset_m"),
        "mean_max_abs_offset_m": mean("max_abs_offset_m"),
        "mean_abs_offset_m": mean("mean_abs_offset_m"),
        "mean_steering_jerk_radps2": mean("steering_jerk_radps2"),
        "max_steering_jerk_radps2": worst("steering_jerk_radps2"),
        "mean_steering_error_rms_rad": mean("steering_error_rms_rad"),
        "mean_frame_contrast": mean("frame_contrast"),
        "drives_with_unusable_frames": sum(1 for d in per_drive if d["frames_unusable"]),
        "invalid_outputs": sum(d["invalid_outputs"] for d in per_drive),
    }
