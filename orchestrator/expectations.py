"""KVM's departures from the specs by kernel version, as data (images/expectations/kvm.yaml).

The file says which kernel series were checked, each named deviation with the
versions it holds for (since inclusive, until exclusive), and the tables that
model KVM's answers: the counters suite's trapped counter reads, which
deviation a difference from the spec is, and the linux-guest suite's
departures. `for_release` gives what holds for one kernel, or None when its
series was never checked: the caller then judges by the specs alone and says
so. `explain` tells `orchestrator compare` which of these data account for a
case that changed between two kernels.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from orchestrator.config import DATA_ROOT
from orchestrator.errors import BadInput
from orchestrator.verdicts import Deviation

if TYPE_CHECKING:
    from orchestrator.compare import CaseChange, Explainer
    from orchestrator.targets import Target
    from orchestrator.verdicts import Case

KVM_FILE = DATA_ROOT / "images" / "expectations" / "kvm.yaml"
KSELFTEST_DIR = DATA_ROOT / "images" / "kselftest"


def version_tuple(release: str) -> tuple[int, ...]:
    """`uname -r` or a version ("7.3.4+", "6.12.118-rc1", "6.12") -> (7, 3, 4)."""
    numbers = re.match(r"\d+(?:\.\d+)*", release.strip())
    if not numbers:
        raise ValueError(f"not a kernel version: {release!r}")
    return tuple(int(n) for n in numbers.group(0).split("."))


def series_of(release: str) -> str:
    """"7.3.4+" -> "7.3"; what is not a version stays as it is."""
    try:
        return ".".join(map(str, version_tuple(release)[:2]))
    except ValueError:
        return release


@dataclass(frozen=True)
class Range:
    since: str | None
    until: str | None

    def holds(self, release: str) -> bool:
        version = version_tuple(release)
        return ((self.since is None or version >= version_tuple(self.since))
                and (self.until is None or version < version_tuple(self.until)))

    def __str__(self) -> str:
        if self.since and self.until:
            return f"{self.since} up to (not including) {self.until}"
        if self.since:
            return f"{self.since} and later"
        return f"up to (not including) {self.until}" if self.until else "every version"


@dataclass(frozen=True)
class Entry:
    """One row of a table: conditions (key -> value or list of values) and what follows."""

    when: dict[str, Any]
    then: dict[str, Any]

    def matches(self, facts: dict[str, Any]) -> bool:
        for key, wanted in self.when.items():
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if facts.get(key) not in allowed:
                return False
        return True


@dataclass(frozen=True)
class KvmExpectations:
    """What holds for one kernel: its deviations and KVM's tables."""

    release: str
    path: Path
    deviations: dict[str, Deviation]  # only those holding for release
    ranges: dict[str, Range]  # every deviation of the file: the versions it holds for
    hcounteren: int
    trapped: tuple[Entry, ...]
    deviation_of: tuple[Entry, ...]
    linux_guest: tuple[Entry, ...]

    @property
    def where(self) -> str:
        return f"{self.path.name} for {self.release}"

    def first(self, table: tuple[Entry, ...], facts: dict[str, Any]) -> dict[str, Any] | None:
        """The first row of table matching facts."""
        return next((entry.then for entry in table if entry.matches(facts)), None)

    def deviation(self, row: dict[str, Any] | None) -> Deviation | None:
        """The deviation a row names, if it holds for this kernel."""
        return self.deviations.get(row["deviation"]) if row else None


