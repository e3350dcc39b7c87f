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
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import itertools
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

from orchestrator import __version__, compare, disasm, guest, kernel, report, store
from orchestrator.budget import Budget
from orchestrator.config import KernelSpec, QemuConfig, RigConfig, default_config_path
from orchestrator.errors import InfraError, RigError
from orchestrator.plan import Plan, make
from orchestrator.results import DIFFERS, ERROR, FAIL, SKIP, Case, RunRecord
from orchestrator.suites import Suite
from orchestrator.targets import Needs
from orchestrator.targets.qemu import AIA_CPU, AIA_MACHINE, QemuTarget, has_aia, share_args

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
    the memory, AIA, TCG threading; what needs leave alone stays as rig.yaml has it."""
    machine = dataclasses.replace(qemu, icount=ICOUNT if needs.exact_timing else qemu.icount,
                                  smp=needs.cpus or max(qemu.smp, needs.min_cpus),
                                  tcg_thread="single" if needs.one_tcg_thread
                                  else qemu.tcg_thread)
    if needs.memory_mb and qemu.memory_mb < needs.memory_mb:
        machine = dataclasses.replace(machine, memory=f"{needs.memory_mb}M")
    if needs.aia and not has_aia(qemu):
        machine = dataclasses.replace(machine, machine=f"{qemu.machine},{AIA_MACHINE}",
                                      cpu=f"{qemu.cpu},{AIA_CPU}")
    return machine


class KernelRun:
    """One kernel's part of a run: its suites on targets, its cases on disk."""

    def __init__(self, rig: RigConfig, plan: Plan, record: RunRecord, spec: KernelSpec,
                 budget: Budget, live: LiveTargets) -> None:
        self.rig, self.plan, self.record, self.spec, self.budget = rig, plan, record, spec, budget
        self.live = live
        self.built: kernel.BuiltKernel | None = None
        self.blocked: set[str] = set()  # suites this kernel cannot run (errors already)

    def add(self, case: Case, log: Path | None = None) -> None:
        if self.live.stopping:  # interrupted: what breaks now is not the kernel's doing
            return
        case.kernel = self.spec.name
        case.log = case.log or (self.record.relative(log) if log else "")
        if case.verdict in (FAIL, ERROR):
            case.rerun = rerun_command(self.rig, [self.spec.name], case.id)
        self.record.add(case)

    def fail_all(self, suites: list[Suite], exc: RigError) -> None:
        for suite in suites:
            for case in suite.errors(self.plan.cases[suite.name], exc.message, exc.details):
                self.add(case)

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
            self.fail_all(list(self.plan.suites), exc)
            return
        self.record.set_manifest(kernels={
            **self.record.manifest["kernels"],
            name: {**built.to_json(), "world_switch_csrs": csrs, "targets": {}}})
        # a fragment option this kernel dropped stops the suites that need it, only them
        unmet = kernel.unmet_needs(built, [s.name for s in self.plan.suites])
        for suite in self.plan.suites:
            if suite.name in unmet:
                print(f"[{name}] {suite.name}: {unmet[suite.name]}", file=sys.stderr)
                self.fail_all([suite], InfraError(unmet[suite.name]))
        self.blocked = set(unmet)
        # Files some suites build for this kernel (e.g. its own selftests) go into their
        # group's initramfs; built here, one kernel at a time, as they use its tree.
        self.initramfs: dict[int, Path] = {}
        self.shares: dict[int, dict[str, Path]] = {}
        for index, _, suites in self.groups(None):
            try:
                extra = {k: v for s in suites for k, v in s.host_files(self.rig, self.spec).items()}
                shares = {s.name: share for s in suites
                          if (share := s.host_share(self.rig, self.spec))}
                self.initramfs[index] = (guest.host_initramfs(self.rig.cache_dir, extra) if extra
                                         else initramfs)
                self.shares[index] = shares
            except RigError as exc:  # e.g. a guest kernel or selftests that do not build
                print(f"[{name}] {', '.join(s.name for s in suites)}: {exc.message}",
                      file=sys.stderr)
                self.fail_all(suites, exc)
        self.built = built

    def groups(self, exclusive: bool | None) -> list[tuple[int, QemuConfig, list[Suite]]]:
        """(index, machine, suites): suites whose needs give the same machine share a boot.
        Only the exclusive groups, or only the others; None: all of them."""
        runnable = [s for s in self.plan.suites if s.name not in self.blocked]
        grouped = itertools.groupby(runnable, key=lambda s: qemu_for(s.needs(), self.rig.qemu))
        chosen = []
        for index, (qemu, members) in enumerate(grouped):
            suites = list(members)
            if exclusive is None or suites[0].needs().exclusive == exclusive:
                chosen.append((index, qemu, suites))
        return chosen

    def run(self, exclusive: bool) -> None:
        """The kernel's target groups that are (or are not) exclusive."""
        if self.built is None:
            return
        for index, qemu, suites in self.groups(exclusive):
            if index not in self.initramfs:  # its files could not be built: errors already
                continue
            boot_name = "boot" if index == 0 else suites[0].name
            target = QemuTarget(qemu, self.built.image, self.initramfs[index],
                                self.record.dir / self.spec.name,
                                label=f"{self.spec.name} {boot_name}", budget=self.budget,
                                boot_name=boot_name, extra_args=share_args(self.shares[index]))
            self.record.set_target(self.spec.name, boot_name, suites=[s.name for s in suites],
                                   qemu_command=shlex.join(target.command_line()))
            try:
                with self.live.holding(target):
                    self.on_target(target, suites)
            finally:
                self.record.set_target(self.spec.name, boot_name,
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
                self.fail_all(suites[position:], exc)
                return
            unmet = suite.needs().unmet(target.capabilities)
            if unmet:
                for cid in self.plan.cases[suite.name]:
                    self.add(suite.case(cid, SKIP, reason=unmet, outcome={"kind": "skipped"}))
            else:
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


def differ_cases(rig: RigConfig, cases: list[Case], baselines: dict[str, str]) -> list[Case]:
    """A failure case per case that behaves differently on a kernel than on its
    baseline (compare.baselines)."""
    found = []
    for name, baseline in baselines.items():
        if name == baseline:
            continue
        mine = [c for c in cases if c.kernel in (name, baseline)]
        for diff in compare.behaviour(mine, baseline):
            found.append(Case(id=f"{DIFFERS}/{diff.id}", suite=DIFFERS, verdict=FAIL,
                              kernel=diff.kernel, reason=diff.reason, outcome=diff.outcome,
                              expected=f"as on {baseline}",
                              rerun=rerun_command(rig, [baseline, diff.kernel], diff.id)))
    return found


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
        reproduce=rerun_command(rig, [s.name for s in plan.kernels], only),
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
        for case in differ_cases(rig, record.cases, baselines):
            record.add(case)
    finally:
        record.set_manifest(peak_rss_mib=peak_rss_mib())
        record.order([spec.name for spec in plan.kernels])
        record.flush()
    if len(plan.kernels) > 1 and not only:
        report.write_run(record.dir, record.cases, record.manifest["kernels"], baselines)
        # the report imports its plotting library only now: the peak includes it
        record.set_manifest(peak_rss_mib=peak_rss_mib())
    store.record_run(rig.results_dir, record.dir, record.cases, record.manifest,
                     record.exit_code())
    return record
