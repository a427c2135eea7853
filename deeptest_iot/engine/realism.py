"""Realism gate: does a mutant still look like the same road scene as its seed?

Two gates; the calibration and the evidence behind every default are in ``docs/realism.md``.

* **Similarity gate** (cheap, meant to be always on): both frames are reduced to small grey copies
  (32 x 64 by default), the warp of a chain with a geometric link is undone (the chain's 3x3
  matrix maps seed pixel coordinates to mutant ones) and only the part of the seed still in view
  is compared. The score is the Pearson correlation of the two copies after a band-pass (each copy
  minus its Gaussian blur), scaled down when one copy has far less detail than the other. A mutant
  passes when its score reaches the threshold of its chain's transform families; a chain of several
  families takes the strictest (highest) of their thresholds.
* **Learned gate** (optional, :class:`LearnedGate`): SelfOracle's idea (Stocco et al., ICSE 2020),
  a small convolutional autoencoder trained on training frames; a frame whose reconstruction error
  is above the 99th percentile of the training frames' errors is out of distribution. Since the
  autoencoder rebuilds smooth frames (fog, rain, snow, blur) all the better, a Gaussian density of
  six global statistics (brightness, contrast, saturation, dark channel, detail at two scales) fitted
  on the same frames also has to accept the frame: the 99th percentile of its Mahalanobis distances,
  cross-validated over contiguous blocks of the training frames, is its threshold.

Everything works on batches (N, H, W, 3) uint8 RGB. The small copies take one OpenCV grey
conversion and one area resize per few hundred frames (the batch stacked into one tall image, see
:func:`small_grey`); undoing warps is one ``cv2.warpAffine`` per warped mutant on a copy already
reduced to twice the comparison size; band-pass, masks and correlations are batched NumPy. The only
per-item Python work is reading each chain's matrix and families (once per chain object).
This module imports TensorFlow only when a :class:`LearnedGate` is fitted or loaded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, NamedTuple

import cv2
import numpy as np

from deeptest_iot.errors import ConfigError, InputError, ModelError
from deeptest_iot.tasks.base import per_chain, per_input_chains
from deeptest_iot.transforms import as_chain

__all__ = ["CONTRAST_FLOOR", "DEFAULT_SIZE", "DEFAULT_THRESHOLDS", "FAMILIES", "MIN_KEPT", "STATISTICS", "LearnedGate",
           "LearnedScores", "Realism", "RealismGate", "Similarity", "aligned_copies", "band_pass", "chain_families",
           "chain_matrix", "frame_statistics", "pearson", "realism_scores", "seed_copies", "similarity", "small_grey"]

#: (height, width) of the grey copies compared; docs/realism.md says why.
DEFAULT_SIZE = (32, 64)
#: Transform families (``deeptest_iot.transforms.KINDS``), in registry order.
FAMILIES = ("photometric", "geometric", "weather", "sensor")
#: Lowest score at which a mutant of each family still shows the same road scene. Calibrated on real
#: dashcam frames by benchmarks/calibrate_realism.py; the evidence is in docs/realism.md.
DEFAULT_THRESHOLDS: Mapping[str, float] = MappingProxyType(
    {"photometric": 0.45, "geometric": 0.4, "weather": 0.4, "sensor": 0.45})
#: A warp must keep at least this share of the seed frame in view, else the mutant scores 0.
MIN_KEPT = 0.08
#: Below this ratio of detail (band-pass standard deviation, the weaker copy over the stronger) the
#: score is scaled down in proportion: a near-flat frame is not the scene, whatever faint residue it keeps.
CONTRAST_FLOOR = 0.2
#: Band-pass scale: the Gaussian removed has a standard deviation of height / BAND pixels of the copy.
BAND = 16.0

_EYE = np.eye(3)
_FLAT = 0.5  # grey levels: a copy whose (band-passed) standard deviation is below this has no structure
_MAX_ELEMENTS = 1 << 27  # keep each stacked cv2 Mat far below OpenCV's 2**31 element limit


# --- small grey copies ----------------------------------------------------------------------------
def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be (height, width), got {size!r}") from None
    if h < 4 or w < 4:
        raise ConfigError(f"size must be at least (4, 4), got {size!r}")
    return h, w


def _as_images(images, what: str) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(f"{what} must be a batch (N, H, W, 3) of RGB images, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise InputError(f"{what} must be uint8 RGB, got dtype {arr.dtype}; convert with "
                         "np.clip(x, 0, 255).astype(np.uint8)")
    return np.ascontiguousarray(arr)


def _area_resize(batch: np.ndarray, h: int, w: int, grey: bool = False) -> np.ndarray:
    """Area-resize every image of ``batch`` (N, H, W[, C]) to (h, w), in a few OpenCV calls; with
    ``grey``, RGB uint8 images are turned grey (BT.601, rounded) first and (N, h, w) comes back.

    The batch is stacked into one tall image (N*H, W) and resized to (N*h, w): the vertical scale is
    exactly H/h, so output row k of frame i covers input rows [i*H + k*H/h, i*H + (k+1)*H/h), inside
    frame i; the result equals resizing frame by frame (tested), at a fraction of the calls.
    """
    n, hh, ww = batch.shape[:3]
    rest = () if grey else batch.shape[3:]
    out = np.empty((n, h, w, *rest), batch.dtype)
    step = max(1, _MAX_ELEMENTS // max(1, batch[0].size)) if n else 1
    for i in range(0, n, step):
        part = np.ascontiguousarray(batch[i:i + step])
        k = len(part)
        tall = part.reshape(k * hh, ww, *part.shape[3:])
        if grey:
            tall = cv2.cvtColor(tall, cv2.COLOR_RGB2GRAY)
        if (hh, ww) != (h, w):
            tall = cv2.resize(tall, (w, k * h), interpolation=cv2.INTER_AREA)
        out[i:i + k] = tall.reshape(k, h, w, *rest)
    return out


def small_grey(images, size=DEFAULT_SIZE) -> np.ndarray:
    """(N, h, w) float32 grey copies (0..255, BT.601 luma) of RGB ``images`` by area averaging.

    Area averaging keeps per-pixel noise from dominating: what is compared is the layout of the
    scene, not the texture of its pixels. OpenCV converts to grey and averages in uint8, rounding
    to the nearest level each time (an error below one grey level).
    """
    h, w = _check_size(size)
    return _area_resize(_as_images(images, "images"), h, w, grey=True).astype(np.float32)


# --- chains ---------------------------------------------------------------------------------------
def chain_families(chain) -> frozenset:
    """The families (transform kinds) of the links of ``chain`` that change the image."""
    return frozenset(t.kind for t in as_chain(chain) if not t.is_identity)


def chain_matrix(chain, h: int, w: int) -> np.ndarray | None:
    """3x3 matrix mapping seed pixel coordinates to mutant ones (``Chain.matrix``), or None when
    no link moves pixels."""
    m = as_chain(chain).matrix(h, w)
    return None if m is None or (m == _EYE).all() else m


def _chain_info(chains, n: int, h: int, w: int) -> tuple[list, list]:
    """Per mutant: the chain's matrix (or None) and its families, computed once per chain object.
    ``chains`` is None, one chain (or transform) for the batch, or one per mutant."""
    info = per_chain(per_input_chains(chains, n, "mutant"), lambda c: (chain_matrix(c, h, w), chain_families(c)))
    return [m for m, _ in info], [f for _, f in info]


# --- aligning a mutant with its seed --------------------------------------------------------------
def _scale_matrix(sy: float, sx: float) -> np.ndarray:
    """Pixel-centre coordinates of a frame resized by (sy, sx): x' = (x + 0.5) sx - 0.5."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _kept_masks(mats: np.ndarray, hh: int, ww: int, h: int, w: int) -> np.ndarray:
    """(K, h, w) bool: small seed pixels whose whole footprint lands inside the mutant frame.

    A small pixel (i, j) covers the full-size rectangle [j W/w - 0.5, (j+1) W/w - 0.5] x [...]; a
    warp is affine (or projective), so the rectangle is inside the mutant frame iff its 4 corners
    are (the frame is convex). Vectorised over all mutants and pixels.
    """
    xs = np.arange(w + 1) * (ww / w) - 0.5
    ys = np.arange(h + 1) * (hh / h) - 0.5
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])  # (3, P)
    q = mats @ pts  # (K, 3, P)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = q[:, 0] / q[:, 2]
        y = q[:, 1] / q[:, 2]
    tol = 1e-6
    inside = ((x >= -0.5 - tol) & (x <= ww - 0.5 + tol) & (y >= -0.5 - tol) & (y <= hh - 0.5 + tol)
              & (q[:, 2] > 0)).reshape(-1, h + 1, w + 1)
    return inside[:, :-1, :-1] & inside[:, 1:, :-1] & inside[:, :-1, 1:] & inside[:, 1:, 1:]


