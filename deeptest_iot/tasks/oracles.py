"""Metamorphic oracles: decide, for a whole batch at once, which transformed inputs break a relation.

The relations are the ones fixed in ``shared/DESIGN.md``:

* **steering** (DeepTest). With a label: input *i* fails when
  ``(expected_label_i - pred_t_i)**2 > lam * mse_orig``, ``mse_orig`` the model's MSE on the seeds
  (see :func:`steering_mse`). Without a label: it fails when ``|pred_t_i - expected_i| > delta``,
  ``expected_i`` the model's output on the untransformed seed. When the transform chain mirrors the
  frame left-right an odd number of times, the expected output and the label are negated
  (``pred(flip(x))`` should be ``-pred(x)``).
* **classification**: the reference top-1 class must stay on top (optionally its probability may
  drop by at most ``max_confidence_drop``).
* **detection**: reference boxes, mapped through the chain's 3x3 matrix for geometric transforms,
  are matched to the transformed detections by IoU; a confident object that vanishes, a confident
  object that appears, or a class change is a finding.

Every oracle returns :class:`Verdicts`: ``failed`` (N,) bool, ``violation`` (N,) float (how far
past the bound; 0 exactly when the relation holds), ``threshold`` (N,) float (the bound used), and
``details``, one JSON-able dict per input carrying ``before``/``after``/``label``/``violation``/
``threshold`` in the shapes of ``docs/results-format.md``. A value exactly at a bound holds.

Transform objects are duck-typed: anything with ``.matrix(h, w)`` (3x3 or None), ``.name`` and
``.kind``; a chain is an object with ``.matrix`` and a ``transforms``/``links`` tuple, or a plain
list/tuple of links. Detections are duck-typed too: anything with ``.boxes`` (k, 4) xyxy in frame
pixels, ``.scores`` (k,) and ``.classes`` (k,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from deeptest_iot.errors import ConfigError, InputError, OutputError
from deeptest_iot.transforms import map_boxes as _transforms_map_boxes

__all__ = [
    "Verdicts",
    "SteeringOracle",
    "ClassificationOracle",
    "DetectionOracle",
    "make_oracle",
    "steering_mse",
    "chain_links",
    "chain_matrix",
    "is_horizontal_flip",
    "expected_boxes",
    "box_iou",
    "DEFAULT_LAMBDA",
    "DEFAULT_DELTA",
    "DEFAULT_SCORE_THRESHOLD",
    "DEFAULT_IOU_THRESHOLD",
    "DEFAULT_MIN_VISIBLE",
    "FLIP_NAMES",
]

#: DeepTest explored lambda in 1..10. At 5 a labelled frame fails when its absolute error exceeds
#: sqrt(5) ~ 2.24 times the model's RMS error on the seeds: with roughly normal errors about 2.5%
#: of unperturbed seeds would already sit there, so a failure is an error well outside the model's
#: usual spread, not noise.
DEFAULT_LAMBDA = 5.0
#: 0.1 rad = 5.7 degrees: 5% of a [-1, 1] rad steering range (Udacity / Dave-2 style data), larger
#: than the frame-to-frame jitter of a lane-keeping model on a straight road and smaller than a lane
#: change. In the model's output units; set it when the model card's units are not radians.
DEFAULT_DELTA = 0.1
#: A detection is "confident" at the usual detector cut-off (the model card's score_threshold).
DEFAULT_SCORE_THRESHOLD = 0.5
#: PASCAL VOC / COCO AP50 matching criterion.
DEFAULT_IOU_THRESHOLD = 0.5
#: An expected box must keep this share of its area inside the frame to be required after a
#: geometric transform; boxes that keep less may be matched but are not reported as vanished.
DEFAULT_MIN_VISIBLE = 0.5

#: Transform names that mirror the frame left-right (the steering sign flips).
FLIP_NAMES = frozenset({"flip", "hflip", "horizontal_flip", "flip_horizontal", "fliplr", "mirror"})


# --------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdicts:
    """The oracle's answer for a batch: one entry per input, in batch order."""

    relation: str
    failed: np.ndarray  # (N,) bool
    violation: np.ndarray  # (N,) float64, 0 exactly where the relation holds
    threshold: np.ndarray  # (N,) float64, the bound each input was compared with
    details: list  # N JSON-able dicts

    def __len__(self) -> int:
        return int(self.failed.shape[0])

    @property
    def failures(self) -> np.ndarray:
        """Indices of the inputs that broke the relation."""
        return np.flatnonzero(self.failed)


