"""junit.xml loads in common CI viewers: the real hypotheses suite, run by pytester on a tiny random
model, writes a report that validates against the common JUnit XML schema (tests/plugin/data/junit.xsd) and
carries each test's numbers as properties."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import xmlschema

SCHEMA = Path(__file__).parent / "data" / "junit.xsd"
HYPOTHESIS_TEST = re.compile(r"test_H[1-5](\[\w+\])?$")
COMPONENT_TEST = re.compile(r"test_H([1-5])_(?!figure)\w+\[(.+)\]$")


def _properties(case: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in case.iter("property")}


def test_junit_validates_and_carries_verdicts_and_component_numbers(suite, tmp_path):
    schema = xmlschema.XMLSchema(str(SCHEMA))
    # The tiny model has no expectations source, so its first run has only hypothesis tests, and they
    # fail (inconclusive, expected supported): the schema sees <failure>. Against that run as a
    # baseline every component is tested, as in the model-gate workflow.
    first, gate = tmp_path / "first", tmp_path / "gate"
    suite("--report-dir", str(first))
    result = suite("--report-dir", str(gate), "--baseline", str(first / "verdicts.json"))
    assert result.ret == 0
    assert ET.parse(first / "junit.xml").getroot().find(".//failure") is not None
    for report in (first, gate):
        schema.validate(str(report / "junit.xml"))

    verdicts = json.loads((gate / "verdicts.json").read_text())["hypotheses"]
    cases = list(ET.parse(gate / "junit.xml").getroot().iter("testcase"))
    hypotheses = [c for c in cases if HYPOTHESIS_TEST.match(c.get("name"))]
    components = [c for c in cases if COMPONENT_TEST.match(c.get("name"))]
    assert len(hypotheses) == 5
    for case in hypotheses:
        props = _properties(case)
        assert {"verdict", "expected"} <= set(props), case.get("name")
        assert props["verdict"] == verdicts[case.get("name")[5:7]]["verdict"]
    assert {COMPONENT_TEST.match(c.get("name")).group(1) for c in components} >= {"1", "2", "3", "5"}
    for case in components:
        props = _properties(case)
        assert {"class", "expected", "effect", "p_adj"} <= set(props), case.get("name")
        hypothesis, component = COMPONENT_TEST.match(case.get("name")).groups()
        assert props["class"] == verdicts[f"H{hypothesis}"]["components"][component]["class"]
        float(props["effect"]), float(props["p_adj"])  # numbers, as a viewer's column would read them
