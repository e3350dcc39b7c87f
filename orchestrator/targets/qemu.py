"""The QEMU target: a host kernel booted under QEMU, driven over its serial console.

Every byte of the console goes to a log file, one per boot. Readiness is
the /init's "RIG-READY" marker; a kernel panic, an Oops or a BUG seen at
any time, QEMU exiting, or a timeout (boot or command) is an
infrastructure error carrying the console's tail. QEMU is killed when the
target is closed, whatever happened, Ctrl-C included.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import shlex
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import pexpect

from orchestrator.budget import Budget
from orchestrator.config import QemuConfig
from orchestrator.errors import TAIL_LINES, InfraError, tail
from orchestrator.targets import Capabilities, CommandResult, Needs, TargetKind

if TYPE_CHECKING:
    from orchestrator.config import Reader, RigConfig

READY = re.compile(rb"RIG-READY[^\r\n]*\r*\n")
# What the kernel prints when it is no longer trustworthy.
FATAL = re.compile(
    rb"Kernel panic - not syncing[^\r\n]*"
    rb"|Oops[^\r\n]*\[#\d+\][^\r\n]*"
    rb"|Unable to handle kernel[^\r\n]*"
    rb"|kernel BUG at[^\r\n]*"
    rb"|BUG: [^\r\n]*"
)
# The tty's canonical-mode line limit is 4096 bytes including the newline.
MAX_COMMAND_LINE = 4000
# Raw bytes per put() command: twice base64-encoded, it stays under MAX_COMMAND_LINE.
PUT_CHUNK = 2048
# pty.legacy_count=0: tinyconfig keeps LEGACY_PTYS, whose 256 BSD pty pairs take about
# 150 ms of an emulated boot to register (pty_init); nothing here uses them (dropbear
# and shells use /dev/ptmx).
KERNEL_ARGS = "console=ttyS0 earlycon=sbi panic=-1 pty.legacy_count=0"


def qemu_command(qemu: QemuConfig, image: Path, initramfs: Path, pidfile: Path,
                 extra_append: str = "", extra_args: tuple[str, ...] = ()) -> list[str]:
    append = " ".join(part for part in (KERNEL_ARGS, qemu.append, extra_append) if part)
    cmd = [
        qemu.binary, "-M", qemu.machine, "-cpu", qemu.cpu, "-smp", str(qemu.smp),
        "-m", qemu.memory, "-nographic", "-bios", "default", "-no-reboot",
        "-kernel", str(image), "-initrd", str(initramfs), "-append", append,
        "-pidfile", str(pidfile),
    ]
    return cmd + emulation_args(qemu) + list(extra_args)


def emulation_args(qemu: QemuConfig) -> list[str]:
    """How QEMU runs the machine's vCPUs: instruction counting, TCG threading."""
    args = ["-icount", qemu.icount] if qemu.icount else []
    if qemu.tcg_thread:
        args += ["-accel", f"tcg,thread={qemu.tcg_thread}"]
    return args


def machine_capabilities(qemu: QemuConfig, host_share: bool) -> Capabilities:
    """What a boot of this QEMU machine offers; host_share: whether a directory of the
    rig's machine can reach it (the rig's own QEMU: yes; a LAVA worker's: no)."""
    return Capabilities(exact_timing=bool(qemu.icount), cpus=qemu.smp,
                        memory_mb=qemu.memory_mb, can_reboot=True, aia=has_aia(qemu),
                        host_share=host_share)


def share_args(shares: dict[str, Path]) -> tuple[str, ...]:
    """QEMU options that export each directory read-only over virtio-9p (virtio-mmio),
    mount tag = the key: the host mounts it with `mount -t 9p -o trans=virtio TAG DIR`."""
    args: list[str] = []
    for index, (tag, path) in enumerate(sorted(shares.items())):
        args += ["-fsdev", f"local,id=share{index},path={path},security_model=none,readonly=on",
                 "-device", f"virtio-9p-device,fsdev=share{index},mount_tag={tag}"]
    return tuple(args)


def console_tail(log: Path, lines: int = TAIL_LINES) -> str:
    try:
        return tail(log.read_bytes().decode(errors="replace").replace("\r", ""), lines)
    except OSError:
        return ""


