"""Streaming profile: batched Welford equals a two-pass computation; files refuse other models."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeptest_iot.coverage import Profile
from deeptest_iot.errors import ConfigError, InputError


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 2 ** 16))
def test_batched_welford_matches_two_pass(batch_sizes, seed):
    rng = np.random.default_rng(seed)
    parts = [{"l": rng.normal(1e3, 5.0, (n, 4)), "m": rng.uniform(-1, 1, (n, 2)).astype(np.float32)}
             for n in batch_sizes]
    prof = Profile.from_batches(parts, fingerprint="fp")
    for name in ("l", "m"):
        every = np.concatenate([p[name] for p in parts]).astype(np.float64)
        assert prof.count == len(every)
        np.testing.assert_allclose(prof.mean[name], every.mean(axis=0), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(prof.std[name], every.std(axis=0), rtol=1e-7, atol=1e-9)
        assert np.array_equal(prof.low[name], every.min(axis=0))
        assert np.array_equal(prof.high[name], every.max(axis=0))


def test_merge_equals_one_pass():
    rng = np.random.default_rng(1)
    a = [{"l": rng.standard_normal((5, 3))}, {"l": rng.standard_normal((2, 3))}]
    b = [{"l": rng.standard_normal((7, 3)) + 4}]
    merged = Profile.from_batches(a, "fp").merge(Profile.from_batches(b, "fp"))
    whole = Profile.from_batches(a + b, "fp")
    for key in ("low", "high", "mean", "std"):
        np.testing.assert_allclose(getattr(merged, key)["l"], getattr(whole, key)["l"], rtol=1e-12)
    assert merged.count == 14


def test_save_load_and_refusal(tmp_path):
    prof = Profile.from_batches([{"c1": np.arange(6.0).reshape(2, 3), "d": np.ones((2, 1))}], "sha-A")
    path = tmp_path / "profile.npz"
    prof.save(path)
    back = Profile.load(path, fingerprint="sha-A", layer_sizes={"c1": 3, "d": 1})
    assert back.layer_sizes == {"c1": 3, "d": 1} and back.count == 2 and back.fingerprint == "sha-A"
    assert back.low["c1"].tolist() == [0, 1, 2] and back.std["d"].tolist() == [0.0]
    with pytest.raises(ConfigError, match="another model"):
        Profile.load(path, fingerprint="sha-B")
    with pytest.raises(ConfigError, match="do not match"):
        Profile.load(path, layer_sizes={"c1": 4, "d": 1})
    with pytest.raises(ConfigError, match="cannot read"):
        Profile.load(tmp_path / "missing.npz")


def test_bad_profile_inputs():
    with pytest.raises(InputError, match="nothing to profile"):
        Profile.from_batches([], "fp")
    with pytest.raises(ConfigError, match="fingerprint"):
        Profile.from_batches([{"l": np.ones((1, 2))}], fingerprint=None)
    with pytest.raises(InputError, match="NaN"):
        Profile.from_batches([{"l": np.array([[0.0, np.nan]])}], "fp")


class FakeModel:
    """Duck-types the model adapter: run(frames).activations, layer_sizes, fingerprint."""

    fingerprint = "sha-fake"
    layer_sizes = {"conv": 2, "dense": 1}

    def __init__(self):
        self.calls = []

    def run(self, frames):
        self.calls.append(len(frames))
        x = frames.reshape(len(frames), -1).mean(axis=1, dtype=np.float64)
        return type("R", (), {"activations": {"conv": np.stack([x, -x], axis=1), "dense": x[:, None] * 2}})()


def test_profile_model_streams_batches():
    from deeptest_iot.coverage import profile_model

    frames = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    mut = FakeModel()
    prof = profile_model(mut, frames, batch_size=2)
    assert mut.calls == [2, 2, 1]
    assert prof.fingerprint == "sha-fake" and prof.count == 5
    assert prof.low["conv"].tolist() == [0, -4] and prof.high["dense"].tolist() == [8]


def test_tracker_keeps_a_snapshot_of_the_profile():
    from deeptest_iot.coverage import CoverageTracker

    prof = Profile.from_batches([{"l": np.array([[0.0], [1.0]])}], "fp")
    tr = CoverageTracker(["snac"], {"l": 1}, prof)
    prof.update({"l": np.array([[10.0]])})  # widening the profile later must not change the tracker
    tr.update({"l": np.array([[5.0]])})
    assert tr.coverage()["snac"] == 1.0