def _unwarp(mutants: np.ndarray, mats: np.ndarray, h: int, w: int) -> np.ndarray:
    """(K, h, w) float32: each mutant brought back to its seed's coordinates, at the small size.

    The mutant is first turned grey and area-reduced to twice the small size (noise averaged; a
    warp there costs a few microseconds), warped back with its own matrix, then halved again.
    """
    hh, ww = mutants.shape[1:3]
    mh, mw = min(hh, 2 * h), min(ww, 2 * w)
    mid = _area_resize(mutants, mh, mw, grey=True).astype(np.float32)
    s = _scale_matrix(mh / hh, mw / ww)
    s_inv = np.linalg.inv(s)
    out = np.empty((len(mutants), mh, mw), np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for i, m in enumerate(mats):
        # Output pixel p (seed coordinates, mid size) takes the mutant at S M S^-1 p.
        fwd = s @ m @ s_inv
        if np.array_equal(fwd[2], (0.0, 0.0, 1.0)):
            out[i] = cv2.warpAffine(mid[i], fwd[:2], (mw, mh), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        else:
            out[i] = cv2.warpPerspective(mid[i], fwd, (mw, mh), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return out if (mh, mw) == (h, w) else _area_resize(out, h, w)


def seed_copies(seeds, size=DEFAULT_SIZE) -> np.ndarray:
    """(N, h, w) uint8 grey copies of ``seeds`` as the gate makes them (``small_grey`` before its
    float32 conversion): a campaign makes them once for all its seeds and passes each batch's rows
    as ``seed_small``, instead of reducing the same seeds again for every batch."""
    h, w = _check_size(size)
    return _area_resize(_as_images(seeds, "seeds"), h, w, grey=True)


def _aligned(seeds, mutants, mats, h: int, w: int, seed_small=None):
    m = _as_images(mutants, "mutants")
    s = _as_images(seeds, "seeds")
    n, hh, ww = m.shape[:3]
    if s.shape[1:] != m.shape[1:] or s.shape[0] not in (1, n):
        raise InputError(f"seeds {s.shape} and mutants {m.shape} must have the same frame size, with one seed "
                         "per mutant or one seed for all")
    if seed_small is None:
        a = small_grey(s, (h, w))
    else:
        a = np.asarray(seed_small).astype(np.float32)
        if a.shape != (len(s), h, w):
            raise InputError(f"seed_small must be (N, h, w) = {(len(s), h, w)}, got {a.shape}")
    if len(s) == 1 and n > 1:
        a = np.broadcast_to(a, (n, h, w))
    warped = np.array([mt is not None for mt in mats], dtype=bool).reshape(n)
    b = np.empty((n, h, w), np.float32)
    mask = np.ones((n, h, w), bool)
    plain = np.flatnonzero(~warped)
    if plain.size:
        b[plain] = small_grey(m if plain.size == n else m[plain], (h, w))
    idx = np.flatnonzero(warped)
    singular = np.zeros(n, bool)
    if idx.size:
        stack = np.stack([mats[i] for i in idx])
        ok = np.abs(np.linalg.det(stack)) > 1e-12
        singular[idx[~ok]] = True
        stack[~ok] = np.eye(3)
        b[idx] = _unwarp(m[idx], stack, h, w)
        mask[idx] = _kept_masks(stack, hh, ww, h, w)
        mask[idx[~ok]] = False
    return a, b, mask, warped, singular


def aligned_copies(seeds, mutants, chains=None, size=DEFAULT_SIZE):
    """``(seed_small, mutant_small, mask, warped, singular)``: (N, h, w) float32 grey copies of each
    seed and of its mutant with the warp undone, the (N, h, w) bool mask of seed pixels still in
    view, and (N,) bool flags: a warp was undone / the warp could not be inverted."""
    h, w = _check_size(size)
    m = _as_images(mutants, "mutants")
    mats, _ = _chain_info(chains, len(m), *m.shape[1:3])
    return _aligned(seeds, m, mats, h, w)


# --- the score ------------------------------------------------------------------------------------
def _moments(a: np.ndarray, b: np.ndarray, wts: np.ndarray | None):
    """Row-wise weighted (std_a, std_b, correlation) of (N, P) arrays, in float64 (weights None = all 1)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if wts is None:
        cnt = float(a.shape[1])
        da = a - a.mean(axis=1, keepdims=True)
        db = b - b.mean(axis=1, keepdims=True)
        wa, wb = da, db
    else:
        wts = np.asarray(wts, np.float64)
        cnt = np.maximum(wts.sum(axis=1), 1.0)
        da = a - np.einsum("ij,ij->i", wts, a)[:, None] / cnt[:, None]
        db = b - np.einsum("ij,ij->i", wts, b)[:, None] / cnt[:, None]
        wa, wb = wts * da, wts * db
    va = np.einsum("ij,ij->i", wa, da) / cnt
    vb = np.einsum("ij,ij->i", wb, db) / cnt
    cov = np.einsum("ij,ij->i", wa, db) / cnt
    sa, sb = np.sqrt(va), np.sqrt(vb)
    flat_a, flat_b = sa < _FLAT, sb < _FLAT
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / (sa * sb)
    # A flat copy has no structure to correlate: 1 when both are flat (nothing was lost), else 0.
    r = np.where(flat_a | flat_b, np.where(flat_a & flat_b, 1.0, 0.0), r)
    return sa, sb, np.clip(r, -1.0, 1.0)


def pearson(a, b, mask=None) -> np.ndarray:
    """Row-wise (masked) Pearson correlation of (N, ...) arrays, float64 in [-1, 1].

    A flat row (standard deviation below half a grey level) scores 0 against a row with structure
    and 1 against another flat row.
    """
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    wts = None if mask is None else np.asarray(mask, np.float64).reshape(a.shape)
    return _moments(a, b, wts)[2]


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3 * sigma)))
    return np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)


_ONE = np.ones(1, np.float32)


def _blur(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur (unnormalised, zero outside the frame) of a float32 stack (N, h, w).

    Rows are filtered on the stack laid out as (N*h, w), columns on the stack laid out side by side
    as (h, N*w): either way every filtered line lies inside one frame, so two OpenCV calls serve
    the whole batch and no frame bleeds into the next.
    """
    n, h, w = x.shape
    rows = cv2.sepFilter2D(np.ascontiguousarray(x).reshape(n * h, w), cv2.CV_32F, k, _ONE,
                           borderType=cv2.BORDER_CONSTANT)
    side = np.ascontiguousarray(rows.reshape(n, h, w).transpose(1, 0, 2)).reshape(h, n * w)
    cols = cv2.sepFilter2D(side, cv2.CV_32F, _ONE, k, borderType=cv2.BORDER_CONSTANT)
    return cols.reshape(h, n, w).transpose(1, 0, 2)


def band_pass(grey, mask=None, sigma: float | None = None) -> np.ndarray:
    """(N, h, w) float32: each grey copy minus its Gaussian blur (standard deviation ``sigma``
    pixels, default h / 16, truncated at 3 sigma), the blur taken by normalised convolution over
    ``mask`` (None = the whole frame) so that pixels out of view do not leak in. No per-image loop."""
    g = np.asarray(grey, np.float32)
    n, h, w = g.shape
    k = _gauss_kernel(h / BAND if sigma is None else float(sigma))
    if mask is None:
        return g - _blur(g, k) / _blur(np.ones((1, h, w), np.float32), k)
    m = np.asarray(mask, np.float32).reshape(n, h, w)
    return g - _blur(g * m, k) / np.maximum(_blur(m, k), 1e-12)


class Similarity(NamedTuple):
    """Per-mutant similarity to its seed, each (N,) float64 (``warped`` bool)."""

    score: np.ndarray  # in [-1, 1]: what the gate thresholds: corr, scaled down when contrast < CONTRAST_FLOOR
    corr: np.ndarray  # in [-1, 1]: Pearson correlation of the band-passed small grey copies (warp undone)
    contrast: np.ndarray  # in [0, 1]: the smaller band-pass standard deviation of the two over the larger
    pearson: np.ndarray  # in [-1, 1]: plain Pearson correlation of the small grey copies (issue 13's measure)
    kept: np.ndarray  # in [0, 1]: share of the seed's small copy still in view (1 without a warp)
    warped: np.ndarray  # bool: the chain moved pixels and the warp was undone


def _similarity(a, b, mask, warped, singular, min_kept: float, contrast_floor: float,
                pearson: bool = True) -> Similarity:
    """``pearson=False`` leaves the plain correlation out (None): the gate's verdict does not use it."""
    n, h, w = b.shape
    ha = np.empty((n, h * w), np.float32)
    hb = np.empty((n, h * w), np.float32)
    plain = np.flatnonzero(~warped)
    idx = np.flatnonzero(warped)
    if plain.size:
        ha[plain] = band_pass(a[plain]).reshape(plain.size, h * w)
        hb[plain] = band_pass(b[plain]).reshape(plain.size, h * w)
    if idx.size:
        ha[idx] = band_pass(a[idx], mask[idx]).reshape(idx.size, h * w)
        hb[idx] = band_pass(b[idx], mask[idx]).reshape(idx.size, h * w)
    wts = None if not idx.size else mask.reshape(n, h * w)
    sa, sb, corr = _moments(ha, hb, wts)
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.where(np.maximum(sa, sb) > 0, np.minimum(sa, sb) / np.maximum(sa, sb), 1.0)
    visible = np.minimum(1.0, contrast / contrast_floor) if contrast_floor > 0 else np.ones(n)
    score = np.where((sa < _FLAT) & (sb < _FLAT), 1.0, corr * visible)
    glob = _moments(np.asarray(a).reshape(n, h * w), b.reshape(n, h * w), wts)[2] if pearson else None
    kept = mask.reshape(n, h * w).mean(axis=1)
    gone = (kept < min_kept) | singular
    score, corr = (np.where(gone, 0.0, v) for v in (score, corr))
    glob = None if glob is None else np.where(gone, 0.0, glob)
    return Similarity(score, corr, contrast, glob, kept, warped)


def similarity(seeds, mutants, chains=None, size=DEFAULT_SIZE, min_kept: float = MIN_KEPT,
               contrast_floor: float = CONTRAST_FLOOR) -> Similarity:
    """How much each mutant still looks like its seed, on (h, w) grey copies with the warp undone.

    ``seeds`` is (N, H, W, 3) or one (H, W, 3) seed shared by every mutant; ``mutants`` (N, H, W, 3),
    both uint8 RGB of the same frame size. ``chains`` is None (no warp), one chain for the whole
    batch (a Chain or a Transform), or a list of one chain per mutant (a Chain, a Transform, a list
    of Transforms, or None).

    ``corr`` is the Pearson correlation of the two copies after a band-pass (each copy minus its
    Gaussian blur of standard deviation h/16 pixels) over the seed pixels the warp kept in view: it
    compares the scene's edges and objects, not its overall light layout, which fog, glare and
    shadows change without hiding the scene. ``score`` is ``corr`` times
    ``min(1, contrast / contrast_floor)``, ``contrast`` being the smaller of the two copies'
    band-pass standard deviations over the larger: a frame with a fifth of the other's detail is
    close to a flat colour even when its faint residue still correlates. A mutant whose warp keeps
    less than ``min_kept`` of the seed in view scores 0. Without a warp the score is symmetric in
    (seed, mutant).
    """
    h, w = _check_size(size)
    m = _as_images(mutants, "mutants")
    mats, _ = _chain_info(chains, len(m), *m.shape[1:3])
    return _similarity(*_aligned(seeds, m, mats, h, w), float(min_kept), float(contrast_floor))


# --- the gate -------------------------------------------------------------------------------------
class Realism(NamedTuple):
    """The gate's verdict per mutant, each (N,)."""

    score: np.ndarray  # float64: similarity to the seed (see :func:`similarity`)
    ok: np.ndarray  # bool: score >= threshold
    threshold: np.ndarray  # float64: the threshold that applied (strictest family of the chain)
    kept: np.ndarray  # float64: share of the seed still in view after the warp


def _check_share(name: str, value, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or not lo <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be a number in [{lo:g}, 1], got {value!r}")
    return float(value)


def _check_thresholds(thresholds) -> dict:
    out = dict(DEFAULT_THRESHOLDS)
    if thresholds is None:
        return out
    if isinstance(thresholds, (int, float, np.integer, np.floating)) and not isinstance(thresholds, bool):
        thresholds = {f: thresholds for f in FAMILIES}
    if not isinstance(thresholds, Mapping):
        raise ConfigError(f"realism thresholds must be a number or a table family = number, got {thresholds!r}")
    for fam, value in thresholds.items():
        if fam not in FAMILIES:
            raise ConfigError(f"unknown transform family {fam!r} in realism thresholds; families: "
                              f"{', '.join(FAMILIES)}")
        out[fam] = _check_share(f"realism threshold for {fam}", value, -1.0)
    return out


@dataclass(frozen=True)
class RealismGate:
    """The similarity gate: ``RealismGate()(seeds, mutants, chains) -> Realism``.

    ``thresholds`` maps a family to its threshold (families left out keep the defaults; one number
    sets them all). A chain's threshold is the highest among the families of its links that change
    the image; a chain with no such link (the identity, or ``chains=None``) takes the highest of all.
    ``size``, ``min_kept`` and ``contrast_floor``: see :func:`similarity`.
    """

    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    size: tuple[int, int] = DEFAULT_SIZE
    min_kept: float = MIN_KEPT
    contrast_floor: float = CONTRAST_FLOOR

    def __post_init__(self):
        object.__setattr__(self, "thresholds", _check_thresholds(self.thresholds))
        object.__setattr__(self, "size", _check_size(self.size))
        object.__setattr__(self, "min_kept", _check_share("min_kept", self.min_kept))
        object.__setattr__(self, "contrast_floor", _check_share("contrast_floor", self.contrast_floor))

    def threshold(self, chain) -> float:
        """The threshold a mutant made by ``chain`` must reach."""
        return self._threshold(chain_families(chain))

    def _threshold(self, fams: frozenset) -> float:
        return max((self.thresholds[f] for f in fams), default=max(self.thresholds.values()))

    def similarity(self, seeds, mutants, chains=None) -> Similarity:
        return similarity(seeds, mutants, chains, self.size, self.min_kept, self.contrast_floor)

    def __call__(self, seeds, mutants, chains=None, seed_small=None) -> Realism:
        """``seed_small``, when given, is ``seed_copies(seeds, self.size)`` made earlier (the same
        verdicts, without reducing the seeds again)."""
        h, w = self.size
        m = _as_images(mutants, "mutants")
        mats, fams = _chain_info(chains, len(m), *m.shape[1:3])
        sim = _similarity(*_aligned(seeds, m, mats, h, w, seed_small), self.min_kept, self.contrast_floor,
                          pearson=False)
        cache: dict[frozenset, float] = {}
        thr = np.array([cache.setdefault(f, self._threshold(f)) for f in fams], np.float64).reshape(len(m))
        return Realism(sim.score, sim.score >= thr, thr, sim.kept)


def realism_scores(seeds, mutants, chains=None, thresholds=None, size=DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``(score (N,) float64, ok (N,) bool)``: each mutant's similarity to its seed and whether it
    reaches its chain's family threshold. See :class:`RealismGate` and :func:`similarity`."""
    r = RealismGate(_check_thresholds(thresholds), size)(seeds, mutants, chains)
    return r.score, r.ok


# --- the learned gate (SelfOracle, plus a density of global image statistics) ---------------------
GATE_FORMAT = "deeptest-iot learned realism gate"
#: Version 2 adds the density of global statistics (``density`` in the .json); version 1 files still load.
GATE_VERSION = 2
_GATE_VERSIONS = (1, 2)

#: The global statistics of a frame that the learned gate's density is fitted on, in this order
#: (:func:`frame_statistics`; docs/realism.md says why these). Changing them means a new GATE_VERSION.
STATISTICS = ("brightness", "log_contrast", "log_saturation", "log_dark_channel", "log_mid_detail",
              "log_fine_detail")
#: Added before taking logs: one grey level, so that a flat frame has finite statistics.
_STAT_EPS = 1.0 / 255.0
#: Covariance shrinkage toward its diagonal, so that a few dozen frames give a usable Gaussian.
DENSITY_SHRINKAGE = 0.1
_VAR_FLOOR = 1e-6  # a statistic that never varies in training still gets a finite (tiny) spread
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _statistics(x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(N, 6) float64 :data:`STATISTICS` of (N, h, w, 3) float32 RGB frames in [0, 1]; batched."""
    n = len(x)
    out = np.empty((n, len(STATISTICS)), np.float64)
    for i in range(0, n, chunk):
        part = x[i:i + chunk]
        k = len(part)
        luma = part @ _LUMA  # (k, h, w)
        hi, lo = part.max(axis=-1), part.min(axis=-1)
        sat = (hi - lo) / (hi + 0.05)  # HSV-like saturation, damped in the dark where it is noise
        # Dark channel (He, Sun, Tang 2009): the darkest channel, then the darkest in each 3x3
        # neighbourhood (edges replicated). Haze, a veil or glare lift it; clear daylight keeps it low.
        pad = np.pad(lo, ((0, 0), (1, 1), (1, 1)), mode="edge")
        h, w = lo.shape[1:]
        dark = pad[:, 1:h + 1, 1:w + 1].copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(dark, pad[:, dy:dy + h, dx:dx + w], out=dark)
        fine = band_pass(luma, sigma=1.0)  # luma minus its blur at 1 px: pixel-scale texture and noise
        mid = band_pass(luma, sigma=3.0) - fine  # blur at 1 px minus blur at 3 px: edges, objects
        out[i:i + k] = np.stack([
            luma.mean(axis=(1, 2)),
            np.log(luma.std(axis=(1, 2)) + _STAT_EPS),
            np.log(sat.mean(axis=(1, 2)) + _STAT_EPS),
            np.log(dark.mean(axis=(1, 2)) + _STAT_EPS),
            np.log(np.abs(mid).mean(axis=(1, 2)) + _STAT_EPS),
            np.log(np.abs(fine).mean(axis=(1, 2)) + _STAT_EPS)], axis=1)
    return out


def frame_statistics(images) -> np.ndarray:
    """(N, 6) float64: the global statistics of each uint8 RGB image that the learned gate's density
    models, in the order of :data:`STATISTICS`: mean luma (BT.601, 0..1); the logs of the luma's
    standard deviation (contrast), of the mean saturation, of the mean dark channel (haze), of the
    mean absolute difference of two Gaussian blurs of the luma at 1 and 3 pixels (mid-scale detail:
    edges and objects) and of the mean absolute luma minus its 1-pixel blur (fine texture, noise).
    Measured at the size given: the gate passes its own subsampled copies."""
    return _statistics(_as_images(images, "images").astype(np.float32) / 255.0)


def _fit_gaussian(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of a Gaussian fitted to the rows of ``z``, covariance shrunk toward its diagonal."""
    mu = z.mean(axis=0)
    c = np.atleast_2d(np.cov(z, rowvar=False))
    d = np.maximum(np.diag(c), _VAR_FLOOR)
    c = (1.0 - DENSITY_SHRINKAGE) * c + DENSITY_SHRINKAGE * np.diag(d)
    c[np.diag_indices_from(c)] = np.maximum(np.diag(c), _VAR_FLOOR)
    return mu, np.linalg.pinv(c, hermitian=True)


def _mahalanobis(z: np.ndarray, mu: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = z - mu
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, precision, d), 0.0))


class LearnedScores(NamedTuple):
    """Per image, each (N,) float64: what :meth:`LearnedGate.scores` measures."""

    score: np.ndarray  # what the gate thresholds: reconstruction, or the density in reconstruction units when further out
    reconstruction: np.ndarray  # mean squared reconstruction error, pixels in [0, 1]
    density: np.ndarray | None  # Mahalanobis distance of the frame's statistics (None: a version-1 gate has none)


class LearnedGate:
    """The learned out-of-distribution gate: SelfOracle's autoencoder (Stocco et al., ICSE 2020) and a
    Gaussian density of global image statistics, both fitted on training frames, on (h, w) RGB
    copies of the frames (default 40 x 80, nearest-pixel subsampling).

    ``fit(frames)`` trains the autoencoder and sets ``threshold`` to the ``quantile`` (0.99) of the
    training frames' reconstruction errors; it fits a Gaussian (covariance shrunk toward its
    diagonal) to the frames' :func:`frame_statistics` and sets ``density_threshold`` to the
    ``quantile`` of their Mahalanobis distances, each frame's distance taken from a Gaussian fitted
    without its own block of ``folds`` contiguous blocks (frames in recording order: a new stretch
    of road must pass, not just the frames the Gaussian was fitted on). ``score(images)`` is each
    image's reconstruction error, or ``threshold * distance / density_threshold`` when that is
    larger; ``in_distribution(images)`` is ``score <= threshold``: the frame passes both tests.
    :meth:`scores` gives the parts. The autoencoder flags pixel noise and colour casts (it cannot
    rebuild them) but rebuilds fog, blur and darkness all the better; the density flags frames whose
    contrast, haze, saturation, brightness or detail lie outside the training frames' (docs/realism.md).

    ``save(path)`` writes ``path`` (a .keras model) and the same name with ``.json`` (thresholds,
    size, the density); ``LearnedGate.load(path)`` reads them back with Keras' ``safe_mode``, version-1
    files (autoencoder only: ``score`` is the reconstruction error) included. Training is
    deterministic given ``seed`` on one machine: seeded initialisers, a seeded batch order, and
    TensorFlow's op determinism switched on for the fit. Score frames of the size the gate was
    trained on (subsampling a larger frame keeps finer texture).
    """

    def __init__(self, size=(40, 80), seed: int = 0, quantile: float = 0.99, filters=(16, 32, 64),
                 latent: int = 8, folds: int = 5):
        self.size = _check_size(size)
        if self.size[0] % 8 or self.size[1] % 8:
            raise ConfigError(f"the learned gate's size must be multiples of 8 (three 2x downsamplings), got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
        if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 1:
            raise ConfigError(f"folds must be a positive int (1 = no cross-validation), got {folds!r}")
        self.seed = int(seed)
        self.quantile = _check_share("quantile", quantile)
        self.filters = tuple(int(f) for f in filters)
        self.latent = int(latent)
        self.folds = int(folds)
        self.threshold: float | None = None
        self.density: dict | None = None  # {"mean": (6,), "precision": (6, 6), "threshold": float, ...}
        self.train_stats: dict = {}
        self.model = None

    @property
    def density_threshold(self) -> float | None:
        """The Mahalanobis distance above which a frame's statistics are out of distribution (None: no density)."""
        return None if self.density is None else self.density["threshold"]

    # -- data ----------------------------------------------------------------------------------
    def subsample(self, images) -> np.ndarray:
        """(N, h, w, 3) uint8: every frame subsampled to the gate's size by taking the nearest pixel.
        Unlike area averaging (which the similarity gate uses), subsampling keeps each pixel's noise,
        so sensor faults the small grey copies average away still show here. Frames already at the
        gate's size are kept as they are (so training frames can be subsampled as they stream)."""
        h, w = self.size
        batch = _as_images(images, "images")
        n, hh, ww = batch.shape[:3]
        ys = np.minimum(((np.arange(h) + 0.5) * hh / h).astype(np.intp), hh - 1)
        xs = np.minimum(((np.arange(w) + 0.5) * ww / w).astype(np.intp), ww - 1)
        return batch[:, ys][:, :, xs]

    def _prepare(self, images) -> np.ndarray:
        """(N, h, w, 3) float32 in [0, 1]: the subsampled frames (see ``subsample``)."""
        return self.subsample(images).astype(np.float32) / 255.0

    def _build(self):
        import keras

        h, w = self.size
        init = lambda k: keras.initializers.GlorotUniform(seed=self.seed * 1000 + k)  # noqa: E731
        x = inp = keras.Input((h, w, 3), name="frame")
        k = 0
        for f in self.filters:
            x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", kernel_initializer=init(k))(x)
            k += 1
        x = keras.layers.Conv2D(self.latent, 1, activation="relu", kernel_initializer=init(k), name="code")(x)
        k += 1
        for f in reversed(self.filters):
            x = keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu",
                                             kernel_initializer=init(k))(x)
            k += 1
        out = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", kernel_initializer=init(k),
                                  name="reconstruction")(x)
        return keras.Model(inp, out, name="selforacle_autoencoder")

    # -- training ------------------------------------------------------------------------------
    def fit(self, frames, epochs: int = 30, batch_size: int = 64, learning_rate: float = 2e-3,
            verbose: int = 0) -> "LearnedGate":
        """Train on ``frames`` (N, H, W, 3) uint8 RGB training frames, in recording order when they
        come from a video (the density's cross-validation holds out contiguous blocks); returns self."""
        import keras
        import tensorflow as tf

        x = self._prepare(frames)
        if len(x) < 8:
            raise InputError(f"the learned gate needs at least 8 training frames, got {len(x)}")
        if int(epochs) < 1 or int(batch_size) < 1:
            raise ConfigError(f"epochs and batch_size must be at least 1, got {epochs!r} and {batch_size!r}")
        was = _op_determinism()
        tf.config.experimental.enable_op_determinism()
        try:
            keras.utils.set_random_seed(self.seed)
            self.model = self._build()
            self._train(x, int(epochs), int(batch_size), float(learning_rate), verbose)
        finally:
            if not was:
                _disable_op_determinism()
        errors = self._errors(x)
        self.threshold = float(np.quantile(errors, self.quantile))
        self.train_stats = {"frames": int(len(x)), "epochs": int(epochs), "mean": float(errors.mean()),
                            "median": float(np.median(errors)), "max": float(errors.max())}
        self.density = self._fit_density(_statistics(x))
        return self

    def _fit_density(self, z: np.ndarray) -> dict:
        """The Gaussian of the training statistics ``z`` (N, 6) and its threshold: the ``quantile`` of
        out-of-fold distances over ``folds`` contiguous blocks (in-sample distances when folds = 1)."""
        n = len(z)
        mu, precision = _fit_gaussian(z)
        folds = min(self.folds, n // 2)
        if folds < 2:
            held = _mahalanobis(z, mu, precision)
        else:
            held = np.empty(n)
            edges = np.linspace(0, n, folds + 1).round().astype(int)
            for a, b in zip(edges[:-1], edges[1:]):
                rest = np.concatenate([z[:a], z[b:]])
                held[a:b] = _mahalanobis(z[a:b], *_fit_gaussian(rest))
        inside = _mahalanobis(z, mu, precision)
        return {"statistics": list(STATISTICS), "mean": mu, "precision": precision,
                "threshold": float(np.quantile(held, self.quantile)), "folds": int(max(folds, 1)),
                "shrinkage": DENSITY_SHRINKAGE,
                "training_distances": {"median": float(np.median(inside)), "max": float(inside.max()),
                                       "held_out_median": float(np.median(held)), "held_out_max": float(held.max())}}

    def _train(self, x: np.ndarray, epochs: int, batch_size: int, learning_rate: float, verbose: int) -> None:
        """Adam on the mean squared error, mini-batches in an order drawn from a seeded Generator.

        One traced training step and a plain loop: for a model this small, ``model.fit``'s machinery
        costs more than the training itself, and the batch order is ours to seed. Every batch has
        ``batch_size`` frames (the remainder of a shuffled epoch waits for a later epoch), so the
        step is traced once.
        """
        import keras
        import tensorflow as tf

        opt = keras.optimizers.Adam(learning_rate)
        model = self.model
        weights = model.trainable_variables
        bs = min(batch_size, len(x))

        @tf.function(reduce_retracing=True)
        def step(xb):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(xb, training=True) - xb))
            opt.apply_gradients(zip(tape.gradient(loss, weights), weights))
            return loss

        rng = np.random.default_rng([self.seed, 0x5E1F])
        per_epoch = len(x) // bs
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            losses = [float(step(tf.constant(x[order[i * bs:(i + 1) * bs]]))) for i in range(per_epoch)]
            if verbose:
                print(f"learned gate: epoch {epoch + 1}/{epochs}, reconstruction MSE {np.mean(losses):.5f}")

    # -- use -----------------------------------------------------------------------------------
    def _check_trained(self) -> None:
        if self.model is None or self.threshold is None:
            raise ModelError("the learned gate is not trained: call fit(frames) or LearnedGate.load(path)")

    def _errors(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        if self.model is None:
            raise ModelError("the learned gate is not trained: call fit(frames) or LearnedGate.load(path)")
        out = np.empty(len(x), np.float64)
        for i in range(0, len(x), batch):
            part = x[i:i + batch]
            rec = np.asarray(self.model(part, training=False), np.float32)
            out[i:i + len(part)] = ((rec - part) ** 2).reshape(len(part), -1).mean(axis=1)
        return out

    def scores(self, images) -> LearnedScores:
        """Each image's reconstruction error, the Mahalanobis distance of its statistics, and the
        score the gate thresholds: ``max(reconstruction, threshold * density / density_threshold)``
        (the reconstruction error alone for a version-1 gate)."""
        self._check_trained()
        x = self._prepare(images)
        rec = self._errors(x)
        if self.density is None:
            return LearnedScores(rec, rec, None)
        dist = _mahalanobis(_statistics(x), self.density["mean"], self.density["precision"])
        return LearnedScores(np.maximum(rec, self.threshold * dist / self.density["threshold"]), rec, dist)

    def score(self, images) -> np.ndarray:
        """(N,) float64: the reconstruction error (mean squared, pixels in [0, 1]), raised to
        ``threshold * distance / density_threshold`` when the frame's statistics are further out;
        so ``score <= threshold`` exactly when both are in distribution."""
        return self.scores(images).score

    def in_distribution(self, images) -> np.ndarray:
        """(N,) bool: reconstruction error at most ``threshold`` (the training errors' 99th percentile)
        and statistics within ``density_threshold`` of the training frames'."""
        return self.score(images) <= self.threshold

    # -- files ---------------------------------------------------------------------------------
    @staticmethod
    def _paths(path) -> tuple[Path, Path]:
        p = Path(path)
        if p.suffix != ".keras":
            p = p.with_name(p.name + ".keras")
        return p, p.with_suffix(".json")

    def save(self, path) -> Path:
        """Write the model to ``path`` (``.keras`` appended when missing) and its settings beside it
        as ``.json``, each atomically. Returns the .keras path."""
        from deeptest_iot.fileio import atomic_write_json

        if self.model is None or self.threshold is None:
            raise ModelError("the learned gate is not trained: call fit(frames) before save(path)")
        model_path, meta_path = self._paths(path)
        model_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = model_path.with_name(f".{model_path.stem}.{os.getpid()}.tmp.keras")
        try:
            self.model.save(tmp)
            os.replace(tmp, model_path)
        finally:
            if tmp.exists():
                tmp.unlink()
        meta = {"format": GATE_FORMAT, "version": GATE_VERSION if self.density is not None else 1,
                "model": model_path.name, "size": list(self.size), "threshold": self.threshold,
                "quantile": self.quantile, "seed": self.seed, "filters": list(self.filters), "latent": self.latent,
                "training_errors": self.train_stats}
        if self.density is not None:
            meta["density"] = {**self.density, "mean": [float(v) for v in self.density["mean"]],
                               "precision": [[float(v) for v in row] for row in self.density["precision"]]}
        atomic_write_json(meta_path, meta)
        return model_path

    @classmethod
    def load(cls, path) -> "LearnedGate":
        """Read a gate written by :meth:`save` (the .keras path, or the name without extension);
        version-1 files (no density) load as autoencoder-only gates."""
        import json

        import keras

        from deeptest_iot.model.core import MIN_KERAS

        model_path, meta_path = cls._paths(path)
        for p in (model_path, meta_path):
            if not p.is_file():
                raise ModelError(f"learned realism gate {p}: no such file; train one with "
                                 "LearnedGate().fit(frames).save(path)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"learned realism gate {meta_path}: not readable JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != GATE_FORMAT or meta.get("version") not in _GATE_VERSIONS:
            raise ModelError(f"learned realism gate {meta_path}: not a learned gate file of version "
                             f"{' or '.join(map(str, _GATE_VERSIONS))}")
        try:
            gate = cls(tuple(meta["size"]), int(meta["seed"]), float(meta["quantile"]), tuple(meta["filters"]),
                       int(meta["latent"]))
            gate.threshold = float(meta["threshold"])
            if meta["version"] >= 2:
                gate.density = _read_density(meta["density"])
                gate.folds = gate.density["folds"]
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"learned realism gate {meta_path}: missing or bad field ({e})") from None
        if tuple(int(v) for v in keras.__version__.split(".")[:3] if v.isdigit()) < MIN_KERAS:
            raise ModelError(f"loading a learned gate needs keras >= {'.'.join(map(str, MIN_KERAS))} "
                             f"(safe_mode), found {keras.__version__}")
        try:
            model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        except Exception as e:  # noqa: BLE001 - any failure to read the archive is the file's fault
            raise ModelError(f"learned realism gate {model_path}: cannot be loaded ({e})") from None
        if tuple(model.input_shape[1:3]) != gate.size:
            raise ModelError(f"learned realism gate {model_path}: model input {model.input_shape[1:3]} does not match "
                             f"the size {gate.size} in {meta_path.name}")
        gate.train_stats = dict(meta.get("training_errors") or {})
        gate.model = model
        return gate


def _read_density(d) -> dict:
    """The ``density`` entry of a version-2 gate file, checked (ValueError/KeyError/TypeError if bad)."""
    k = len(STATISTICS)
    if list(d["statistics"]) != list(STATISTICS):
        raise ValueError(f"density statistics {d['statistics']} are not this version's {list(STATISTICS)}")
    mu = np.asarray(d["mean"], np.float64)
    precision = np.asarray(d["precision"], np.float64)
    threshold = float(d["threshold"])
    if mu.shape != (k,) or precision.shape != (k, k) or not (np.isfinite(mu).all() and np.isfinite(precision).all()):
        raise ValueError(f"density mean {mu.shape} / precision {precision.shape} must be finite ({k},) / ({k}, {k})")
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"density threshold must be a positive number, got {threshold!r}")
    return {**d, "mean": mu, "precision": precision, "threshold": threshold, "folds": int(d.get("folds", 1))}


def _op_determinism() -> bool:
    try:
        from tensorflow.python.framework import config as tf_config

        return bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError):
        return False


def _disable_op_determinism() -> None:
    try:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
    except (ImportError, AttributeError):
        pass