def _verdicts(relation: str, failed, violation, threshold, details) -> Verdicts:
    failed = np.asarray(failed, dtype=bool)
    violation = np.where(failed, np.asarray(violation, dtype=np.float64), 0.0)
    return Verdicts(relation, failed, violation, np.asarray(threshold, dtype=np.float64), details)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _number(name: str, value, *, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """A finite real option in [low, high] (or (low, high]); ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if v < low or (low_open and v == low) or v > high:
        lo = "(" if low_open else "["
        hi = "]" if math.isfinite(high) else ")"
        raise ConfigError(f"{name} must be in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return v


def _finite(name: str, arr: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1)) if arr.ndim else np.array([0])
        shown = ", ".join(str(int(i)) for i in rows[:10]) + (", ..." if rows.size > 10 else "")
        raise OutputError(f"{name} contain NaN or Inf (inputs {shown}); the model is numerically broken "
                          f"on them or the model card's scale/offset is wrong")
    return arr


def _vector(name: str, values, n: int | None = None) -> np.ndarray:
    """(N,) or (N, 1) model outputs as a float64 (N,) array."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OutputError(f"{name} must be numbers: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise OutputError(f"{name} must have shape (N,) or (N, 1), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise OutputError(f"{name} has {arr.shape[0]} entries, expected {n} (one per input)")
    return _finite(name, arr)


def _labels_vector(labels, n: int) -> np.ndarray:
    """Steering labels as (N,) float64; NaN (or None) marks an input without a label."""
    try:
        arr = np.asarray([np.nan if v is None else v for v in labels] if isinstance(labels, (list, tuple))
                         else labels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"steering labels must be numbers: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise InputError(f"labels must have one entry per input: shape ({n},), got {arr.shape}")
    if np.isinf(arr).any():
        raise InputError("steering labels contain Inf")
    return arr


def _frame_size(frame_size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in frame_size)
    except (TypeError, ValueError):
        raise InputError(f"frame_size must be (height, width), got {frame_size!r}") from None
    if h <= 0 or w <= 0:
        raise InputError(f"frame_size must be positive, got {frame_size!r}")
    return h, w


# --------------------------------------------------------------------------------------------
# Transform chains (duck-typed)
# --------------------------------------------------------------------------------------------


def _is_transform_like(obj) -> bool:
    return any(hasattr(obj, a) for a in ("matrix", "name", "kind"))


def _is_plain_sequence(obj) -> bool:
    """A list/tuple of links, as opposed to a transform that happens to be a tuple (a NamedTuple)."""
    return isinstance(obj, (list, tuple)) and not _is_transform_like(obj)


def chain_links(chain) -> tuple:
    """The individual transforms of ``chain``, flattened (a single transform is a chain of one).

    Accepts None (no transform), a transform, a Chain-like object exposing ``transforms`` or
    ``links``, or a list/tuple of any of these.
    """
    if chain is None:
        return ()
    for attr in ("transforms", "links"):
        inner = getattr(chain, attr, None)
        if isinstance(inner, (list, tuple)):
            return tuple(link for item in inner for link in chain_links(item))
    if _is_plain_sequence(chain):
        return tuple(link for item in chain for link in chain_links(item))
    return (chain,)


def _link_matrix(link, h: int, w: int):
    fn = getattr(link, "matrix", None)
    if fn is None:
        return None
    m = fn(h, w)
    if m is None:
        return None
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (3, 3) or not np.isfinite(m).all():
        raise InputError(f"transform {getattr(link, 'name', link)!r} returned a bad matrix {m!r}")
    return m


def chain_matrix(chain, h: int, w: int):
    """The 3x3 matrix that maps original-frame pixel coordinates to the transformed frame, or None.

    Uses the chain's own ``.matrix(h, w)`` when it has one; otherwise composes its links' matrices
    in application order (photometric links, whose matrix is None, are the identity). None means
    no link moved pixels: the expected boxes are the original ones.
    """
    if chain is None:
        return None
    if hasattr(chain, "matrix"):
        return _link_matrix(chain, h, w)
    total = None
    for link in chain_links(chain):
        m = _link_matrix(link, h, w)
        if m is not None:
            total = m if total is None else m @ total
    return total


def is_horizontal_flip(link) -> bool:
    """Whether one transform mirrors the frame left-right.

    A ``mirrors_horizontally`` attribute, when a transform sets one, decides. Otherwise the name must
    be in ``FLIP_NAMES`` and, when the transform exposes a matrix, that matrix must mirror x (its
    top-left entry negative): ``hflip`` with ``flip=0`` is the identity and does not flip. The matrix
    alone is not used, on purpose: a vertical flip or a 180 degree rotation also has a negative
    entry or determinant but does not mirror the road left-right in the same way.
    """
    flag = getattr(link, "mirrors_horizontally", None)
    if flag is not None:
        return bool(flag)
    name = getattr(link, "name", None)
    if not (isinstance(name, str) and name.lower() in FLIP_NAMES):
        return False
    if callable(getattr(link, "matrix", None)):
        m = _link_matrix(link, 2, 2)
        return m is not None and m[0, 0] < 0
    return True


def _per_input(transforms, n: int) -> list:
    """One chain (or None) per input: a single transform/chain applies to every input."""
    if transforms is None or not _is_plain_sequence(transforms) and _is_transform_like(transforms):
        return [transforms] * n
    if _is_plain_sequence(transforms):
        if len(transforms) != n:
            raise InputError(f"transforms must be one transform/chain for the whole batch or one per input "
                             f"({n}), got a sequence of {len(transforms)}")
        return list(transforms)
    raise InputError(f"transforms must be a transform, a chain, or a sequence of them, got {transforms!r}")


def _cached_per_chain(chains: list, fn: Callable[[Any], Any]) -> list:
    """``fn(chain)`` for every chain, computed once per distinct chain object."""
    cache: dict[int, Any] = {}
    out = []
    for c in chains:
        key = id(c)
        if key not in cache:
            cache[key] = fn(c)
        out.append(cache[key])
    return out


# --------------------------------------------------------------------------------------------
# Steering
# --------------------------------------------------------------------------------------------


def steering_mse(predictions, labels) -> float:
    """The model's mean squared error on the seeds (DeepTest's MSE_orig); NaN labels are skipped."""
    preds = _vector("seed predictions", predictions)
    labs = _labels_vector(labels, preds.shape[0])
    have = ~np.isnan(labs)
    if not have.any():
        raise InputError("steering_mse needs at least one labelled seed")
    return float(np.mean((labs[have] - preds[have]) ** 2))


class SteeringOracle:
    """DeepTest's steering relation, with and without labels, and the flip relation."""

    relation = "steering"

    def __init__(self, lam: float = DEFAULT_LAMBDA, delta: float = DEFAULT_DELTA, mse_orig: float | None = None):
        self.lam = _number("lambda", lam, low=0.0, low_open=True)
        self.delta = _number("delta", delta, low=0.0)
        self.mse_orig = None if mse_orig is None else _number("mse_orig", mse_orig, low=0.0)

    @classmethod
    def from_seeds(cls, predictions, labels, lam: float = DEFAULT_LAMBDA, delta: float = DEFAULT_DELTA):
        """An oracle whose MSE_orig is measured on the seeds' predictions and labels."""
        return cls(lam=lam, delta=delta, mse_orig=steering_mse(predictions, labels))

    def config(self) -> dict:
        """The relation's settings, for summary.json's ``campaign.relation``."""
        return {"name": self.relation, "lambda": self.lam, "delta": self.delta, "mse_orig": self.mse_orig}

    def check(self, reference_outputs, outputs, transforms=None, labels=None, frame_size=None) -> Verdicts:
        """Verdicts for ``outputs`` (on transformed frames) against ``reference_outputs`` (on seeds).

        ``labels`` (N,) are the seeds' true angles; NaN marks an unlabelled seed, which is judged by
        the ``delta`` rule. Labelled inputs need ``mse_orig``. ``frame_size`` is unused here.
        """
        ref = _vector("reference outputs", reference_outputs)
        n = ref.shape[0]
        out = _vector("outputs", outputs, n)
        flips = _cached_per_chain(_per_input(transforms, n),
                                  lambda c: sum(is_horizontal_flip(link) for link in chain_links(c)) % 2 == 1)
        flipped = np.asarray(flips, dtype=bool)
        sign = np.where(flipped, -1.0, 1.0)

        if labels is None:
            labs = np.full(n, np.nan)
        else:
            labs = _labels_vector(labels, n)
        labelled = ~np.isnan(labs)
        if labelled.any() and self.mse_orig is None:
            raise ConfigError("steering labels were given but mse_orig is unknown: pass mse_orig= to "
                              "make_oracle (compute it with steering_mse(seed_predictions, seed_labels))")
        bound_label = self.lam * (self.mse_orig if self.mse_orig is not None else 0.0)

        expected = np.where(labelled, sign * np.nan_to_num(labs), sign * ref)
        deviation = np.where(labelled, (expected - out) ** 2, np.abs(out - expected))
        threshold = np.where(labelled, bound_label, self.delta)
        failed = deviation > threshold
        violation = deviation - threshold

        details = [
            {"before": float(ref[i]), "after": float(out[i]),
             "label": float(labs[i]) if labelled[i] else None,
             "expected": float(expected[i]), "flipped": bool(flipped[i]),
             "rule": "label" if labelled[i] else "reference",
             "deviation": float(deviation[i]),
             "violation": float(violation[i]) if failed[i] else 0.0,
             "threshold": float(threshold[i])}
            for i in range(n)
        ]
        return _verdicts(self.relation, failed, violation, threshold, details)


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


def _matrix2d(name: str, values, n: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OutputError(f"{name} must be numbers: {exc}") from None
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise OutputError(f"{name} must have shape (N, classes), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise OutputError(f"{name} has {arr.shape[0]} rows, expected {n} (one per input)")
    return _finite(name, arr)


class ClassificationOracle:
    """Top-1 label preserved; optionally the top-1 probability may drop by at most a bound.

    The relation is metamorphic: the transformed frame must get the class the model gave the seed,
    whether or not that class is the seed's label (labels are recorded, not used). A tie between the
    reference class and another class at the top counts as preserved (at the bound holds).
    """

    relation = "classification"

    def __init__(self, classes: Sequence[str] | None = None, max_confidence_drop: float | None = None):
        self.classes = None if classes is None else [str(c) for c in classes]
        self.max_confidence_drop = (None if max_confidence_drop is None
                                    else _number("max_confidence_drop", max_confidence_drop, low=0.0, high=1.0))

    def config(self) -> dict:
        return {"name": self.relation, "max_confidence_drop": self.max_confidence_drop}

    def _name(self, label: int) -> str:
        if self.classes is not None and 0 <= label < len(self.classes):
            return self.classes[label]
        return str(label)

    def _describe(self, label: int, confidence: float) -> dict:
        return {"label": int(label), "name": self._name(int(label)), "confidence": float(confidence)}

    def check(self, reference_outputs, outputs, transforms=None, labels=None, frame_size=None) -> Verdicts:
        """Verdicts for (N, C) class probabilities. ``transforms`` and ``frame_size`` are unused."""
        ref = _matrix2d("reference outputs", reference_outputs)
        n, c = ref.shape
        out = _matrix2d("outputs", outputs, n)
        if out.shape[1] != c:
            raise OutputError(f"outputs have {out.shape[1]} classes, reference outputs {c}")
        rows = np.arange(n)
        top = ref.argmax(axis=1)
        p_ref = ref[rows, top]
        p_same = out[rows, top]
        others = out.copy()
        others[rows, top] = -np.inf
        best_other = others.argmax(axis=1) if c > 1 else top
        margin = (others[rows, best_other] - p_same) if c > 1 else np.full(n, -np.inf)
        label_failed = margin > 0
        after_label = np.where(label_failed, best_other, top)
        after_conf = out[rows, after_label]
        drop = p_ref - p_same

        if self.max_confidence_drop is None:
            drop_failed = np.zeros(n, dtype=bool)
            threshold = np.zeros(n)
            violation = margin
        else:
            drop_failed = drop > self.max_confidence_drop
            threshold = np.where(label_failed, 0.0, self.max_confidence_drop)
            violation = np.where(label_failed, margin, drop - self.max_confidence_drop)
        failed = label_failed | drop_failed

        if labels is None:
            labs = [None] * n
        else:
            arr = np.asarray(labels)
            if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
                raise InputError(f"labels must be one integer class index per input: shape ({n},), "
                                 f"got {arr.dtype} {arr.shape}")
            labs = [int(v) for v in arr]

        details = [
            {"before": self._describe(top[i], p_ref[i]),
             "after": self._describe(after_label[i], after_conf[i]),
             "label": labs[i],
             "label_name": None if labs[i] is None else self._name(labs[i]),
             "margin": float(margin[i]) if c > 1 else None,
             "confidence_drop": float(drop[i]),
             "violation": float(violation[i]) if failed[i] else 0.0,
             "threshold": float(threshold[i])}
            for i in range(n)
        ]
        return _verdicts(self.relation, failed, violation, threshold, details)


# --------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------


def expected_boxes(matrix, boxes, frame_size) -> tuple[np.ndarray, np.ndarray]:
    """Where the seed's xyxy boxes should be after a transform with this 3x3 matrix (None: unmoved).

    The mapping is ``deeptest_iot.transforms.map_boxes``: the 4 corners through the matrix, their
    axis-aligned hull, with the half-pixel shift between box edges (pixel column i spans
    [i, i + 1]) and the matrix's pixel centres, so a flip of width w sends [x0, x1] to
    [w - x1, w - x0]. Returns ``(clipped (k, 4), visible (k,))``: the hull clipped to the frame and
    the share of the hull's area left inside it (0 for a box that left the frame).
    """
    h, w = frame_size
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    hull = _transforms_map_boxes(b, matrix, clip=False)
    clipped = _transforms_map_boxes(hull, None, (h, w))
    area = np.maximum(hull[:, 2] - hull[:, 0], 0) * np.maximum(hull[:, 3] - hull[:, 1], 0)
    kept = np.maximum(clipped[:, 2] - clipped[:, 0], 0) * np.maximum(clipped[:, 3] - clipped[:, 1], 0)
    visible = np.divide(kept, area, out=np.zeros_like(kept), where=area > 0)
    return clipped, visible


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes, batched: a (..., k, 4), b (..., m, 4) -> (..., k, m); 0 for empty boxes."""
    a = a[..., :, None, :]
    b = b[..., None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def _detections(name: str, det, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(det.classes).reshape(-1).astype(np.int64)
    except AttributeError:
        raise OutputError(f"{name}[{i}] is not a detections object (.boxes, .scores, .classes)") from None
    except (TypeError, ValueError) as exc:
        raise OutputError(f"{name}[{i}] has unreadable boxes/scores/classes: {exc}") from None
    if not (boxes.shape[0] == scores.shape[0] == classes.shape[0]):
        raise OutputError(f"{name}[{i}] has {boxes.shape[0]} boxes, {scores.shape[0]} scores, "
                          f"{classes.shape[0]} classes")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise OutputError(f"{name} contain NaN or Inf (input {i})")
    return boxes, scores, classes


def _pad(arrays: list, k: int, tail: tuple, fill, dtype) -> np.ndarray:
    out = np.full((len(arrays), k) + tail, fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


class DetectionOracle:
    """Confident objects must survive the transform where the transform's matrix says they went.

    Matching is greedy by score (as in COCO evaluation): transformed detections in descending score
    order each take the unmatched expected box of highest IoU >= ``iou_threshold``, first among
    boxes of the same class, then (second pass) among any class, so a class change is reported only
    when no same-class box explains the detection. It runs vectorised over the batch, one step per
    detection rank. A finding is, per input:

    * vanished: a confident reference object (score >= ``score_threshold``) whose expected box keeps
      at least ``min_visible`` of its area in the frame and matches no transformed detection;
    * appeared: a confident transformed detection matching no expected box (of any score);
    * changed: a matched pair whose classes differ while either side is confident.

    ``violation`` is the number of such objects and ``threshold`` is 0.
    """

    relation = "detection"

    def __init__(self, score_threshold: float = DEFAULT_SCORE_THRESHOLD, iou_threshold: float = DEFAULT_IOU_THRESHOLD,
                 min_visible: float = DEFAULT_MIN_VISIBLE, classes: Sequence[str] | None = None,
                 box_mapper: Callable | None = None):
        self.score_threshold = _number("score_threshold", score_threshold, low=0.0, high=1.0)
        self.iou_threshold = _number("iou_threshold", iou_threshold, low=0.0, high=1.0, low_open=True)
        self.min_visible = _number("min_visible", min_visible, low=0.0, high=1.0)
        self.classes = None if classes is None else [str(c) for c in classes]
        self.box_mapper = box_mapper or expected_boxes

    def config(self) -> dict:
        return {"name": self.relation, "score_threshold": self.score_threshold,
                "iou_threshold": self.iou_threshold, "min_visible": self.min_visible}

    def _obj(self, box, score, cls) -> dict:
        d = {"box": [float(v) for v in box], "score": float(score), "class": int(cls)}
        if self.classes is not None:
            d["name"] = self.classes[int(cls)] if 0 <= int(cls) < len(self.classes) else str(int(cls))
        return d

    @staticmethod
    def _as_output(boxes, scores, classes) -> dict:
        return {"boxes": np.asarray(boxes, dtype=np.float64).tolist(),
                "scores": np.asarray(scores, dtype=np.float64).tolist(),
                "classes": np.asarray(classes, dtype=np.int64).tolist()}

    def check(self, reference_outputs, outputs, transforms=None, labels=None, frame_size=None) -> Verdicts:
        """Verdicts for lists of detections. ``frame_size`` (h, w) is needed to map and clip boxes.

        ``labels`` (ground-truth boxes per seed) are recorded in the details when they are JSON-able
        objects with ``.boxes``/``.classes``; the relation compares with the reference detections.
        """
        ref_list, out_list = list(reference_outputs), list(outputs)
        n = len(ref_list)
        if len(out_list) != n:
            raise OutputError(f"{len(out_list)} transformed detections for {n} reference detections")
        if frame_size is None:
            raise InputError("the detection oracle needs frame_size=(height, width) to map and clip boxes")
        h, w = _frame_size(frame_size)
        ref = [_detections("reference outputs", d, i) for i, d in enumerate(ref_list)]
        out = [_detections("outputs", d, i) for i, d in enumerate(out_list)]
        matrices = _cached_per_chain(_per_input(transforms, n), lambda c: chain_matrix(c, h, w))

        expected, visible = [], []
        for (boxes, _, _), m in zip(ref, matrices):
            e, v = self.box_mapper(m, boxes, (h, w))
            expected.append(e)
            visible.append(v)

        ke = max([len(e) for e in expected] + [1])
        kt = max([len(o[0]) for o in out] + [1])
        e_valid = _pad([np.ones(len(e), bool) for e in expected], ke, (), False, bool)
        e_box = _pad(expected, ke, (4,), 0.0, np.float64)
        e_score = _pad([r[1] for r in ref], ke, (), 0.0, np.float64)
        e_cls = _pad([r[2] for r in ref], ke, (), -1, np.int64)
        e_vis = _pad(visible, ke, (), 0.0, np.float64)
        t_valid = _pad([np.ones(len(o[0]), bool) for o in out], kt, (), False, bool)
        t_box = _pad([o[0] for o in out], kt, (4,), 0.0, np.float64)
        t_score = _pad([o[1] for o in out], kt, (), 0.0, np.float64)
        t_cls = _pad([o[2] for o in out], kt, (), -1, np.int64)

        e_conf = e_valid & (e_score >= self.score_threshold)
        e_required = e_conf & (e_vis > 0) & (e_vis >= self.min_visible)
        t_conf = t_valid & (t_score >= self.score_threshold)
        # expected boxes are clipped to the frame, so detections are clipped the same way to compare
        t_clip = np.minimum(np.maximum(t_box, 0.0), np.array([w, h, w, h], dtype=np.float64))
        match, iou = self._match(e_box, e_cls, e_valid, t_clip, t_cls, t_valid, t_score)

        rows = np.arange(n)[:, None]
        matched = match >= 0
        safe = np.where(matched, match, 0)
        used = np.zeros((n, ke), bool)
        used[np.broadcast_to(rows, match.shape)[matched], match[matched]] = True
        vanished = e_required & ~used
        appeared = t_conf & ~matched
        changed = matched & (t_cls != e_cls[rows, safe]) & (t_conf | e_conf[rows, safe])
        count = vanished.sum(1) + appeared.sum(1) + changed.sum(1)
        failed = count > 0
        threshold = np.zeros(n)

        details = []
        for i in range(n):
            rb, rs, rc = ref[i]
            ob, os_, oc = out[i]
            details.append({
                "before": self._as_output(rb, rs, rc),
                "after": self._as_output(ob, os_, oc),
                "label": self._label(labels, i),
                "expected": np.asarray(expected[i], dtype=np.float64).tolist(),
                "vanished": [self._obj(e_box[i, j], e_score[i, j], e_cls[i, j]) for j in np.flatnonzero(vanished[i])],
                "appeared": [self._obj(t_box[i, j], t_score[i, j], t_cls[i, j]) for j in np.flatnonzero(appeared[i])],
                "changed": [{"before": self._obj(e_box[i, match[i, j]], e_score[i, match[i, j]], e_cls[i, match[i, j]]),
                             "after": self._obj(t_box[i, j], t_score[i, j], t_cls[i, j]),
                             "iou": float(iou[i, j, match[i, j]])}
                            for j in np.flatnonzero(changed[i])],
                "violation": float(count[i]),
                "threshold": 0.0,
            })
        return _verdicts(self.relation, failed, count.astype(np.float64), threshold, details)

    def _match(self, e_box, e_cls, e_valid, t_box, t_cls, t_valid, t_score):
        """Greedy matching for the whole batch: returns match (N, Kt) expected index or -1, and IoU."""
        n, kt = t_valid.shape
        iou = box_iou(t_box, e_box)  # (N, Kt, Ke)
        order = np.argsort(np.where(t_valid, -t_score, np.inf), axis=1, kind="stable")
        match = np.full((n, kt), -1, dtype=np.int64)
        used = np.zeros(e_valid.shape, dtype=bool)
        rows = np.arange(n)
        for same_class in (True, False):
            for r in range(kt):
                ti = order[:, r]
                cand = iou[rows, ti]  # (N, Ke)
                ok = (e_valid & ~used & (cand >= self.iou_threshold)
                      & (t_valid[rows, ti] & (match[rows, ti] < 0))[:, None])
                if same_class:
                    ok &= e_cls == t_cls[rows, ti][:, None]
                best = np.where(ok, cand, -1.0).argmax(axis=1)
                hit = ok[rows, best]
                match[rows[hit], ti[hit]] = best[hit]
                used[rows[hit], best[hit]] = True
        return match, iou

    @staticmethod
    def _label(labels, i):
        if labels is None:
            return None
        item = labels[i]
        if item is None:
            return None
        boxes = getattr(item, "boxes", None)
        classes = getattr(item, "classes", None)
        if boxes is None or classes is None:
            return None
        return {"boxes": [[float(v) for v in b] for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)],
                "classes": [int(c) for c in np.asarray(classes).reshape(-1)]}


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------

_ORACLES = {"steering": SteeringOracle, "classification": ClassificationOracle, "detection": DetectionOracle}
_OPTIONS = {
    "steering": {"lam", "delta", "mse_orig"},
    "classification": {"classes", "max_confidence_drop"},
    "detection": {"score_threshold", "iou_threshold", "min_visible", "classes", "box_mapper"},
}


def make_oracle(task: str, **options):
    """The oracle for a model card's task: ``"steering"``, ``"classification"`` or ``"detection"``.

    Options (all keyword, all optional):

    * steering: ``lam`` (5.0), ``delta`` (0.1, output units), ``mse_orig`` (None; needed when labels
      are passed to ``check``), or ``seed_predictions`` + ``seed_labels`` to measure ``mse_orig``.
    * classification: ``classes`` (names), ``max_confidence_drop`` (None: no bound).
    * detection: ``score_threshold`` (0.5), ``iou_threshold`` (0.5), ``min_visible`` (0.5),
      ``classes``, ``box_mapper`` (function ``(matrix, boxes, (h, w)) -> (boxes, visible)``).

    Options set to None are ignored, so a caller may pass every option it knows of.
    """
    if task not in _ORACLES:
        raise ConfigError(f"unknown relation {task!r}; choose one of {', '.join(sorted(_ORACLES))}")
    opts = dict(options)
    if task == "steering":
        preds, labs = opts.pop("seed_predictions", None), opts.pop("seed_labels", None)
        if (preds is None) != (labs is None):
            raise ConfigError("pass seed_predictions and seed_labels together (to measure mse_orig)")
        if preds is not None:
            if opts.get("mse_orig") is not None:
                raise ConfigError("pass either mse_orig or seed_predictions/seed_labels, not both")
            opts["mse_orig"] = steering_mse(preds, labs)
    unknown = set(opts) - _OPTIONS[task]
    if unknown:
        raise ConfigError(f"unknown option(s) for the {task} relation: {', '.join(sorted(unknown))}; "
                          f"valid: {', '.join(sorted(_OPTIONS[task]))}")
    return _ORACLES[task](**{k: v for k, v in opts.items() if v is not None})
