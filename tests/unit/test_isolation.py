"""Judging the isolation suite's summaries (the VMM's probes and the guest's re-reads)."""

from __future__ import annotations

from orchestrator.results import FAIL, PASS
from orchestrator.suites.isolation import (
    guest_value,
    host_policy,
    judge_guest_value,
    judge_host_policy,
)


def probes(cycle: tuple[int, int], time: tuple[int, int], instret: tuple[int, int]) -> dict:
    return {"host_probe": {name: {"ok": ok, "sigill": sigill} for name, (ok, sigill) in
                           (("cycle", cycle), ("time", time), ("instret", instret))}}


def test_policy_and_its_complement() -> None:
    assert [host_policy(a) for a in (0, 1, 2)] == [0x2, 0x2, 0x7]
    assert [guest_value(a) for a in (0, 1, 2)] == [0x5, 0x5, 0x0]


def test_host_sees_what_its_policy_allows() -> None:
    verdict, outcome, reason = judge_host_policy(probes((0, 1001), (1001, 0), (0, 1001)), 0x2)
    assert (verdict, reason) == (PASS, "")
    assert outcome == {"kind": "host-counters", "cycle": "sigill", "time": "readable",
                       "instret": "sigill"}


def test_observed_behaviour_does_not_depend_on_the_number_of_probes() -> None:
    one = judge_host_policy(probes((0, 1001), (1001, 0), (0, 1001)), 0x2)
    other = judge_host_policy(probes((0, 1003), (1003, 0), (0, 1003)), 0x2)
    assert one == other


def test_guest_value_leaking_into_the_host_fails_with_the_counts() -> None:
    verdict, outcome, reason = judge_host_policy(probes((1001, 0), (1001, 0), (1000, 1)), 0x2)
    assert verdict == FAIL
    assert outcome == {"kind": "host-counters", "cycle": "readable", "time": "readable",
                       "instret": "mixed"}
    assert "cycle should be SIGILL in host user space (policy 0x2) but was not on 1001 of" \
           " 1001 probes" in reason
    assert "instret should be SIGILL" in reason


def test_guest_losing_its_value_fails() -> None:
    lost = {"scounteren_written": "0x5", "scounteren_final": "0x7", "guest_mismatches": 3000,
            "first_mismatch": "0x7"}
    verdict, outcome, reason = judge_guest_value(lost)
    assert verdict == FAIL and "wrote 0x5, re-read 0x7" in reason
    assert outcome == {"kind": "guest-scounteren", "kept": False}
    kept = {**lost, "scounteren_final": "0x5", "guest_mismatches": 0, "first_mismatch": None}
    assert judge_guest_value(kept)[0] == PASS
