"""export: transformed frames plus the labels they should have had, as a folder and as one .npz."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deeptest_iot.cli import main
from deeptest_iot.errors import InputError, UnsupportedError
from deeptest_iot.results.export import export_findings
from deeptest_iot.tasks import TASKS
from deeptest_iot.transforms import Chain, get
from results_fixtures import H, W, classification_finding, detection_finding, edit_findings, make_run, \
    steering_finding

steering_target = TASKS["steering"].export_target


def steering_run(root):
    labelled = steering_finding(0, "rain", 0.3, label=0.07, before=0.05)
    unlabelled = steering_finding(1, "fog", 0.4, label=None, before=0.12)
    flipped = steering_finding(2, "hflip+rain", 0.5, label=0.09, before=0.1)  # hflip at severity 0.5: flip 1
    identity_flip = steering_finding(3, "hflip", 0.2, label=None, before=0.2, severity=0.2)  # flip 0
    oracle = steering_finding(4, "hflip+fog", 0.6, label=0.3, before=0.3)
    return make_run(root, [labelled, unlabelled, flipped, identity_flip, oracle],
                    tried={"rain": 10, "fog": 10, "hflip+rain": 5, "hflip": 5, "hflip+fog": 5},
                    options={"transforms": ["rain", "fog", "hflip"]})


def test_steering_labels_folder_and_npz(tmp_path):
    run = steering_run(tmp_path / "run")
    assert [f["chain"][0]["params"] for f in map(json.loads, open(run / "findings.jsonl"))][2:4] == \
        [{"flip": 1}, {"flip": 0}]
    result = export_findings(run, tmp_path / "set")
    assert result.count == 5 and result.task == "steering"
    rows = list(csv.DictReader(open(tmp_path / "set" / "labels.csv", encoding="utf-8")))
    got = {r["id"]: (float(r["label"]), r["source"]) for r in rows}
    # The oracle records what it expected: the label, else the model's answer on the seed, negated by a flip.
    assert got == {"f000000": (0.07, "oracle expected"),
                   "f000001": (0.12, "oracle expected"),
                   "f000002": (-0.09, "oracle expected"),
                   "f000003": (0.2, "oracle expected"),
                   "f000004": (-0.3, "oracle expected")}

    # Findings that do not record it (an older writer): the same labels, by the fallback rules.
    def without_expected(finding):
        if finding["id"] != "f000004":
            del finding["details"]["expected"]
        return finding

    edit_findings(run, without_expected)
    export_findings(run, tmp_path / "older")
    rows = list(csv.DictReader(open(tmp_path / "older" / "labels.csv", encoding="utf-8")))
    got = {r["id"]: (float(r["label"]), r["source"]) for r in rows}
    assert got == {"f000000": (0.07, "seed label"),
                   "f000001": (0.12, "model on original"),
                   "f000002": (-0.09, "seed label, negated (flip)"),
                   "f000003": (0.2, "model on original"),
                   "f000004": (-0.3, "oracle expected")}
    for r in rows:
        img = cv2.imread(str(tmp_path / "set" / r["image"]))
        src = cv2.imread(str(run / "images" / f"{r['id']}_trans.png"))
        assert np.array_equal(img, src)

    with np.load(tmp_path / "set" / "findings.npz") as npz:  # no allow_pickle needed
        assert set(npz.files) == {"images", "ids", "transforms", "labels", "sources"}
        assert npz["images"].shape == (5, H, W, 3) and npz["images"].dtype == np.uint8
        assert list(npz["ids"]) == ["f000000", "f000001", "f000002", "f000003", "f000004"]
        np.testing.assert_allclose(npz["labels"], [0.07, 0.12, -0.09, 0.2, -0.3], rtol=1e-6)
        # RGB, as everywhere in deeptest-iot: the PNG on disk is BGR.
        bgr = cv2.imread(str(run / "images" / "f000000_trans.png"))
        assert np.array_equal(npz["images"][0], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_mirrors_counts_flips():
    def mirrors(links):
        return Chain.from_json(links).mirrors_horizontally

    assert mirrors([{"name": "hflip", "params": {"flip": 1}}])
    assert not mirrors([{"name": "hflip", "params": {"flip": 1}}, {"name": "hflip", "params": {"flip": 1}}])
    assert not mirrors([{"name": "hflip", "params": {"flip": 0}}, {"name": "rain", "params": {}}])
    with pytest.raises(InputError):
        steering_target({"id": "x", "before": None, "label": None, "chain": []})
    with pytest.raises(InputError, match="f9: its chain cannot be read"):
        steering_target({"id": "f9", "before": 0.1, "label": None, "chain": [{"name": "teleport", "params": {}}]})


def test_detection_boxes(tmp_path):
    f0 = detection_finding(0)  # fog: the boxes stay where they were
    # 60 px right: the first box to [70, 10, 100, 30], where nothing is found (it vanished, the detection
    # at [12, 11, 41, 31] appeared); the second, [60, 20, 90, 50], leaves the 120 px wide frame.
    f1 = detection_finding(1, get("translation", tx=60), violation=2.0)
    run = make_run(tmp_path / "det", [f0, f1], tried={"fog": 5, "translation": 5}, model={"task": "detection"},
                   options={"transforms": ["fog", "translation"]})
    assert json.loads((run / "findings.jsonl").read_text().splitlines()[1])["details"]["expected"] == \
        [[70, 10, 100, 30], [120, 20, 120, 50]]  # the oracle's boxes, the second with no width left
    export_findings(run, tmp_path / "set")
    boxes = json.loads((tmp_path / "set" / "boxes.json").read_text())
    assert [b["boxes"] for b in boxes] == [[[10, 10, 40, 30], [60, 20, 90, 50]], [[70, 10, 100, 30]]]
    assert [b["classes"] for b in boxes] == [[0, 1], [0]]  # the zero-width box left the frame
    assert not (tmp_path / "set" / "labels.csv").exists()
    with np.load(tmp_path / "set" / "findings.npz") as npz:
        assert npz["boxes"].shape == (3, 4)
        assert list(npz["box_image"]) == [0, 0, 1] and list(npz["box_classes"]) == [0, 1, 0]
        np.testing.assert_allclose(npz["boxes"][2], [70, 10, 100, 30])


def test_detection_without_expected_boxes_cannot_be_exported(tmp_path):
    run = make_run(tmp_path / "det", [detection_finding(0)], tried={"fog": 5}, model={"task": "detection"})
    edit_findings(run, lambda f: {k: v for k, v in f.items() if k != "details"})  # as an older writer left it
    with pytest.raises(InputError, match="no details.expected"):
        export_findings(run, tmp_path / "set")
    assert not (tmp_path / "set").exists()  # nothing half-written


def test_classification_labels(tmp_path):
    # Both seeds: the model says "yield" (0.9), then "stop" (0.6) under fog; seed 0 is labelled "priority".
    before, after = (0.05, 0.9, 0.03, 0.02), (0.1, 0.2, 0.1, 0.6)
    f0 = classification_finding(0, "fog", before, after, label=2)
    f1 = classification_finding(1, "fog", before, after, label=None)
    run = make_run(tmp_path / "cls", [f0, f1], tried={"fog": 5},
                   model={"task": "classification", "classes": ["speed", "yield", "priority", "stop"]})
    export_findings(run, tmp_path / "set")
    with np.load(tmp_path / "set" / "findings.npz") as npz:
        assert list(npz["labels"]) == [2, 1] and npz["labels"].dtype == np.int64
        assert list(npz["sources"]) == ["seed label", "model on original"]


def test_missing_image_and_mixed_sizes(tmp_path):
    run = make_run(tmp_path / "run", [steering_finding(0), steering_finding(1)])
    (run / "images" / "f000001_trans.png").unlink()
    with pytest.raises(InputError, match="f000001"):
        export_findings(run, tmp_path / "a")
    cv2.imwrite(str(run / "images" / "f000001_trans.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(UnsupportedError, match="different sizes"):
        export_findings(run, tmp_path / "b")


def test_cli_export(tmp_path):
    run = steering_run(tmp_path / "run")
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(run), "--to", str(tmp_path / "set")])
    assert result.exit_code == 0, result.output
    assert "exported 5 steering findings" in result.output
    assert len(list((tmp_path / "set" / "images").glob("*.png"))) == 5
    result = runner.invoke(main, ["export", str(tmp_path / "none"), "--to", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no such folder" in result.output
