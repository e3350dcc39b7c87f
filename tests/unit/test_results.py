"""Run records (schema v1): each case on disk as it arrives, results.json
valid against the shipped JSON Schema, JUnit, exit codes, the summary table."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import xmlschema

from orchestrator import report, results
from orchestrator.errors import EXIT_INFRA, EXIT_OK, EXIT_TEST_FAILURE
from orchestrator.results import RunRecord
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP, Case, Measurement

SCHEMA = json.loads(results.SCHEMA_PATH.read_text())


def case(verdict: str, kernel: str = "k1", suite: str = "kvm-host", name: str = "a") -> Case:
    bad = verdict in (FAIL, ERROR)
    return Case(id=f"{suite}/{name}", suite=suite, kernel=kernel, verdict=verdict,
                reason="broken" if bad else "", outcome={"kind": "x"},
                rule="some-rule" if verdict != PASS else None,
                rerun="orchestrator run --only x" if bad else "")


def test_each_case_is_on_disk_as_soon_as_it_is_added(tmp_path: Path) -> None:
    record = RunRecord(tmp_path, "run1")
    record.add(case(PASS))
    record.add(case(FAIL, name="b"))
    assert not (record.dir / "results.json").exists()  # written per suite and at the end
    assert [c.id for c in results.load_cases(record.dir)] == ["kvm-host/a", "kvm-host/b"]
    record.flush()
    assert [c.id for c in results.load_cases(record.dir)] == ["kvm-host/a", "kvm-host/b"]
    assert not list(record.dir.glob("*.partial"))


def test_results_json_follows_the_schema_and_round_trips(tmp_path: Path) -> None:
    record = RunRecord(tmp_path, "run1")
    measured = Case(id="latency/x", suite="latency", kernel="k1", verdict=PASS,
                    outcome={"kind": "figure"},
                    measurement=Measurement(908.0, "instructions", "exact", [[908.0, 946.0]]))
    for c in (case(PASS), case(KNOWN_DEVIATION, name="d"), case(ERROR, name="e"), measured):
        record.add(c)
    record.flush()
    data = json.loads((record.dir / "results.json").read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["schema_version"] == 1
    assert results.load_cases(record.dir)[-1] == measured


@pytest.mark.parametrize("broken", [
    {"verdict": "passed"},
    {"verdict": "known-deviation", "rule": None},
    {"verdict": "fail", "rerun": ""},
    {"outcome": {}},
    {"measurement": {"value": 1, "unit": "ns", "method": "guess", "samples": []}},
])
def test_schema_rejects_malformed_cases(broken: dict) -> None:
    data = {"schema_version": 1, "run_id": "r",
            "cases": [{**case(FAIL).to_json(), **broken}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_run_ids_never_overwrite(tmp_path: Path) -> None:
    assert RunRecord(tmp_path, "same").dir != RunRecord(tmp_path, "same").dir


def test_exit_codes(tmp_path: Path) -> None:
    record = RunRecord(tmp_path)
    record.add(case(PASS))
    assert record.exit_code() == EXIT_OK
    record.add(case(FAIL, name="b"))
    assert record.exit_code() == EXIT_TEST_FAILURE
    record.add(case(ERROR, name="c"))
    assert record.exit_code() == EXIT_INFRA


JUNIT_SCHEMA = Path(__file__).parent / "schema" / "junit.xsd"


def test_junit_marks_failures_errors_and_deviations() -> None:
    tree = ET.fromstring(results.junit_xml([case(PASS), case(FAIL, name="b"),
                                            case(ERROR, "k2", "counters", "c"),
                                            case(KNOWN_DEVIATION, name="d")]))
    suites = {s.get("name"): s for s in tree.iter("testsuite")}
    assert suites["k1.kvm-host"].get("failures") == "1"
    assert suites["k1.kvm-host"].get("skipped") == "1"
    assert suites["k2.counters"].get("errors") == "1"
    assert tree.find(".//testcase[@name='kvm-host/b']/failure").get("message") == "broken"
    skipped = tree.find(".//testcase[@name='kvm-host/d']/skipped").get("message")
    assert skipped.startswith("known deviation: some-rule")


def _deviation_and_skip() -> list[Case]:
    rule = "kvm-unconfigured-counter-traps"
    return [
        Case("counters/VS/hpmcounter3", "counters", KNOWN_DEVIATION, kernel="k1", rule=rule,
             reason=f"{rule}: a VS read of an implemented counter returns a value",
             outcome={"kind": "exception"}, duration=0.25),
        Case("kselftest-kvm/sbi_pmu_test", "kselftest-kvm", KNOWN_DEVIATION, kernel="k1",
             rule="sbi_pmu_test.c", reason="needs Sscofpmf", outcome={"kind": "x"},
             duration=1.5),
        Case("kselftest-kvm/steal_time", "kselftest-kvm", SKIP, kernel="k1",
             reason="SBI STA not available", outcome={"kind": "skipped"}, duration=0.5),
    ]


def test_junit_names_the_rule_once_and_tells_deviations_from_skips() -> None:
    tree = ET.fromstring(results.junit_xml(_deviation_and_skip()))
    trap = tree.find(".//testcase[@name='counters/VS/hpmcounter3']/skipped")
    assert trap.get("message") == ("known deviation: kvm-unconfigured-counter-traps: a VS read"
                                   " of an implemented counter returns a value")
    assert trap.get("type") == KNOWN_DEVIATION
    listed = tree.find(".//testcase[@name='kselftest-kvm/sbi_pmu_test']/skipped")
    assert listed.get("message") == "known deviation: sbi_pmu_test.c: needs Sscofpmf"
    skip = tree.find(".//testcase[@name='kselftest-kvm/steal_time']")
    assert skip.find("skipped").get("type") == SKIP
    assert skip.find("skipped").get("message") == "SBI STA not available"
    verdicts = {c.get("name"): c.find("properties/property[@name='verdict']").get("value")
                for c in tree.iter("testcase")}
    assert verdicts == {"counters/VS/hpmcounter3": KNOWN_DEVIATION,
                        "kselftest-kvm/sbi_pmu_test": KNOWN_DEVIATION,
                        "kselftest-kvm/steal_time": SKIP}


def test_junit_suites_carry_time_and_timestamp_and_cases_their_duration(
        tmp_path: Path) -> None:
    record = RunRecord(tmp_path, "run1")
    for c in _deviation_and_skip():
        record.add(c)
    record.flush()
    tree = ET.parse(record.dir / "junit.xml").getroot()
    suites = {s.get("name"): s for s in tree.iter("testsuite")}
    assert suites["k1.kselftest-kvm"].get("time") == "2.000"
    assert tree.get("time") == "2.250" and tree.get("tests") == "3"
    for suite in suites.values():
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp"))
    assert [c.get("time") for c in tree.iter("testcase")] == ["0.250", "1.500", "0.500"]


def test_junit_is_valid_against_the_junit_schema(tmp_path: Path) -> None:
    schema = xmlschema.XMLSchema(JUNIT_SCHEMA)
    record = RunRecord(tmp_path, "run1")
    for c in (case(PASS), case(FAIL, name="b"), case(ERROR, "k2", "counters", "c"),
              *_deviation_and_skip()):
        record.add(c)
    record.flush()
    schema.validate(record.dir / "junit.xml")


def test_the_junit_schema_rejects_what_ci_services_cannot_read() -> None:
    """The schema is a real check: a count that is no number, two outcomes in one case,
    or a case without its time are refused."""
    schema = xmlschema.XMLSchema(JUNIT_SCHEMA)
    good = results.junit_xml([case(FAIL, name="b")])
    assert schema.is_valid(good)
    for broken in (good.replace('failures="1"', 'failures="one"', 1),
                   good.replace("</failure>", "</failure><error message='x'/>"),
                   re.sub(r'(<testcase [^>]*) time="[^"]*"', r"\1", good)):
        assert broken != good and not schema.is_valid(broken)


def test_summary_counts_per_kernel_and_suite() -> None:
    table = report.summary_table([case(PASS), case(FAIL, name="b"), case(PASS, "k2")])
    lines = table.splitlines()
    assert lines[0].split() == ["kernel", "kvm-host"]
    assert "1/2 pass, 1 fail" in lines[2]
    assert "1/1 pass" in lines[3]


def test_the_schema_allows_exactly_the_verdicts_the_rig_defines() -> None:
    from orchestrator.verdicts import VERDICTS

    case_schema = SCHEMA["$defs"]["case"]["properties"]["verdict"]
    assert sorted(case_schema["enum"]) == sorted(VERDICTS)
