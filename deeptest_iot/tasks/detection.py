"""Detection: boxes with scores and classes per frame (cars, pedestrians, signs).

**Relation**: reference boxes, mapped through the chain's 3x3 matrix for geometric transforms (they
stay put under photometric ones), are matched to the transformed detections by IoU; a confident
object that vanishes, a confident object that appears, or a class change is a finding. Raw network
outputs are decoded by the card's ``decoder`` (``deeptest_iot.tasks.boxes.DECODERS``) and mapped
back to frame pixels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from deeptest_iot.errors import ConfigError, InputError, OutputError
from deeptest_iot.tasks.base import (Task, Verdicts, make_verdicts, number, per_chain,
                                     per_input_chains)
from deeptest_iot.tasks.base import frame_size as frame_size_of
from deeptest_iot.transforms import map_boxes

#: A detection is "confident" at the usual detector cut-off (the model card's score_threshold).
DEFAULT_SCORE_THRESHOLD = 0.5
#: PASCAL VOC / COCO AP50 matching criterion.
DEFAULT_IOU_THRESHOLD = 0.5
#: An expected box must keep this share of its area inside the frame to be required after a
#: geometric transform; boxes that keep less may be matched but are not reported as vanished.
DEFAULT_MIN_VISIBLE = 0.5


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
    hull = map_boxes(b, matrix, clip=False)
    clipped = map_boxes(hull, None, (h, w))
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
        self.score_threshold = number("score_threshold", score_threshold, low=0.0, high=1.0)
        self.iou_threshold = number("iou_threshold", iou_threshold, low=0.0, high=1.0, low_open=True)
        self.min_visible = number("min_visible", min_visible, low=0.0, high=1.0)
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
        h, w = frame_size_of(frame_size)
        ref = [_detections("reference outputs", d, i) for i, d in enumerate(ref_list)]
        out = [_detections("outputs", d, i) for i, d in enumerate(out_list)]
        matrices = per_chain(per_input_chains(transforms, n), lambda c: c.matrix(h, w))

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
        return make_verdicts(self.relation, failed, count.astype(np.float64), threshold, details)

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


def map_detections_to_frame(det, frame_hw: tuple[int, int], card):
    """Boxes from network-input pixels back to frame pixels (undo the card's crop and resize)."""
    from deeptest_iot.model.core import crop_box

    y0, y1, x0, x1 = crop_box(frame_hw, card.crop)
    ih, iw = card.input_size
    boxes = np.asarray(det.boxes, np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]] * ((x1 - x0) / iw) + x0
    boxes[:, [1, 3]] = boxes[:, [1, 3]] * ((y1 - y0) / ih) + y0
    return type(det)(boxes=boxes, scores=det.scores, classes=det.classes)


def _box_labels(output: dict, class_names: Sequence[str]) -> list[str]:
    classes = list(output.get("classes") or [])
    scores = list(output.get("scores") or [])
    labels = []
    for k, cls in enumerate(classes):
        name = class_names[int(cls)] if isinstance(cls, int) and 0 <= cls < len(class_names) else str(cls)
        labels.append(f"{name} {float(scores[k]):.2f}" if k < len(scores) else name)
    return labels


def expected_box_list(finding: dict):
    """The expected (mapped) boxes a finding records: the oracle's list, or {"boxes": [...]}."""
    expected = (finding.get("details") or {}).get("expected")
    if isinstance(expected, dict):
        expected = expected.get("boxes")
    return expected if isinstance(expected, list) else None


