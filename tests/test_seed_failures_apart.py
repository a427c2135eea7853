"""Findings of seeds the model already gets wrong (``--failing-seeds test``) stay apart everywhere a
campaign folder is read: the per-transform tables, the report's distinct failures and JUnit, as they
do in summary.json. Guided search makes chains that only a failing seed was tried with; their
findings used to enter the tables with an unknown number of inputs, which crashed the run's closing
lines (found on real frames, benchmarks/real_frames.py)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deeptest_iot.data.scenes import generate
from deeptest_iot.results.reader import chain_table, distinct_failures, open_run, per_transform_rows

keras = pytest.importorskip("keras")


def _finding(i, transform, seed, violation, **extra):
    return {"id": f"f{i:06d}", "relation": "steering", "transform": transform, "violation": violation,
            "seed_id": seed, "chain": [{"name": n, "params": {}, "seed": 0} for n in transform.split("+")], **extra}


def test_tables_and_distinct_failures_leave_out_findings_of_seeds_already_wrong():
    per_transform = {"fog": {"tried": 10, "findings": 1, "error_rate": 0.1, "mean_violation": 0.2,
                             "max_violation": 0.2}}
    findings = [_finding(0, "fog", "a.png", 0.2),
                _finding(1, "rain+fog", "bad.png", 9.0, seed_failed=True)]
    assert set(chain_table(per_transform, findings)) == {"fog"}
    groups = distinct_failures(findings)
    assert [g["seed_id"] for g in groups] == ["a.png"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Twelve frames and labels equal to the mean-intensity model's answers, except frames 1 and 4
    (0.5 off): the model is already wrong on those two."""
    from deeptest_iot.data.seeds import load_seeds

    folder = tmp_path_factory.mktemp("frames")
    for i, frame in enumerate(generate(12, seed=2, height=48, width=96).images):
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    seeds = load_seeds(folder)
    truth = {i: float(cv2.resize(img, (48, 24), interpolation=cv2.INTER_LINEAR).mean()) / 255
             for i, img in zip(seeds.ids, seeds.images)}
    truth["f1.png"] += 0.5
    truth["f4.png"] -= 0.5
    (folder / "labels.csv").write_text("frame_id,steering_angle\n" + "".join(f"{k},{v:.6f}\n" for k, v in truth.items()))
    return folder


def test_guided_search_testing_failing_seeds_reports_without_crashing(mean_intensity_steering_path, frames,
                                                                      tmp_path):
    from deeptest_iot.cli import main
    from deeptest_iot.results.junit import build_junit

    out = tmp_path / "run"
    args = ["run", "--model", str(mean_intensity_steering_path), "--seeds", str(frames), "--labels",
            str(frames / "labels.csv"), "--failing-seeds", "test", "--budget", "120", "--batch-size", "24",
            "--transforms", "brightness,contrast,gamma,fog,blur_box,jpeg,saturation", "--coverage", "nc:0.5",
            "--work-size", "native", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), result.output
    findings = [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()]
    apart = [f for f in findings if f.get("seed_failed")]
    summary = json.loads((out / "summary.json").read_text())
    # The situation that used to crash: a chain only a failing seed was tried with made a finding.
    assert any(f["transform"] not in summary["per_transform"] for f in apart)
    rows = per_transform_rows(open_run(out))
    assert all(r["tried"] is not None and r["error_rate"] is not None for r in rows)
    assert sum(r["findings"] for r in per_transform_rows(open_run(out), by="chain")) == \
        summary["findings"] - summary["failing_seed_inputs"]["findings"]
    judged_ids = {f["id"] for f in findings if not f.get("seed_failed")}
    assert {g["finding"]["id"] for g in distinct_failures(open_run(out).findings)} <= judged_ids
    root, counts = build_junit(out)
    failed = {tc.get("name") for tc in root.iter("testcase") if tc.find("failure") is not None}
    expected = {name for name, row in summary["per_transform"].items() if row["findings"]}
    assert failed == {link for name in expected for link in name.split("+")}
    assert np.isfinite(summary["error_rate"])
