"""Object detections: the ``Detections`` record, decoders of raw network outputs, IoU, NMS and mAP.

A detector's raw outputs are turned into boxes by a decoder named in its model card
(``decoder = "grid"``); ``DECODERS`` maps names to functions with the signature

    decode(raw_outputs: list[np.ndarray], *, input_hw: tuple[int, int], score_threshold: float)
        -> list[Detections]          # one per input, boxes in network-input pixels

``deeptest_iot.model.core`` then maps the boxes back to frame pixels (undoing the card's crop/resize).

The ``grid`` format (a YOLO-v1 / centre-point style single-shot head, one object per cell)
------------------------------------------------------------------------------------------
``raw_outputs[0]`` has shape (N, GH, GW, 5 + C); the stride is input_hw / (GH, GW). Per cell:

* channel 0: objectness probability in [0, 1];
* channels 1, 2: box centre x, y inside the cell, as fractions of the cell in [0, 1];
* channels 3, 4: square roots of box width / height as fractions of the input width / height;
* channels 5 .. 5+C-1: class probabilities.

A cell's score is objectness * max class probability, its class the argmax; boxes are clipped
to the input. Cells scoring at least
``score_threshold`` are kept, then class-wise non-maximum suppression (IoU > 0.45) removes
duplicates. ``encode_grid`` builds the training target of this format from ground-truth boxes.

mAP@0.5 follows PASCAL VOC 2010+: per class, detections of all images sorted by score; a detection
is a true positive when its best-IoU ground-truth box of the same class (in its image) has IoU >= 0.5
and has not been matched by a higher-scoring detection; AP is the area under the precision-recall
curve after making precision monotonically non-increasing (all points, no 11-point sampling);
mAP is the mean over classes that have at least one ground-truth box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deeptest_iot.errors import ConfigError, OutputError


@dataclass
class Detections:
    """Detections in one image: boxes (k, 4) xyxy float32 pixels, scores (k,) float32, classes (k,) int64."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.classes = np.asarray(self.classes, np.int64).reshape(-1)
        if not len(self.boxes) == len(self.scores) == len(self.classes):
            raise OutputError(f"detections need as many boxes, scores and classes; got {len(self.boxes)}, "
                              f"{len(self.scores)}, {len(self.classes)}")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def select(self, keep) -> "Detections":
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])

    def to_dict(self) -> dict:
        return {"boxes": self.boxes.round(2).tolist(), "scores": self.scores.round(4).tolist(),
                "classes": self.classes.tolist()}


def box_area(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union (n, m) of xyxy boxes a (n, 4) and b (m, 4); 0 for empty unions."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45, classes=None,
        max_detections: int = 300) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first. With ``classes``,
    boxes of different classes never suppress each other. A box is dropped when its IoU with a
    kept box is greater than ``iou_threshold``. Ties in score keep the lower index first."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    order = np.lexsort((np.arange(len(scores)), -scores))
    if len(order) == 0:
        return np.zeros(0, np.int64)
    overlaps = iou(boxes[order], boxes[order])
    if classes is not None:
        c = np.asarray(classes).reshape(-1)[order]
        overlaps = np.where(c[:, None] == c[None, :], overlaps, 0.0)
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        if len(keep) >= max_detections:
            break
        suppressed |= overlaps[i] > iou_threshold
    return np.asarray(keep, np.int64)


# ---------------------------------------------------------------------------------------------
# the "grid" format


def decode_grid(raw_outputs, *, input_hw, score_threshold: float, iou_threshold: float = 0.45) -> list:
    """Decode the ``grid`` format (module docstring) into one ``Detections`` per input."""
    if not raw_outputs:
        raise OutputError("grid decoder: the model gave no outputs")
    grid = np.asarray(raw_outputs[0], np.float64)
    if grid.ndim != 4 or grid.shape[-1] < 6:
        raise OutputError(f"grid decoder: expected an output of shape (N, GH, GW, 5 + classes), got {grid.shape}")
    n, gh, gw, ch = grid.shape
    ih, iw = input_hw
    sy, sx = ih / gh, iw / gw
    probs = grid[..., 5:]
    cls = probs.argmax(-1)
    score = grid[..., 0] * probs.max(-1)
    cy, cx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    xc = (cx + np.clip(grid[..., 1], 0, 1)) * sx
    yc = (cy + np.clip(grid[..., 2], 0, 1)) * sy
    bw = np.clip(grid[..., 3], 0, None) ** 2 * iw
    bh = np.clip(grid[..., 4], 0, None) ** 2 * ih
    boxes = np.stack([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], -1)
    boxes = np.clip(boxes, 0, [iw, ih, iw, ih])  # boxes end at the input's edges
    out = []
    for i in range(n):
        m = score[i] >= score_threshold
        b, s, c = boxes[i][m], score[i][m], cls[i][m]
        keep = nms(b, s, iou_threshold, classes=c)
        out.append(Detections(b[keep], s[keep], c[keep]))
    return out


