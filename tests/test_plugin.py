"""The pytest plugin, run the way a model QA team runs it: inner pytest sessions with ``pytester``.

Two tiny Keras steering models stand in for real ones: ``bright`` answers 1.125 times the mean
brightness of the frame (so +80 brightness moves it by about 0.3, past the 0.1 delta: the invariance
test fails deterministically) and ``steady`` always answers 0 (every relation holds); ``daynight``
classifies a frame as day when its mean brightness is above 0.3. See conftest.py and toy_models.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# Imported here so that pytester's in-process runs reuse them: it drops the modules an inner run
# imports, and re-importing Hypothesis (its pytest plugin's summary hook) or TF-backed modules in
# every inner session would cost seconds each.
import hypothesis  # noqa: F401,E402
import deeptest_iot.engine.campaign  # noqa: F401,E402
import deeptest_iot.cli.model  # noqa: F401,E402
import deeptest_iot.coverage  # noqa: F401,E402
import deeptest_iot.model.core  # noqa: F401,E402
import deeptest_iot.tasks  # noqa: F401,E402
import deeptest_iot.engine.check  # noqa: F401,E402
import deeptest_iot.results.writer  # noqa: F401,E402
import deeptest_iot.data.seeds  # noqa: F401,E402
import deeptest_iot.transforms  # noqa: F401,E402

pytest_plugins = ["pytester"]

BRIGHTNESS_TEST = '''
import pytest
from deeptest_iot.transforms import get

@pytest.mark.model_test
def test_brightness(model_under_test, seed_images, metamorphic):
    metamorphic.assert_invariant(model_under_test, seed_images[:6], get("brightness", severity=0.8))
'''


@pytest.fixture
def models(brightness_steering_path, constant_steering_path, day_night_classifier_path):
    """The session's toy models by the names the inner sessions report (conftest.py)."""
    return {"bright": brightness_steering_path, "steady": constant_steering_path,
            "daynight": day_night_classifier_path}


def _run(pytester, *args):
    # Few generated seeds and no KMNC/NBC profile pass keep each inner session fast.
    return pytester.runpytest("--dt-n-seeds=8", *args)


# -- options and ini keys -----------------------------------------------------------------------

def test_options_are_listed_in_help(pytester):
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    for option in ("--dt-model", "--dt-seeds", "--dt-labels", "--dt-report", "--dt-budget", "--dt-trust-model",
                   "deeptest_model", "deeptest_report", "deeptest_budget", "deeptest_trust_model"):
        assert option in out
    assert "ARBITRARY CODE" in out  # the trust flag says why it is dangerous


def test_ini_keys_are_read_relative_to_the_ini_file_and_the_command_line_wins(pytester, models):
    pytester.makeini(f"""
        [pytest]
        deeptest_model = {models['steady'].name}
        deeptest_report = out/qa
        deeptest_budget = 7
        deeptest_n_seeds = 3
    """)
    for name in ("steady", "bright"):
        (pytester.path / models[name].name).write_bytes(models[name].read_bytes())
        (pytester.path / f"{name}.toml").write_text(models[name].with_suffix(".toml").read_text())
    pytester.makepyfile(f'''
        from pathlib import Path
        import pytest
        from deeptest_iot.testing.plugin import Settings

        ROOT = Path({str(pytester.path)!r})

        def test_ini(pytestconfig, model_under_test, seed_images, metamorphic):
            assert Settings.from_config(pytestconfig).report == ROOT / "out" / "qa"
            assert metamorphic.budget == 7
            assert model_under_test.name == "steady" and model_under_test.path == str(ROOT / "steady.keras")
            assert len(seed_images) == 3

        def test_cli(pytestconfig, model_under_test, seed_images, metamorphic):
            assert Settings.from_config(pytestconfig).report == ROOT / "elsewhere"
            assert metamorphic.budget == 9
            assert model_under_test.name == "bright"
            assert len(seed_images) == 4

        @pytest.mark.model_test(budget=2)
        def test_marker_budget(metamorphic):
            assert metamorphic.budget == 2
    ''')
    pytester.runpytest("--strict-markers", "-k", "not cli").assert_outcomes(passed=2)
    pytester.runpytest("--dt-model=bright.keras", "--dt-budget=9", "--dt-n-seeds=4", "--dt-report=elsewhere",
                       "-k", "cli").assert_outcomes(passed=1)


def test_bad_budget_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--dt-budget=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "deeptest_budget must be a whole number" in result.stderr.str()


