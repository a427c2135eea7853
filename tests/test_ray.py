"""The Ray engine (docs/distributed.md) on one local Ray instance of 2 CPUs for the session, whose
actors the campaigns share (started once: importing TensorFlow is most of their cost). sweep and
random give the local engine's findings byte for byte; a killed actor's batches are redone; a
stopped or killed driver resumes; guided searches per worker are deterministic; bad options exit 2
with one line. Tests that need Ray skip when the ray extra is not installed; the others always run."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import pytest

keras = pytest.importorskip("keras")

from click.testing import CliRunner  # noqa: E402

from deeptest_iot.cli import main  # noqa: E402
from deeptest_iot.engine.campaign import CampaignOptions, run_campaign  # noqa: E402
from deeptest_iot.errors import ConfigError  # noqa: E402
from deeptest_iot.data.scenes import generate  # noqa: E402



@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the session: 2 CPUs, no dashboard; shut down at the end."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, mean_intensity_steering_path):
    """The model whose steering is the mean brightness, on 6 seed frames (as tests/test_campaign.py)."""
    root = tmp_path_factory.mktemp("ray")
    seeds = root / "seeds"
    seeds.mkdir()
    for i, frame in enumerate(generate(6, seed=3, height=48, width=96).images):
        cv2.imwrite(str(seeds / f"frame_{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return {"model": str(mean_intensity_steering_path), "seeds": str(seeds)}


def _opts(workdir, out, **kw):
    base = dict(model=workdir["model"], seeds=workdir["seeds"], strategy="random", budget=96, batch_size=16,
                coverage=("nc:0.5", "kmnc:4"), transforms=("brightness", "fog", "rotation", "hflip"), seed=1,
                out=str(out))
    base.update(kw)
    return CampaignOptions(**base)


def _findings(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()]


def _same_run(a: Path, b: Path) -> None:
    """Two campaign folders with the same findings, byte for byte, and the same figures."""
    assert (a / "findings.jsonl").read_bytes() == (b / "findings.jsonl").read_bytes()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("inputs_tried", "inputs_rejected", "findings", "per_transform", "per_severity", "coverage",
                "coverage_growth", "distinct_failures", "stopped_by"):
        assert sa.get(key) == sb.get(key), key


def _ray_campaign(opts):
    from deeptest_iot.engine.campaign import open_out_folder
    from deeptest_iot.engine.ray_engine import RayCampaign

    opts, checkpoint = open_out_folder(opts)
    return RayCampaign(opts, checkpoint, lambda s: None)


@pytest.mark.parametrize("strategy,save_images", [("sweep", False), ("random", True)])
def test_sweep_and_random_give_the_local_findings(ray_local, workdir, tmp_path, strategy, save_images):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_campaign(_opts(workdir, local, strategy=strategy, save_images=save_images))
    campaign = _ray_campaign(_opts(workdir, on_ray, strategy=strategy, save_images=save_images, engine="ray"))
    # Each actor took one CPU and sized TensorFlow's thread pools to it.
    assert [(a["cpus"], a["intra_op"], a["inter_op"]) for a in campaign.engine.actors] == [(1, 1, 1)] * 2
    assert len({a["pid"] for a in campaign.engine.actors}) == 2
    result = campaign.run()
    _same_run(local, on_ray)
    assert len(_findings(local)) > 0 and result.summary["engine"]["workers"] == 2
    if save_images:
        for f in _findings(on_ray):
            for key in ("original", "transformed"):
                assert (on_ray / f["images"][key]).read_bytes() == (local / f["images"][key]).read_bytes()


@pytest.mark.slow  # the restarted actor imports TensorFlow and loads the model again
@pytest.mark.parametrize("strategy", ["random", "deephunter"])
def test_a_killed_actor_is_restarted_and_its_batches_redone(ray_local, workdir, tmp_path, strategy):
    """An actor killed with batches in flight: Ray restarts it, the driver sends them again; nothing is
    lost or counted twice (the findings are those of a run without the kill)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    guided = strategy == "deephunter"
    extra = dict(strategy=strategy, engine="ray" if guided else "local", merge_every=1)
    run_campaign(_opts(workdir, whole, **extra))
    campaign = _ray_campaign(_opts(workdir, killed, **{**extra, "engine": "ray"}))
    kills = []

    def kill_one(c, sent):
        if sent == 3 and not kills:  # random: batches 1-3 in flight; deephunter: the second round's first
            kills.append(c.actors[0])
            ray_local.kill(c.actors[0], no_restart=False)

    campaign.fault_hook = kill_one
    result = campaign.run()
    assert kills and result.summary["engine"]["redone_batches"] >= 1
    assert result.summary["inputs_tried"] == 96
    _same_run(whole, killed)
    ids = [f["id"] for f in _findings(killed)]
    assert ids == [f"f{i:06d}" for i in range(len(ids))]  # none lost, none twice


