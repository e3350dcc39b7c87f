"""`orchestrator run`: the plan executed, kernel by kernel.

Per kernel: build (cached), read the world-switch CSRs out of vmlinux, then
the suites, grouped by what they need from their target: suites with equal
needs share one boot. Any infrastructure error stays local: the cases it
prevented become `error` cases carrying its cause, and the run goes on
with the next suite or kernel. After all kernels, each case is compared
with the same case on the run's first kernel: a different behaviour is a
failure of its own (suite `differs`).
"""

from __future__ import annotations

import dataclasses
import itertools
import shlex
import subprocess
import sys
import time
from pathlib import Path

from orchestrator import __version__, compare, disasm, guest, kernel, report
from orchestrator.budget import Budget
from orchestrator.config import KernelSpec, QemuConfig, RigConfig, default_config_path
from orchestrator.errors import InfraError, RigError
from orchestrator.plan import Plan, make
from orchestrator.results import DIFFERS, ERROR, FAIL, Case, RunRecord
from orchestrator.suites import Suite
from orchestrator.targets import Needs
from orchestrator.targets.qemu import AIA_CPU, AIA_MACHINE, QemuTarget, has_aia, memory_mb

ICOUNT = "shift=0,sleep=off"


def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise InfraError(f"cannot run {binary} --version (run 'orchestrator setup')") from None
    return out.stdout.splitlines()[0]


def rerun_command(rig: RigConfig, kernels: list[str], only: str | None = None) -> str:
    args = ["orchestrator"]
    if rig.path != default_config_path().resolve():
        args += ["-c", str(rig.path)]
    args.append("run")
    for name in kernels:
        args += ["--kernel", name]
    if only:
        args += ["--only", only]
    return shlex.join(args)


def qemu_for(needs: Needs, qemu: QemuConfig) -> QemuConfig:
    """The QEMU machine that serves needs: icount for exact timing, the CPU count,
    the memory, AIA; what needs leave alone stays as rig.yaml has it."""
    machine = dataclasses.replace(qemu, icount=ICOUNT if needs.exact_timing else qemu.icount,
                                  smp=needs.cpus or max(qemu.smp, needs.min_cpus))
    if needs.memory_mb and memory_mb(qemu.memory) < needs.memory_mb:
        machine = dataclasses.replace(machine, memory=f"{needs.memory_mb}M")
    if needs.aia and not has_aia(qemu):
        machine = dataclasses.replace(machine, machine=f"{qemu.machine},{AIA_MACHINE}",
                                      cpu=f"{qemu.cpu},{AIA_CPU}")
    return machine


