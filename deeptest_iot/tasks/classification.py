"""Classification: class probabilities per frame (a traffic-sign classifier, a scene classifier).

**Relation**: the reference top-1 class must stay on top (optionally its probability may drop by at
most ``max_confidence_drop``). It is metamorphic: the transformed frame must get the class the
model gave the seed, whether or not that class is the seed's label (labels are recorded, not used).
A tie at the top between the reference class and another counts as preserved.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from deeptest_iot.errors import InputError, OutputError
from deeptest_iot.tasks.base import Task, Verdicts, finite, labels_csv, make_verdicts, number


def _matrix2d(name: str, values, n: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OutputError(f"{name} must be numbers: {exc}") from None
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise OutputError(f"{name} must have shape (N, classes), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise OutputError(f"{name} has {arr.shape[0]} rows, expected {n} (one per input)")
    return finite(name, arr)


class ClassificationOracle:
    """Top-1 label preserved; optionally the top-1 probability may drop by at most a bound."""

    relation = "classification"

    def __init__(self, classes: Sequence[str] | None = None, max_confidence_drop: float | None = None):
        self.classes = None if classes is None else [str(c) for c in classes]
        self.max_confidence_drop = (None if max_confidence_drop is None
                                    else number("max_confidence_drop", max_confidence_drop, low=0.0, high=1.0))

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
        return make_verdicts(self.relation, failed, violation, threshold, details)


def as_probabilities(arr: np.ndarray, mode: str) -> np.ndarray:
    """Softmax when asked, or in "auto" mode when rows are not already probability vectors."""
    if mode == "identity":
        return arr
    is_prob = ((arr >= 0).all() and (arr <= 1).all() and np.allclose(arr.sum(axis=1), 1.0, atol=1e-3))
    if mode == "softmax" or (mode == "auto" and not is_prob):
        z = arr - arr.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    return arr


def class_text(output: Any) -> str:
    """A recorded class output ({"name", "confidence"}) as text."""
    if isinstance(output, dict):
        name = output.get("name", output.get("label", "?"))
        conf = output.get("confidence")
        return f"{name} {float(conf):.2f}" if conf is not None else str(name)
    return str(output)


class ClassificationTask(Task):
    name = "classification"
    description = "one class per frame; the top-1 class must survive a change of weather or light"
    oracle_class = ClassificationOracle
    oracle_options = frozenset({"classes", "max_confidence_drop"})
    generated_kind = "generated sign crops"

    def oracle_for(self, card, reference=None, labels=None, **options):
        options.setdefault("classes", list(card.classes) or None)
        return self.make_oracle(**options)

    def seed_labels(self, seeds, card=None):
        """Class indices into the card's classes when the seeds have class labels of the same classes
        (recorded in findings and used to tell seeds the model already gets wrong; never judged).
        Labels of other classes (generated sign crops for a model of other classes) are not used."""
        labels = getattr(seeds, "labels", None)
        if labels is None or getattr(seeds, "task", None) != "classification":
            return None
        classes = tuple(card.classes) if card is not None else ()
        names = tuple(getattr(seeds, "class_names", ()) or ())
        if np.asarray(labels).dtype == object:  # names: mapped to the card's classes
            return seeds.class_indices(classes) if classes else None
        if names and classes and names != classes:
            return None
        return np.asarray(labels).reshape(-1)

    def seed_failures(self, oracle, reference, labels, frame_hw):
        """Seeds whose top-1 class is not their label."""
        if labels is None:
            return None
        return np.asarray(reference).argmax(axis=1) != np.asarray(labels).reshape(-1)

    def health(self, reference, labels):
        probs = np.asarray(reference, np.float64)
        if len(probs) > 4 and probs.shape[1] > 1 and len(set(probs.argmax(axis=1).tolist())) == 1 \
                and float(probs.std(axis=0).max()) < 1e-3:
            return [f"it gives every one of the {len(probs)} seeds the same class with the same confidence: a "
                    "model that ignores its input breaks no relation; check the model and its card"]
        return []

    def rule(self, config, labelled):
        drop = (config or {}).get("max_confidence_drop")
        extra = f" and its confidence must not drop by more than {drop}" if drop is not None else ""
        return f"the top-1 class must stay the same{extra}"

    def decode(self, raw, mut, frame_hw):
        arr = mut.check_finite(raw[mut.output_index(raw)])
        arr = arr.reshape(len(arr), -1).astype(np.float64)
        return as_probabilities(arr, mut.card.probabilities)

    def show(self, value):
        """A recorded class as "name (confidence)"."""
        if isinstance(value, dict) and "name" in value:
            conf = value.get("confidence")
            return f"{value['name']}" + (f" ({conf:.2f})" if isinstance(conf, (int, float)) else "")
        return super().show(value)

    def generated_seeds(self, n, seed, height, width):
        """Sign crops (a classifier reads crops, not whole road scenes), square at the larger side."""
        from deeptest_iot.data.scenes import SIGN_CLASSES, sign_crops
        from deeptest_iot.data.seeds import SeedSet

        images, labels = sign_crops(n, seed=seed, size=max(height, width))
        return SeedSet(ids=[f"sign-{seed}-{i}" for i in range(len(images))], images=images, labels=labels,
                       task="classification", class_names=SIGN_CLASSES)

    def export_target(self, finding):
        """The seed's label when the finding has one, else the class the model gave the original
        frame: the relation says the class must not change."""
        label = finding.get("label")
        if isinstance(label, dict) and isinstance(label.get("label"), int):
            return int(label["label"]), "seed label"
        if isinstance(label, int) and not isinstance(label, bool):
            return label, "seed label"
        before = finding.get("before")
        if isinstance(before, dict) and isinstance(before.get("label"), int):
            return int(before["label"]), "model on original"
        raise InputError(f"finding {finding['id']}: no class label and no 'before.label' to export")

    def export_files(self, findings, targets):
        arrays = {"labels": np.array([label for label, _ in targets], np.int64),
                  "sources": np.array([source for _, source in targets], dtype=str)}
        return arrays, {"labels.csv": labels_csv(findings, targets, lambda v: v)}

    def annotate(self, original, transformed, finding, *, scales, units, class_names, gain):
        from deeptest_iot.tasks.drawing import AFTER_BGR, BEFORE_BGR, text

        text(original, class_text(finding.get("before")), (6, 16), BEFORE_BGR)
        text(transformed, class_text(finding.get("after")), (6, 16), AFTER_BGR)

    def legend(self, gain):
        from deeptest_iot.tasks.drawing import AFTER_CSS, BEFORE_CSS

        return (f'<span style="color:{BEFORE_CSS}">before</span> / <span style="color:{AFTER_CSS}">after</span>: '
                'predicted class and confidence')


TASK = ClassificationTask()
__all__ = ["ClassificationOracle", "ClassificationTask", "TASK", "as_probabilities", "class_text"]
