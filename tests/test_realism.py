"""The realism gate (deeptest_iot.engine.realism): hand-computed cases, properties, the learned gate."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeptest_iot.engine import realism
from deeptest_iot.engine.realism import (DEFAULT_THRESHOLDS, STATISTICS, LearnedGate, RealismGate, aligned_copies,
                                         band_pass, chain_families, frame_statistics, pearson, realism_scores,
                                         similarity, small_grey)
from deeptest_iot.errors import ConfigError, InputError, ModelError
from deeptest_iot.transforms import REGISTRY, Chain, get

H, W = 96, 192  # 3 x 3 frame pixels per pixel of the 32 x 64 copy


def texture(seed: int, h: int = H, w: int = W, cell: int = 4) -> np.ndarray:
    """A smooth random RGB texture whose detail (about ``cell`` pixels) survives the 32 x 64 copy but
    decorrelates under a shift of a few copy pixels."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // cell, w // cell, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.stack([texture(s) for s in range(4)])


# --- hand-computed cases ---------------------------------------------------------------------------
def test_identical_frame_scores_one(frames):
    sim = similarity(frames, frames.copy())
    assert sim.score == pytest.approx(1.0, abs=1e-9)
    assert sim.corr == pytest.approx(1.0, abs=1e-9)
    assert sim.pearson == pytest.approx(1.0, abs=1e-9)
    assert (sim.kept == 1.0).all() and not sim.warped.any()


def test_uniform_noise_is_below_every_threshold(frames):
    noise = np.random.default_rng(1).integers(0, 256, frames.shape, dtype=np.uint8)
    sim = similarity(frames, noise)
    assert (np.abs(sim.score) < 0.2).all()
    for fam in DEFAULT_THRESHOLDS:
        chain = Chain([get(next(n for n, s in REGISTRY.items() if s.kind == fam), severity=0.5)])
        score, ok = realism_scores(frames, noise, [chain] * len(frames))
        assert not ok.any(), fam


def test_flat_colour_scores_zero(frames):
    flat = np.full_like(frames, 128)
    assert similarity(frames, flat).score == pytest.approx(0.0)
    # two flat frames: nothing was lost
    assert similarity(flat, flat.copy()).score == pytest.approx(1.0)


def test_inverted_frame_correlates_negatively(frames):
    sim = similarity(frames, 255 - frames)
    # grey(255 - x) = 255 - grey(x) and area averaging is linear: -1 up to uint8 rounding
    assert (sim.corr < -0.99).all() and (sim.pearson < -0.99).all()
    assert (sim.score < -0.99).all()
    assert not realism_scores(frames, 255 - frames)[1].any()


def test_translation_is_similar_once_the_warp_is_undone(frames):
    t = get("translation", tx=24, ty=-12)  # 8 and 4 pixels of the copy
    moved = t(frames)
    undone = similarity(frames, moved, t)
    ignored = similarity(frames, moved, None)
    assert (undone.score > 0.95).all()
    assert (ignored.score < 0.3).all()
    # the warp keeps (192 - 24) x (96 - 12) of 192 x 96 pixels in view; at copy resolution 56 x 28 of 64 x 32
    assert undone.kept == pytest.approx((56 * 28) / (64 * 32))
    assert undone.warped.all() and not ignored.warped.any()


def test_flip_is_identical_once_the_warp_is_undone(frames):
    t = get("hflip", flip=1)
    flipped = t(frames)
    # the same pixels, rounded differently on the way to the copy (uint8 at 64 x 128, then float)
    assert similarity(frames, flipped, t).score == pytest.approx(1.0, abs=1e-3)
    assert (similarity(frames, flipped).score < 0.3).all()
    assert realism_scores(frames, flipped, t)[1].all()


def test_rotation_and_zoom_out_are_similar_once_undone(frames):
    for t in (get("rotation", degrees=20), get("scale", factor=0.6), get("shear", factor=0.3)):
        sim = similarity(frames, t(frames), t)
        assert (sim.score > 0.85).all(), t
        assert (sim.kept < 1.0).all() or t.name == "scale"


