"""`deeptest-iot inspect` and the CLI's handling of bad model input: one line, exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")

from deeptest_iot.cli import main  # noqa: E402
from deeptest_iot.errors import ConfigError  # noqa: E402
from toy_models import save, small_steering_cnn  # noqa: E402


def _invoke(args):
    return CliRunner().invoke(main, args)


def test_inspect_prints_card_input_layers_and_speed(small_steering_cnn_path):
    path = small_steering_cnn_path
    result = _invoke(["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "steering" in result.output
    assert "8x16" in result.output
    assert "conv" in result.output and "steer" in result.output
    assert "5 neurons" in result.output  # 4 conv channels + 1 dense unit
    assert "frames/s" in result.output


def test_inspect_json(small_steering_cnn_path):
    path = small_steering_cnn_path
    result = _invoke(["inspect", str(path), "--json", "--no-speed", "--exclude", "steer"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert [layer["name"] for layer in info["layers"]] == ["conv"]
    assert info["card"]["input_size"] == [8, 16]
    assert info["fingerprint"].startswith("sha256:")


@pytest.mark.parametrize("make", ["missing", "truncated", "text"])
def test_bad_model_files_exit_2_without_traceback(tmp_path, make, small_steering_cnn_path):
    path = tmp_path / "m.keras"
    if make == "truncated":
        path.write_bytes(small_steering_cnn_path.read_bytes()[:200])
    elif make == "text":
        path.write_text("not a model")
    result = _invoke(["inspect", str(path), "--no-speed"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_lambda_needs_trust_flag(lambda_steering_paths):
    path = lambda_steering_paths[".keras"]
    result = _invoke(["inspect", str(path), "--no-speed"])
    assert result.exit_code == 2
    assert "--trust-model" in result.output and "Traceback" not in result.output
    result = _invoke(["inspect", str(path), "--no-speed", "--trust-model"])
    assert result.exit_code == 0, result.output


def test_trust_flag_help_says_why_it_is_dangerous():
    result = _invoke(["inspect", "--help"])
    assert "DANGEROUS" in result.output and "arbitrary code" in result.output.lower()


def test_bad_card_value_exit_2(tmp_path, small_steering_cnn_path):
    path = small_steering_cnn_path
    card = tmp_path / "card.toml"
    card.write_text('task = "parking"\n')
    result = _invoke(["inspect", str(path), "--card", str(card), "--no-speed"])
    assert result.exit_code == 2
    assert "task must be one of" in result.output


def test_profile_command_writes_a_profile_run_picks_up(tmp_path, small_steering_cnn_path):
    from deeptest_iot.coverage import Profile
    from deeptest_iot.model.core import load_model

    path = tmp_path / "small.keras"  # a copy: the profile is written beside the model
    path.write_bytes(small_steering_cnn_path.read_bytes())
    result = _invoke(["profile", str(path), "--n-seeds", "20"])
    assert result.exit_code == 0, result.output
    prof_path = path.with_suffix(".profile.npz")
    mut = load_model(path)
    prof = Profile.load(prof_path, mut.fingerprint, mut.layer_sizes)
    assert prof.count == 20
    # The profile's range is the range of the activations on those frames.
    from deeptest_iot.data.scenes import generate

    acts = mut.run(generate(20, seed=0).images).activations
    np.testing.assert_allclose(prof.low["conv"], acts["conv"].min(axis=0), rtol=1e-5)
    np.testing.assert_allclose(prof.high["steer"], acts["steer"].max(axis=0), rtol=1e-5)
    other = save(small_steering_cnn(8, 16, seed=1), tmp_path / "x" / "small.keras")  # same architecture, other weights
    with pytest.raises(ConfigError):
        Profile.load(prof_path, load_model(other).fingerprint, mut.layer_sizes)


@pytest.mark.slow  # a process that starts TensorFlow: 11-13 s on 2 loaded cores
def test_real_process_prints_one_line_for_a_bad_model(tmp_path):
    """No TensorFlow start-up chatter, no traceback: the user sees the one line that matters."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "deeptest_iot", "inspect", str(tmp_path / "missing.keras")],
                         capture_output=True, text=True, env={k: v for k, v in __import__("os").environ.items()
                                                              if k != "DEEPTEST_TF_VERBOSE"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: model {tmp_path / 'missing.keras'}: no such file or directory"]
