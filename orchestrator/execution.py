"""One path from a suite's planned cases to recorded cases, whatever the target.

A direct run (orchestrator.runner: the QEMU boots the rig makes), a run on an
ssh host (orchestrator.runner.run_target) and the replay of a LAVA job's log
(orchestrator.lava.replay) all record through an `Execution`:
- every case is stamped with the name it ran under (the kernel, or the ssh
  target), its console log and, for a failure or an error, the command that
  reruns it alone (`rerun_command`);
- a suite whose needs the target cannot meet is skipped, with the reason;
- an infrastructure error (a panic, a timeout, a lost connection), or output
  of the host's programs the suite cannot read, ends the suite: the cases it
  has not reported become `error` cases carrying the cause, and the cases
  before it are kept; a failure before any suite could start (a build, a
  boot) does the same for every case it prevented.
Suites whose needs give the same machine share a boot (`machine_groups`);
after all kernels, `add_differs` records each case that behaves differently
than on the first kernel of its source.
"""

from __future__ import annotations

import dataclasses
import itertools
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from orchestrator import compare
from orchestrator.config import QemuConfig, RigConfig, default_config_path
from orchestrator.errors import InfraError, RigError
from orchestrator.results import DIFFERS, RunRecord
from orchestrator.suites import Suite
from orchestrator.targets import Target
from orchestrator.targets.qemu import qemu_for
from orchestrator.verdicts import ERROR, FAIL, SKIP, Case


def rerun_command(rig: RigConfig, only: str | None = None, kernels: Iterable[str] = (),
                  target: str | None = None) -> str:
    """The command line that runs again what a run (or one case, only) ran: on the
    kernels the rig builds, or on an ssh target."""
    args = ["orchestrator"]
    if rig.path != default_config_path().resolve():
        args += ["-c", str(rig.path)]
    args.append("run")
    if target:
        args += ["--target", target]
    for name in kernels:
        args += ["--kernel", name]
    if only:
        args += ["--only", only]
    return shlex.join(args)


@dataclasses.dataclass
class Group:
    """Suites that share a boot: consecutive in run order, their needs give one machine."""

    index: int  # position among a kernel's groups, in run order
    machine: QemuConfig
    suites: list[Suite]

    @property
    def name(self) -> str:
        """The boot's name in results (its console log, manifest.json's targets)."""
        return "boot" if self.index == 0 else self.suites[0].name

    @property
    def exclusive(self) -> bool:
        """Measures wall-clock time: runs after the others, alone on the machine."""
        return self.suites[0].needs().exclusive


def machine_groups(suites: Iterable[Suite], qemu: QemuConfig) -> list[Group]:
    grouped = itertools.groupby(suites, key=lambda s: qemu_for(s.needs(), qemu))
    return [Group(index, machine, list(members))
            for index, (machine, members) in enumerate(grouped)]


def add_differs(rig: RigConfig, record: RunRecord, baselines: dict[str, str]) -> None:
    """A `differs` failure for each case whose behaviour on a kernel is not its
    baseline kernel's (compare.baselines: the first kernel of the same source)."""
    for name, baseline in baselines.items():
        if name == baseline:
            continue
        pair = [c for c in record.cases if c.kernel in (name, baseline)]
        for diff in compare.behaviour(pair, baseline):
            record.add(Case(id=f"{DIFFERS}/{diff.id}", suite=DIFFERS, verdict=FAIL,
                            kernel=diff.kernel, reason=diff.reason, outcome=diff.outcome,
                            expected=f"as on {baseline}",
                            rerun=rerun_command(rig, diff.id, [baseline, diff.kernel])))


class Execution:
    """The cases of one kernel (or one ssh target), named `name`, as they are recorded.

    cases: the plan's case ids per suite; on_target: the name is an ssh target's (its
    rerun command says --target); stopping: true once the run is interrupted (what breaks
    then is not the kernel's doing, and is not recorded)."""

    def __init__(self, rig: RigConfig, record: RunRecord, name: str,
                 cases: dict[str, list[str]], on_target: bool = False,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.rig, self.record, self.name, self.cases = rig, record, name, cases
        self._on_target, self._stopping = on_target, stopping

    def add(self, case: Case, log: Path | None = None) -> None:
        if self._stopping():
            return
        case.kernel = self.name
        case.log = case.log or (self.record.relative(log) if log else "")
        if case.verdict in (FAIL, ERROR):
            case.rerun = (rerun_command(self.rig, case.id, target=self.name) if self._on_target
                          else rerun_command(self.rig, case.id, [self.name]))
        self.record.add(case)

    def fail(self, suites: Iterable[Suite], exc: RigError) -> None:
        """Every planned case of suites is an error: exc prevented them all."""
        for suite in suites:
            for case in suite.errors(self.cases[suite.name], exc.message, exc.details):
                self.add(case)

    def skip(self, suite: Suite, reason: str, log: Path | None = None) -> None:
        for case_id in self.cases[suite.name]:
            self.add(suite.case(case_id, SKIP, reason=reason, outcome={"kind": "skipped"}), log)

    def suite(self, suite: Suite, target: Target, label: str, log: Path | None = None,
              timed: bool = True, setup: Callable[[], object] | None = None) -> bool:
        """suite's planned cases on target; False: skipped, target cannot meet its needs."""
        unmet = suite.needs().unmet(target.capabilities)
        if unmet:
            print(f"[{label}] {suite.name}: skipped: {unmet}", file=sys.stderr)
            self.skip(suite, unmet, log)
            return False
        self.run(suite, target, label, timed, setup)
        return True

    def run(self, suite: Suite, target: Target, label: str, timed: bool = True,
            setup: Callable[[], object] | None = None) -> None:
        """Run suite's planned cases on target. timed: a case that gives no duration gets
        the time since the one before (False: a replay, whose clock says nothing);
        setup: called first, its infrastructure errors are the suite's."""
        ids = self.cases[suite.name]
        done: set[str] = set()
        last = time.monotonic()
        print(f"[{label}] {suite.name}: {len(ids)} case(s)", file=sys.stderr)
        try:
            if setup is not None:
                setup()
            for case in suite.run(target, ids):
                now = time.monotonic()
                if timed:
                    case.duration = case.duration or round(now - last, 3)
                last = now
                self.add(case, target.console_log)
                done.add(case.id)
        except InfraError as exc:
            print(f"[{label}] {suite.name}: {exc.message}", file=sys.stderr)
            for case in suite.errors([i for i in ids if i not in done], exc.message,
                                     exc.details):
                self.add(case, target.console_log)
            return
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            # what a host's programs print is foreign input: output a suite cannot read
            # (a record without a field it needs) ends the suite like an infrastructure
            # error, never the run; the traceback says where, should it be the rig's bug
            where = traceback.extract_tb(exc.__traceback__)[-1]
            message = (f"suite {suite.name} could not read the host's output:"
                       f" {type(exc).__name__}: {str(exc)[:200]}"
                       f" ({Path(where.filename).name}:{where.lineno})")
            print(f"[{label}] {message}", file=sys.stderr)
            for case in suite.errors([i for i in ids if i not in done], message,
                                     traceback.format_exc()):
                self.add(case, target.console_log)
            return
        for case in suite.errors([i for i in ids if i not in done],
                                 f"suite {suite.name} did not report this case"):
            self.add(case, target.console_log)
