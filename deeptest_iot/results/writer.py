"""Writing a campaign's output folder: append-only findings, image pairs, summary and checkpoint.

Format: ``docs/results-format.md``. Findings are appended and fsynced batch by batch; everything
else is replaced atomically. The checkpoint records the byte length of ``findings.jsonl`` it
covers, so a resumed campaign first cuts off whatever a killed run appended after it: no finding
is lost or written twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deeptest_iot.errors import InputError
from deeptest_iot.fileio import atomic_write_bytes, atomic_write_json, ensure_dir
from deeptest_iot.results.reader import SEVERITY_BUCKETS, severity_bucket

FINDINGS = "findings.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.json"
IMAGES = "images"


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise InputError("could not encode an image as PNG")
    return buf.tobytes()


_PNG_POOL = []


def _png_pool():
    from concurrent.futures import ThreadPoolExecutor

    if not _PNG_POOL:
        _PNG_POOL.append(ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="deeptest-png"))
    return _PNG_POOL[0]


class FindingsWriter:
    """Append findings (JSONL + PNG pairs) to an output folder, crash-safely."""

    def __init__(self, out_dir: Path, count: int = 0, offset: int = 0, save_images: bool = True):
        self.out_dir = Path(out_dir)
        self.save_images = save_images
        ensure_dir(self.out_dir / IMAGES if save_images else self.out_dir)
        for stray in [*self.out_dir.glob(".*.tmp"), *(self.out_dir / IMAGES).glob(".*.tmp")]:
            stray.unlink(missing_ok=True)  # a killed run's half-written file (fileio.atomic_write's temp names)
        self.path = self.out_dir / FINDINGS
        self.count = count
        # Cut off a killed run's lines past the last checkpoint (or a torn last line).
        with open(self.path, "ab") as f:
            if f.tell() != offset:
                f.truncate(offset)
        self.offset = offset
        self._written: set[str] = set()

    def append(self, records: list[dict[str, Any]], pairs: list[tuple[np.ndarray, np.ndarray]],
               durable: bool = True, original_keys: list[str] | None = None) -> None:
        """Write each record's JSON line (and, when saving images, its image pair first); ids are
        numbered on from ``count``.

        With ``original_keys`` (say, one per seed), originals that share a key are written once, as
        ``images/<key>.png``, and every finding of that seed points at the same file.
        """
        if not records:
            return
        lines, writes = [], []
        for i, (record, (original, transformed)) in enumerate(zip(records, pairs)):
            fid = f"f{self.count:06d}"
            self.count += 1
            if not self.save_images:  # a recipe: results/render.py draws its images again
                lines.append(json.dumps({"id": fid, **record}, allow_nan=False) + "\n")
                continue
            if original_keys is None:
                orig_path = f"{IMAGES}/{fid}_orig.png"
                writes.append((orig_path, original))
            else:
                orig_path = f"{IMAGES}/{original_keys[i]}.png"
                if orig_path not in self._written and not (self.out_dir / orig_path).is_file():
                    writes.append((orig_path, original))
                self._written.add(orig_path)
            images = {"original": orig_path, "transformed": f"{IMAGES}/{fid}_trans.png"}
            writes.append((images["transformed"], transformed))
            lines.append(json.dumps({"id": fid, **record, "images": images}, allow_nan=False) + "\n")

        def write_png(job):
            # Not fsynced: a PNG is only referenced once its JSON line (written after it) is.
            atomic_write_bytes(self.out_dir / job[0], encode_png(job[1]), durable=False)

        # PNG encoding releases the GIL: spread it over the cores.
        list(_png_pool().map(write_png, writes))
        data = "".join(lines).encode("utf-8")
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        self.offset += len(data)


    def sync(self) -> None:
        """Make what was appended durable (before a checkpoint names its length)."""
        with open(self.path, "ab") as f:
            os.fsync(f.fileno())


_VERDICT_KEYS = ("before", "after", "label", "violation", "threshold")


def json_output(value):
    """A model output as findings.jsonl stores it: a float for steering, the oracle's dict otherwise."""
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def finding_record(verdicts, i: int, *, case: int, seed_id, seed_index: int, transform: str, chain: list,
                   severity: float, coverage_gain: int, **extra) -> dict[str, Any]:
    """The findings.jsonl record (without ``id`` and ``images``) of input ``i`` of a batch's verdicts."""
    detail = verdicts.details[i]
    return {"case": int(case), "seed_id": str(seed_id), "seed_index": int(seed_index),
            "relation": verdicts.relation, "transform": transform, "chain": chain,
            "severity": round(float(severity), 6),
            "before": json_output(detail.get("before")), "after": json_output(detail.get("after")),
            "label": detail.get("label"), "violation": float(verdicts.violation[i]),
            "threshold": float(verdicts.threshold[i]), "coverage_gain": int(coverage_gain),
            "details": {k: v for k, v in detail.items() if k not in _VERDICT_KEYS}, **extra}