class QemuTarget:
    """A host kernel under QEMU (the Target protocol); as a context manager, stops on exit.

    Each boot (the first, and one per reboot()) logs to its own console file
    in log_dir: boot.console.log, boot-2.console.log, ...
    """

    def __init__(self, qemu: QemuConfig, image: Path, initramfs: Path, log_dir: Path,
                 label: str, budget: Budget, boot_name: str = "boot",
                 extra_append: str = "", extra_args: tuple[str, ...] = ()) -> None:
        self.qemu = qemu
        self.label = label
        self.budget = budget
        self.capabilities = machine_capabilities(qemu, host_share=True)
        self._log_dir = log_dir
        self._boot_name = boot_name
        self._boots = 0
        self._image, self._initramfs, self._extra_append = image, initramfs, extra_append
        self._extra_args = extra_args  # e.g. a network card (targets.ssh.emulated)
        self.boot_seconds: float | None = None
        self.boot_history: list[float] = []  # seconds to ready, per boot
        self.ready_line = ""
        self._child: pexpect.spawn | None = None
        self._log_file: BinaryIO | None = None
        self._next_id = 1
        self._stopped = False
        self.console_log = log_dir / f"{boot_name}.console.log"

    @property
    def running(self) -> bool:
        return self._child is not None

    def command_line(self) -> list[str]:
        return qemu_command(self.qemu, self._image, self._initramfs,
                            self.console_log.with_suffix(".pid"), self._extra_append,
                            self._extra_args)

    def __enter__(self) -> QemuTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, what: str) -> InfraError:
        self.close()
        return InfraError(f"{self.label}: {what}; console log: {self.console_log}",
                          details=console_tail(self.console_log))

    def _expect(self, wanted: re.Pattern[bytes], timeout: float, waiting_for: str) -> None:
        assert self._child is not None
        index = self._child.expect([wanted, FATAL, pexpect.EOF, pexpect.TIMEOUT],
                                   timeout=timeout)
        if index == 1:
            what = self._child.after.decode(errors="replace").strip()
            self._child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=2)  # rest of the report
            raise self._fail(what)
        if index == 2:
            raise self._fail(f"QEMU exited while waiting for {waiting_for}")
        if index == 3:
            raise self._fail(f"timed out after {timeout:g}s waiting for {waiting_for}")

    def stop(self) -> None:
        """Stop QEMU for good: the run is being interrupted, no suite may boot it again."""
        self._stopped = True
        self.close()

    def boot(self) -> float:
        """Start QEMU and wait for the ready marker; return seconds to ready."""
        if self._stopped:
            raise InfraError(f"{self.label}: not booted again: the run is being interrupted")
        self._boots += 1
        suffix = "" if self._boots == 1 else f"-{self._boots}"
        self.console_log = self._log_dir / f"{self._boot_name}{suffix}.console.log"
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        command = self.command_line()
        self._log_file = self.console_log.open("wb")
        self._log_file.write(("$ " + " ".join(command) + "\n").encode())
        started = time.monotonic()
        try:
            self._child = pexpect.spawn(command[0], command[1:], echo=False,
                                        timeout=None, maxread=65536)
        except pexpect.ExceptionPexpect as exc:
            raise self._fail(f"cannot start {command[0]}: {exc}") from None
        self._child.logfile_read = self._log_file
        self._expect(READY, self.budget.limit("boot"), "the host to become ready")
        self.boot_seconds = round(time.monotonic() - started, 2)
        self.boot_history.append(self.boot_seconds)
        self.ready_line = self._child.after.decode(errors="replace").strip()
        return self.boot_seconds

    def reboot(self) -> float:
        self.close()
        self._next_id = 1
        return self.boot()

    def send(self, command: str) -> int:
        """Start a shell script in the host and return its id, without waiting for it
        (it reads the console: interact() then hands it to the user)."""
        if self._child is None:
            raise InfraError(f"{self.label}: the host is not running")
        command_id = self._next_id
        self._next_id += 1
        line = f"{command_id} {base64.b64encode(command.encode()).decode()}"
        if len(line) > MAX_COMMAND_LINE:
            raise InfraError(f"{self.label}: command too long for the console"
                             f" ({len(line)} > {MAX_COMMAND_LINE} bytes encoded)")
        if self._log_file:  # the log shows each command before its output
            self._log_file.write(f"\n$ {command}\n".encode())
        self._child.sendline(line)
        return command_id

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run a shell script in the host; return its status and output."""
        started = time.monotonic()
        command_id = self.send(command)
        assert self._child is not None
        limit = self.budget.limit("command", timeout)
        end = re.compile(rb"RIG-END %d (\d+)" % command_id)
        self._expect(end, limit, f"command {command!r} to finish")
        status = int(self._child.match.group(1))
        text = self._child.before.decode(errors="replace").replace("\r", "")
        begin = f"RIG-BEGIN {command_id}\n"
        output = text.split(begin, 1)[1] if begin in text else text
        return CommandResult(command, status, output, round(time.monotonic() - started, 3))

    def put(self, local: Path, remote: str) -> None:
        """Through the console: base64 chunks appended to the file, then checked."""
        data = local.read_bytes()
        quoted = shlex.quote(remote)
        self._checked(f": > {quoted}")
        for offset in range(0, len(data), PUT_CHUNK):
            chunk = base64.b64encode(data[offset:offset + PUT_CHUNK]).decode()
            self._checked(f"echo {chunk} | base64 -d >> {quoted}")
        mode = local.stat().st_mode & 0o7777
        self._checked(f"chmod {mode:o} {quoted}")
        digest = self._checked(f"sha256sum {quoted}").output.split()[0]
        if digest != hashlib.sha256(data).hexdigest():
            raise InfraError(f"{self.label}: {remote} arrived corrupted (sha256 {digest})")

    def get(self, remote: str, local: Path) -> None:
        encoded = self._checked(f"base64 {shlex.quote(remote)}").output
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(base64.b64decode("".join(encoded.split())))

    def _checked(self, command: str) -> CommandResult:
        result = self.run(command)
        if result.status != 0:
            raise InfraError(f"{self.label}: '{command[:80]}' exited {result.status}",
                             details=tail(result.output))
        return result

    def wait(self) -> None:
        """Log the console until QEMU exits (Ctrl-C interrupts)."""
        assert self._child is not None, "boot() first"
        self._child.expect(pexpect.EOF, timeout=None)
        self.close()

    def interact(self) -> None:
        """Hand the console to the user's terminal until QEMU exits or Ctrl-]."""
        assert self._child is not None, "boot() first"
        self._child.logfile_read = None
        self._child.interact(output_filter=self._log_output)

    def _log_output(self, data: bytes) -> bytes:
        if self._log_file:
            self._log_file.write(data)
        return data

    def close(self) -> None:
        if self._child is not None:
            if self._child.isalive():
                self._child.terminate(force=True)
            self._child.close(force=True)
            self._child = None
        _kill_pidfile(self.console_log.with_suffix(".pid"))
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


