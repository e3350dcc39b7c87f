"""Expectation model: the table of docs/counter-access.md (spec and KVM 6.12
columns), the record-level rules, the no-Sscofpmf deviation, and the outcome
kernels are compared on."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from orchestrator import expectations
from orchestrator.suites import registry
from orchestrator.suites.counters import expect
from orchestrator.suites.counters.expect import (
    ILLEGAL,
    VALUE,
    ZERO,
    Expectation,
    Judgement,
    Outcome,
    Probe,
    outcome_of,
    probe_from_record,
)
from orchestrator.targets import CommandResult
from orchestrator.verdicts import FAIL, KNOWN_DEVIATION, PASS

# what images/expectations/kvm.yaml holds for a 6.12 host
KVM_6_12 = expectations.for_release("6.12")


def expected(probe: Probe) -> Expectation:
    return expect.expected(probe, KVM_6_12)


def judge(record: dict[str, Any]) -> Judgement:
    return expect.judge(record, KVM_6_12)

TRAPPED = ("cycle", "instret", "hpmcounter3")
INDEX = {"cycle": 0, "time": 1, "instret": 2, "hpmcounter3": 3}

VMM_EXAMPLE = (
    '{"kind":"counter","test":3,"pmu":false,"mode":"VU","counter":"time","csr":"0xc01",'
    '"scounteren_written":"0x0","scounteren_read":"0x0","scounteren_after":"0x0",'
    '"outcome":"exception","cause":2,"cause_name":"illegal-instruction",'
    '"tval":"0xc0102573","traps":2,"value1":0,"value2":0,"advanced":false,'
    '"scounteren_kvm":"0x0","pmu_available":true}'
)


def scounteren(counter: str, bit: int) -> int:
    """A guest scounteren with the counter's bit as asked and every other Zicntr/hpm3 bit set."""
    mask = 1 << INDEX[counter]
    return 0xF if bit else 0xF & ~mask


def record(mode: str, counter: str, bit: int, *, pmu: bool = False, outcome: str = "value",
           cause: int = 2, v1: int = 100, v2: int = 250, **overrides: Any) -> dict[str, Any]:
    value = f"{scounteren(counter, bit):#x}"
    rec: dict[str, Any] = {
        "kind": "counter", "test": 1, "pmu": pmu, "mode": mode, "counter": counter,
        "csr": f"{0xC00 + INDEX[counter]:#x}", "scounteren_written": value,
        "scounteren_read": value, "scounteren_after": value, "outcome": outcome,
        "value1": v1 if outcome == "value" else 0, "value2": v2 if outcome == "value" else 0,
        "scounteren_kvm": value, "pmu_available": True,
    }
    if outcome == "exception":
        rec["cause"] = cause
    rec.update(overrides)
    return rec


def illegal(mode: str, counter: str, bit: int, **kw: Any) -> dict[str, Any]:
    return record(mode, counter, bit, outcome="exception", **kw)


# --- probe_from_record ------------------------------------------------------------

def test_probe_from_vmm_example() -> None:
    rec = json.loads(VMM_EXAMPLE)
    assert probe_from_record(rec) == Probe(mode="VU", counter="time", guest_bit=False,
                                           pmu_configured=False)
    verdict = judge(rec)
    assert (verdict.verdict, verdict.rule, verdict.reason) == (PASS, "vu-time-bit0", "")
    assert verdict.observed == "exception cause 2 (illegal-instruction)"


def test_probe_guest_bit_is_the_read_back_value() -> None:
    rec = record("VU", "hpmcounter3", 1, scounteren_written="0xf", scounteren_read="0x7")
    assert probe_from_record(rec).guest_bit is False


def test_probe_rejects_unknown_counter() -> None:
    with pytest.raises(ValueError, match="hpmcounter4"):
        probe_from_record({**record("VS", "time", 1), "counter": "hpmcounter4"})


