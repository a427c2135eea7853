"""Campaigns end to end on tiny models: findings on disk, determinism, resume after a kill, exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")

from deeptest_iot.engine.campaign import CampaignOptions, run_campaign  # noqa: E402
from deeptest_iot.cli import main  # noqa: E402
from deeptest_iot.errors import ConfigError  # noqa: E402
from deeptest_iot.data.scenes import generate  # noqa: E402
from deeptest_iot.data.seeds import load_seeds  # noqa: E402
from results_fixtures import make_run, summary_shape  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, mean_intensity_steering_path):
    """Campaigns run the model whose steering is the mean brightness (steering = mean pixel / 255) on 6 seeds."""
    root = tmp_path_factory.mktemp("campaign")
    model = mean_intensity_steering_path
    frames = generate(6, seed=3, height=48, width=96).images
    seeds = root / "seeds"
    seeds.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(seeds / f"frame_{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return {"root": root, "model": str(model), "seeds": str(seeds)}


def _opts(workdir, out, **kw):
    base = dict(model=workdir["model"], seeds=workdir["seeds"], strategy="random", budget=48, batch_size=16,
                coverage=("nc:0.5", "kmnc:4"), transforms=("brightness", "fog", "rotation", "hflip"), seed=1,
                out=str(out))
    base.update(kw)
    return CampaignOptions(**base)


def _findings(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()]


def test_sweep_findings_match_hand_computed_outputs(workdir, tmp_path):
    """Brightness +d raises the mean intensity by what clipping allows; delta 0.1 decides each verdict."""
    out = tmp_path / "sweep"
    opts = _opts(workdir, out, strategy="sweep", transforms=("brightness",), budget=1000, delta=0.1,
                 work_size="native", save_images=True)  # the seeds as the files hold them (auto would shrink them to 36x72)
    result = run_campaign(opts)
    s = result.summary
    assert s["inputs_tried"] == 10 * 6  # DeepTest's 10 brightness steps over 6 seeds
    seeds = load_seeds(workdir["seeds"]).images
    # What the model must say, computed with NumPy: the network sees the frame resized to 24x48.
    findings = _findings(out)
    expected_failures = 0
    for step in range(1, 11):
        d = 10 * step
        for img in seeds:
            before = _model_view(img).mean() / 255.0
            after = _model_view(np.clip(img.astype(int) + d, 0, 255).astype(np.uint8)).mean() / 255.0
            expected_failures += abs(after - before) > 0.1 + 1e-4
    assert s["findings"] == len(findings) == expected_failures
    for f in findings:
        assert f["relation"] == "steering" and f["transform"] == "brightness"
        d = f["chain"][0]["params"]["delta"]
        img = seeds[f["seed_index"]]
        assert f["before"] == pytest.approx(_model_view(img).mean() / 255.0, abs=1e-4)
        expected_after = _model_view(np.clip(img.astype(int) + d, 0, 255).astype(np.uint8)).mean() / 255.0
        assert f["after"] == pytest.approx(expected_after, abs=1e-4)
        assert f["violation"] == pytest.approx(abs(f["after"] - f["before"]) - 0.1, abs=1e-6)
        assert (out / f["images"]["original"]).is_file() and (out / f["images"]["transformed"]).is_file()
    assert result.exit_code == (1 if findings else 0)


def _model_view(img):
    import tensorflow as tf

    x = tf.image.resize(tf.cast(img[None], tf.float32), (24, 48), method="bilinear")
    return x.numpy()[0]


def test_flip_relation_expects_negated_steering(workdir, tmp_path):
    """Mean intensity is mirror-invariant, so pred(flip(x)) = pred(x) breaks pred(flip(x)) = -pred(x)."""
    out = tmp_path / "flip"
    opts = _opts(workdir, out, strategy="sweep", transforms=("hflip",), budget=100, delta=0.1, coverage=())
    s = run_campaign(opts).summary
    findings = _findings(out)
    # Every scene has mean intensity well above 0.05, so |p - (-p)| = 2p > 0.1 for all.
    assert s["inputs_tried"] >= 6 and s["findings"] == s["inputs_tried"] == len(findings)
    for f in findings:
        assert f["details"]["flipped"] is True
        assert f["violation"] == pytest.approx(2 * abs(f["before"]) - 0.1, abs=1e-4)


def test_output_folder_and_summary(workdir, tmp_path):
    out = tmp_path / "run"
    result = run_campaign(_opts(workdir, out, save_images=True))
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "complete" and s["inputs_tried"] == 48
    assert sum(row["tried"] for row in s["per_transform"].values()) == 48
    assert sum(row["findings"] for row in s["per_transform"].values()) == s["findings"] == len(_findings(out))
    assert sum(b["tried"] for b in s["per_severity"].values()) == 48
    assert set(s["coverage"]) == {"nc:0.5", "kmnc:4"}
    growth = s["coverage_growth"]
    assert growth[0]["inputs"] == 0 and growth[-1]["inputs"] == 48
    assert all(a["kmnc:4"] <= b["kmnc:4"] for a, b in zip(growth, growth[1:]))
    assert s["model"]["fingerprint"].startswith("sha256:") and s["libraries"]["tensorflow"]
    assert s["campaign"]["seed"] == 1 and s["campaign"]["strategy"] == "random"
    assert (out / "checkpoint.json").is_file() and (out / "coverage.npz").is_file()
    assert result.summary == s
    # The folders the report, JUnit, compare and export tests read (results_fixtures) have this shape.
    fixture = make_run(tmp_path / "fixture", coverage={"nc:0.5": None, "kmnc:4": None})
    assert summary_shape(json.loads((fixture / "summary.json").read_text())) == summary_shape(s)
    assert list(_findings(fixture)[0]) == list(_findings(out)[0])


@pytest.mark.parametrize("strategy", ["deeptest", "deephunter", "random"])
def test_same_seed_same_findings_byte_for_byte(workdir, tmp_path, strategy):
    a, b = tmp_path / "a", tmp_path / "b"
    run_campaign(_opts(workdir, a, strategy=strategy))
    run_campaign(_opts(workdir, b, strategy=strategy))
    assert (a / "findings.jsonl").read_bytes() == (b / "findings.jsonl").read_bytes()
    assert len(_findings(a)) > 0


@pytest.mark.parametrize("strategy", ["deeptest", "random"])  # random builds the next batch ahead
def test_resume_after_interruption_gives_the_same_findings(workdir, tmp_path, strategy):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_campaign(_opts(workdir, whole, strategy=strategy, budget=80))
    run_campaign(_opts(workdir, parts, strategy=strategy, budget=80), stop_after_batches=2)
    # A kill in the middle of the next batch leaves a torn line after the checkpoint.
    with open(parts / "findings.jsonl", "ab") as f:
        f.write(b'{"id": "f999999", "relation": "stee')
    result = run_campaign(_opts(workdir, parts, strategy=strategy, budget=80, resume=True))
    assert result.summary["status"] == "complete" and result.summary["inputs_tried"] == 80
    assert (whole / "findings.jsonl").read_bytes() == (parts / "findings.jsonl").read_bytes()
    sw, sp = (json.loads((d / "summary.json").read_text()) for d in (whole, parts))
    assert sw["coverage"] == sp["coverage"] and sw["per_transform"] == sp["per_transform"]


@pytest.mark.slow  # three processes that each start TensorFlow: 35-51 s on 2 loaded cores
def test_resume_after_kill_minus_9(workdir, tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "deeptest_iot", "run", "--model", workdir["model"], "--seeds", workdir["seeds"],
            "--strategy", "deephunter", "--budget", "400", "--batch-size", "16", "--seed", "2",
            "--transforms", "brightness,fog,rotation", "--coverage", "nc:0.5,kmnc:4", "--out", str(out), "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it once it has checkpointed a few batches; waiting on the checkpoint, not on the clock (a
    # loaded machine took over 2 minutes to start TensorFlow, and a kill before the first checkpoint
    # leaves nothing to resume). If it finishes first, resuming a finished campaign must work too.
    deadline = time.time() + 900
    while proc.poll() is None:
        ckpt = out / "checkpoint.json"
        if ckpt.exists() and json.loads(ckpt.read_text() or "{}").get("batches", 0) >= 3:
            break
        if time.time() > deadline:
            proc.kill()
            pytest.fail("the campaign wrote no checkpoint in 15 minutes")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode in (0, 1), resumed.stderr
    whole = tmp_path / "whole"
    args[args.index(str(out))] = str(whole)
    subprocess.run(args, capture_output=True, text=True)
    assert (whole / "findings.jsonl").read_bytes() == (out / "findings.jsonl").read_bytes()
    lines = (out / "findings.jsonl").read_text().splitlines()
    assert len({json.loads(line)["id"] for line in lines}) == len(lines)  # nothing written twice


def test_existing_results_are_never_overwritten(workdir, tmp_path):
    out = tmp_path / "run"
    run_campaign(_opts(workdir, out, budget=16))
    with pytest.raises(ConfigError, match="--resume"):
        run_campaign(_opts(workdir, out, budget=16))
    with pytest.raises(ConfigError, match="seed was 1, now 2"):
        run_campaign(_opts(workdir, out, budget=32, seed=2, resume=True))


def test_classification_campaign_flags_changed_labels(tmp_path, dark_bright_classifier_path):
    # class 1 ("bright") wins when the mean intensity is above 0.5
    path = dark_bright_classifier_path
    out = tmp_path / "out"
    s = run_campaign(CampaignOptions(model=str(path), n_seeds=6, strategy="sweep", transforms=("brightness",),
                                     coverage=(), out=str(out), budget=1000)).summary
    assert s["inputs_tried"] == 60
    for f in _findings(out):
        assert f["before"]["label"] != f["after"]["label"]
        assert f["after"]["name"] == "bright"  # brightening can only push toward "bright"


def test_cli_run_exit_codes(workdir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(main, ["run", "--model", workdir["model"], "--seeds", workdir["seeds"], "--budget", "32",
                                  "--batch-size", "16", "--transforms", "brightness", "--delta", "0.01",
                                  "--out", str(out), "-q"])
    assert result.exit_code == 1, result.output  # tiny delta: brightness changes break it
    assert "findings" in result.output
    result = runner.invoke(main, ["run", "--model", workdir["model"], "--seeds", workdir["seeds"], "--budget", "16",
                                  "--transforms", "brightness", "--delta", "0.01", "--max-error-rate", "1.0",
                                  "--out", str(tmp_path / "cli2"), "-q"])
    assert result.exit_code == 0, result.output
    for bad in (["--transforms", "teleport"], ["--budget", "-3"], ["--strategy", "annealing"],
                ["--coverage", "nc:7"], ["--seeds", str(tmp_path / "missing")]):
        result = runner.invoke(main, ["run", "--model", workdir["model"], "--seeds", workdir["seeds"], *bad,
                                      "--out", str(tmp_path / "bad"), "-q"])
        assert result.exit_code == 2, (bad, result.output)
        assert "Traceback" not in result.output


def test_config_file_and_command_line(workdir, tmp_path):
    cfg = tmp_path / "campaign.toml"
    cfg.write_text(f'[run]\nmodel = "{workdir["model"]}"\nseeds = "{workdir["seeds"]}"\nbudget = 16\n'
                   'strategy = "random"\nseed = 4\n')
    opts = CampaignOptions.from_sources(str(cfg), budget=32)
    assert opts.budget == 32 and opts.seed == 4 and opts.strategy == "random"
    cfg.write_text("[run]\nbudgett = 3\n")
    with pytest.raises(ConfigError, match="budgett"):
        CampaignOptions.from_sources(str(cfg))


def test_finished_campaign_resumes_with_a_larger_budget(workdir, tmp_path):
    short, longer = tmp_path / "short", tmp_path / "long"
    run_campaign(_opts(workdir, short, budget=32))
    s = run_campaign(_opts(workdir, short, budget=64, resume=True)).summary
    run_campaign(_opts(workdir, longer, budget=64))
    assert s["inputs_tried"] == 64
    assert (short / "findings.jsonl").read_bytes() == (longer / "findings.jsonl").read_bytes()


@pytest.mark.parametrize("strategy", ["random", "sweep"])  # both build the next batch on another thread
def test_findings_do_not_depend_on_how_fast_the_next_batch_is_built(workdir, tmp_path, monkeypatch, strategy):
    """The next batch is proposed from state the campaign's thread owns; only its pixels are built
    ahead. Delaying that build (as a busy machine would) must change nothing: same inputs, same findings."""
    import deeptest_iot.engine.campaign as campaign_module

    fast = tmp_path / "fast"
    run_campaign(_opts(workdir, fast, strategy=strategy, budget=80))
    real_build = campaign_module.build_images
    delays = iter([0.3, 0.0, 0.2, 0.0, 0.3, 0.1] * 10)

    def slow_build(*args, **kwargs):
        time.sleep(next(delays))
        return real_build(*args, **kwargs)

    monkeypatch.setattr(campaign_module, "build_images", slow_build)
    slow = tmp_path / "slow"
    s = run_campaign(_opts(workdir, slow, strategy=strategy, budget=80)).summary
    assert s["status"] == "complete" and s["inputs_tried"] == 80 and s["stopped_by"] == "budget"
    assert (fast / "findings.jsonl").read_bytes() == (slow / "findings.jsonl").read_bytes()
    assert json.loads((fast / "summary.json").read_text())["per_transform"] == s["per_transform"]


def test_a_sweep_cut_by_the_budget_says_how_much_of_it_ran(workdir, tmp_path):
    s = run_campaign(_opts(workdir, tmp_path / "cut", strategy="sweep", transforms=("brightness",), budget=24)).summary
    assert s["stopped_by"] == "budget" and s["plan"] == {"inputs": 60, "done": 24}
    s = run_campaign(_opts(workdir, tmp_path / "all", strategy="sweep", transforms=("brightness",), budget=1000)).summary
    assert s["stopped_by"] == "plan" and s["plan"] == {"inputs": 60, "done": 60}
    from deeptest_iot.cli.run import stop_line

    assert stop_line({"stopped_by": "budget", "plan": {"inputs": 60, "done": 24}}) == \
        "stopped at the budget: 24 of the plan's 60 inputs (40%); raise --budget to run the whole plan"


def test_resume_needs_only_the_folder(workdir, tmp_path):
    """`run --out X --resume` takes the campaign's options from X; giving one again with another value is refused."""
    out = tmp_path / "run"
    run_campaign(_opts(workdir, out, budget=32))
    resumed = run_campaign(CampaignOptions.from_sources(None, out=str(out), resume=True, budget=48))
    assert resumed.summary["inputs_tried"] == 48 and resumed.summary["campaign"]["seed"] == 1
    whole = tmp_path / "whole"
    run_campaign(_opts(workdir, whole, budget=48))
    assert (whole / "findings.jsonl").read_bytes() == (out / "findings.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="nothing to resume in .*missing \\(no such folder\\)"):
        run_campaign(CampaignOptions.from_sources(None, out=str(tmp_path / "missing"), resume=True))
