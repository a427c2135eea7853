"""The differential relation: a deployed twin must answer as its float model does, on the same image.

Where a metamorphic oracle compares one model's outputs on a seed and on its transformed frame,
the differential oracle compares two models on the *same* frame: the float (Keras) model and its
converted twin (LiteRT int8 / float16, ONNX). TensorFuzz, DeepHunter and DiffChaser found
quantisation defects this way. Per task:

* **steering**: input *i* fails when ``|twin_i - float_i| > delta``.
  ``DEFAULT_DELTA`` = 0.02 rad (1.15 degrees) is a fifth of the metamorphic relation's default bound
  (0.1 rad, ``tasks.steering.DEFAULT_DELTA``): a twin that deviates by this much on an unchanged
  frame has already used a fifth of what the metamorphic relation tolerates for a weather change,
  before any transform. It is well above what conversion costs a healthy twin: on 200 clean
  generated frames the sample Dave-2's float16 twin deviates by at most 2.6e-5 rad and its int8
  twin by at most 0.0045 rad (labels within +-0.12 rad; docs/twins.md). Set it in the model's output units when they are not radians.
* **classification**: the float model's top-1 class must stay the twin's top-1 class; with
  ``max_confidence_drop``, the twin's probability of that class may also drop by at most that much.
  (``ClassificationOracle``, the float output as the reference.)
* **detection**: every confident box of either model must match a box of the other at IoU >= 0.5
  with the same class: DetectionOracle's greedy matching, with the identity transform.

``check(float_outputs, twin_outputs, ...)`` takes the same arguments as the metamorphic oracles'
``check`` (the transform is ignored: both models saw the same pixels) and returns the same
:class:`~deeptest_iot.tasks.base.Verdicts`, with ``relation == "differential"`` and every
detail carrying ``"relation": "differential"``, the ``task`` and ``disagreement``; ``before`` is the
float model's output and ``after`` the twin's.

**Disagreement** (every detail's ``disagreement``, >= 0, also where the relation holds): how far
apart the two answers are, the fitness a search climbs (DiffChaser, DFlare) to reach inputs that
break the relation:

* steering: ``|twin - float|`` (output units), the quantity compared with ``delta``;
* classification: ``|p_float(c) - p_twin(c)|`` for the float model's top-1 class ``c`` (DiffChaser's
  probability gap), plus 1 when the twin's top-1 class is another one, so that any input breaking
  the relation outranks any that keeps it;
* detection: the number of objects the relation counts (unmatched or of another class), plus, over
  the confident boxes of either model, the largest ``1 - IoU`` with the nearest box of the same class
  of the other model (1 when there is none).
"""

from __future__ import annotations

import math

import numpy as np

from deeptest_iot.errors import ConfigError
from deeptest_iot.tasks.base import Verdicts, make_verdicts, number
from deeptest_iot.tasks.classification import ClassificationOracle
from deeptest_iot.tasks.detection import DEFAULT_IOU_THRESHOLD, DEFAULT_SCORE_THRESHOLD, DetectionOracle
from deeptest_iot.tasks.steering import output_vector

__all__ = ["DifferentialOracle", "make_differential_oracle", "differential_oracle_for", "disagreement", "option_names", "DEFAULT_DELTA",
           "RELATION"]

RELATION = "differential"
#: Steering bound in the model's output units (radians): see the module docstring.
DEFAULT_DELTA = 0.02

_OPTIONS = {
    "steering": {"delta"},
    "classification": {"classes", "max_confidence_drop"},
    "detection": {"score_threshold", "iou_threshold", "classes"},
}


