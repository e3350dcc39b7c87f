"""`orchestrator lava import`: a `ReplayTarget` answers the suites' own run()
with what the job's host printed, so verdicts come from the same judging code
as a direct run's; they are written as a run directory (results.json,
junit.xml, results.ktap, report.md)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator import __version__, compare, report, store
from orchestrator.config import RigConfig
from orchestrator.errors import BadInput, InfraError, tail
from orchestrator.execution import Execution, add_differs
from orchestrator.lava.export import PLAN_FILE
from orchestrator.lava.jobs import Boot, LavaHost
from orchestrator.lava.logs import BootLog, JobLog, Recorded, read_log
from orchestrator.results import RunRecord
from orchestrator.suites import Suite, SuiteConfig, registry
from orchestrator.targets import CommandResult
from orchestrator.targets.qemu import machine_capabilities


class ReplayTarget(LavaHost):
    """A Target that answers the suites' commands with what the job's host printed.

    Boots are the job's boots of one group, in order; reboot() moves to the next.
    A command is matched by its text, in order, within the current boot."""

    def __init__(self, label: str, boots: list[Boot], logs: dict[int, BootLog],
                 log_dir: Path, job_error: str) -> None:
        self.label = label
        self.capabilities = machine_capabilities(boots[0].qemu, host_share=False)
        self._boots, self._logs, self._dir, self._error = boots, logs, log_dir, job_error
        self._position = -1
        self._served: dict[int, int] = {}  # command id -> attempts handed out
        self._last: Recorded | None = None
        self.console_log = log_dir / "unused"
        self.boot_history: list[float] = []
        self._start(0)

    def _start(self, position: int) -> None:
        self._position = position
        boot = self._boots[position]
        self.console_log = self._dir / f"lava-boot-{boot.index}.console.log"
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        log = self._logs.get(boot.index)
        self.console_log.write_text(log.console if log else "")

    @property
    def boot(self) -> Boot:
        return self._boots[self._position]

    def _missing(self, what: str) -> InfraError:
        why = f" (the job: {self._error})" if self._error else ""
        return InfraError(f"{self.label}: {what}{why}; console log: {self.console_log}",
                          details=tail(self.console_log.read_text()))

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        log = self._logs.get(self.boot.index)
        if log is None:
            raise self._missing(f"the LAVA job has no boot {self.boot.index}")
        for planned in self.boot.commands:
            attempts = log.commands.get(planned.id, [])
            served = self._served.get(planned.id, 0)
            again = served and served < len(attempts) and attempts[served - 1].timed_out
            if planned.command != command or (served and not again):
                continue
            self._served[planned.id] = served + 1
            if not attempts:
                if planned.retry_of is not None:
                    continue  # the attempt before it passed: this one never ran
                raise self._missing(f"the job's host did not finish {command!r}")
            done = self._last = attempts[served]
            if done.timed_out:
                raise self._missing(f"timed out after {planned.timeout:g}s waiting for"
                                    f" command {command!r} to finish")
            return CommandResult(command, done.status, done.output, done.seconds)
        raise self._missing(f"boot {self.boot.index} of the LAVA job did not run {command!r}"
                            " (the suite asked for what export did not record)")

    def reboot(self) -> float:
        last = self._last
        if last and last.timed_out and len(self._logs[self.boot.index].commands[last.id]) \
                > self._served[last.id]:
            # the job's script ran the killed command once more in the same boot:
            # the suite's rerun after a reboot gets that attempt
            print(f"[{self.label}] no reboot in a LAVA job: the command the watchdog killed"
                  " was run once more in the same boot", file=sys.stderr)
            self._last = None
            return 0.0
        if self._position + 1 >= len(self._boots):
            raise self._missing(f"the LAVA job booted this machine {len(self._boots)} time(s);"
                                " the suite asked for another boot")
        self._start(self._position + 1)
        return 0.0



def _suite(name: str, saved: dict[str, Any] | None, rig: RigConfig) -> Suite:
    """The suite as export configured it (plan.json), lists back to tuples."""
    cls = registry().get(name)
    if cls is None:
        raise BadInput(f"{PLAN_FILE}: suite {name} is not in this rig")
    cfg: SuiteConfig = rig.suites[name]
    if saved:
        names = {f.name for f in dataclasses.fields(cls.Config)}
        cfg = cls.Config(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in saved.items() if k in names})
    return cls(cfg)


def _log_path(directory: Path, kernel_name: str) -> Path | None:
    for candidate in (directory / "logs" / f"{kernel_name}.yaml",
                      directory / "logs" / f"{kernel_name}.log"):
        if candidate.is_file():
            return candidate
    return None


def _replay_kernel(rig: RigConfig, record: RunRecord, name: str, entry: dict[str, Any],
                   suites_cfg: dict[str, Any], job: JobLog | None, log_file: Path | None) -> None:
    boots = [Boot.from_json(b) for b in entry["boots"]]
    spec = rig.kernel(name) if any(k.name == name for k in rig.kernels) else None
    log_dir = record.dir / name
    skipped = entry.get("skipped", {})
    cases = {suite_name: skip["ids"] for suite_name, skip in skipped.items()}
    for boot in boots:  # a suite's boots (latency boots several times) serve one list
        for suite_name, ids in boot.suites.items():
            cases.setdefault(suite_name, ids)
    execution = Execution(rig, record, name, cases)
    for suite_name, skip in skipped.items():
        execution.skip(_suite(suite_name, suites_cfg.get(suite_name), rig), skip["reason"])
    for group, members in itertools.groupby(boots, key=lambda b: b.group):
        group_boots = list(members)
        target = ReplayTarget(f"{name} {group} (LAVA)", group_boots,
                              job.boots if job else {}, log_dir,
                              job.error if job else f"no job log for {name} (looked for"
                                                    f" logs/{name}.yaml)")
        logged = [job.boots[b.index] for b in group_boots if job and b.index in job.boots]
        record.set_target(name, group, suites=list(group_boots[0].suites),
                          lava_boots=[b.index for b in group_boots],
                          qemu_command=logged[0].command_line if logged else "",
                          log=str(log_file) if log_file else None)
        for suite_name in dict.fromkeys(s for b in group_boots for s in b.suites):
            suite = _suite(suite_name, suites_cfg.get(suite_name), rig)
            # suites that read what they packed (cached) find it again
            setup = functools.partial(suite.host_files, rig, spec) if spec else None
            execution.suite(suite, target, target.label, target.console_log, timed=False,
                            setup=setup)
        record.flush()


def import_run(rig: RigConfig, directory: Path) -> RunRecord:
    """Judge the job logs under directory/logs with the suites' own code; write a run."""
    plan_path = directory / PLAN_FILE
    try:
        plan = json.loads(plan_path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{plan_path}: not an 'orchestrator lava export' directory ({exc})"
                       ) from None
    record = RunRecord(rig.results_dir)
    kernels = list(plan["kernels"])
    print(f"lava import {directory}: {len(kernels)} kernel(s), results in {record.dir}",
          file=sys.stderr)
    record.set_manifest(
        rig_version=__version__, config=plan["config"], only=plan.get("only"),
        qemu={**plan["qemu"], "version": "as the LAVA worker has it (see the job logs)"},
        reproduce=f"orchestrator lava import {shlex.quote(str(directory))}",
        source={"lava": str(directory.resolve()), "exported": plan.get("exported")},
        suites=plan.get("suites", {}),
        kernels={name: {**entry["build"], "targets": {}}
                 for name, entry in plan["kernels"].items()})
    started = time.monotonic()
    for name in kernels:
        log_file = _log_path(directory, name)
        job = read_log(log_file.read_text(errors="replace")) if log_file else None
        _replay_kernel(rig, record, name, plan["kernels"][name], plan.get("suites", {}),
                       job, log_file)
        if job:
            record.manifest["kernels"][name]["lava_job"] = {
                "log": str(log_file), "seconds": job.seconds, "error": job.error or None,
                "boots_logged": sorted(job.boots)}
    # kernels are compared within a source (its package or commit, from the build record)
    baselines = compare.baselines({name: str(plan["kernels"][name]["build"]["source"])
                                   .split("=")[0] for name in kernels})
    add_differs(rig, record, baselines)
    record.set_manifest(import_seconds=round(time.monotonic() - started, 2))
    record.order(kernels)
    record.flush()
    if len(kernels) > 1 and not plan.get("only"):
        report.write_run(record.dir, record.cases, record.manifest["kernels"], baselines)
    store.record_run(rig.results_dir, record.dir, record.cases, record.manifest,
                     record.exit_code())
    return record
