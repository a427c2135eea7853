"""Twins in campaigns: `run --twin`, the differential relation beside the task's, the fitness rule,
the report, JUnit and compare of a twin campaign, and the bad twins (exit 2).

The float model is ``bright`` (steering = 1.125 x the frame's mean brightness) and its "twin" is
``clip``, the same network with its answer clipped at CLIP = 0.5625 (toy_models.py): the two agree
exactly on frames of mean brightness up to 0.5 and the twin answers 0.5625 on brighter ones, so every
differential verdict can be worked out by hand from a frame's mean pixel value.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")

from deeptest_iot.cli import main  # noqa: E402
from deeptest_iot.engine.campaign import CampaignOptions, run_campaign  # noqa: E402
from deeptest_iot.engine.check import BatchCheck, SeedBatch  # noqa: E402
from deeptest_iot.errors import ConfigError  # noqa: E402
from deeptest_iot.model.core import load_model  # noqa: E402
from deeptest_iot.results.writer import CampaignStats, FindingsWriter  # noqa: E402
from deeptest_iot.tasks.differential import differential_oracle_for  # noqa: E402
from deeptest_iot.transforms import Chain  # noqa: E402
import toy_models  # noqa: E402
from toy_models import CLIP  # noqa: E402

DELTA = 0.02  # the differential relation's default bound (rad)
SEED_VALUES = {"a060.png": 60, "b100.png": 100, "c140.png": 140, "d230.png": 230}


def steer(pixel_mean: float) -> float:
    """The float model's answer by hand: 1.125 x mean brightness."""
    return 1.125 * pixel_mean / 255.0


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory) -> Path:
    """Four uniform 32x32 frames. By hand: the float model answers 0.265, 0.441, 0.618, 1.015; the twin
    agrees on the first two and answers 0.5625 on the last two (|difference| 0.055 and 0.452 > 0.02)."""
    folder = tmp_path_factory.mktemp("uniform")
    for name, value in SEED_VALUES.items():
        cv2.imwrite(str(folder / name), np.full((32, 32, 3), value, np.uint8))
    return folder


def _opts(model, twin, seeds, out, **kw):
    base = dict(model=str(model), twin=None if twin is None else str(twin), seeds=str(seeds), strategy="deeptest", budget=48, batch_size=8,
                coverage=(), transforms=("brightness", "contrast"), realism="off", seed=3, out=str(out))
    base.update(kw)
    return CampaignOptions(**base)


def _findings(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory, brightness_steering_path, clipped_steering_path, seeds_dir):
    out = tmp_path_factory.mktemp("twinrun") / "out"
    result = run_campaign(_opts(brightness_steering_path, clipped_steering_path, seeds_dir, out))
    return result, out


def test_seeds_the_twin_already_breaks_are_reported(twin_run):
    result, _ = twin_run
    twin = result.summary["twin"]
    seeds = twin["seed_disagreements"]
    assert (seeds["count"], seeds["seeds"], seeds["ids"]) == (2, 4, ["c140.png", "d230.png"])
    assert seeds["max_disagreement"] == pytest.approx(steer(230) - CLIP, abs=1e-5)
    assert twin["relation"] == {"name": "differential", "task": "steering", "delta": DELTA}
    assert twin["check"]["shared_layers"] == ["conv", "steer"] and twin["check"]["twin_only_layers"] == ["clip"]
    assert result.exit_code == 1  # the twin breaks the relation on clean seeds: the run fails


