"""The QEMU target through the Target protocol, as suites use it: commands,
files in and out, the console log, a reboot, timeouts and capabilities."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from orchestrator import config, guest
from orchestrator.budget import Budget
from orchestrator.errors import InfraError
from orchestrator.targets import Needs
from orchestrator.targets.qemu import QemuTarget

from .conftest import REPO, qemu_processes_mentioning

pytestmark = pytest.mark.integration


@pytest.fixture()
def target(built_kernels: dict, tmp_path: Path):
    rig = config.load(REPO / "rig.yaml")
    image = Path(built_kernels["b922307a"]["image"])
    with QemuTarget(rig.qemu, image, guest.host_initramfs(rig.cache_dir), tmp_path / "logs",
                    label="b922307a", budget=Budget(rig.timeouts)) as booted:
        booted.boot()
        yield booted
    assert qemu_processes_mentioning(str(tmp_path)) == []


def test_files_go_in_and_come_out_unchanged(target: QemuTarget, built_kernels: dict,
                                           tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(10_000))  # five console chunks, binary
    payload.chmod(0o750)
    target.put(payload, "/tmp/payload.bin")
    listed = target.run("stat -c '%a %s' /tmp/payload.bin; sha256sum /tmp/payload.bin")
    mode_size, digest = listed.output.splitlines()
    assert mode_size == "750 10000"
    assert digest.split()[0] == hashlib.sha256(payload.read_bytes()).hexdigest()
    target.get("/proc/version", tmp_path / "version")
    release = target.run("uname -r").output.strip()
    assert release == built_kernels["b922307a"]["release"]
    assert (tmp_path / "version").read_text().startswith(f"Linux version {release} ")


def test_commands_status_output_and_timeout(target: QemuTarget) -> None:
    result = target.run("echo out; echo err >&2; exit 7")
    assert (result.status, result.output) == (7, "out\nerr\n")
    with pytest.raises(InfraError, match="timed out after 2s"):
        target.run("sleep 60", timeout=2)
    assert not target.running  # a timed-out host is stopped, not reused


def test_reboot_starts_a_fresh_host_with_its_own_console_log(target: QemuTarget) -> None:
    first = target.console_log
    target.run("touch /tmp/was-here")
    assert target.reboot() > 0
    assert target.console_log != first and target.console_log.name == "boot-2.console.log"
    assert target.run("test -e /tmp/was-here").status == 1
    assert len(target.boot_history) == 2


def test_capabilities_follow_the_machine(target: QemuTarget) -> None:
    caps = target.capabilities
    assert (caps.exact_timing, caps.cpus, caps.memory_mb, caps.can_reboot) == (
        False, 2, 512, True)
    assert Needs(exact_timing=True).unmet(caps) == (
        "needs exact instruction timing (QEMU icount), which this target lacks")
    assert Needs(min_cpus=2).unmet(caps) is None
    assert "needs 2048 MB" in Needs(memory_mb=2048).unmet(caps)