# -- fixtures -----------------------------------------------------------------------------------

def test_model_under_test_skips_with_a_reason_when_no_model_is_configured(pytester):
    pytester.makepyfile("def test_model(model_under_test): pass")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no model under test configured: pass --dt-model PATH*"])


def test_model_that_cannot_load_errors_with_the_loader_message(pytester, tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    pytester.makepyfile("def test_model(model_under_test): pass")
    result = pytester.runpytest(f"--dt-model={bad}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot load the model under test*not a .keras archive*"])


def test_unknown_sample_model_names_the_known_ones(pytester):
    pytester.makepyfile("def test_model(model_under_test): pass")
    result = pytester.runpytest("--dt-model=sample:nope")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown sample model 'nope'; known: dave2_steering*"])


def test_seed_fixtures_from_a_folder_with_labels(pytester):
    import cv2

    frames = pytester.mkdir("frames")
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    (frames / "labels.csv").write_text("frame_id,steering_angle\nf0.png,0.1\nf1.png,-0.2\nf2.png,0.0\n")
    pytester.makepyfile('''
        import numpy as np

        def test_seeds(seeds, seed_images):
            assert seeds.ids == ["f0.png", "f1.png", "f2.png"]
            assert seed_images.shape == (3, 20, 30, 3) and seed_images.dtype.name == "uint8"
            assert np.allclose(seeds.labels, [0.1, -0.2, 0.0])
    ''')
    _run(pytester, "--dt-seeds=frames", "--dt-labels=frames/labels.csv").assert_outcomes(passed=1)


def test_generated_seed_images_by_default(pytester):
    pytester.makepyfile('''
        def test_seeds(seeds, seed_images):
            assert seed_images.shape == (5, 160, 320, 3)
            assert seeds.task == "steering" and len(seeds.labels) == 5
    ''')
    pytester.runpytest("--dt-n-seeds=5").assert_outcomes(passed=1)


# -- the metamorphic helper and its failure message ---------------------------------------------

def test_failure_message_says_how_many_the_worst_and_where_the_images_are(pytester, models):
    pytester.makepyfile(test_qa=BRIGHTNESS_TEST)
    result = _run(pytester, f"--dt-model={models['bright']}", "--dt-report=qa")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    report = pytester.path / "qa"
    assert "6 of 6 input(s) broke the steering relation of model 'bright' under brightness (severity 0.80)" in out
    assert "brightness(delta=80.0)" in out
    assert "|after - before| <= delta" in out
    assert "worst 5:" in out and "... and 1 more" in out
    worst = [line for line in out.splitlines() if line.startswith("E         input ")]
    assert len(worst) == 5
    deviations = [float(line.split("deviation ")[1].split()[0]) for line in worst]
    assert deviations == sorted(deviations, reverse=True)  # worst first
    assert all(d > 0.1 for d in deviations) and "before +" in worst[0] and "-> after +" in worst[0]
    for line in out.splitlines():
        for word in line.split():
            if word.endswith(".png"):
                assert Path(word).is_file(), word
                assert Path(word).parent == report / "images"
    assert f"this check's 6 finding(s) (f000000..f000005) are in {report / 'findings.jsonl'}" in out
    assert f"deeptest-iot report {report}" in out
    # The traceback ends at the test's own line, not inside the plugin or its helper.
    assert "plugin.py" not in out and "metamorphic.py" not in out


def test_invariant_holds_for_a_steady_model_and_returns_what_it_checked(pytester, models):
    pytester.makepyfile('''
        from deeptest_iot.transforms import Chain, get

        def test_weather(model_under_test, seeds, metamorphic):
            chain = Chain([get("rain", severity=0.7), get("fog", severity=0.7)])
            result = metamorphic.assert_invariant(model_under_test, seeds, chain)
            assert result.checked == 8 and result.relation == "steering"
            assert not result.violation.any()
            result = metamorphic.assert_invariant(model_under_test, seeds.images[:2], [get("blur_box", severity=1)],
                                                  delta=0.0)
            assert result.checked == 2
    ''')
    result = _run(pytester, f"--dt-model={models['steady']}", "--dt-report=qa")
    result.assert_outcomes(passed=1)
    summary = json.loads((pytester.path / "qa" / "summary.json").read_text())
    assert summary["findings"] == 0 and summary["inputs_tried"] == 10
    assert summary["per_transform"]["rain+fog"]["tried"] == 8


