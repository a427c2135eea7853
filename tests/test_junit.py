"""JUnit XML: valid against the CI tools' schema (tests/data/junit.xsd), one test case per relation
and transform, failures by the error-rate rule, skips, incomplete campaigns as errors.

lxml is not installed in the project's environment, so the schema is checked by a small validator
below that reads tests/data/junit.xsd itself (elements, content models as sequences and choices
with occurrence bounds, required and allowed attributes, pattern types, mixed content).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from deeptest_iot.cli import main
from deeptest_iot.errors import ConfigError, InputError
from deeptest_iot.results.junit import build_junit, junit_bytes, write_junit

from results_fixtures import make_run, steering_finding

XSD = Path(__file__).resolve().parent / "data" / "junit.xsd"
XS = "{http://www.w3.org/2001/XMLSchema}"


class MiniSchema:
    """The XSD subset junit.xsd uses, enough to validate documents against it."""

    def __init__(self, path: Path):
        root = ET.parse(path).getroot()
        self.patterns = {st.get("name"): st.find(f"{XS}restriction/{XS}pattern").get("value")
                         for st in root.findall(f"{XS}simpleType")}
        self.decls = {el.get("name"): el for el in root.findall(f"{XS}element")}

    @staticmethod
    def _occurs(node, body: str) -> str:
        low = int(node.get("minOccurs", "1"))
        high = node.get("maxOccurs", "1")
        return f"(?:{body}){{{low},{'' if high == 'unbounded' else int(high)}}}"

    def _model(self, node) -> str:
        """A regex over child tokens '<name>' for an xs:sequence / xs:choice / xs:element ref."""
        if node.tag == f"{XS}element":
            return self._occurs(node, re.escape(f"<{node.get('ref')}>"))
        parts = [self._model(child) for child in node if child.tag in (f"{XS}element", f"{XS}sequence", f"{XS}choice")]
        body = "".join(parts) if node.tag == f"{XS}sequence" else "|".join(parts)
        return self._occurs(node, body)

    def errors(self, elem) -> list[str]:
        decl = self.decls.get(elem.tag)
        if decl is None:
            return [f"<{elem.tag}> is not declared"]
        found = []
        ctype = decl.find(f"{XS}complexType")
        if ctype is None:  # a simple xs:string element: text only
            if len(elem) or elem.attrib:
                found.append(f"<{elem.tag}> must hold text only")
            return found
        attrs = {a.get("name"): a for a in ctype.findall(f"{XS}attribute")}
        for name, value in elem.attrib.items():
            if name not in attrs:
                found.append(f"<{elem.tag}> has undeclared attribute {name}")
                continue
            pattern = self.patterns.get(attrs[name].get("type"))
            if pattern is not None and not re.fullmatch(pattern, value):
                found.append(f"<{elem.tag} {name}={value!r}> does not match {pattern}")
        for name, a in attrs.items():
            if a.get("use") == "required" and name not in elem.attrib:
                found.append(f"<{elem.tag}> lacks required attribute {name}")
        models = [c for c in ctype if c.tag in (f"{XS}sequence", f"{XS}choice")]
        regex = self._model(models[0]) if models else ""
        tokens = "".join(f"<{child.tag}>" for child in elem)
        if not re.fullmatch(regex, tokens):
            found.append(f"<{elem.tag}> children {tokens or '(none)'} do not fit its content model")
        if ctype.get("mixed") != "true":
            texts = [elem.text] + [child.tail for child in elem]
            if any(t and t.strip() for t in texts):
                found.append(f"<{elem.tag}> may not contain text")
        for child in elem:
            found.extend(self.errors(child))
        return found


@pytest.fixture(scope="module")
def schema():
    return MiniSchema(XSD)


@pytest.fixture
def run(tmp_path):
    """blur_box is one of the campaign's transforms but made no input."""
    findings = [steering_finding(0, "rain", 0.3), steering_finding(1, "rain", 0.8),
                steering_finding(2, "fog", 0.1), steering_finding(3, "hflip", 0.5)]
    return make_run(tmp_path / "run", findings, tried={"rain": 80, "fog": 60, "hflip": 60},
                    model={"name": "<dave & \"2\">\x01"}, options={"transforms": ["rain", "fog", "hflip", "blur_box"]})


def parse(out_dir, rate=0.0):
    data, counts = junit_bytes(out_dir, rate)
    return ET.fromstring(data), counts


def cases(root):
    return {tc.get("name"): tc for tc in root.iter("testcase")}


def test_the_validator_rejects_what_the_schema_forbids(schema):
    assert schema.errors(ET.fromstring('<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
                                       '<testcase name="x"/></testsuite></testsuites>')) == []
    assert schema.errors(ET.fromstring('<testsuites><testsuite name="a" tests="1" failures="0"/></testsuites>'))
    assert schema.errors(ET.fromstring('<testsuites><testsuite name="a" tests="x" failures="0" errors="0"/>'
                                       '</testsuites>'))
    assert schema.errors(ET.fromstring('<testsuites skipped="1"/>'))
    assert schema.errors(ET.fromstring('<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
                                       '<testcase name="x"/><properties/></testsuite></testsuites>'))
    assert schema.errors(ET.fromstring('<testsuites><testcase name="x"/></testsuites>'))


