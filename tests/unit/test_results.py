"""Run records (schema v1): each case on disk as it arrives, results.json
valid against the shipped JSON Schema, JUnit, exit codes, the summary table."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from orchestrator import report, results
from orchestrator.errors import EXIT_INFRA, EXIT_OK, EXIT_TEST_FAILURE
from orchestrator.results import RunRecord
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, Case, Measurement

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
    assert skipped.startswith("known deviation some-rule")


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