def test_classification_failures_show_classes_and_confidences(pytester, models):
    pytester.makepyfile(test_cls='''
        from deeptest_iot.transforms import get

        def test_night(model_under_test, seed_images, metamorphic):
            metamorphic.assert_invariant(model_under_test, seed_images[:3], get("night", severity=1.0),
                                         max_confidence_drop=0.2)
    ''')
    result = _run(pytester, f"--dt-model={models['daynight']}", "--dt-report=qa", "--dt-coverage=none")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "3 of 3 input(s) broke the classification relation of model 'daynight' under night" in out
    assert "the top-1 class must stay the same and its confidence must not drop by more than 0.2" in out
    result.stdout.fnmatch_lines(["E         input *: before day (0.*) -> after night (0.*); violation * past the threshold 0"])
    assert "coverage not tracked (deeptest_coverage = none)" in out


def test_models_passed_directly_and_bad_arguments(pytester, models):
    pytester.makepyfile(f'''
        import pytest
        from deeptest_iot.transforms import get

        def test_path_model(seed_images, metamorphic):
            with pytest.raises(AssertionError, match="broke the steering relation of model 'bright'"):
                metamorphic.assert_invariant({str(models['bright'])!r}, seed_images[:2], get("brightness", severity=1))

        def test_name_instead_of_transform(seed_images, metamorphic):
            metamorphic.assert_invariant({str(models['steady'])!r}, seed_images[:2], "fog")
    ''')
    result = _run(pytester, "--dt-report=qa")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*deeptest-iot: transform 'fog': pass a transform value, e.g.*get('fog', severity=0.5)*"])


def test_budget_limits_the_inputs_a_test_checks(pytester, models):
    pytester.makepyfile('''
        import pytest
        from deeptest_iot.testing.plugin import DeeptestBudgetWarning
        from deeptest_iot.transforms import get

        @pytest.mark.model_test(budget=3)
        def test_budget(model_under_test, seed_images, metamorphic):
            with pytest.warns(DeeptestBudgetWarning, match="budget of 3 inputs reached; checking 3 of 8"):
                result = metamorphic.assert_invariant(model_under_test, seed_images, get("fog", severity=0.2))
            assert result.checked == 3 and metamorphic.remaining == 0
    ''')
    _run(pytester, f"--dt-model={models['steady']}", "--dt-report=qa").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "qa" / "summary.json").read_text())["inputs_tried"] == 3


# -- what the session leaves: the summary section and the report folder -------------------------

def test_terminal_summary_reports_coverage_and_findings(pytester, models):
    pytester.makepyfile(test_qa=BRIGHTNESS_TEST)
    result = _run(pytester, f"--dt-model={models['bright']}", "--dt-report=qa", "--dt-coverage=nc:0.5,kmnc:4")
    result.stdout.fnmatch_lines([
        "*= deeptest-iot model tests =*",
        "model bright (sha256:*): 6 input(s) checked by 1 test(s), 6 finding(s) (100.0%)",
        "  coverage of 12 input(s) run: nc:0.5 *% (*/5), kmnc:4 *% (*/20)",
        "  profile: the session's seeds (generated:8)",
        "  brightness: 6 of 6 broke the relation*",
        f"  report folder: {pytester.path / 'qa'}*",
    ])


def test_findings_are_a_campaign_folder_that_report_reads(pytester, models):
    from deeptest_iot.results.report import render_report
    from deeptest_iot.results.reader import open_run

    pytester.makepyfile(test_qa=BRIGHTNESS_TEST)
    _run(pytester, f"--dt-model={models['bright']}", "--dt-report=qa").assert_outcomes(failed=1)
    run = open_run(pytester.path / "qa")
    assert run.summary["status"] == "complete" and run.summary["campaign"]["strategy"] == "pytest"
    assert run.summary["findings"] == 6 and run.summary["error_rate"] == 1.0
    assert run.summary["model"]["name"] == "bright" and run.task == "steering"
    assert set(run.summary["coverage"]) == {"nc:0.75", "kmnc:10", "nbc"}
    findings = run.findings
    assert [f["id"] for f in findings] == [f"f{i:06d}" for i in range(6)]
    first = findings[0]
    assert list(first)[:14] == ["id", "case", "seed_id", "seed_index", "relation", "transform", "chain", "severity",
                                "before", "after", "label", "violation", "threshold", "coverage_gain"]
    # The campaign's one chain form: per-link seeds included (the helper applies the chain with seed 0).
    from deeptest_iot.transforms import Chain

    assert first["chain"] == [{"name": "brightness", "params": {"delta": 80.0}, "seed": Chain.link_seeds(0, 1)[0]}]
    assert first["violation"] > 0 and first["after"] - first["before"] > 0.1
    assert first["test"] == "test_qa.py::test_brightness"
    for f in findings:
        assert run.resolve(f["images"]["original"]).is_file() and run.resolve(f["images"]["transformed"]).is_file()
    assert "brightness" in render_report(pytester.path / "qa")


