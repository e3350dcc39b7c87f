"""What a counter read from a Linux guest's user space should give, by the
guest kernel's documented kernel.perf_user_access rules, and KVM's named
deviation where it differs on the host's kernel version (images/expectations/
kvm.yaml's linux-guest table, deviations shared with suite counters; through
orchestrator.expectations). Written up in docs/counter-access.md.

A record is one `read` line of guest-tests' linux-counters: a direct read
(rdcycle, rdtime, rdinstret) or a perf read (perf_event_open + mmap, then
the user page's counter, if it offers one).

Sources:
- Documentation/admin-guide/sysctl/kernel.rst, perf_user_access (riscv):
  0 no user access; 1 (default) counters readable through perf only, a
  direct access raises illegal instruction; 2 legacy, cycle and instret
  readable directly; the time CSR always readable.
- drivers/perf/riscv_pmu_sbi.c pmu_sbi_event_mapped(): with 0 the user page
  never offers the counter; with 1 it does; with 2 only for cycles and
  instructions. drivers/perf/riscv_pmu.c arch_perf_update_userpage() sets
  cap_user_rdpmc from that.
- arch/riscv/kvm/main.c: hcounteren 0x2 (6.12, 7.3), so every guest
  cycle/instret read traps into KVM, which serves it only for a counter the
  guest configured through the SBI PMU (arch/riscv/kvm/vcpu_pmu.c
  kvm_riscv_vcpu_pmu_read_hpm).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from orchestrator.expectations import KvmExpectations
from orchestrator.verdicts import FAIL, PASS, Deviation, Judgement

DIRECT_COUNTERS = ("cycle", "time", "instret")
PERF_COUNTERS = ("cycles", "instructions")
PERF_USER_ACCESS = (0, 1, 2)
NO_ACCESS, USER_ACCESS, LEGACY = PERF_USER_ACCESS


@dataclass(frozen=True)
class Expectation:
    outcome: str  # "value", "sigill" or "not-offered"
    rule: str
    why: str
    kvm_outcome: str | None = None  # what KVM gives instead, if it deviates
    deviation: Deviation | None = None
    kvm_counts: bool = True  # False: under the deviation, read() of the event stays 0


def expected(method: str, counter: str, perf_user_access: int,
             kvm: KvmExpectations | None) -> Expectation:
    """The documented outcome of one probe in the guest, with KVM's departure from it
    where the expectations data name one for the host's kernel (kvm; None: none known)."""
    documented = _documented(method, counter, perf_user_access)
    row = kvm.first(kvm.linux_guest, {"method": method, "counter": counter,
                                      "perf_user_access": perf_user_access}) if kvm else None
    deviation = kvm.deviation(row) if kvm else None
    if row is None or deviation is None:
        return documented
    return dataclasses.replace(documented, kvm_outcome=row["kvm_outcome"], deviation=deviation,
                               kvm_counts=bool(row["counts"]))


def _documented(method: str, counter: str, perf_user_access: int) -> Expectation:
    """What kernel.rst and the perf driver say a probe gives."""
    if method == "direct":
        if counter == "time":
            return Expectation("value", "time-always-readable",
                               "the time CSR is always directly accessible (kernel.rst)")
        if perf_user_access == LEGACY:
            return Expectation("value", "legacy-direct-read",
                               "perf_user_access 2: cycle and instret are directly readable")
        return Expectation("sigill", "direct-read-traps",
                           f"perf_user_access {perf_user_access}: a direct read of {counter}"
                           " raises illegal instruction (SIGILL)")
    if perf_user_access == NO_ACCESS:
        return Expectation("not-offered", "perf-no-user-access",
                           "perf_user_access 0: the user page offers no counter"
                           " (cap_user_rdpmc 0); read() still counts")
    why = (f"perf_user_access {perf_user_access}: the user page offers the {counter}"
           " counter (cap_user_rdpmc 1) and reading it gives the count")
    return Expectation("value", "perf-user-read", why)


def outcome_of(record: dict[str, Any]) -> dict[str, Any]:
    """The behaviour a probe showed, as kernels are compared on it."""
    outcome: dict[str, Any] = {"kind": record["outcome"]}
    if record["method"] == "perf" and "cap_user_rdpmc" in record:
        outcome["cap_user_rdpmc"] = record["cap_user_rdpmc"]
    return outcome


def _observed(record: dict[str, Any]) -> str:
    text = record["outcome"]
    if text == "value":
        text += f" {record['value1']}->{record['value2']}"
    if "cap_user_rdpmc" in record:
        text += f" (cap_user_rdpmc {record['cap_user_rdpmc']}, index {record['index']})"
    if "errno" in record:
        text += f" (errno {record['errno']})"
    if "syscall" in record:
        text += f"; read() {record['syscall'].get('value1')}->{record['syscall'].get('value2')}"
    return text


def _broken(reads: dict[str, Any], what: str, cpus: int) -> tuple[str, str] | None:
    """The first broken rule of a series of reads that gave values, or None."""
    if reads["value2"] <= reads["value1"]:
        return ("counter-advances",
                f"{what} did not advance over work: {reads['value1']} -> {reads['value2']}")
    if reads["backwards"]:
        return ("never-backwards",
                f"{what} went backwards {reads['backwards']} time(s) while the process moved"
                f" between CPUs, first {reads['back_from']} -> {reads['back_to']}")
    if cpus > 1 and reads["hop_reads"] and bin(int(reads["cpus_seen"], 16)).count("1") < 2:
        return ("process-migrated",
                f"{what}: the process never ran on a second CPU (cpus_seen {reads['cpus_seen']})")
    return None


def _count_broken(record: dict[str, Any], cpus: int) -> tuple[str, str] | None:
    """A perf probe's read() series (the count whatever the user page offers)."""
    if record["method"] != "perf" or "syscall" not in record:
        return None
    syscall = record["syscall"]
    if syscall["outcome"] != "value":
        return ("count-advances", "read() of the perf event failed")
    return _broken(syscall, f"{record['counter']} (read())", cpus)


def _never_counted(record: dict[str, Any]) -> bool:
    syscall = record.get("syscall", {})
    return syscall.get("outcome") == "value" and syscall["value1"] == syscall["value2"] == 0


def judge(record: dict[str, Any], cpus: int, kvm: KvmExpectations | None) -> Judgement:
    """Verdict for one `read` record of a guest with cpus vCPUs, on a host whose KVM is
    known to do what kvm says (None: nothing known)."""
    exp = expected(record["method"], record["counter"], record["perf_user_access"], kvm)
    want = exp.outcome + (f" (KVM {kvm.release}: {exp.kvm_outcome})"
                          if exp.deviation and kvm else "")
    seen = _observed(record)
    got = record["outcome"]
    if got == "value":
        broken = _broken(record, f"{record['counter']} ({record['method']})", cpus)
        if broken:
            return Judgement(FAIL, want, seen, broken[1], broken[0])
    count_broken = _count_broken(record, cpus)
    if got == exp.outcome and not count_broken:
        return Judgement(PASS, want, seen, "", exp.rule)
    if exp.deviation and got == exp.kvm_outcome and (
            not count_broken if exp.kvm_counts else _never_counted(record)):
        return exp.deviation.judged(want, seen)
    if count_broken:
        return Judgement(FAIL, want, seen, count_broken[1], count_broken[0])
    return Judgement(FAIL, want, seen, f"{exp.why}; observed: {seen}", exp.rule)
