"""The drive campaign's report: each failing drive as an animation of its camera beside its offset trace.

Animations are animated WebP (Pillow): the frames the model saw, re-rendered from the drive's
trace (the trace holds every input of the renderer and of the condition, so they are the same
pixels), scaled up 2x, with the model's steering command as an arrow (its angle times
``ARROW_GAIN``: a few hundredths of a radian would not show), the time, the lateral offset
and a gauge of where the car sits in its lane. They cover the last ``ANIMATION_SECONDS`` before the
departure at ``ANIMATION_FPS``. ``report.html`` is self-contained like the campaign report (the
animations embedded as data URIs, the traces as inline SVG, no script, no network reference).
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from deeptest_iot import __version__
from deeptest_iot.errors import InputError
from deeptest_iot.fileio import atomic_write_bytes, atomic_write_text
from deeptest_iot.results.report import CSS, e, fmt, nice_step, pct
from deeptest_iot.tasks.drawing import draw_steering

ANIMATION_FPS = 10
ANIMATION_SECONDS = 12.0
ANIMATION_SCALE = 2
HOLD_LAST_MS = 1500
ARROW_GAIN = 10  # the steering arrow's angle is the command's times this: 0.02 rad would not show
WEBP_QUALITY = 70
ARROW_BGR, TEXT_BGR, EDGE_BGR, CAR_BGR = (40, 40, 235), (255, 255, 255), (60, 60, 235), (60, 200, 60)


def _text(img: np.ndarray, text: str, org: tuple[int, int]) -> None:
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.42
    (w, h), base = cv2.getTextSize(text, font, size, 1)
    x, y = org
    cv2.rectangle(img, (x - 2, y - h - 3), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), font, size, TEXT_BGR, 1, cv2.LINE_AA)


def _gauge(img: np.ndarray, offset: float, limit: float, lane_width: float) -> None:
    """Where the car sits in its lane, seen from behind: the lane's edge lines, the departure limits
    (red ticks) and the car (green), at the top right; positive offsets (left) drawn to the left."""
    h, w = img.shape[:2]
    gw, gy = 120, 16
    x0 = w - gw - 10
    scale = gw / (lane_width + 1.0)
    cx = x0 + gw / 2
    cv2.rectangle(img, (x0 - 4, gy - 10), (x0 + gw + 4, gy + 10), (0, 0, 0), -1)
    for side in (-1, 1):
        xe = int(round(cx + side * lane_width / 2 * scale))
        cv2.line(img, (xe, gy - 8), (xe, gy + 8), (235, 235, 235), 2)
        xl = int(round(cx + side * limit * scale))
        cv2.line(img, (xl, gy - 5), (xl, gy + 5), EDGE_BGR, 1)
    xc = int(round(cx - offset * scale))
    cv2.rectangle(img, (xc - 5, gy - 6), (xc + 5, gy + 6), CAR_BGR, -1)


def annotate(frame_rgb: np.ndarray, t: float, offset: float, command: float | None, limit: float,
             lane_width: float, departed: bool) -> np.ndarray:
    """One animation frame: the model's frame scaled up, with the steering arrow, text and lane gauge."""
    h, w = frame_rgb.shape[:2]
    img = cv2.resize(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), (w * ANIMATION_SCALE, h * ANIMATION_SCALE),
                     interpolation=cv2.INTER_LINEAR)
    if command is not None and math.isfinite(command):
        draw_steering(img, command * ARROW_GAIN, ARROW_BGR, "radians", thickness=2)
    steer = f"  steer {command:+.3f} rad" if command is not None and math.isfinite(command) else ""
    _text(img, f"t {t:5.1f} s  offset {offset:+.2f} m{steer}", (6, img.shape[0] - 8))
    _gauge(img, offset, limit, lane_width)
    if departed:
        _text(img, "LANE DEPARTURE", (6, 18))
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def animation_steps(steps_driven: int, dt: float, fps: float = ANIMATION_FPS,
                    seconds: float = ANIMATION_SECONDS) -> list[int]:
    """Steps shown: every ``1/(fps dt)``-th over the last ``seconds``, always ending at the last step."""
    stride = max(1, int(round(1.0 / (fps * dt))))
    first = max(0, steps_driven - int(round(seconds / dt)))
    ks = list(range(steps_driven, first - 1, -stride))[::-1]
    return ks