class DetectionTask(Task):
    name = "detection"
    description = "boxes per frame; confident objects must stay where the transform moved them"
    oracle_class = DetectionOracle
    oracle_options = frozenset({"score_threshold", "iou_threshold", "min_visible", "classes", "box_mapper"})

    def oracle_for(self, card, reference=None, labels=None, **options):
        """The card's score_threshold decides which boxes are decoded; the oracle's own (0.5) which of
        them are confident enough that losing or gaining one is a finding."""
        options.setdefault("classes", list(card.classes) or None)
        return self.make_oracle(**options)

    def rule(self, config, labelled):
        return "the same confident objects must be found in the same places with the same classes (IoU match)"

    def decode(self, raw, mut, frame_hw):
        from deeptest_iot.tasks.boxes import DECODERS

        card = mut.card
        for arr in raw:
            mut.check_finite(arr)
        if card.decoder not in DECODERS:
            raise ConfigError(f"model card: unknown detection decoder {card.decoder!r}; "
                              f"known: {', '.join(sorted(DECODERS))}")
        dets = DECODERS[card.decoder](raw, input_hw=tuple(card.input_size), score_threshold=card.score_threshold)
        return [map_detections_to_frame(d, frame_hw, card) for d in dets]

    def show(self, value):
        if isinstance(value, dict) and "boxes" in value:
            classes = value.get("classes") or []
            return f"{len(value.get('boxes') or [])} boxes" + (f" {sorted(classes)}" if classes else "")
        return super().show(value)

    def export_target(self, finding):
        """The reference boxes mapped through the chain, as the oracle recorded them in
        ``details.expected`` (one per box of ``before``, in order, so ``before.classes`` are their
        classes); boxes with no area left are dropped."""
        details = finding.get("details") or {}
        expected = details.get("expected")
        before = finding.get("before") if isinstance(finding.get("before"), dict) else {}
        if isinstance(expected, dict):  # {"boxes": [...], "classes": [...]}
            boxes, classes = expected.get("boxes"), expected.get("classes", before.get("classes"))
        else:
            boxes, classes = expected, before.get("classes")
        if not isinstance(boxes, list):
            raise InputError(f"finding {finding['id']}: no details.expected boxes recorded, so the boxes the "
                             "transformed frame should have had are unknown; rerun the campaign with a version "
                             "that records the oracle's details")
        classes = list(classes or [])
        if len(classes) != len(boxes):
            raise InputError(f"finding {finding['id']}: {len(boxes)} expected boxes but {len(classes)} classes")
        kept_boxes, kept_classes = [], []
        for box, cls in zip(boxes, classes):
            x0, y0, x1, y1 = (float(v) for v in box)
            if x1 > x0 and y1 > y0:
                kept_boxes.append([x0, y0, x1, y1])
                kept_classes.append(int(cls))
        return kept_boxes, kept_classes

    def export_files(self, findings, targets):
        import json

        flat = [(k, box, cls) for k, (boxes, classes) in enumerate(targets) for box, cls in zip(boxes, classes)]
        arrays = {"boxes": np.array([b for _, b, _ in flat], np.float32).reshape(-1, 4),
                  "box_classes": np.array([c for _, _, c in flat], np.int64),
                  "box_image": np.array([k for k, _, _ in flat], np.int64)}
        records = [{"id": f["id"], "image": f"images/{f['id']}.png", "boxes": boxes, "classes": classes,
                    "transform": f["transform"], "seed_id": f.get("seed_id")}
                   for f, (boxes, classes) in zip(findings, targets)]
        return arrays, {"boxes.json": json.dumps(records, indent=2, allow_nan=False) + "\n"}

    def annotate(self, original, transformed, finding, *, scales, units, class_names, gain):
        """Boxes before / after, and the expected boxes thin yellow on the transformed frame."""
        from deeptest_iot.tasks.drawing import AFTER_BGR, BEFORE_BGR, EXPECTED_BGR, draw_boxes

        before, after = finding.get("before"), finding.get("after")
        if not (isinstance(before, dict) and isinstance(after, dict)):
            return super().annotate(original, transformed, finding, scales=scales, units=units,
                                    class_names=class_names, gain=gain)
        names = list(class_names or [])
        expected = expected_box_list(finding)
        if expected is not None:
            draw_boxes(transformed, expected, scales[1], EXPECTED_BGR, thickness=1)
        draw_boxes(original, before.get("boxes"), scales[0], BEFORE_BGR, _box_labels(before, names))
        draw_boxes(transformed, after.get("boxes"), scales[1], AFTER_BGR, _box_labels(after, names))

    def legend(self, gain):
        from deeptest_iot.tasks.drawing import AFTER_CSS, BEFORE_CSS, EXPECTED_CSS

        return (f'<span style="color:{BEFORE_CSS}">&#9633; boxes before</span> '
                f'<span style="color:{AFTER_CSS}">&#9633; boxes after</span> '
                f'<span style="color:{EXPECTED_CSS};background:#444">&#9633; expected (mapped) boxes</span>')


TASK = DetectionTask()
__all__ = ["DEFAULT_IOU_THRESHOLD", "DEFAULT_MIN_VISIBLE", "DEFAULT_SCORE_THRESHOLD", "DetectionOracle",
           "DetectionTask", "TASK", "box_iou", "expected_boxes", "map_detections_to_frame"]
