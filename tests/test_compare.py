"""compare: regressions, improvements, incomparable runs, thresholds from options and config, exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deeptest_iot.cli import main
from deeptest_iot.results.compare import IncomparableRunsError, Thresholds, compare_runs
from deeptest_iot.errors import ConfigError, InputError

from results_fixtures import COVERAGE, edit_summary, make_run, steering_finding

TRIED = {"rain": 100, "fog": 100}


def findings(rain: list[float], fog: list[float]) -> list:
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
    cov = {"nc:0.5": 0.5, "kmnc:10": 0.3}  # nc drops 10 points
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
    ({"options": {"seed": 1}}, "campaign.seed: 0 vs 1"),
    ({"options": {"lam": 2.0}}, "campaign.relation.lambda: 5.0 vs 2.0"),
    ({"options": {"transforms": ["rain", "fog"]}}, "campaign.transforms"),
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
    other = make_run(tmp_path / "other", findings([0.2, 0.2], [0.2]), TRIED, options={"seed": 7})

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


def test_model_specific_settings_may_differ(tmp_path):
    """A candidate model has its own path, card, profile and seed MSE; those do not block the comparison."""
    coverage = {**COVERAGE, "tknp:1": None}  # TKNP counts patterns: no fraction to compare
    baseline = make_run(tmp_path / "base", findings([0.2, 0.2], [0.2]), TRIED, coverage=coverage)
    cand = make_run(tmp_path / "cand", findings([0.2, 0.2], [0.2]), TRIED, coverage=coverage,
                    model={"path": "candidate.keras", "name": "candidate", "fingerprint": "sha256:" + "cd" * 32},
                    options={"model": "candidate.keras", "profile": "candidate.profile.npz"}, seed_mse=0.003,
                    libraries={"numpy": "9.9"})  # made on another machine
    result = compare_runs(baseline, cand)
    assert result.passed
    assert any("tknp:1" in n for n in result.notes)
    assert any("library versions differ (numpy)" in n for n in result.notes)


# ---------------------------------------------------------------------------------------- validate


def test_validate_options_come_from_the_baseline_except_the_model(tmp_path):
    campaign = pytest.importorskip("deeptest_iot.engine.campaign")
    from deeptest_iot.engine.nightly import options_from_baseline

    recorded = {"model": "base.keras", "card": "base.toml", "profile": "base.profile.npz", "trust_model": True,
                "seed": 3, "strategy": "sweep", "n_seeds": 7, "transforms": ["rain"], "lam": 2.0, "delta": 0.05}
    base = make_run(tmp_path / "base", [], {"rain": 40}, options=recorded, coverage={"nc:0.5": 0.6})
    edit_summary(base, lambda s: s["campaign"].pop("budget"))  # a summary that does not record its budget
    opts = options_from_baseline(base, "cand.keras", tmp_path / "out", card="cand.toml")
    assert isinstance(opts, campaign.CampaignOptions)
    assert (opts.model, opts.card, opts.profile, opts.trust_model) == ("cand.keras", "cand.toml", None, False)
    assert (opts.seed, opts.strategy, opts.n_seeds, opts.transforms, opts.lam, opts.delta) == \
        (3, "sweep", 7, ("rain",), 2.0, 0.05)
    assert opts.budget == 40  # not recorded: the inputs the baseline tried
    assert opts.out == str(tmp_path / "out") and opts.resume is False


def test_validate_refuses_a_baseline_it_cannot_reproduce(tmp_path):
    pytest.importorskip("deeptest_iot.engine.campaign")
    from deeptest_iot.engine.nightly import options_from_baseline

    old = make_run(tmp_path / "old", [], {"rain": 4}, tool={"version": "0.0.1"})
    with pytest.raises(IncomparableRunsError, match="made by deeptest-iot 0.0.1"):
        options_from_baseline(old, "cand.keras", tmp_path / "out")
    running = make_run(tmp_path / "running", [], {"rain": 4}, status="running")
    with pytest.raises(IncomparableRunsError, match="not complete"):
        options_from_baseline(running, "cand.keras", tmp_path / "out")


def test_without_recorded_budgets_different_sizes_are_incomparable(tmp_path):
    base = make_run(tmp_path / "base", [], {"rain": 40})
    cand = make_run(tmp_path / "cand", [], {"rain": 80})
    for folder in (base, cand):
        summary = json.loads((folder / "summary.json").read_text())
        del summary["campaign"]["budget"]
        (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(IncomparableRunsError, match="inputs_tried: 40 vs 80"):
        compare_runs(base, cand)


def test_validate_end_to_end_with_a_tiny_model(tmp_path, untrained_steering_path):
    """run a baseline campaign, then validate the same model (exit 0) through the CLI."""
    pytest.importorskip("keras")
    from deeptest_iot.engine.campaign import CampaignOptions, run_campaign

    path = untrained_steering_path
    # Generated seeds have labels, so the labelled rule judges: a fixed MSE_orig makes findings to compare
    # (with the model's own, 0.01, there were none and the last line compared two empty files).
    opts = CampaignOptions(model=str(path), n_seeds=4, budget=24, batch_size=12, transforms=("rain", "hflip"),
                           coverage=("nc:0.5",), delta=0.001, mse_orig=0.002, failing_seeds="count",
                           out=str(tmp_path / "base"))  # an untrained model gets every seed wrong: count them
    assert run_campaign(opts).summary["findings"] > 0
    result = CliRunner().invoke(main, ["validate", "--model", str(path), "--baseline", str(tmp_path / "base"),
                                       "--out", str(tmp_path / "cand"), "-q"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output
    for name in ("report.html", "compare.json", "junit.xml", "summary.json"):
        assert (tmp_path / "cand" / name).is_file(), name
    assert (tmp_path / "cand" / "findings.jsonl").read_bytes() == (tmp_path / "base" / "findings.jsonl").read_bytes()


def test_validate_judges_the_candidate_by_the_baselines_mse(tmp_path):
    """A candidate worse on clean frames must not loosen its own lambda * MSE_orig bound."""
    pytest.importorskip("deeptest_iot.engine.campaign")
    from deeptest_iot.engine.nightly import options_from_baseline

    recorded = {"seed": 3, "strategy": "random", "budget": 40, "transforms": ["rain"], "lam": 5.0}
    base = make_run(tmp_path / "base", [], {"rain": 40}, options=recorded, seed_mse=2.5e-5)  # MSE_orig measured
    assert options_from_baseline(base, "cand.keras", tmp_path / "out").mse_orig == 2.5e-5
    assert options_from_baseline(base, "cand.keras", tmp_path / "out", own_bound=True).mse_orig is None


def test_campaign_with_a_fixed_mse_orig_uses_it(tmp_path, untrained_steering_path):
    pytest.importorskip("keras")
    from deeptest_iot.engine.campaign import CampaignOptions, run_campaign

    path = untrained_steering_path
    # an untrained model is wrong on every seed at a fixed 1e-9: count them, not skip them
    common = dict(model=str(path), n_seeds=4, budget=12, batch_size=12, transforms=("rain",), coverage=(),
                  failing_seeds="count")
    own = run_campaign(CampaignOptions(**common, out=str(tmp_path / "own"))).summary
    fixed = run_campaign(CampaignOptions(**common, mse_orig=1e-9, out=str(tmp_path / "fixed"))).summary
    assert own["campaign"]["relation"]["mse_orig"] > 1e-6  # an untrained model's own error on the seeds
    assert fixed["campaign"]["relation"]["mse_orig"] == 1e-9
    assert fixed["findings"] >= own["findings"]  # a tighter bound can only find more
    assert fixed["findings"] == 12
