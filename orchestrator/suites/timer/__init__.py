"""timer: the guest's timer deadlines survive KVM putting and loading its vCPU.

The guest programs `deadlines` deadlines in turn (the first after reset,
short, long, and one replaced before it fires) and checks each interrupt
against `time`; the timer program (guest-tests/) meanwhile makes KVM put and
load the vCPU from a second thread: signals to the vCPU thread (KVM_EXIT_INTR,
then KVM_RUN again), a real-time thread on its CPU woken every tick
(preemption), or moves between CPUs (migration). `rounds` fresh VMs share
the deadlines, so each round's first one is the first after a reset.

On a host with Sstc, KVM 6.12 loses a deadline set with SBI set_timer when
the put/load falls between the call and the next guest entry: the named
deviation kvm-sstc-deadline-lost-on-vcpu-put (docs/timer-deadline.md). The
control programs the same deadlines with the guest's own stimecmp writes,
which KVM picks up at the next exit: they must never be lost. A kernel that
keeps every deadline passes; a loss that KVM's compare register does not
explain is a failure.

Per case one run. With rig.yaml's settings (500 deadlines over 5 rounds; the
source's thread sleeps a host tick between events) Linux 6.12 lost about 170
(signal), 130 (preempt) and 90 (migrate) deadlines per 1000, at least 11 in
any of 20 runs on each default kernel, and the suite took a median of 10 s
per kernel on a loaded 2-core machine (docs/timer-deadline.md).

Case ids: timer/<set_timer|stimecmp>/<source>
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

from orchestrator import guest
from orchestrator.errors import tail
from orchestrator.suites import OUTCOME_MARK, Fail, Suite, SuiteConfig
from orchestrator.suites.timer.judge import (
    MODES,
    SOURCES,
    MalformedRun,
    TimerRun,
    deviation,
    judge,
    missing_evidence,
    outcome_of,
    parse_run,
)
from orchestrator.targets import Needs, Target
from orchestrator.verdicts import Case

PROGRAM = "timer"
_ID = re.compile(r"timer/(set_timer|stimecmp)/(signal|preempt|migrate|none)$")
# sources that need a second host CPU for their thread
_TWO_CPUS = ("signal", "migrate")


@dataclasses.dataclass(frozen=True)
class TimerConfig(SuiteConfig):
    # what puts and loads the vCPU, one case each (none: only what the host does anyway);
    # signal and migrate need a second host CPU (rig.yaml asks for all three)
    sources: tuple[str, ...] = ("preempt",)
    # the control, under these sources: the same deadlines written to stimecmp by the
    # guest itself (never lost); [] for none
    control: tuple[str, ...] = ("preempt",)
    # deadlines per run, and the fresh VMs (rounds) they are split over
    deadlines: int = 500
    rounds: int = 5
    # signal, migrate: the pause between events (a host without high-resolution timers
    # rounds it up to its next tick: 4 ms on the rig's 250 Hz host)
    period_us: int = 1000
    # seconds one run may take (the guest's waits are bounded: a run ends)
    timeout: float = 120.0


class Timer(Suite):
    name = "timer"
    Config = TimerConfig
    order = 35
    cfg: TimerConfig

    @classmethod
    def validate(cls, cfg: TimerConfig, fail: Fail) -> None:
        for key in ("sources", "control"):
            for i, source in enumerate(getattr(cfg, key)):
                if source not in SOURCES:
                    fail(f"{key}[{i}]", source, "one of " + ", ".join(SOURCES))
        if not 1 <= cfg.deadlines <= 10**6:
            fail("deadlines", cfg.deadlines, "an integer from 1 to 1000000")
        if not 1 <= cfg.rounds <= cfg.deadlines:
            fail("rounds", cfg.rounds, f"an integer from 1 to deadlines ({cfg.deadlines})")
        if not 1 <= cfg.period_us <= 10**6:
            fail("period_us", cfg.period_us, "microseconds, from 1 to 1000000")
        if not 1 <= cfg.timeout <= 24 * 3600:
            fail("timeout", cfg.timeout, "seconds, from 1 to 86400")

    def needs(self) -> Needs:
        used = {*self.cfg.sources, *self.cfg.control}
        return Needs(min_cpus=2 if used & set(_TWO_CPUS) else 1)

    def plan(self) -> list[str]:
        cases = zip(MODES, (self.cfg.sources, self.cfg.control), strict=True)
        return [f"{self.name}/{mode}/{source}"
                for mode, sources in cases for source in dict.fromkeys(sources)]

    def _command(self, mode: str, source: str) -> str:
        flags = (f"--source {source} --deadlines {self.cfg.deadlines}"
                 f" --rounds {self.cfg.rounds} --period-us {self.cfg.period_us}"
                 + (" --direct" if mode == "stimecmp" else ""))
        return guest.command(PROGRAM, flags)

    def run(self, target: Target, ids: list[str]) -> Iterator[Case]:
        for case_id in ids:
            match = _ID.match(case_id)
            if not match:
                yield from self.errors([case_id], f"{case_id}: not a timer case id")
                continue
            yield self._run_case(target, case_id, match.group(1), match.group(2))

    def _run_case(self, target: Target, case_id: str, mode: str, source: str) -> Case:
        result = target.run(self._command(mode, source), timeout=self.cfg.timeout)
        try:
            run = parse_run(guest.parse_records(result.output))
        except MalformedRun as exc:
            return next(self.errors([case_id], f"'{result.command}': {exc}",
                                    tail(result.output)))
        if result.status != 0 or run is None:
            return next(self.errors([case_id], f"'{result.command}' exited {result.status}"
                                               " without a timer summary", tail(result.output)))
        missing = missing_evidence(run, self.cfg.deadlines, source)
        if missing:
            return next(self.errors([case_id], "the run did not exercise what the check"
                                               " needs: " + "; ".join(missing),
                                    tail(result.output)))
        judged = judge(run, mode)
        return self.case(case_id, judged.verdict, outcome=outcome_of(run),
                         expected=judged.expected, reason=judged.case_reason,
                         rule=judged.rule or None, duration=round(result.seconds, 3),
                         details=_details(run))

    def command_for(self, case_id: str) -> str:
        match = _ID.match(case_id)
        if not match:
            return super().command_for(case_id)
        # as judge(): the outcome is whether any deadline was lost
        return "\n".join([
            f"{self._command(match.group(1), match.group(2))} > /tmp/out",
            """s=$(grep '"kind":"timer"' /tmp/out | tail -n 1)""",
            f'[ -n "$s" ] || {{ cat /tmp/out; echo "{OUTCOME_MARK} kind=missing"; exit 1; }}',
            """n=$(echo "$s" | sed -E 's/.*"losses":([0-9]+).*/\\1/')""",
            '[ "$n" = 0 ] && l=false || l=true',
            f'echo "{OUTCOME_MARK} kind=timer-deadlines lost=$l"'])


def _details(run: TimerRun) -> dict:
    details: dict = {"summary": run.summary, "loss_rate_per_1000": run.rate_per_1000}
    if run.losses:
        details["losses"] = run.losses
        details["mechanism"] = deviation().source
    return details
