"""A campaign of drives: N drives under one condition, their metrics, and a run folder on disk.

The folder is of the run-folder family (``docs/results-format.md``; the drive keys in
``docs/closed-loop.md``):

    summary.json     status, drives, failures, failure rate, aggregate metrics, every drive's metrics
    findings.jsonl   one line per failing drive: condition, seeds, metrics (a recipe: the drive
                     replays from them)
    traces.npz       every drive's trace (pose, offsets, steering, pure-pursuit label), NaN after its end
    drives/          drive-NNNN.webp: each failing drive as an animation of what its camera saw
    report.html      failing drives as animations beside their lateral-offset traces

Everything is written atomically (temp file + rename); findings.jsonl is written once, at the end.
"""

from __future__ import annotations

import dataclasses
import io
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deeptest_iot import __version__
from deeptest_iot.drive.condition import Condition, parse_condition
from deeptest_iot.drive.loop import DriveSettings, Traces, setup_drive, simulate
from deeptest_iot.drive.metrics import aggregate, drive_metrics
from deeptest_iot.drive.steer import check_steering_model, model_steering
from deeptest_iot.errors import ConfigError
from deeptest_iot.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

SAMPLE_MODEL = "dave2_steering"
RELATION = "lane_keeping"
SUMMARY, FINDINGS, TRACES, DRIVES, REPORT = "summary.json", "findings.jsonl", "traces.npz", "drives", "report.html"


@dataclass
class DriveReport:
    """What a campaign of drives found. ``passed`` when no drive left its lane."""

    condition: Condition
    settings: DriveSettings
    seed: int
    per_drive: list[dict]
    metrics: dict
    traces: Traces = field(repr=False)
    setups: list = field(repr=False, default_factory=list)
    model_name: str = ""
    frame_hw: tuple[int, int] = (0, 0)
    out_dir: Path | None = None
    summary: dict = field(default_factory=dict, repr=False)

    @property
    def drives(self) -> int:
        return len(self.per_drive)

    @property
    def failing(self) -> list[int]:
        """Indices of the drives that left their lane."""
        return [d["drive"] for d in self.per_drive if d["departed"]]

    @property
    def failures(self) -> int:
        return len(self.failing)

    @property
    def failure_rate(self) -> float:
        return self.failures / self.drives if self.drives else 0.0

    @property
    def passed(self) -> bool:
        return self.failures == 0

    def message(self, shown: int = 8) -> str:
        """A failure message naming the failing drives (index, where they left the lane, how far out)."""
        bad = sorted((d for d in self.per_drive if d["departed"]), key=lambda d: d["distance_to_departure_m"])
        lines = [f"{len(bad)} of {self.drives} drive(s) of model {self.model_name!r} left their lane under "
                 f"{self.condition.text} (seed {self.seed}, {self.settings.distance:g} m at "
                 f"{self.settings.speed:g} m/s):"]
        for d in bad[:shown]:
            lines.append(f"  drive {d['drive']}: a wheel crossed the edge line after {d['distance_to_departure_m']:.1f} m "
                         f"({d['time_to_departure_s']:.1f} s); |offset| reached {d['max_abs_axle_offset_m']:.2f} m of "
                         f"{d['lane_limit_m']:.2f} m allowed; steering error RMS {d['steering_error_rms_rad']:.4f} rad")
        if len(bad) > shown:
            lines.append(f"  ... and {len(bad) - shown} more")
        if self.out_dir is not None:
            lines.append(f"animations and traces: {self.out_dir / REPORT}")
        return "\n".join(lines)


def _libraries() -> dict:
    import cv2

    out = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}
    try:
        import keras
        import tensorflow as tf

        out.update(tensorflow=tf.__version__, keras=keras.__version__)
    except ImportError:  # pragma: no cover
        pass
    return out


def frame_size(card) -> tuple[int, int]:
    """Frames are rendered at the size the card's crop turns into the network input (no resize)."""
    from deeptest_iot.engine.campaign import generated_frame_size

    return generated_frame_size(card)


