"""What the KVM selftests are known to do on a kernel series, and the verdicts that follow.

images/kselftest/<series>.yaml (e.g. 6.12.yaml) lists, like kvm-unit-tests'
unittests.cfg, the cases that do not simply pass on that series under the
rig's QEMU, each with the result seen (fail, skip or flaky), why, and a
reference (a source file and line, a commit, a mailing-list thread):

    known:
      kselftest-kvm/arch_timer:
        result: flaky
        reason: the guest timer interrupt sometimes comes after the test's window
        reference: tools/testing/selftests/kvm/arch_timer.c

`judge` turns the attempts of one case into a verdict: a known failure is a
known-deviation (never a pass), an unexpected pass or a flake not listed
is a failure, a listed flake that flaked is a known-deviation that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from orchestrator.config import DATA_ROOT
from orchestrator.errors import BadInput
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP

EXPECTATIONS_DIR = DATA_ROOT / "images" / "kselftest"
RESULTS = ("fail", "skip", "flaky")


@dataclass(frozen=True)
class Known:
    result: str  # one of RESULTS
    reason: str
    reference: str


@dataclass(frozen=True)
class Expectations:
    path: Path | None  # None: no file for this series
    known: dict[str, Known]
    series: str = ""

    def get(self, case_id: str) -> Known | None:
        return self.known.get(case_id)

    @property
    def where(self) -> str:
        return (f"kselftest/{self.path.name}" if self.path
                else f"no kselftest/{self.series}.yaml: every failure is unexplained")


@dataclass(frozen=True)
class Judged:
    verdict: str
    reason: str
    rule: str | None = None
    flaky: bool = False


def load(series: str, directory: Path = EXPECTATIONS_DIR) -> Expectations:
    path = directory / f"{series}.yaml"
    if not path.is_file():
        return Expectations(None, {}, series)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"series", "known"}:
        raise BadInput(f"{path}: expected the keys 'series' and 'known'")
    if str(doc.get("series", series)) != series:
        raise BadInput(f"{path}: series: got {doc['series']!r}, expected {series!r}")
    known = {}
    for case_id, entry in (doc.get("known") or {}).items():
        where = f"{path}: known.{case_id}"
        if not isinstance(entry, dict) or set(entry) != {"result", "reason", "reference"}:
            raise BadInput(f"{where}: expected exactly the keys result, reason, reference")
        if entry["result"] not in RESULTS:
            raise BadInput(f"{where}.result: got {entry['result']!r},"
                           f" expected one of {', '.join(RESULTS)}")
        for key in ("reason", "reference"):
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise BadInput(f"{where}.{key}: got {entry[key]!r}, expected a non-empty string")
        known[case_id] = Known(entry["result"], entry["reason"].strip(),
                               entry["reference"].strip())
    return Expectations(path, known, series)


def judge(attempts: list[str], known: Known | None, where: str, detail: str = "") -> Judged:
    """attempts: each run's result (pass, fail, skip, timeout), the last one final.

    detail: what the program said about its last result (an assertion, a skip reason).
    """
    final = attempts[-1]
    failures = sum(a == "fail" for a in attempts)
    flaky = final == PASS and failures > 0
    said = f": {detail}" if detail else ""
    if final == "timeout":
        return Judged(ERROR, f"timed out{said}")
    if known is None:
        if flaky:
            return Judged(FAIL, f"flaky: failed {failures} of {len(attempts)} attempts, then"
                                f" passed (not listed in {where})", flaky=True)
        if final == FAIL:
            return Judged(FAIL, f"failed{said}")
        return Judged(final, detail if final == SKIP else "")
    listed = f"listed in {where} as {known.result}: {known.reason}"
    if known.result == "flaky":
        if flaky:
            return Judged(KNOWN_DEVIATION, f"flaky: failed {failures} of {len(attempts)}"
                                           f" attempts, then passed; {listed}",
                          known.reference, flaky=True)
        if final == FAIL:
            return Judged(FAIL, f"failed on every attempt{said} ({listed})")
        return Judged(final, detail if final == SKIP else "")
    if final == known.result:
        verdict = KNOWN_DEVIATION if final == FAIL else SKIP
        return Judged(verdict, f"{known.reason}{said}", known.reference)
    if final == PASS:
        return Judged(FAIL, f"unexpected pass: {listed}; update {where}", known.reference,
                      flaky=flaky)
    return Judged(FAIL if final == FAIL else final,
                  f"{final} where {listed}{said}", known.reference)
