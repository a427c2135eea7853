"""Export a campaign's findings as a training set: the transformed frames plus the answer the
model should have given on them (DeepTest retrained on its synthesised images).

The label each transformed frame should have had is the task's rule (``Task.export_target``):

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

Only the findings of the task's relation are exported. A twin campaign's differential findings
(``relation: "differential"``, docs/twins.md) are left out and counted in ``ExportResult.left_out``:
their only reference is the float model's own answer on the frame, not what the frame should get.

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

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeptest_iot.errors import ConfigError, InputError, UnsupportedError
from deeptest_iot.fileio import atomic_write, atomic_write_bytes, atomic_write_text, ensure_dir
from deeptest_iot.results.reader import findings_of, open_run
from deeptest_iot.results.render import Renderer
from deeptest_iot.results.writer import encode_png


@dataclass(frozen=True)
class ExportResult:
    """What was written: how many frames, for which task, and where."""

    count: int
    task: str
    folder: Path
    npz: Path
    left_out: int = 0  # findings of another relation (a twin's differential findings), not exported


#: The list of files an export wrote into its folder: ``--force`` replaces these and nothing else.
MANIFEST = ".deeptest-export.json"


def _claim(to_dir: Path, names: list[str], force: bool) -> list[str]:
    """Check that writing ``names`` into ``to_dir`` replaces no file of the user's, record them in
    the manifest before any is written, and return the files a previous export wrote and this one
    does not (to remove). A non-empty folder needs ``force``; even then only export's own files go."""
    if not to_dir.exists() or not any(to_dir.iterdir()):
        previous: list[str] = []
    elif not force:
        raise ConfigError(f"{to_dir} is not empty; pass --force to replace what an earlier export wrote there "
                          "(other files are never touched), or choose another --to")
    else:
        try:
            previous = json.loads((to_dir / MANIFEST).read_text(encoding="utf-8"))["files"]
        except FileNotFoundError:
            previous = []
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{to_dir / MANIFEST}: unreadable; remove it only if every file there may be "
                             "replaced") from None
        foreign = sorted(n for n in names if (to_dir / n).exists() and n not in previous)
        if foreign:
            raise ConfigError(f"{to_dir}: would replace {len(foreign)} file(s) that export did not write "
                              f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); move them or "
                              "choose another --to")
    atomic_write_text(to_dir / MANIFEST, json.dumps({"files": sorted(set(previous) | set(names))}, indent=1))
    return sorted(set(previous) - set(names))


def export_findings(out_dir: str | Path, to_dir: str | Path, force: bool = False) -> ExportResult:
    """Write the findings of campaign folder ``out_dir`` as a training set in ``to_dir`` (a new or
    empty folder; with ``force``, one where only an earlier export's files will be replaced)."""
    from deeptest_iot.tasks import TASKS

    run = open_run(out_dir)
    if run.task not in TASKS:
        raise UnsupportedError(f"cannot export findings of task {run.task!r}")
    task = TASKS[run.task]
    to_dir = Path(to_dir)
    own = findings_of(run)  # the task's relation's findings; a twin's differential ones are no training labels
    findings = sorted(own, key=lambda f: str(f["id"]))
    targets = [task.export_target(f) for f in findings]  # first: a finding that cannot be exported fails before any write
    renderer = Renderer(run)
    images, shapes = [], set()
    for f in findings:  # the frames the model saw: saved, or rendered again from the recipe
        rgb = renderer.images(f)[1]
        shapes.add(rgb.shape)
        images.append((f, rgb, encode_png(rgb)))
    if len(shapes) > 1:
        raise UnsupportedError(f"{out_dir}: transformed frames have different sizes {sorted(shapes)}; the .npz needs "
                               "one size")
    label_arrays, files = task.export_files(findings, targets)
    names = [f"images/{f['id']}.png" for f in findings] + list(files) + ["findings.npz"]
    stale = _claim(to_dir, names, force)
    ensure_dir(to_dir / "images")
    for f, _, png in images:
        atomic_write_bytes(to_dir / "images" / f"{f['id']}.png", png)

    arrays: dict[str, np.ndarray] = {
        "images": (np.stack([rgb for _, rgb, _ in images]) if images else np.zeros((0, 0, 0, 3), np.uint8)),
        "ids": np.array([str(f["id"]) for f in findings], dtype=str),
        "transforms": np.array([str(f["transform"]) for f in findings], dtype=str),
        **label_arrays,
    }
    for name, text in files.items():
        atomic_write_text(to_dir / name, text)
    npz = to_dir / "findings.npz"
    atomic_write(npz, lambda fobj: np.savez_compressed(fobj, **arrays))
    for name in stale:
        (to_dir / name).unlink(missing_ok=True)
    atomic_write_text(to_dir / MANIFEST, json.dumps({"files": sorted(names)}, indent=1))
    return ExportResult(count=len(findings), task=run.task, folder=to_dir, npz=npz,
                        left_out=len(run.findings) - len(own))
