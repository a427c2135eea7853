"""Nightly model validation: rerun a baseline's campaign on a candidate model and compare.

The baseline folder's summary.json records every campaign option (``campaign``); the same
campaign (same seed, seeds, transforms, budget, strategy, coverage, relation settings) is run on
the candidate, then :func:`deeptest_iot.results.compare.compare_runs` decides. Settings that belong to the
model (its path, card, trust flag and activation profile) are the candidate's own, given as
arguments; a profile or card of the baseline model would not fit the candidate.

Written into the candidate's output folder: the campaign itself, ``report.html``,
``compare.json`` and ``junit.xml`` (the comparison as JUnit: one test case per compared figure).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deeptest_iot import __version__
from deeptest_iot.results.compare import Comparison, IncomparableRunsError, Thresholds, compare_runs
from deeptest_iot.fileio import atomic_write_json
from deeptest_iot.results.junit import write_comparison_junit
from deeptest_iot.results.report import write_report
from deeptest_iot.results.reader import open_run

# Campaign options taken from the candidate's side, never from the baseline's summary.
CANDIDATE_OPTIONS = ("model", "card", "trust_model", "profile", "out", "resume")


@dataclass
class Validation:
    """What validate produced: the comparison (its exit_code is the verdict) and the files written."""

    comparison: Comparison
    out_dir: Path
    report: Path
    json: Path
    junit: Path

    @property
    def exit_code(self) -> int:
        return self.comparison.exit_code


def options_from_baseline(baseline_dir: str | Path, model: str, out: str | Path, card: str | None = None,
                          trust_model: bool = False, profile: str | None = None, own_bound: bool = False,
                          twin: str | None = None):
    """The baseline's CampaignOptions with the candidate's model-specific settings.

    A baseline with a twin: the candidate is compared with ``twin`` when given; else with the twin
    of the same kind beside it when the baseline named its twin by kind (``--twin int8``); a baseline
    twin given as a file is refused (ConfigError): it is the baseline model's twin, not the candidate's.

    Raises InputError for a bad folder and IncomparableRunsError when the baseline cannot be
    reproduced by this version (other tool version, or not complete): checked before the
    campaign runs, so a nightly job fails in seconds rather than after the campaign."""
    from deeptest_iot.engine.options import BY_NAME, CampaignOptions

    run = open_run(baseline_dir)
    summary = run.summary
    problems = []
    version = (summary.get("tool") or {}).get("version")
    if version != __version__:
        problems.append(f"it was made by deeptest-iot {version}, this is {__version__}; rerun the baseline "
                        "with this version")
    if summary.get("status") != "complete":
        problems.append(f"its campaign is not complete (status {summary.get('status')!r})")
    if problems:
        raise IncomparableRunsError(f"baseline {baseline_dir} cannot be validated against: " + "; ".join(problems))
    recorded = summary.get("campaign") or {}
    values = {k: v for k, v in recorded.items()
              if k in BY_NAME and k not in CANDIDATE_OPTIONS and (v is not None or BY_NAME[k].nullable)}
    if "budget" not in recorded and isinstance(summary.get("inputs_tried"), int):
        # A summary that does not record the budget: a complete campaign stopped at its budget (or
        # earlier, when the strategy ran out of cases), so the inputs it tried reproduce its size.
        values["budget"] = summary["inputs_tried"]
    values.update(model=str(model), card=card, trust_model=bool(trust_model), profile=profile, out=str(out),
                  resume=False)
    if twin is not None:
        values["twin"] = str(twin)
    elif values.get("twin") is not None:
        from deeptest_iot.errors import ConfigError
        from deeptest_iot.model.twins import TWIN_KINDS

        if str(values["twin"]) not in TWIN_KINDS:
            raise ConfigError(f"baseline {baseline_dir} compared its model with the twin {values['twin']}, which is "
                              "not the candidate's: give the candidate's twin with --twin")
    # DeepTest's labelled bound is lambda * the model's own MSE on the seeds: a candidate that got worse
    # on clean frames would loosen its own bound and look better. Judge it by the baseline's bound.
    baseline_mse = ((recorded.get("relation") or {}).get("mse_orig"))
    if own_bound:
        values["mse_orig"] = None
    elif baseline_mse is not None and values.get("mse_orig") is None:
        values["mse_orig"] = float(baseline_mse)
    return CampaignOptions(**values)


def validate(model: str, baseline_dir: str | Path, out_dir: str | Path, thresholds: Thresholds | None = None,
             card: str | None = None, trust_model: bool = False, profile: str | None = None,
             junit_path: str | Path | None = None, json_path: str | Path | None = None,
             echo: Callable[[str], None] | None = None, tty: bool = False, own_bound: bool = False,
             twin: str | None = None) -> Validation:
    """Run the baseline's campaign on ``model`` into ``out_dir``, compare, and write the results."""
    from deeptest_iot.engine.campaign import run_campaign

    out_dir = Path(out_dir)
    opts = options_from_baseline(baseline_dir, model, out_dir, card=card, trust_model=trust_model, profile=profile,
                                 own_bound=own_bound, twin=twin)
    run_campaign(opts, echo=echo, tty=tty)
    comparison = compare_runs(baseline_dir, out_dir, thresholds or Thresholds())
    report = write_report(out_dir)
    json_file = Path(json_path) if json_path else out_dir / "compare.json"
    atomic_write_json(json_file, comparison.to_dict())
    junit_file = Path(junit_path) if junit_path else out_dir / "junit.xml"
    write_comparison_junit(comparison, junit_file)
    return Validation(comparison, out_dir, report, json_file, junit_file)
