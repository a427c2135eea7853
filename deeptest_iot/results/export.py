"""Export a campaign's findings as a training set: the transformed frames plus the answer the
model should have given on them (DeepTest retrained on its synthesised images).

The label each transformed frame should have had:

- **steering**: the oracle's ``details.expected`` when the finding records it; otherwise the seed's
  label when the finding has one, else the model's output on the original frame (``before``);
  in both fallbacks negated when the chain mirrors the frame left-right an odd number of times
  (DeepTest's flip relation). The ``source`` column says which rule gave each label.
- **classification**: the seed's label when the finding has one (an int), else the class the model
  gave the original frame (``before.label``): the relation says the class must not change.
- **detection**: the reference boxes mapped through the chain, as recorded by the oracle in
  ``details.expected`` (one box per box of ``before``, in the same order, so ``before.classes`` are
  their classes). Boxes with no area left after mapping are dropped. A detection finding without
  ``details.expected`` cannot be exported (its mapped boxes are unknown) and raises InputError.

Layout of ``--to DIR``::

    images/<finding id>.png   the transformed frames, as PNG
    labels.csv                steering and classification: id,image,label,source,transform,seed_id,violation
    boxes.json                detection: [{"id", "image", "boxes", "classes", "transform", "seed_id"}]
    findings.npz              everything in one file, no pickled objects (np.load works without allow_pickle)

``findings.npz`` arrays: ``images`` (N, H, W, 3) uint8 RGB; ``ids`` and ``transforms`` (N,) str;
steering ``labels`` (N,) float32 and ``sources`` (N,) str; classification ``labels`` (N,) int64;
detection ``boxes`` (M, 4) float32 xyxy frame pixels, ``box_classes`` (M,) int64 and ``box_image``
(M,) int64 (the row of ``images`` each box belongs to).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deeptest_iot.errors import InputError, UnsupportedError
from deeptest_iot.fileio import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text
from deeptest_iot.tasks.oracles import FLIP_NAMES
from deeptest_iot.results.reader import RunFolder, open_run


@dataclass(frozen=True)
class ExportResult:
    """What was written: how many frames, for which task, and where."""

    count: int
    task: str
    folder: Path
    npz: Path


def mirrors(chain: list) -> bool:
    """Whether a chain (finding["chain"]) mirrors the frame left-right an odd number of times.

    A link mirrors when its name is one of the oracles' FLIP_NAMES and its ``flip`` parameter, when
    present, is true (the ``hflip`` transform with ``flip=False`` is the identity)."""
    count = 0
    for link in chain or []:
        if isinstance(link, dict) and str(link.get("name", "")).lower() in FLIP_NAMES:
            if bool((link.get("params") or {}).get("flip", True)):
                count += 1
    return count % 2 == 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def steering_target(finding: dict) -> tuple[float, str]:
    """The steering angle the transformed frame should have had, and the rule that gave it."""
    expected = (finding.get("details") or {}).get("expected")
    if _is_number(expected):
        return float(expected), "oracle expected"
    sign = -1.0 if mirrors(finding.get("chain")) else 1.0
    suffix = ", negated (flip)" if sign < 0 else ""
    if _is_number(finding.get("label")):
        return sign * float(finding["label"]), "seed label" + suffix
    if _is_number(finding.get("before")):
        return sign * float(finding["before"]), "model on original" + suffix
    raise InputError(f"finding {finding['id']}: neither a label nor a numeric 'before' to export a steering label from")


def classification_target(finding: dict) -> tuple[int, str]:
    """The class the transformed frame should have had, and the rule that gave it."""
    label = finding.get("label")
    if isinstance(label, dict) and isinstance(label.get("label"), int):
        return int(label["label"]), "seed label"
    if isinstance(label, int) and not isinstance(label, bool):
        return label, "seed label"
    before = finding.get("before")
    if isinstance(before, dict) and isinstance(before.get("label"), int):
        return int(before["label"]), "model on original"
    raise InputError(f"finding {finding['id']}: no class label and no 'before.label' to export")


def detection_target(finding: dict) -> tuple[list[list[float]], list[int]]:
    """The mapped boxes (xyxy frame pixels) and classes the transformed frame should have had."""
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


def _read_rgb(run: RunFolder, finding: dict) -> tuple[np.ndarray, bytes]:
    relative = (finding.get("images") or {}).get("transformed")
    if not relative:
        raise InputError(f"finding {finding['id']}: no transformed image path recorded")
    path = run.resolve(relative)
    try:
        data = path.read_bytes()
    except OSError:
        raise InputError(f"finding {finding['id']}: transformed image {path} cannot be read") from None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"finding {finding['id']}: {path} is not a readable image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if path.suffix.lower() != ".png":  # keep the layout uniform: always PNG
        ok, buf = cv2.imencode(".png", bgr)
        data = buf.tobytes()
    return rgb, data


def export_findings(out_dir: str | Path, to_dir: str | Path) -> ExportResult:
    """Write the findings of campaign folder ``out_dir`` as a training set in ``to_dir``."""
    run = open_run(out_dir)
    task = run.task
    if task not in ("steering", "classification", "detection"):
        raise UnsupportedError(f"cannot export findings of task {task!r}")
    to_dir = Path(to_dir)
    findings = sorted(run.findings, key=lambda f: str(f["id"]))
    images, rows, box_records = [], [], []
    for f in findings:  # labels first: a finding that cannot be exported fails before any write
        if task == "steering":
            rows.append(steering_target(f))
        elif task == "classification":
            rows.append(classification_target(f))
        else:
            box_records.append(detection_target(f))
    shapes = set()
    for f in findings:
        rgb, png = _read_rgb(run, f)
        shapes.add(rgb.shape)
        images.append((f, rgb, png))
    if len(shapes) > 1:
        raise UnsupportedError(f"{out_dir}: transformed frames have different sizes {sorted(shapes)}; the .npz needs "
                               "one size")
    (to_dir / "images").mkdir(parents=True, exist_ok=True)
    for f, _, png in images:
        atomic_write_bytes(to_dir / "images" / f"{f['id']}.png", png)

    ids = np.array([str(f["id"]) for f in findings], dtype=str)
    arrays: dict[str, np.ndarray] = {
        "images": (np.stack([rgb for _, rgb, _ in images]) if images else np.zeros((0, 0, 0, 3), np.uint8)),
        "ids": ids,
        "transforms": np.array([str(f["transform"]) for f in findings], dtype=str),
    }
    if task == "detection":
        flat = [(k, box, cls) for k, (boxes, classes) in enumerate(box_records) for box, cls in zip(boxes, classes)]
        arrays["boxes"] = np.array([b for _, b, _ in flat], np.float32).reshape(-1, 4)
        arrays["box_classes"] = np.array([c for _, _, c in flat], np.int64)
        arrays["box_image"] = np.array([k for k, _, _ in flat], np.int64)
        atomic_write_json(to_dir / "boxes.json", [
            {"id": f["id"], "image": f"images/{f['id']}.png", "boxes": boxes, "classes": classes,
             "transform": f["transform"], "seed_id": f.get("seed_id")}
            for f, (boxes, classes) in zip(findings, box_records)])
    else:
        dtype = np.float32 if task == "steering" else np.int64
        arrays["labels"] = np.array([label for label, _ in rows], dtype)
        arrays["sources"] = np.array([source for _, source in rows], dtype=str)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "image", "label", "source", "transform", "seed_id", "violation"])
        for f, (label, source) in zip(findings, rows):
            writer.writerow([f["id"], f"images/{f['id']}.png", repr(float(label)) if task == "steering" else label,
                             source, f["transform"], f.get("seed_id", ""), f["violation"]])
        atomic_write_text(to_dir / "labels.csv", buf.getvalue())
    npz = to_dir / "findings.npz"
    atomic_write(npz, lambda fobj: np.savez_compressed(fobj, **arrays))
    return ExportResult(count=len(findings), task=task, folder=to_dir, npz=npz)