# --- REFERENCE §2 row: VS | time | any | value | value ----------------------------

@pytest.mark.parametrize("pmu", [False, True])
@pytest.mark.parametrize("bit", [0, 1])
def test_vs_time(bit: int, pmu: bool) -> None:
    exp = expected(Probe("VS", "time", bool(bit), pmu))
    assert (exp.spec, exp.kvm, exp.deviation) == (VALUE, VALUE, None)
    assert judge(record("VS", "time", bit, pmu=pmu)).verdict == PASS
    bad = judge(illegal("VS", "time", bit, pmu=pmu))
    assert (bad.verdict, bad.rule) == (FAIL, "vs-time")
    assert "spec: VS read returns a value" in bad.reason
    assert "KVM documented: read directly" in bad.reason
    assert bad.reason.endswith("observed: exception cause 2")


# --- row: VS | cycle/instret/hpm3 | any | value | value if configured, else illegal ---

@pytest.mark.parametrize("bit", [0, 1])
@pytest.mark.parametrize("counter", TRAPPED)
def test_vs_configured_counter_reads(counter: str, bit: int) -> None:
    exp = expected(Probe("VS", counter, bool(bit), pmu_configured=True))
    assert (exp.spec, exp.kvm, exp.deviation) == (VALUE, VALUE, None)
    ok = judge(record("VS", counter, bit, pmu=True))
    assert (ok.verdict, ok.rule, ok.reason) == (PASS, "vs-counter", "")
    bad = judge(illegal("VS", counter, bit, pmu=True))
    assert bad.verdict == FAIL
    assert "KVM documented: configured via SBI PMU" in bad.reason


@pytest.mark.parametrize("bit", [0, 1])
@pytest.mark.parametrize("counter", TRAPPED)
def test_vs_unconfigured_counter_traps(counter: str, bit: int) -> None:
    exp = expected(Probe("VS", counter, bool(bit), pmu_configured=False))
    assert (exp.spec, exp.kvm) == (VALUE, ILLEGAL)
    assert exp.deviation is not None and exp.deviation.id == "kvm-unconfigured-counter-traps"
    verdict = judge(illegal("VS", counter, bit))
    assert (verdict.verdict, verdict.rule) == (KNOWN_DEVIATION, "kvm-unconfigured-counter-traps")
    assert verdict.reason.startswith("kvm-unconfigured-counter-traps: a VS read")
    assert verdict.expected == "exception cause 2 (KVM 6.12; spec: value)"
    # Spec-correct behaviour (the deviation fixed) passes.
    assert judge(record("VS", counter, bit)).verdict == PASS


# --- row: VU | time | 1 / 0 | value / illegal | value / illegal ----------------------

@pytest.mark.parametrize("pmu", [False, True])
@pytest.mark.parametrize(("bit", "outcome"), [(1, VALUE), (0, ILLEGAL)])
def test_vu_time(bit: int, outcome: Outcome, pmu: bool) -> None:
    exp = expected(Probe("VU", "time", bool(bit), pmu))
    assert (exp.spec, exp.kvm, exp.deviation) == (outcome, outcome, None)
    good, wrong = record("VU", "time", bit, pmu=pmu), illegal("VU", "time", bit, pmu=pmu)
    if not bit:
        good, wrong = wrong, good
    assert judge(good).verdict == PASS
    bad = judge(wrong)
    assert (bad.verdict, bad.rule) == (FAIL, f"vu-time-bit{bit}")
    assert f"spec: VU read with scounteren bit {bit}" in bad.reason


def test_vu_time_bit0_value_fail_reason() -> None:
    bad = judge(record("VU", "time", 0))
    assert bad.reason == (
        "spec: VU read with scounteren bit 0 must raise illegal instruction; "
        "KVM documented: trapped time read is not emulated: illegal instruction; "
        "observed: value 100->250")


# --- row: VU | cycle/instret/hpm3 | 1 | value | value if configured, else illegal ------

