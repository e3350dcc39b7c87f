"""Judging one run of the timer program (guest-tests/README.md, `timer` and
`timer-loss` lines): did every deadline the guest programmed fire, and if one
was lost, is it the known KVM deviation (docs/timer-deadline.md)?

A run is what the rig reads back from the host: foreign input. Its lines
are checked for the fields used here; a record without them is an error of
the run, never a verdict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from orchestrator.verdicts import DEVIATIONS, FAIL, PASS, Deviation, Judgement

DEVIATION_ID = "kvm-sstc-deadline-lost-on-vcpu-put"
# How the guest programs its deadlines: SBI TIME set_timer, or its own stimecmp
# writes (the control: KVM syncs them at the next exit, so they cannot be lost).
MODES = ("set_timer", "stimecmp")
SOURCES = ("signal", "preempt", "migrate", "none")
CLASSES = ("on_time", "late", "early", "never")
KINDS = ("first", "short", "long", "replaced")


class MalformedRun(ValueError):
    """The program's output lacks a field the judgement reads."""


@dataclass(frozen=True)
class TimerRun:
    """The `timer` summary of one run and its `timer-loss` lines."""

    summary: dict[str, Any]
    losses: list[dict[str, Any]]

    @property
    def deadlines(self) -> int:
        return int(self.summary["deadlines"])

    @property
    def lost(self) -> int:
        return int(self.summary["losses"])

    @property
    def rate_per_1000(self) -> float:
        return round(1000 * self.lost / self.deadlines, 2) if self.deadlines else 0.0


def _int(record: dict[str, Any], key: str, where: str) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedRun(f"{where}: {key} is {value!r}, not a count")
    return value


def _hex(record: dict[str, Any], key: str, where: str) -> int | None:
    value = record.get(key)
    if value is None:
        return None
    try:
        return int(value, 16)
    except (TypeError, ValueError):
        raise MalformedRun(f"{where}: {key} is {value!r}, not a hex value") from None


def parse_run(records: list[dict[str, Any]]) -> TimerRun | None:
    """The run in a program's JSON lines; None if it printed no summary."""
    summaries = [r for r in records if r.get("kind") == "timer"]
    if not summaries:
        return None
    summary = summaries[-1]
    for key in ("deadlines", "losses", "readbacks", "readback_mismatches", "kvm_runs",
                "intr_exits", "source_events", "involuntary_switches"):
        _int(summary, key, "timer line")
    if not isinstance(summary.get("sstc"), bool):
        raise MalformedRun(f"timer line: sstc is {summary.get('sstc')!r}, not true/false")
    by_kind = summary.get("by_kind")
    if not isinstance(by_kind, dict) or set(by_kind) != set(KINDS):
        raise MalformedRun(f"timer line: by_kind is {by_kind!r}, not one entry per kind {KINDS}")
    for kind, counts in by_kind.items():
        if not isinstance(counts, dict):
            raise MalformedRun(f"timer line: by_kind.{kind} is {counts!r}")
        for cls in CLASSES:
            _int(counts, cls, f"timer line by_kind.{kind}")
    losses = [r for r in records if r.get("kind") == "timer-loss"]
    for n, line in enumerate(losses):
        where = f"timer-loss line {n}"
        if _hex(line, "requested", where) is None:
            raise MalformedRun(f"{where}: no requested deadline")
        if not isinstance(line.get("kvm_timer"), dict):
            raise MalformedRun(f"{where}: kvm_timer is {line.get('kvm_timer')!r}")
        _hex(line["kvm_timer"], "compare", where)
    return TimerRun(summary, losses)


def missing_evidence(run: TimerRun, deadlines: int, source: str) -> list[str]:
    """What the run should have done but did not: every deadline asked for, and
    the put/load source at work (signals that came out as KVM_EXIT_INTR, affinity
    moves, the vCPU thread preempted)."""
    missing = []
    if run.deadlines != deadlines:
        missing.append(f"the guest programmed {run.deadlines} deadlines, not {deadlines}")
    s = run.summary
    if source == "signal" and not s["intr_exits"]:
        missing.append(f"{s['source_events']} signals sent, no KVM_RUN returned EINTR")
    if source == "migrate" and not s["source_events"]:
        missing.append("the vCPU thread was never moved to another CPU")
    if source == "preempt" and not s["involuntary_switches"]:
        missing.append("the vCPU thread was never preempted (0 involuntary context switches)")
    return missing


def _compare_explains(line: dict[str, Any]) -> bool | None:
    """Whether KVM's timer `compare` at the loss report holds another deadline than
    the one programmed (the stale copy restored); None if it could not be read."""
    compare = _hex(line["kvm_timer"], "compare", "timer-loss")
    if compare is None:
        return None
    return compare != _hex(line, "requested", "timer-loss")


def deviation() -> Deviation:
    return DEVIATIONS[DEVIATION_ID]


def outcome_of(run: TimerRun) -> dict[str, Any]:
    """The behaviour two kernels are compared on: whether any deadline was lost."""
    return {"kind": "timer-deadlines", "lost": run.lost > 0}


def judge(run: TimerRun, mode: str) -> Judgement:
    """The judgement of one run whose guest programmed its deadlines in `mode`."""
    how = "SBI set_timer" if mode == "set_timer" else "its own stimecmp writes"
    expected = f"every deadline the guest programs with {how} fires at its time"
    if not run.lost:
        return Judgement(PASS, expected, f"{run.deadlines} deadlines kept", "", "")
    seen = (f"{run.lost} of {run.deadlines} deadlines lost ({run.rate_per_1000} per 1000;"
            f" {classes_seen(run)})")
    if mode != "set_timer":
        return Judgement(FAIL, expected, seen, "the guest's own stimecmp writes reach KVM at"
                         " the next exit and should survive any vcpu_put", "stimecmp-deadline-kept")
    if not run.summary["sstc"]:
        return Judgement(FAIL, expected, seen, "lost on a vCPU without Sstc, where KVM keeps the"
                         f" deadline in an hrtimer: not {DEVIATION_ID}", "set-timer-deadline-kept")
    explained = [_compare_explains(line) for line in run.losses]
    if True not in explained:
        return Judgement(FAIL, expected, seen, "KVM's timer compare register held the deadline"
                         " programmed (or could not be read): not the known stale copy",
                         "set-timer-deadline-kept")
    # the stale copy is shown; a loss beside it whose compare held the programmed deadline
    # (seen under load, once with an early interrupt) is named, not judged on its own
    unexplained = len(explained) - explained.count(True)
    if unexplained:
        seen += (f"; {unexplained} of them with KVM's compare holding the deadline"
                 " programmed (not explained by the stale copy)")
    judged = deviation().judged(expected, seen)
    return dataclasses.replace(judged, reason=f"{judged.reason}; {seen}")


def classes_seen(run: TimerRun) -> str:
    """Non-zero counts of early, never and late deadlines, by kind."""
    parts = [f"{kind} {cls} {counts[cls]}"
             for kind, counts in run.summary["by_kind"].items()
             for cls in ("early", "never", "late") if counts[cls]]
    if run.summary["readback_mismatches"]:
        parts.append(f"stimecmp read back wrong {run.summary['readback_mismatches']}")
    return ", ".join(parts) or "no class but on time"