def test_zoom_that_keeps_too_little_scores_zero(frames):
    t = get("scale", factor=6.0)  # keeps 1/36 of the frame in view
    sim = similarity(frames, t(frames), t)
    assert (sim.kept < realism.MIN_KEPT).all()
    assert (sim.score == 0.0).all()


def test_warp_composed_with_a_photometric_link(frames):
    chain = Chain([get("brightness", delta=20), get("translation", tx=-30, ty=0), get("contrast", alpha=1.2)])
    sim = similarity(frames, chain(frames), chain)
    assert (sim.score > 0.9).all()


def test_low_contrast_is_scaled_down(frames):
    faint = (frames.astype(np.float32) * 0.05 + 100).round().astype(np.uint8)  # 5% of the detail
    sim = similarity(frames, faint)
    assert (sim.corr > 0.9).all()
    assert sim.contrast == pytest.approx(0.05, abs=0.01)
    assert sim.score == pytest.approx(sim.corr * sim.contrast / realism.CONTRAST_FLOOR, rel=1e-6)


def test_pearson_and_band_pass_by_hand():
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert pearson(a, 2 * a + 7) == pytest.approx([1.0])
    assert pearson(a, -a) == pytest.approx([-1.0])
    assert pearson(a, np.array([[1.0, 2.0, 9.0, 4.0]]), mask=np.array([[1, 1, 0, 1]])) == pytest.approx([1.0])
    flat = np.full((1, 8, 8), 42.0)
    assert np.allclose(band_pass(flat), 0.0, atol=1e-4)  # a constant has no detail at any scale


def test_small_grey_is_area_average_of_luma():
    img = np.zeros((1, 4, 8, 3), np.uint8)
    img[0, :, :4] = (255, 0, 0)  # left half red: luma 0.299 * 255 = 76.2 -> 76
    img[0, :, 4:] = (0, 0, 255)  # right half blue: 0.114 * 255 = 29.1 -> 29
    g = small_grey(img, (4, 4))
    assert g.shape == (1, 4, 4) and g.dtype == np.float32
    assert (g[0, :, :2] == 76).all() and (g[0, :, 2:] == 29).all()


def test_stacked_resize_equals_frame_by_frame():
    rng = np.random.default_rng(3)
    for h, w in ((77, 131), (66, 200), (240, 320)):
        batch = rng.integers(0, 256, (5, h, w, 3), dtype=np.uint8)
        one = np.stack([cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), (64, 32), interpolation=cv2.INTER_AREA)
                        for im in batch])
        assert (small_grey(batch) == one).all()


def test_one_seed_for_many_mutants(frames):
    seed = frames[0]
    mutants = np.stack([get("fog", severity=s)(seed) for s in (0.1, 0.5, 0.9)])
    shared = similarity(seed, mutants, get("fog", severity=0.5))
    each = similarity(np.stack([seed] * 3), mutants, get("fog", severity=0.5))
    assert np.allclose(shared.score, each.score)
    assert shared.score[0] > shared.score[2]


# --- chains and thresholds -------------------------------------------------------------------------
def test_chain_forms_are_equivalent(frames):
    links = [get("brightness", delta=10), get("translation", tx=12, ty=6)]
    mutants = Chain(links)(frames)
    as_chain = similarity(frames, mutants, Chain(links)).score
    as_lists = similarity(frames, mutants, [links] * len(frames)).score
    as_seeded = similarity(frames, mutants, [Chain(links).seeded(3)] * len(frames)).score
    assert np.array_equal(as_chain, as_lists)
    assert np.array_equal(as_chain, as_seeded)


def test_family_thresholds_take_the_strictest():
    gate = RealismGate({"photometric": 0.3, "geometric": 0.2, "weather": 0.5, "sensor": 0.7})
    assert gate.threshold(get("brightness", delta=5)) == 0.3
    assert gate.threshold(Chain([get("fog", severity=0.5), get("rotation", degrees=5)])) == 0.5
    assert gate.threshold([get("contrast", alpha=1.5), get("jpeg", quality=50), get("fog", severity=0.2)]) == 0.7
    assert gate.threshold(get("fog", severity=0.0)) == 0.7  # identity: no family applies -> strictest of all
    assert gate.threshold(None) == 0.7
    assert chain_families(Chain([get("hflip", flip=0), get("snow", severity=0.3)])) == {"weather"}
    assert RealismGate(0.25).thresholds == dict.fromkeys(realism.FAMILIES, 0.25)