def test_every_input_is_judged_by_both_relations(twin_run, seeds_dir):
    from deeptest_iot.results.reader import open_run
    from deeptest_iot.results.render import Renderer

    result, out = twin_run
    s = result.summary
    findings = _findings(out)
    diff = [f for f in findings if f["relation"] == "differential"]
    own = [f for f in findings if f["relation"] == "steering"]
    assert diff and own and len(diff) + len(own) == len(findings) == s["findings"]
    rel = s["relations"]
    assert set(rel) == {"steering", "differential"}
    assert rel["steering"]["findings"] == len(own) and rel["differential"]["findings"] == len(diff)
    assert rel["steering"]["inputs_tried"] == rel["differential"]["inputs_tried"] == s["inputs_tried"] == 48
    assert rel["steering"]["per_transform"] == s["per_transform"]  # the top level is the task's relation
    # Inputs of the seeds the twin already breaks are left out of its per-transform table, counted apart.
    apart = rel["differential"]["failing_seed_inputs"]
    assert sum(v["tried"] for v in rel["differential"]["per_transform"].values()) + apart["tried"] == 48
    assert apart["tried"] > 0 and s["failing_seed_inputs"]["tried"] == 0  # the model's own seeds: none known
    renderer = Renderer(open_run(out))
    for f in diff:
        # By hand: before = the float model on the frame both saw, after = the twin = min(before, CLIP).
        frame = renderer.transformed(f)
        assert f["before"] == pytest.approx(steer(frame.mean()), abs=1e-4)
        assert f["after"] == pytest.approx(min(f["before"], CLIP), abs=1e-5)
        assert f["before"] - CLIP > DELTA and f["violation"] == pytest.approx(f["before"] - CLIP - DELTA, abs=1e-5)
        assert f["details"]["disagreement"] == pytest.approx(f["before"] - CLIP, abs=1e-5)
        # Inputs of the seeds the twin already breaks are counted apart (--failing-seeds skip/test).
        assert f.get("seed_failed", False) == (f["seed_id"] in ("c140.png", "d230.png"))
    assert apart["findings"] == sum(1 for f in diff if f.get("seed_failed"))
    judged = rel["differential"]["inputs_tried"] - apart["tried"]
    assert rel["differential"]["error_rate"] == pytest.approx((len(diff) - apart["findings"]) / judged)
    # An input that breaks both relations gives two findings, side by side, with the same case.
    cases: dict[int, list] = {}
    for f in findings:
        cases.setdefault(f["case"], []).append(f)
    both = [c for c in cases.values() if len(c) == 2]
    assert both and all([f["relation"] for f in c] == ["steering", "differential"] for c in both)
    assert all(int(c[1]["id"][1:]) == int(c[0]["id"][1:]) + 1 for c in both)


def test_the_twin_on_a_seed_and_a_frame_by_hand(brightness_steering_path, clipped_steering_path, tmp_path):
    """The differential oracle on the two models' outputs, computed by hand for 4 uniform frames."""
    float_mut, twin = load_model(brightness_steering_path), load_model(clipped_steering_path)
    frames = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (60, 127, 140, 255)])
    f_out, t_out = float_mut.predict(frames), twin.predict(frames)
    assert np.allclose(f_out, [steer(v) for v in (60, 127, 140, 255)], atol=1e-5)
    assert np.allclose(t_out, [steer(60), steer(127), CLIP, CLIP], atol=1e-5)
    v = differential_oracle_for(float_mut.card).check(f_out, t_out)
    assert v.failed.tolist() == [False, False, True, True]


def test_fitness_rule_by_hand():
    """An input gains 1 when its disagreement beats every one seen before its batch for its seed."""
    check = BatchCheck(SimpleNamespace(task=None), None, CampaignStats(), twin=object())
    assert check.guide == ["disagreement"]  # no coverage tracked: the twin's disagreement alone guides
    check.seed_disagreements(["a", "b"], np.array([0.1, 0.0]))
    gains = check.disagreement_gains(["a", "a", "b", "c", "a"], np.array([0.05, 0.2, 0.0, 0.3, 0.15]))
    assert gains.tolist() == [0, 1, 0, 1, 1]  # 0.15 beats a's 0.1 from before the batch
    assert check.best == {"a": 0.2, "b": 0.0, "c": 0.3}
    assert check.disagreement_gains(["a", "c"], np.array([0.15, 0.31])).tolist() == [0, 1]
    with pytest.raises(ConfigError, match="'disagreement' needs a twin"):
        BatchCheck(SimpleNamespace(task=None), None, CampaignStats(), guide=["disagreement"])