class DifferentialOracle:
    """Judges a twin's outputs against its float model's outputs on the same inputs."""

    relation = RELATION

    def __init__(self, task: str, delta: float = DEFAULT_DELTA, classes=None, max_confidence_drop: float | None = None,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD, iou_threshold: float = DEFAULT_IOU_THRESHOLD):
        if task not in _OPTIONS:
            raise ConfigError(f"unknown task {task!r} for the differential relation; choose one of "
                              f"{', '.join(sorted(_OPTIONS))}")
        self.task = task
        self.delta = number("delta", delta, low=0.0)
        self._inner = None
        if task == "classification":
            self._inner = ClassificationOracle(classes=classes, max_confidence_drop=max_confidence_drop)
        elif task == "detection":
            # identity transform: every float box stays where it was and is fully visible
            self._inner = DetectionOracle(score_threshold=score_threshold, iou_threshold=iou_threshold,
                                          min_visible=0.0, classes=classes)

    def config(self) -> dict:
        """The relation's settings, for summary.json's ``campaign.relation`` (or a second entry beside it)."""
        out = {"name": self.relation, "task": self.task}
        if self.task == "steering":
            out["delta"] = self.delta
        else:
            inner = self._inner.config()
            inner.pop("name", None)
            inner.pop("min_visible", None)
            out.update(inner)
        return out

    def rule(self) -> str:
        """The relation in one line, for failure messages."""
        if self.task == "steering":
            return f"|twin - model| <= {self.delta:g} on the same frame"
        if self.task == "classification":
            bound = self._inner.max_confidence_drop
            return ("the twin's top-1 class is the model's on the same frame"
                    + (f", its probability at most {bound:g} lower" if bound is not None else ""))
        return (f"every confident box (score >= {self._inner.score_threshold:g}) of either model matches one of the "
                f"other at IoU >= {self._inner.iou_threshold:g} with the same class, on the same frame")

    def check(self, float_outputs, twin_outputs, transforms=None, labels=None, frame_size=None) -> Verdicts:
        """One verdict per input: does the twin's output on it agree with the float model's?

        ``transforms`` is ignored (both models saw the same frame). ``frame_size`` (h, w) is only
        used by detection, to clip boxes; by default the extent of all boxes, so nothing is clipped.
        """
        if self.task == "steering":
            return self._steering(float_outputs, twin_outputs, labels)
        if self.task == "detection":
            float_outputs, twin_outputs = list(float_outputs), list(twin_outputs)
            if frame_size is None:
                frame_size = _extent(float_outputs + twin_outputs)
            v = self._inner.check(float_outputs, twin_outputs, None, labels, frame_size)
            gap = v.violation + _box_gap(float_outputs, twin_outputs, self._inner.score_threshold)
        else:
            v = self._inner.check(float_outputs, twin_outputs, None, labels)
            drop = np.array([abs(d["confidence_drop"]) for d in v.details], np.float64).reshape(-1)
            changed = np.array([d["before"]["label"] != d["after"]["label"] for d in v.details], bool).reshape(-1)
            gap = drop + changed
        details = [{"relation": RELATION, "task": self.task, **d, "disagreement": float(gap[i])}
                   for i, d in enumerate(v.details)]
        return Verdicts(RELATION, v.failed, v.violation, v.threshold, details)

    def _steering(self, float_outputs, twin_outputs, labels) -> Verdicts:
        ref = output_vector("float model outputs", float_outputs)
        out = output_vector("twin outputs", twin_outputs, ref.shape[0])
        deviation = np.abs(out - ref)
        failed = deviation > self.delta
        threshold = np.full(ref.shape[0], self.delta)
        violation = deviation - self.delta
        labs = None if labels is None else np.asarray(labels, dtype=np.float64).reshape(-1)
        details = [
            {"relation": RELATION, "task": "steering", "before": float(ref[i]), "after": float(out[i]),
             "label": None if labs is None or not math.isfinite(labs[i]) else float(labs[i]),
             "expected": float(ref[i]), "deviation": float(deviation[i]), "disagreement": float(deviation[i]),
             "violation": float(violation[i]) if failed[i] else 0.0, "threshold": self.delta}
            for i in range(ref.shape[0])
        ]
        return make_verdicts(RELATION, failed, violation, threshold, details)


