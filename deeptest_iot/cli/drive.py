"""`deeptest-iot drive`: a campaign of closed-loop drives of a steering model under a condition."""

from __future__ import annotations

import sys

import click

from deeptest_iot.engine.options import TRUST_HELP


@click.command("drive")
@click.option("--model", type=click.Path(), help="Steering model to drive (.keras, .h5, .tflite, .onnx, SavedModel "
              "dir). Default: the shipped sample steering model dave2_steering.")
@click.option("--card", type=click.Path(dir_okay=False), help="Model card TOML (default: the .toml beside the model).")
@click.option("--condition", default="none", show_default=True, metavar="COND",
              help="Transform chain applied to every frame: NAME:SEVERITY (fog:0.5), a ramp NAME:START-END "
                   "(rain:0.3-0.8, along the drive), links joined by + (fog:0.4+rain:0.3), or none.")
@click.option("--drives", type=click.IntRange(min=1), default=20, show_default=True, help="Drives (cars) to run.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Campaign seed: roads, scenes and the condition's randomness; same seed, same drives.")
@click.option("--distance", type=float, default=None, help="Length of each drive in metres [300].")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Length of each drive in steps "
              "(model calls), instead of --distance.")
@click.option("--speed", type=float, default=None, help="Constant speed in m/s [12].")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Cars driven at once (one model call per step for all of them).")
@click.option("--per-drive-weather", is_flag=True, help="Give every drive its own rain and snow instead of one storm "
              "for all cars (slower: a step's weather is then drawn once per car, not once per batch).")
@click.option("--max-failure-rate", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Exit 1 when the share of drives that leave their lane is above this.")
@click.option("--show", type=click.IntRange(min=0), default=12, show_default=True,
              help="Failing drives shown as animations in report.html (shortest drives first).")
@click.option("--out", type=click.Path(file_okay=False), default="deeptest-drive", show_default=True,
              help="Output folder (must not hold results already).")
@click.option("--trust-model", is_flag=True, help=TRUST_HELP)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def drive(model, card, condition, drives, seed, distance, steps, speed, batch, per_drive_weather, max_failure_rate,
          show, out, trust_model, quiet):
    """Drive a steering model in closed loop: N cars on procedural roads, each camera frame rendered
    from the car's pose and passed through the condition, the model's answer steering the car. A drive
    fails when a wheel crosses an edge line of its lane. Writes summary.json, findings.jsonl (one line
    per failing drive), traces.npz and report.html (failing drives as animations beside their offset
    traces) to --out. Exit 0 when the failure rate is within --max-failure-rate, 1 when above, 2 on bad
    input."""
    from deeptest_iot.drive.campaign import run_drives
    from deeptest_iot.drive.condition import parse_condition
    from deeptest_iot.drive.loop import DriveSettings
    from deeptest_iot.errors import ConfigError

    cond = parse_condition(condition)
    if steps is not None and distance is not None:
        raise ConfigError("give --distance or --steps, not both")
    kw = {"shared_weather": not per_drive_weather, **({} if speed is None else {"speed": speed})}
    settings = (DriveSettings.from_steps(steps, **kw) if steps is not None
                else DriveSettings(**({"distance": distance} if distance is not None else {}), **kw))
    echo = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True, nl=False))
    report = run_drives(model, cond, drives=drives, seed=seed, settings=settings, out=out, card=card,
                        trust_model=trust_model, batch=batch, show=show, echo=echo)
    m = report.metrics
    click.echo(f"{report.drives} drives of {settings.distance:g} m at {settings.speed:g} m/s under {cond.text}: "
               f"{report.failures} left their lane (failure rate {report.failure_rate:.3f}) -> {out}")
    click.echo(f"  mean |offset| {m['mean_abs_offset_m']:.3f} m, worst |offset| {m['max_abs_offset_m']:.3f} m, "
               f"mean steering jerk {m['mean_steering_jerk_radps2']:.3f} rad/s^2, "
               f"steering error RMS {m['mean_steering_error_rms_rad']:.4f} rad")
    if report.failures:
        bad = sorted((d for d in report.per_drive if d["departed"]), key=lambda d: d["distance_to_departure_m"])
        for d in bad[:8]:
            click.echo(f"  drive {d['drive']:>4}: left its lane after {d['distance_to_departure_m']:7.1f} m "
                       f"({d['time_to_departure_s']:5.1f} s)")
        if len(bad) > 8:
            click.echo(f"  ... {len(bad) - 8} more")
        click.echo(f"  report: {report.out_dir / 'report.html'}")
    if m["drives_with_unusable_frames"]:
        click.echo(f"  note: {m['drives_with_unusable_frames']} drive(s) saw frames with almost no contrast "
                   "(the condition leaves next to nothing to see)")
    sys.exit(1 if report.failure_rate > max_failure_rate else 0)
