"""Boot a host kernel under QEMU and talk to it over the serial console.

Every byte of the console goes to a log file, one per boot. Readiness is
the /init's "RIG-READY" marker; a kernel panic, an Oops or a BUG seen at
any time, QEMU exiting, or a timeout (boot or command) is an
infrastructure error carrying the console's tail. QEMU is killed when the
HostVM is closed, whatever happened, Ctrl-C included.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect

from orchestrator.config import QemuConfig
from orchestrator.errors import InfraError

READY = re.compile(rb"RIG-READY[^\r\n]*\r*\n")
# What the kernel prints when it is no longer trustworthy.
FATAL = re.compile(
    rb"Kernel panic - not syncing[^\r\n]*"
    rb"|Oops[^\r\n]*\[#\d+\][^\r\n]*"
    rb"|Unable to handle kernel[^\r\n]*"
    rb"|kernel BUG at[^\r\n]*"
    rb"|BUG: [^\r\n]*"
)
CONSOLE_TAIL_LINES = 30
# The tty's canonical-mode line limit is 4096 bytes including the newline.
MAX_COMMAND_LINE = 4000
KERNEL_ARGS = "console=ttyS0 earlycon=sbi panic=-1"


@dataclass(frozen=True)
class CommandResult:
    command: str
    status: int
    output: str
    seconds: float


def qemu_command(qemu: QemuConfig, image: Path, initramfs: Path, pidfile: Path,
                 extra_append: str = "") -> list[str]:
    append = " ".join(part for part in (KERNEL_ARGS, qemu.append, extra_append) if part)
    cmd = [
        qemu.binary, "-M", qemu.machine, "-cpu", qemu.cpu, "-smp", str(qemu.smp),
        "-m", qemu.memory, "-nographic", "-bios", "default", "-no-reboot",
        "-kernel", str(image), "-initrd", str(initramfs), "-append", append,
        "-pidfile", str(pidfile),
    ]
    if qemu.icount:
        cmd += ["-icount", qemu.icount]
    return cmd


def console_tail(log: Path, lines: int = CONSOLE_TAIL_LINES) -> str:
    try:
        text = log.read_bytes().decode(errors="replace").replace("\r", "")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


class HostVM:
    """One boot of a host kernel; use as a context manager."""

    def __init__(self, qemu: QemuConfig, image: Path, initramfs: Path, console_log: Path,
                 label: str, extra_append: str = "") -> None:
        self.qemu = qemu
        self.label = label
        self.console_log = console_log
        self.pidfile = console_log.with_suffix(".pid")
        self.command = qemu_command(qemu, image, initramfs, self.pidfile, extra_append)
        self.boot_seconds: float | None = None
        self.ready_line = ""
        self._child: pexpect.spawn | None = None
        self._log_file = None
        self._next_id = 1

    def __enter__(self) -> HostVM:
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

    def boot(self) -> float:
        """Start QEMU and wait for the ready marker; return seconds to ready."""
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.console_log.open("wb")
        self._log_file.write(("$ " + " ".join(self.command) + "\n").encode())
        started = time.monotonic()
        try:
            self._child = pexpect.spawn(self.command[0], self.command[1:], echo=False,
                                        timeout=None, maxread=65536)
        except pexpect.ExceptionPexpect as exc:
            raise self._fail(f"cannot start {self.command[0]}: {exc}") from None
        self._child.logfile_read = self._log_file
        self._expect(READY, self.qemu.boot_timeout, "the host to become ready")
        self.boot_seconds = round(time.monotonic() - started, 2)
        self.ready_line = self._child.after.decode(errors="replace").strip()
        return self.boot_seconds

    def run(self, script: str, timeout: float | None = None) -> CommandResult:
        """Run a shell script in the host; return its status and output."""
        assert self._child is not None, "boot() first"
        command_id = self._next_id
        self._next_id += 1
        line = f"{command_id} {base64.b64encode(script.encode()).decode()}"
        if len(line) > MAX_COMMAND_LINE:
            raise InfraError(f"{self.label}: command too long for the console"
                             f" ({len(line)} > {MAX_COMMAND_LINE} bytes encoded)")
        if self._log_file:  # the log shows each command before its output
            self._log_file.write(f"\n$ {script}\n".encode())
        started = time.monotonic()
        self._child.sendline(line)
        limit = timeout or self.qemu.command_timeout
        end = re.compile(rb"RIG-END %d (\d+)" % command_id)
        self._expect(end, limit, f"command {script!r} to finish")
        status = int(self._child.match.group(1))
        text = self._child.before.decode(errors="replace").replace("\r", "")
        begin = f"RIG-BEGIN {command_id}\n"
        output = text.split(begin, 1)[1] if begin in text else text
        return CommandResult(script, status, output, round(time.monotonic() - started, 3))

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
        self._kill_pidfile()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _kill_pidfile(self) -> None:
        """QEMU is our direct child, but check its pidfile too: never leave one behind."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"qemu" in cmdline:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass
        self.pidfile.unlink(missing_ok=True)