def disagreement(verdicts: Verdicts) -> np.ndarray:
    """(N,) the ``disagreement`` of each input of a differential check (module docstring)."""
    return np.array([float(d.get("disagreement", 0.0)) for d in verdicts.details], np.float64)


def _box_gap(float_outputs, twin_outputs, score_threshold: float) -> np.ndarray:
    """(N,) over the confident boxes of either model, the largest 1 - IoU with the nearest box of the
    same class of the other model (1 when the other has none of that class); 0 without confident boxes."""
    from deeptest_iot.tasks.detection import box_iou

    def arrays(d):
        boxes = np.asarray(getattr(d, "boxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)
        scores = np.asarray(getattr(d, "scores", np.zeros(0)), np.float64).reshape(-1)
        classes = np.asarray(getattr(d, "classes", np.zeros(0)), np.int64).reshape(-1)
        return boxes, scores, classes

    out = np.zeros(len(float_outputs))
    for i, (fd, td) in enumerate(zip(float_outputs, twin_outputs)):  # a few boxes per frame
        (fb, fs, fc), (tb, ts, tc) = arrays(fd), arrays(td)
        iou = box_iou(fb, tb) * (fc[:, None] == tc[None, :])  # (kf, kt), 0 across classes
        gaps = []
        if (fs >= score_threshold).any():
            best = iou.max(axis=1) if tb.shape[0] else np.zeros(fb.shape[0])
            gaps.append((1.0 - best)[fs >= score_threshold].max())
        if (ts >= score_threshold).any():
            best = iou.max(axis=0) if fb.shape[0] else np.zeros(tb.shape[0])
            gaps.append((1.0 - best)[ts >= score_threshold].max())
        out[i] = max(gaps, default=0.0)
    return out


def _extent(detections) -> tuple[int, int]:
    """(h, w) covering every box, so clipping to it changes nothing."""
    h = w = 1.0
    for d in detections:
        b = np.asarray(getattr(d, "boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        if b.size and np.isfinite(b).all():
            w = max(w, float(b[:, [0, 2]].max()))
            h = max(h, float(b[:, [1, 3]].max()))
    return int(math.ceil(h)) + 1, int(math.ceil(w)) + 1


def option_names(task: str) -> frozenset:
    """The options the differential relation of ``task`` takes (empty for an unknown task)."""
    return frozenset(_OPTIONS.get(task, ()))


def make_differential_oracle(task: str, **options) -> DifferentialOracle:
    """The differential relation for a model card's task.

    Options (keyword, optional; None is ignored so a caller may pass every option it knows):

    * steering: ``delta`` (0.02, output units);
    * classification: ``classes``, ``max_confidence_drop`` (None: only the top-1 class counts);
    * detection: ``score_threshold`` (0.5), ``iou_threshold`` (0.5), ``classes``.
    """
    if task not in _OPTIONS:
        raise ConfigError(f"unknown task {task!r} for the differential relation; choose one of "
                          f"{', '.join(sorted(_OPTIONS))}")
    opts = {k: v for k, v in options.items() if v is not None}
    unknown = set(opts) - _OPTIONS[task]
    if unknown:
        raise ConfigError(f"unknown option(s) for the {task} differential relation: {', '.join(sorted(unknown))}; "
                          f"valid: {', '.join(sorted(_OPTIONS[task]))}")
    return DifferentialOracle(task, **opts)


def differential_oracle_for(card, **options) -> DifferentialOracle:
    """The differential relation for a model card: its task, and its class names where the relation
    names classes (what the campaign and the pytest helper both use)."""
    opts = dict(options)
    if "classes" in _OPTIONS.get(card.task, ()):
        opts.setdefault("classes", list(card.classes) or None)
    return make_differential_oracle(card.task, **opts)
