"""Seed frames for a campaign: a folder of images with optional labels, or generated scenes.

Accepted inputs (every problem is an ``InputError`` naming the file, and the line when there is one):

Images
    ``folder`` is searched recursively for ``.png``, ``.jpg`` and ``.jpeg`` files (any case). Each
    image's id is its path relative to the folder, with forward slashes (``center/123.jpg``).
    Grey and RGBA images become RGB. Images whose size differs from the first image's (in sorted
    id order, or in CSV order with labels) are resized to that size (``cv2.INTER_AREA`` when
    shrinking, bilinear when enlarging) and their boxes are scaled with them.

Steering labels (``labels=``), a CSV file, comma separated, UTF-8
    * With a header row: an id column named ``filename``, ``file``, ``image``, ``center``,
      ``path``, ``frame_id`` or ``id``, and an angle column named ``steering_angle``, ``angle``,
      ``steering`` or ``label`` (the first name in these lists that the header has wins; names
      are case-insensitive). This reads the Udacity self-driving-car data: ``frame_id,steering_angle``
      and ``interpolated.csv`` (whose ``frame_id`` names the camera, so ``filename`` comes first).
    * Without a header, 4 or more columns with a number in the 4th: the Udacity simulator's
      ``driving_log.csv`` (center, left, right, steering, throttle, brake, speed); the center image
      is the frame. Note that the simulator's steering is normalised to [-1, 1] with positive = right;
      pass ``angle_scale`` (e.g. ``-math.radians(25)``) to turn it into radians, positive = left.
    An id matches an image by relative path, then by file name, then by file name without
    extension (Udacity frame ids are timestamps; absolute paths from another machine match by
    name). With labels, the seeds are the CSV rows in order; images without a row are not used.
    Angles are multiplied by ``angle_scale`` and otherwise used as given.

Class labels (``classes=``), a CSV with a header: the id column as above and a ``class``,
    ``label``, ``class_id`` or ``category`` column holding class names or integer indices.

Boxes (``boxes=``), a JSON file::

    {"images": {"frame_0001.png": [{"box": [x0, y0, x1, y1], "class": "car"}, ...], ...}}

    (the ``{"images": ...}`` wrapper may be left out). Boxes are in pixels of the image file,
    x0 < x1 and y0 < y1; ``class`` is a name or an integer index. Images without an entry have no
    boxes.

Nothing given: ``generated_seeds`` scenes (``DEFAULT_GENERATED`` frames of scene seed 0, 160x320).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deeptest_iot.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ID_COLUMNS = ("filename", "file", "image", "center", "path", "frame_id", "id")
ANGLE_COLUMNS = ("steering_angle", "angle", "steering", "label")
CLASS_COLUMNS = ("class", "label", "class_id", "category")
DEFAULT_GENERATED = 100
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class SeedSet:
    """Seed frames and what is known about them.

    ``labels`` is (N,) float32 steering angles, or (N,) class labels (int64 indices, or an object
    array of names), or None. ``boxes`` is a list of (k, 4) float32 xyxy pixel arrays (or None),
    with the box classes in ``box_classes`` (int64 arrays, or object arrays of names)."""

    ids: list
    images: np.ndarray
    labels: np.ndarray | None = None
    boxes: list | None = None
    box_classes: list | None = None
    task: str | None = None  # "steering", "classification" or None (from the labels given)
    class_names: tuple = field(default_factory=tuple)  # names behind integer classes, when known
    notes: list = field(default_factory=list)  # what loading left out or changed, for the user
    origin: np.ndarray | None = None  # each seed's position in the set it was taken from (subset)

    def __post_init__(self):
        if self.origin is None:
            self.origin = np.arange(len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices) -> "SeedSet":
        """The seeds at ``indices``, in that order, with what is known about them."""
        idx = np.asarray(indices, np.int64)
        pick = (lambda xs: None if xs is None else [xs[int(i)] for i in idx])  # noqa: E731
        return SeedSet(ids=[self.ids[int(i)] for i in idx], images=self.images[idx],
                       labels=None if self.labels is None else self.labels[idx], boxes=pick(self.boxes),
                       box_classes=pick(self.box_classes), task=self.task, class_names=self.class_names,
                       notes=list(self.notes), origin=self.origin[idx])

    def class_indices(self, names) -> np.ndarray:
        """Class labels as indices into ``names`` (a model card's classes)."""
        return _to_indices(self.labels, names, "class labels")

    def box_class_indices(self, names) -> list:
        return [_to_indices(c, names, "box classes") for c in (self.box_classes or [])]


def _to_indices(values, names, what):
    values = np.asarray(values)
    if values.dtype != object:
        return values.astype(np.int64)
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted({v for v in values if v not in index})
    if unknown:
        raise InputError(f"{what}: unknown class name(s) {unknown}; the model knows {list(names)}")
    return np.array([index[v] for v in values], np.int64)


def generated_seeds(n: int = DEFAULT_GENERATED, seed: int = 0, height: int = 160, width: int = 320) -> SeedSet:
    """``n`` generated scenes with steering labels, boxes and box classes (indices into CLASSES)."""
    from deeptest_iot.data.scenes import CLASSES, generate

    b = generate(n, seed=seed, height=height, width=width)
    return SeedSet(ids=[f"scene-{seed}-{i}" for i in range(n)], images=b.images, labels=b.steering,
                   boxes=b.boxes, box_classes=b.classes, task="steering", class_names=CLASSES)


def load_seeds(folder=None, labels=None, boxes=None, classes=None, angle_scale: float = 1.0,
               work_size=None, max_seeds: int | None = None) -> SeedSet:
    """Load seed frames (see the module docstring for the formats).

    ``work_size``: None keeps the first image's size; (h, w) resizes every frame to it; a function
    ``(h, w) -> (h, w)`` of the first image's size chooses it. Each frame is decoded and resized on
    its own, so memory holds the seeds at the working size, never a folder of full-size frames.
    ``max_seeds`` keeps that many frames evenly spread over the sequence (consecutive video frames
    are near-duplicates). What was left out is said in ``SeedSet.notes``.
    """
    if folder is None and labels is None and classes is None and boxes is None:
        return generated_seeds()
    if labels is not None and classes is not None:
        raise InputError("give steering labels or class labels, not both")
    if folder is None:
        folder = Path(labels or classes or boxes).parent
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of seed images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no .png or .jpg images found")
    index = _FileIndex(folder, files)

    notes: list[str] = []
    task, label_values = None, None
    if labels is not None:
        chosen, label_values = _read_steering_csv(Path(labels), index, angle_scale, notes)
        task = "steering"
    elif classes is not None:
        chosen, label_values = _read_class_csv(Path(classes), index, notes)
        task = "classification"
    else:
        chosen = files
    if len(chosen) < len(files):
        notes.append(f"{len(files) - len(chosen)} of {len(files)} images in {folder} have no row in "
                     f"{Path(labels or classes).name}: not used")
    if max_seeds is not None and len(chosen) > max_seeds:
        keep = np.unique(np.linspace(0, len(chosen) - 1, max_seeds).round().astype(int))
        notes.append(f"--max-seeds {max_seeds}: {len(keep)} of {len(chosen)} frames used, evenly spread")
        chosen = [chosen[i] for i in keep]
        label_values = None if label_values is None else label_values[keep]
    ids = [index.id_of(p) for p in chosen]
    images, scales = _read_images(chosen, work_size)
    box_list = box_cls = None
    if boxes is not None:
        box_list, box_cls = _read_boxes(Path(boxes), index, ids, scales)
    return SeedSet(ids=ids, images=images, labels=label_values, boxes=box_list, box_classes=box_cls, task=task,
                   notes=notes)


def iter_frames(folder, batch_size: int = 256, work_size=None):
    """The images of ``folder`` (sorted, recursive) in batches (k, H, W, 3), each decoded and resized to
    the working size (as ``load_seeds``) as it is needed: memory holds one batch, not the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no .png or .jpg images found")
    first = frame_size_of(files[0])
    size = first if work_size is None else (work_size(*first) if callable(work_size) else work_size)
    for start in range(0, len(files), batch_size):
        yield _read_images(files[start:start + batch_size], tuple(size))[0]


class _FileIndex:
    """Finds the image a label's id names: relative path, then file name, then stem."""

    def __init__(self, folder: Path, files: list):
        self.folder = folder
        self.rel, self.name, self.stem = {}, {}, {}
        for p in files:
            rel = p.relative_to(folder).as_posix()
            self.rel[rel] = p
            self.name.setdefault(p.name, []).append(p)
            self.stem.setdefault(p.stem, []).append(p)

    def id_of(self, p: Path) -> str:
        return p.relative_to(self.folder).as_posix()

    def find(self, key: str, where: str, missing_ok: bool = False) -> Path | None:
        key = key.strip().replace("\\", "/")
        if key in self.rel:
            return self.rel[key]
        base = key.rsplit("/", 1)[-1]
        for table in (self.name, self.stem):
            hits = table.get(base)
            if hits and len(hits) == 1:
                return hits[0]
            if hits:
                raise InputError(f"{where}: id {key!r} matches several images "
                                 f"({', '.join(self.id_of(h) for h in hits[:3])}); use the relative path")
        if missing_ok:
            return None
        raise InputError(f"{where}: no image for id {key!r} in {self.folder}")


def _read_rows(path: Path):
    if not path.is_file():
        raise InputError(f"{path}: no such labels file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text CSV ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(text.splitlines())
    rows = []
    for row in reader:
        if row and any(c.strip() for c in row):
            rows.append((reader.line_num, [c.strip() for c in row]))
    if not rows:
        raise InputError(f"{path}: empty labels file")
    return rows


def _column(header, names, path, what):
    lower = [h.lower() for h in header]
    for n in names:
        if n in lower:
            return lower.index(n)
    raise InputError(f"{path} line 1: no {what} column; expected one of {', '.join(names)}, found "
                     f"{', '.join(header)}")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _labelled_rows(path: Path, index: _FileIndex, value_columns, notes: list):
    """(line, file, raw value) per row whose id names an image, with duplicate ids refused; rows
    naming no image in the folder (a CSV of a longer recording) are counted in ``notes``."""
    rows = _read_rows(path)
    first_line, header = rows[0]
    if value_columns is ANGLE_COLUMNS and len(header) >= 4 and _is_number(header[3]):
        id_col, val_col, body = 0, 3, rows  # headerless simulator driving_log.csv
    else:
        id_col = _column(header, ID_COLUMNS, path, "id")
        val_col = _column(header, value_columns, path, "label" if value_columns is CLASS_COLUMNS else "angle")
        body = rows[1:]
    if not body:
        raise InputError(f"{path}: a header but no labels")
    seen, out, unused = {}, [], []
    for line, row in body:
        where = f"{path} line {line}"
        if len(row) <= max(id_col, val_col):
            raise InputError(f"{where}: expected at least {max(id_col, val_col) + 1} columns, found {len(row)}")
        p = index.find(row[id_col], where, missing_ok=True)
        if p is None:
            unused.append((line, row[id_col]))
            continue
        if p in seen:
            raise InputError(f"{where}: duplicate id {row[id_col]!r} (first on line {seen[p]})")
        seen[p] = line
        out.append((line, p, row[val_col]))
    if not out:
        line, key = unused[0]
        raise InputError(f"{path}: none of its {len(unused)} row(s) names an image in {index.folder} "
                         f"(line {line}: no image for id {key!r})")
    if unused:
        notes.append(f"{len(unused)} of {len(body)} rows of {path.name} name no image in {index.folder} "
                     f"(first: line {unused[0][0]}, id {unused[0][1]!r}): not used")
    return out


def _read_steering_csv(path: Path, index: _FileIndex, angle_scale: float, notes: list):
    rows = _labelled_rows(path, index, ANGLE_COLUMNS, notes)
    angles = []
    for line, _, raw in rows:
        try:
            a = float(raw)
        except ValueError:
            raise InputError(f"{path} line {line}: steering angle {raw!r} is not a number") from None
        if not math.isfinite(a) or not abs(a * angle_scale) <= FLOAT32_MAX:
            raise InputError(f"{path} line {line}: steering angle {raw!r} is not a finite number"
                             + ("" if not math.isfinite(a) else " a float32 can hold"))
        angles.append(a * angle_scale)
    return [p for _, p, _ in rows], np.asarray(angles, np.float32)


def _read_class_csv(path: Path, index: _FileIndex, notes: list):
    rows = _labelled_rows(path, index, CLASS_COLUMNS, notes)
    values = [raw for _, _, raw in rows]
    for line, _, raw in rows:
        if raw == "":
            raise InputError(f"{path} line {line}: empty class label")
    if all(v.lstrip("-").isdigit() for v in values):
        labels = np.asarray([int(v) for v in values], np.int64)
        if (labels < 0).any():
            line = rows[int(np.argmax(labels < 0))][0]
            raise InputError(f"{path} line {line}: class index must be >= 0")
    else:
        labels = np.asarray(values, dtype=object)
    return [p for _, p, _ in rows], labels


def _read_image(path: Path, target: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """One RGB frame and the file's own size (h, w); with ``target`` (h, w) the frame is decoded at a
    reduced scale when it is much larger (JPEG's fast 1/2, 1/4, 1/8 decoding) and resized to ``target``."""
    try:
        data = np.fromfile(path, np.uint8)  # not cv2.imread: it fails silently on non-ASCII paths
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    flags = cv2.IMREAD_COLOR
    h, w = _header_size(data) if data.size else (0, 0)
    if target is not None:
        if h and w:
            factor = min(h // max(target[0], 1), w // max(target[1], 1))
            flags = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4,
                     2: cv2.IMREAD_REDUCED_COLOR_2}.get(max((f for f in (8, 4, 2) if f <= factor), default=1),
                                                       cv2.IMREAD_COLOR)
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise InputError(f"{path}: cannot decode the image (not a valid PNG or JPEG file)")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    own = (h, w) if h and w and flags != cv2.IMREAD_COLOR else img.shape[:2]
    if target is not None and img.shape[:2] != tuple(target):
        interp = cv2.INTER_AREA if img.shape[0] * img.shape[1] > target[0] * target[1] else cv2.INTER_LINEAR
        img = cv2.resize(img, (target[1], target[0]), interpolation=interp)
    return img, own


def _header_size(data: np.ndarray) -> tuple[int, int]:
    """(h, w) from a PNG or JPEG header without decoding the image; (0, 0) when unknown."""
    b = data[:65536].tobytes()
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24:
        return int.from_bytes(b[20:24], "big"), int.from_bytes(b[16:20], "big")
    i = 2
    while b[:2] == b"\xff\xd8" and i + 9 < len(b):
        if b[i] != 0xFF:
            break
        marker, length = b[i + 1], int.from_bytes(b[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(b[i + 5:i + 7], "big"), int.from_bytes(b[i + 7:i + 9], "big")
        i += 2 + length
    return 0, 0


def frame_size_of(path: Path) -> tuple[int, int]:
    """(h, w) of an image file, from its header when it has a readable one, else by decoding it."""
    try:
        h, w = _header_size(np.fromfile(path, np.uint8, count=65536))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return (h, w) if h and w else _read_image(path)[0].shape[:2]


def read_frame(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One seed frame at the working ``size``: a pure function of the file and the size, so that a
    finding's seed can be decoded again later exactly as the campaign saw it."""
    return _read_image(Path(path), tuple(size))[0]


def _read_images(paths, work_size=None):
    """Images (N, H, W, 3) at the working size (default: the first image's), and each image's
    (sx, sy) resize factors. Every image goes through ``read_frame`` (decoded on a thread pool:
    OpenCV releases the GIL), one at a time: memory holds the seeds at the working size only."""
    from concurrent.futures import ThreadPoolExecutor

    fh, fw = frame_size_of(paths[0])
    size = (fh, fw) if work_size is None else tuple(work_size(fh, fw) if callable(work_size) else work_size)
    h, w = int(size[0]), int(size[1])
    out = np.empty((len(paths), h, w, 3), np.uint8)
    shapes = [None] * len(paths)

    def load(i):
        out[i], shapes[i] = _read_image(paths[i], (h, w))

    with ThreadPoolExecutor(max(1, min(4, len(paths)))) as pool:
        list(pool.map(load, range(len(paths))))
    return out, [(w / iw, h / ih) for ih, iw in shapes]  # from the files' own pixels, which boxes use


def _read_boxes(path: Path, index: _FileIndex, ids: list, scales: list):
    if not path.is_file():
        raise InputError(f"{path}: no such boxes file")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 JSON file") from None
    if isinstance(data, dict) and isinstance(data.get("images"), dict):
        data = data["images"]
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object {{image id: [{{\"box\": [x0, y0, x1, y1], "
                         f"\"class\": ...}}]}}")
    pos = {i: k for k, i in enumerate(ids)}
    boxes = [np.zeros((0, 4), np.float32) for _ in ids]
    classes: list = [np.zeros(0, np.int64) for _ in ids]
    seen = {}
    for key, objs in data.items():
        where = f"{path} entry {key!r}"
        p = index.find(key, where)
        img_id = index.id_of(p)
        if img_id not in pos:
            continue  # an image left out by the labels CSV
        if img_id in seen:
            raise InputError(f"{where}: duplicate id (same image as entry {seen[img_id]!r})")
        seen[img_id] = key
        if not isinstance(objs, list):
            raise InputError(f"{where}: expected a list of {{\"box\": [x0, y0, x1, y1], \"class\": ...}}")
        bx, cl = [], []
        for j, o in enumerate(objs):
            if not isinstance(o, dict) or "box" not in o or "class" not in o:
                raise InputError(f"{where} object {j}: needs \"box\" and \"class\"")
            b = o["box"]
            if (not isinstance(b, list) or len(b) != 4
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in b)):
                raise InputError(f"{where} object {j}: box must be 4 numbers [x0, y0, x1, y1], got {b!r}")
            if not (b[0] < b[2] and b[1] < b[3]):
                raise InputError(f"{where} object {j}: box {b} needs x0 < x1 and y0 < y1")
            c = o["class"]
            if isinstance(c, bool) or not isinstance(c, (str, int)) or (isinstance(c, int) and c < 0):
                raise InputError(f"{where} object {j}: class must be a name or an index >= 0, got {c!r}")
            bx.append(b)
            cl.append(c)
        k = pos[img_id]
        sx, sy = scales[k]
        boxes[k] = (np.asarray(bx, np.float64).reshape(-1, 4) * [sx, sy, sx, sy]).astype(np.float32)
        classes[k] = (np.asarray(cl, np.int64) if all(isinstance(c, int) for c in cl)
                      else np.asarray(cl, dtype=object))
    return boxes, classes