class _File:
    """The expectations file, read once, checked key by key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise BadInput(f"{path}: cannot read ({exc})") from None
        self.doc = self.mapping("(top level)", doc, {"checked", "deviations", "counters",
                                                     "linux-guest"})
        checked = self.doc.get("checked")
        if not isinstance(checked, list) or not all(isinstance(s, str) for s in checked):
            self.fail("checked", checked, "a list of kernel series such as \"6.12\"")
        self.checked = tuple(checked)
        self.ranges: dict[str, Range] = {}
        self.deviations = {name: self.deviation(name, entry) for name, entry in
                           self.mapping("deviations", self.doc.get("deviations"), None).items()}
        counters = self.mapping("counters", self.doc.get("counters"),
                                {"hcounteren", "trapped", "deviation"})
        if not isinstance(counters.get("hcounteren"), int):
            self.fail("counters.hcounteren", counters.get("hcounteren"), "an integer")
        self.hcounteren = counters["hcounteren"]
        self.trapped = self.table("counters.trapped", counters.get("trapped"),
                                  {"outcome", "why"})
        self.deviation_of = self.table("counters.deviation", counters.get("deviation"),
                                       {"deviation"})
        self.linux_guest = self.table("linux-guest", self.doc.get("linux-guest"),
                                      {"kvm_outcome", "counts", "deviation"})

    def fail(self, where: str, value: Any, expected: str) -> NoReturn:
        raise BadInput(f"{self.path}: {where}: got {value!r}, expected {expected}")

    def mapping(self, where: str, value: Any, keys: set[str] | None) -> dict:
        if not isinstance(value, dict):
            self.fail(where, value, "a mapping")
        if keys is not None and set(value) - keys:
            self.fail(where, sorted(set(value) - keys), f"only the keys {', '.join(sorted(keys))}")
        return value

    def version(self, where: str, value: Any) -> str | None:
        if value is None:
            return None
        try:
            version_tuple(str(value))
        except ValueError:
            self.fail(where, value, "a kernel version such as \"6.12\" or null")
        return str(value)

    def deviation(self, name: str, entry: Any) -> Deviation:
        where = f"deviations.{name}"
        entry = self.mapping(where, entry, {"since", "until", "rule", "source"})
        for key in ("rule", "source"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                self.fail(f"{where}.{key}", entry.get(key), "a non-empty text")
        self.ranges[name] = Range(self.version(f"{where}.since", entry.get("since")),
                                  self.version(f"{where}.until", entry.get("until")))
        return Deviation(name, " ".join(entry["rule"].split()), " ".join(entry["source"].split()))

    def table(self, where: str, rows: Any, keys: set[str]) -> tuple[Entry, ...]:
        if not isinstance(rows, list) or not rows:
            self.fail(where, rows, "a non-empty list of entries")
        entries = []
        for i, row in enumerate(rows):
            row = self.mapping(f"{where}[{i}]", row, {"when", *keys})
            named = row.get("deviation")
            if named is not None and named not in self.deviations:
                self.fail(f"{where}[{i}].deviation", named, "a deviation named under deviations")
            entries.append(Entry(self.mapping(f"{where}[{i}].when", row.get("when", {}), None),
                                 {k: v for k, v in row.items() if k != "when"}))
        return tuple(entries)


@functools.cache
def _load(path: Path) -> _File:
    return _File(path)


def for_release(release: str, path: Path = KVM_FILE) -> KvmExpectations | None:
    """What holds for the kernel `release` (`uname -r`), or None when the file has
    no data for its series."""
    data = _load(path)
    if series_of(release) not in data.checked:
        return None
    holding = {name: d for name, d in data.deviations.items()
               if data.ranges[name].holds(release)}
    return KvmExpectations(release, path, holding, data.ranges, data.hcounteren, data.trapped,
                           data.deviation_of, data.linux_guest)


def for_target(target: Target) -> tuple[KvmExpectations | None, str]:
    """What holds for the kernel a booted host runs (`uname -r`), and the words a
    case keeps about it (details.expectations): the file and version, or that
    there is none."""
    release = target.run("uname -r").output.strip() or "unknown"
    kvm = for_release(release)
    return kvm, kvm.where if kvm else no_expectations(release)


def no_expectations(release: str, path: Path = KVM_FILE) -> str:
    """What a report says for a kernel whose series has no expectations."""
    return (f"no expectations for Linux {series_of(release)} ({release}) in {path.name}"
            f" (checked: {', '.join(_load(path).checked)}): judged by the specs alone")


def explainer(release_a: str, release_b: str, path: Path = KVM_FILE) -> Explainer:
    """explain(change, case on A, case on B) for kernels release_a and release_b: which
    entry of the expectations data accounts for the change, or "" if none does."""
    from orchestrator.suites.kselftest_kvm import expect as kselftest_expect

    kvm = {side: for_release(release, path) if release else None
           for side, release in (("a", release_a), ("b", release_b))}
    selftests = {side: kselftest_expect.load(series_of(release))
                 for side, release in (("a", release_a), ("b", release_b))}

    def deviation_moved(rule: str | None, had: str, lost: str) -> str:
        """Why deviation `rule` holds on side `had` and not on side `lost`."""
        holds_on, not_on = kvm[had], kvm[lost]
        if rule is None or holds_on is None or rule not in holds_on.deviations:
            return ""
        if not_on is None:
            return f"{rule} holds for {holds_on.release}; " + no_expectations(
                release_b if lost == "b" else release_a, path)
        if rule in not_on.deviations:
            return ""  # the data says it holds on both: the change is not explained
        return (f"{rule} holds for {holds_on.ranges[rule]}, not for"
                f" {not_on.release} ({holds_on.path.name})")

    def listed(side: str, case_id: str) -> str:
        known = selftests[side].get(case_id)
        name = selftests[side].where
        return f"{name}: {known.result} ({known.reason})" if known else f"{name}: not listed"

    def explain(change: CaseChange, a: Case | None, b: Case | None) -> str:
        from orchestrator.verdicts import KNOWN_DEVIATION

        if a is not None and a.verdict == KNOWN_DEVIATION and (
                b is None or b.verdict != KNOWN_DEVIATION or b.rule != a.rule):
            why = deviation_moved(a.rule, "a", "b")
            if why:
                return why
        if b is not None and b.verdict == KNOWN_DEVIATION and (
                a is None or a.verdict != KNOWN_DEVIATION or a.rule != b.rule):
            why = deviation_moved(b.rule, "b", "a")
            if why:
                return why
        if change.id.startswith("kselftest-kvm/"):
            before, after = listed("a", change.id), listed("b", change.id)
            if selftests["a"].get(change.id) != selftests["b"].get(change.id):
                return f"{before}; {after}"
        return ""

    return explain
