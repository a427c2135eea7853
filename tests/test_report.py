"""The HTML report: sections, embedded images with the model's answers drawn, escaping, bad folders."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deeptest_iot.cli import main
from deeptest_iot.errors import InputError
from deeptest_iot.results.report import DISPLAY_WIDTH, render_report, write_report
from deeptest_iot.tasks.drawing import AFTER_BGR, BEFORE_BGR

from deeptest_iot.transforms import REGISTRY, Param, TransformSpec
from results_fixtures import detection_finding, edit_findings, make_run, steering_finding

EVIL = "<script>alert(1)</script>"


class Page(HTMLParser):
    """Collects start tags with their attributes, and the page's text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag):
        return [a for t, a in self.tags if t == tag]

    @property
    def plain(self):
        return "".join(self.text)


def decode(uri: str) -> np.ndarray:
    head, data = uri.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64")
    img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def near(img: np.ndarray, bgr, tol: int = 40) -> int:
    """How many pixels are within ``tol`` of a colour (JPEG blurs drawn lines a little)."""
    return int((np.abs(img.astype(int) - np.array(bgr)).max(axis=2) <= tol).sum())


@pytest.fixture
def evil_transform(monkeypatch):
    """A user's transform registered under a hostile name (darkens the frame)."""
    spec = TransformSpec(EVIL, "photometric", (Param("amount", 0.0, 1.0, 0.0, identity=0.0, extreme=1.0),),
                         lambda images, p, rng: (images * (1.0 - 0.5 * p["amount"])).astype("uint8"))
    monkeypatch.setitem(REGISTRY, EVIL, spec)
    return EVIL


@pytest.fixture
def steering_run(tmp_path, evil_transform):
    """A model, a layer and a transform named EVIL; before 0.5 -> after -0.4 is 0.8 past the 0.1 delta."""
    findings = [steering_finding(0, "rain", 0.3), steering_finding(1, "rain", 0.8, label=None, before=0.5, after=-0.4),
                steering_finding(2, "fog", 0.1), steering_finding(3, EVIL, 0.5)]
    return make_run(tmp_path / "run", findings, tried={"rain": 80, "fog": 60, EVIL: 40},
                    model={"name": EVIL, "layers": {EVIL: 3, "dense": 10}},
                    options={"transforms": ["rain", "fog", EVIL]})


def test_sections_images_and_escaping(steering_run):
    text = render_report(steering_run, worst=3)
    page = Page(text)
    ids = {a.get("id") for _, a in page.tags if a.get("id")}
    assert {"overview", "settings", "transforms", "severity", "coverage", "worst"} <= ids
    # The evil model and transform names are text, never markup.
    assert page.all("script") == []
    assert EVIL in page.plain
    assert text.count(EVIL) == 0
    # Self-contained: every image is a data URI; no reference leaves the file.
    imgs = page.all("img")
    assert len(imgs) == 6  # the 3 worst findings, original and transformed
    assert all(a["src"].startswith("data:image/jpeg;base64,") for a in imgs)
    for _, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name, "")
            assert not value.startswith(("http:", "https:", "//", "file:")), (name, value)
    assert "<link" not in text and "@import" not in text
    # One coverage polyline per criterion.
    assert len(page.all("polyline")) == 2
    # The worst finding comes first; the settings and the robustness score are there.
    assert page.plain.index("f000001") < page.plain.index("f000003") < page.plain.index("f000000")
    assert "generated:10" in page.plain
    assert "0.975" in page.plain  # rain: 1 - 2/80


def test_steering_arrows_are_drawn(steering_run):
    page = Page(render_report(steering_run, worst=1))
    orig, trans = (decode(a["src"]) for a in page.all("img"))
    assert orig.shape[1] == DISPLAY_WIDTH and trans.shape[1] == DISPLAY_WIDTH
    raw = cv2.imread(str(steering_run / "images" / "f000001_trans.png"))
    plain = cv2.resize(raw, (trans.shape[1], trans.shape[0]))
    assert near(orig, BEFORE_BGR) > 50, "no 'before' arrow on the original"
    assert near(trans, AFTER_BGR) > 50, "no 'after' arrow on the transformed frame"
    assert near(plain, AFTER_BGR) < 5