class KernelRun:
    """One kernel's part of a run: its suites on targets, its cases on disk."""

    def __init__(self, rig: RigConfig, plan: Plan, record: RunRecord, spec: KernelSpec,
                 budget: Budget) -> None:
        self.rig, self.plan, self.record, self.spec, self.budget = rig, plan, record, spec, budget

    def add(self, case: Case, log: Path | None = None) -> None:
        case.kernel = self.spec.name
        case.log = case.log or (self.record.relative(log) if log else "")
        if case.verdict in (FAIL, ERROR):
            case.rerun = rerun_command(self.rig, [self.spec.name], case.id)
        self.record.add(case)

    def fail_all(self, suites: list[Suite], exc: RigError) -> None:
        for suite in suites:
            for case in suite.errors(self.plan.cases[suite.name], exc.message, exc.details):
                self.add(case)

    def run(self) -> None:
        name = self.spec.name
        try:
            built = kernel.build(self.rig, self.spec, timeout=self.budget.limit("build"))
            initramfs = guest.host_initramfs(self.rig.cache_dir)
            csrs = disasm.world_switch_report(built.vmlinux)
        except InfraError as exc:
            print(f"[{name}] {exc.message}", file=sys.stderr)
            self.fail_all(list(self.plan.suites), exc)
            return
        entry = {**built.to_json(), "world_switch_csrs": csrs, "targets": {}}
        self.record.manifest["kernels"][name] = entry
        # Suites whose needs give the same machine share a boot.
        groups = itertools.groupby(self.plan.suites,
                                   key=lambda s: qemu_for(s.needs(), self.rig.qemu))
        for index, (qemu, members) in enumerate(groups):
            suites = list(members)
            boot_name = "boot" if index == 0 else suites[0].name
            try:  # files some suites build for this kernel (e.g. its own selftests)
                extra = {k: v for s in suites for k, v in s.host_files(self.rig, self.spec).items()}
                group_initramfs = (guest.host_initramfs(self.rig.cache_dir, extra) if extra
                                   else initramfs)
            except InfraError as exc:
                print(f"[{name} {boot_name}] {exc.message}", file=sys.stderr)
                self.fail_all(suites, exc)
                continue
            target = QemuTarget(qemu, built.image, group_initramfs, self.record.dir / name,
                                label=f"{name} {boot_name}", budget=self.budget,
                                boot_name=boot_name)
            entry["targets"][boot_name] = {"suites": [s.name for s in suites],
                                           "qemu_command": shlex.join(target.command_line())}
            try:
                self.on_target(target, suites, entry["targets"][boot_name])
            finally:
                target.close()
                self.record.set_manifest()

    def on_target(self, target: QemuTarget, suites: list[Suite], about: dict) -> None:
        for position, suite in enumerate(suites):
            try:
                if not target.running:  # the first suite, or the last one broke it
                    about.setdefault("boot_seconds", []).append(target.reboot())
                    print(f"[{target.label}] ready in {target.boot_seconds:.1f}s:"
                          f" {target.ready_line}", file=sys.stderr)
            except InfraError as exc:
                print(f"[{target.label}] {exc.message}", file=sys.stderr)
                self.fail_all(suites[position:], exc)
                return
            self.run_suite(suite, target)
            self.record.flush()

    def run_suite(self, suite: Suite, target: QemuTarget) -> None:
        ids = self.plan.cases[suite.name]
        done: set[str] = set()
        last = time.monotonic()
        print(f"[{target.label}] {suite.name}: {len(ids)} case(s)", file=sys.stderr)
        try:
            for case in suite.run(target, ids):
                now = time.monotonic()
                case.duration = case.duration or round(now - last, 3)
                last = now
                self.add(case, target.console_log)
                done.add(case.id)
        except InfraError as exc:
            print(f"[{target.label}] {suite.name}: {exc.message}", file=sys.stderr)
            for case in suite.errors([i for i in ids if i not in done], exc.message,
                                     exc.details):
                self.add(case, target.console_log)
            return
        for case in suite.errors([i for i in ids if i not in done],
                                 f"suite {suite.name} did not report this case"):
            self.add(case, target.console_log)


def run(rig: RigConfig, kernel_names: list[str] | None = None,
        only: str | None = None) -> RunRecord:
    plan = make(rig, kernel_names, only)
    record = RunRecord(rig.results_dir)
    print(f"run {record.run_id}: {len(plan.kernels)} kernel(s), {len(plan.ids())} case(s)"
          f" each, results in {record.dir}", file=sys.stderr)
    record.set_manifest(
        rig_version=__version__,
        config=str(rig.path),
        qemu={"version": qemu_version(rig.qemu.binary), "cpu": rig.qemu.cpu,
              "machine": rig.qemu.machine, "smp": rig.qemu.smp, "icount": rig.qemu.icount},
        reproduce=rerun_command(rig, [s.name for s in plan.kernels], only),
        suites={s.name: dataclasses.asdict(s.cfg) for s in plan.suites},
        kernels={},
    )
    budget = Budget(rig.timeouts)
    try:
        for spec in plan.kernels:
            KernelRun(rig, plan, record, spec, budget).run()
        baseline = plan.kernels[0].name
        for diff in compare.behaviour(record.cases, baseline):
            record.add(Case(id=f"{DIFFERS}/{diff.id}", suite=DIFFERS, verdict=FAIL,
                            kernel=diff.kernel, reason=diff.reason,
                            outcome=diff.outcome, expected=f"as on {baseline}",
                            rerun=rerun_command(rig, [baseline, diff.kernel], diff.id)))
    finally:
        record.flush()
    if len(plan.kernels) > 1 and not only:
        report.write_run(record.dir, record.cases)
    return record