def drive_campaign(mut, condition: Condition | str, drives: int = 20, seed: int = 0,
                   settings: DriveSettings | None = None, batch: int = 64,
                   progress: Callable[[str], None] | None = None) -> DriveReport:
    """Run ``drives`` drives of ``mut`` under ``condition``, ``batch`` cars at a time; no files written."""
    check_steering_model(mut)
    condition = parse_condition(condition)
    settings = settings or DriveSettings()
    if isinstance(drives, bool) or not isinstance(drives, int) or drives < 1:
        raise ConfigError(f"drives must be a whole number >= 1, not {drives!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, not {seed!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be a whole number >= 1, not {batch!r}")
    hw = frame_size(mut.card)
    steer = model_steering(mut)
    setups = [setup_drive(seed, i, settings) for i in range(drives)]
    parts = []
    for start in range(0, drives, batch):
        chunk = setups[start:start + batch]
        tell = None if progress is None else _progress(progress, start, len(chunk))
        parts.append(simulate(steer, chunk, condition, settings, hw, progress=tell))
    traces = _join(parts)
    per_drive = []
    for i, s in enumerate(setups):
        m = drive_metrics(traces, i, settings, s.road.lane_width)
        per_drive.append({"drive": i, "condition_seed": s.condition_seed, **m})
    return DriveReport(condition=condition, settings=settings, seed=seed, per_drive=per_drive,
                       metrics=aggregate(per_drive), traces=traces, setups=setups, model_name=mut.name,
                       frame_hw=hw)


def _progress(echo: Callable[[str], None], start: int, n: int):
    def tell(k, steps, active):
        if k % 100 == 0 or k == steps - 1:
            echo(f"drives {start}-{start + n - 1}: step {k + 1}/{steps}, {active} in their lane\n")

    return tell


def _join(parts: list[Traces]) -> Traces:
    if len(parts) == 1:
        return parts[0]
    data = {k: np.concatenate([p.data[k] for p in parts]) for k in parts[0].data}
    timing = {k: round(sum(p.timing.get(k, 0.0) for p in parts), 3) for k in parts[0].timing}
    return Traces(data=data, steps_driven=np.concatenate([p.steps_driven for p in parts]),
                  departed=np.concatenate([p.departed for p in parts]),
                  invalid=np.concatenate([p.invalid for p in parts]),
                  seconds=sum(p.seconds for p in parts), timing=timing)