def encode_animation(frames: list[np.ndarray], durations_ms: list[int], fmt: str = "webp") -> bytes:
    """Animated WebP (or GIF) bytes of RGB frames, looping forever."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is an install requirement
        raise InputError("the drive report's animations need Pillow: pip install pillow") from None
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    buf = io.BytesIO()
    if fmt == "gif":
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=durations_ms,
                       loop=0, disposal=1)
    else:
        images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], duration=durations_ms,
                       loop=0, quality=WEBP_QUALITY, method=4)
    return buf.getvalue()


def drive_animation(report, i: int, fmt: str = "webp") -> bytes:
    """The animation of drive ``i`` of a DriveReport: its camera over its last seconds."""
    from deeptest_iot.drive.loop import lane_limit, replay_frames

    setup = report.setups[i]
    row = report.traces.row(i)
    n = int(report.traces.steps_driven[i])
    dt = report.settings.dt
    ks = animation_steps(n, dt)
    frames = replay_frames(setup, report.condition, report.settings, row, report.frame_hw, ks)
    limit = float(lane_limit(setup.road.lane_width))
    departed = bool(report.traces.departed[i])
    out = []
    for frame, k in zip(frames, ks):
        cmd = row["command"][k] if k < n else None
        out.append(annotate(frame, k * dt, float(row["offset"][k]), None if cmd is None else float(cmd), limit,
                            setup.road.lane_width, departed and k == n))
    durations = [int(round(1000 / ANIMATION_FPS))] * len(out)
    durations[-1] = HOLD_LAST_MS
    return encode_animation(out, durations, fmt)


def write_animations(report, out: Path, drives: list[int], echo: Callable[[str], None] | None = None) -> None:
    """drives/drive-NNNN.webp for each drive in ``drives``."""
    folder = Path(out) / "drives"
    folder.mkdir(parents=True, exist_ok=True)
    for i in drives:
        atomic_write_bytes(folder / f"drive-{i:04d}.webp", drive_animation(report, i))
    if echo is not None and drives:
        echo(f"{len(drives)} animation(s) written to {folder}\n")


# -- charts ----------------------------------------------------------------------------------------
def offset_svg(distance: np.ndarray, offset: np.ndarray, limit: float, departed: bool, severity=None,
               front: np.ndarray | None = None, width: int = 520, height: int = 230) -> str:
    """Lateral offset (m, positive = left) of the rear axle (blue) and the front axle (light blue)
    against distance (m): the departure limits as red dashed lines, the departure as a red dot on the
    axle that crossed, the condition's severity (when it ramps, 0 at the bottom to 1 at the top) as a
    grey line."""
    ok = np.isfinite(offset)
    distance, offset = distance[ok], offset[ok]
    front = None if front is None else np.asarray(front)[ok]
    left, right, top, bottom = 46, 12, 12, 34
    pw, ph = width - left - right, height - top - bottom
    xmax = max(float(distance[-1]) if len(distance) else 1.0, 1.0)
    both = offset if front is None else np.concatenate([offset, front])
    ymax = max(limit * 1.25, float(np.max(np.abs(both))) * 1.05 if len(both) else 0.0, 0.2)

    def x(v):
        return left + pw * float(v) / xmax

    def y(v):
        return top + ph * (0.5 - float(v) / (2 * ymax))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="lateral offset trace">']
    ystep = nice_step(ymax / 3)
    k = -math.floor(ymax / ystep)
    while k * ystep <= ymax + 1e-9:
        v = k * ystep
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:+.1f}</text>')
        k += 1
    xstep = nice_step(xmax / 6)
    for j in range(int(xmax // xstep) + 1):
        v = j * xstep
        parts.append(f'<line x1="{x(v):.1f}" y1="{top + ph}" x2="{x(v):.1f}" y2="{top + ph + 4}" class="grid"/>')
        parts.append(f'<text x="{x(v):.1f}" y="{top + ph + 16}" text-anchor="middle">{v:g}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 3}" text-anchor="middle">distance (m); '
                 f'offset (m, + = left of the lane centre)</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    for v in (-limit, limit):
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" stroke="#d62728" '
                     f'stroke-dasharray="5,4" stroke-width="1.5"/>')
    if severity is not None:
        sev = np.asarray(severity)[ok]
        if len(sev) and np.nanmax(sev) - np.nanmin(sev) > 1e-9:
            coords = " ".join(f"{x(a):.1f},{top + ph * (1 - float(s)):.1f}" for a, s in zip(distance, sev))
            parts.append(f'<polyline points="{coords}" fill="none" stroke="#999" stroke-width="1"/>')
    stride = max(1, len(distance) // 600)

    def line(values, colour, w):
        coords = " ".join(f"{x(a):.1f},{y(o):.1f}" for a, o in zip(distance[::stride], values[::stride]))
        if len(distance) and (len(distance) - 1) % stride:
            coords += f" {x(distance[-1]):.1f},{y(values[-1]):.1f}"
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="{w}"/>')

    if front is not None:
        line(front, "#9ecae1", 1.5)
    line(offset, "#1f77b4", 2)
    if departed and len(distance):
        last = offset[-1] if front is None or abs(offset[-1]) >= abs(front[-1]) else front[-1]
        parts.append(f'<circle cx="{x(distance[-1]):.1f}" cy="{y(last):.1f}" r="5" fill="#d62728"/>')
    parts.append("</svg>")
    return "".join(parts)


# -- the page --------------------------------------------------------------------------------------
def _card(label: str, value: str) -> str:
    return f'<div class="card"><div class="num">{value}</div><div class="lbl">{e(label)}</div></div>'


def _kv(pairs) -> str:
    return '<table class="kv">' + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in pairs) + "</table>"


DRIVE_COLUMNS = (("drive", "drive"), ("departed", "left lane"), ("distance_to_departure_m", "departure at (m)"),
                 ("max_abs_offset_m", "max |offset| (m)"), ("mean_abs_offset_m", "mean |offset| (m)"),
                 ("lane_limit_m", "limit (m)"), ("steering_jerk_radps2", "jerk (rad/s\u00b2)"),
                 ("steering_error_rms_rad", "error RMS (rad)"), ("frame_contrast", "contrast"))


def render_drive_report(out_dir: str | Path, show: int = 12) -> str:
    """The HTML report of a drive run folder."""
    out = Path(out_dir)
    try:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{out}: no readable summary.json ({exc})") from None
    from deeptest_iot.drive.campaign import load_traces

    traces = load_traces(out / "traces.npz")
    camp = summary.get("campaign") or {}
    settings = camp.get("settings") or {}
    model = summary.get("model") or {}
    m = summary.get("metrics") or {}
    per_drive = summary.get("per_drive") or []
    cond = (camp.get("condition") or {}).get("text", "?")
    cards = "".join([
        _card("drives", fmt(summary.get("drives"))), _card("left their lane", fmt(summary.get("failures"))),
        _card("failure rate", pct(summary.get("failure_rate"))),
        _card("mean distance to departure", fmt(m.get("mean_distance_to_departure_m"), 1) + " m"
              if m.get("mean_distance_to_departure_m") is not None else "\u2014"),
        _card("mean |offset|", fmt(m.get("mean_abs_offset_m"), 3) + " m"),
        _card("mean steering jerk", fmt(m.get("mean_steering_jerk_radps2"), 3)),
        _card("duration", fmt(summary.get("duration_s"), 1) + " s")])
    warn = ""
    if m.get("drives_with_unusable_frames"):
        warn = (f'<p class="warn">{e(m["drives_with_unusable_frames"])} drive(s) saw frames with almost no contrast '
                f'(mean pixel std below 4 grey levels): under {e(cond)} the camera shows next to nothing. '
                'The drives still ran to their end or their departure.</p>')
    if summary.get("status") != "complete":
        warn += f'<p class="warn">Status: {e(summary.get("status"))}: the campaign is running or was stopped.</p>'
    head = "".join(f"<th>{e(t)}</th>" for _, t in DRIVE_COLUMNS)
    rows = []
    for d in per_drive:
        cells = []
        for key, _ in DRIVE_COLUMNS:
            v = d.get(key)
            if key == "departed":
                cells.append(f'<td>{"<b>yes</b>" if v else "no"}</td>')
            else:
                cells.append(f'<td class="n">{fmt(v, 3)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    failing = sorted((d for d in per_drive if d.get("departed")), key=lambda d: d["distance_to_departure_m"])
    figures = []
    speed, dt = float(settings.get("speed_mps", 12.0)), float(settings.get("dt_s", 0.05))
    for d in failing[:show]:
        i = d["drive"]
        n = int(traces["steps_driven"][i])
        dist = np.arange(n + 1) * speed * dt
        svg = offset_svg(dist, traces["offset"][i, :n + 1], float(d["lane_limit_m"]), True,
                         traces["severity"][i, :n + 1], traces["front_offset"][i, :n + 1])
        anim = out / "drives" / f"drive-{i:04d}.webp"
        img = (f'<img src="data:image/webp;base64,{base64.b64encode(anim.read_bytes()).decode("ascii")}" '
               f'alt="drive {i} camera" width="400">') if anim.is_file() else '<p class="muted">no animation</p>'
        caption = (f"drive {i}: left its lane after {d['distance_to_departure_m']:.1f} m "
                   f"({d['time_to_departure_s']:.1f} s); max |offset| {d['max_abs_axle_offset_m']:.2f} m of "
                   f"{d['lane_limit_m']:.2f} m; steering error RMS {d['steering_error_rms_rad']:.4f} rad; "
                   f"jerk {d['steering_jerk_radps2']:.2f} rad/s\u00b2; condition seed {d['condition_seed']}")
        figures.append(f'<figure class="drive"><div class="imgs">{img}{svg}</div>'
                       f'<figcaption>{e(caption)}</figcaption></figure>')
    more = (f'<p class="note">{len(failing) - show} more failing drive(s) are in the table above and in '
            f'findings.jsonl.</p>') if len(failing) > show else ""
    fails_html = ("".join(figures) + more) if failing else '<p>Every drive kept its lane.</p>'
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings_rows = [("condition", cond), ("campaign seed", camp.get("seed")), ("frame size", camp.get("frame_size")),
                     *settings.items(), ("relation", (camp.get("relation") or {}).get("rule"))]
    model_rows = [(k, model.get(k)) for k in ("name", "path", "fingerprint", "task", "units")]
    css = CSS + ("figure.drive{margin:10px 0}figure.drive .imgs{display:flex;flex-wrap:wrap;gap:12px;align-items:center}"
                 "figure.drive img{border-radius:3px;border:1px solid #ccd}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>deeptest-iot drive report: {e(model.get("name", "model"))} under {e(cond)}</title>'
        f'<style>{css}</style></head><body>'
        f'<header><h1>Closed-loop lane keeping: {e(model.get("name", "model"))} under {e(cond)}</h1>'
        f'<p>folder {e(out.resolve())}</p></header><main>'
        f'<section id="overview">{warn}<div class="cards">{cards}</div></section>'
        f'<section id="failing"><h2>Drives that left their lane ({len(failing)})</h2>'
        '<p class="note">Left: what the camera saw (the frames the model saw, scaled 2x) over the last '
        f'{ANIMATION_SECONDS:g} s, with the model\'s steering command (red arrow, its angle exaggerated '
        f'{ARROW_GAIN:g}x) and where the car sits in its lane (top right: white edge lines, red departure limits, '
        'green car). Right: the lateral offset of the rear axle (blue; the camera sits above it) and of the front '
        'axle (light blue) along the drive, the departure limits dashed (grey: the severity, when it ramps).</p>'
        f'{fails_html}</section>'
        f'<section id="drives"><h2>Every drive</h2><table><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></section>'
        f'<section id="settings"><h2>Settings</h2><div class="cols"><div><h3>Drives</h3>{_kv(settings_rows)}</div>'
        f'<div><h3>Model</h3>{_kv(model_rows)}</div></div></section>'
        f'</main><footer>Generated by deeptest-iot {e(__version__)} on {e(generated)}.</footer></body></html>\n')


def write_drive_report(out_dir: str | Path, path: str | Path | None = None, show: int = 12) -> Path:
    text = render_drive_report(out_dir, show=show)
    target = Path(path) if path is not None else Path(out_dir) / "report.html"
    return atomic_write_text(target, text)
