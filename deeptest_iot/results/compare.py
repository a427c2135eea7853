"""Compare two campaign folders (a baseline and a candidate model) made with the same campaign.

Comparable only when both runs are complete and used the same tool version, result format, model
task and campaign options (seed included; the options that belong to the model itself, listed in
MODEL_SPECIFIC, may differ): otherwise the figures would differ for reasons other than the model,
and :class:`IncomparableRunsError` says exactly what differs (exit code 2 in the CLI).

Figures compared, each against a threshold (absolute differences, candidate minus baseline):

- error rate, overall and per transform: a regression when it rises by more than
  ``max_error_rate_increase`` (default 0.02, i.e. two percentage points);
- mean violation per transform: a regression when it rises by more than ``max_violation_increase``
  (default 0.05, in the relation's units: radians for steering);
- coverage per criterion: a regression when it drops by more than ``max_coverage_drop``
  (default 0.02, i.e. two percentage points);
- with twins (``--twin``): the differential relation's error rate overall, on the seed frames
  themselves, and per transform, and its mean violation per transform (scopes ``differential``,
  ``differential: seed frames``, ``differential: <transform>``), against the same thresholds. The
  twin's file may differ between the runs (a twin belongs to its model).

Transforms are compared one by one, each over all the chains that contain it (guided search picks
different chains for different models, so chains themselves are not comparable). A transform tried
by only one of the two runs is listed but never counts as a regression. Thresholds come from the defaults,
then a ``[compare]`` table of a TOML config file, then command-line options, each overriding the
previous.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from deeptest_iot.errors import ConfigError
from deeptest_iot.fileio import read_toml
from deeptest_iot.results.reader import open_run, transform_table

EPS = 1e-12

# Campaign settings that belong to the model under test, not to the campaign: a candidate model
# has its own file, card, trust decision, activation profile and seed MSE (the steering relation's
# lambda * MSE_orig bound is relative to each model's own error, as in DeepTest). They may differ.
# `validate` judges a candidate by the baseline's MSE_orig (campaign.mse_orig) so that a model worse on
# clean frames cannot loosen its own bound; that option is recorded on the candidate's side only.
# Which seeds a model already gets wrong, and how the campaign treated them (validate counts them all
# on the candidate's side: they are where it regressed), belong to the model too, as does its twin's file.
MODEL_SPECIFIC = frozenset({"campaign.model", "campaign.card", "campaign.trust_model", "campaign.profile",
                            "campaign.profile_source", "campaign.relation.mse_orig", "campaign.mse_orig",
                            "campaign.failing_seeds", "campaign.seed_failures", "campaign.twin"})


def _model_specific(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in MODEL_SPECIFIC)


class IncomparableRunsError(ConfigError):
    """Two campaign folders whose figures cannot be compared (other seed, options, tool version)."""


@dataclass(frozen=True)
class Thresholds:
    """How much each figure may move before the candidate counts as a regression (documented above)."""

    max_error_rate_increase: float = 0.02
    max_coverage_drop: float = 0.02
    max_violation_increase: float = 0.05

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"compare threshold {f.name} must be a number >= 0, got {value!r}")

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: float | None) -> "Thresholds":
        """Defaults, then the ``[compare]`` table of ``config`` (TOML), then non-None ``overrides``."""
        values: dict[str, Any] = {}
        if config is not None:
            values.update(read_compare_table(config))
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown compare threshold(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(cls(), **values)


def read_compare_table(path: str | Path) -> dict:
    """The ``[compare]`` table of a TOML file ({} when the file has none)."""
    data = read_toml(path, "config file")
    table = data.get("compare", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [compare] must be a table")
    return dict(table)


@dataclass
class Row:
    """One figure of the comparison. ``change`` is candidate - baseline (None when one side lacks it)."""

    figure: str          # "error rate" | "mean violation" | "coverage"
    scope: str           # "overall", a transform chain, or a coverage criterion
    baseline: float | None
    candidate: float | None
    change: float | None
    limit: float | None  # the allowed change in the bad direction
    verdict: str         # "regression" | "worse" | "better" | "same" | "only in baseline" | "only in candidate"

    @property
    def regressed(self) -> bool:
        return self.verdict == "regression"


@dataclass
class Comparison:
    """The result of comparing two runs: one row per figure, plus notes on what may mislead."""

    baseline: str
    candidate: str
    thresholds: Thresholds
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.regressed]

    @property
    def passed(self) -> bool:
        return not self.regressions

    @property
    def exit_code(self) -> int:
        """0 when no threshold was crossed, 1 otherwise (the CLI's convention)."""
        return 0 if self.passed else 1

    def to_dict(self) -> dict:
        return {"passed": self.passed, "baseline": self.baseline, "candidate": self.candidate,
                "thresholds": asdict(self.thresholds), "regressions": len(self.regressions),
                "rows": [asdict(r) for r in self.rows], "notes": list(self.notes)}

    def format_table(self) -> str:
        """A plain-text table of every figure, regressions marked, for the terminal and CI logs."""
        head = ("figure", "scope", "baseline", "candidate", "change", "allowed", "verdict")
        lines = [[r.figure, r.scope, _num(r.figure, r.baseline), _num(r.figure, r.candidate),
                  _num(r.figure, r.change, signed=True), _limit(r), r.verdict.upper() if r.regressed else r.verdict]
                 for r in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
        out = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [head, *lines]]
        out.insert(1, "  ".join("-" * w for w in widths))
        verdict = ("PASSED: no threshold crossed" if self.passed
                   else f"FAILED: {len(self.regressions)} regression(s) over the threshold")
        return "\n".join(out + [f"note: {n}" for n in self.notes] + [verdict])


def _num(figure: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if figure in ("error rate", "coverage"):
        return f"{value * 100:+.2f}pp" if signed else f"{value * 100:.2f}%"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _limit(row: Row) -> str:
    if row.limit is None:
        return "-"
    sign = "-" if row.figure == "coverage" else "+"
    return f"{sign}{row.limit * 100:.2f}pp" if row.figure in ("error rate", "coverage") else f"{sign}{row.limit:.4f}"


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(f"{prefix}.{key}", sub))
        return out or {prefix: {}}
    return {prefix: value}


def differences(baseline: dict, candidate: dict) -> list[str]:
    """Why two summaries are not comparable: each difference as 'what: baseline vs candidate'."""
    diffs = []
    for label, summary in (("baseline", baseline), ("candidate", candidate)):
        if summary.get("status") != "complete":
            diffs.append(f"the {label} campaign is not complete (status {summary.get('status')!r})")
    checks = {"format": (baseline.get("format"), candidate.get("format")),
              "tool.version": ((baseline.get("tool") or {}).get("version"), (candidate.get("tool") or {}).get("version")),
              "model.task": ((baseline.get("model") or {}).get("task"), (candidate.get("model") or {}).get("task"))}
    for what, (b, c) in checks.items():
        if b != c:
            diffs.append(f"{what}: {json.dumps(b)} vs {json.dumps(c)}")
    b_opts = _flatten("campaign", baseline.get("campaign") or {})
    c_opts = _flatten("campaign", candidate.get("campaign") or {})
    for key in sorted(k for k in set(b_opts) | set(c_opts) if not _model_specific(k)):
        b, c = b_opts.get(key, "(absent)"), c_opts.get(key, "(absent)")
        if b != c:
            diffs.append(f"{key}: {json.dumps(b)} vs {json.dumps(c)}")
    if "campaign.budget" not in b_opts and "campaign.budget" not in c_opts:
        # Without a recorded budget, the number of inputs tried is the only sign of the campaign's size.
        b, c = baseline.get("inputs_tried"), candidate.get("inputs_tried")
        if b != c:
            diffs.append(f"inputs_tried: {json.dumps(b)} vs {json.dumps(c)} (no budget recorded to tell the "
                         "campaigns' sizes apart)")
    return diffs


def check_comparable(baseline: dict, candidate: dict, baseline_dir="baseline", candidate_dir="candidate") -> None:
    """Raise IncomparableRunsError listing every difference that makes the two runs incomparable."""
    diffs = differences(baseline, candidate)
    if diffs:
        raise IncomparableRunsError(f"{baseline_dir} and {candidate_dir} are not comparable: " + "; ".join(diffs))


def _verdict(change: float | None, limit: float, bad_when_up: bool) -> str:
    if change is None:
        return "same"
    bad = change if bad_when_up else -change
    if bad > limit + EPS:
        return "regression"
    if bad > EPS:
        return "worse"
    if bad < -EPS:
        return "better"
    return "same"


def _rate(entry: dict) -> float | None:
    if entry.get("error_rate") is not None:
        return float(entry["error_rate"])
    if entry.get("tried"):
        return float(entry.get("findings", 0)) / float(entry["tried"])
    return None


def _row(figure, scope, b, c, limit, bad_when_up) -> Row:
    if b is None or c is None:
        only = "only in candidate" if b is None else "only in baseline"
        return Row(figure, scope, b, c, None, limit, only)
    change = c - b
    return Row(figure, scope, b, c, change, limit, _verdict(change, limit, bad_when_up))


def compare_summaries(baseline: dict, candidate: dict, thresholds: Thresholds,
                      baseline_dir: str = "baseline", candidate_dir: str = "candidate") -> Comparison:
    """Compare two summary.json objects (see the module docstring for the rules)."""
    check_comparable(baseline, candidate, baseline_dir, candidate_dir)
    t = thresholds
    result = Comparison(str(baseline_dir), str(candidate_dir), thresholds)
    result.rows.append(_row("error rate", "overall", _opt(baseline.get("error_rate")), _opt(candidate.get("error_rate")),
                            t.max_error_rate_increase, True))
    # Seeds the model gets wrong on clean frames, by their labels: a candidate worse there has regressed
    # even if it skips them (and so breaks fewer relations on transformed frames).
    b_sf, c_sf = _seed_failure_share(baseline), _seed_failure_share(candidate)
    if b_sf is not None or c_sf is not None:
        result.rows.append(_row("seeds already wrong", "overall", b_sf, c_sf, t.max_error_rate_increase, True))
    # Per single transform (over the chains containing it): chains differ between runs, transforms do not.
    b_pt = transform_table(baseline.get("per_transform") or {}, [])
    c_pt = transform_table(candidate.get("per_transform") or {}, [])
    for name in sorted(set(b_pt) | set(c_pt)):
        b, c = b_pt.get(name) or {}, c_pt.get(name) or {}
        b_tried, c_tried = bool(b.get("tried", b != {})), bool(c.get("tried", c != {}))
        result.rows.append(_row("error rate", name, _rate(b) if b_tried else None, _rate(c) if c_tried else None,
                                t.max_error_rate_increase, True))
        result.rows.append(_row("mean violation", name, _mean_violation(b) if b_tried else None,
                                _mean_violation(c) if c_tried else None, t.max_violation_increase, True))
    _differential_rows(result, baseline, candidate, t)
    b_cov, c_cov = baseline.get("coverage") or {}, candidate.get("coverage") or {}
    for name in sorted(set(b_cov) | set(c_cov)):
        b, c = _coverage(b_cov.get(name)), _coverage(c_cov.get(name))
        if b is None and c is None:  # TKNP counts patterns: no fraction to hold a threshold against
            result.notes.append(f"{name}: no coverage fraction recorded (a pattern count); not compared")
            continue
        result.rows.append(_row("coverage", name, b, c, t.max_coverage_drop, False))
    if (baseline.get("libraries") or {}) != (candidate.get("libraries") or {}):
        diff = sorted(k for k in set(baseline.get("libraries") or {}) | set(candidate.get("libraries") or {})
                      if (baseline.get("libraries") or {}).get(k) != (candidate.get("libraries") or {}).get(k))
        result.notes.append(f"library versions differ ({', '.join(diff)}): some of the change may come from them")
    b_n, c_n = (baseline.get("model") or {}).get("neurons"), (candidate.get("model") or {}).get("neurons")
    if b_n != c_n:
        result.notes.append(f"the models count different neurons ({b_n} vs {c_n}): coverage percentages "
                            "are over different neuron sets")
    return result


def _differential_rows(result: "Comparison", baseline: dict, candidate: dict, t: Thresholds) -> None:
    """With twins: the differential relation's error rate overall, the share of seeds the twin already
    breaks, and its error rate and mean violation per transform (scopes prefixed ``differential:``)."""
    b_d = (baseline.get("relations") or {}).get("differential")
    c_d = (candidate.get("relations") or {}).get("differential")
    if b_d is None and c_d is None:
        return
    b_d, c_d = b_d or {}, c_d or {}
    result.rows.append(_row("error rate", "differential", _opt(b_d.get("error_rate")), _opt(c_d.get("error_rate")),
                            t.max_error_rate_increase, True))
    b_s, c_s = _twin_seed_share(baseline), _twin_seed_share(candidate)
    if b_s is not None or c_s is not None:
        result.rows.append(_row("error rate", "differential: seed frames", b_s, c_s, t.max_error_rate_increase, True))
    b_pt = transform_table(b_d.get("per_transform") or {}, [])
    c_pt = transform_table(c_d.get("per_transform") or {}, [])
    for name in sorted(set(b_pt) | set(c_pt)):
        b, c = b_pt.get(name) or {}, c_pt.get(name) or {}
        b_tried, c_tried = bool(b.get("tried", b != {})), bool(c.get("tried", c != {}))
        result.rows.append(_row("error rate", f"differential: {name}", _rate(b) if b_tried else None,
                                _rate(c) if c_tried else None, t.max_error_rate_increase, True))
        result.rows.append(_row("mean violation", f"differential: {name}", _mean_violation(b) if b_tried else None,
                                _mean_violation(c) if c_tried else None, t.max_violation_increase, True))


def _twin_seed_share(summary: dict) -> float | None:
    info = (summary.get("twin") or {}).get("seed_disagreements")
    if not isinstance(info, dict) or not info.get("seeds"):
        return None
    return float(info["count"]) / float(info["seeds"])


def _seed_failure_share(summary: dict) -> float | None:
    info = (summary.get("campaign") or {}).get("seed_failures")
    if not isinstance(info, dict) or not info.get("seeds") or not info.get("known", True):
        return None
    return float(info["count"]) / float(info["seeds"])


def _opt(value) -> float | None:
    return None if value is None else float(value)


def _mean_violation(entry: dict) -> float | None:
    """A transform's mean violation; 0 when it had no finding and the summary left it out."""
    if entry.get("mean_violation") is not None:
        return float(entry["mean_violation"])
    return 0.0 if entry.get("findings") == 0 else None


def _coverage(entry) -> float | None:
    if isinstance(entry, dict):
        return _opt(entry.get("coverage"))
    return _opt(entry)


def compare_runs(baseline_dir: str | Path, candidate_dir: str | Path, thresholds: Thresholds | None = None) -> Comparison:
    """Compare two campaign folders; raise InputError on a bad folder, IncomparableRunsError when
    the runs differ in seed, options, tool version or completeness."""
    base, cand = open_run(baseline_dir), open_run(candidate_dir)
    return compare_summaries(base.summary, cand.summary, thresholds or Thresholds(), str(baseline_dir), str(candidate_dir))
