"""Run records on disk: results/<run-id>/ with results.json, junit.xml,
manifest.json and one console log per boot (TuxRun-style outputs).

Every case is written to disk the moment it is recorded, so whatever
fails later (a crash, Ctrl-C, a hung boot) loses nothing gathered before.
"""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import EXIT_INFRA, EXIT_OK, EXIT_TEST_FAILURE

PASS, FAIL, ERROR = "pass", "fail", "error"
# The behaviour KVM is documented to have where it departs from the spec:
# reported with the rule it breaks, never counted as a plain pass.
KNOWN_DEVIATION = "known-deviation"
VERDICTS = (PASS, KNOWN_DEVIATION, FAIL, ERROR)


@dataclass
class Case:
    """One judged observation; verdict is one of VERDICTS (error: infrastructure)."""

    id: str
    kernel: str
    scenario: str
    verdict: str
    observed: Any = None
    expected: Any = None
    reason: str = ""
    seconds: float = 0.0
    log: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


class RunRecord:
    def __init__(self, results_dir: Path, run_id: str | None = None) -> None:
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
        self.dir = results_dir / self.run_id
        suffix = 1
        while self.dir.exists():
            suffix += 1
            self.dir = results_dir / f"{self.run_id}-{suffix}"
        self.dir.mkdir(parents=True)
        self.cases: list[Case] = []
        self.manifest: dict[str, Any] = {}

    def console_log(self, kernel: str, boot: str = "boot") -> Path:
        return self.dir / kernel / f"{boot}.console.log"

    def add(self, case: Case) -> None:
        self.cases.append(case)
        self._flush()

    def set_manifest(self, **items: Any) -> None:
        self.manifest.update(items)
        _write_atomic(self.dir / "manifest.json", json.dumps(self.manifest, indent=2) + "\n")

    def _flush(self) -> None:
        payload = {"run_id": self.run_id, "cases": [asdict(c) for c in self.cases]}
        _write_atomic(self.dir / "results.json", json.dumps(payload, indent=2) + "\n")
        _write_atomic(self.dir / "junit.xml", junit_xml(self.cases))

    def exit_code(self) -> int:
        verdicts = {c.verdict for c in self.cases}
        if ERROR in verdicts:
            return EXIT_INFRA
        if FAIL in verdicts:
            return EXIT_TEST_FAILURE
        return EXIT_OK


def junit_xml(cases: list[Case]) -> str:
    suites = ET.Element("testsuites", name="riscv-kvm-rig")
    by_suite: dict[str, list[Case]] = {}
    for case in cases:
        by_suite.setdefault(f"{case.kernel}.{case.scenario}", []).append(case)
    for name, members in by_suite.items():
        suite = ET.SubElement(
            suites, "testsuite", name=name, tests=str(len(members)),
            failures=str(sum(c.verdict == FAIL for c in members)),
            errors=str(sum(c.verdict == ERROR for c in members)),
            skipped=str(sum(c.verdict == KNOWN_DEVIATION for c in members)),
        )
        for case in members:
            element = ET.SubElement(suite, "testcase", classname=name, name=case.id,
                                    time=f"{case.seconds:.3f}")
            if case.verdict in (FAIL, ERROR, KNOWN_DEVIATION):
                tag = {FAIL: "failure", ERROR: "error", KNOWN_DEVIATION: "skipped"}[case.verdict]
                detail = ET.SubElement(element, tag, message=case.reason)
                detail.text = (f"observed: {case.observed!r}\nexpected: {case.expected!r}"
                               + (f"\nlog: {case.log}" if case.log else ""))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def summary_table(cases: list[Case]) -> str:
    """Kernels as rows, scenarios as columns: passed/total, with fail/error counts."""
    kernels = list(dict.fromkeys(c.kernel for c in cases))
    scenarios = list(dict.fromkeys(c.scenario for c in cases))
    rows = [["kernel", *scenarios]]
    for kernel in kernels:
        row = [kernel]
        for scenario in scenarios:
            members = [c for c in cases if c.kernel == kernel and c.scenario == scenario]
            passed = sum(c.verdict == PASS for c in members)
            cell = f"{passed}/{len(members)} pass" if members else "-"
            for verdict in (KNOWN_DEVIATION, FAIL, ERROR):
                count = sum(c.verdict == verdict for c in members)
                if count:
                    cell += f", {count} {verdict}"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
