"""An ssh target's rig.yaml entry, as the ssh kind parses it (shared by the kind, its
connection and the emulated host)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class SshEntry:
    """A host reached over SSH.

    Authentication is by key only: key_file, or the keys of a running ssh-agent.
    host_keys: "verify" (the host's key must be in known_hosts) or "accept-new"
    (an unknown key is accepted and added to known_hosts; a changed one never is).
    """

    type: ClassVar[str] = "ssh"
    name: str
    host: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    agent: bool = False
    known_hosts: Path = Path("~/.ssh/known_hosts")
    host_keys: str = "verify"
    reboot_command: str | None = None  # e.g. "systemctl reboot"; None: cannot reboot
