"""Run records on disk, schema v1 (orchestrator/schema/results-v1.json).

results/<run-id>/ holds:
- results.jsonl: one line per case, appended (and synced) the moment the case
  is recorded, so a crash, a signal or a full disk loses nothing finished;
- results.json: {"schema_version": 1, "run_id", "cases": [...]}, rewritten
  atomically after each suite and at the end (rebuilt from the .jsonl by
  `RunRecord.load` if the run died before);
- junit.xml, results.ktap (orchestrator.ktap: every suite as KTAP), manifest.json
  and one console log per boot (TuxRun-style);
- kcidb.json (orchestrator.kcidb) once the run is over.

A run is complete when its manifest says when it finished (`finished`, set by
`RunRecord.finish` after the last case and report): a run without it is still
being written, or died, and is never a nightly's baseline. results/latest
points at the last run that finished.

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

from orchestrator import kcidb, ktap, validate
from orchestrator.errors import EXIT_INFRA, EXIT_OK, EXIT_TEST_FAILURE, BadInput
from orchestrator.ktap import group_name

# PASS and Measurement too: suites kept outside the rig import them from here, where they
# were defined before orchestrator.verdicts
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP, Case, Measurement  # noqa: F401

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / f"results-v{SCHEMA_VERSION}.json"
# The pseudo-suite of cases that behave differently than on the baseline kernel.
DIFFERS = "differs"
LATEST = "latest"  # results/latest: the last run that finished


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
        # when each kernel's suite began (UTC, ISO 8601): JUnit's timestamps
        self.started: dict[str, str] = {}
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
            self.started.setdefault(group_name(case), _utc(time.time() - case.duration))
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
            _write_atomic(self.dir / "junit.xml", junit_xml(cases, dict(self.started)))
            _write_atomic(self.dir / "results.ktap", ktap.write(ktap.from_cases(cases)))

    def finish(self) -> None:
        """Mark the run complete (manifest `finished`), write kcidb.json and point
        results/latest at it; after the last case and report only."""
        self.set_manifest(finished=_utc(time.time()))
        _write_atomic(self.dir / kcidb.FILE_NAME, json.dumps(
            kcidb.document(self.run_id, self.cases, self.manifest), indent=1) + "\n")
        latest = self.dir.parent / LATEST
        partial = latest.with_name(f".{LATEST}.{os.getpid()}")
        partial.unlink(missing_ok=True)
        partial.symlink_to(self.dir.name)
        os.replace(partial, latest)  # scripts never see it missing

    def exit_code(self) -> int:
        return exit_code(self.cases)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """run_dir's manifest.json; {} if there is none or it is not a JSON object
    (a run's directory is foreign input)."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def finished(run_dir: Path) -> bool:
    """Whether the run in run_dir completed (its manifest says when it finished)."""
    return bool(read_manifest(run_dir).get("finished"))


def results_json(run_id: str, cases: list[Case]) -> str:
    payload = {"schema_version": SCHEMA_VERSION, "run_id": run_id,
               "cases": [c.to_json() for c in cases]}
    return json.dumps(payload, indent=1) + "\n"


MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "manifest-v1.json"
CASE_SCHEMA = f"{SCHEMA_PATH.name}#/$defs/case"


def load_cases(run_dir: Path) -> list[Case]:
    """A run's cases: results.json, or the .jsonl a run that died left behind
    (a torn last line, from a kill -9 or a full disk, is skipped). A run
    directory is foreign input: BadInput names the file and field of anything
    its schema does not allow."""
    validate.name(run_dir.resolve().name, f"{run_dir}: the run id (the directory's name)")
    done, lines = run_dir / "results.json", run_dir / "results.jsonl"
    if done.exists() or not lines.exists():
        validate.inside(run_dir, done, str(done))
        data = validate.load_json(done, SCHEMA_PATH.name)
        return [Case.from_json(c) for c in data["cases"]]
    validate.inside(run_dir, lines, str(lines))
    cases = []
    text = validate.read_text(lines).splitlines()
    for number, line in enumerate(text, 1):
        try:
            data = validate.parse_json(line, f"{lines} line {number}")
        except BadInput:
            if number == len(text):  # the line being written when the run was killed
                continue
            raise
        cases.append(Case.from_json(validate.check(
            data, CASE_SCHEMA, f"{lines} line {number}")))
    return cases


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """A run's manifest.json, checked against its schema."""
    path = run_dir / MANIFEST
    validate.inside(run_dir, path, str(path))
    return validate.load_json(path, MANIFEST_SCHEMA)


def exit_code(cases: list[Case]) -> int:
    verdicts = {c.verdict for c in cases}
    if ERROR in verdicts:
        return EXIT_INFRA
    if FAIL in verdicts:
        return EXIT_TEST_FAILURE
    return EXIT_OK


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


# JUnit's element for each verdict that is not a pass, and the `type` that tells a
# known deviation (the suite ran the case and KVM broke a documented rule) from a
# case that did not run (skip); dashboards show both as skipped.
_JUNIT_TAGS = {FAIL: "failure", ERROR: "error", KNOWN_DEVIATION: "skipped", SKIP: "skipped"}


def _junit_message(case: Case) -> str:
    if case.verdict == KNOWN_DEVIATION:
        return f"known deviation: {case.reason_with_rule}"
    return case.reason


def _junit_case(suite: ET.Element, name: str, case: Case) -> None:
    element = ET.SubElement(suite, "testcase", classname=name, name=case.id,
                            time=f"{case.duration:.3f}")
    properties = ET.SubElement(element, "properties")
    for key, value in (("verdict", case.verdict), ("rule", case.rule or "")):
        if value:
            ET.SubElement(properties, "property", name=key, value=value)
    if case.verdict not in _JUNIT_TAGS:
        return
    detail = ET.SubElement(element, _JUNIT_TAGS[case.verdict], message=_junit_message(case),
                           type=case.verdict)
    detail.text = (f"outcome: {json.dumps(case.outcome)}\nexpected: {case.expected}"
                   + (f"\nlog: {case.log}" if case.log else "")
                   + (f"\nrerun: {case.rerun}" if case.rerun else ""))


def _counts(cases: list[Case]) -> dict[str, str]:
    return {"tests": str(len(cases)),
            "failures": str(sum(c.verdict == FAIL for c in cases)),
            "errors": str(sum(c.verdict == ERROR for c in cases)),
            "skipped": str(sum(c.verdict in (KNOWN_DEVIATION, SKIP) for c in cases)),
            "time": f"{sum(c.duration for c in cases):.3f}"}


def junit_xml(cases: list[Case], started: dict[str, str] | None = None) -> str:
    """JUnit XML: one testsuite per kernel and suite. started: each testsuite's
    start (group_name -> UTC ISO 8601), when known."""
    started = started or {}
    suites = ET.Element("testsuites", name="riscv-kvm-rig", **_counts(cases))
    by_suite: dict[str, list[Case]] = {}
    for case in cases:
        by_suite.setdefault(group_name(case), []).append(case)
    for name, members in by_suite.items():
        when = {"timestamp": started[name]} if name in started else {}
        suite = ET.SubElement(suites, "testsuite", name=name, **_counts(members), **when)
        for case in members:
            _junit_case(suite, name, case)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
