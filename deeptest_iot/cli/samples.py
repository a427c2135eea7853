"""`deeptest-iot samples`: list the shipped sample models with their measured quality, or retrain one."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("samples")
def samples():
    """Sample models shipped with deeptest-iot (steering, sign classifier, detector)."""


@samples.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the quality records as JSON.")
def list_cmd(as_json):
    """Names, task, file and measured quality of each sample model."""
    from deeptest_iot import sample_models as sm

    records = []
    for name in sm.names():
        rec = sm.info(name)
        f = sm.HERE / f"{name}.keras"
        rec = dict(rec, file=str(f) if f.is_file() else None)
        records.append(rec)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for rec in records:
        size = f"{rec['file_bytes'] / 1e6:.1f} MB" if rec.get("file_bytes") else "-"
        click.echo(f"{rec['name']:<16} {rec['task']:<15} {size:>7}  {sm.quality_summary(rec)}")
        click.echo(f"{'':<16} {rec['file'] or '(not built)'}")


@samples.command("train")
@click.argument("name")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write NAME.keras, .toml, .json, .profile.npz (default: the shipped folder).")
@click.option("--frames", type=click.Path(path_type=Path), default=None,
              help="udacity_steering only: folder of real dashcam frames (labels.csv frame_id,steering_angle "
                   "and <frame_id>.jpg) to train on.")
def train_cmd(name, out, frames):
    """Retrain sample model NAME from scratch, reproducibly (minutes on 2 CPU cores)."""
    from deeptest_iot import sample_models as sm

    sm._check(name)
    from deeptest_iot.sample_models import train

    folder = Path(out or sm.HERE)
    train.check_frames_option(name, frames)  # one clear message before any work
    click.echo(f"training {name} into {folder} ...", err=True)
    train.train_and_profile(name, folder, frames)
    rec = sm.info(name, folder)
    click.echo(f"{name}: {sm.quality_summary(rec)} (trained in {rec.get('train_seconds')} s)")
