"""CLI commands that read campaign output folders: report, junit, compare, export, validate.

Each command is a thin wrapper over a function of its own module (report.write_report,
junit.write_junit, compare.compare_runs, export.export_findings) so that library users and the
`validate` command get the same behaviour as the CLI. Errors a user can act on are DeeptestError
subclasses; the CLI group prints them as one line and exits 2.
"""

from __future__ import annotations

from pathlib import Path

import click

FOLDER = click.Path(file_okay=True, dir_okay=True, path_type=Path)
FILE = click.Path(dir_okay=False, path_type=Path)


@click.command("report")
@click.argument("out_dir", type=FOLDER)
@click.option("--out", "out_file", type=FILE, default=None,
              help="HTML file to write [default: OUT_DIR/report.html].")
@click.option("--worst", type=click.IntRange(min=0), default=12, show_default=True,
              help="How many of the worst findings to show as image pairs.")
def report(out_dir: Path, out_file: Path | None, worst: int) -> None:
    """Write a self-contained HTML report of campaign folder OUT_DIR (images embedded, no network)."""
    from deeptest_iot.results.reader import open_run
    from deeptest_iot.results.report import write_report

    run = open_run(out_dir)
    for problem in run.problems():
        click.echo(f"warning: {problem}", err=True)
    if run.summary.get("kind") == "drive":  # a `drive` campaign: failing drives as animations
        from deeptest_iot.drive.report import write_drive_report

        path = write_drive_report(out_dir, out_file, show=worst)
    else:
        path = write_report(out_dir, out_file, worst=worst)
    click.echo(f"report written to {path}")


@click.command("show")
@click.argument("out_dir", type=FOLDER)
@click.argument("finding_id")
@click.option("--out", "out_file", type=FILE, required=True, help="PNG to write the transformed frame to.")
@click.option("--seed-out", type=FILE, default=None, help="Also write the seed frame here.")
def show(out_dir: Path, finding_id: str, out_file: Path, seed_out: Path | None) -> None:
    """Write the frame the model saw for finding FINDING_ID of OUT_DIR (e.g. f000012): rendered again
    from its recipe (seed, chain, per-link seeds), byte-identical to the campaign's."""
    from deeptest_iot.fileio import atomic_write_bytes
    from deeptest_iot.results.reader import open_run
    from deeptest_iot.results.render import Renderer
    from deeptest_iot.results.writer import encode_png

    run = open_run(out_dir)
    finding = next((f for f in run.findings if str(f["id"]) == finding_id), None)
    if finding is None:
        ids = [str(f["id"]) for f in run.findings]
        span = f"{ids[0]}..{ids[-1]}" if ids else "none"
        from deeptest_iot.errors import InputError

        raise InputError(f"no finding {finding_id!r} in {out_dir} (its findings: {span})")
    seed, transformed = Renderer(run).images(finding)
    atomic_write_bytes(out_file, encode_png(transformed))
    if seed_out is not None:
        atomic_write_bytes(seed_out, encode_png(seed))
    click.echo(f"{finding_id}: seed {finding.get('seed_id')} under {finding.get('transform')} "
               f"(violation {finding['violation']:.4g}) -> {out_file}")


@click.command("junit")
@click.argument("out_dir", type=FOLDER)
@click.option("--out", "out_file", type=FILE, required=True, help="JUnit XML file to write.")
@click.option("--max-error-rate", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="A transform's test case fails when its error rate is above this (0: any finding fails).")
def junit(out_dir: Path, out_file: Path, max_error_rate: float) -> None:
    """Convert campaign folder OUT_DIR to JUnit XML (one test case per relation and transform).

    Exits 0 once the file is written, whatever the test cases say: the verdict is in the file."""
    from deeptest_iot.results.junit import write_junit

    counts = write_junit(out_dir, out_file, max_error_rate=max_error_rate)
    click.echo(f"JUnit XML written to {out_file}: {counts.tests} test cases, {counts.failures} failed, "
               f"{counts.errors} errors, {counts.skipped} skipped")


def _threshold_options(fn):
    for name, help_text in reversed((
            ("--max-error-rate-increase", "Allowed rise of an error rate (overall and per transform), absolute "
                                          "[default 0.02, or [compare] in --config]."),
            ("--max-coverage-drop", "Allowed drop of a coverage criterion, absolute [default 0.02]."),
            ("--max-violation-increase", "Allowed rise of a transform's mean violation, in the relation's units "
                                         "[default 0.05]."))):
        fn = click.option(name, type=click.FloatRange(min=0.0), default=None, help=help_text)(fn)
    return click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="TOML file whose [compare] table sets the thresholds (options override it).")(fn)