def test_disagreement_gains_reach_the_strategy(brightness_steering_path, clipped_steering_path, tmp_path):
    """Through the batch check: the gains the strategy gets are the fitness rule's on the real models."""
    float_mut, twin = load_model(brightness_steering_path), load_model(clipped_steering_path)
    check = BatchCheck(float_mut, FindingsWriter(tmp_path, save_images=False), CampaignStats(), twin=twin)
    oracle = differential_oracle_for(float_mut.card)
    check.seed_disagreements(["s"], np.array([0.0]))
    dark = np.full((1, 32, 32, 3), 60, np.uint8)

    def run(values):
        images = np.stack([np.full((32, 32, 3), v, np.uint8) for v in values])
        n = len(values)
        seeds = SeedBatch(ids=["s"] * n, indices=np.zeros(n, int), images=np.repeat(dark, n, 0),
                          reference=float_mut.predict(np.repeat(dark, n, 0)))
        return check(images, [Chain(())] * n, seeds, oracle=float_mut.task.make_oracle(), twin_oracle=oracle,
                     case_ids=list(range(n)))

    r = run([60, 150, 200, 250])  # disagreement by hand: 0, 0.099, 0.320, 0.540
    assert np.allclose(r.disagreement, [0, steer(150) - CLIP, steer(200) - CLIP, steer(250) - CLIP], atol=1e-5)
    assert r.gains.tolist() == [0, 1, 1, 1]
    assert r.twin_verdicts.failed.tolist() == [False, True, True, True]
    assert run([200, 255]).gains.tolist() == [0, 1]


@pytest.mark.parametrize("strategy", ["deeptest", "deephunter"])
def test_the_search_keeps_and_mutates_inputs_that_raise_disagreement(strategy, brightness_steering_path,
                                                                    clipped_steering_path, seeds_dir, tmp_path):
    """No coverage tracked: without a twin no input ever gains, so the guided search never extends a chain;
    with the twin, inputs that raise its disagreement are kept and transformed again (longer chains)."""
    links = {}
    for twin in (None, clipped_steering_path):
        out = tmp_path / f"with-{twin is not None}"
        summary = run_campaign(_opts(brightness_steering_path, twin, seeds_dir, out, strategy=strategy)).summary
        links[twin is not None] = max(len(name.split("+")) for name in summary["per_transform"])
    start = 1 if strategy == "deephunter" else 2  # DeepTest's first chains have two links
    assert links[False] == start and links[True] > start


def test_an_unguided_search_tries_the_same_inputs_with_a_twin(brightness_steering_path, clipped_steering_path,
                                                             seeds_dir, tmp_path):
    """The random strategy takes no feedback: with or without a twin, the same inputs and the same task findings."""
    runs = {}
    for twin in (None, clipped_steering_path):
        out = tmp_path / f"with-{twin is not None}"
        run_campaign(_opts(brightness_steering_path, twin, seeds_dir, out, strategy="random"))
        runs[twin is not None] = [{k: f[k] for k in ("case", "chain", "before", "after")}
                                  for f in _findings(out) if f["relation"] == "steering"]
    assert runs[False] and runs[False] == runs[True]


