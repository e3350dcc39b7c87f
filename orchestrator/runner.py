"""`orchestrator run`: every kernel of rig.yaml is built, booted and checked.

Per kernel: build, boot, then the scenarios in order (kvm-host, counters,
isolation). A kernel that fails to build or boot gets an `error` case and
the run goes on with the next one. After all kernels, each case is
compared with the same case on the run's first kernel: a different
behaviour is a failure of its own ("behaviour differs from KERNEL").
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from orchestrator import __version__, disasm, guest, kernel, report
from orchestrator.config import QemuConfig, RigConfig
from orchestrator.errors import BadInput, InfraError
from orchestrator.qemu import HostVM, qemu_command
from orchestrator.results import ERROR, FAIL, Case, RunRecord
from orchestrator.scenarios import counters, isolation, kvm_host, latency

SCENARIOS = {m.NAME: m for m in (kvm_host, counters, isolation, latency)}


def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise InfraError(f"cannot run {binary} --version (run 'orchestrator setup')") from None
    return out.stdout.splitlines()[0]


def rerun_command(rig: RigConfig, kernels: list[str], only: str | None = None) -> str:
    args = ["orchestrator", "-c", str(rig.path), "run"]
    for name in kernels:
        args += ["--kernel", name]
    if only:
        args += ["--only", only]
    return shlex.join(args)


def scenario_of(case_id: str | None) -> str | None:
    return case_id.split("/", 1)[0] if case_id else None


def check_only(only: str) -> None:
    scenario = SCENARIOS.get(scenario_of(only))
    if scenario is None or not scenario.valid_id(only):
        raise BadInput(f"--only: {only!r} is not a case id (e.g."
                       " counters/pmu/VU/cycle/scounteren=0x0, kvm-host/dev-kvm,"
                       " isolation/perf_user_access=1/pinned/host-policy)")


def scenario_cases(rig: RigConfig, vm: HostVM, kernel_name: str,
                   only: str | None) -> Iterator[Case]:
    """Each scenario's cases as soon as that scenario is done, so they reach
    the disk before the next one starts."""
    wanted = scenario_of(only)
    if wanted in (None, kvm_host.NAME):
        yield from (c for c in kvm_host.run(vm, kernel_name) if only in (None, c.id))
    for module, cfg in ((counters, rig.scenarios.counters),
                        (isolation, rig.scenarios.isolation)):
        if wanted == module.NAME or (wanted is None and cfg.enabled):
            yield from module.run(vm, kernel_name, cfg, only)


def compare_with_baseline(sides: dict[str, report.Side], baseline: str) -> list[Case]:
    """A failure for each counter or isolation case that behaves differently than
    on the baseline kernel (the run's first)."""
    reference = sides.get(baseline)
    if reference is None:
        return []
    return [Case(id=diff["id"], kernel=name, scenario="differs", verdict=FAIL,
                 observed=diff[name][1], expected=diff[baseline][1], reason=diff["reason"])
            for name, side in sides.items() if name != baseline
            for diff in report.counter_differences(reference, side)]


def check_kernel(rig: RigConfig, record: RunRecord, name: str, image: Path, initramfs: Path,
                 only: str | None) -> None:
    """Boot a built kernel and record its scenarios' cases; InfraError ends it."""
    wanted = scenario_of(only)

    def add(case: Case) -> None:
        if case.verdict in (FAIL, ERROR):
            case.extra["rerun"] = rerun_command(rig, [name], case.id)
        record.add(case)

    def boot(qemu: QemuConfig, boot_name: str) -> HostVM:
        return HostVM(qemu, image, initramfs, record.console_log(name, boot_name),
                      label=f"{name} {boot_name}")

    if wanted != latency.NAME:
        with boot(rig.qemu, "boot") as vm:
            seconds = vm.boot()
            print(f"[{name}] ready in {seconds:.1f}s: {vm.ready_line}", file=sys.stderr)
            record.manifest["kernels"][name]["boot_seconds"] = seconds
            record.set_manifest()
            for case in scenario_cases(rig, vm, name, only):
                add(case)
    if wanted == latency.NAME or (wanted is None and rig.scenarios.latency.enabled):
        for case in latency.run(rig.scenarios.latency, name, boot, rig.qemu, only):
            add(case)


def run(rig: RigConfig, kernel_names: list[str] | None = None,
        only: str | None = None) -> RunRecord:
    if only:
        check_only(only)
    specs = [rig.kernel(n) for n in kernel_names] if kernel_names else list(rig.kernels)
    record = RunRecord(rig.results_dir)
    print(f"run {record.run_id}: {len(specs)} kernel(s), results in {record.dir}",
          file=sys.stderr)
    record.set_manifest(
        rig_version=__version__,
        config=str(rig.path),
        qemu={"version": qemu_version(rig.qemu.binary), "cpu": rig.qemu.cpu,
              "machine": rig.qemu.machine, "smp": rig.qemu.smp, "icount": rig.qemu.icount},
        reproduce=rerun_command(rig, [s.name for s in specs], only),
        kernels={},
    )
    initramfs: Path | None = None
    for spec in specs:
        try:
            built = kernel.build(rig, spec)
            initramfs = initramfs or guest.host_initramfs(rig.cache_dir)
        except InfraError as exc:
            print(f"[{spec.name}] {exc.message}", file=sys.stderr)
            record.add(Case(id="build", kernel=spec.name, scenario="build", verdict=ERROR,
                            reason=exc.message, observed=exc.details))
            continue
        log = record.console_log(spec.name)
        record.manifest["kernels"][spec.name] = {
            **built.to_json(),
            "world_switch_csrs": disasm.world_switch_report(built.vmlinux),
            "qemu_command": shlex.join(qemu_command(rig.qemu, built.image, initramfs,
                                                    log.with_suffix(".pid"))),
        }
        record.set_manifest()
        try:
            check_kernel(rig, record, spec.name, built.image, initramfs, only)
        except InfraError as exc:
            print(f"[{spec.name}] {exc.message}", file=sys.stderr)
            record.add(Case(id="boot", kernel=spec.name, scenario="boot", verdict=ERROR,
                            reason=exc.message, observed=exc.details, log=str(log)))
    baseline = specs[0].name
    sides = report.sides_of([dataclasses.asdict(c) for c in record.cases])
    for case in compare_with_baseline(sides, baseline):
        case.extra["rerun"] = rerun_command(rig, [baseline, case.kernel], case.id)
        record.add(case)
    if len(specs) > 1 and not only and baseline in sides:
        report.write(record.dir, f"Run {record.run_id}",
                     [(sides[baseline], side) for name, side in sides.items()
                      if name != baseline])
    return record