@click.command("compare")
@click.argument("baseline", type=FOLDER)
@click.argument("candidate", type=FOLDER)
@_threshold_options
@click.option("--json", "json_file", type=FILE, default=None, help="Also write the comparison as JSON here.")
@click.pass_context
def compare(ctx: click.Context, baseline: Path, candidate: Path, config: Path | None,
            max_error_rate_increase: float | None, max_coverage_drop: float | None,
            max_violation_increase: float | None, json_file: Path | None) -> None:
    """Compare campaign folders BASELINE and CANDIDATE made with the same seed and options.

    Exit codes: 0 no threshold crossed, 1 a regression over a threshold, 2 the runs are not
    comparable (different seed, options or tool version; the message says what differs)."""
    from deeptest_iot.results.compare import Thresholds, compare_runs
    from deeptest_iot.fileio import atomic_write_json

    thresholds = Thresholds.load(config, max_error_rate_increase=max_error_rate_increase,
                                 max_coverage_drop=max_coverage_drop, max_violation_increase=max_violation_increase)
    result = compare_runs(baseline, candidate, thresholds)
    click.echo(result.format_table())
    if json_file is not None:
        atomic_write_json(json_file, result.to_dict())
    ctx.exit(result.exit_code)


@click.command("export")
@click.argument("out_dir", type=FOLDER)
@click.option("--to", "to_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write images/, labels.csv or boxes.json, and findings.npz into (new or empty).")
@click.option("--force", is_flag=True, help="Export into a non-empty folder, replacing only what an earlier export "
              "wrote there (listed in its .deeptest-export.json); any other file there is left alone.")
def export(out_dir: Path, to_dir: Path, force: bool) -> None:
    """Export the findings of OUT_DIR as a training set: transformed frames plus the labels they
    should have had (the rules: docs/campaigns-and-ci.md)."""
    from deeptest_iot.results.export import export_findings

    result = export_findings(out_dir, to_dir, force=force)
    click.echo(f"exported {result.count} {result.task} findings to {result.folder} (and {result.npz.name})")
    if result.left_out:
        click.echo(f"  {result.left_out} differential findings of the twin left out: their only reference is the "
                   "float model's own answer")


@click.command("validate")
@click.option("--model", "model", type=click.Path(), required=True, help="The candidate model to validate.")
@click.option("--baseline", type=FOLDER, required=True,
              help="Campaign folder of the baseline model; its campaign is rerun on the candidate.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("deeptest-validate"),
              show_default=True, help="Folder for the candidate's campaign, report.html, compare.json, junit.xml.")
@click.option("--junit", "junit_file", type=FILE, default=None, help="JUnit XML of the comparison [OUT/junit.xml].")
@click.option("--json", "json_file", type=FILE, default=None, help="Comparison as JSON [OUT/compare.json].")
@click.option("--card", type=click.Path(dir_okay=False), default=None,
              help="The candidate's model card [the .toml beside the model].")
@click.option("--profile", type=click.Path(dir_okay=False), default=None,
              help="The candidate's training-activation profile [beside the model, else the seeds].")
@click.option("--trust-model", is_flag=True, default=False,
              help="Load Lambda bytecode in the candidate model. DANGEROUS: runs code from the file.")
@click.option("--twin", default=None, metavar="PATH|int8|float16|dynamic|onnx",
              help="A baseline run with --twin: the candidate's twin [the baseline's int8/float16/... kind, beside "
                   "the candidate].")
@click.option("--own-bound", is_flag=True, default=False,
              help="Steering with labels: bound the candidate by lambda * its own MSE on the seeds (DeepTest's "
                   "definition) instead of the baseline's; a candidate worse on clean frames then gets a looser bound.")
@_threshold_options
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.pass_context
def validate(ctx: click.Context, model: str, baseline: Path, out_dir: Path, junit_file: Path | None,
             json_file: Path | None, card: str | None, profile: str | None, trust_model: bool, twin: str | None,
             own_bound: bool,
             config: Path | None, max_error_rate_increase: float | None, max_coverage_drop: float | None,
             max_violation_increase: float | None, quiet: bool) -> None:
    """Rerun the campaign of BASELINE on the candidate --model, compare, and write the HTML report,
    the comparison (JSON) and JUnit XML. Exit 0 no threshold crossed, 1 a regression, 2 bad input
    or a baseline this version cannot reproduce."""
    import sys

    from deeptest_iot.results.compare import Thresholds
    from deeptest_iot.engine.nightly import validate as run_validation

    thresholds = Thresholds.load(config, max_error_rate_increase=max_error_rate_increase,
                                 max_coverage_drop=max_coverage_drop, max_violation_increase=max_violation_increase)
    echo = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True, nl=False))
    result = run_validation(model, baseline, out_dir, thresholds, card=card, trust_model=trust_model,
                            profile=profile, junit_path=junit_file, json_path=json_file, echo=echo,
                            tty=sys.stderr.isatty(), own_bound=own_bound, twin=twin)
    click.echo(result.comparison.format_table())
    click.echo(f"report {result.report}, comparison {result.json}, JUnit {result.junit}")
    ctx.exit(result.exit_code)
