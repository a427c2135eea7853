"""Findings as recipes (issue 14): a finding's frames are rendered again from its seed and seeded
chain, byte-identical to what the model saw (checked against a run that saved the PNGs)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deeptest_iot.cli import main
from deeptest_iot.data.scenes import generate
from deeptest_iot.engine.campaign import run_campaign
from deeptest_iot.engine.options import CampaignOptions
from deeptest_iot.results.reader import open_run
from deeptest_iot.results.render import Renderer


def _saved_pngs_match_renders(out):
    run = open_run(out)
    renderer = Renderer(run)
    assert run.findings
    for f in run.findings:
        recipe = {k: v for k, v in f.items() if k != "images"}  # as a run without --save-images records it
        seed, transformed = renderer.images(recipe)
        saved_seed, saved_transformed = renderer.images(f)
        assert np.array_equal(transformed, saved_transformed), f["id"]
        assert np.array_equal(seed, saved_seed), f["id"]


@pytest.fixture(scope="module")
def big_frames(tmp_path_factory):
    """Eight 480x640 frames (JPEG and PNG): auto work size shrinks them, JPEGs by reduced decoding."""
    folder = tmp_path_factory.mktemp("frames")
    for i, frame in enumerate(generate(8, seed=4, height=480, width=640).images):
        ext = "jpg" if i % 2 else "png"
        cv2.imwrite(str(folder / f"f{i}.{ext}"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def test_folder_seeds_at_the_working_size(mean_intensity_steering_path, big_frames, tmp_path):
    out = tmp_path / "saved"
    s = run_campaign(CampaignOptions(model=str(mean_intensity_steering_path), seeds=str(big_frames), budget=48,
                                     batch_size=16, delta=0.002, save_images=True, coverage=(), out=str(out))).summary
    assert s["campaign"]["frame_size"] == [54, 72]  # the card's 24x48 input at 1.5x, 480x640's aspect kept
    _saved_pngs_match_renders(out)


def test_generated_seeds_and_sign_crops(tmp_path, mean_intensity_steering_path, dark_bright_classifier_path):
    out = tmp_path / "steer"
    run_campaign(CampaignOptions(model=str(mean_intensity_steering_path), n_seeds=6, budget=32, mse_orig=1e-6,
                                 failing_seeds="count", save_images=True, coverage=(), out=str(out)))
    _saved_pngs_match_renders(out)
    out = tmp_path / "cls"
    run_campaign(CampaignOptions(model=str(dark_bright_classifier_path), n_seeds=6, budget=48, strategy="sweep",
                                 transforms=("brightness", "night"), save_images=True, coverage=(), out=str(out)))
    _saved_pngs_match_renders(out)


def test_by_default_nothing_but_recipes_is_written_and_show_renders_them(mean_intensity_steering_path, big_frames,
                                                                         tmp_path):
    out = tmp_path / "run"
    run_campaign(CampaignOptions(model=str(mean_intensity_steering_path), seeds=str(big_frames), budget=48,
                                 batch_size=16, delta=0.002, coverage=(), out=str(out)))
    assert not (out / "images").exists()
    finding = json.loads((out / "findings.jsonl").read_text().splitlines()[0])
    assert "images" not in finding and finding["chain"][0]["seed"] is not None
    result = CliRunner().invoke(main, ["show", str(out), finding["id"], "--out", str(tmp_path / "t.png"),
                                       "--seed-out", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    shown = cv2.cvtColor(cv2.imread(str(tmp_path / "t.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(shown, Renderer(open_run(out)).transformed(finding))
    result = CliRunner().invoke(main, ["show", str(out), "f999999", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "no finding 'f999999'" in result.stderr
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0  # the report renders its pairs
    assert "images of" not in (out / "report.html").read_text()
    assert CliRunner().invoke(main, ["export", str(out), "--to", str(tmp_path / "set")]).exit_code == 0


def test_a_moved_seeds_folder_is_said(mean_intensity_steering_path, big_frames, tmp_path):
    import shutil

    frames = tmp_path / "frames"
    shutil.copytree(big_frames, frames)
    out = tmp_path / "run"
    run_campaign(CampaignOptions(model=str(mean_intensity_steering_path), seeds=str(frames), budget=16,
                                 delta=0.002, coverage=(), out=str(out)))
    shutil.rmtree(frames)
    f = open_run(out).findings[0]
    result = CliRunner().invoke(main, ["show", str(out), f["id"], "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "is not there (the seeds folder moved" in result.stderr