def test_document_is_valid_and_counts_add_up(run, schema):
    root, counts = parse(run)
    assert schema.errors(root) == []
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["deeptest-iot.steering"]
    assert set(cases(root)) == {"rain", "fog", "hflip", "blur_box"}
    assert all(tc.get("classname") == "deeptest-iot.steering" for tc in root.iter("testcase"))
    assert (counts.tests, counts.failures, counts.errors, counts.skipped) == (4, 3, 0, 1)
    assert suites[0].get("tests") == root.get("tests") == "4"
    assert suites[0].get("failures") == root.get("failures") == "3"
    assert suites[0].get("skipped") == "1"
    assert cases(root)["blur_box"].find("skipped") is not None
    assert suites[0].get("time") == "3.500"
    props = {p.get("name"): p.get("value") for p in suites[0].iter("property")}
    assert props["model"] == "<dave & \"2\">\ufffd"  # escaped by the writer, control character replaced


def test_failure_carries_counts_rate_and_worst_images(run):
    root, _ = parse(run)
    failure = cases(root)["rain"].find("failure")
    assert "2 of 80" in failure.get("message") and "2.50%" in failure.get("message")
    text = failure.text
    assert "findings: 2" in text and "inputs tried: 80" in text and "max violation: 0.8" in text
    worst, second = text.index("f000001_trans.png"), text.index("f000000_trans.png")
    assert worst < second  # largest violation first
    assert str(run / "images" / "f000001_orig.png") in text


def test_error_rate_threshold_decides_failures(run):
    root, counts = parse(run, rate=0.02)
    assert counts.failures == 1
    assert cases(root)["rain"].find("failure") is not None  # 2.5% > 2%
    assert cases(root)["fog"].find("failure") is None  # 1.7% <= 2%
    _, counts = parse(run, rate=0.5)
    assert counts.passed


def test_incomplete_campaign_is_an_error(tmp_path, schema):
    run = make_run(tmp_path / "run", [], status="running")
    root, counts = parse(run)
    assert schema.errors(root) == []
    assert counts.errors == 1 and not counts.passed
    assert cases(root)["campaign status"].find("error").get("type") == "IncompleteCampaign"


def test_write_junit_and_cli(run, tmp_path, schema):
    out = tmp_path / "junit.xml"
    counts = write_junit(run, out, max_error_rate=0.02)
    assert counts.failures == 1
    assert schema.errors(ET.parse(out).getroot()) == []
    with pytest.raises(ConfigError):
        write_junit(run, out, max_error_rate=2.0)
    with pytest.raises(InputError):
        build_junit(tmp_path / "missing")
    runner = CliRunner()
    result = runner.invoke(main, ["junit", str(run), "--out", str(tmp_path / "j.xml")])
    assert result.exit_code == 0, result.output
    assert "4 test cases, 3 failed" in result.output
    result = runner.invoke(main, ["junit", str(tmp_path / "missing"), "--out", str(tmp_path / "k.xml")])
    assert result.exit_code == 2 and "no such folder" in result.output


def test_test_cases_are_single_transforms_over_chains(tmp_path, schema):
    findings = [steering_finding(0, "rain+fog", 0.4), steering_finding(1, "rain", 0.2)]
    run = make_run(tmp_path / "run", findings, tried={"rain": 10, "rain+fog": 5, "fog": 5},
                   options={"transforms": ["rain", "fog"]})
    root, counts = parse(run)
    assert schema.errors(root) == []
    assert set(cases(root)) == {"rain", "fog"}
    rain, fog = cases(root)["rain"].find("failure"), cases(root)["fog"].find("failure")
    assert "2 of 15" in rain.get("message") and "1 of 10" in fog.get("message")
    assert "f000000 [rain+fog]" in fog.text


def test_comparison_junit_is_valid_and_fails_on_regressions(tmp_path, schema):
    from deeptest_iot.results.compare import compare_runs
    from deeptest_iot.results.junit import write_comparison_junit

    base = make_run(tmp_path / "base", [steering_finding(0, "rain", 0.2)], tried={"rain": 100, "fog": 100})
    cand = make_run(tmp_path / "cand", [steering_finding(i, "rain", 0.2) for i in range(6)],
                    tried={"rain": 100, "fog": 100, "snow": 5})
    comparison = compare_runs(base, cand)
    counts = write_comparison_junit(comparison, tmp_path / "cmp.xml")
    root = ET.parse(tmp_path / "cmp.xml").getroot()
    assert schema.errors(root) == []
    assert counts.failures == len(comparison.regressions) == 2
    failed = [tc for tc in root.iter("testcase") if tc.find("failure") is not None]
    assert [(tc.get("classname"), tc.get("name")) for tc in failed] == [
        ("deeptest-iot.compare.error_rate", "overall"), ("deeptest-iot.compare.error_rate", "rain")]
    assert "from 0.01 to 0.06" in failed[1].find("failure").get("message")
    assert counts.skipped == 2  # snow's error rate and mean violation: only in the candidate
