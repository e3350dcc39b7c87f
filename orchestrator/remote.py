"""`orchestrator run --target NAME` with an ssh entry: the plan on a host as it is.

Nothing is built or booted. The rig connects, records what it found
(`uname -a`, the kernel config, the CPUs' ISA strings, the capabilities)
in manifest.json, copies the guest-test binaries over SFTP to the place
they have in the rig's own host (/usr/lib/rig), then runs the suites in
the same order and with the same judging as on QEMU. The cases' `kernel`
is the target's name.

A suite first adapts to the target (Suite.adapt: latency measures
wall-clock time where exact timing is missing); a suite whose needs the
target still cannot meet is skipped with Needs.unmet()'s reason. An
infrastructure error (a lost connection, a timeout) turns the cases it
prevented into `error` cases; the cases before it are kept, and the next
suite reconnects.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from orchestrator import __version__, guest, image
from orchestrator.budget import Budget
from orchestrator.config import RigConfig, SshTarget
from orchestrator.errors import InfraError
from orchestrator.execution import Execution, rerun_command
from orchestrator.plan import Plan, make
from orchestrator.results import RunRecord
from orchestrator.runner import peak_rss_mib
from orchestrator.suites import Suite
from orchestrator.targets.ssh import SshTarget as SshConnection


class TargetRun:
    """The plan's suites on one ssh target, cases recorded under the target's name."""

    def __init__(self, rig: RigConfig, plan: Plan, record: RunRecord, entry: SshTarget,
                 budget: Budget) -> None:
        self.rig, self.plan, self.record, self.budget = rig, plan, record, budget
        self.entry = entry
        self.execution = Execution(rig, record, entry.name, plan.cases, on_target=True)

    def run(self) -> None:
        target = SshConnection(self.entry, self.record.dir / self.entry.name, self.budget,
                               self.rig.path)
        about: dict = {"target": {"type": "ssh", "address": target.address,
                                  "host_keys": self.entry.host_keys}}
        self.record.manifest["kernels"][self.entry.name] = about
        try:
            self._start(target, about)
        except InfraError as exc:
            print(f"[{target.label}] {exc.message}", file=sys.stderr)
            self.execution.fail(self.plan.suites, exc)
            target.close()
            self.record.set_manifest()
            return
        try:
            for suite in self.plan.suites:
                self._suite(suite, target, about)
        finally:
            target.close()
            self.record.set_manifest()

    def _start(self, target: SshConnection, about: dict) -> None:
        print(f"[{target.label}] connecting to {target.address}", file=sys.stderr)
        about["connect_seconds"] = target.connect()
        about.update(target.describe(self.record.dir / self.entry.name))
        if about["machine"] != "riscv64":
            raise InfraError(f"{target.label}: {target.address} is {about['machine']},"
                             " not riscv64")
        print(f"[{target.label}] {about['uname']}", file=sys.stderr)
        binaries = guest.build(self.rig.cache_dir)
        target.run(f"mkdir -p /{image.GUEST_TESTS_DIR}")
        for remote, local in binaries.items():
            target.put(local, f"/{remote}")
        about["guest_tests"] = sorted(f"/{remote}" for remote in binaries)
        self.record.set_manifest()

    def _suite(self, suite: Suite, target: SshConnection, about: dict) -> None:
        if not target.running:  # the last suite lost the connection
            try:
                target.connect()
            except InfraError as exc:
                self.execution.fail([suite], exc)
                return
        adapted = suite.adapt(target.capabilities)
        if adapted.cfg != suite.cfg:
            about.setdefault("adapted", {})[suite.name] = dataclasses.asdict(adapted.cfg)
        started = time.monotonic()
        if self.execution.suite(adapted, target, target.label):
            about.setdefault("suite_seconds", {})[suite.name] = round(
                time.monotonic() - started, 1)
            self.record.flush()


def run(rig: RigConfig, entry: SshTarget, only: str | None = None) -> RunRecord:
    plan = make(rig, None, only)
    record = RunRecord(rig.results_dir)
    print(f"run {record.run_id}: target {entry.name}, {len(plan.ids())} case(s),"
          f" results in {record.dir}", file=sys.stderr)
    record.set_manifest(
        rig_version=__version__,
        config=str(rig.path),
        reproduce=rerun_command(rig, only, target=entry.name),
        suites={s.name: dataclasses.asdict(s.cfg) for s in plan.suites},
        kernels={},
    )
    try:
        TargetRun(rig, plan, record, entry, Budget(rig.timeouts)).run()
    finally:
        record.set_manifest(peak_rss_mib=peak_rss_mib())
        record.flush()
    record.finish()
    return record
