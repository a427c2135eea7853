"""Synthetic campaign output folders (docs/results-format.md) for the report, JUnit, compare and
export tests: findings.jsonl, PNG pairs written with cv2.imwrite, and summary.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np

H, W = 60, 120

BASE_SUMMARY = {
    "format": 1,
    "tool": {"name": "deeptest-iot", "version": "0.1.0"},
    "libraries": {"python": "3.11.7", "numpy": "2.4.6"},
    "model": {"path": "models/dave2.keras", "name": "dave2_steering", "fingerprint": "sha256:abc",
              "task": "steering", "layers": {"conv2d": 24, "dense": 10}, "neurons": 34},
    "campaign": {"seed": 0, "strategy": "deeptest", "budget": 200, "seeds": "generated:10",
                 "transforms": ["rain", "fog", "flip"], "coverage": ["nc:0.5", "kmnc:10"],
                 "relation": {"name": "steering", "lambda": 5.0, "delta": 0.1}},
    "status": "complete",
    "inputs_tried": 200,
    "findings": 0,
    "duration_s": 3.5,
    "per_transform": {},
    "per_severity": {},
    "coverage": {"nc:0.5": {"coverage": 0.6, "covered": 20, "total": 34, "layers": {"conv2d": 0.5, "dense": 0.7}},
                 "kmnc:10": {"coverage": 0.3, "covered": 102, "total": 340, "layers": {}}},
    "coverage_growth": [{"inputs": 0, "nc:0.5": 0.2, "kmnc:10": 0.05},
                        {"inputs": 100, "nc:0.5": 0.5, "kmnc:10": 0.2},
                        {"inputs": 200, "nc:0.5": 0.6, "kmnc:10": 0.3}],
    "error_rate": 0.0,
}


def frame(i: int) -> np.ndarray:
    """A small RGB frame that differs per index: sky, road, a lane line."""
    img = np.zeros((H, W, 3), np.uint8)
    img[: H // 2] = (120, 160, 220)
    img[H // 2:] = (70, 70, 70)
    x = 20 + (i * 13) % (W - 40)
    cv2.line(img, (x, H - 1), (W // 2, H // 2), (255, 255, 255), 2)
    return img


def _link(name: str, severity: float, seed: int) -> dict:
    """A chain link as findings.jsonl records it: registered transforms with their real parameters."""
    from deeptest_iot.transforms import REGISTRY

    params = REGISTRY[name].from_severity(severity).params if name in REGISTRY else {}
    return {"name": name, "params": params, "seed": seed}


def steering_finding(i: int, transform: str = "rain", violation: float = 0.3, severity: float = 0.5,
                     label: float | None = 0.05, before: float = 0.05, after: float | None = None) -> dict:
    after = before + violation + 0.1 if after is None else after
    links = [_link(name, severity, i) for name in transform.split("+")]
    return {"id": f"f{i:06d}", "case": i, "seed_id": f"scene-{i:04d}", "seed_index": i, "relation": "steering",
            "transform": transform, "chain": links, "severity": severity, "before": before, "after": after,
            "label": label, "violation": violation, "threshold": 0.1,
            "images": {"original": f"images/f{i:06d}_orig.png", "transformed": f"images/f{i:06d}_trans.png"}}


def detection_finding(i: int, transform: str = "fog", violation: float = 1.0) -> dict:
    return {"id": f"f{i:06d}", "case": i, "seed_id": f"scene-{i:04d}", "seed_index": i, "relation": "detection",
            "transform": transform, "chain": [{"name": transform, "params": {}}], "severity": 0.4,
            "before": {"boxes": [[10, 10, 40, 30], [60, 20, 90, 50]], "scores": [0.9, 0.8], "classes": [0, 1]},
            "after": {"boxes": [[12, 11, 41, 31]], "scores": [0.7], "classes": [0]},
            "label": None, "violation": violation, "threshold": 0.5,
            "details": {"expected": [[10, 10, 40, 30], [60, 20, 90, 50]], "flipped": False},
            "images": {"original": f"images/f{i:06d}_orig.png", "transformed": f"images/f{i:06d}_trans.png"}}


def tally(findings: list[dict], tried: dict[str, int]) -> dict:
    """per_transform / per_severity / totals consistent with the findings and inputs tried."""
    per_transform = {}
    for name, n in tried.items():
        mine = [f["violation"] for f in findings if f["transform"] == name]
        per_transform[name] = {"tried": n, "findings": len(mine), "error_rate": len(mine) / n if n else 0.0,
                               "mean_violation": float(np.mean(mine)) if mine else 0.0,
                               "max_violation": max(mine) if mine else 0.0}
    per_severity = {}
    total = sum(tried.values())
    for k, bucket in enumerate(("0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0")):
        mine = [f for f in findings if min(int(f["severity"] * 5), 4) == k]
        per_severity[bucket] = {"tried": total // 5, "findings": len(mine),
                                "error_rate": len(mine) / (total // 5) if total // 5 else 0.0}
    return {"per_transform": per_transform, "per_severity": per_severity, "inputs_tried": total,
            "findings": len(findings), "error_rate": len(findings) / total if total else 0.0}


def make_run(root: Path, findings: list[dict] | None = None, tried: dict[str, int] | None = None,
             **summary_overrides) -> Path:
    """Write a campaign folder at ``root``; summary keys given as keyword arguments replace the
    defaults (a dict value for "model" or "campaign" is merged into the default one)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    findings = [steering_finding(i, t, v) for i, (t, v) in
                enumerate([("rain", 0.3), ("rain", 0.8), ("fog", 0.1), ("flip", 0.5)])] if findings is None else findings
    tried = tried or {"rain": 80, "fog": 60, "flip": 60}
    with open(root / "findings.jsonl", "w", encoding="utf-8") as f:
        for finding in findings:
            f.write(json.dumps(finding) + "\n")
            k = int(finding["case"])
            orig = frame(k)
            trans = cv2.GaussianBlur(orig, (5, 5), 0) // 2 + 60
            cv2.imwrite(str(root / finding["images"]["original"]), cv2.cvtColor(orig, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / finding["images"]["transformed"]), cv2.cvtColor(trans, cv2.COLOR_RGB2BGR))
    summary = copy.deepcopy(BASE_SUMMARY)
    summary.update(tally(findings, tried))
    for key, value in summary_overrides.items():
        if isinstance(value, dict) and isinstance(summary.get(key), dict) and key in ("model", "campaign", "tool"):
            summary[key].update(value)
        else:
            summary[key] = value
    (root / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return root
