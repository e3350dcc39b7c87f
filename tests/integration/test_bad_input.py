"""Failures the rig must name clearly, with the right exit code, leaving no
QEMU behind: a patch that does not apply, a kernel that panics at boot, a
boot that never becomes ready, a command that hangs."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import EXIT_BAD_INPUT, EXIT_INFRA

from .conftest import (
    load_run,
    orchestrator,
    qemu_processes_mentioning,
    rig_variant,
    run_cases,
)

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
        doc["timeouts"]["boot"] = 20

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


def test_a_hung_suite_is_an_infrastructure_error_and_earlier_results_stay(
        built_kernels: dict, tmp_path: Path) -> None:
    # An isolation run far longer than the command timeout allows.
    def hang_isolation(doc: dict) -> None:
        doc["suites"]["isolation"].update(exits=10_000_000, timeout=15)

    result = orchestrator("run", "--kernel", "b922307a", config=rig_variant(tmp_path,
                                                                           hang_isolation))
    assert result.returncode == EXIT_INFRA, result.stderr[-2000:]
    cases = run_cases(tmp_path)
    assert {c["suite"] for c in cases} == {"kvm-host", "counters", "isolation", "latency",
                                           "timer"}
    assert len([c for c in cases if c["suite"] == "counters"]) == 96
    errors = [c for c in cases if c["verdict"] == "error"]
    # a hung run is rerun once on a fresh host; hung again, its cases and the suite's
    # cases after it are errors with the cause
    hung = [c for c in errors if "timed out after 15s waiting for command" in c["reason"]]
    assert {c["id"] for c in hung} >= {"isolation/perf_user_access=0/pinned/host-policy",
                                       "isolation/perf_user_access=0/pinned/guest-value"}
    assert all(c["suite"] == "isolation" for c in errors)
    # the latency suite boots its own target and still measures; timer runs after it
    assert {c["verdict"] for c in cases if c["suite"] == "latency"} == {"pass"}
    assert not [c for c in cases if c["suite"] == "timer" and c["verdict"] == "error"]
    # the printed rerun command reruns exactly that case (and it hangs again)
    rerun = shlex.split(hung[0]["rerun"])
    assert rerun[0] == "orchestrator"
    again = subprocess.run([sys.executable, "-m", *rerun], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == EXIT_INFRA, again.stderr[-2000:]
    rerun_dir = Path(again.stdout.split("results: ")[1].split(" (exit")[0])
    assert [(c["id"], c["verdict"]) for c in load_run(rerun_dir)] == [(hung[0]["id"], "error")]
    assert qemu_processes_mentioning(str(tmp_path)) == []
