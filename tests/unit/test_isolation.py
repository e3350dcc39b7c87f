"""Judging the isolation suite's summaries (the VMM's probes and the guest's re-reads)."""

from __future__ import annotations

from orchestrator import compare
from orchestrator.suites.isolation import (
    Isolation,
    IsolationConfig,
    guest_value,
    host_policy,
    hung_first_judged,
    judge_guest_value,
    judge_host_policy,
    missing_evidence,
)
from orchestrator.verdicts import FAIL, KNOWN_DEVIATION, PASS, Case


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


def summary(timer: int = 20, user: int = 140, sbi: int = 140, kvm_runs: int = 141,
            wfi: int = 20, halt_wakeup: int = 20, cpus: tuple[int, ...] = (0,)) -> dict:
    return {"guest_exits_attempted": {"sbi_in_kernel": sbi, "user_exit": user, "timer": timer},
            "kvm_runs": kvm_runs, "cpus": list(cpus),
            "kvm_stats": {"wfi_exit_stat": wfi, "halt_wakeup": halt_wakeup}}


def test_a_run_that_took_every_path_has_its_evidence() -> None:
    assert missing_evidence(summary(), 300, 20, migrate=False) == []
    assert missing_evidence(summary(cpus=(0, 1)), 300, 20, migrate=True) == []


def test_a_run_without_a_blocked_wfi_or_a_second_cpu_lacks_evidence() -> None:
    (reason,) = missing_evidence(summary(halt_wakeup=0), 300, 20, migrate=False)
    assert "halt_wakeup 0" in reason
    (reason,) = missing_evidence(summary(), 300, 20, migrate=True)
    assert "CPUs [0] only" in reason
    assert len(missing_evidence(summary(timer=19, sbi=141, wfi=19, kvm_runs=100), 300, 20,
                                migrate=False)) == 3


def test_without_kvm_statistics_the_block_is_not_checked() -> None:
    assert missing_evidence({**summary(), "kvm_stats": None}, 300, 20, migrate=False) == []


def test_timer_waits_default_to_20_or_a_third_of_the_exits() -> None:
    assert Isolation(IsolationConfig()).timer_exits == 20
    assert Isolation(IsolationConfig(exits=3000)).timer_exits == 20
    assert Isolation(IsolationConfig(exits=30)).timer_exits == 10
    assert Isolation(IsolationConfig(exits=3)).timer_exits == 1
    assert Isolation(IsolationConfig(exits=300, timer_exits=100)).timer_exits == 100
    assert "--exits 300 --timer-exits 20" in Isolation(IsolationConfig())._command(0, "pinned")


def test_a_hung_first_run_is_the_lost_deadline_deviation_when_the_rerun_passes() -> None:
    verdict, reason, rule = hung_first_judged(PASS, "", None, "timed out after 30 s")
    assert (verdict, rule) == (KNOWN_DEVIATION, "kvm-sstc-deadline-lost-on-vcpu-put")
    assert "timed out after 30 s" in reason and "rerun" in reason


def test_a_hung_first_run_does_not_hide_a_failing_rerun() -> None:
    judged = hung_first_judged(FAIL, "leak", "host-policy", "timed out after 30 s")
    assert judged == (FAIL, "leak", "host-policy")


def test_a_rerun_after_a_hang_does_not_make_two_kernels_differ() -> None:
    def case(kernel: str, verdict: str, rule: str | None) -> Case:
        return Case(id="isolation/perf_user_access=0/pinned/host-policy", suite="isolation",
                    verdict=verdict, kernel=kernel, rule=rule,
                    outcome={"kind": "host-counters", "cycle": "sigill"})

    clean = case("a", PASS, None)
    hung = case("b", KNOWN_DEVIATION, "kvm-sstc-deadline-lost-on-vcpu-put")
    assert compare.differences([clean], [hung], "a") == []
    assert compare.differences([clean], [case("b", PASS, None)], "a") == []
    failed = case("b", FAIL, "host-policy")
    assert [d.id for d in compare.differences([clean], [failed], "a")] == [clean.id]