def test_a_stopped_driver_resumes_from_the_folder(ray_local, workdir, tmp_path):
    """sweep/random: a Ray run stopped after 2 batches resumes (on Ray, or on the local engine) to the
    local engine's findings; a torn line after the checkpoint is cut off."""
    whole = tmp_path / "whole"
    run_campaign(_opts(workdir, whole))
    for engine in ("ray", "local"):
        parts = tmp_path / f"parts-{engine}"
        run_campaign(_opts(workdir, parts, engine="ray"), stop_after_batches=2)
        with open(parts / "findings.jsonl", "ab") as f:
            f.write(b'{"id": "f999999", "relation": "stee')
        result = run_campaign(_opts(workdir, parts, engine=engine, resume=True))
        assert result.summary["status"] == "complete" and result.summary["inputs_tried"] == 96
        _same_run(whole, parts)


def test_guided_searches_per_worker_are_deterministic_and_resume(ray_local, workdir, tmp_path):
    """deephunter on Ray: one search per worker on its shard (seed i on worker i mod 2), merged every
    batch; the same options give the same findings, also across a stop and a resume, with the local
    engine's finding ids; the local engine refuses to resume it."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    opts = dict(strategy="deephunter", engine="ray", merge_every=1, budget=128)
    result = run_campaign(_opts(workdir, whole, **opts))
    assert result.summary["inputs_tried"] == 128 and result.summary["engine"]["mode"] == "shards"
    findings = _findings(whole)
    assert [f["id"] for f in findings] == [f"f{i:06d}" for i in range(len(findings))]
    assert {f["seed_index"] % 2 for f in findings} == {f["case"] // 10 ** 9 for f in findings} == {0, 1}
    assert all(f["seed_index"] % 2 == f["case"] // 10 ** 9 for f in findings)  # each worker its own seeds
    run_campaign(_opts(workdir, parts, **opts), stop_after_batches=2)
    with pytest.raises(ConfigError, match="resume it with --engine ray"):
        run_campaign(_opts(workdir, parts, **{**opts, "engine": "local"}, resume=True))
    with pytest.raises(ConfigError, match="merge-every 1, not 2"):
        run_campaign(_opts(workdir, parts, **{**opts, "merge_every": 2}, resume=True))
    run_campaign(_opts(workdir, parts, **opts, resume=True))
    _same_run(whole, parts)


def test_without_ray_the_engine_says_how_to_install_it(workdir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as it does without the extra
    with pytest.raises(ConfigError, match=r"pip install 'deeptest-iot\[ray\]'"):
        run_campaign(_opts(workdir, tmp_path / "out", engine="ray"))


def test_ray_options_need_the_ray_engine(workdir, tmp_path):
    with pytest.raises(ConfigError, match="--workers is for the Ray engine"):
        run_campaign(_opts(workdir, tmp_path / "out", workers=2))
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        _opts(workdir, tmp_path / "out", workers=0)


@pytest.mark.parametrize("bad,phrase", [(["--workers", "0"], "--workers"),
                                        (["--address", "auto"], "--address is for the Ray engine"),
                                        (["--workers", "2"], "--workers is for the Ray engine")])
def test_bad_ray_options_exit_2_with_one_line(workdir, tmp_path, bad, phrase):
    result = CliRunner().invoke(main, ["run", "--model", workdir["model"], "--seeds", workdir["seeds"], *bad,
                                       "--out", str(tmp_path / "bad"), "-q"])
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], result.stderr
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.slow  # a second Python process imports TensorFlow, and new actors start for it and after it
def test_a_killed_driver_process_resumes_from_the_folder(ray_local, workdir, tmp_path):
    """A driver process killed with SIGKILL after a checkpoint (its actors die with its Ray job):
    --resume on Ray finishes with the local engine's findings."""
    import os
    import signal
    import subprocess
    import time

    from deeptest_iot.engine import ray_engine

    ray_engine._POOL.take(ray_local, -1)  # the session's kept actors free their CPUs for the killed driver's
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    kw = dict(budget=480, engine="ray", workers=2)
    run_campaign(_opts(workdir, whole, budget=480))
    opts = _opts(workdir, killed, **kw, address=ray_local.get_runtime_context().gcs_address).to_dict()
    script = ("import json, sys\nfrom deeptest_iot.engine.campaign import CampaignOptions, run_campaign\n"
              # a checkpoint after every batch (stop_after_batches: never reached) so the kill finds one early
              "run_campaign(CampaignOptions(**json.loads(sys.argv[1])), stop_after_batches=10 ** 9)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(opts)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not (killed / "checkpoint.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the driver finished before it could be killed"
    assert json.loads((killed / "summary.json").read_text())["status"] == "running"
    result = run_campaign(_opts(workdir, killed, **kw, resume=True))
    assert result.summary["status"] == "complete" and result.summary["inputs_tried"] == 480
    _same_run(whole, killed)
