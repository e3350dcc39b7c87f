"""Judging the timer suite's runs: the summary and loss lines the timer program prints."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from orchestrator import config
from orchestrator.suites import OUTCOME_MARK
from orchestrator.suites.timer import Timer, TimerConfig
from orchestrator.suites.timer.judge import (
    DEVIATION_ID,
    KINDS,
    MalformedRun,
    judge,
    missing_evidence,
    outcome_of,
    parse_run,
)
from orchestrator.verdicts import FAIL, KNOWN_DEVIATION, PASS

REQUESTED = 0x1A2B3C


def summary(losses: int = 0, deadlines: int = 2000, sstc: bool = True, **fields: int) -> dict:
    by_kind = {kind: {"on_time": deadlines // 4, "late": 0, "early": 0, "never": 0}
               for kind in KINDS}
    by_kind["short"]["early"] = losses
    return {"kind": "timer", "source": "signal", "direct": False, "sstc": sstc,
            "deadlines": deadlines, "losses": losses, "by_kind": by_kind,
            "readbacks": deadlines, "readback_mismatches": losses, "max_late_ticks": 12,
            "loss_lines": 0, "kvm_runs": 900, "intr_exits": 850, "source_events": 900,
            "voluntary_switches": 3, "involuntary_switches": 40, **fields}


def loss(compare: int | None) -> dict:
    return {"kind": "timer-loss", "round": 0, "index": 7, "deadline_kind": "short",
            "class": "early", "requested": hex(REQUESTED), "readback": hex(REQUESTED - 3000),
            "kvm_timer": {"compare": None if compare is None else hex(compare),
                          "state": "0x1", "time": "0x1a0000"}}


def test_no_summary_is_no_run() -> None:
    assert parse_run([{"kind": "vmm-start"}, {"kind": "abort", "reason": "other"}]) is None


@pytest.mark.parametrize("edit", [
    lambda s: s.pop("losses"),
    lambda s: s.update(deadlines=-1),
    lambda s: s.update(sstc="yes"),
    lambda s: s["by_kind"].pop("replaced"),
    lambda s: s["by_kind"]["short"].update(never="many"),
])
def test_a_summary_without_the_fields_judged_is_malformed(edit) -> None:
    s = summary()
    edit(s)
    with pytest.raises(MalformedRun):
        parse_run([s])


def test_a_loss_line_with_a_compare_that_is_not_hex_is_malformed() -> None:
    line = loss(1)
    line["kvm_timer"]["compare"] = "soon"
    with pytest.raises(MalformedRun, match="compare"):
        parse_run([summary(1), line])


def test_every_deadline_kept_passes() -> None:
    run = parse_run([summary()])
    verdict = judge(run, "set_timer")
    assert (verdict.verdict, verdict.rule) == (PASS, "")
    assert outcome_of(run) == {"kind": "timer-deadlines", "lost": False}


def test_a_set_timer_loss_with_kvm_holding_another_deadline_is_the_deviation() -> None:
    run = parse_run([summary(3), loss(REQUESTED - 3000), loss(REQUESTED - 3000)])
    verdict = judge(run, "set_timer")
    assert (verdict.verdict, verdict.rule) == (KNOWN_DEVIATION, DEVIATION_ID)
    assert outcome_of(run) == {"kind": "timer-deadlines", "lost": True}
    assert "3 of 2000 deadlines lost (1.5 per 1000; short early 3" in verdict.reason
    assert run.rate_per_1000 == 1.5


def test_a_loss_kvm_does_not_explain_fails() -> None:
    for compare in (REQUESTED, None):
        verdict = judge(parse_run([summary(1), loss(compare)]), "set_timer")
        assert (verdict.verdict, verdict.rule) == (FAIL, "set-timer-deadline-kept")


def test_a_loss_beside_the_stale_copy_is_named_within_the_deviation() -> None:
    run = parse_run([summary(2), loss(REQUESTED - 3000), loss(REQUESTED)])
    verdict = judge(run, "set_timer")
    assert (verdict.verdict, verdict.rule) == (KNOWN_DEVIATION, DEVIATION_ID)
    assert "1 of them with KVM's compare holding the deadline programmed" in verdict.reason


def test_a_loss_without_sstc_is_not_the_deviation() -> None:
    verdict = judge(parse_run([summary(1, sstc=False), loss(0)]), "set_timer")
    assert (verdict.verdict, verdict.rule) == (FAIL, "set-timer-deadline-kept")


def test_the_guests_own_stimecmp_writes_must_never_be_lost() -> None:
    assert judge(parse_run([summary()]), "stimecmp").verdict == PASS
    verdict = judge(parse_run([summary(1), loss(0)]), "stimecmp")
    assert (verdict.verdict, verdict.rule) == (FAIL, "stimecmp-deadline-kept")


def test_each_source_must_have_been_at_work() -> None:
    run = parse_run([summary()])
    assert missing_evidence(run, 2000, "signal") == []
    assert missing_evidence(run, 1000, "none") == [
        "the guest programmed 2000 deadlines, not 1000"]
    idle = parse_run([summary(intr_exits=0, source_events=0, involuntary_switches=0)])
    for source, words in (("signal", "EINTR"), ("migrate", "never moved"),
                          ("preempt", "never preempted")):
        assert words in missing_evidence(idle, 2000, source)[0]


def test_cases_per_source_and_control() -> None:
    suite = Timer(TimerConfig(sources=("signal", "preempt"), control=("preempt",)))
    assert suite.plan() == ["timer/set_timer/signal", "timer/set_timer/preempt",
                            "timer/stimecmp/preempt"]
    preempt_only = Timer(TimerConfig(control=(), sources=("preempt",)))
    assert preempt_only.plan() == ["timer/set_timer/preempt"]
    assert preempt_only.needs().min_cpus == 1
    assert suite.needs().min_cpus == 2
    assert Timer(TimerConfig(sources=("preempt",), control=("migrate",))).needs().min_cpus == 2


def test_a_case_reruns_alone_and_prints_the_outcome_judge_gives() -> None:
    assert Timer(TimerConfig()).needs().min_cpus == 1  # a one-CPU rig.yaml still loads
    script = Timer(TimerConfig()).command_for("timer/stimecmp/migrate")
    assert "--source migrate" in script and "--direct" in script
    assert f"{OUTCOME_MARK} kind=timer-deadlines lost=$l" in script


def test_the_summary_judged_is_the_last_one() -> None:
    first, last = summary(), copy.deepcopy(summary(2))
    assert parse_run([first, last, loss(0), loss(0)]).lost == 2


def test_the_example_configuration_runs_b922307a_against_it_with_the_fix() -> None:
    repo = Path(__file__).resolve().parents[2]
    example = config.load(repo / "docs" / "examples" / "timer-fix.yaml")
    patches = {k.name: [p.name for p in k.patches] for k in example.kernels}
    fix = "0003-RISC-V-KVM-Keep-next_cycles-in-step-with-an-SBI-set_.patch"
    assert (repo / "images" / "patches" / fix).is_file()
    assert patches["b922307a-timer-fix"] == [*patches["b922307a"], fix]
    assert example.suites["timer"].enabled
