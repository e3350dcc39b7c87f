"""Failures the rig must name clearly, with the right exit code, leaving no
QEMU behind: a patch that does not apply, a kernel that panics at boot, a
boot that never becomes ready, a command that hangs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import EXIT_BAD_INPUT, EXIT_INFRA

from .conftest import orchestrator, qemu_processes_mentioning, rig_variant

pytestmark = pytest.mark.integration


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_patch_that_does_not_apply(tmp_path: Path) -> None:
    bad = tmp_path / "0099-bad.patch"
    bad.write_text(
        "--- a/arch/riscv/kvm/vcpu.c\n+++ b/arch/riscv/kvm/vcpu.c\n"
        "@@ -1,3 +1,3 @@\n-this line is not in vcpu.c\n+nor is this one\n context\n")

    def add_bad_patch(doc: dict) -> None:
        doc["kernels"][1]["patches"].append(str(bad))

    result = orchestrator("build", "b922307a", config=rig_variant(tmp_path, add_bad_patch))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    line = last_line(result.stderr)
    assert line.startswith("orchestrator: error: ")
    assert f"{bad}: does not apply" in line


def test_compile_error_is_an_infrastructure_error_with_the_log_tail(tmp_path: Path) -> None:
    broken = tmp_path / "0099-break-the-build.patch"
    broken.write_text(
        "--- a/arch/riscv/kvm/vcpu.c\n+++ b/arch/riscv/kvm/vcpu.c\n"
        "@@ -8,2 +8,3 @@\n \n+#error rig test: this kernel must not build\n"
        " #include <linux/bitops.h>\n")

    def add_broken_patch(doc: dict) -> None:
        doc["kernels"][1]["name"] = "broken"
        doc["kernels"][1]["patches"].append(str(broken))

    result = orchestrator("build", "broken", config=rig_variant(tmp_path, add_broken_patch))
    assert result.returncode == EXIT_INFRA, result.stderr
    line = last_line(result.stderr)
    assert "kernel broken: make -j" in line and "failed (exit 2); full log: " in line
    log = Path(line.split("full log: ")[1])
    assert "rig test: this kernel must not build" in log.read_text()
    tail = result.stderr.split(line)[0]
    assert "#error rig test: this kernel must not build" in tail


def test_kernel_panic_at_boot_is_an_infrastructure_error(built_kernels: dict,
                                                         tmp_path: Path) -> None:
    # No such init and no root device: the kernel really panics.
    def no_init(doc: dict) -> None:
        doc["qemu"]["append"] = "rdinit=/no/such/init"

    result = orchestrator("boot", "b922307a", "--", "true",
                          config=rig_variant(tmp_path, no_init))
    assert result.returncode == EXIT_INFRA, result.stderr
    line = last_line(result.stderr)
    assert "b922307a: Kernel panic - not syncing" in line
    assert "console log:" in line
    assert "Kernel panic" in result.stderr.split(line)[0]  # the console tail came first
    assert qemu_processes_mentioning(str(tmp_path)) == []


def test_boot_that_never_becomes_ready_times_out(built_kernels: dict, tmp_path: Path) -> None:
    # busybox's sleep as init: the kernel boots but the ready marker never comes.
    def shell_init(doc: dict) -> None:
        doc["qemu"]["append"] = "rdinit=/bin/busybox -- sleep 3600"
        doc["qemu"]["boot_timeout"] = 20

    result = orchestrator("boot", "b922307a", "--", "true",
                          config=rig_variant(tmp_path, shell_init))
    assert result.returncode == EXIT_INFRA, result.stderr
    assert "timed out after 20s waiting for the host to become ready" in last_line(result.stderr)
    assert qemu_processes_mentioning(str(tmp_path)) == []


def test_command_that_hangs_times_out(built_kernels: dict, tmp_path: Path) -> None:
    result = orchestrator("boot", "b922307a", "--timeout", "3", "--", "sleep", "600",
                          config=rig_variant(tmp_path, lambda doc: None))
    assert result.returncode == EXIT_INFRA, result.stderr
    assert "timed out after 3s waiting for command 'sleep 600'" in last_line(result.stderr)
    assert qemu_processes_mentioning(str(tmp_path)) == []


def test_a_hung_scenario_is_an_infrastructure_error_and_earlier_results_stay(
        built_kernels: dict, tmp_path: Path) -> None:
    # An isolation run far longer than the command timeout allows.
    def hang_isolation(doc: dict) -> None:
        doc["qemu"]["command_timeout"] = 15
        doc["scenarios"]["isolation"]["exits"] = 100_000_000

    result = orchestrator("run", "--kernel", "b922307a", config=rig_variant(tmp_path,
                                                                           hang_isolation))
    assert result.returncode == EXIT_INFRA, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    cases = json.loads((run_dir / "results.json").read_text())["cases"]
    scenarios = {c["scenario"] for c in cases}
    assert {"kvm-host", "counters", "boot"} <= scenarios
    (error,) = [c for c in cases if c["verdict"] == "error"]
    assert "timed out after 15s waiting for command" in error["reason"]
    assert len([c for c in cases if c["scenario"] == "counters"]) == 96
    assert qemu_processes_mentioning(str(tmp_path)) == []
