"""The verdicts a case can get, the Case that carries one, and KVM's named
deviations from the spec.

Every suite judges into this vocabulary; results, reports, KTAP, JUnit and
the nightly comparison read it from here. A deviation is a documented way
KVM 6.12 departs from the specification: a case that shows it is reported
as a known-deviation with the deviation's id as its rule, never as a pass.
Several suites meet the same deviation (a counter read in a bare guest and
in a Linux guest's user space), so the catalogue lives here, once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, SKIP, ERROR = "pass", "fail", "skip", "error"
# KVM's documented behaviour where it departs from the spec: reported with
# the rule it breaks, never counted as a pass.
KNOWN_DEVIATION = "known-deviation"
VERDICTS = (PASS, FAIL, SKIP, ERROR, KNOWN_DEVIATION)


@dataclass
class Measurement:
    """A figure with its unit; `samples` per boot (windows within a boot).

    method "exact": `value` is exact and comparisons need no statistics
    (icount); "distribution": compare the samples (wall clock).
    """

    value: float
    unit: str
    method: str
    samples: list[list[float]] = field(default_factory=list)


@dataclass
class Case:
    """One judged observation of one kernel.

    `outcome` is the behaviour seen, as data ({"kind": ..., ...}); two kernels
    behave the same on a case when their outcomes are equal. `details` keeps
    the raw evidence (the guest's record, counts) for people and reports.
    """

    id: str
    suite: str
    verdict: str
    kernel: str = ""
    reason: str = ""
    rule: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    expected: str = ""
    measurement: Measurement | None = None
    duration: float = 0.0
    log: str = ""
    rerun: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reason_with_rule(self) -> str:
        """The reason, led by the rule once (a deviation's reason often names it already)."""
        if not self.rule or self.reason.startswith(self.rule):
            return self.reason
        return f"{self.rule}: {self.reason}" if self.reason else self.rule

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Case:
        measurement = data.get("measurement")
        return cls(**{**data, "measurement": Measurement(**measurement) if measurement else None})


@dataclass(frozen=True)
class Judgement:
    """A suite's judgement of one observation, before it becomes a Case."""

    verdict: str
    expected: str
    observed: str
    reason: str
    rule: str

    @property
    def case_reason(self) -> str:
        """The reason a case records: a failure leads with the rule it broke (a
        deviation's reason already does)."""
        return f"{self.rule}: {self.reason}" if self.verdict == FAIL else self.reason


@dataclass(frozen=True)
class Deviation:
    """A documented way KVM 6.12 breaks the spec; `id` is stable across reports."""

    id: str
    rule: str
    source: str

    def judged(self, expected: str, observed: str) -> Judgement:
        """The judgement of an observation that shows this deviation."""
        return Judgement(KNOWN_DEVIATION, expected, observed, f"{self.id}: {self.rule}", self.id)


DEVIATIONS = {d.id: d for d in (
    Deviation(
        "kvm-sstc-deadline-lost-on-vcpu-put",
        "a deadline the guest programs with SBI TIME sbi_set_timer is the one that "
        "fires (SBI spec, Timer extension)",
        "Linux 6.12 arch/riscv/kvm/vcpu_timer.c kvm_riscv_vcpu_update_vstimecmp() "
        "writes CSR_VSTIMECMP only; next_cycles follows it only in "
        "kvm_riscv_vcpu_timer_sync() at the next VM exit, and a vcpu_put/vcpu_load "
        "before the next entry (vcpu.c kvm_arch_vcpu_ioctl_run: signal, preemption, "
        "migration) has kvm_riscv_vcpu_timer_restore() write the stale next_cycles "
        "back (since cea8896bd936)",
    ),
)}
