"""What a guest counter read should give: the privileged spec's answer, KVM's
documented answer for the host kernel's version, and the named deviation when
they differ. What KVM does is data (images/expectations/kvm.yaml, through
orchestrator.expectations); a kernel with no data there is judged by the spec
alone, and its cases say so.

The rules and their sources (the privileged spec, QEMU target/riscv/csr.c
ctr(), Linux arch/riscv/kvm/{main.c, vcpu_insn.c, vcpu_pmu.c}) are written
up in docs/counter-access.md. A record is one `counter` line of the
counters program (guest-tests/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.expectations import KvmExpectations
from orchestrator.verdicts import FAIL, PASS, Deviation, Judgement

CAUSE_ILLEGAL_INSTRUCTION = 2
CAUSE_VIRTUAL_INSTRUCTION = 22

# CSR numbers; the scounteren/hcounteren bit of a counter is csr - CSR_CYCLE.
CSR_CYCLE = 0xC00
COUNTER_CSRS = {"cycle": 0xC00, "time": 0xC01, "instret": 0xC02, "hpmcounter3": 0xC03}
MODES = ("VS", "VU")

# Bits 0-2 (cycle, time, instret) exist on every Zicntr hart, so a written 1
# there must read back; higher bits may be read-only zero (WARL).
ZICNTR_BITS = 0x7

# cycle/time/instret always count; hpmcounter3's cache event may not fire.
MUST_ADVANCE = ("cycle", "time", "instret")



@dataclass(frozen=True)
class Outcome:
    """What a counter read gives the guest: a value, or an exception with its cause.

    `fixed` pins the value when KVM returns a constant instead of a counter.
    """

    kind: str
    cause: int | None = None
    fixed: int | None = None

    def __str__(self) -> str:
        if self.kind == "exception":
            return f"exception cause {self.cause}"
        return "value" if self.fixed is None else f"value {self.fixed}"


VALUE = Outcome("value")
ZERO = Outcome("value", fixed=0)
ILLEGAL = Outcome("exception", CAUSE_ILLEGAL_INSTRUCTION)


@dataclass(frozen=True)
class Probe:
    """One counter read as the guest set it up."""

    mode: str
    counter: str
    guest_bit: bool
    pmu_configured: bool
    host_sscofpmf: bool = True

    @property
    def bit(self) -> int:
        return counter_bit(self.counter)


def counter_bit(counter: str) -> int:
    """The counter's bit in scounteren and hcounteren."""
    return COUNTER_CSRS[counter] - CSR_CYCLE


@dataclass(frozen=True)
class Expectation:
    """Spec and KVM outcomes for a probe; `row` names the table row of docs/counter-access.md."""

    probe: Probe
    spec: Outcome
    kvm: Outcome
    row: str
    spec_rule: str
    kvm_rule: str
    deviation: Deviation | None


def _csr_value(value: Any) -> int:
    return value if isinstance(value, int) else int(value, 0)


def probe_from_record(record: dict[str, Any]) -> Probe:
    """The probe a `counter` record describes (guest bit as read back, WARL)."""
    mode, counter = record["mode"], record["counter"]
    if mode not in MODES or counter not in COUNTER_CSRS:
        raise ValueError(f"unknown mode/counter {mode}/{counter}")
    read = _csr_value(record["scounteren_read"])
    return Probe(mode=mode, counter=counter, guest_bit=bool(read >> counter_bit(counter) & 1),
                 pmu_configured=bool(record["pmu"]),
                 host_sscofpmf=bool(record["pmu_available"]))


def _spec(probe: Probe) -> tuple[Outcome, str, str]:
    """The guest's view per the privileged spec: scounteren gates VU only; whatever
    hcounteren traps, the hypervisor must make it look like this."""
    kind = "time" if probe.counter == "time" else "counter"
    if probe.mode == "VS":
        return VALUE, f"vs-{kind}", "VS read returns a value (scounteren does not gate VS-mode)"
    if probe.guest_bit:
        return VALUE, f"vu-{kind}-bit1", "VU read with scounteren bit 1 returns a value"
    return (ILLEGAL, f"vu-{kind}-bit0",
            "VU read with scounteren bit 0 must raise illegal instruction")


OUTCOMES = {"value": VALUE, "zero": ZERO, "illegal": ILLEGAL}


def _facts(probe: Probe) -> dict[str, Any]:
    """What the expectations tables' `when` conditions may name."""
    return {"mode": probe.mode, "counter": probe.counter, "guest_bit": probe.guest_bit,
            "pmu_configured": probe.pmu_configured, "host_sscofpmf": probe.host_sscofpmf}


def _kvm(probe: Probe, kvm: KvmExpectations) -> tuple[Outcome, str]:
    """KVM's answer, following QEMU ctr() and then the data's table of trapped reads."""
    # ctr() with mcounteren all ones (OpenSBI): V=1 traps as virtual instruction
    # if the hcounteren bit is 0, or in VU-mode if the scounteren bit is 0.
    hc_bit = bool(kvm.hcounteren >> probe.bit & 1)
    if hc_bit and (probe.mode == "VS" or probe.guest_bit):
        return VALUE, "read directly (hcounteren bit set): value"
    row = kvm.first(kvm.trapped, _facts(probe))
    if row is None:
        return ILLEGAL, f"no entry of {kvm.where} for this trapped read"
    return OUTCOMES[row["outcome"]], row["why"]


