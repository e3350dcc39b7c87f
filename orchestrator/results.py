"""Run records on disk, schema v1 (orchestrator/schema/results-v1.json).

results/<run-id>/ holds:
- results.jsonl: one line per case, appended (and synced) the moment the case
  is recorded, so a crash, a signal or a full disk loses nothing finished;
- results.json: {"schema_version": 1, "run_id", "cases": [...]}, rewritten
  atomically after each suite and at the end (rebuilt from the .jsonl by
  `RunRecord.load` if the run died before);
- junit.xml, results.ktap (orchestrator.ktap: every suite as KTAP), manifest.json
  and one console log per boot (TuxRun-style).

A case is typed data: verdict, structured outcome, optional measurement.
Comparisons and reports read these fields, never the prose in `reason`.
"""

from __future__ import annotations

import json
import os
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from orchestrator import ktap
from orchestrator.errors import EXIT_INFRA, EXIT_OK, EXIT_TEST_FAILURE

# PASS and Measurement too: suites kept outside the rig import them from here, where they
# were defined before orchestrator.verdicts
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP, Case, Measurement  # noqa: F401

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / f"results-v{SCHEMA_VERSION}.json"
# The pseudo-suite of cases that behave differently than on the baseline kernel.
DIFFERS = "differs"


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class RunRecord:
    def __init__(self, results_dir: Path, run_id: str | None = None) -> None:
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
        self.dir = results_dir / self.run_id
        suffix = 1
        while self.dir.exists():
            suffix += 1
            self.dir = results_dir / f"{self.run_id}-{suffix}"
        self.dir.mkdir(parents=True)
        self.run_id = self.dir.name
        self.cases: list[Case] = []
        self.manifest: dict[str, Any] = {}
        self._lock = threading.Lock()  # kernels run side by side

    def console_log(self, kernel: str, boot: str = "boot") -> Path:
        return self.dir / kernel / f"{boot}.console.log"

    def relative(self, path: Path) -> str:
        """Paths in results.json are relative to the run directory (it can be moved)."""
        try:
            return str(path.relative_to(self.dir))
        except ValueError:
            return str(path)

    def add(self, case: Case) -> None:
        line = json.dumps(case.to_json()) + "\n"
        with self._lock, (self.dir / "results.jsonl").open("a") as sink:
            self.cases.append(case)
            sink.write(line)
            sink.flush()
            os.fsync(sink.fileno())

    def set_manifest(self, **items: Any) -> None:
        with self._lock:
            self.manifest.update(items)
            text = json.dumps(self.manifest, indent=2) + "\n"
            _write_atomic(self.dir / "manifest.json", text)

    def order(self, kernels: list[str]) -> None:
        """Cases by kernel in the run's order (kernels finish in any order side by
        side; the first is the baseline of every comparison), then by suite order."""
        rank = {name: i for i, name in enumerate(kernels)}
        with self._lock:
            self.cases.sort(key=lambda c: (c.suite == DIFFERS, rank.get(c.kernel, len(rank))))

    def set_target(self, kernel: str, target: str, **items: Any) -> None:
        """What manifest.json says of one of a kernel's targets (a boot configuration)."""
        with self._lock:
            self.manifest["kernels"][kernel]["targets"].setdefault(target, {}).update(items)
            text = json.dumps(self.manifest, indent=2) + "\n"
            _write_atomic(self.dir / "manifest.json", text)

    def flush(self) -> None:
        """results.json, junit.xml and results.ktap from every case so far."""
        with self._lock:
            cases = list(self.cases)
            _write_atomic(self.dir / "results.json", results_json(self.run_id, cases))
            _write_atomic(self.dir / "junit.xml", junit_xml(cases))
            _write_atomic(self.dir / "results.ktap", ktap.write(ktap.from_cases(cases)))

    def exit_code(self) -> int:
        return exit_code(self.cases)


def results_json(run_id: str, cases: list[Case]) -> str:
    payload = {"schema_version": SCHEMA_VERSION, "run_id": run_id,
               "cases": [c.to_json() for c in cases]}
    return json.dumps(payload, indent=1) + "\n"


def load_cases(run_dir: Path) -> list[Case]:
    """A run's cases: results.json, or the .jsonl a run that died left behind
    (a torn last line, from a kill -9 or a full disk, is skipped)."""
    done, lines = run_dir / "results.json", run_dir / "results.jsonl"
    if done.is_file():
        data = json.loads(done.read_text())
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{done}: schema_version {data.get('schema_version')!r},"
                             f" this rig reads {SCHEMA_VERSION}")
        return [Case.from_json(c) for c in data["cases"]]
    cases = []
    for line in lines.read_text().splitlines():
        try:
            cases.append(Case.from_json(json.loads(line)))
        except ValueError:  # the line being written when the run was killed
            continue
    return cases


def exit_code(cases: list[Case]) -> int:
    verdicts = {c.verdict for c in cases}
    if ERROR in verdicts:
        return EXIT_INFRA
    if FAIL in verdicts:
        return EXIT_TEST_FAILURE
    return EXIT_OK


def junit_xml(cases: list[Case]) -> str:
    suites = ET.Element("testsuites", name="riscv-kvm-rig")
    by_suite: dict[str, list[Case]] = {}
    for case in cases:
        by_suite.setdefault(f"{case.kernel}.{case.suite}", []).append(case)
    tags = {FAIL: "failure", ERROR: "error", KNOWN_DEVIATION: "skipped", SKIP: "skipped"}
    for name, members in by_suite.items():
        suite = ET.SubElement(
            suites, "testsuite", name=name, tests=str(len(members)),
            failures=str(sum(c.verdict == FAIL for c in members)),
            errors=str(sum(c.verdict == ERROR for c in members)),
            skipped=str(sum(c.verdict in (KNOWN_DEVIATION, SKIP) for c in members)),
        )
        for case in members:
            element = ET.SubElement(suite, "testcase", classname=name, name=case.id,
                                    time=f"{case.duration:.3f}")
            if case.verdict in tags:
                message = case.reason if case.verdict != KNOWN_DEVIATION else (
                    f"known deviation {case.rule}: {case.reason}")
                detail = ET.SubElement(element, tags[case.verdict], message=message)
                detail.text = (f"outcome: {json.dumps(case.outcome)}\nexpected: {case.expected}"
                               + (f"\nlog: {case.log}" if case.log else "")
                               + (f"\nrerun: {case.rerun}" if case.rerun else ""))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