# -- the run folder --------------------------------------------------------------------------------
def check_out_dir(out: Path) -> None:
    """Never overwrite results: refuse a folder that already holds a campaign."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a folder")
    for name in (SUMMARY, FINDINGS):
        if (out / name).exists():
            raise ConfigError(f"{out} already holds results ({name}); choose another --out "
                              "(deeptest-iot never overwrites results)")


def finding_records(report: DriveReport) -> list[dict]:
    """findings.jsonl lines (without ``id``): one per failing drive, a recipe to replay it."""
    records = []
    for d in report.per_drive:
        if not d["departed"]:
            continue
        i = d["drive"]
        chain = report.condition.chain(0.0, 0.0)
        records.append({
            "drive": i, "seed_id": f"drive-{report.seed}-{i}", "seed_index": i, "relation": RELATION,
            "transform": report.condition.name, "condition": report.condition.text,
            "chain": [t.to_dict() for t in chain.transforms], "severity": round(report.condition.max_severity, 6),
            "campaign_seed": report.seed, "condition_seed": d["condition_seed"],
            "violation": round(d["max_abs_axle_offset_m"] - d["lane_limit_m"], 6), "threshold": d["lane_limit_m"],
            "metrics": {k: v for k, v in d.items() if k not in ("drive", "condition_seed")},
            "images": {"animation": f"{DRIVES}/drive-{i:04d}.webp"},
        })
    return records


def build_summary(report: DriveReport, model_info: dict, options: dict, status: str, duration: float) -> dict:
    m = report.metrics
    mean_violation = [d["max_abs_axle_offset_m"] - d["lane_limit_m"] for d in report.per_drive if d["departed"]]
    return {
        "format": 1, "kind": "drive", "tool": {"name": "deeptest-iot", "version": __version__},
        "libraries": _libraries(), "model": model_info,
        "campaign": {**options, "condition": report.condition.to_dict(), "seed": report.seed,
                     "drives": report.drives, "settings": report.settings.to_dict(),
                     "frame_size": list(report.frame_hw), "relation": {"name": RELATION, "rule":
                     "a wheel over an edge line of the lane: |offset| > lane_width/2 - track/2, at either axle"}},
        "status": status,
        "drives": report.drives, "failures": report.failures, "failure_rate": m["failure_rate"],
        "findings": report.failures, "inputs_tried": int(report.traces.steps_driven.sum()),
        "error_rate": m["failure_rate"], "metrics": m,
        "per_transform": {report.condition.name: {
            "tried": report.drives, "findings": report.failures, "error_rate": m["failure_rate"],
            "mean_violation": sum(mean_violation) / len(mean_violation) if mean_violation else 0.0,
            "max_violation": max(mean_violation, default=0.0)}},
        "per_drive": report.per_drive,
        "duration_s": round(duration, 3),
        "timing_s": report.traces.timing,
    }


def save_traces(path: Path, report: DriveReport) -> None:
    buf = io.BytesIO()
    arrays = {k: v for k, v in report.traces.data.items()}
    np.savez_compressed(buf, steps_driven=report.traces.steps_driven, departed=report.traces.departed,
                        invalid=report.traces.invalid,
                        lane_width=np.array([s.road.lane_width for s in report.setups]), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_traces(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def write_run(report: DriveReport, out: Path, model_info: dict, options: dict, duration: float,
              show: int = 12, echo: Callable[[str], None] | None = None) -> dict:
    """Write the run folder of a finished campaign; returns its summary."""
    from deeptest_iot.drive.report import write_animations, write_drive_report

    out.mkdir(parents=True, exist_ok=True)
    save_traces(out / TRACES, report)
    records = finding_records(report)
    write_animations(report, out, [r["drive"] for r in records], echo=echo)
    lines = [json.dumps({"id": f"f{k:06d}", **r}, allow_nan=False) + "\n" for k, r in enumerate(records)]
    atomic_write_text(out / FINDINGS, "".join(lines))
    summary = build_summary(report, model_info, options, "complete", duration)
    atomic_write_json(out / SUMMARY, summary)
    report.summary = summary
    report.out_dir = out
    write_drive_report(out, show=show)
    return summary


def model_info(mut) -> dict:
    return {"path": mut.path, "name": mut.name, "fingerprint": mut.fingerprint, "task": mut.card.task,
            "card": mut.card.to_dict(), "units": getattr(mut.card, "units", "radians")}


def load_for_drive(model: Any = None, card: str | None = None, trust_model: bool = False, batch: int = 64):
    """The model to drive: a ModelUnderTest as is, a Keras model or a path (default: the sample
    steering model), loaded so that one call takes a whole batch of cars."""
    from deeptest_iot.model.core import DEFAULT_BATCH, ModelUnderTest, load_model

    if isinstance(model, ModelUnderTest):
        return model
    if model is None:
        from deeptest_iot import sample_models

        model = str(sample_models.path(SAMPLE_MODEL))
    if isinstance(model, Path):
        model = str(model)
    return load_model(model, card, trust=trust_model, batch_size=max(DEFAULT_BATCH, int(batch)))


def run_drives(model: Any = None, condition: Condition | str = "none", drives: int = 20, seed: int = 0,
               settings: DriveSettings | None = None, out: str | Path | None = None, card: str | None = None,
               trust_model: bool = False, batch: int = 64, show: int = 12,
               echo: Callable[[str], None] | None = None) -> DriveReport:
    """A campaign of drives; with ``out``, also its run folder (summary, findings, traces, report)."""
    condition = parse_condition(condition)  # bad conditions fail before the model loads
    settings = settings or DriveSettings()
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        check_out_dir(out_path)
    mut = load_for_drive(model, card, trust_model, batch)
    check_steering_model(mut)
    start = time.perf_counter()
    info = model_info(mut)
    options = {"batch": batch}
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_path / SUMMARY, {
            "format": 1, "kind": "drive", "tool": {"name": "deeptest-iot", "version": __version__},
            "model": info, "campaign": {"condition": condition.to_dict(), "seed": seed, "drives": drives,
                                        "settings": settings.to_dict()}, "status": "running"})
    report = drive_campaign(mut, condition, drives=drives, seed=seed, settings=settings, batch=batch,
                            progress=echo)
    duration = time.perf_counter() - start
    report.summary = build_summary(report, info, options, "complete", duration)
    if out_path is not None:
        write_run(report, out_path, info, options, duration, show=show, echo=echo)
    return report


def keeps_lane(model, condition: Condition | str = "none", drives: int = 8, seed: int = 0,
               distance: float | None = None, steps: int | None = None, speed: float | None = None,
               out: str | Path | None = None, **settings: Any) -> DriveReport:
    """Drive ``model`` ``drives`` times under ``condition``; ``report.passed`` when every drive kept
    its lane. ``distance`` (m) or ``steps`` sets the drives' length (default 300 m), ``speed`` their
    speed (default 12 m/s); other keyword arguments go to DriveSettings. With ``out``, the run folder
    (with the HTML report of failing drives) is written there."""
    known = {f.name for f in dataclasses.fields(DriveSettings)} - {"distance"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"keeps_lane: unknown option(s) {', '.join(unknown)}; known: distance, steps, speed, "
                          f"out, {', '.join(sorted(known - {'speed'}))}")
    kw = dict(settings)
    if speed is not None:
        kw["speed"] = speed
    if steps is not None and distance is not None:
        raise ConfigError("give the drives' length as distance or as steps, not both")
    s = DriveSettings.from_steps(steps, **kw) if steps is not None else DriveSettings(
        **({"distance": distance} if distance is not None else {}), **kw)
    return run_drives(model, condition, drives=drives, seed=seed, settings=s, out=out)


__all__ = ["DriveReport", "drive_campaign", "keeps_lane", "run_drives"]
