"""Findings a user can trust (issue 13): seeds already wrong, unfit models, models that normalise
their own input, distinct failures, and the realism gate in campaigns."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from deeptest_iot.data.scenes import generate
from deeptest_iot.engine.campaign import run_campaign
from deeptest_iot.engine.gates import Gates
from deeptest_iot.engine.options import CampaignOptions
from deeptest_iot.errors import ConfigError
from deeptest_iot.tasks import TASKS
from deeptest_iot.transforms import Chain, get

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Twelve frames 48x96 and a labels CSV whose labels are the mean-intensity model's answers, except
    two (frames 1 and 4) 0.5 off: the model is 'already wrong' on those two (each squared error is 6x
    the seeds' MSE, past DeepTest's lambda = 5 bound)."""
    from deeptest_iot.data.seeds import load_seeds

    folder = tmp_path_factory.mktemp("frames")
    for i, frame in enumerate(generate(12, seed=2, height=48, width=96).images):
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    seeds = load_seeds(folder)
    truth = {i: float(cv2.resize(img, (48, 24), interpolation=cv2.INTER_LINEAR).mean()) / 255
             for i, img in zip(seeds.ids, seeds.images)}
    truth["f1.png"] += 0.5
    truth["f4.png"] -= 0.5
    rows = "".join(f"{i},{v:.6f}\n" for i, v in truth.items())
    (folder / "labels.csv").write_text("frame_id,steering_angle\n" + rows)
    return folder


def _opts(path, frames, out, **kw):
    values = dict(model=str(path), seeds=str(frames), labels=str(frames / "labels.csv"), strategy="random",
                  budget=32, batch_size=16, transforms=("brightness", "fog"), coverage=(), seed=0,
                  work_size="native", out=str(out))
    values.update(kw)
    return CampaignOptions(**values)


def test_seeds_already_wrong_are_skipped_and_said(mean_intensity_steering_path, frames, tmp_path):
    s = run_campaign(_opts(mean_intensity_steering_path, frames, tmp_path / "skip")).summary
    info = s["campaign"]["seed_failures"]
    assert info["known"] and info["count"] == 2 and info["seeds"] == 12 and set(info["ids"]) == {"f1.png", "f4.png"}
    findings = [json.loads(line) for line in (tmp_path / "skip" / "findings.jsonl").read_text().splitlines()]
    assert not {f["seed_id"] for f in findings} & {"f1.png", "f4.png"}
    assert s["seeds"] == 10 and s["failing_seed_inputs"] == {"tried": 0, "findings": 0}


def test_seeds_already_wrong_can_be_tested_apart(mean_intensity_steering_path, frames, tmp_path):
    s = run_campaign(_opts(mean_intensity_steering_path, frames, tmp_path / "test", failing_seeds="test",
                           budget=60)).summary
    apart = s["failing_seed_inputs"]
    assert 0 < apart["findings"] <= apart["tried"]
    findings = [json.loads(line) for line in (tmp_path / "test" / "findings.jsonl").read_text().splitlines()]
    flagged = [f for f in findings if f.get("seed_failed")]
    assert {f["seed_id"] for f in flagged} <= {"f1.png", "f4.png"} and len(flagged) == apart["findings"]
    assert not any(f.get("seed_failed") for f in findings if f["seed_id"] not in ("f1.png", "f4.png"))
    judged = s["inputs_tried"] - apart["tried"]
    assert s["error_rate"] == pytest.approx((s["findings"] - apart["findings"]) / judged)
    assert sum(r["tried"] for r in s["per_transform"].values()) == judged


def test_a_model_wrong_on_every_seed_is_refused_unless_counted(mean_intensity_steering_path, frames, tmp_path):
    with pytest.raises(ConfigError, match="already wrong on all 12 seeds"):
        run_campaign(_opts(mean_intensity_steering_path, frames, tmp_path / "a", mse_orig=1e-12))
    s = run_campaign(_opts(mean_intensity_steering_path, frames, tmp_path / "b", mse_orig=1e-12,
                           failing_seeds="count")).summary
    assert s["campaign"]["seed_failures"]["count"] == 12 and s["error_rate"] == 1.0


def test_a_constant_model_fails_the_run_with_a_warning(constant_steering_path, frames, tmp_path):
    result = run_campaign(_opts(constant_steering_path, frames, tmp_path / "c", labels=None, work_size="auto"))
    assert result.summary["findings"] == 0
    assert any("constant on the seeds" in w for w in result.summary["warnings"])
    assert result.exit_code == 1  # 0 findings from a model that ignores its input is no pass


def test_health_checks_by_hand():
    steering = TASKS["steering"]
    assert steering.health(np.zeros(5), None) and "constant" in steering.health(np.zeros(5), None)[0]
    labels = np.array([0.1, -0.1, 0.2, -0.2])
    worse = steering.health(np.array([-0.1, 0.1, -0.2, 0.21]), labels)  # MSE 0.05 >= variance 0.025
    assert len(worse) == 1 and "no better than a constant" in worse[0]
    assert steering.health(labels + 0.01, labels) == []
    cls = TASKS["classification"]
    same = np.tile([0.9, 0.1], (6, 1))
    assert cls.health(same, None) and cls.health(np.array([[0.9, 0.1], [0.2, 0.8]] * 3), None) == []