def test_gate_verdict_and_threshold_per_item(frames):
    fog = get("fog", severity=0.3)
    noise = np.random.default_rng(0).integers(0, 256, frames[:2].shape, dtype=np.uint8)
    mutants = np.concatenate([fog(frames[:2]), noise])
    chains = [fog, Chain([fog]), get("jpeg", quality=20), [get("brightness", delta=3)]]
    r = RealismGate()(frames, mutants, chains)
    assert r.ok.tolist() == [True, True, False, False]
    assert r.threshold.tolist() == [DEFAULT_THRESHOLDS["weather"]] * 2 + [DEFAULT_THRESHOLDS["sensor"],
                                                                          DEFAULT_THRESHOLDS["photometric"]]


def test_seed_copies_made_once_give_the_same_verdicts(frames):
    """A campaign reduces its seeds once (seed_copies) and passes each batch's rows: same bytes."""
    fog, shift = get("fog", severity=0.3), Chain([get("brightness", delta=20), get("translation", tx=9, ty=-4)])
    idx = np.array([0, 2, 2, 3, 1, 0])
    seeds = frames[idx]
    mutants = np.concatenate([fog(seeds[:3]), shift(seeds[3:])])
    chains = [fog] * 3 + [shift] * 3
    gate = RealismGate()
    copies = realism.seed_copies(frames, gate.size)
    assert copies.dtype == np.uint8 and np.array_equal(copies.astype(np.float32), realism.small_grey(frames))
    plain, cached = gate(seeds, mutants, chains), gate(seeds, mutants, chains, copies[idx])
    for a, b in zip(plain, cached):
        assert np.array_equal(a, b)
    with pytest.raises(InputError, match="seed_small"):
        gate(seeds, mutants, chains, copies[:2])


def test_empty_batch(frames):
    r = RealismGate()(frames[:0], frames[:0], [])
    assert r.score.shape == r.ok.shape == r.threshold.shape == (0,)


def test_bad_input_is_reported(frames):
    with pytest.raises(InputError, match="one per mutant"):
        similarity(frames, frames, [get("fog", severity=0.1)])
    with pytest.raises(InputError, match="uint8"):
        similarity(frames, frames.astype(np.float32))
    with pytest.raises(InputError, match="same frame size"):
        similarity(frames, frames[:, :48])
    with pytest.raises(ConfigError, match="expected a Transform, a Chain or a list of transforms"):
        similarity(frames, frames, [object()] * len(frames))
    with pytest.raises(ConfigError, match="unknown transform family"):
        RealismGate({"lighting": 0.3})
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        RealismGate({"weather": 1.5})
    with pytest.raises(ConfigError, match="size"):
        RealismGate(size=(2, 64))


# --- properties ------------------------------------------------------------------------------------
SMALL = st.integers(0, 2**16)
NAMES = sorted(REGISTRY)


@st.composite
def chains(draw):
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    geometric = [n for n in names if REGISTRY[n].kind == "geometric"]
    names = [n for n in names if n not in geometric[1:]]  # at most one warp
    return Chain([get(n, severity=draw(st.sampled_from((0.0, 0.3, 0.7, 1.0)))) for n in names])


