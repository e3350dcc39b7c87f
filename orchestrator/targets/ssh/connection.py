"""The SSH connection: a running host the rig did not boot (a board, a machine
started by another tool), driven with paramiko over SSH and SFTP.

Host keys are checked against the entry's known_hosts file: an unknown key
is refused unless the entry says `host_keys: accept-new` (then it is added
to the file); a changed key is always refused. Authentication is by key
file or ssh-agent only. Every wait takes its limit from the rig's Budget:
connecting is a `boot` step, each command a `command` step. A lost
connection or a timeout is an InfraError; what ran before it stays
recorded. No key material, passphrase or password is ever written to a log
or a message: the session log holds commands and their output only.

The session log plays the console's part: it opens with the kernel's log
(`dmesg`) at connection time, then every command and its output.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import time
from pathlib import Path
from typing import Any, TextIO

import paramiko

from orchestrator.budget import Budget
from orchestrator.errors import BadInput, InfraError
from orchestrator.targets import Capabilities, CommandResult, session_log
from orchestrator.targets.ssh.entry import SshEntry

READ_CHUNK = 65536
POLL_SECONDS = 0.2  # how often a waiting command checks its deadline
RECONNECT_PAUSE = 2.0  # between connection attempts while a host reboots


def fingerprint(key: paramiko.PKey) -> str:
    """A host key's SHA256 fingerprint, as OpenSSH prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _Refuse(paramiko.MissingHostKeyPolicy):
    """Refuse a host not in known_hosts, keeping its key for the message."""

    offered: paramiko.PKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        self.offered = key
        raise paramiko.SSHException(f"{hostname} is not in known_hosts")


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Accept a host never seen before and remember it in known_hosts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        # appended, so the file's other lines (comments, hashed names) stay as they are
        with self.path.open("a") as known:
            known.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SshTarget:
    """A host reached over SSH (the Target protocol); as a context manager, disconnects."""

    def __init__(self, entry: SshEntry, log_dir: Path, budget: Budget,
                 config_path: Path | None = None) -> None:
        self.entry = entry
        self.label = entry.name
        self.budget = budget
        self._where = f"{config_path or 'rig.yaml'}: targets.{entry.name}"
        self.console_log = session_log(entry, log_dir)
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._log: TextIO | None = None
        self.capabilities = Capabilities(exact_timing=False, cpus=1, memory_mb=0,
                                         can_reboot=bool(entry.reboot_command))
        self.connect_seconds: float | None = None

    @property
    def address(self) -> str:
        return f"{self.entry.user}@{self.entry.host}:{self.entry.port}"

    def __enter__(self) -> SshTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting -----------------------------------------------------------

    def _new_client(self) -> tuple[paramiko.SSHClient, _Refuse | None]:
        client, refuse = paramiko.SSHClient(), None
        known = self.entry.known_hosts
        if self.entry.host_keys == "accept-new":
            known.parent.mkdir(parents=True, exist_ok=True)
            known.touch(mode=0o600, exist_ok=True)
            client.set_missing_host_key_policy(_AcceptNew(known))
        else:
            if not known.is_file():
                raise BadInput(f"{self._where}.known_hosts: {str(known)!r} does not exist"
                               " (add the host's key, or set host_keys: accept-new)")
            refuse = _Refuse()
            client.set_missing_host_key_policy(refuse)
        try:
            client.load_host_keys(str(known))
        except (OSError, paramiko.SSHException) as exc:
            raise BadInput(f"{self._where}.known_hosts: cannot read {known}: {exc}") from None
        return client, refuse

    def _connect_once(self, timeout: float) -> paramiko.SSHClient:
        client, refuse = self._new_client()
        entry = self.entry
        try:
            client.connect(entry.host, port=entry.port, username=entry.user,
                           key_filename=str(entry.key_file) if entry.key_file else None,
                           allow_agent=entry.agent, look_for_keys=False, timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise InfraError(f"{self.label}: the host key of {self.address} changed"
                             f" (offered {fingerprint(exc.key)}, known_hosts has"
                             f" {fingerprint(exc.expected_key)}); refusing to connect") from None
        except paramiko.SSHException as exc:
            client.close()
            if refuse is not None and refuse.offered is not None:
                key = refuse.offered
                raise BadInput(f"{self._where}.known_hosts: {self.address} is not in"
                               f" {entry.known_hosts} (it offers {key.get_name()}"
                               f" {fingerprint(key)}); add it, or set host_keys: accept-new"
                               ) from None
            if isinstance(exc, paramiko.PasswordRequiredException):
                raise BadInput(f"{self._where}.key_file: {entry.key_file} is protected by a"
                               " passphrase, which the rig never asks for: load the key into"
                               " ssh-agent and set 'agent: true'") from None
            if isinstance(exc, paramiko.AuthenticationException):
                how = f"key_file {entry.key_file}" if entry.key_file else "the agent's keys"
                raise BadInput(f"{self._where}: {self.address} refused {how}") from None
            raise InfraError(f"{self.label}: cannot connect to {self.address}: {exc}") from None
        except (OSError, EOFError) as exc:
            client.close()
            raise InfraError(f"{self.label}: cannot connect to {self.address}: {exc}") from None
        return client

    def connect(self, retry_until: float | None = None) -> float:
        """Connect (retrying refused or reset connections until the monotonic time
        retry_until, if given); return the seconds it took."""
        started = time.monotonic()
        while True:
            limit = self.budget.limit("boot")
            try:
                self._client = self._connect_once(limit)
                break
            except InfraError:
                if retry_until is None or time.monotonic() + RECONNECT_PAUSE > retry_until:
                    raise
                time.sleep(RECONNECT_PAUSE)
        if self._log is None:
            self.console_log.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.console_log.open("a")
        self._log.write(f"# connected to {self.address}\n")
        self.run("dmesg")  # into the log (run() logs every command and its output)
        facts = self.run("nproc; sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo")
        try:
            cpus, mem_kb = (int(x) for x in facts.output.split()[:2])
        except ValueError:
            raise InfraError(f"{self.label}: cannot read nproc and MemTotal",
                             details=facts.output[-2000:]) from None
        self.capabilities = Capabilities(exact_timing=False, cpus=cpus, memory_mb=mem_kb // 1024,
                                         can_reboot=bool(self.entry.reboot_command))
        self.connect_seconds = round(time.monotonic() - started, 2)
        return self.connect_seconds

    @property
    def running(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    # -- the Target protocol --------------------------------------------------

    def _write_log(self, text: str) -> None:
        if self._log:
            self._log.write(text if text.endswith("\n") or not text else text + "\n")
            self._log.flush()

    def _lost(self, what: str) -> InfraError:
        self._drop()
        return InfraError(f"{self.label}: {what}; session log: {self.console_log}")

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run a shell script in the host (its login shell's `sh -c`); stderr joins stdout."""
        if not self.running:
            raise InfraError(f"{self.label}: not connected to {self.address}")
        assert self._client is not None
        limit = self.budget.limit("command", timeout)
        self._write_log(f"\n$ {command}")
        started = time.monotonic()
        chunks: list[bytes] = []
        try:
            channel = self._client.get_transport().open_session(timeout=limit)
            channel.set_combine_stderr(True)
            channel.settimeout(POLL_SECONDS)
            channel.exec_command(command)
            while True:  # until the output is drained and the exit status is in
                try:
                    data = channel.recv(READ_CHUNK)
                except TimeoutError:
                    data = None
                if data:
                    chunks.append(data)
                    self._write_log(data.decode(errors="replace"))
                elif data == b"" and channel.exit_status_ready():
                    break
                elif data == b"":
                    if not self.running:
                        raise self._lost(f"the connection to {self.address} was lost while"
                                         f" running {command[:80]!r}")
                    time.sleep(POLL_SECONDS)  # output closed, exit status still to come
                if time.monotonic() - started > limit:
                    channel.close()
                    raise self._lost(f"timed out after {limit:g}s waiting for command"
                                     f" {command[:80]!r} to finish")
            status = channel.recv_exit_status()
            channel.close()
            if status == -1:  # paramiko's "closed without an exit status"
                raise self._lost(f"the connection to {self.address} was lost while"
                                 f" running {command[:80]!r}")
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(f"the connection to {self.address} failed while running"
                             f" {command[:80]!r}: {exc}") from None
        output = b"".join(chunks).decode(errors="replace")
        return CommandResult(command, status, output, round(time.monotonic() - started, 3))

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            if not self.running:
                raise InfraError(f"{self.label}: not connected to {self.address}")
            assert self._client is not None
            try:
                self._sftp = self._client.open_sftp()
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise self._lost(f"{self.address} offers no SFTP: {exc}") from None
            self._sftp.get_channel().settimeout(self.budget.limit("command"))
        return self._sftp

    def put(self, local: Path, remote: str) -> None:
        """Copy over SFTP, keep the mode, and check the size that arrived."""
        sftp = self._sftp_client()
        self._write_log(f"\n# put {local} -> {remote}")
        try:
            sftp.put(str(local), remote, confirm=True)
            sftp.chmod(remote, local.stat().st_mode & 0o7777)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(f"copying {local.name} to {self.address}:{remote} failed:"
                             f" {exc}") from None

    def get(self, remote: str, local: Path) -> None:
        sftp = self._sftp_client()
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            sftp.get(remote, str(local))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(f"copying {self.address}:{remote} failed: {exc}") from None

    def reboot(self) -> float:
        """Run the entry's reboot_command, then reconnect once the host has a new boot id."""
        if not self.entry.reboot_command:
            raise InfraError(f"{self.label}: cannot reboot (the target has no reboot_command)")
        before = self.run("cat /proc/sys/kernel/random/boot_id").output.strip()
        started = time.monotonic()
        deadline = started + self.budget.limit("boot")
        self._write_log(f"\n$ {self.entry.reboot_command}  # not waited for")
        try:
            channel = self._client.get_transport().open_session()
            channel.exec_command(f"{self.entry.reboot_command} </dev/null >/dev/null 2>&1 &")
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(f"cannot send the reboot command: {exc}") from None
        self._drop()
        while True:
            time.sleep(RECONNECT_PAUSE)
            self.connect(retry_until=deadline)
            if self.run("cat /proc/sys/kernel/random/boot_id").output.strip() != before:
                return round(time.monotonic() - started, 2)
            self._drop()  # still the old boot: the reboot has not begun
            if time.monotonic() > deadline:
                raise InfraError(f"{self.label}: {self.address} did not reboot within"
                                 f" {deadline - started:g}s")

    def _drop(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        self._drop()
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- what the manifest records ---------------------------------------------

    def about(self) -> dict[str, Any]:
        return {"type": "ssh", "address": self.address, "host_keys": self.entry.host_keys}

    def describe(self, out_dir: Path) -> dict:
        """uname -a, the kernel config (saved beside the manifest) and the CPUs' ISA strings."""
        uname = self.run("uname -a").output.strip()
        machine = self.run("uname -m").output.strip()
        config_source = ""
        config = self.run("gzip -dc /proc/config.gz 2>/dev/null")
        if config.status == 0 and config.output:
            config_source = "/proc/config.gz"
        else:
            config = self.run('cat "/boot/config-$(uname -r)" 2>/dev/null')
            if config.status == 0 and config.output:
                config_source = self.run('echo "/boot/config-$(uname -r)"').output.strip()
        about: dict = {"uname": uname, "machine": machine}
        if config_source:
            saved = out_dir / "kernel.config"
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(config.output)
            about["kernel_config"] = {"source": config_source, "file": str(saved),
                                      "sha256": hashlib.sha256(saved.read_bytes()).hexdigest()}
        else:
            about["kernel_config"] = {"source": None,
                                      "reason": "neither /proc/config.gz nor /boot/config-$(uname"
                                                " -r) is readable"}
        isa = self.run("sed -n 's/^isa[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo").output
        about["isa"] = sorted(set(isa.split()))
        about["capabilities"] = vars(self.capabilities).copy()
        return about

    def ssh_command(self) -> str:
        """An OpenSSH command line that reaches the same host (for people, not the rig)."""
        args = ["ssh", "-p", str(self.entry.port), "-o",
                f"UserKnownHostsFile={self.entry.known_hosts}"]
        if self.entry.key_file:
            args += ["-i", str(self.entry.key_file), "-o", "IdentitiesOnly=yes"]
        return shlex.join([*args, f"{self.entry.user}@{self.entry.host}"])