@pytest.mark.parametrize("counter", TRAPPED)
def test_vu_bit1_configured_counter_reads(counter: str) -> None:
    exp = expected(Probe("VU", counter, True, pmu_configured=True))
    assert (exp.spec, exp.kvm, exp.deviation) == (VALUE, VALUE, None)
    ok = judge(record("VU", counter, 1, pmu=True))
    assert (ok.verdict, ok.rule) == (PASS, "vu-counter-bit1")
    assert judge(illegal("VU", counter, 1, pmu=True)).verdict == FAIL


@pytest.mark.parametrize("counter", TRAPPED)
def test_vu_bit1_unconfigured_counter_traps(counter: str) -> None:
    exp = expected(Probe("VU", counter, True, pmu_configured=False))
    assert (exp.spec, exp.kvm) == (VALUE, ILLEGAL)
    assert exp.deviation is not None and exp.deviation.id == "kvm-unconfigured-counter-traps"
    verdict = judge(illegal("VU", counter, 1))
    assert (verdict.verdict, verdict.rule) == (KNOWN_DEVIATION, "kvm-unconfigured-counter-traps")


# --- row: VU | cycle/instret/hpm3 | 0 | illegal | value if configured (deviation), else illegal

@pytest.mark.parametrize("counter", TRAPPED)
def test_vu_bit0_configured_counter_ignores_guest_scounteren(counter: str) -> None:
    exp = expected(Probe("VU", counter, False, pmu_configured=True))
    assert (exp.spec, exp.kvm) == (ILLEGAL, VALUE)
    assert exp.deviation is not None and exp.deviation.id == "kvm-ignores-guest-scounteren"
    assert "vcpu_insn.c" in exp.deviation.source
    verdict = judge(record("VU", counter, 0, pmu=True))
    assert (verdict.verdict, verdict.rule) == (KNOWN_DEVIATION, "kvm-ignores-guest-scounteren")
    assert "scounteren bit 0 raises illegal instruction" in verdict.reason
    # What the spec requires passes.
    assert judge(illegal("VU", counter, 0, pmu=True)).verdict == PASS


@pytest.mark.parametrize("counter", TRAPPED)
def test_vu_bit0_unconfigured_counter_traps_as_spec(counter: str) -> None:
    exp = expected(Probe("VU", counter, False, pmu_configured=False))
    assert (exp.spec, exp.kvm, exp.deviation) == (ILLEGAL, ILLEGAL, None)
    assert judge(illegal("VU", counter, 0)).verdict == PASS
    bad = judge(record("VU", counter, 0))
    assert (bad.verdict, bad.rule) == (FAIL, "vu-counter-bit0")
    assert "must raise illegal instruction" in bad.reason


# --- host without Sscofpmf: guest PMU not initialised ---------------------------------

@pytest.mark.parametrize("counter", ["cycle", "instret"])
@pytest.mark.parametrize(("mode", "bit"), [("VS", 0), ("VS", 1), ("VU", 1), ("VU", 0)])
def test_no_sscofpmf_cycle_instret_read_zero(mode: str, counter: str, bit: int) -> None:
    exp = expected(Probe(mode, counter, bool(bit), False, host_sscofpmf=False))
    assert exp.kvm == ZERO
    assert exp.deviation is not None and exp.deviation.id == "kvm-no-guest-pmu"
    zero = record(mode, counter, bit, v1=0, v2=0)
    verdict = judge({**zero, "pmu_available": False})
    assert (verdict.verdict, verdict.rule) == (KNOWN_DEVIATION, "kvm-no-guest-pmu")
    assert verdict.observed == "value 0->0"
    # With Sscofpmf the same frozen zero is no deviation but a counter that stopped.
    assert (judge(zero).verdict, judge(zero).rule) == (FAIL, "counter-advances")