@settings(max_examples=25, deadline=None)
@given(SMALL, SMALL, st.sampled_from([None, get("fog", severity=0.4), get("gaussian_noise", severity=0.8)]))
def test_score_is_symmetric_without_a_warp(a, b, chain):
    x, y = texture(a, 48, 96)[None], texture(b, 48, 96)[None]
    if chain is not None:
        y = chain(y)
    assert similarity(x, y, chain).score == pytest.approx(similarity(y, x, chain).score, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(SMALL, chains())
def test_scores_are_correlations(seed, chain):
    x = texture(seed, 48, 96)[None]
    sim = similarity(x, chain(x, seed=seed), chain)
    for v in (sim.score, sim.corr, sim.pearson):
        assert np.isfinite(v).all() and (-1.0 <= v).all() and (v <= 1.0).all()
    assert (0.0 <= sim.kept).all() and (sim.kept <= 1.0).all()


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(SMALL, chains()), min_size=2, max_size=5))
def test_batch_equals_items(items):
    seeds = np.stack([texture(s, 48, 96) for s, _ in items])
    chains_ = [c for _, c in items]
    mutants = np.stack([c(seeds[i], seed=i) for i, c in enumerate(chains_)])
    gate = RealismGate()
    batch = gate(seeds, mutants, chains_)
    for i, c in enumerate(chains_):
        one = gate(seeds[i:i + 1], mutants[i:i + 1], [c])
        assert one.score[0] == pytest.approx(batch.score[i], abs=1e-9)
        assert one.ok[0] == batch.ok[i] and one.threshold[0] == batch.threshold[i]


@settings(max_examples=10, deadline=None)
@given(SMALL)
def test_aligned_copies_without_warp_are_the_small_copies(seed):
    x = texture(seed, 48, 96)[None]
    a, b, mask, warped, singular = aligned_copies(x, x)
    assert np.array_equal(a, b) and mask.all() and not warped.any() and not singular.any()