def test_a_new_session_replaces_the_last_pytest_report_but_never_a_campaign(pytester, models):
    pytester.makepyfile(test_qa=BRIGHTNESS_TEST)
    for _ in range(2):
        _run(pytester, f"--dt-model={models['bright']}", "--dt-report=qa").assert_outcomes(failed=1)
    lines = (pytester.path / "qa" / "findings.jsonl").read_text().splitlines()
    assert len(lines) == 6

    campaign = pytester.mkdir("campaign")
    (campaign / "summary.json").write_text(json.dumps({"campaign": {"strategy": "deeptest"}}))
    result = _run(pytester, f"--dt-model={models['bright']}", "--dt-report=campaign")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*report folder * holds a deeptest-iot campaign (strategy 'deeptest')*"])
    assert json.loads((campaign / "summary.json").read_text()) == {"campaign": {"strategy": "deeptest"}}


def test_other_models_get_their_own_folder(pytester, models):
    pytester.makepyfile(f'''
        from deeptest_iot.transforms import get

        def test_both(model_under_test, seed_images, metamorphic):
            metamorphic.assert_invariant(model_under_test, seed_images[:2], get("fog", severity=0.3))
            metamorphic.assert_invariant({str(models['bright'])!r}, seed_images[:2], get("fog", severity=0.3),
                                         delta=2.0)
    ''')
    _run(pytester, f"--dt-model={models['steady']}", "--dt-report=qa", "--dt-coverage=none").assert_outcomes(passed=1)
    report = pytester.path / "qa"
    assert json.loads((report / "summary.json").read_text())["model"]["name"] == "steady"
    (other,) = (report / "models").iterdir()
    assert other.name.startswith("bright-")
    assert json.loads((other / "summary.json").read_text())["inputs_tried"] == 2


def test_the_documented_example_module_runs(pytester, models):
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "test_model_qa.py"
    pytester.makepyfile(test_model_qa=example.read_text())
    result = _run(pytester, f"--dt-model={models['steady']}", "--strict-markers")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["model steady (*): * input(s) checked by 3 test(s), 0 finding(s) (0.0%)"])


# -- a project that does not use the plugin -------------------------------------------------------

