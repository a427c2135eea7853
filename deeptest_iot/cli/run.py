"""`deeptest-iot run`: a test campaign from the command line (with no options: the sample steering demo)."""

from __future__ import annotations

import sys

import click

from deeptest_iot.cli.model import TRUST_HELP


def _split(values):
    """Comma-separated or repeated option values, flattened; ``none`` means an empty list."""
    if not values:
        return None
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return () if items == ["none"] else tuple(items)


@click.command("run")
@click.option("--model", type=click.Path(), help="Model to test (.keras, .h5, .tflite, .onnx, SavedModel dir). "
              "Default: the shipped sample steering model dave2_steering.")
@click.option("--card", type=click.Path(dir_okay=False), help="Model card TOML (default: the .toml beside the model).")
@click.option("--seeds", type=click.Path(), help="Folder of seed frames (png/jpg). Default: generated road scenes.")
@click.option("--labels", type=click.Path(dir_okay=False), help="Labels CSV for --seeds (e.g. frame_id,steering_angle).")
@click.option("--n-seeds", type=int, help="How many scenes to generate when no --seeds are given [50].")
@click.option("--strategy", type=click.Choice(["deeptest", "deephunter", "sweep", "random"]),
              help="Search strategy [deeptest].")
@click.option("--transforms", multiple=True, metavar="LIST",
              help="Transforms to use, comma-separated (see `deeptest-iot transforms list`) [all].")
@click.option("--budget", type=int, help="Inputs to run through the model, seeds not counted [2000].")
@click.option("--time", "time_", type=float, metavar="SECONDS", help="Stop after this many seconds.")
@click.option("--coverage", multiple=True, metavar="LIST",
              help="Coverage criteria, comma-separated, e.g. nc:0.75,kmnc:10,nbc; 'none' for none "
                   "[nc:0.75,kmnc:10,nbc].")
@click.option("--guide", multiple=True, metavar="LIST", help="Criteria whose gains steer the search [all tracked but NC, which saturates]; "
              "'shuffled' credits the same number of random inputs instead (an ablation control).")
@click.option("--profile", type=click.Path(dir_okay=False),
              help="Training-activation profile for KMNC/NBC/SNAC (default: <model>.profile.npz, else the seeds).")
@click.option("--seed", type=int, help="Campaign seed: same options and seed, same findings [0].")
@click.option("--batch-size", type=int, help="Inputs per model call [64].")
@click.option("--lambda", "lam", type=float, help="Steering relation with labels: fail when "
              "(label - pred)^2 > lambda * MSE_orig [5].")
@click.option("--delta", type=float, help="Steering relation without labels: fail when |pred_t - pred_o| > delta "
              "[0.1 rad].")
@click.option("--max-error-rate", type=float, help="Exit 1 when the error rate is above this [0: any finding].")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [deeptest-out].")
@click.option("--resume", is_flag=True, help="Continue the campaign in --out where it stopped.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file with any of these options (a [run] table); the command line wins.")
@click.option("--junit", type=click.Path(dir_okay=False), help="Also write JUnit XML here (for CI).")
@click.option("--trust-model", is_flag=True, default=None, help=TRUST_HELP)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def run(model, card, seeds, labels, n_seeds, strategy, transforms, budget, time_, coverage, guide, profile, seed,
        batch_size, lam, delta, max_error_rate, out, resume, config_file, junit, trust_model, quiet):
    """Run a test campaign: transform seed frames, track coverage, and record every input on which the
    model breaks its metamorphic relation. Exit 0 when the error rate is within --max-error-rate, 1 when
    it is above, 2 on bad input."""
    from deeptest_iot.engine.campaign import CampaignOptions, run_campaign

    opts = CampaignOptions.from_sources(
        config_file, model=model, card=card, seeds=seeds, labels=labels, n_seeds=n_seeds, strategy=strategy,
        transforms=_split(transforms), budget=budget, time=time_, coverage=_split(coverage), guide=_split(guide),
        profile=profile, seed=seed, batch_size=batch_size, lam=lam, delta=delta, max_error_rate=max_error_rate,
        out=out, resume=resume or None, trust_model=trust_model)
    tty = sys.stderr.isatty()
    echo = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True, nl=False))
    result = run_campaign(opts, echo=echo, tty=tty)
    s = result.summary
    if junit:
        from deeptest_iot.results.junit import write_junit

        write_junit(result.out_dir, junit, max_error_rate=opts.max_error_rate)
    click.echo(f"{s['inputs_tried']} inputs, {s['findings']} findings (error rate {s['error_rate']:.3f}) "
               f"in {s['duration_s']:.1f}s -> {result.out_dir}")
    from deeptest_iot.results.reader import open_run, per_transform_rows

    # Per single transform (an input made by a chain counts for each of its links), worst first.
    rows = sorted(per_transform_rows(open_run(result.out_dir)), key=lambda r: (-r["error_rate"], r["transform"]))
    if rows:
        click.echo("  transform          findings / inputs   error rate")
    for row in rows[:12]:
        click.echo(f"  {row['transform']:<18} {row['findings']:>8} / {row['tried']:<8} {row['error_rate']:8.1%}")
    if len(rows) > 12:
        click.echo(f"  ... {len(rows) - 12} more: deeptest-iot report {result.out_dir}")
    for name, entry in s["coverage"].items():
        value = entry.get("coverage", entry.get("patterns"))
        click.echo(f"  coverage {name:<12} {value:.4f}" if isinstance(value, float) else f"  coverage {name} {value}")
    sys.exit(result.exit_code)
