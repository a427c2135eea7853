"""`deeptest-iot transforms`: list the transforms with their ranges, and preview them on an image."""

from __future__ import annotations

import json
from pathlib import Path

import click
import cv2
import numpy as np

from deeptest_iot.errors import InputError, OutputError
from deeptest_iot.fileio import atomic_write_bytes


@click.group("transforms")
def transforms():
    """Image transformations: DeepTest's, weather, and IoT sensor faults."""


def _range(p) -> str:
    kind = "odd int" if p.odd else "int" if p.integer else ""
    unit = f" {p.unit}" if p.unit else ""
    return f"[{p.lo:g}, {p.hi:g}]{unit}{' ' + kind if kind else ''}"


def _describe(spec) -> dict:
    from deeptest_iot.transforms import presets_with

    return {
        "name": spec.name, "kind": spec.kind, "doc": spec.doc,
        "params": [{"name": p.name, "range": [p.lo, p.hi], "integer": p.integer, "odd": p.odd,
                    "unit": p.unit, "default": p.default,
                    "severity_0": p.identity if p.severity_driven else None,
                    "severity_1": p.extreme if p.severity_driven else None,
                    "random_pool": list(p.pool) if p.pool else None, "doc": p.doc} for p in spec.params],
        "presets": presets_with(spec.name),
    }


@transforms.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option("--kind", type=click.Choice(["photometric", "geometric", "weather", "sensor"]), default=None,
              help="Only transforms of this kind.")
def list_cmd(as_json, kind):
    """Each transform with its kind, parameters and ranges, and the presets that use it."""
    from deeptest_iot.transforms import PRESETS, REGISTRY

    specs = [s for s in REGISTRY.values() if kind is None or s.kind == kind]
    if as_json:
        click.echo(json.dumps({"transforms": [_describe(s) for s in specs],
                               "presets": {k: len(v) for k, v in PRESETS.items()}}, indent=2))
        return
    for s in specs:
        d = _describe(s)
        presets = f"  presets: {', '.join(d['presets'])}" if d["presets"] else ""
        click.echo(f"{s.name}  ({s.kind}){presets}")
        click.echo(f"    {s.doc}")
        for p in s.params:
            sev = f"severity 0 -> {p.identity:g}, 1 -> {p.extreme:g}" if p.severity_driven \
                else f"default {p.default:g}"
            pool = f"; random pool {p.pool[0]:g}..{p.pool[1]:g}" if p.pool else ""
            click.echo(f"    {p.name:<12} {_range(p):<26} {sev}{pool}")
            if p.doc:
                click.echo(f"    {'':<12} {p.doc}")
    click.echo("")
    click.echo("presets: " + ", ".join(f"{k} ({len(v)})" for k, v in PRESETS.items()))


def read_rgb(path: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, or an InputError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"image {path!r} does not exist or is not a file")
    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(f"cannot read {path!r} as an image (OpenCV could not decode it)")
    return np.ascontiguousarray(img[:, :, ::-1])


@transforms.command("preview")
@click.argument("image")
@click.option("--out", "out", default="transforms_grid.png", show_default=True, help="PNG file to write.")
@click.option("--only", multiple=True, help="Only these transforms (repeatable).")
@click.option("--severity", "severities", multiple=True, type=click.FloatRange(0, 1),
              help="Severities to show (repeatable; default 0.33, 0.67, 1).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed for rain, snow, noise and other random patterns.")
@click.option("--tile-width", default=240, show_default=True, type=click.IntRange(16, 2000))
def preview_cmd(image, out, only, severities, seed, tile_width):
    """Write a labelled grid of every transform at three severities applied to IMAGE."""
    from deeptest_iot.transforms import REGISTRY
    from deeptest_iot.transforms.core import spec
    from deeptest_iot.transforms.preview import SEVERITIES, preview_grid

    rgb = read_rgb(image)
    names = [spec(n).name for n in only] if only else list(REGISTRY)
    grid = preview_grid(rgb, names, severities or SEVERITIES, seed=seed, tile_width=tile_width)
    ok, buf = cv2.imencode(".png", grid[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:  # pragma: no cover
        raise OutputError(f"could not encode the preview grid as PNG for {out!r}")
    atomic_write_bytes(out, buf.tobytes())
    click.echo(f"wrote {out}: {len(names)} transforms x {len(severities or SEVERITIES)} severities, "
               f"{grid.shape[1]}x{grid.shape[0]} px")