def test_detection_boxes_are_drawn(tmp_path):
    run = make_run(tmp_path / "det", [detection_finding(0)], tried={"fog": 10},
                   model={"task": "detection", "classes": ["car", "stop"]})
    page = Page(render_report(run))
    orig, trans = (decode(a["src"]) for a in page.all("img"))
    assert near(orig, BEFORE_BGR) > 100
    assert near(trans, AFTER_BGR) > 100
    assert "2 boxes" in page.plain and "1 boxes" in page.plain


def test_image_paths_outside_the_folder_are_not_read(tmp_path):
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.full((10, 10, 3), 255, np.uint8))
    run = make_run(tmp_path / "run", [steering_finding(0), steering_finding(1)])

    def tamper(finding):  # f000000's original points out of the folder
        if finding["id"] == "f000000":
            finding["images"]["original"] = "../secret.png"
        return finding

    edit_findings(run, tamper)
    page = Page(render_report(run))
    assert len(page.all("img")) == 2  # only the well-formed finding's pair
    assert "images of f000000 are missing" in page.plain


def test_running_campaign_and_no_findings(tmp_path):
    run = make_run(tmp_path / "run", [], tried={}, status="running")  # before its first batch
    page = Page(render_report(run))
    assert "still running" in page.plain
    assert "No findings" in page.plain
    assert page.all("img") == []


def test_write_report_default_path_is_atomic(steering_run):
    path = write_report(steering_run)
    assert path == steering_run / "report.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in steering_run.iterdir() if p.name.endswith(".tmp")] == []


def test_bad_folders_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        render_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no summary.json"):
        render_report(tmp_path / "empty")
    run = make_run(tmp_path / "run")
    with open(run / "findings.jsonl", "a", encoding="utf-8") as f:
        f.write('{"id": "f9", "relation": "steering"\n')
    with pytest.raises(InputError, match=r"findings.jsonl:5: corrupt findings line"):
        render_report(run)


def test_cli_report(steering_run, tmp_path):
    runner = CliRunner()
    out = tmp_path / "r.html"
    result = runner.invoke(main, ["report", str(steering_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    result = runner.invoke(main, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such folder" in result.output and "Traceback" not in result.output


def test_pattern_counts_are_not_drawn_as_fractions(tmp_path):
    run = make_run(tmp_path / "run", coverage={"nc:0.5": 0.6, "tknp:1": None})
    growth = json.loads((run / "summary.json").read_text())["coverage_growth"]
    assert max(p["tknp:1"] for p in growth) > 1  # TKNP counts patterns (the report tells a count by a value > 1)
    page = Page(render_report(run))
    assert len(page.all("polyline")) == 1
    assert "Not drawn (counts, not fractions): tknp:1" in page.plain


def test_chains_are_summed_per_transform_and_ranked(tmp_path):
    findings = [steering_finding(0, "rain+fog", 0.4), steering_finding(1, "rain+fog", 0.2),
                steering_finding(2, "rain", 0.2)]
    run = make_run(tmp_path / "run", findings, tried={"rain": 10, "rain+fog": 10, "fog": 20})
    text = render_report(run)
    section = text[text.index('id="transforms"'):text.index('id="severity"')]
    rows = [Page(r).plain for r in section.split("<tr>")[1:]]
    assert any(r.startswith("rain20315.0%") for r in rows), rows  # rain: 3 of 10 + 10
    assert any(r.startswith("fog3026.7%") for r in rows), rows  # fog: 2 of 20 + 10
    assert "Chains with the most findings" in section
    assert any(r.startswith("rain+fog10220.0%") for r in rows), rows


def test_steering_gain_makes_small_angles_visible_and_is_stated():
    from deeptest_iot.tasks.steering import steering_gain

    assert steering_gain([{"before": 0.03, "after": -0.04, "label": 0.01}]) == 10.0
    assert steering_gain([{"before": 0.5, "after": 0.7}]) == 1.0
    assert steering_gain([{"before": 2.0, "after": 1.0}]) == 1.0  # never below 1
    assert steering_gain([{"before": 0.0, "after": 0.0}]) == 1.0
