"""`deeptest-iot inspect` and the CLI's handling of bad model input: one line, exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")

from deeptest_iot.cli import main  # noqa: E402


def _save_small(tmp_path, with_lambda=False):
    inp = keras.Input((8, 16, 3))
    x = keras.layers.Lambda(lambda t: t * 1.0)(inp) if with_lambda else inp
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(1, name="steer")(x)
    path = tmp_path / ("lam.keras" if with_lambda else "small.keras")
    keras.Model(inp, out, name="small").save(path)
    return path


def _invoke(args):
    return CliRunner().invoke(main, args)


def test_inspect_prints_card_input_layers_and_speed(tmp_path):
    path = _save_small(tmp_path)
    result = _invoke(["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "steering" in result.output
    assert "8x16" in result.output
    assert "conv" in result.output and "steer" in result.output
    assert "5 neurons" in result.output  # 4 conv channels + 1 dense unit
    assert "frames/s" in result.output


def test_inspect_json(tmp_path):
    path = _save_small(tmp_path)
    result = _invoke(["inspect", str(path), "--json", "--no-speed", "--exclude", "steer"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert [layer["name"] for layer in info["layers"]] == ["conv"]
    assert info["card"]["input_size"] == [8, 16]
    assert info["fingerprint"].startswith("sha256:")


@pytest.mark.parametrize("make", ["missing", "truncated", "text"])
def test_bad_model_files_exit_2_without_traceback(tmp_path, make):
    path = tmp_path / "m.keras"
    if make == "truncated":
        good = _save_small(tmp_path)
        path.write_bytes(good.read_bytes()[:200])
    elif make == "text":
        path.write_text("not a model")
    result = _invoke(["inspect", str(path), "--no-speed"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_lambda_needs_trust_flag(tmp_path):
    path = _save_small(tmp_path, with_lambda=True)
    result = _invoke(["inspect", str(path), "--no-speed"])
    assert result.exit_code == 2
    assert "--trust-model" in result.output and "Traceback" not in result.output
    result = _invoke(["inspect", str(path), "--no-speed", "--trust-model"])
    assert result.exit_code == 0, result.output


def test_trust_flag_help_says_why_it_is_dangerous():
    result = _invoke(["inspect", "--help"])
    assert "DANGEROUS" in result.output and "arbitrary code" in result.output


def test_bad_card_value_exit_2(tmp_path):
    path = _save_small(tmp_path)
    card = tmp_path / "card.toml"
    card.write_text('task = "parking"\n')
    result = _invoke(["inspect", str(path), "--card", str(card), "--no-speed"])
    assert result.exit_code == 2
    assert "task must be one of" in result.output