@pytest.mark.slow  # a pytest process: 3-12 s on 2 loaded cores
def test_quiet_in_a_project_that_does_not_use_it(pytester):
    pytester.makepyfile('''
        import sys

        def test_plain(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("deeptest_iot")  # installed and active
            assert "tensorflow" not in sys.modules and "keras" not in sys.modules
            assert "deeptest_iot.model.core" not in sys.modules
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # pytest's header lists the installed plugins; nothing else may mention deeptest.
    lines = [line for line in result.stdout.lines if not line.startswith("plugins:")]
    assert "deeptest" not in "\n".join(lines).lower()
    assert result.stderr.str().strip() == ""
    assert not (pytester.path / "deeptest-report").exists()


@pytest.mark.slow  # a pytest process: 4-9 s on 2 loaded cores
def test_hypothesis_profile_option_loads_the_deeptest_profile(pytester):
    pytester.makepyfile('''
        from hypothesis import settings

        def test_profile():
            assert settings.default.derandomize and settings.default.deadline is None
            assert settings.default.max_examples == 25
    ''')
    result = pytester.runpytest_subprocess("--hypothesis-profile=deeptest", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


ALREADY_WRONG_TEST = '''
import numpy as np
from deeptest_iot.transforms import get


def _labels(model, frames):
    labels = np.asarray(model.predict(frames), float).reshape(-1)
    labels[3] += 0.5  # the model is already wrong on frame 3: 0.25 > 5 * 0.25 / 8
    return labels


def test_light_change(model_under_test, seed_images, metamorphic):
    frames = seed_images[:8]
    result = metamorphic.assert_invariant(model_under_test, frames, get("brightness", severity=0.05),
                                          labels=_labels(model_under_test, frames))
    assert result.already_wrong == 1 and result.checked == 8


def test_strong_change(model_under_test, seed_images, metamorphic):
    frames = seed_images[:8]
    metamorphic.assert_invariant(model_under_test, frames, get("brightness", severity=1.0),
                                 labels=_labels(model_under_test, frames))
'''


def test_frames_the_model_already_gets_wrong_do_not_fail_a_test(pytester, models):
    # As in campaigns (issue 13): a frame whose own answer breaks the labelled rule breaks it under
    # any transform; its finding is recorded apart and the test fails only on the others.
    pytester.makepyfile(test_qa=ALREADY_WRONG_TEST)
    result = _run(pytester, f"--dt-model={models['bright']}", "--dt-report=qa")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "input(s) broke the steering relation" in out and "input 3 " not in out
    assert "not counted: the model is already wrong on 1 of these 8 frame(s)" in out
    # Brightening frame 3 moves its answer toward its label (+0.5): only the light change breaks it.
    assert "not counted: 2 input(s) made from frames the model already gets wrong by their labels (1 finding(s)" in out
    findings = [json.loads(line) for line in (pytester.path / "qa" / "findings.jsonl").read_text().splitlines()]
    assert [f["seed_id"] for f in findings if f.get("seed_failed")] == ["input-3"]
    summary = json.loads((pytester.path / "qa" / "summary.json").read_text())
    assert summary["failing_seed_inputs"] == {"tried": 2, "findings": 1}


# -- a model against its twin: assert_equivalent -----------------------------------------------------------

def test_assert_equivalent_against_a_twin(pytester, models, clipped_steering_path, mean_intensity_steering_path):
    """``clip`` is ``bright`` with its answer clipped at 0.5625 (toy_models.CLIP): by hand the two agree on
    a frame of pixel value 60 (0.265 each) and disagree on one of value 200 (0.882 against 0.5625)."""
    pytester.makepyfile(f'''
        import numpy as np
        import pytest

        def frames(*values):
            return np.stack([np.full((32, 32, 3), v, np.uint8) for v in values])

        def test_agrees_on_dark_frames(model_under_test, twin_under_test, metamorphic):
            result = metamorphic.assert_equivalent(model_under_test, twin_under_test, frames(60, 100))
            assert result.checked == 2 and result.relation == "differential"
            assert np.allclose(result.outputs_before, result.outputs_after, atol=1e-5)

        def test_disagrees_on_a_bright_frame(model_under_test, twin_under_test, metamorphic):
            metamorphic.assert_equivalent(model_under_test, twin_under_test, frames(60, 200))

        def test_a_twin_of_another_model(model_under_test, metamorphic):
            metamorphic.assert_equivalent(model_under_test, {str(mean_intensity_steering_path)!r}, frames(60))
    ''')
    result = _run(pytester, f"--dt-model={models['bright']}", f"--dt-twin={clipped_steering_path}",
                  "--dt-report=qa", "--dt-coverage=none")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "1 of 2 input(s): twin 'clip' disagreed with model 'bright' on the images themselves" in out
    assert "relation: |twin - model| <= 0.02 on the same frame" in out
    result.stdout.fnmatch_lines(["E         input 1 (*): model +0.882*, twin +0.562*; |twin - model| 0.3*> 0.02*"])
    result.stdout.fnmatch_lines(["deeptest-iot: twin 'mean_intensity' of 'bright': the twin takes 24x48 inputs but the "
                                 "float model takes 32x32; *"])
    result.stdout.fnmatch_lines(["model bright (*): 0 input(s) checked against its relation by * test(s), 0 finding(s)*",
                                 "  twin clip: 4 input(s) compared, 1 differential finding(s) (25.0%)"])
    report = pytester.path / "qa"
    findings = [json.loads(line) for line in (report / "findings.jsonl").read_text().splitlines()]
    assert [f["relation"] for f in findings] == ["differential"]
    assert findings[0]["before"] == pytest.approx(1.125 * 200 / 255, abs=1e-4)
    assert findings[0]["after"] == pytest.approx(0.5625, abs=1e-5) and findings[0]["twin"] == "clip"
    frame = [w for w in out.split() if w.endswith("_trans.png")]
    assert frame and Path(frame[0]).is_file()  # the frame both models saw
    summary = json.loads((report / "summary.json").read_text())
    assert summary["relations"]["differential"]["inputs_tried"] == 4
    assert summary["relations"]["differential"]["findings"] == 1 and summary["twin"]["name"] == "clip"