# --- the learned gate ------------------------------------------------------------------------------
def _smooth(n: int, seed: int) -> np.ndarray:
    """Smooth synthetic frames: a vertical sky-to-road gradient with a soft horizon and a blob."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, 16)[:, None, None]
    x = np.linspace(0, 1, 32)[None, :, None]
    out = []
    for _ in range(n):
        top, bottom = rng.uniform(120, 230, 3), rng.uniform(30, 110, 3)
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.5, 0.9), rng.uniform(0.1, 0.25)
        img = top + (bottom - top) * np.clip((y - 0.45) * 3 + 0.5, 0, 1)
        img = img + 60 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r ** 2)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


TINY = dict(size=(16, 32), seed=3, filters=(8, 8, 8), latent=4)
TINY_FIT = dict(epochs=15, batch_size=16, learning_rate=5e-3)


@pytest.fixture(scope="module")
def tiny_gate():
    return LearnedGate(**TINY).fit(_smooth(64, 0), **TINY_FIT)


def test_learned_gate_flags_noise(tiny_gate):
    clean = _smooth(40, 1)
    noise = np.random.default_rng(2).integers(0, 256, clean.shape, dtype=np.uint8)
    assert tiny_gate.threshold > 0
    assert tiny_gate.in_distribution(clean).mean() >= 0.8
    assert not tiny_gate.in_distribution(noise).any()
    assert tiny_gate.score(noise).min() > tiny_gate.score(clean).max()
    # any frame size is brought to the gate's size
    big = cv2.resize(clean[0], (64, 32), interpolation=cv2.INTER_LINEAR)[None]
    assert tiny_gate.score(big).shape == (1,)


def test_learned_gate_is_deterministic(tiny_gate):
    frames = _smooth(8, 5)
    again = LearnedGate(**TINY).fit(_smooth(64, 0), **TINY_FIT)
    assert again.threshold == tiny_gate.threshold
    assert np.array_equal(again.score(frames), tiny_gate.score(frames))


def test_learned_gate_round_trips(tiny_gate, tmp_path):
    frames = _smooth(8, 5)
    path = tiny_gate.save(tmp_path / "gate")
    assert path.name == "gate.keras" and (tmp_path / "gate.json").is_file()
    meta = json.loads((tmp_path / "gate.json").read_text())
    assert meta["threshold"] == tiny_gate.threshold and meta["size"] == [16, 32]
    loaded = LearnedGate.load(tmp_path / "gate.keras")
    assert loaded.threshold == tiny_gate.threshold
    assert np.allclose(loaded.score(frames), tiny_gate.score(frames), atol=1e-7)
    assert (loaded.in_distribution(frames) == tiny_gate.in_distribution(frames)).all()


def test_learned_gate_errors(tmp_path):
    with pytest.raises(ModelError, match="not trained"):
        LearnedGate().score(_smooth(2, 0))
    with pytest.raises(ModelError, match="no such file"):
        LearnedGate.load(tmp_path / "missing.keras")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModelError, match="not a learned gate file of version 1 or 2"):
        LearnedGate.load(tmp_path / "bad")
    with pytest.raises(ConfigError, match="multiples of 8"):
        LearnedGate(size=(20, 30))
    with pytest.raises(InputError, match="at least 8"):
        LearnedGate(size=(16, 32)).fit(_smooth(3, 0), epochs=1)
    with pytest.raises(ConfigError, match="folds"):
        LearnedGate(folds=0)


# --- the learned gate's density of global statistics ---------------------------------------------------
EPS = 1 / 255


def test_frame_statistics_by_hand():
    grey = np.full((1, 16, 32, 3), 51, np.uint8)  # 0.2 everywhere: no contrast, colour or detail
    z = frame_statistics(grey)[0]
    assert z.shape == (len(STATISTICS),)
    assert z[0] == pytest.approx(0.2, abs=1e-6)  # brightness
    for k in (1, 2, 4, 5):  # contrast, saturation, mid and fine detail: log(0 + one grey level)
        assert z[k] == pytest.approx(np.log(EPS), abs=1e-4)
    assert z[3] == pytest.approx(np.log(0.2 + EPS), abs=1e-6)  # dark channel = the grey itself
    halves = np.zeros((1, 16, 32, 3), np.uint8)
    halves[:, :, 16:] = 255  # black | white: luma std 0.5, saturation 0
    z = frame_statistics(halves)[0]
    assert z[0] == pytest.approx(0.5, abs=1e-6) and z[1] == pytest.approx(np.log(0.5 + EPS), abs=1e-6)
    assert z[2] == pytest.approx(np.log(EPS), abs=1e-6)
    # dark channel: the 3x3 minimum spreads the black half one column into the white one
    assert z[3] == pytest.approx(np.log(15 / 32 + EPS), abs=1e-6)
    red = np.zeros((1, 16, 32, 3), np.uint8)
    red[..., 0] = 255  # saturation (1 - 0) / (1 + 0.05)
    assert frame_statistics(red)[0, 2] == pytest.approx(np.log(1 / 1.05 + EPS), abs=1e-6)


def test_frame_statistics_see_a_veil_and_noise():
    clean = _smooth(6, 7)
    fogged = (clean.astype(np.float32) * 0.4 + 0.6 * 220).round().astype(np.uint8)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    zc, zf, zn = frame_statistics(clean), frame_statistics(fogged), frame_statistics(noisy)
    assert (zf[:, 0] > zc[:, 0]).all() and (zf[:, 1] < zc[:, 1]).all()  # brighter, less contrast
    assert (zf[:, 2] < zc[:, 2]).all() and (zf[:, 3] > zc[:, 3]).all()  # less colour, more haze
    assert (zn[:, 5] > zc[:, 5] + 1).all()  # noise multiplies the fine detail


@settings(max_examples=10, deadline=None)
@given(st.lists(SMALL, min_size=1, max_size=4))
def test_frame_statistics_batch_equals_items(seeds):
    batch = np.stack([texture(s, 16, 32) for s in seeds])
    z = frame_statistics(batch)
    assert np.isfinite(z).all()
    for i in range(len(seeds)):
        assert np.allclose(frame_statistics(batch[i]), z[i], atol=1e-9)


def test_learned_gate_density_catches_a_veil_the_autoencoder_rebuilds(tiny_gate):
    clean = _smooth(40, 1)
    veiled = (clean.astype(np.float32) * 0.2 + 0.8 * 128).round().astype(np.uint8)  # a grey veil: 20% contrast left
    s = tiny_gate.scores(veiled)
    # the autoencoder rebuilds the flat frame without trouble ...
    assert (s.reconstruction <= tiny_gate.threshold).all()
    # ... the statistics are far outside the training frames', so the gate rejects it
    assert (s.density > tiny_gate.density_threshold).all()
    assert not tiny_gate.in_distribution(veiled).any()
    assert tiny_gate.in_distribution(clean).mean() >= 0.8


def test_learned_gate_score_combines_both_parts(tiny_gate):
    frames = np.concatenate([_smooth(8, 5), np.random.default_rng(4).integers(0, 256, (4, 16, 32, 3), dtype=np.uint8)])
    s = tiny_gate.scores(frames)
    expect = np.maximum(s.reconstruction, tiny_gate.threshold * s.density / tiny_gate.density_threshold)
    assert np.array_equal(s.score, expect) and np.array_equal(tiny_gate.score(frames), expect)
    both = (s.reconstruction <= tiny_gate.threshold) & (s.density <= tiny_gate.density_threshold)
    assert np.array_equal(tiny_gate.in_distribution(frames), both)


def test_learned_gate_density_threshold_is_cross_validated(tiny_gate):
    train = _smooth(64, 0)
    d = tiny_gate.density
    assert d["statistics"] == list(STATISTICS) and d["folds"] == 5
    inside = tiny_gate.scores(train).density
    # held-out blocks sit further from a Gaussian fitted without them than the frames it was fitted on
    assert d["threshold"] >= np.quantile(inside, 0.99) - 1e-9
    assert d["training_distances"]["held_out_median"] >= d["training_distances"]["median"]
    again = LearnedGate(**TINY, folds=1)
    again.model, again.threshold = tiny_gate.model, tiny_gate.threshold
    again.density = again._fit_density(frame_statistics(train))
    assert again.density_threshold == pytest.approx(np.quantile(inside, 0.99))


def test_learned_gate_v2_file_keeps_the_density(tiny_gate, tmp_path):
    frames = np.concatenate([_smooth(8, 5), (_smooth(4, 6) * 0.3 + 150).astype(np.uint8)])
    tiny_gate.save(tmp_path / "gate")
    meta = json.loads((tmp_path / "gate.json").read_text())
    assert meta["version"] == 2 and meta["density"]["threshold"] == tiny_gate.density_threshold
    loaded = LearnedGate.load(tmp_path / "gate")
    assert loaded.density_threshold == tiny_gate.density_threshold
    assert np.array_equal(loaded.density["precision"], tiny_gate.density["precision"])
    assert np.allclose(loaded.score(frames), tiny_gate.score(frames), atol=1e-7)
    assert (loaded.in_distribution(frames) == tiny_gate.in_distribution(frames)).all()


def test_learned_gate_loads_version_1_files(tiny_gate, tmp_path):
    """A gate saved before the density (format version 1) loads as the autoencoder alone."""
    frames = np.concatenate([_smooth(8, 5), (_smooth(4, 6) * 0.3 + 150).astype(np.uint8)])
    tiny_gate.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old.json").read_text())
    del meta["density"]
    meta["version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(meta))
    old = LearnedGate.load(tmp_path / "old.keras")
    assert old.density is None and old.density_threshold is None
    s = old.scores(frames)
    assert s.density is None and np.array_equal(s.score, s.reconstruction)
    assert np.array_equal(old.in_distribution(frames), s.reconstruction <= tiny_gate.threshold)
    assert np.allclose(s.reconstruction, tiny_gate.scores(frames).reconstruction, atol=1e-7)
    old.save(tmp_path / "again")  # still version 1: nothing to add
    assert json.loads((tmp_path / "again.json").read_text())["version"] == 1


def test_learned_gate_bad_density_is_reported(tiny_gate, tmp_path):
    tiny_gate.save(tmp_path / "gate")
    meta = json.loads((tmp_path / "gate.json").read_text())
    meta["density"]["precision"] = [[1.0, 0.0]]
    (tmp_path / "gate.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="missing or bad field"):
        LearnedGate.load(tmp_path / "gate")
    del meta["density"]
    (tmp_path / "gate.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="missing or bad field"):
        LearnedGate.load(tmp_path / "gate")
