"""`orchestrator lava import`: a `ReplayTarget` answers the suites' own run()
with what the job's host printed, so verdicts come from the same judging code
as a direct run's; they are written as a run directory (results.json,
junit.xml, results.ktap, report.md)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import shlex
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator import __version__, compare, report, store, validate
from orchestrator.config import RigConfig, saved_qemu_config, saved_suite_config
from orchestrator.errors import BadInput, InfraError, tail
from orchestrator.execution import Execution, add_differs
from orchestrator.lava.export import PLAN_FILE
from orchestrator.lava.jobs import Boot, LavaHost
from orchestrator.lava.logs import BootLog, JobLog, Recorded, read_log
from orchestrator.results import RunRecord
from orchestrator.suites import Suite, SuiteConfig, registry
from orchestrator.targets import CommandResult
from orchestrator.targets.qemu import machine_capabilities

PLAN_SCHEMA = "lava-plan-v1.json"
MAX_LOG_BYTES = 1 << 30  # a day of console output is far below
SERVER_JOB_SUFFIX = ".job.json"  # logs/<kernel>.job.json: the server's record (lava submit)


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



def _suite(name: str, configs: dict[str, SuiteConfig], rig: RigConfig) -> Suite:
    """The suite as export configured it (plan.json, checked by load_plan)."""
    return registry()[name](configs.get(name) or rig.suites[name])


@dataclasses.dataclass
class Plan:
    """plan.json, checked whole before anything is written: the schema, then each
    machine and suite configuration by rig.yaml's own rules."""

    path: Path
    data: dict[str, Any]
    boots: dict[str, list[Boot]]  # kernel -> its boots
    suites: dict[str, SuiteConfig]


def load_plan(directory: Path) -> Plan:
    path = directory / PLAN_FILE
    if not path.exists():
        raise BadInput(f"{path}: no such file; not an 'orchestrator lava export' directory")
    validate.inside(directory, path, str(path))
    data = validate.load_json(path, PLAN_SCHEMA)
    saved_qemu_config(path, "qemu", data["qemu"])
    suites = {name: saved_suite_config(path, name, cfg)
              for name, cfg in data.get("suites", {}).items()}
    boots = {}
    for kernel_name, entry in data["kernels"].items():
        where = f"kernels.{kernel_name}"
        boots[kernel_name] = [
            Boot.from_json(b, saved_qemu_config(path, f"{where}.boots[{i}].qemu", b["qemu"]))
            for i, b in enumerate(entry["boots"])]
        named = [*entry.get("skipped", {}), *(s for b in boots[kernel_name] for s in b.suites)]
        for suite_name in named:
            if suite_name not in registry():
                raise BadInput(f"{path}: {where}: suite {suite_name} is not in this rig")
    return Plan(path, data, boots, suites)


def _log_path(directory: Path, kernel_name: str) -> Path | None:
    """The kernel's job log (kernel_name follows the name rule: plan.json's schema)."""
    for candidate in (directory / "logs" / f"{kernel_name}.yaml",
                      directory / "logs" / f"{kernel_name}.log"):
        if candidate.exists():
            return validate.inside(directory, candidate, str(candidate))
    return None


def _read_logs(directory: Path, kernels: Iterable[str]) -> dict[str, tuple[Path, JobLog]]:
    """Every kernel's job log, read (and so checked) before anything is written."""
    logs = {}
    for name in kernels:
        path = _log_path(directory, name)
        if path is not None:  # console output may hold any byte: replaced, never refused
            text = validate.read_text(path, MAX_LOG_BYTES, errors="replace")
            logs[name] = (path, read_log(text, str(path)))
    return logs


def _server_job(directory: Path, kernel_name: str) -> dict[str, Any] | None:
    """What a LAVA server said of the kernel's job, if `lava submit` fetched it
    (kernel_name follows the name rule: plan.json's schema)."""
    path = directory / "logs" / f"{kernel_name}{SERVER_JOB_SUFFIX}"
    if not path.exists():
        return None
    validate.inside(directory, path, str(path))
    data = validate.parse_json(validate.read_text(path), str(path))
    if not isinstance(data, dict):
        raise BadInput(f"{path}: not a LAVA job record (a JSON object)")
    return data