@pytest.mark.parametrize("bit", [0, 1])
@pytest.mark.parametrize("mode", ["VS", "VU"])
def test_no_sscofpmf_hpmcounter_illegal(mode: str, bit: int) -> None:
    exp = expected(Probe(mode, "hpmcounter3", bool(bit), True, host_sscofpmf=False))
    assert exp.kvm == ILLEGAL
    verdict = judge({**illegal(mode, "hpmcounter3", bit, pmu=True), "pmu_available": False})
    if mode == "VU" and not bit:
        assert (exp.deviation, verdict.verdict) == (None, PASS)
    else:
        assert exp.deviation is not None and exp.deviation.id == "kvm-no-guest-pmu"
        assert (verdict.verdict, verdict.rule) == (KNOWN_DEVIATION, "kvm-no-guest-pmu")


@pytest.mark.parametrize(("bit", "outcome"), [(1, "value"), (0, "exception")])
def test_no_sscofpmf_vu_time_as_spec(bit: int, outcome: str) -> None:
    rec = record("VU", "time", bit, outcome=outcome)
    assert judge({**rec, "pmu_available": False}).verdict == PASS


def test_hcounteren_bit_set_reads_directly() -> None:
    # a KVM that set every hcounteren bit (the data's hcounteren, per kernel version)
    direct = dataclasses.replace(KVM_6_12, hcounteren=0x7)
    assert expect.expected(Probe("VS", "cycle", False, False), direct).deviation is None
    # VU with the guest bit 0 still traps into KVM, which still ignores scounteren.
    exp = expect.expected(Probe("VU", "cycle", False, True), direct)
    assert exp.deviation is not None and exp.deviation.id == "kvm-ignores-guest-scounteren"


# --- record-level rules ---------------------------------------------------------------

@pytest.mark.parametrize("values", [(500, 500), (500, 400)])
@pytest.mark.parametrize("counter", ["cycle", "time", "instret"])
def test_counter_must_advance(counter: str, values: tuple[int, int]) -> None:
    assert judge(record("VS", counter, 1, pmu=True)).verdict == PASS
    verdict = judge(record("VS", counter, 1, pmu=True, v1=values[0], v2=values[1]))
    assert (verdict.verdict, verdict.rule) == (FAIL, "counter-advances")
    assert f"{counter} did not advance" in verdict.reason


def test_hpmcounter3_need_not_advance() -> None:
    verdict = judge(record("VS", "hpmcounter3", 1, pmu=True, v1=0, v2=0))
    assert (verdict.verdict, verdict.rule) == (PASS, "vs-counter")


def test_virtual_instruction_must_not_reach_guest() -> None:
    assert judge(illegal("VU", "time", 0)).verdict == PASS
    verdict = judge(illegal("VU", "time", 0, cause=22))
    assert (verdict.verdict, verdict.rule) == (FAIL, "virtual-instruction-leaked")
    assert "cause 22" in verdict.reason


@pytest.mark.parametrize(("written", "read"), [
    ("0x2", "0x3"),  # a bit that was not written appears
    ("0x7", "0x5"),  # a written Zicntr bit (time) is dropped
])
def test_scounteren_warl(written: str, read: str) -> None:
    base = record("VS", "time", 1, scounteren_written=written, scounteren_read=written,
                  scounteren_after=written, scounteren_kvm=written)
    assert judge(base).verdict == PASS
    verdict = judge({**base, "scounteren_read": read, "scounteren_after": read,
                     "scounteren_kvm": read})
    assert (verdict.verdict, verdict.rule) == (FAIL, "scounteren-warl")
    assert f"wrote {written}, read back {read}" in verdict.reason


def test_scounteren_warl_allows_dropping_hpm_bit() -> None:
    rec = record("VS", "time", 1, scounteren_written="0xf", scounteren_read="0x7",
                 scounteren_after="0x7", scounteren_kvm="0x7")
    assert judge(rec).verdict == PASS


