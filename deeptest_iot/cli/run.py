"""`deeptest-iot run`: a test campaign from the command line (with no options: the sample steering demo)."""

from __future__ import annotations

import sys

import click

from deeptest_iot.engine.options import CampaignOptions, click_options


def stop_line(s: dict) -> str:
    """Why the campaign stopped, in words; for a finite plan (a sweep), how much of it ran."""
    plan, why = s.get("plan"), s.get("stopped_by")
    if plan and plan["done"] < plan["inputs"]:
        share = f"{plan['done']:,} of the plan's {plan['inputs']:,} inputs ({plan['done'] / plan['inputs']:.0%})"
        if why == "budget":
            return f"stopped at the budget: {share}; raise --budget to run the whole plan"
        return f"stopped by the {why} limit: {share}" if why else f"stopped: {share}"
    return {"budget": "stopped at the budget (--budget)", "time": "stopped at the time limit (--time)",
            "plan": "complete: the whole plan ran", "rejections": "stopped: too many mutants failed the validity check"
            }.get(why, f"stopped: {why}")


def twin_lines(s: dict, echo) -> None:
    """With a twin: the differential relation's figures, the seeds it already breaks, its worst transforms."""
    twin, table = s.get("twin"), (s.get("relations") or {}).get("differential")
    if not twin or not table:
        return
    echo(f"  twin {twin['name']} ({twin['kind']}): {table['findings']} differential findings from "
         f"{table['inputs_tried']} inputs, error rate {table['error_rate']:.1%}, "
         f"{table['distinct_failures']['groups']} distinct (seed x transform family)")
    seeds = twin.get("seed_disagreements") or {}
    if seeds.get("count"):
        echo(f"    the twin already disagrees with the model on {seeds['count']} of {seeds['seeds']} seeds "
             f"({', '.join(seeds['ids'][:5])}{', ...' if seeds['count'] > 5 else ''})")
    for row in table["distinct_failures"]["top"][:3]:
        echo(f"    {row['finding']}  seed {row['seed_id']}  {row['family']}: violation {row['violation']:.4g}"
             f" ({row['findings']} finding{'s' if row['findings'] != 1 else ''})")


@click.command("run")
@click_options
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file with any of these options (a [run] table or top-level keys); the command line wins.")
@click.option("--junit", type=click.Path(dir_okay=False), help="Also write JUnit XML here (for CI).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def run(config_file, junit, quiet, **options):
    """Run a test campaign: transform seed frames, track coverage, and record every input on which the
    model breaks its metamorphic relation. Exit 0 when the error rate is within --max-error-rate, 1 when
    it is above, 2 on bad input."""
    from deeptest_iot.engine.campaign import run_campaign

    opts = CampaignOptions.from_sources(config_file, **options)
    tty = sys.stderr.isatty()
    echo = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True, nl=False))
    result = run_campaign(opts, echo=echo, tty=tty)
    s = result.summary
    if junit:
        from deeptest_iot.results.junit import write_junit

        write_junit(result.out_dir, junit, max_error_rate=opts.max_error_rate)
    distinct = s.get("distinct_failures") or {"groups": 0, "top": []}
    relation = ((s.get("campaign") or {}).get("relation") or {}).get("name")
    own = (s.get("relations") or {}).get(relation)  # with a twin: this relation's figures apart
    found = f"{own['findings']} {relation} findings" if own else f"{s['findings']} findings"
    click.echo(f"{distinct['groups']} distinct failures (seed x transform family) in {found} from "
               f"{s['inputs_tried']} inputs, error rate {s['error_rate']:.1%}, in {s['duration_s']:.1f}s -> "
               f"{result.out_dir}")
    failing = (s.get("campaign") or {}).get("seed_failures")
    if failing and failing.get("known") and failing["count"]:
        how = {"skip": "not searched", "test": "counted apart"}.get(failing["policy"], "counted as the others")
        click.echo(f"  the model is already wrong on {failing['count']} of {failing['seeds']} seeds ({how})")
    for warning in s.get("warnings") or []:
        click.echo(f"  WARNING: {warning}")
    click.echo(f"  {stop_line(s)}")
    if distinct["top"]:
        click.echo("  worst distinct failures:")
    for row in distinct["top"][:5]:
        click.echo(f"    {row['finding']}  seed {row['seed_id']}  {row['family']}: violation {row['violation']:.4g}"
                   f" ({row['findings']} finding{'s' if row['findings'] != 1 else ''})")
    from deeptest_iot.results.reader import open_run, per_transform_rows

    # Per single transform (an input made by a chain counts for each of its links), worst first.
    rows = sorted(per_transform_rows(open_run(result.out_dir)), key=lambda r: (-r["error_rate"], r["transform"]))
    if rows:
        click.echo("  transform          findings / inputs   error rate")
    for row in rows[:12]:
        click.echo(f"  {row['transform']:<18} {row['findings']:>8} / {row['tried']:<8} {row['error_rate']:8.1%}")
    if len(rows) > 12:
        click.echo(f"  ... {len(rows) - 12} more: deeptest-iot report {result.out_dir}")
    twin_lines(s, click.echo)
    for name, entry in s["coverage"].items():
        value = entry.get("coverage", entry.get("patterns"))
        click.echo(f"  coverage {name:<12} {value:.4f}" if isinstance(value, float) else f"  coverage {name} {value}")
    sys.exit(result.exit_code)