def encode_grid(boxes, classes, *, input_hw, grid_hw, n_classes: int) -> np.ndarray:
    """Training target (GH, GW, 5 + C) of the ``grid`` format for one image's boxes (input pixels).
    A box goes to the cell holding its centre; when two share a cell the larger box wins."""
    gh, gw = grid_hw
    ih, iw = input_hw
    target = np.zeros((gh, gw, 5 + n_classes), np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1)
    order = np.argsort(box_area(boxes), kind="stable")  # small first, so larger boxes overwrite
    for j in order:
        x0, y0, x1, y1 = boxes[j]
        xc, yc = (x0 + x1) / 2 * gw / iw, (y0 + y1) / 2 * gh / ih
        col, row = min(int(xc), gw - 1), min(int(yc), gh - 1)
        if col < 0 or row < 0:
            continue
        target[row, col, :5] = (1.0, xc - col, yc - row, np.sqrt((x1 - x0) / iw), np.sqrt((y1 - y0) / ih))
        target[row, col, 5:] = 0.0
        target[row, col, 5 + int(classes[j])] = 1.0
    return target


DECODERS = {"grid": decode_grid}
"""Decoder name (model card ``decoder``) -> function; see the module docstring for the signature."""


def get_decoder(name: str):
    if name not in DECODERS:
        raise ConfigError(f"unknown detection decoder {name!r}; known: {', '.join(sorted(DECODERS))}")
    return DECODERS[name]


# ---------------------------------------------------------------------------------------------
# evaluation


def match(det: Detections, gt_boxes, gt_classes, iou_threshold: float = 0.5) -> np.ndarray:
    """For each detection (in the given order), the index of the ground-truth box it matches, or -1.
    VOC rule, detections taken by descending score: the best-IoU ground truth of the same class,
    if its IoU >= threshold and no higher-scoring detection took it."""
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes).reshape(-1)
    out = np.full(len(det), -1, np.int64)
    if len(det) == 0 or len(gt_boxes) == 0:
        return out
    ov = iou(det.boxes, gt_boxes)
    ov[det.classes[:, None] != gt_classes[None, :]] = -1.0
    taken = np.zeros(len(gt_boxes), bool)
    for i in np.lexsort((np.arange(len(det)), -det.scores)):
        j = int(ov[i].argmax())
        if ov[i, j] >= iou_threshold and not taken[j]:
            taken[j] = True
            out[i] = j
    return out


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the PR curve with precision made non-increasing (VOC 2010+, all points)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    idx = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))


def mean_average_precision(detections, gt_boxes, gt_classes, iou_threshold: float = 0.5,
                           n_classes: int | None = None) -> dict:
    """mAP over images: ``detections`` a list of Detections, ``gt_boxes`` / ``gt_classes`` lists of
    (k, 4) / (k,) arrays in the same pixel coordinates. Returns {"map": float, "ap": {class: AP},
    "gt": {class: count}}; classes without ground truth are left out of the mean (and of "ap")."""
    if not len(detections) == len(gt_boxes) == len(gt_classes):
        raise ConfigError(f"mAP needs one detection list per image: got {len(detections)} detections, "
                          f"{len(gt_boxes)} box lists, {len(gt_classes)} class lists")
    all_gt = np.concatenate([np.asarray(c, np.int64).reshape(-1) for c in gt_classes]) if gt_classes else np.zeros(0)
    if n_classes is None:
        det_max = max((int(d.classes.max()) for d in detections if len(d)), default=-1)
        n_classes = int(max(all_gt.max(initial=-1), det_max)) + 1
    tp_parts, score_parts, cls_parts = [], [], []
    for det, gb, gc in zip(detections, gt_boxes, gt_classes):
        m = match(det, gb, gc, iou_threshold)
        tp_parts.append(m >= 0)
        score_parts.append(det.scores)
        cls_parts.append(det.classes)
    tp = np.concatenate(tp_parts) if tp_parts else np.zeros(0, bool)
    scores = np.concatenate(score_parts) if score_parts else np.zeros(0)
    classes = np.concatenate(cls_parts) if cls_parts else np.zeros(0, np.int64)
    ap, counts = {}, {}
    for c in range(n_classes):
        n_gt = int(np.sum(all_gt == c))
        if n_gt == 0:
            continue
        sel = classes == c
        order = np.argsort(-scores[sel], kind="stable")
        hits = tp[sel][order]
        ctp = np.cumsum(hits)
        cfp = np.cumsum(~hits)
        recall = ctp / n_gt
        precision = ctp / np.maximum(ctp + cfp, 1)
        ap[c] = average_precision(recall, precision)
        counts[c] = n_gt
    return {"map": float(np.mean(list(ap.values()))) if ap else 0.0, "ap": ap, "gt": counts}
