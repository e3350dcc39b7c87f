"""`orchestrator run`: every kernel of rig.yaml is built, booted and checked.

A kernel that fails to build or boot gets an `error` case and the run goes
on with the next kernel; the exit code then says infrastructure error.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from orchestrator import __version__, disasm, image, kernel
from orchestrator.config import RigConfig
from orchestrator.errors import InfraError
from orchestrator.qemu import HostVM, qemu_command
from orchestrator.results import ERROR, Case, RunRecord
from orchestrator.scenarios import kvm_host


def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise InfraError(f"cannot run {binary} --version (run 'orchestrator setup')") from None
    return out.stdout.splitlines()[0]


def reproduce_command(rig: RigConfig, kernels: list[str]) -> str:
    args = ["orchestrator", "-c", str(rig.path), "run"]
    for name in kernels:
        args += ["--kernel", name]
    return shlex.join(args)


def run(rig: RigConfig, kernel_names: list[str] | None = None) -> RunRecord:
    specs = [rig.kernel(n) for n in kernel_names] if kernel_names else list(rig.kernels)
    record = RunRecord(rig.results_dir)
    print(f"run {record.run_id}: {len(specs)} kernel(s), results in {record.dir}",
          file=sys.stderr)
    record.set_metadata(
        rig_version=__version__,
        config=str(rig.path),
        qemu={"version": qemu_version(rig.qemu.binary), "cpu": rig.qemu.cpu,
              "machine": rig.qemu.machine, "smp": rig.qemu.smp, "icount": rig.qemu.icount},
        reproduce=reproduce_command(rig, [s.name for s in specs]),
        kernels={},
    )
    initramfs: Path | None = None
    for spec in specs:
        try:
            built = kernel.build(rig, spec)
            initramfs = initramfs or image.build_initramfs(rig.cache_dir)
        except InfraError as exc:
            print(f"[{spec.name}] {exc.message}", file=sys.stderr)
            record.add(Case(id="build", kernel=spec.name, scenario="build", verdict=ERROR,
                            reason=exc.message, observed=exc.details))
            continue
        log = record.console_log(spec.name)
        record.metadata["kernels"][spec.name] = {
            **built.to_json(),
            "world_switch_csrs": disasm.world_switch_report(built.vmlinux),
            "qemu_command": shlex.join(qemu_command(rig.qemu, built.image, initramfs,
                                                    log.with_suffix(".pid"))),
        }
        record.set_metadata()
        try:
            with HostVM(rig.qemu, built.image, initramfs, log, label=spec.name) as vm:
                seconds = vm.boot()
                print(f"[{spec.name}] ready in {seconds:.1f}s: {vm.ready_line}", file=sys.stderr)
                record.metadata["kernels"][spec.name]["boot_seconds"] = seconds
                record.set_metadata()
                for case in kvm_host.run(vm, spec.name):
                    record.add(case)
        except InfraError as exc:
            print(f"[{spec.name}] {exc.message}", file=sys.stderr)
            record.add(Case(id="boot", kernel=spec.name, scenario="boot", verdict=ERROR,
                            reason=exc.message, observed=exc.details, log=str(log)))
    return record