def expected(probe: Probe, kvm: KvmExpectations | None) -> Expectation:
    """The spec's and KVM's outcomes for probe; kvm None: no expectations for the
    kernel, so KVM is expected to follow the spec."""
    spec, row, spec_rule = _spec(probe)
    if kvm is None:
        return Expectation(probe, spec, spec, row, spec_rule, "as the spec (no expectations)",
                           None)
    outcome, kvm_rule = _kvm(probe, kvm)
    deviation = None
    if outcome != spec:
        deviation = kvm.deviation(kvm.first(kvm.deviation_of,
                                            {**_facts(probe), "kvm_outcome": outcome.kind}))
    return Expectation(probe, spec, outcome, row, spec_rule, kvm_rule, deviation)


def outcome_of(record: dict[str, Any]) -> dict[str, Any]:
    """The behaviour a read showed, as kernels are compared on it: a value
    (whatever it was) or an exception with its cause."""
    if record["outcome"] == "exception":
        return {"kind": "exception", "cause": record["cause"]}
    return {"kind": "value"}


def observed_summary(record: dict[str, Any]) -> str:
    """Short text of what the guest saw, for people."""
    if record["outcome"] == "exception":
        name = record.get("cause_name")
        return f"exception cause {record['cause']}" + (f" ({name})" if name else "")
    return f"value {record['value1']}->{record['value2']}"


def _matches(outcome: Outcome, record: dict[str, Any]) -> bool:
    if record["outcome"] != outcome.kind:
        return False
    if outcome.kind == "exception":
        return record["cause"] == outcome.cause
    return outcome.fixed is None or record["value1"] == record["value2"] == outcome.fixed


def _record_rule_broken(record: dict[str, Any], exp: Expectation) -> tuple[str, str] | None:
    """First broken record-level rule as (rule id, reason). scounteren state comes
    first: a lost or mangled scounteren explains a wrong outcome, not the reverse."""
    written = _csr_value(record["scounteren_written"])
    read = _csr_value(record["scounteren_read"])
    after = _csr_value(record["scounteren_after"])
    if read & ~written or written & ZICNTR_BITS & ~read:
        return ("scounteren-warl",
                f"scounteren wrote {written:#x}, read back {read:#x}: no unwritten bit may "
                f"appear and written bits 0-2 (Zicntr) must stay")
    if after != read:
        return ("guest-scounteren-preserved",
                f"guest scounteren {read:#x} became {after:#x} across the counter reads "
                f"(traps into KVM)")
    kvm_view = record.get("scounteren_kvm")
    if kvm_view is not None and _csr_value(kvm_view) != after:
        return ("kvm-view-of-guest-scounteren",
                f"KVM ONE_REG says guest scounteren is {_csr_value(kvm_view):#x}, "
                f"guest reads {after:#x}")
    if record["outcome"] == "exception" and record["cause"] == CAUSE_VIRTUAL_INSTRUCTION:
        return ("virtual-instruction-leaked",
                "a virtual-instruction exception (cause 22) reached the guest; KVM must "
                "handle it and give the guest illegal instruction (cause 2) at most")
    if record["outcome"] == "value" and exp.probe.counter in MUST_ADVANCE:
        v1, v2 = record["value1"], record["value2"]
        # KVM's documented constant 0 (kvm-no-guest-pmu) is judged by the table instead.
        pinned = exp.kvm.fixed is not None and v1 == v2 == exp.kvm.fixed
        if v2 <= v1 and not pinned:
            return ("counter-advances",
                    f"{exp.probe.counter} did not advance between two reads: {v1} -> {v2}")
    return None


def judge(record: dict[str, Any], kvm: KvmExpectations | None) -> Judgement:
    """Verdict for one `counter` record against docs/counter-access.md and what KVM is
    known to do on the host's kernel (kvm; None: nothing known, the spec alone)."""
    exp = expected(probe_from_record(record), kvm)
    want = (str(exp.kvm) if exp.deviation is None or kvm is None
            else f"{exp.kvm} (KVM {kvm.release}; spec: {exp.spec})")
    seen = observed_summary(record)
    broken = _record_rule_broken(record, exp)
    if broken:
        return Judgement(FAIL, want, seen, broken[1], broken[0])
    # KVM first: its pinned 0 would also match the spec's unpinned value.
    if exp.deviation and _matches(exp.kvm, record):
        return exp.deviation.judged(want, seen)
    # Spec-correct is a pass even where KVM documents a deviation (it was fixed).
    if _matches(exp.spec, record):
        return Judgement(PASS, want, seen, "", exp.row)
    return Judgement(FAIL, want, seen,
                     f"spec: {exp.spec_rule}; KVM documented: {exp.kvm_rule}; observed: {seen}",
                     exp.row)
