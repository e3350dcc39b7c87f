"""The `ssh` target kind: a running host the rig neither builds nor boots (a board,
a machine started by another tool), reached over SSH (connection: paramiko over SSH
and SFTP). `emulated` boots the rig's own host reachable this way (`orchestrator
boot --ssh`, and the tests).

rig.yaml:

    targets:
      board:
        type: ssh
        host: board.lan          # required
        port: 22
        user: root
        key_file: ~/.ssh/board   # or agent: true
        known_hosts: ~/.ssh/known_hosts
        host_keys: verify        # or accept-new
        reboot_command: systemctl reboot   # absent: the host cannot be rebooted
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.targets import StandingTarget, TargetKind
from orchestrator.targets.ssh.entry import SshEntry

if TYPE_CHECKING:
    from orchestrator.budget import Budget
    from orchestrator.config import Reader, RigConfig

HOST_KEY_POLICIES = ("verify", "accept-new")


@dataclass(frozen=True)
class _Scalars:
    """The scalar keys of an ssh target entry, as rig.yaml spells them."""

    host: str = ""
    port: int = 22
    user: str = "root"
    agent: bool = False
    host_keys: str = "verify"
    reboot_command: str | None = None


class Ssh(TargetKind):
    type = "ssh"
    session = "ssh session"

    @classmethod
    def entry(cls, reader: Reader, name: str, raw: Any) -> SshEntry:
        where = f"targets.{name}"
        scalars = [f.name for f in dataclasses.fields(_Scalars)]
        keys = dict(reader.mapping(where, raw, ["type", *scalars, "key_file", "known_hosts"]))
        keys.pop("type")
        key_file, known_hosts = keys.pop("key_file", None), keys.pop("known_hosts", None)
        entry = reader.dataclass(where, keys, _Scalars)
        if not entry.host:
            reader.fail(f"{where}.host", raw.get("host"), "a host name or address")
        if not 1 <= entry.port <= 65535:
            reader.fail(f"{where}.port", entry.port, "a TCP port, 1 to 65535")
        if not entry.user:
            reader.fail(f"{where}.user", entry.user, "a user name")
        if entry.host_keys not in HOST_KEY_POLICIES:
            reader.fail(f"{where}.host_keys", entry.host_keys, " or ".join(HOST_KEY_POLICIES))
        if key_file is None and not entry.agent:
            reader.fail(f"{where}.key_file", None, "a private key file (or 'agent: true')")
        if key_file is not None:
            key_file = str(Path(reader.scalar(f"{where}.key_file", key_file, str)).expanduser())
            key_file = reader.existing_file(f"{where}.key_file", key_file)
        hosts = Path(reader.scalar(f"{where}.known_hosts", known_hosts, str)) if known_hosts \
            else SshEntry.known_hosts
        return SshEntry(name=name, key_file=key_file,
                        known_hosts=(reader.base / hosts.expanduser()).resolve(),
                        **dataclasses.asdict(entry))

    @classmethod
    def open(cls, entry: SshEntry, log_dir: Path, budget: Budget,
             rig: RigConfig) -> StandingTarget:
        # paramiko loads only for a run that connects, not with every rig.yaml
        from orchestrator.targets.ssh.connection import SshTarget
        return SshTarget(entry, log_dir, budget, rig.path)