class CampaignStats:
    """Running per-transform and per-severity counts, and the distinct failures: what summary.json
    reports, never the findings themselves.

    Inputs made from seeds the model already gets wrong (``apart``) are counted on their own and
    left out of every error rate. A distinct failure is a (seed, transform family) pair that broke
    the relation; its representative is its worst finding.
    """

    TOP = 10  # distinct failures summary.json lists

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.tried = int(state.get("tried", 0))
        self.rejected = int(state.get("rejected", 0))
        self.found = int(state.get("found", 0))
        self.per_transform: dict[str, dict] = state.get("per_transform", {})
        self.per_severity: dict[str, dict] = state.get("per_severity") or {
            b: {"tried": 0, "findings": 0} for b in SEVERITY_BUCKETS}
        self.apart: dict[str, int] = state.get("apart") or {"tried": 0, "findings": 0}
        self.rejected_by: dict[str, int] = state.get("rejected_by", {})
        self.distinct: dict[str, list] = state.get("distinct", {})  # "seed|family" -> [violation, finding id, count]
        self.growth: list[dict] = state.get("growth", [])

    def add(self, names: list[str], severities: list[float], failed: np.ndarray, violation: np.ndarray,
            apart=None, seed_ids=None, families=None, finding_ids=None) -> None:
        """Count a checked batch. ``apart`` (N,) marks inputs of seeds already failing; ``seed_ids``,
        ``families`` and ``finding_ids`` (the id of each failing input's finding, in batch order) feed
        the distinct failures."""
        apart = np.zeros(len(names), bool) if apart is None else np.asarray(apart, bool)
        ids = iter(finding_ids or ())
        for i, (name, sev, bad, v) in enumerate(zip(names, severities, failed.tolist(), violation.tolist())):
            fid = next(ids) if bad and finding_ids is not None else None
            if apart[i]:
                self.apart["tried"] += 1
                self.apart["findings"] += int(bad)
                continue
            row = self.per_transform.setdefault(
                name, {"tried": 0, "findings": 0, "violation_sum": 0.0, "max_violation": 0.0})
            row["tried"] += 1
            bucket = self.per_severity[severity_bucket(sev)]
            bucket["tried"] += 1
            if bad:
                row["findings"] += 1
                row["violation_sum"] += float(v)
                row["max_violation"] = max(row["max_violation"], float(v))
                bucket["findings"] += 1
                if seed_ids is not None and families is not None:
                    group = self.distinct.setdefault(f"{seed_ids[i]}|{families[i]}", [float(v), fid, 0])
                    group[2] += 1
                    if float(v) > group[0]:
                        group[0], group[1] = float(v), fid
        self.tried += len(names)
        self.found += int(np.count_nonzero(failed))

    def reject(self, counts: dict[str, int]) -> None:
        """Count mutants a gate kept from the model (realism, learned, validity)."""
        for gate, k in counts.items():
            if k:
                self.rejected_by[gate] = self.rejected_by.get(gate, 0) + int(k)
                self.rejected += int(k)

    def record_growth(self, coverage: dict[str, float]) -> None:
        self.growth.append({"inputs": self.tried, **{k: round(float(v), 6) for k, v in coverage.items()}})
        if len(self.growth) > 400:  # keep the curve's shape, bound its size
            self.growth = self.growth[:1] + self.growth[1:-1:2] + self.growth[-1:]

    def state(self) -> dict:
        return {"tried": self.tried, "rejected": self.rejected, "found": self.found,
                "per_transform": self.per_transform, "per_severity": self.per_severity, "apart": self.apart,
                "rejected_by": self.rejected_by,
                "distinct": self.distinct, "growth": self.growth}

    def distinct_failures(self) -> dict:
        """How many (seed, family) pairs broke the relation, and the worst TOP of them."""
        ranked = sorted(self.distinct.items(), key=lambda kv: (-kv[1][0], kv[0]))
        top = [{"seed_id": key.rsplit("|", 1)[0], "family": key.rsplit("|", 1)[1], "violation": v,
                "finding": fid, "findings": n} for key, (v, fid, n) in ranked[:self.TOP]]
        return {"groups": len(self.distinct), "top": top}

    def tables(self) -> dict:
        """per_transform, per_severity, error_rate, failing-seed counts and distinct failures, as
        summary.json has them (error rates leave out inputs of seeds already failing)."""
        per_transform = {}
        for name in sorted(self.per_transform):
            row = self.per_transform[name]
            per_transform[name] = {
                "tried": row["tried"], "findings": row["findings"],
                "error_rate": row["findings"] / row["tried"] if row["tried"] else 0.0,
                "mean_violation": row["violation_sum"] / row["findings"] if row["findings"] else 0.0,
                "max_violation": row["max_violation"]}
        per_severity = {b: {**v, "error_rate": v["findings"] / v["tried"] if v["tried"] else 0.0}
                        for b, v in self.per_severity.items()}
        judged = self.tried - self.apart["tried"]
        return {"per_transform": per_transform, "per_severity": per_severity,
                "error_rate": (self.found - self.apart["findings"]) / judged if judged else 0.0,
                "failing_seed_inputs": dict(self.apart), "rejected_by": dict(self.rejected_by),
                "distinct_failures": self.distinct_failures()}


def write_summary(out_dir: Path, summary: dict, durable: bool = True) -> None:
    atomic_write_json(Path(out_dir) / SUMMARY, summary, durable=durable)


def write_checkpoint(out_dir: Path, checkpoint: dict, durable: bool = True) -> None:
    """Compact JSON (the C encoder: the strategy state can be large), replaced atomically."""
    atomic_write_json(Path(out_dir) / CHECKPOINT, checkpoint, indent=None, durable=durable)


def read_checkpoint(out_dir: Path) -> dict | None:
    path = Path(out_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid checkpoint ({exc}); start again without --resume") from None
