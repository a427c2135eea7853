"""JUnit XML of a campaign folder, for the test report views of Jenkins, GitLab and GitHub.

Shape (the Jenkins xunit "junit-10" dialect that GitLab and GitHub reporters also read):
``testsuites`` > one ``testsuite`` per relation (the task's, and ``differential`` with a twin) > one
``testcase`` per transform (``classname="deeptest-iot.<relation>"``, ``name="<transform>"``); with a twin,
the differential suite adds the case ``seed frames (no transform)``, failing when the twin already
disagrees with the model on more than ``max_error_rate`` of the seeds. Test cases are per single
transform, not per chain: guided search makes different chains in different runs, and a CI
server tracks a test case's history by its name. An input made by a chain counts for every
transform in it; the failure text names each worst example's chain.

When a test case fails: its error rate (findings / inputs tried with that transform) is above
``max_error_rate`` (default 0.0, so any finding fails it). When the number of inputs tried is not
recorded, any finding fails it. A transform with zero inputs tried is ``skipped``: one of the
campaign's transforms (``campaign.transforms``) that no input was made with, or a
``per_transform`` row with ``tried`` 0. A campaign whose
status is not ``complete`` adds one test case ``campaign status`` carrying an ``error``, so a
killed campaign never passes a CI job. A failure carries the counts, the error rate, the
violations, and the image paths of the worst findings (largest violation first).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from deeptest_iot.errors import ConfigError
from deeptest_iot.fileio import atomic_write_bytes
from deeptest_iot.results.reader import (DIFFERENTIAL, RunFolder, chain_links, findings_of, judged, open_run,
                                         relation_names, relation_summary, transform_table)

WORST_EXAMPLES = 5
SUITE_PREFIX = "deeptest-iot"

# XML 1.0 forbids most control characters; strings from files are cleaned before writing.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(value) -> str:
    return _INVALID_XML.sub("\ufffd", str(value))


@dataclass(frozen=True)
class JUnitCounts:
    """What a JUnit document reports, so a caller can pick an exit code without reparsing it."""

    tests: int
    failures: int
    errors: int
    skipped: int

    @property
    def passed(self) -> bool:
        return self.failures == 0 and self.errors == 0


def _cases(run: RunFolder) -> dict[tuple[str, str], dict]:
    """(relation, transform) -> {"tried", "findings": [...]}, per single transform: a finding made
    by a chain belongs to every transform in it (see run_folder.transform_table); findings of seeds
    the model (or, for the differential relation, the twin) already gets wrong are counted apart
    (reader.judged), as in summary.json. With a twin, the differential relation gets its own cases,
    from its own table."""
    cases: dict[tuple[str, str], dict] = {}
    names = relation_names(run)
    for relation in names:  # the run's own relation's suite first
        cases.update(sorted(_relation_cases(run, relation, relation == names[0]).items()))
    return cases


def _relation_cases(run: RunFolder, default_relation: str, main: bool) -> dict[tuple[str, str], dict]:
    findings = findings_of(run, None if main else default_relation)
    table = transform_table(relation_summary(run, default_relation).get("per_transform") or {}, findings)
    cases: dict[tuple[str, str], dict] = {}
    for finding in judged(findings):
        for name in dict.fromkeys(chain_links(finding["transform"])):
            key = (str(finding["relation"]), name)
            cases.setdefault(key, {"tried": None, "findings": []})["findings"].append(finding)
    seen = {transform for _, transform in cases}
    for transform in table:
        if transform not in seen:
            cases[(default_relation, transform)] = {"tried": None, "findings": []}
    # The campaign's transforms that made no input: the writer keeps no row for them.
    listed = (run.summary.get("campaign") or {}).get("transforms")
    unused = {t for t in (listed if isinstance(listed, list) else []) if isinstance(t, str)} - set(table) - seen
    for transform in unused:
        cases[(default_relation, transform)] = {"tried": None, "findings": []}
    for (relation, transform), case in cases.items():
        case["tried"] = 0 if transform in unused else (table.get(transform) or {}).get("tried")
    return cases


#: The test case of the seed frames themselves, with a twin: does the twin already disagree on them?
SEEDS_CASE = "seed frames (no transform)"


def _image_path(out_dir: str | Path, relative) -> str:
    return os.path.join(str(out_dir), str(relative)) if relative else "(no image)"


def _failure_text(out_dir, relation: str, transform: str, tried, findings: list[dict], max_error_rate: float) -> tuple[str, str]:
    n = len(findings)
    rate = f"{n / tried:.2%}" if tried else "unknown"
    violations = [f["violation"] for f in findings]
    message = (f"{n} of {tried if tried is not None else '?'} inputs made with {transform} broke the "
               f"{relation} relation (error rate {rate}, allowed {max_error_rate:.2%})")
    lines = [message,
             f"findings: {n}", f"inputs tried: {tried if tried is not None else 'unknown'}", f"error rate: {rate}",
             f"mean violation: {sum(violations) / n:.6g}", f"max violation: {max(violations):.6g}",
             f"worst examples (largest violation first, up to {WORST_EXAMPLES}):"]
    for f in sorted(findings, key=lambda f: (-f["violation"], str(f["id"])))[:WORST_EXAMPLES]:
        images = f.get("images") or {}
        where = (f"original {_image_path(out_dir, images.get('original'))} transformed "
                 f"{_image_path(out_dir, images.get('transformed'))}" if images else
                 f"images: deeptest-iot show {out_dir} {f['id']}")
        lines.append(f"  {f['id']} [{f['transform']}] violation {f['violation']:.6g} (threshold {f.get('threshold')}) seed "
                     f"{f.get('seed_id')}: {where}")
    return message, "\n".join(lines) + "\n"


def build_junit(out_dir: str | Path, max_error_rate: float = 0.0) -> tuple[ET.Element, JUnitCounts]:
    """The JUnit document of a campaign folder (raises InputError on a bad folder) and its counts."""
    run = open_run(out_dir)
    duration = float(run.summary.get("duration_s") or 0.0)
    model = run.summary.get("model") or {}
    campaign = run.summary.get("campaign") or {}
    root = ET.Element("testsuites", name=SUITE_PREFIX)
    total = JUnitCounts(0, 0, 0, 0)
    suites: dict[str, ET.Element] = {}
    counts: dict[str, list[int]] = {}

    def suite_for(relation: str) -> ET.Element:
        if relation not in suites:
            suite = ET.SubElement(root, "testsuite", name=_clean(f"{SUITE_PREFIX}.{relation}"))
            props = ET.SubElement(suite, "properties")
            for name, value in (("model", model.get("name")), ("model.fingerprint", model.get("fingerprint")),
                                ("campaign.seed", campaign.get("seed")), ("campaign.strategy", campaign.get("strategy")),
                                ("tool.version", (run.summary.get("tool") or {}).get("version")),
                                ("status", run.summary.get("status")), ("max_error_rate", max_error_rate)):
                if value is not None:
                    ET.SubElement(props, "property", name=name, value=_clean(value))
            suites[relation] = suite
            counts[relation] = [0, 0, 0, 0]
        return suites[relation]

    for (relation, transform), case in _cases(run).items():
        suite = suite_for(relation)
        c = counts[relation]
        c[0] += 1
        tc = ET.SubElement(suite, "testcase", name=_clean(transform), classname=_clean(f"{SUITE_PREFIX}.{relation}"))
        tried, findings = case["tried"], case["findings"]
        if tried == 0 and not findings:
            ET.SubElement(tc, "skipped", message="no input was made with this transform")
            c[3] += 1
            continue
        failed = bool(findings) and (tried is None or len(findings) / tried > max_error_rate)
        if failed:
            message, text = _failure_text(out_dir, relation, transform, tried, findings, max_error_rate)
            failure = ET.SubElement(tc, "failure", message=_clean(message), type="MetamorphicRelationViolated")
            failure.text = _clean(text)
            c[1] += 1
    seeds = (run.summary.get("twin") or {}).get("seed_disagreements") or {}
    if seeds.get("seeds"):
        suite = suite_for(DIFFERENTIAL)
        counts[DIFFERENTIAL][0] += 1
        tc = ET.SubElement(suite, "testcase", name=SEEDS_CASE, classname=_clean(f"{SUITE_PREFIX}.{DIFFERENTIAL}"))
        if seeds["count"] / seeds["seeds"] > max_error_rate:
            failure = ET.SubElement(tc, "failure", type="MetamorphicRelationViolated", message=_clean(
                f"the twin already disagrees with the model on {seeds['count']} of {seeds['seeds']} seed frames, "
                f"before any transform (allowed {max_error_rate:.2%})"))
            failure.text = _clean("seeds: " + ", ".join(seeds.get("ids") or []) + "\n")
            counts[DIFFERENTIAL][1] += 1
    if run.summary.get("status") != "complete":
        relation = next(iter(suites), str(campaign.get("relation", {}).get("name", run.task)))
        suite = suite_for(relation)
        tc = ET.SubElement(suite, "testcase", name="campaign status", classname=_clean(f"{SUITE_PREFIX}.{relation}"))
        error = ET.SubElement(tc, "error", type="IncompleteCampaign",
                              message=_clean(f"campaign status is {run.summary.get('status', 'unknown')!r}, not 'complete': "
                                             "it is still running or was stopped; resume it before trusting these results"))
        error.text = _clean(f"folder: {out_dir}\n")
        counts[relation][0] += 1
        counts[relation][2] += 1
    for relation, suite in suites.items():
        tests, failures, errors, skipped = counts[relation]
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
        suite.set("skipped", str(skipped))
        suite.set("time", f"{duration:.3f}")
        total = JUnitCounts(total.tests + tests, total.failures + failures, total.errors + errors,
                            total.skipped + skipped)
    # The Jenkins junit-10 schema has no `skipped` on <testsuites>; skips are counted per suite.
    root.set("tests", str(total.tests))
    root.set("failures", str(total.failures))
    root.set("errors", str(total.errors))
    root.set("time", f"{duration:.3f}")
    return root, total


def junit_bytes(out_dir: str | Path, max_error_rate: float = 0.0) -> tuple[bytes, JUnitCounts]:
    root, counts = build_junit(out_dir, max_error_rate)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n", counts


def write_junit(out_dir: str | Path, path: str | Path, max_error_rate: float = 0.0) -> JUnitCounts:
    """Write the JUnit XML of a campaign folder atomically to ``path``; return its counts."""
    if not 0.0 <= float(max_error_rate) <= 1.0:
        raise ConfigError(f"max error rate must be in [0, 1], got {max_error_rate}")
    data, counts = junit_bytes(out_dir, float(max_error_rate))
    atomic_write_bytes(Path(path), data)
    return counts


def comparison_junit(comparison) -> tuple[bytes, JUnitCounts]:
    """A baseline comparison (deeptest_iot.results.compare.Comparison) as JUnit XML, for `validate`.

    One test suite ``deeptest-iot.compare``; one test case per compared figure
    (``classname="deeptest-iot.compare.<figure>"``, ``name="<transform or criterion>"``). A
    regression is a failure carrying both values, the change and the allowed change; a figure one
    run lacks is skipped. The verdict matches compare's exit code: failures == regressions."""
    root = ET.Element("testsuites", name=f"{SUITE_PREFIX}.compare")
    suite = ET.SubElement(root, "testsuite", name=f"{SUITE_PREFIX}.compare")
    props = ET.SubElement(suite, "properties")
    for name, value in (("baseline", comparison.baseline), ("candidate", comparison.candidate),
                        *((f"threshold.{k}", v) for k, v in vars(comparison.thresholds).items())):
        ET.SubElement(props, "property", name=name, value=_clean(value))
    tests = failures = skipped = 0
    for row in comparison.rows:
        tests += 1
        tc = ET.SubElement(suite, "testcase", name=_clean(row.scope),
                           classname=_clean(f"{SUITE_PREFIX}.compare.{row.figure.replace(' ', '_')}"))
        if row.verdict.startswith("only in"):
            ET.SubElement(tc, "skipped", message=_clean(f"{row.figure} of {row.scope}: {row.verdict}"))
            skipped += 1
        elif row.regressed:
            direction = "dropped" if row.figure == "coverage" else "rose"
            message = (f"{row.figure} of {row.scope} {direction} from {row.baseline:.6g} to {row.candidate:.6g} "
                       f"(change {row.change:+.6g}, allowed {row.limit:.6g})")
            failure = ET.SubElement(tc, "failure", message=_clean(message), type="Regression")
            failure.text = _clean(f"{message}\nbaseline: {comparison.baseline}\ncandidate: {comparison.candidate}\n")
            failures += 1
    for element in (suite, root):
        element.set("tests", str(tests))
        element.set("failures", str(failures))
        element.set("errors", "0")
    suite.set("skipped", str(skipped))
    ET.indent(root)
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
    return data, JUnitCounts(tests, failures, 0, skipped)


def write_comparison_junit(comparison, path: str | Path) -> JUnitCounts:
    """Write :func:`comparison_junit` atomically to ``path``; return its counts."""
    data, counts = comparison_junit(comparison)
    atomic_write_bytes(Path(path), data)
    return counts