def test_guest_scounteren_preserved_across_traps() -> None:
    assert judge(illegal("VS", "cycle", 1)).verdict == KNOWN_DEVIATION
    verdict = judge(illegal("VS", "cycle", 1, scounteren_after="0x0", scounteren_kvm="0x0"))
    assert (verdict.verdict, verdict.rule) == (FAIL, "guest-scounteren-preserved")
    assert "0xf became 0x0" in verdict.reason


def test_kvm_view_of_guest_scounteren() -> None:
    verdict = judge(record("VU", "time", 1, scounteren_kvm="0x2"))
    assert (verdict.verdict, verdict.rule) == (FAIL, "kvm-view-of-guest-scounteren")
    assert "ONE_REG says guest scounteren is 0x2" in verdict.reason
    without = record("VU", "time", 1)
    del without["scounteren_kvm"]
    assert judge(without).verdict == PASS


def test_first_broken_rule_is_reported() -> None:
    rec = record("VS", "time", 1, v1=5, v2=5, scounteren_read="0x1f",
                 scounteren_after="0x1f", scounteren_kvm="0x0", cause=22)
    assert judge(rec).rule == "scounteren-warl"
    assert judge({**rec, "scounteren_read": "0xf"}).rule == "guest-scounteren-preserved"
    assert judge({**rec, "scounteren_read": "0xf", "scounteren_after": "0xf"}).rule == (
        "kvm-view-of-guest-scounteren")
    assert judge({**rec, "scounteren_read": "0xf", "scounteren_after": "0xf",
                  "scounteren_kvm": "0xf"}).rule == "counter-advances"


# --- the outcome kernels are compared on ----------------------------------------------

def test_outcome_keeps_behaviour_not_values() -> None:
    assert outcome_of(record("VS", "cycle", 1, v1=1, v2=9)) == outcome_of(
        record("VS", "cycle", 1, v1=7, v2=80)) == {"kind": "value"}
    assert outcome_of(illegal("VU", "cycle", 0)) == {"kind": "exception", "cause": 2}
    assert outcome_of(illegal("VU", "cycle", 0)) != outcome_of(record("VU", "cycle", 0))


def test_no_sscofpmf_deviation_is_reached_from_the_record() -> None:
    """The guest's own PMU probe (pmu_available) decides, as on a host without Sscofpmf."""
    zero = {**record("VS", "cycle", 1, v1=0, v2=0), "pmu_available": False}
    assert probe_from_record(zero).host_sscofpmf is False
    assert judge(zero).rule == "kvm-no-guest-pmu"


class _OneProgram:
    """A target whose one command printed these records in `seconds`."""

    def __init__(self, records: list[dict[str, Any]], seconds: float) -> None:
        self.output = "\n".join(json.dumps(r) for r in records)
        self.seconds = seconds

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        return CommandResult(command, 0, self.output, self.seconds)


def test_cases_of_one_program_share_its_time() -> None:
    """One guest program reads every counter: each case gets its part, not the first all."""
    suite = registry()["counters"](registry()["counters"].Config())
    records = [illegal("VU", "cycle", 0), record("VU", "time", 1)]
    ids = [suite.case_id(False, r["mode"], r["counter"], int(r["scounteren_written"], 16))
           for r in records]
    cases = list(suite.run(_OneProgram(records, 3.0), ids))
    assert [c.id for c in cases] == ids
    assert [c.duration for c in cases] == [1.5, 1.5]


def test_a_kernel_without_expectations_is_judged_by_the_spec_alone() -> None:
    unknown = expectations.for_release("9.1.0")
    assert unknown is None
    # KVM 6.12 traps an unconfigured VS cycle read: a deviation there, a failure here
    assert judge(illegal("VS", "cycle", 1)).verdict == KNOWN_DEVIATION
    assert expect.judge(illegal("VS", "cycle", 1), unknown).verdict == FAIL
    assert expect.judge(record("VS", "cycle", 1), unknown).verdict == PASS
