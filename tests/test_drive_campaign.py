"""Drive campaigns end to end: the `drive` command, its run folder and report, bad input, the API and
the pytest helper. Tiny Keras models stand in where the sample model is not needed: ``constant``
always answers the same angle (0.3 rad: hard left, out of the lane within a second)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")

from deeptest_iot.cli import main  # noqa: E402
from deeptest_iot.drive import keeps_lane, run_drives  # noqa: E402
from deeptest_iot.drive.loop import DriveSettings  # noqa: E402
from deeptest_iot.errors import ConfigError, ModelError  # noqa: E402


def _constant(path, angle: float, size=(16, 32)):
    inp = keras.Input((*size, 3))
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, name="steer")(x)
    model = keras.Model(inp, out, name=path.stem)
    model.get_layer("steer").set_weights([np.zeros((2, 1), np.float32), np.full(1, angle, np.float32)])
    model.save(path)
    path.with_suffix(".toml").write_text(f'task = "steering"\ninput_size = [{size[0]}, {size[1]}]\n')
    return path


@pytest.fixture(scope="module")
def left(tmp_path_factory):
    return _constant(tmp_path_factory.mktemp("m") / "left.keras", 0.3)


def _invoke(args):
    return CliRunner().invoke(main, args)


def test_drive_writes_a_run_folder_and_exits_1_when_drives_leave_their_lane(left, tmp_path):
    out = tmp_path / "run"
    r = _invoke(["drive", "--model", str(left), "--condition", "fog:0.3", "--drives", "3", "--steps", "40",
                 "--out", str(out), "-q"])
    assert r.exit_code == 1, r.output
    assert "3 left their lane" in r.output and "drive    0: left its lane after" in r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["kind"] == "drive"
    assert (summary["drives"], summary["failures"], summary["failure_rate"]) == (3, 3, 1.0)
    assert summary["campaign"]["condition"]["text"] == "fog:0.3" and summary["campaign"]["frame_size"] == [16, 32]
    assert summary["per_transform"]["fog"]["tried"] == 3 and len(summary["per_drive"]) == 3
    findings = [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()]
    assert [f["drive"] for f in findings] == [0, 1, 2]
    f = findings[0]
    assert f["relation"] == "lane_keeping" and f["condition"] == "fog:0.3" and f["campaign_seed"] == 0
    assert f["chain"] == [{"name": "fog", "params": f["chain"][0]["params"]}] and f["violation"] >= 0
    assert f["metrics"]["departed"] and f["metrics"]["distance_to_departure_m"] < 20
    # the animation is what the camera saw, ending at the departure
    from PIL import Image, ImageSequence

    anim = Image.open(out / f["images"]["animation"])
    frames = list(ImageSequence.Iterator(anim))
    assert len(frames) >= 2 and frames[0].size == (64, 32)  # the 16x32 frames, scaled 2x
    html = (out / "report.html").read_text()
    assert html.count("data:image/webp;base64,") == 3 and html.count("<svg") == 3
    assert "left its lane after" in html
    traces = np.load(out / "traces.npz")
    assert traces["offset"].shape == (3, 41) and traces["departed"].all()
    # `report` knows a drive folder, and the run-folder readers (junit) read it
    r = _invoke(["report", str(out), "--out", str(tmp_path / "again.html")])
    assert r.exit_code == 0 and (tmp_path / "again.html").read_text().count("data:image/webp;base64,") == 3
    r = _invoke(["junit", str(out), "--out", str(tmp_path / "j.xml")])
    assert r.exit_code == 0 and "1 failed" in r.output


def test_drive_exits_0_when_every_drive_keeps_its_lane(tmp_path):
    out = tmp_path / "ok"
    r = _invoke(["drive", "--drives", "2", "--steps", "6", "--out", str(out), "-q"])  # the sample model
    assert r.exit_code == 0, r.output
    assert "0 left their lane" in r.output
    assert (out / "findings.jsonl").read_text() == ""
    assert "Every drive kept its lane" in (out / "report.html").read_text()
    # never overwrites results
    r = _invoke(["drive", "--drives", "1", "--steps", "2", "--out", str(out), "-q"])
    assert r.exit_code == 2 and "already holds results" in r.output


@pytest.mark.parametrize("args, message", [
    (["--model", "SAMPLE:sign_classifier"], "is a classification model; closed-loop driving needs a steering model"),
    (["--condition", "drizzle:0.5"], "unknown transform 'drizzle'"),
    (["--condition", "fog:1.5"], "severity 1.5 of fog is outside [0, 1]"),
    (["--condition", "rain:0.3-"], "malformed severity '0.3-'"),
    (["--condition", "rain:0.8-0.3-0.1"], "malformed severity"),
    (["--speed", "0"], "speed must be a number in"),
    (["--distance", "100", "--steps", "3"], "not both"),
])
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, args, message):
    from deeptest_iot import sample_models

    args = [sample_models.path(a.split(":")[1]).as_posix() if a.startswith("SAMPLE:") else a for a in args]
    r = _invoke(["drive", "--drives", "1", "--steps", "2", "--out", str(tmp_path / "x"), "-q", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x" / "findings.jsonl").exists()


def test_same_seed_same_summary_traces_and_findings(left, tmp_path):
    a = run_drives(str(left), "rain:0.2-0.7", drives=3, seed=5, settings=DriveSettings.from_steps(30), out=tmp_path / "a")
    b = run_drives(str(left), "rain:0.2-0.7", drives=3, seed=5, settings=DriveSettings.from_steps(30), out=tmp_path / "b")

    def stable(d):
        return {k: v for k, v in d.items() if k not in ("duration_s", "timing_s")}

    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (tmp_path / "a", tmp_path / "b"))
    assert stable(sa) == stable(sb)
    assert (tmp_path / "a" / "findings.jsonl").read_bytes() == (tmp_path / "b" / "findings.jsonl").read_bytes()
    for k in a.traces.data:
        assert np.array_equal(a.traces[k], b.traces[k], equal_nan=True), k
    c = run_drives(str(left), "rain:0.2-0.7", drives=3, seed=6, settings=DriveSettings.from_steps(30))
    assert not np.array_equal(c.traces["x"], a.traces["x"], equal_nan=True)


def test_keeps_lane_reports_and_names_failing_drives(left):
    report = keeps_lane(str(left), "none", drives=2, steps=40)
    assert not report.passed and report.failing == [0, 1] and report.failure_rate == 1.0
    msg = report.message()
    assert "2 of 2 drive(s) of model 'left' left their lane under none" in msg
    assert "drive 0: a wheel crossed the edge line after" in msg and "drive 1:" in msg
    with pytest.raises(ConfigError, match="not both"):
        keeps_lane(str(left), "none", drives=1, steps=3, distance=10)


def test_frames_with_nothing_to_see_still_drive_and_are_recorded(left):
    # three times +100 brightness: a white-out; the drives run to their departure or their end
    report = keeps_lane(str(left), "brightness:1+brightness:1+brightness:1", drives=2, steps=12)
    assert report.metrics["drives_with_unusable_frames"] == 2
    assert all(d["frames_unusable"] and d["frame_contrast"] < 4 for d in report.per_drive)
    assert all(d["steps"] == 12 or d["departed"] for d in report.per_drive)


def test_a_classifier_is_refused(tmp_path):
    from deeptest_iot import sample_models

    with pytest.raises(ModelError, match="needs a steering model"):
        keeps_lane(str(sample_models.path("sign_classifier")), "none", drives=1, steps=2)


def test_metamorphic_helper_asserts_keeps_lane(left):
    from deeptest_iot.drive.campaign import load_for_drive
    from deeptest_iot.testing.helper import Metamorphic

    class State:  # what the helper uses of the session: resolve_model
        def resolve_model(self, model):
            return load_for_drive(model)

    helper = Metamorphic(State())
    with pytest.raises(AssertionError, match=r"2 of 2 drive\(s\) .* left their lane under fog:0.2"):
        helper.assert_keeps_lane(str(left), "fog:0.2", drives=2, steps=40)
    report = helper.assert_keeps_lane(None, "fog:0.2", drives=1, steps=5)  # the sample model, 3 m: keeps it
    assert report.passed and report.drives == 1