def with_server_error(job: JobLog | None, server_job: dict[str, Any] | None) -> JobLog | None:
    """A job the server ended Incomplete or Canceled: its message leads the job's error
    (what the job did not finish becomes error cases, never failures)."""
    error = str((server_job or {}).get("error") or "")[:1000]
    if not error:
        return job
    job = job or JobLog({}, [], "", 0.0)
    job.error = error if not job.error or job.error in error else f"{error}; {job.error}"
    return job


def _replay_kernel(rig: RigConfig, record: RunRecord, name: str, plan: Plan,
                   job: JobLog | None, log_file: Path | None) -> None:
    boots, entry, suites_cfg = plan.boots[name], plan.data["kernels"][name], plan.suites
    spec = rig.kernel(name) if any(k.name == name for k in rig.kernels) else None
    log_dir = record.dir / name
    skipped = entry.get("skipped", {})
    cases = {suite_name: skip["ids"] for suite_name, skip in skipped.items()}
    for boot in boots:  # a suite's boots (latency boots several times) serve one list
        for suite_name, ids in boot.suites.items():
            cases.setdefault(suite_name, ids)
    execution = Execution(rig, record, name, cases)
    for suite_name, skip in skipped.items():
        execution.skip(_suite(suite_name, suites_cfg, rig), skip["reason"])
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
            suite = _suite(suite_name, suites_cfg, rig)
            # suites that read what they packed (cached) find it again
            setup = functools.partial(suite.host_files, rig, spec) if spec else None
            execution.suite(suite, target, target.label, target.console_log, timed=False,
                            setup=setup)
        record.flush()


def import_run(rig: RigConfig, directory: Path) -> RunRecord:
    """Judge the job logs under directory/logs with the suites' own code; write a run."""
    plan = load_plan(directory)
    logs = _read_logs(directory, plan.data["kernels"])
    server_jobs = {name: _server_job(directory, name) for name in plan.data["kernels"]}
    data = plan.data
    record = RunRecord(rig.results_dir)
    kernels = list(data["kernels"])
    print(f"lava import {directory}: {len(kernels)} kernel(s), results in {record.dir}",
          file=sys.stderr)
    record.set_manifest(
        rig_version=__version__, config=data["config"], only=data.get("only"),
        qemu={**data["qemu"], "version": "as the LAVA worker has it (see the job logs)"},
        reproduce=f"orchestrator lava import {shlex.quote(str(directory))}",
        source={"lava": str(directory.resolve()), "exported": data.get("exported")},
        suites=data.get("suites", {}),
        kernels={name: {**entry["build"], "targets": {}}
                 for name, entry in data["kernels"].items()})
    started = time.monotonic()
    for name in kernels:
        log_file, job = logs.get(name, (None, None))
        server_job = server_jobs[name]
        job = with_server_error(job, server_job)
        _replay_kernel(rig, record, name, plan, job, log_file)
        if job:
            record.manifest["kernels"][name]["lava_job"] = {
                "log": str(log_file) if log_file else None, "seconds": job.seconds,
                "error": job.error or None, "boots_logged": sorted(job.boots),
                **({"server": server_job} if server_job else {})}
    # kernels are compared within a source (its package or commit, from the build record)
    baselines = compare.baselines({name: str(data["kernels"][name]["build"]["source"])
                                   .split("=")[0] for name in kernels})
    add_differs(rig, record, baselines)
    record.set_manifest(import_seconds=round(time.monotonic() - started, 2))
    record.order(kernels)
    record.flush()
    if not data.get("only"):
        report.write_run(record.dir, record.cases, baselines)
    record.finish()
    store.record_run(rig.results_dir, record.dir, record.cases, record.manifest,
                     record.exit_code())
    return record
