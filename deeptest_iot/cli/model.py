"""`deeptest-iot inspect`: the model card in force, the input expected, the layers counted, a speed estimate."""

from __future__ import annotations

import json

import click

from deeptest_iot.engine.options import TRUST_HELP


def model_options(func):
    """Options every command that loads a model shares."""
    options = [
        click.option("--card", "card_path", type=click.Path(dir_okay=False),
                     help="Model card TOML (default: the .toml beside the model)."),
        click.option("--task", type=click.Choice(["steering", "classification", "detection"]),
                     help="Override the card's task."),
        click.option("--include", multiple=True, metavar="PATTERN",
                     help="Count only layers whose name matches this glob (repeatable)."),
        click.option("--exclude", multiple=True, metavar="PATTERN",
                     help="Do not count layers whose name matches this glob (repeatable)."),
        click.option("--trust-model", is_flag=True, help=TRUST_HELP),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("inspect")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--no-speed", is_flag=True, help="Skip the throughput estimate.")
def inspect(model_path, card_path, task, include, exclude, trust_model, as_json, no_speed):
    """Print the model card in force, the input MODEL expects, the layers counted and its speed."""
    from deeptest_iot.model.core import load_model

    mut = load_model(model_path, card_path, task=task, include=include, exclude=exclude, trust=trust_model)
    info = mut.describe()
    if not no_speed:
        info["throughput_fps"] = round(mut.throughput(seconds=1.5), 1)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    card = info["card"]
    click.echo(f"model        {info['name']} ({info['kind']}) {info['path'] or ''}")
    click.echo(f"fingerprint  {info['fingerprint']}")
    click.echo(f"card         from {card['source']}")
    click.echo(f"task         {card['task']}" + (f", classes: {', '.join(card['classes'])}" if card["classes"] else ""))
    h, w = card["input_size"]
    click.echo(f"input        frames uint8 RGB (N, H, W, 3) of any size -> crop {card['crop']} (top, bottom, "
               f"left, right) -> resize {h}x{w} -> {card['color']} -> x * {card['scale']:.6g} + {card['offset']:g}")
    if info["coverage"]:
        click.echo(f"coverage     {len(info['layers'])} layers, {info['neurons']} neurons:")
        width = max((len(layer["name"]) for layer in info["layers"]), default=5)
        for layer in info["layers"]:
            click.echo(f"  {layer['name']:<{width}}  {layer['type']:<16} {layer['neurons']:>6}")
    else:
        click.echo("coverage     not available: output-only model (coverage needs a Keras model)")
    if "throughput_fps" in info:
        click.echo(f"throughput   {info['throughput_fps']:.0f} frames/s (batch 64, outputs"
                   + (" + activations)" if info["coverage"] else ")"))


@click.command("profile")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@model_options
@click.option("--seeds", type=click.Path(), help="Folder of training frames. Default: generated road scenes.")
@click.option("--n-seeds", type=int, default=2000, show_default=True,
              help="Generated scenes to profile when no --seeds are given.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated scenes.")
@click.option("--out", type=click.Path(dir_okay=False), help="Profile file [MODEL with .profile.npz].")
@click.option("--learned-gate", is_flag=True, help="Also train the learned realism gate on these frames (a small "
              "autoencoder, as SelfOracle) and save it as MODEL.gate.keras; campaigns use it when it is there.")
def profile(model_path, card_path, task, include, exclude, trust_model, seeds, n_seeds, seed, out, learned_gate):
    """Profile MODEL's counted neurons over training frames (min, max, mean, std in one streaming pass:
    memory holds one batch), for KMNC, NBC and SNAC. `run` picks up MODEL.profile.npz by itself."""
    from pathlib import Path

    from deeptest_iot.coverage import Profile
    from deeptest_iot.data.scenes import generate
    from deeptest_iot.data.seeds import iter_frames
    from deeptest_iot.engine.campaign import auto_work_size
    from deeptest_iot.model.core import load_model

    mut = load_model(model_path, card_path, task=task, include=include, exclude=exclude, trust=trust_model)
    prof = Profile(mut.layer_sizes, mut.fingerprint, mut.card.preprocessing())
    if seeds:
        batches = iter_frames(seeds, 256, lambda h, w: auto_work_size(mut.card, (h, w)))
    else:  # the scenes the sample models were trained on: 160x320, as `generate` draws them
        batches = (generate(min(256, n_seeds - start), seed=seed, start=start).images
                   for start in range(0, n_seeds, 256))
    gate = kept = None
    if learned_gate:
        from deeptest_iot.engine.realism import LearnedGate

        gate, kept = LearnedGate(), []
    for batch in batches:
        prof.update(mut.run(batch).activations)
        if gate is not None:
            kept.append(gate.subsample(batch))  # the gate's own small copies: a few kB per frame
    path = Path(out) if out else Path(model_path).with_suffix(".profile.npz")
    prof.save(path)
    click.echo(f"profiled {prof.count} frames over {len(mut.layer_sizes)} layers ({mut.neurons} neurons) -> {path}")
    if gate is not None:
        from deeptest_iot.engine.gates import learned_gate_path

        import numpy as np

        gate.fit(np.concatenate(kept))
        where = gate.save(learned_gate_path(model_path))
        click.echo(f"learned realism gate trained on {prof.count} frames (threshold {gate.threshold:.4g}, the "
                   f"{gate.quantile:.0%} quantile of their reconstruction errors) -> {where}")
