"""compare: regressions, improvements, incomparable runs, thresholds from options and config, exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deeptest_iot.cli import main
from deeptest_iot.compare import IncomparableRunsError, Thresholds, compare_runs
from deeptest_iot.errors import ConfigError, InputError

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: make the local helper importable
from results_fixtures import make_run, steering_finding  # noqa: E402

TRIED = {"rain": 100, "fog": 100}


def findings(rain: list[float], fog: list[float]) -> list[dict]:
    out = [("rain", v) for v in rain] + [("fog", v) for v in fog]
    return [steering_finding(i, t, v) for i, (t, v) in enumerate(out)]


@pytest.fixture
def baseline(tmp_path):
    return make_run(tmp_path / "base", findings([0.2, 0.2], [0.2]), TRIED)


def row(result, figure, scope):
    return next(r for r in result.rows if r.figure == figure and r.scope == scope)


def test_identical_runs_pass(baseline, tmp_path):
    cand = make_run(tmp_path / "cand", findings([0.2, 0.2], [0.2]), TRIED)
    result = compare_runs(baseline, cand)
    assert result.passed and result.exit_code == 0
    assert {r.verdict for r in result.rows} == {"same"}


def test_error_rate_regression_per_transform(baseline, tmp_path):
    cand = make_run(tmp_path / "cand", findings([0.2] * 6, [0.2]), TRIED)  # rain 2% -> 6%
    result = compare_runs(baseline, cand)
    rain = row(result, "error rate", "rain")
    assert rain.verdict == "regression" and rain.change == pytest.approx(0.04)
    assert row(result, "error rate", "fog").verdict == "same"
    assert not result.passed and result.exit_code == 1
    # A looser threshold lets it through; the rise is still reported as worse.
    result = compare_runs(baseline, cand, Thresholds(max_error_rate_increase=0.05))
    assert result.passed and row(result, "error rate", "rain").verdict == "worse"


def test_improvement_is_not_a_regression(baseline, tmp_path):
    cand = make_run(tmp_path / "cand", findings([], []), TRIED)
    result = compare_runs(baseline, cand)
    assert result.passed
    assert row(result, "error rate", "rain").verdict == "better"
    assert row(result, "mean violation", "rain").verdict == "better"


def test_mean_violation_and_coverage_regressions(baseline, tmp_path):
    cov = {"nc:0.5": {"coverage": 0.5}, "kmnc:10": {"coverage": 0.3}}  # nc drops 10 points
    cand = make_run(tmp_path / "cand", findings([0.4, 0.4], [0.2]), TRIED, coverage=cov)
    result = compare_runs(baseline, cand)
    assert row(result, "mean violation", "rain").verdict == "regression"
    assert row(result, "coverage", "nc:0.5").verdict == "regression"
    assert row(result, "coverage", "kmnc:10").verdict == "same"
    assert len(result.regressions) == 2
    table = result.format_table()
    assert "REGRESSION" in table and "FAILED: 2 regression(s)" in table


def test_transforms_are_compared_over_the_chains_that_contain_them(baseline, tmp_path):
    chained = [steering_finding(10 + i, "rain+snow", 0.2) for i in range(3)]
    cand = make_run(tmp_path / "cand", findings([0.2, 0.2], [0.2]) + chained, {**TRIED, "rain+snow": 3})
    result = compare_runs(baseline, cand)
    rain = row(result, "error rate", "rain")
    assert rain.candidate == pytest.approx(5 / 103) and rain.verdict == "regression"
    assert row(result, "error rate", "snow").verdict == "only in candidate"  # listed, never a regression
    assert not any(r.scope == "rain+snow" for r in result.rows)  # chains differ run to run: not compared
    assert [r.scope for r in result.regressions] == ["rain"]


@pytest.mark.parametrize("override, expected", [
    ({"campaign": {"seed": 1}}, "campaign.seed: 0 vs 1"),
    ({"campaign": {"relation": {"name": "steering", "lambda": 2.0, "delta": 0.1}}}, "campaign.relation.lambda: 5.0 vs 2.0"),
    ({"campaign": {"transforms": ["rain"]}}, "campaign.transforms"),
    ({"tool": {"version": "0.2.0"}}, 'tool.version: "0.1.0" vs "0.2.0"'),
    ({"status": "running"}, "candidate campaign is not complete"),
])
def test_incomparable_runs_say_what_differs(baseline, tmp_path, override, expected):
    cand = make_run(tmp_path / "cand", findings([0.2, 0.2], [0.2]), TRIED, **override)
    with pytest.raises(IncomparableRunsError) as info:
        compare_runs(baseline, cand)
    assert expected in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_thresholds_from_config_and_options(tmp_path):
    config = tmp_path / "deeptest.toml"
    config.write_text("[compare]\nmax_error_rate_increase = 0.1\nmax_coverage_drop = 0.0\n", encoding="utf-8")
    t = Thresholds.load(config, max_coverage_drop=0.05)
    assert t == Thresholds(max_error_rate_increase=0.1, max_coverage_drop=0.05, max_violation_increase=0.05)
    config.write_text("[compare]\nmax_eror_rate = 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown compare threshold"):
        Thresholds.load(config)
    config.write_text("[compare]\nmax_coverage_drop = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=">= 0"):
        Thresholds.load(config)
    config.write_text("[compare\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Thresholds.load(config)
    with pytest.raises(ConfigError, match="not found"):
        Thresholds.load(tmp_path / "missing.toml")


def test_cli_exit_codes_and_json(baseline, tmp_path):
    runner = CliRunner()
    same = make_run(tmp_path / "same", findings([0.2, 0.2], [0.2]), TRIED)
    worse = make_run(tmp_path / "worse", findings([0.2] * 6, [0.2]), TRIED)
    other = make_run(tmp_path / "other", findings([0.2, 0.2], [0.2]), TRIED, campaign={"seed": 7})

    result = runner.invoke(main, ["compare", str(baseline), str(same)])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output

    out = tmp_path / "cmp.json"
    result = runner.invoke(main, ["compare", str(baseline), str(worse), "--json", str(out)])
    assert result.exit_code == 1, result.output
    data = json.loads(out.read_text())
    assert data["passed"] is False and data["regressions"] == 1
    assert data["thresholds"]["max_error_rate_increase"] == 0.02

    result = runner.invoke(main, ["compare", str(baseline), str(worse), "--max-error-rate-increase", "0.1"])
    assert result.exit_code == 0, result.output

    config = tmp_path / "c.toml"
    config.write_text("[compare]\nmax_error_rate_increase = 0.1\n", encoding="utf-8")
    result = runner.invoke(main, ["compare", str(baseline), str(worse), "--config", str(config)])
    assert result.exit_code == 0, result.output

    result = runner.invoke(main, ["compare", str(baseline), str(other)])
    assert result.exit_code == 2
    assert "campaign.seed: 0 vs 7" in result.output and "Traceback" not in result.output

    result = runner.invoke(main, ["compare", str(baseline), str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such folder" in result.output


def test_missing_candidate_folder_is_an_input_error(baseline, tmp_path):
    with pytest.raises(InputError):
        compare_runs(baseline, tmp_path / "nope")


def test_model_specific_settings_may_differ(baseline, tmp_path):
    """A candidate model has its own path, card, profile and seed MSE; those do not block the comparison."""
    cand = make_run(tmp_path / "cand", findings([0.2, 0.2], [0.2]), TRIED,
                    campaign={"model": "candidate.keras", "profile_source": "seeds",
                              "relation": {"name": "steering", "lambda": 5.0, "delta": 0.1, "mse_orig": 0.003}},
                    libraries={"python": "3.11.7", "numpy": "9.9"},
                    coverage={"nc:0.5": {"coverage": 0.6}, "kmnc:10": {"coverage": 0.3}, "tknp:1": {"patterns": 12}})
    result = compare_runs(baseline, cand)
    assert result.passed
    assert any("tknp:1" in n for n in result.notes)
    assert any("library versions differ (numpy)" in n for n in result.notes)
