"""`deeptest-iot transforms list` and `transforms preview`, through click's CliRunner."""

import json

import cv2
import numpy as np
from click.testing import CliRunner

from deeptest_iot.cli import main
from deeptest_iot.transforms import REGISTRY


def test_list_shows_every_transform_with_kind_ranges_and_presets():
    result = CliRunner().invoke(main, ["transforms", "list"])
    assert result.exit_code == 0, result.output
    for name, spec in REGISTRY.items():
        assert f"{name}  ({spec.kind})" in result.output
    assert "tx           [-200, 200] px" in result.output
    assert "random pool -50..49" in result.output
    assert "presets: deeptest-rotation, deeptest-sweep" in result.output


def test_list_json_and_kind_filter():
    result = CliRunner().invoke(main, ["transforms", "list", "--json", "--kind", "weather"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [t["name"] for t in doc["transforms"]] == ["fog", "rain", "snow", "shadow", "glare"]
    fog = doc["transforms"][0]
    assert fog["params"][0] == {**fog["params"][0], "name": "visibility_m", "range": [5.0, 20000.0],
                                "severity_0": 20000.0, "severity_1": 25.0, "unit": "m"}
    assert doc["presets"]["deeptest-sweep"] == 70


def test_preview_writes_a_labelled_grid_png(tmp_path):
    img = np.zeros((40, 80, 3), np.uint8)
    img[20:] = (60, 60, 60)
    src = tmp_path / "road.png"
    cv2.imwrite(str(src), img)
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(main, ["transforms", "preview", str(src), "--out", str(out), "--tile-width", "80"])
    assert result.exit_code == 0, result.output
    grid = cv2.imread(str(out))
    assert grid is not None
    rows = (len(REGISTRY) + 1) // 2
    assert grid.shape[1] == 2 * (3 * (80 + 6) + 6)
    assert grid.shape[0] >= (rows + 1) * 40
    assert f"{len(REGISTRY)} transforms x 3 severities" in result.output


def test_preview_only_some_transforms_and_severities(tmp_path):
    src = tmp_path / "f.png"
    cv2.imwrite(str(src), np.full((10, 20, 3), 90, np.uint8))
    out = tmp_path / "g.png"
    result = CliRunner().invoke(main, ["transforms", "preview", str(src), "--out", str(out), "--only", "fog",
                                       "--only", "rain", "--severity", "0.5", "--tile-width", "40"])
    assert result.exit_code == 0, result.output
    assert "2 transforms x 1 severities" in result.output
    result = CliRunner().invoke(main, ["transforms", "preview", str(src), "--out", str(out), "--only", "fgo"])
    assert result.exit_code == 2 and "did you mean 'fog'" in result.output


def test_preview_of_a_bad_image_is_bad_input_without_traceback(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["transforms", "preview", str(tmp_path / "missing.png"), "--out",
                                  str(tmp_path / "g.png")])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    result = runner.invoke(main, ["transforms", "preview", str(junk), "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 2 and "cannot read" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "g.png").exists()
