"""The QEMU command line the rig builds from rig.yaml."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import QemuConfig
from orchestrator.targets.qemu import FATAL, qemu_command


def test_command_carries_cpu_console_and_no_reboot() -> None:
    cmd = qemu_command(QemuConfig(), Path("Image"), Path("initrd"), Path("q.pid"), "rig.shell")
    assert cmd[0] == "qemu-system-riscv64"
    assert cmd[cmd.index("-cpu") + 1] == "rv64,h=true,sscofpmf=true"
    assert "-no-reboot" in cmd and "-icount" not in cmd and "-accel" not in cmd
    append = cmd[cmd.index("-append") + 1]
    assert append.startswith("console=ttyS0") and "panic=-1" in append
    assert append.endswith("rig.shell")


def test_icount_and_extra_append_from_config() -> None:
    qemu = QemuConfig(icount="shift=0,sleep=off", append="loglevel=4", smp=2)
    cmd = qemu_command(qemu, Path("Image"), Path("initrd"), Path("q.pid"))
    assert cmd[cmd.index("-icount") + 1] == "shift=0,sleep=off"
    assert cmd[cmd.index("-smp") + 1] == "2"
    assert "loglevel=4" in cmd[cmd.index("-append") + 1]


def test_tcg_threading_from_config() -> None:
    cmd = qemu_command(QemuConfig(tcg_thread="single"), Path("Image"), Path("i"), Path("q.pid"),
                       extra_args=("-fsdev", "x"))
    assert cmd[cmd.index("-accel") + 1] == "tcg,thread=single"
    assert cmd[-2:] == ["-fsdev", "x"]  # the caller's options come last


def test_fatal_console_patterns() -> None:
    for line in (b"Kernel panic - not syncing: VFS: Unable to mount root fs",
                 b"Oops - illegal instruction [#1]",
                 b"Unable to handle kernel paging request at virtual address 0",
                 b"BUG: scheduling while atomic"):
        assert FATAL.search(b"[    1.0] " + line + b"\r\n"), line
    assert not FATAL.search(b"kvm [1]: hypervisor extension available\r\n")


def test_memory_sizes_in_mib() -> None:
    sizes = [QemuConfig(memory=m).memory_mb for m in ("512M", "512", "2G", "1.5G", "1g")]
    assert sizes == [512, 512, 2048, 1536, 1024]
