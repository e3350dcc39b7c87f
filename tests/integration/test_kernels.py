"""Both host kernels build, boot under QEMU with the H extension, and offer KVM;
their machine code shows where b922307a moved SCOUNTEREN."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.disasm import CSR_HSTATUS, CSR_SCOUNTEREN, function_csrs

from .conftest import load_run, orchestrator, rig_variant

pytestmark = pytest.mark.integration
KERNELS = ("b922307a-parent", "b922307a")


def test_build_reports_both_kernels(built_kernels: dict[str, dict]) -> None:
    assert set(built_kernels) == set(KERNELS)
    for built in built_kernels.values():
        assert Path(built["image"]).stat().st_size > 1_000_000
        assert Path(built["vmlinux"]).is_file()
        assert re.fullmatch(r"[0-9a-f]{64}", built["key"])
        assert built["build_seconds"] > 0
    assert built_kernels["b922307a"]["key"] != built_kernels["b922307a-parent"]["key"]
    assert len(built_kernels["b922307a"]["patches"]) == 2


def test_second_build_is_served_from_the_cache(built_kernels: dict[str, dict]) -> None:
    again = orchestrator("build", "--json")
    assert again.returncode == 0, again.stderr
    for kernel in json.loads(again.stdout):
        assert kernel["cached"] is True
        assert kernel["key"] == built_kernels[kernel["name"]]["key"]


def test_parent_switch_code_swaps_scounteren_but_not_hstatus(
        built_kernels: dict[str, dict]) -> None:
    vmlinux = Path(built_kernels["b922307a-parent"]["vmlinux"])
    csrs = function_csrs(vmlinux, "__kvm_riscv_switch_to")
    assert CSR_SCOUNTEREN in csrs
    assert CSR_HSTATUS not in csrs  # moved to C by the b6114a7e backport
    assert CSR_HSTATUS in function_csrs(vmlinux, "kvm_riscv_vcpu_enter_exit")


def test_b922307a_moves_scounteren_from_asm_to_c(built_kernels: dict[str, dict]) -> None:
    vmlinux = Path(built_kernels["b922307a"]["vmlinux"])
    switch = function_csrs(vmlinux, "__kvm_riscv_switch_to")
    assert CSR_SCOUNTEREN not in switch and CSR_HSTATUS not in switch
    enter_exit = function_csrs(vmlinux, "kvm_riscv_vcpu_enter_exit")
    assert CSR_SCOUNTEREN in enter_exit and CSR_HSTATUS in enter_exit


@pytest.mark.parametrize("kernel", KERNELS)
def test_host_boots_with_kvm(built_kernels: dict[str, dict], kernel: str,
                             tmp_path: Path) -> None:
    config = rig_variant(tmp_path, lambda doc: None)
    result = orchestrator("boot", kernel, "--", "sh", "-c",
                          "test -c /dev/kvm && echo dev-kvm-present; uname -r", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dev-kvm-present" in result.stdout
    # the release the build recorded (include/config/kernel.release), never a literal:
    # Debian moves the source package under us
    release = built_kernels[kernel]["release"]
    assert result.stdout.splitlines()[-1] == release
    # "+": setlocalversion marks a tree with changes on top of its base
    assert release.endswith("+")
    (log,) = (tmp_path / "results" / "boots").glob(f"{kernel}-*.console.log")
    console = log.read_text(errors="replace")
    assert re.search(r"kvm \[\d+\]: hypervisor extension available", console)
    assert "Kernel command line:" in console


def test_boot_returns_the_command_status(built_kernels: dict[str, dict],
                                         tmp_path: Path) -> None:
    config = rig_variant(tmp_path, lambda doc: None)
    result = orchestrator("boot", "b922307a", "--", "sh", "-c", "echo 'a \"quoted\" arg'; exit 7",
                          config=config)
    assert result.returncode == 7
    assert result.stdout == 'a "quoted" arg\n'


def test_readme_run_command_builds_boots_and_checks_every_kernel(readme_run) -> None:
    result, run_dir = readme_run
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    cases = load_run(run_dir)
    assert {(c["kernel"], c["id"]) for c in cases if c["suite"] == "kvm-host"} == {
        (k, check) for k in KERNELS
        for check in ("kvm-host/hypervisor-extension", "kvm-host/dev-kvm")
    }
    assert {c["verdict"] for c in cases} <= {"pass", "known-deviation", "skip"}
    assert {c["suite"] for c in cases} == {"kvm-host", "counters", "isolation", "latency",
                                           "kselftest-kvm", "linux-guest", "timer"}
    # the headline: each latency figure on both kernels, the difference, the verdict
    assert re.search(r"^latency/sbi-in-kernel: b922307a-parent \d+\.0 instructions,"
                     r" b922307a \d+\.0 instructions, [+-]\d+\.0 instructions: \w+$",
                     result.stdout, re.MULTILINE), result.stdout[-2000:]
    assert "case(s) behave differently" in result.stdout and "peak memory:" in result.stdout
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["qemu"]["version"].startswith("QEMU emulator version 1")
    assert manifest["reproduce"].startswith("orchestrator -c ")
    for kernel in KERNELS:
        assert (run_dir / kernel / "boot.console.log").is_file()
        entry = manifest["kernels"][kernel]
        assert entry["toolchain"] and entry["patches"]
        assert entry["targets"]["boot"]["boot_seconds"][0] > 0
        assert entry["targets"]["boot"]["qemu_command"].startswith("qemu-system-riscv64 -M virt")
        assert "-icount shift=0,sleep=off" in entry["targets"]["latency"]["qemu_command"]
    assert "b922307a-parent" in result.stdout and "known-deviation" in result.stdout
    assert (run_dir / "junit.xml").read_text().count("<testcase") == len(cases)
