"""`deeptest-iot convert`: the LiteRT (int8, float16, dynamic range) or ONNX twin of a Keras model."""

from __future__ import annotations

import json

import click

from deeptest_iot.cli.model import TRUST_HELP


@click.command("convert")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--to", "to", required=True, type=click.Choice(["int8", "float16", "dynamic", "onnx"]),
              help="int8: full-integer LiteRT, calibrated; float16: float16 weights; dynamic: dynamic-range "
                   "int8 weights; onnx: ONNX (Keras' exporter, tf2onnx).")
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="Twin file (.tflite, or .onnx for --to onnx). Default: beside MODEL, "
                   "MODEL.int8.tflite, MODEL.float16.tflite, MODEL.dynamic.tflite or MODEL.onnx.")
@click.option("--calibration", type=click.Path(), metavar="FRAMES_DIR",
              help="int8: folder of representative frames (PNG/JPEG, searched recursively; the card's "
                   "preprocessing is applied). Default: generated frames (road scenes, sign crops for a classifier).")
@click.option("--calibration-frames", "n_calibration", type=click.IntRange(1, 100000), default=200, show_default=True,
              help="int8: how many representative frames (evenly spaced through the folder).")
@click.option("--int8-io", is_flag=True, help="int8: make the input and output int8 too (default: float32 "
                                              "input and output around an int8 network).")
@click.option("--card", "card_path", type=click.Path(dir_okay=False),
              help="Model card TOML (default: the .toml beside the model); copied beside the twin.")
@click.option("--trust-model", is_flag=True, help=TRUST_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def convert(model_path, to, out, calibration, n_calibration, int8_io, card_path, trust_model, as_json):
    """Convert the Keras MODEL into the twin a device runs, with its model card beside it.

    The twin takes the same network input as MODEL (the card's crop, resize and scale stay
    outside), so `deeptest-iot run --model MODEL --twin TWIN` compares them on the same pixels."""
    from deeptest_iot.model.card import ModelCard
    from deeptest_iot.model.convert import convert as do_convert
    from deeptest_iot.model.core import load_model
    from deeptest_iot.model.twins import check_twin, load_twin, twin_path_for

    card = ModelCard.from_toml(card_path) if card_path else None
    mut = load_model(model_path, card, trust=trust_model)
    result = do_convert(mut, to, out or twin_path_for(model_path, to), calibration=calibration,
                        int8_io=int8_io, n_calibration=n_calibration, trust=trust_model,
                        isolate=(to == "int8"))  # the int8 quantiser is the part that can segfault
    info = result.describe()
    twin = load_twin(result.path, mut)
    check = check_twin(mut, twin)
    info["layers_mapped"] = check.shared_layers
    info["layers_not_mapped"] = check.float_only_layers
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    ratio = result.bytes / result.float_bytes if result.float_bytes else float("nan")
    click.echo(f"wrote {result.path} ({result.to}, {result.bytes / 1024:.0f} KiB = {ratio:.2f} x the float32 "
               f"weights) in {result.seconds:.1f} s")
    click.echo(f"card  {result.card_path}")
    if result.calibration:
        click.echo(f"calibrated on {result.calibration_frames} frames: {result.calibration}")
    if twin.supports_coverage:
        line = f"coverage on the twin: {len(check.shared_layers)} of {len(mut.layer_sizes)} layers mapped"
        if check.float_only_layers:
            line += f"; not mapped: {', '.join(check.float_only_layers)}"
        click.echo(line)
    else:
        click.echo("coverage on the twin: no layer mapped (test it with --coverage none)")