def test_resume_with_a_twin_gives_the_same_findings(brightness_steering_path, clipped_steering_path, seeds_dir,
                                                    tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    args = (brightness_steering_path, clipped_steering_path, seeds_dir)
    run_campaign(_opts(*args, whole, budget=64))
    run_campaign(_opts(*args, parts, budget=64), stop_after_batches=3)
    result = run_campaign(_opts(*args, parts, budget=64, resume=True))
    assert result.summary["inputs_tried"] == 64
    assert (whole / "findings.jsonl").read_bytes() == (parts / "findings.jsonl").read_bytes()
    sw, sp = (json.loads((d / "summary.json").read_text()) for d in (whole, parts))
    assert sw["relations"] == sp["relations"]


def test_report_junit_and_compare_show_the_differential_relation(twin_run, tmp_path):
    from deeptest_iot.results.compare import compare_runs
    from deeptest_iot.results.junit import build_junit
    from deeptest_iot.results.report import render_report

    _, out = twin_run
    html = render_report(out)
    assert "Twin: the differential relation" in html and "Worst twin disagreements" in html
    assert "seeds the twin already breaks" in html and "c140.png, d230.png" in html
    assert "&rarr; twin +0.5625" in html and "model +" in html  # before = the model, after = the twin
    root, counts = build_junit(out)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["deeptest-iot.steering", "deeptest-iot.differential"]
    seeds_case = [c for c in suites["deeptest-iot.differential"].iter("testcase")
                  if c.get("name") == "seed frames (no transform)"]
    assert len(seeds_case) == 1 and "2 of 4 seed frames" in seeds_case[0].find("failure").get("message")
    rows = {(r.figure, r.scope): r for r in compare_runs(out, out).rows}
    assert rows[("error rate", "differential")].verdict == "same"
    assert ("error rate", "differential: seed frames") in rows and ("error rate", "differential: brightness") in rows


def test_coverage_on_the_twin(brightness_steering_path, clipped_steering_path, seeds_dir, tmp_path):
    result = run_campaign(_opts(brightness_steering_path, clipped_steering_path, seeds_dir, tmp_path / "o",
                                coverage=("nc:0.5",), coverage_on="twin", budget=16))
    per_layer = result.summary["coverage"]["nc:0.5"]["per_layer"]
    assert list(per_layer) == ["conv", "steer", "clip"]  # the twin's layers, "clip" its own


def _int8_without_quantisation(folder: Path) -> Path:
    """A 32x32 LiteRT model whose int8 input carries no scale or zero point."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.int8)])
    def f(x):
        return tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2, 3])[:, None]

    path = folder / "noparams.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert())
    return path


def test_cli_run_with_a_twin_and_bad_twins(brightness_steering_path, clipped_steering_path,
                                          mean_intensity_steering_path, seeds_dir, tmp_path):
    runner = CliRunner()
    base = ["run", "--model", str(brightness_steering_path), "--seeds", str(seeds_dir), "--coverage", "none",
            "--transforms", "brightness", "--realism", "off", "--budget", "16", "-q"]
    ok = runner.invoke(main, base + ["--twin", str(clipped_steering_path), "--out", str(tmp_path / "a")])
    assert ok.exit_code == 1, ok.output
    assert "differential findings from 16 inputs" in ok.output
    assert "the twin already disagrees with the model on 2 of 4 seeds (c140.png, d230.png)" in ok.output
    two = tmp_path / "two.keras"  # no card beside it: it takes the float model's (steering, 32x32)
    toy_models.brightness_classifier(32, 0.5, "two").save(two)
    cases = [
        (["--twin", str(mean_intensity_steering_path)], "twin takes 24x48 inputs but the float model takes 32x32"),
        (["--twin", str(two)], "output 0 has shape [2] in the twin but [1] in the float model"),
        (["--twin", str(_int8_without_quantisation(tmp_path))], "int8 but carries no quantisation parameters"),
        (["--twin", "int8"], "no bright.int8.tflite beside"),
        (["--twin", str(tmp_path / "none.tflite")], "no such file"),
        (["--coverage-on", "twin"], "--coverage-on twin needs a twin"),
        (["--twin", str(clipped_steering_path), "--engine", "ray"], "--twin runs on the local engine only"),
    ]
    for i, (extra, message) in enumerate(cases):
        r = runner.invoke(main, base + extra + ["--out", str(tmp_path / f"bad{i}")])
        assert r.exit_code == 2, (extra, r.output)
        assert message in r.output and "Traceback" not in r.output
        assert not (tmp_path / f"bad{i}").exists()  # refused before anything is written
        assert len([line for line in r.output.splitlines() if line.strip()]) == 1, r.output


def test_twin_delta_only_for_steering(day_night_classifier_path, tmp_path):
    opts = CampaignOptions(model=str(day_night_classifier_path), twin=str(day_night_classifier_path), twin_delta=0.1,
                           coverage=(), budget=8, n_seeds=4, out=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="--twin-delta bounds the differential relation of steering models"):
        run_campaign(opts)


def test_the_sample_model_against_its_shipped_int8_twin(tmp_path):
    """`--twin int8` with the sample model: its shipped LiteRT twin, coverage read from the twin's tensors."""
    pytest.importorskip("ai_edge_litert")
    from deeptest_iot import sample_models

    assert sample_models.twin_path("dave2_steering", "int8").is_file()
    result = run_campaign(CampaignOptions(twin="int8", n_seeds=8, budget=32, batch_size=16, coverage=("nc:0.5",),
                                          coverage_on="twin", out=str(tmp_path / "o")))
    s = result.summary
    assert s["twin"]["kind"] == "LiteRT" and s["twin"]["name"] == "dave2_steering.int8.tflite"
    assert s["twin"]["check"]["float_only_layers"] == ["steer"]
    assert "steer" not in s["coverage"]["nc:0.5"]["per_layer"]
    assert s["relations"]["differential"]["inputs_tried"] == 32


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def test_a_classifier_against_a_twin_with_another_threshold(day_night_classifier_path, seeds_dir, tmp_path):
    """daynight says "day" above mean brightness 0.3 (p(day) = sigmoid(20 (b - 0.3))); its "twin" dusk above
    0.5 (toy_models.brightness_classifier, no card of its own: it takes daynight's). By hand they disagree
    exactly on frames of mean brightness in (0.3, 0.5]: of the seeds, b100 (0.392), with disagreement
    |p_float(day) - p_twin(day)| + 1 (the top-1 class changed) = sigmoid(1.843) - sigmoid(-2.157) + 1."""
    dusk = tmp_path / "dusk.keras"
    toy_models.brightness_classifier(32, 0.5, "dusk").save(dusk)
    out = tmp_path / "o"
    result = run_campaign(_opts(day_night_classifier_path, dusk, seeds_dir, out, budget=32))
    seeds = result.summary["twin"]["seed_disagreements"]
    b = 100 / 255
    expected = _sigmoid(20 * (b - 0.3)) - _sigmoid(20 * (b - 0.5)) + 1
    assert (seeds["count"], seeds["ids"]) == (1, ["b100.png"])
    assert seeds["max_disagreement"] == pytest.approx(expected, abs=1e-4)
    assert result.summary["twin"]["relation"]["name"] == "differential"
    from deeptest_iot.results.reader import open_run
    from deeptest_iot.results.render import Renderer

    renderer = Renderer(open_run(out))
    diff = [f for f in _findings(out) if f["relation"] == "differential"]
    assert diff
    for f in diff:
        m = renderer.transformed(f).astype(np.float64).mean() / 255  # the frame both saw, by hand
        assert 0.3 < m <= 0.5 + 1e-3
        assert (f["before"]["label"], f["after"]["label"]) == (1, 0)  # day, night
        p, q = _sigmoid(20 * (m - 0.3)), _sigmoid(20 * (m - 0.5))
        assert f["details"]["disagreement"] == pytest.approx(p - q + 1, abs=2e-3)


def test_export_leaves_the_differential_findings_out(twin_run, tmp_path):
    from deeptest_iot.results.export import export_findings

    _, out = twin_run
    findings = _findings(out)
    own = sorted(f["id"] for f in findings if f["relation"] == "steering")
    result = export_findings(out, tmp_path / "train")
    assert result.count == len(own) and result.left_out == len(findings) - len(own) > 0
    assert sorted(np.load(result.npz)["ids"].tolist()) == own


def test_validate_a_candidate_and_its_twin(twin_run, brightness_steering_path, clipped_steering_path, tmp_path):
    """validate reruns a twin campaign on a candidate: with the candidate's --twin (here the same pair, so every
    figure is the same); without one, a baseline twin given as a file is refused (it is the baseline's)."""
    _, baseline = twin_run
    runner = CliRunner()
    base = ["validate", "--model", str(brightness_steering_path), "--baseline", str(baseline), "-q"]
    r = runner.invoke(main, base + ["--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "give the candidate's twin with --twin" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, base + ["--twin", str(clipped_steering_path), "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "differential: seed frames" in r.output and "REGRESSION" not in r.output
    assert _findings(tmp_path / "b") == _findings(baseline)


def test_validate_carries_a_twin_kind_over(twin_run, brightness_steering_path, tmp_path):
    """A baseline that named its twin by kind (--twin int8) validates the candidate against the candidate's int8 twin."""
    import shutil

    from deeptest_iot.engine.nightly import options_from_baseline

    _, baseline = twin_run
    copy = tmp_path / "baseline"
    shutil.copytree(baseline, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["campaign"]["twin"] = "int8"
    (copy / "summary.json").write_text(json.dumps(summary))
    assert options_from_baseline(copy, str(brightness_steering_path), tmp_path / "o").twin == "int8"
    assert options_from_baseline(copy, str(brightness_steering_path), tmp_path / "o", twin="x.tflite").twin == "x.tflite"
