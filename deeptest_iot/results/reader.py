"""Read a campaign output folder (docs/results-format.md) for the report, JUnit, compare and export.

One reader so that every consumer fails the same way on a bad folder: a missing folder, a folder
without summary.json, or a corrupt findings line each raise :class:`InputError` naming the file
(and the line), which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeptest_iot.errors import InputError

SUMMARY = "summary.json"
FINDINGS = "findings.jsonl"

# Keys every consumer relies on; the rest of a finding is read with defaults.
REQUIRED_FINDING_KEYS = ("id", "relation", "transform", "violation")

SEVERITY_BUCKETS = ("0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0")


@dataclass
class RunFolder:
    """A campaign folder: its path, its parsed summary and (read lazily) its findings."""

    path: Path
    summary: dict
    _findings: list | None = field(default=None, repr=False)

    @property
    def findings(self) -> list[dict]:
        """Every finding in file order (read once, validated line by line)."""
        if self._findings is None:
            self._findings = read_findings(self.path / FINDINGS)
        return self._findings

    @property
    def task(self) -> str:
        """The model's task (steering | classification | detection); from the summary, else the relation."""
        task = (self.summary.get("model") or {}).get("task")
        if task:
            return str(task)
        relation = (self.summary.get("campaign") or {}).get("relation") or {}
        return str(relation.get("name", "steering"))

    def problems(self) -> list[str]:
        """What does not add up between summary.json and findings.jsonl (a damaged or partial folder)."""
        counted = self.summary.get("findings")
        found = len(self.findings)
        if isinstance(counted, int) and (found < counted or (found != counted and self.summary.get("status") == "complete")):
            return [f"summary.json counts {counted} findings but findings.jsonl holds {found}: the folder is "
                    "incomplete or damaged (copied in part, or findings.jsonl replaced)"]
        return []

    def resolve(self, relative: str) -> Path:
        """The file an image path in a finding names, refusing paths that leave the folder.

        A findings file is data, possibly from somewhere else: it must not make the report embed
        (or export copy) an arbitrary file of the machine that reads it.
        """
        root = self.path.resolve()
        target = (root / str(relative)).resolve()
        if root not in target.parents:
            raise InputError(f"{self.path / FINDINGS}: image path {relative!r} points outside {self.path}")
        return target


#: The relation a twin is judged by (deeptest_iot.tasks.differential.RELATION; not imported here to keep the reader light).
DIFFERENTIAL = "differential"


def main_relation(run: RunFolder) -> str:
    """The name of the run's own relation (the task's): the campaign's ``relation.name``, else the task."""
    relation = (run.summary.get("campaign") or {}).get("relation") or {}
    return str(relation.get("name") or run.task)


def relation_names(run: RunFolder) -> list[str]:
    """The relations the run judged inputs by: its own first, then the others (``differential`` with a twin)."""
    main = main_relation(run)
    return [main] + [name for name in (run.summary.get("relations") or {}) if name != main]


def relation_summary(run: RunFolder, relation: str | None = None) -> dict:
    """One relation's figures (``inputs_tried``, ``findings``, ``error_rate``, ``per_transform``,
    ``per_severity``, ``failing_seed_inputs``, ``distinct_failures``): ``summary.relations[name]``, or the
    top-level ones for the run's own relation of a run without a twin."""
    main = main_relation(run)
    name = relation or main
    tables = (run.summary.get("relations") or {}).get(name)
    if tables is not None:
        return tables
    if name != main:
        return {}
    s = run.summary
    return {"inputs_tried": s.get("inputs_tried"), "findings": s.get("findings"), "error_rate": s.get("error_rate"),
            "per_transform": s.get("per_transform") or {}, "per_severity": s.get("per_severity") or {},
            "failing_seed_inputs": s.get("failing_seed_inputs"), "distinct_failures": s.get("distinct_failures")}


def findings_of(run: RunFolder, relation: str | None = None) -> list[dict]:
    """The findings of one relation; for the run's own (``None``), every finding not of another relation
    the run lists (so a pytest report's several relation settings stay together)."""
    main = main_relation(run)
    if relation is not None and relation != main:
        return [f for f in run.findings if f.get("relation") == relation]
    others = set(relation_names(run)) - {main}
    return [f for f in run.findings if f.get("relation") not in others]


