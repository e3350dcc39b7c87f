"""Run records: written as they arrive, JUnit, exit codes, summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrator import results
from orchestrator.errors import EXIT_INFRA, EXIT_OK, EXIT_TEST_FAILURE
from orchestrator.results import ERROR, FAIL, PASS, Case, RunRecord


def case(verdict: str, kernel: str = "k1", scenario: str = "kvm-host", name: str = "a") -> Case:
    return Case(id=f"{scenario}/{name}", kernel=kernel, scenario=scenario, verdict=verdict,
                reason="" if verdict == PASS else "broken")


def test_each_case_is_on_disk_as_soon_as_it_is_added(tmp_path: Path) -> None:
    record = RunRecord(tmp_path, "run1")
    record.add(case(PASS))
    on_disk = json.loads((tmp_path / "run1" / "results.json").read_text())
    assert [c["verdict"] for c in on_disk["cases"]] == [PASS]
    record.add(case(FAIL, name="b"))
    on_disk = json.loads((tmp_path / "run1" / "results.json").read_text())
    assert [c["id"] for c in on_disk["cases"]] == ["kvm-host/a", "kvm-host/b"]


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


def test_junit_marks_failures_and_errors() -> None:
    tree = ET.fromstring(results.junit_xml([case(PASS), case(FAIL, name="b"),
                                            case(ERROR, "k2", "boot", "boot")]))
    suites = {s.get("name"): s for s in tree.iter("testsuite")}
    assert suites["k1.kvm-host"].get("failures") == "1"
    assert suites["k2.boot"].get("errors") == "1"
    assert tree.find(".//testcase[@name='kvm-host/b']/failure").get("message") == "broken"


def test_summary_counts_per_kernel_and_scenario() -> None:
    table = results.summary_table([case(PASS), case(FAIL, name="b"), case(PASS, "k2")])
    lines = table.splitlines()
    assert lines[0].split() == ["kernel", "kvm-host"]
    assert "1/2 pass, 1 fail" in lines[2]
    assert "1/1 pass" in lines[3]
