"""What a hostile test pass tried (issue 12), kept as a regression suite.

Every bad input gets exit code 2, one line on stderr saying what and where, no traceback, and
leaves every file outside the output folder as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import h5py
import pytest
from click.testing import CliRunner

from deeptest_iot.cli import main
from deeptest_iot.data.scenes import generate
from toy_models import brightness_classifier, flatten_dense, log_headroom_steering

keras = pytest.importorskip("keras")


def _tree(root: Path) -> dict:
    """Path -> sha256 of every file under root (what must not change)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, mean_intensity_steering_path):
    """A user's files: seed frames, labels, a steering model, a finished campaign folder, a plain file."""
    root = tmp_path_factory.mktemp("user")
    seeds = root / "frames"
    seeds.mkdir()
    for i, frame in enumerate(generate(6, seed=1, height=48, width=96).images):
        cv2.imwrite(str(seeds / f"f{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    # the model whose steering is the mean brightness, at 24x48 (conftest.py), copied in with its card
    (root / "steer.keras").write_bytes(mean_intensity_steering_path.read_bytes())
    (root / "steer.toml").write_bytes(mean_intensity_steering_path.with_suffix(".toml").read_bytes())
    (root / "plain.txt").write_text("a regular file\n")
    run = root / "run"
    result = CliRunner().invoke(main, ["run", "--model", str(root / "steer.keras"), "--seeds", str(seeds),
                                       "--budget", "32", "--delta", "0.001", "--out", str(run), "-q"])
    assert result.exit_code in (0, 1), result.output
    return root


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(result, *phrases):
    """Exit 2, one line on stderr naming what is wrong, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])


def below_a_file(world):
    return world / "plain.txt" / "x"


@pytest.mark.parametrize("command", [
    lambda w, bad: ["run", "--model", w / "steer.keras", "--seeds", w / "frames", "--budget", 8, "--out", bad],
    lambda w, bad: ["report", w / "run", "--out", Path(bad) / "r.html"],
    lambda w, bad: ["junit", w / "run", "--out", Path(bad) / "j.xml"],
    lambda w, bad: ["compare", w / "run", w / "run", "--json", Path(bad) / "c.json"],
    lambda w, bad: ["export", w / "run", "--to", bad],
    lambda w, bad: ["validate", "--model", w / "steer.keras", "--baseline", w / "run", "--out", bad, "-q"],
    lambda w, bad: ["transforms", "preview", w / "frames" / "f0.png", "--out", Path(bad) / "p.png"],
], ids=["run", "report", "junit", "compare", "export", "validate", "preview"])
def test_an_output_path_below_a_regular_file(world, command):
    before = _tree(world)
    result = cli(*command(world, below_a_file(world)))
    assert_refused(result, "plain.txt")
    assert _tree(world) == before


@pytest.mark.parametrize("text, phrase", [
    ('budget = "lots"', "budget must be a whole number"),
    ("budget = 1e3", "budget must be a whole number"),
    ("budget = true", "budget must be a whole number"),
    ("seed = 1.5", "seed must be a whole number"),
    ("[runn]\nbudget = 3", "unknown table(s) [runn]"),
])
def test_bad_config_values(world, tmp_path, text, phrase):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert_refused(cli("run", "--config", cfg, "--out", tmp_path / "out"), phrase, "config file")
    assert not (tmp_path / "out").exists()


def test_transforms_as_a_comma_separated_string_in_a_config(world, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'model = "{world / "steer.keras"}"\nseeds = "{world / "frames"}"\n'
                   'transforms = "rain,fog"\nbudget = 8\n')
    result = cli("run", "--config", cfg, "--out", tmp_path / "out", "-q")
    assert result.exit_code in (0, 1), result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["campaign"]["transforms"] == ["rain", "fog"]


def test_export_never_replaces_a_users_file(world, tmp_path):
    target = tmp_path / "set"
    target.mkdir()
    (target / "labels.csv").write_text("mine\n")
    assert_refused(cli("export", world / "run", "--to", target), "not empty", "--force")
    assert_refused(cli("export", world / "run", "--to", target, "--force"), "labels.csv", "did not write")
    assert (target / "labels.csv").read_text() == "mine\n" and sorted(os.listdir(target)) == ["labels.csv"]
    (target / "labels.csv").unlink()
    (target / "notes.txt").write_text("keep me")
    assert cli("export", world / "run", "--to", target, "--force").exit_code == 0
    assert cli("export", world / "run", "--to", target, "--force").exit_code == 0  # its own files: replaced
    assert (target / "notes.txt").read_text() == "keep me" and (target / "labels.csv").is_file()


def test_a_legacy_keras1_h5_with_a_lambda_layer(tmp_path):
    path = tmp_path / "dave2.h5"
    config = {"class_name": "Sequential", "config": [
        {"class_name": "Lambda", "config": {"name": "lambda_1", "function": ["bytecode", None, None],
                                            "function_type": "lambda", "batch_input_shape": [None, 66, 200, 3]}},
        {"class_name": "Convolution2D", "config": {"name": "conv1", "nb_filter": 24, "nb_row": 5, "nb_col": 5}}]}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"1.2.2"
        f.attrs["model_config"] = json.dumps(config).encode()
        f.create_group("model_weights").attrs["layer_names"] = [b"lambda_1", b"conv1"]
    for extra in ((), ("--trust-model",)):
        assert_refused(cli("inspect", path, "--no-speed", *extra), "legacy Keras 1.2.2 .h5",
                       "Lambda layer", "--trust-model cannot", "load_weights")


def test_a_custom_layer_class_is_named_with_how_to_register_it(tmp_path):
    @keras.saving.register_keras_serializable(package="hostile")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(Doubler()(inp))))
    model.save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().pop("hostile>Doubler")
    assert_refused(cli("inspect", tmp_path / "custom.keras", "--no-speed"), "'Doubler'",
                   "register_keras_serializable", "DEEPTEST_IMPORT")


def test_a_tiny_input_size_and_a_large_classifier_run_without_seeds(tmp_path):
    flatten_dense(10, 10).save(tmp_path / "tiny.keras")
    (tmp_path / "tiny.toml").write_text('task = "steering"\ninput_size = [10, 10]\n')
    result = cli("run", "--model", tmp_path / "tiny.keras", "--budget", 8, "--n-seeds", 3, "--out", tmp_path / "a", "-q")
    assert result.exit_code in (0, 1), result.output + result.stderr
    brightness_classifier(224, 0.5, "big").save(tmp_path / "big.keras")
    (tmp_path / "big.toml").write_text('task = "classification"\ninput_size = [224, 224]\n')
    result = cli("run", "--model", tmp_path / "big.keras", "--budget", 8, "--n-seeds", 3, "--coverage", "none",
                 "--out", tmp_path / "b", "-q")
    assert result.exit_code in (0, 1), result.output + result.stderr


def test_a_label_too_large_for_float32_names_the_file_and_line(world, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("frame_id,steering_angle\nf0,0.1\nf1,1e308\n")
    assert_refused(cli("run", "--model", world / "steer.keras", "--seeds", world / "frames", "--labels", labels,
                       "--out", tmp_path / "out"), "labels.csv line 3", "1e308")


def test_nan_outputs_name_the_seeds_and_chains_and_leave_a_final_summary(world, tmp_path):
    from deeptest_iot.data.seeds import load_seeds

    brightest = max(float(img.mean()) for img in load_seeds(world / "frames").images) / 255
    # log(c - mean intensity): finite on every seed, NaN once brightening lifts the mean past c
    log_headroom_steering(brightest + 0.01).save(tmp_path / "nan.keras")
    (tmp_path / "nan.toml").write_text('task = "steering"\ninput_size = [24, 48]\nscale = 1.0\n')
    result = cli("run", "--model", tmp_path / "nan.keras", "--seeds", world / "frames", "--strategy", "sweep",
                 "--transforms", "brightness", "--coverage", "none", "--out", tmp_path / "out")
    assert_refused(result, "NaN or Inf", "seed 'f", "under brightness")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "failed" and "NaN or Inf" in summary["error"]


def test_resume_of_a_folder_that_does_not_exist(tmp_path):
    assert_refused(cli("run", "--out", tmp_path / "nowhere", "--resume"), "nothing to resume", "no such folder")
    assert not (tmp_path / "nowhere").exists()


def test_a_killed_runs_temp_files_are_cleaned_at_resume(world, tmp_path):
    out = tmp_path / "run"
    assert cli("run", "--model", world / "steer.keras", "--seeds", world / "frames", "--budget", 16, "--delta", 0.001,
               "--save-images", "--out", out, "-q").exit_code == 1
    stray = out / "images" / ".f000099_trans.png.abc123.tmp"
    stray.write_bytes(b"half a png")
    assert cli("run", "--out", out, "--resume", "--budget", 24, "-q").exit_code == 1
    assert not stray.exists()


def test_labels_that_cover_half_the_frames_say_so(world, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("frame_id,steering_angle\nf0,0.1\nf1,0.0\nf2,-0.1\nother,0.3\n")
    result = cli("run", "--model", world / "steer.keras", "--seeds", world / "frames", "--labels", labels,
                 "--budget", 8, "--out", tmp_path / "out")
    assert result.exit_code in (0, 1), result.stderr
    assert "3 of 6 images in" in result.stderr and "have no row in labels.csv: not used" in result.stderr
    assert "1 of 4 rows of labels.csv name no image" in result.stderr


def test_one_huge_frame_among_the_seeds_is_kept_at_the_working_size(world, tmp_path):
    """Seeds are resized as they are decoded: a 4000x3000 frame does not make every seed that large."""
    from deeptest_iot.data.seeds import load_seeds

    folder = tmp_path / "frames"
    folder.mkdir()
    for p in (world / "frames").iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    big = cv2.resize(cv2.imread(str(folder / "f0.png")), (4000, 3000), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(folder / "f9.jpg"), big)
    seeds = load_seeds(folder, work_size=(36, 72))
    assert seeds.images.shape == (7, 36, 72, 3)
    result = cli("run", "--model", world / "steer.keras", "--seeds", folder, "--budget", 8, "--out",
                 tmp_path / "out", "-q")
    assert result.exit_code in (0, 1)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["campaign"]["frame_size"] == [36, 72]  # the card's 24x48 input at 1.5x


def test_report_of_a_damaged_folder_warns(world, tmp_path):
    import shutil

    damaged = tmp_path / "run"
    shutil.copytree(world / "run", damaged)
    (damaged / "findings.jsonl").write_text("")
    result = cli("report", damaged)
    assert result.exit_code == 0
    assert "warning: summary.json counts" in result.stderr and "findings.jsonl holds 0" in result.stderr


def test_max_seeds_keeps_an_even_spread_and_says_so(world, tmp_path):
    from deeptest_iot.data.seeds import load_seeds

    seeds = load_seeds(world / "frames", max_seeds=3)
    assert seeds.ids == ["f0.png", "f2.png", "f5.png"]  # positions 0, 2.5 (rounds to even: 2), 5 of six
    assert any("--max-seeds 3: 3 of 6 frames used, evenly spread" in n for n in seeds.notes)
    result = cli("run", "--model", world / "steer.keras", "--seeds", world / "frames", "--max-seeds", 2,
                 "--budget", 8, "--out", tmp_path / "out")
    assert result.exit_code in (0, 1) and "--max-seeds 2: 2 of 6 frames used" in result.stderr