def open_run(path: str | Path) -> RunFolder:
    """Open a campaign output folder; raise InputError when it is missing or has no readable summary."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such folder (expected a campaign output folder from `deeptest-iot run --out`)")
    if not path.is_dir():
        raise InputError(f"{path}: not a folder (expected a campaign output folder from `deeptest-iot run --out`)")
    summary_path = path / SUMMARY
    if not summary_path.is_file():
        raise InputError(f"{path}: no {SUMMARY} here; is this a campaign output folder from `deeptest-iot run --out`?")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{summary_path}: not valid JSON ({exc})") from None
    if not isinstance(summary, dict):
        raise InputError(f"{summary_path}: expected a JSON object, found {type(summary).__name__}")
    return RunFolder(path=path, summary=summary)


def read_findings(path: str | Path) -> list[dict]:
    """Parse findings.jsonl; a missing file means no findings. Blank lines are skipped.

    A line that is not a JSON object, or lacks one of REQUIRED_FINDING_KEYS, raises InputError
    with the file and the 1-based line number, so the user can look at it.
    """
    path = Path(path)
    if not path.exists():
        return []
    findings = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: corrupt findings line, not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{number}: corrupt findings line, expected a JSON object")
            missing = [k for k in REQUIRED_FINDING_KEYS if k not in obj]
            if missing:
                raise InputError(f"{path}:{number}: finding lacks {', '.join(missing)}")
            try:
                obj["violation"] = float(obj["violation"])
            except (TypeError, ValueError):
                raise InputError(f"{path}:{number}: violation {obj['violation']!r} is not a number") from None
            findings.append(obj)
    return findings


def judged(findings: list[dict]) -> list[dict]:
    """The findings that count: those of seeds the model already gets wrong (``seed_failed``, made
    with ``--failing-seeds test``) are counted apart, as summary.json counts them."""
    return [f for f in findings if not f.get("seed_failed")]


def chain_family(chain: list) -> str:
    """A recorded chain's family: the kinds of its links, sorted and joined (as ``Chain.family``);
    a link this version does not know counts as "unknown"."""
    from deeptest_iot.transforms import REGISTRY

    kinds = {REGISTRY[link["name"]].kind if isinstance(link, dict) and link.get("name") in REGISTRY else "unknown"
             for link in chain or []}
    return "+".join(sorted(kinds)) or "identity"


def distinct_failures(findings: list[dict]) -> list[dict]:
    """Findings grouped by (seed, transform family), worst group first: each group's representative
    is its worst finding (realistic ones before those a realism gate flagged, when recorded).
    Findings of seeds already wrong are left out (:func:`judged`)."""
    groups: dict[tuple, list] = {}
    for f in judged(findings):
        groups.setdefault((str(f.get("seed_id")), chain_family(f.get("chain"))), []).append(f)

    def rank(f):
        return (f.get("realistic") is False, -float(f["violation"]), str(f["id"]))

    out = []
    for (seed_id, family), members in groups.items():
        best = min(members, key=rank)
        out.append({"seed_id": seed_id, "family": family, "finding": best, "count": len(members)})
    return sorted(out, key=lambda g: rank(g["finding"]))


def severity_bucket(severity: float) -> str:
    """The per_severity bucket a severity in [0, 1] falls in (1.0 goes in the last one)."""
    index = min(int(float(severity) * 5 + 1e-9), 4)
    return SEVERITY_BUCKETS[max(index, 0)]


def chain_links(name: str) -> list[str]:
    """The transform names of a chain as tables name it: its link names joined by '+'."""
    return [part for part in str(name).split("+") if part]


def chain_table(per_transform: dict, findings: list[dict]) -> dict[str, dict]:
    """Figures per transform chain: summary.json's per_transform, plus chains that only the findings
    name (a running campaign whose summary lags), counted from the findings with tried unknown.
    Findings of seeds already wrong are left out, as summary.json leaves them out (:func:`judged`)."""
    table = {str(k): dict(v) for k, v in (per_transform or {}).items() if isinstance(v, dict)}
    counts: dict[str, list[float]] = {}
    for finding in judged(findings):
        counts.setdefault(str(finding["transform"]), []).append(float(finding["violation"]))
    for name, violations in counts.items():
        if name not in table:
            table[name] = {"tried": None, "findings": len(violations), "error_rate": None,
                           "mean_violation": sum(violations) / len(violations), "max_violation": max(violations)}
    return table


def transform_table(per_transform: dict, findings: list[dict]) -> dict[str, dict]:
    """Figures per single transform, over every chain that contains it.

    Guided search composes chains (``rain+rotation+fog``) that differ from run to run and are each
    tried a few times; per single transform the figures are stable and comparable. An input made
    by a chain counts once for each distinct transform in the chain: ``tried`` and ``findings`` are
    sums over those chains, ``mean_violation`` is weighted by findings, ``max_violation`` the max.
    ``tried`` is None when some chain's count is unknown.
    """
    out: dict[str, dict] = {}
    for chain, row in chain_table(per_transform, findings).items():
        n_found = int(row.get("findings") or 0)
        mean = row.get("mean_violation")
        for name in dict.fromkeys(chain_links(chain)):
            agg = out.setdefault(name, {"tried": 0, "findings": 0, "_vsum": 0.0, "max_violation": 0.0, "chains": 0})
            tried = row.get("tried")
            agg["tried"] = None if tried is None or agg["tried"] is None else agg["tried"] + int(tried)
            agg["findings"] += n_found
            agg["_vsum"] += float(mean or 0.0) * n_found
            agg["max_violation"] = max(agg["max_violation"], float(row.get("max_violation") or 0.0))
            agg["chains"] += 1
    for agg in out.values():
        vsum = agg.pop("_vsum")
        agg["mean_violation"] = vsum / agg["findings"] if agg["findings"] else 0.0
        agg["error_rate"] = agg["findings"] / agg["tried"] if agg["tried"] else (0.0 if agg["tried"] == 0 else None)
    return out


def per_transform_rows(run: RunFolder, by: str = "transform", relation: str | None = None) -> list[dict[str, Any]]:
    """Rows for tables, sorted by name: per single transform (``by="transform"``, see
    :func:`transform_table`) or per chain as summary.json records them (``by="chain"``); each row
    has ``transform`` (its name) and ``robustness``. ``relation``: whose figures (default the run's own;
    ``differential`` for a twin's)."""
    if by not in ("transform", "chain"):
        raise ValueError(f"by must be 'transform' or 'chain', not {by!r}")
    make = transform_table if by == "transform" else chain_table
    table = make(relation_summary(run, relation).get("per_transform") or {}, findings_of(run, relation))
    rows = []
    for name in sorted(table):
        row = {"transform": name, **table[name]}
        row["robustness"] = robustness(row)
        rows.append(row)
    return rows


def robustness(row: dict) -> float | None:
    """Robustness score of one transform: 1 - error rate, the share of transformed inputs on which
    the relation held. None when the number of inputs tried is unknown or zero."""
    rate = row.get("error_rate")
    if rate is None:
        tried, found = row.get("tried"), row.get("findings")
        if not tried or found is None:
            return None
        rate = found / tried
    return 1.0 - float(rate)