AIA_MACHINE = "aia=aplic-imsic"
AIA_CPU = "smaia=true,ssaia=true"


def has_aia(qemu: QemuConfig) -> bool:
    return AIA_MACHINE in qemu.machine.split(",") and "ssaia=true" in qemu.cpu.split(",")


def _kill_pidfile(pidfile: Path) -> None:
    """QEMU is our direct child, but check its pidfile too: never leave one behind."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"qemu" in cmdline:
            os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass
    pidfile.unlink(missing_ok=True)


ICOUNT = "shift=0,sleep=off"


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


@dataclasses.dataclass(frozen=True)
class QemuBoot:
    """One boot configuration of a kernel the rig built: what the runner (and `orchestrator
    boot`/`shell`) open a QemuTarget from."""

    type: ClassVar[str] = "qemu"
    name: str  # the boot's name: its console log is <name>.console.log
    machine: QemuConfig
    image: Path
    initramfs: Path
    label: str
    extra_append: str = ""
    extra_args: tuple[str, ...] = ()


class Qemu(TargetKind):
    """The rig's own target: its kernels, booted under QEMU with rig.yaml's `qemu:`. Its
    only entry is the default one, `targets: {qemu: {type: qemu}}`."""

    type = "qemu"
    standing = False

    @classmethod
    def entry(cls, reader: Reader, name: str, raw: Any) -> None:
        reader.mapping(f"targets.{name}", raw, ["type"])
        if raw.get("type") != cls.type:
            reader.fail(f"targets.{name}.type", raw.get("type"),
                        "qemu (the rig's own QEMU, see 'qemu:')")

    @classmethod
    def open(cls, entry: QemuBoot, log_dir: Path, budget: Budget,
             rig: RigConfig | None = None) -> QemuTarget:
        return QemuTarget(entry.machine, entry.image, entry.initramfs, log_dir,
                          label=entry.label, budget=budget, boot_name=entry.name,
                          extra_append=entry.extra_append, extra_args=entry.extra_args)