def test_a_model_that_normalises_its_input_gets_raw_pixels():
    from deeptest_iot.model.core import load_model

    inp = keras.Input((24, 48, 3))
    x = keras.layers.Rescaling(1 / 255, name="norm")(inp)
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(x)), name="norm_model")
    mut = load_model(model, {"task": "steering"})
    assert (mut.card.scale, mut.card.offset) == (1.0, 0.0)
    assert "normalises its input itself (Rescaling layer 'norm')" in mut.notes[0]
    frames = np.full((1, 24, 48, 3), 255, np.uint8)
    w = model.layers[-1].get_weights()
    assert mut.predict(frames)[0] == pytest.approx(float(np.full(3, 1.0) @ w[0][:, 0] + w[1][0]), abs=1e-5)
    told = load_model(model, {"task": "steering", "scale": 1 / 255})  # the card insists: kept, with a note
    assert told.card.scale == pytest.approx(1 / 255) and "normalised twice" in told.notes[0]
    inp = keras.Input((24, 48, 3))
    plain = keras.Model(inp, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inp)))
    assert load_model(plain, {"task": "steering"}).card.scale == pytest.approx(1 / 255)


def test_distinct_failures_group_by_seed_and_family():
    from deeptest_iot.results.writer import CampaignStats

    stats = CampaignStats()
    names = ["fog", "rain", "fog", "rotation", "fog"]
    failed = np.array([True, True, True, True, False])
    violation = np.array([0.3, 0.5, 0.1, 0.2, 0.0])
    stats.add(names, [0.5] * 5, failed, violation, seed_ids=["a", "a", "b", "a", "c"],
              families=["weather", "weather", "weather", "geometric", "weather"],
              finding_ids=["f0", "f1", "f2", "f3"])
    d = stats.distinct_failures()
    assert d["groups"] == 3
    assert [(g["seed_id"], g["family"], g["finding"], g["findings"]) for g in d["top"]] == [
        ("a", "weather", "f1", 2), ("a", "geometric", "f3", 1), ("b", "weather", "f2", 1)]
    assert Chain([get("fog", severity=0.5), get("rotation", degrees=5)]).family == "geometric+weather"


def test_the_realism_gate_rejects_mutants_that_lost_the_scene():
    seeds = generate(4, seed=5, height=48, width=96).images
    mild, noise = get("brightness", delta=20), get("gaussian_noise", severity=1.0)
    lost = np.random.default_rng(0).integers(0, 256, seeds[1].shape, dtype=np.uint8)  # nothing of the scene left
    mutants = np.stack([mild(seeds[0]), lost, mild(seeds[2]), seeds[3]])
    chains = [Chain([mild]), Chain([get("fog", severity=1.0)]), Chain([mild]), Chain([])]
    verdict = Gates("reject")(seeds, mutants, chains)
    assert verdict.keep.tolist() == [True, False, True, True] and verdict.rejected_by == {"realism": 1}
    flagged = Gates("flag")(seeds, mutants, chains)
    assert flagged.keep.all() and flagged.realistic.tolist() == [True, False, True, True]
    assert flagged.record([1]) == [{"realism": round(float(flagged.score[1]), 4), "realistic": False}]
    assert Gates("off")(seeds, mutants, chains).score is None
    assert noise.kind == "sensor"  # the similarity gate cannot see pixel noise: docs/realism.md


def test_campaign_findings_record_their_realism_and_rejections_are_counted(mean_intensity_steering_path, frames,
                                                                           tmp_path):
    s = run_campaign(_opts(mean_intensity_steering_path, frames, tmp_path / "r", transforms=("contrast", "fog"),
                           budget=64, delta=0.01, labels=None)).summary
    findings = [json.loads(line) for line in (tmp_path / "r" / "findings.jsonl").read_text().splitlines()]
    assert findings and all(f["realistic"] and f["realism"] >= 0.4 for f in findings)
    assert s["inputs_rejected"] == sum(s["rejected_by"].values()) and s["inputs_tried"] == 64
    assert s["campaign"]["gates"]["mode"] == "reject"


def test_profile_trains_the_learned_gate_and_campaigns_use_it(tmp_path, small_steering_cnn_path):
    from click.testing import CliRunner

    from deeptest_iot.cli import main

    path = tmp_path / "small.keras"  # a copy: profile writes beside the model
    path.write_bytes(small_steering_cnn_path.read_bytes())
    (tmp_path / "small.toml").write_text('task = "steering"\ninput_size = [8, 16]\n')
    result = CliRunner().invoke(main, ["profile", str(path), "--n-seeds", "64", "--learned-gate"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "small.gate.keras").is_file() and "learned realism gate trained on 64 frames" in result.output
    s = run_campaign(CampaignOptions(model=str(path), n_seeds=8, budget=16, batch_size=8, coverage=(),
                                     out=str(tmp_path / "run"))).summary
    assert s["campaign"]["gates"]["learned_threshold"] > 0
    off = run_campaign(CampaignOptions(model=str(path), n_seeds=8, budget=16, batch_size=8, coverage=(),
                                       learned_gate="none", out=str(tmp_path / "off"))).summary
    assert "learned_threshold" not in off["campaign"]["gates"]


def test_a_profile_made_under_another_card_is_said(tmp_path, small_steering_cnn_path):
    from click.testing import CliRunner

    from deeptest_iot.cli import main

    path = tmp_path / "small.keras"
    path.write_bytes(small_steering_cnn_path.read_bytes())
    (tmp_path / "small.toml").write_text('task = "steering"\ninput_size = [8, 16]\n')
    assert CliRunner().invoke(main, ["profile", str(path), "--n-seeds", "16"]).exit_code == 0
    same = run_campaign(CampaignOptions(model=str(path), n_seeds=8, budget=8, out=str(tmp_path / "a"))).summary
    assert not any("another model card" in n for n in same["notes"])
    other = tmp_path / "other.toml"
    other.write_text('task = "steering"\ninput_size = [8, 16]\nscale = 0.5\n')
    s = run_campaign(CampaignOptions(model=str(path), card=str(other), n_seeds=8, budget=8,
                                     out=str(tmp_path / "b"))).summary
    assert any("profile was made under another model card (scale" in n and "0.5 now" in n for n in s["notes"])
