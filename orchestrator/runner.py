"""`orchestrator run`: the plan executed.

First every kernel is built (cached) and its world-switch CSRs read out of
vmlinux, one after the other (builds share a tree and all cores). Then the
kernels' suites run side by side, one kernel per core: suites whose needs
give the same machine share a boot. Suites that measure wall-clock time
(`Needs.exclusive`) run last, alone on the machine. Any infrastructure
error stays local: the cases it prevented become `error` cases carrying its
cause, and the run goes on with the next suite or kernel. After all
kernels, each case is compared with the same case on the run's first
kernel: a different behaviour is a failure of its own (suite `differs`).

`orchestrator run --target NAME` with a standing target (rig.yaml `targets:`,
e.g. an ssh host; orchestrator.targets): nothing is built or booted. The rig
connects, records what it found (`uname -a`, the kernel config, the CPUs' ISA
strings, the capabilities) in manifest.json, copies the guest-test binaries
to the place they have in the rig's own host (/usr/lib/rig), then runs the
suites in the same order and with the same judging as on QEMU. The cases'
`kernel` is the target's name.

A suite first adapts to the target (Suite.adapt: latency measures
wall-clock time where exact timing is missing); a suite whose needs the
target still cannot meet is skipped with Needs.unmet()'s reason. An
infrastructure error (a lost connection, a timeout) turns the cases it
prevented into `error` cases; the cases before it are kept, and the next
suite reconnects.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import resource
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchestrator import __version__, compare, disasm, guest, image, kernel, report, store
from orchestrator.budget import Budget
from orchestrator.config import KernelSpec, RigConfig
from orchestrator.errors import InfraError, RigError
from orchestrator.execution import Execution, Group, add_differs, machine_groups, rerun_command
from orchestrator.plan import Plan, make
from orchestrator.results import RunRecord
from orchestrator.suites import Suite
from orchestrator.targets import StandingTarget, open_target
from orchestrator.targets.qemu import QemuBoot, QemuTarget, share_args


def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise InfraError(f"cannot run {binary} --version (run 'orchestrator setup')") from None
    return out.stdout.splitlines()[0]


class KernelRun:
    """One kernel's part of a run: its suites on targets, its cases on disk."""

    def __init__(self, rig: RigConfig, plan: Plan, record: RunRecord, spec: KernelSpec,
                 budget: Budget, live: LiveTargets) -> None:
        self.rig, self.plan, self.record, self.spec, self.budget = rig, plan, record, spec, budget
        self.live = live
        self.built: kernel.BuiltKernel | None = None
        self.blocked: set[str] = set()  # suites this kernel cannot run (errors already)
        self.execution = Execution(rig, record, spec.name, plan.cases,
                                   stopping=lambda: live.stopping)

    def build(self, base_initramfs: concurrent.futures.Future[Path] | None = None) -> None:
        """Build the kernel (or find it cached); a failure becomes error cases.
        base_initramfs: the host initramfs every kernel shares, being prepared meanwhile
        (None: made here)."""
        name = self.spec.name
        try:
            built = kernel.build(self.rig, self.spec, timeout=self.budget.limit("build"))
            initramfs = (base_initramfs.result() if base_initramfs
                         else guest.host_initramfs(self.rig.cache_dir))
            csrs = disasm.world_switch_report(built.vmlinux)
        except InfraError as exc:
            print(f"[{name}] {exc.message}", file=sys.stderr)
            self.execution.fail(self.plan.suites, exc)
            return
        self.record.set_manifest(kernels={
            **self.record.manifest["kernels"],
            name: {**built.to_json(), "world_switch_csrs": csrs, "targets": {}}})
        # a fragment option this kernel dropped stops the suites that need it, only them
        unmet = kernel.unmet_needs(built, [s.name for s in self.plan.suites])
        for suite in self.plan.suites:
            if suite.name in unmet:
                print(f"[{name}] {suite.name}: {unmet[suite.name]}", file=sys.stderr)
                self.execution.fail([suite], InfraError(unmet[suite.name]))
        self.blocked = set(unmet)
        # Files some suites build for this kernel (e.g. its own selftests) go into their
        # group's initramfs; built here, one kernel at a time, as they use its tree.
        self.initramfs: dict[int, Path] = {}
        self.shares: dict[int, dict[str, Path]] = {}
        for group in self.groups(None):
            try:
                extra = {k: v for s in group.suites
                         for k, v in s.host_files(self.rig, self.spec).items()}
                shares = {s.name: share for s in group.suites
                          if (share := s.host_share(self.rig, self.spec))}
                self.initramfs[group.index] = (
                    guest.host_initramfs(self.rig.cache_dir, extra) if extra else initramfs)
                self.shares[group.index] = shares
            except RigError as exc:  # e.g. a guest kernel or selftests that do not build
                print(f"[{name}] {', '.join(s.name for s in group.suites)}: {exc.message}",
                      file=sys.stderr)
                self.execution.fail(group.suites, exc)
        self.built = built

    def groups(self, exclusive: bool | None) -> list[Group]:
        """The kernel's boots: only the exclusive groups, or only the others; None: all."""
        runnable = [s for s in self.plan.suites if s.name not in self.blocked]
        return [group for group in machine_groups(runnable, self.rig.qemu)
                if exclusive is None or group.exclusive == exclusive]

    def run(self, exclusive: bool) -> None:
        """The kernel's target groups that are (or are not) exclusive."""
        if self.built is None:
            return
        for group in self.groups(exclusive):
            if group.index not in self.initramfs:  # its files could not be built: errors already
                continue
            boot = QemuBoot(group.name, group.machine, self.built.image,
                            self.initramfs[group.index], label=f"{self.spec.name} {group.name}",
                            extra_args=share_args(self.shares[group.index]))
            target = open_target(boot, self.record.dir / self.spec.name, self.budget, self.rig)
            self.record.set_target(self.spec.name, group.name,
                                   suites=[s.name for s in group.suites],
                                   qemu_command=shlex.join(target.command_line()))
            try:
                with self.live.holding(target):
                    self.on_target(target, group.suites)
            finally:
                self.record.set_target(self.spec.name, group.name,
                                       boot_seconds=target.boot_history)

    def on_target(self, target: QemuTarget, suites: list[Suite]) -> None:
        for position, suite in enumerate(suites):
            try:
                if not target.running:  # the first suite, or the last one broke it
                    target.reboot()
                    print(f"[{target.label}] ready in {target.boot_seconds:.1f}s:"
                          f" {target.ready_line}", file=sys.stderr)
            except InfraError as exc:
                print(f"[{target.label}] {exc.message}", file=sys.stderr)
                self.execution.fail(suites[position:], exc)
                return
            self.execution.suite(suite, target, target.label)
            self.record.flush()


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory of the orchestrator and of its largest finished child
    process (in a warm run, a QEMU)."""
    def mib(who: int) -> float:
        return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux: KiB
    return {"orchestrator": mib(resource.RUSAGE_SELF), "qemu": mib(resource.RUSAGE_CHILDREN)}


class LiveTargets:
    """The targets running now, so that an interrupt stops every one of them
    (worker threads never see KeyboardInterrupt; their QEMU must not outlive it)."""

    def __init__(self) -> None:
        self._targets: set[QemuTarget] = set()
        self._lock = threading.Lock()
        self.stopping = False

    @contextlib.contextmanager
    def holding(self, target: QemuTarget) -> Iterator[None]:
        with self._lock:
            if self.stopping:
                raise KeyboardInterrupt
            self._targets.add(target)
        try:
            yield
        finally:
            with self._lock:
                self._targets.discard(target)
            target.close()

    def stop_all(self) -> None:
        with self._lock:
            self.stopping = True
            targets = list(self._targets)
        for target in targets:
            target.stop()


def prepare_initramfs(cache_dir: Path, prefetch: list[Callable[[], object]] | None = None
                      ) -> concurrent.futures.Future[Path]:
    """guest.host_initramfs(cache_dir) in a daemon thread: an interrupted run exits
    without waiting for a download or compile nobody needs any more (what it writes
    reaches the cache only complete: partial names, then a rename or a seal). Then, in
    the same thread, each prefetch (suites' kernel-independent downloads); a failure
    there is said and left for the suite to meet again when it needs the result."""
    future: concurrent.futures.Future[Path] = concurrent.futures.Future()

    def prepare() -> None:
        try:
            future.set_result(guest.host_initramfs(cache_dir))
        except BaseException as exc:  # handed to whoever waits for it
            future.set_exception(exc)
            return
        for fetch in prefetch or []:
            try:
                fetch()
            except InfraError as exc:
                print(f"[prefetch] {exc.message}", file=sys.stderr)

    threading.Thread(target=prepare, name="initramfs", daemon=True).start()
    return future


def run_kernels(kernel_runs: list[KernelRun], live: LiveTargets) -> None:
    """Build one by one; run side by side, one kernel per core; exclusive groups last.

    The host initramfs needs no kernel (the riscv64 busybox download, the guest tests,
    the archive), nor do suites' prefetches (linux-guest's VMM): on a cold cache they
    are prepared while the first kernel compiles."""
    if not kernel_runs:
        return
    rig = kernel_runs[0].rig
    base_initramfs = prepare_initramfs(
        rig.cache_dir, [functools.partial(suite.prefetch, rig)
                        for suite in kernel_runs[0].plan.suites])
    for kernel_run in kernel_runs:
        kernel_run.build(base_initramfs)
    workers = max(1, min(len(kernel_runs), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="kernel") as pool:
        futures = [pool.submit(k.run, False) for k in kernel_runs]
        try:
            for future in futures:
                future.result()
        except BaseException:
            live.stop_all()
            raise
    try:
        for kernel_run in kernel_runs:
            kernel_run.run(True)
    except BaseException:
        live.stop_all()
        raise


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
        reproduce=rerun_command(rig, only, [s.name for s in plan.kernels]),
        host=socket.gethostname(),
        only=only,
        suites={s.name: dataclasses.asdict(s.cfg) for s in plan.suites},
        kernels={},
    )
    budget, live = Budget(rig.timeouts), LiveTargets()
    try:
        run_kernels([KernelRun(rig, plan, record, spec, budget, live) for spec in plan.kernels],
                    live)
        baselines = compare.baselines({s.name: s.source.name for s in plan.kernels})
        add_differs(rig, record, baselines)
    finally:
        record.set_manifest(peak_rss_mib=peak_rss_mib())
        record.order([spec.name for spec in plan.kernels])
        record.flush()
    if not only:
        report.write_run(record.dir, record.cases, baselines)
        # the report imports its plotting library only now: the peak includes it
        record.set_manifest(peak_rss_mib=peak_rss_mib())
    record.finish()
    store.record_run(rig.results_dir, record.dir, record.cases, record.manifest,
                     record.exit_code())
    return record


class TargetRun:
    """The plan's suites on one standing target (a rig.yaml `targets:` entry), cases
    recorded under the target's name."""

    def __init__(self, rig: RigConfig, plan: Plan, record: RunRecord, entry: Any,
                 budget: Budget) -> None:
        self.rig, self.plan, self.record, self.budget = rig, plan, record, budget
        self.entry = entry
        self.execution = Execution(rig, record, entry.name, plan.cases, on_target=True)

    def run(self) -> None:
        target: StandingTarget = open_target(self.entry, self.record.dir / self.entry.name,
                                             self.budget, self.rig)
        about: dict = {"target": target.about()}
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

    def _start(self, target: StandingTarget, about: dict) -> None:
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

    def _suite(self, suite: Suite, target: StandingTarget, about: dict) -> None:
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


def run_target(rig: RigConfig, entry: Any, only: str | None = None) -> RunRecord:
    """The plan on the standing target entry names (rig.yaml `targets:`)."""
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
