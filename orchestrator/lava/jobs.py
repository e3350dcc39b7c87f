"""What a LAVA job's boots run, decided before the job: each group of suites that
shares a machine (as in `orchestrator run`) is recorded against a
`RecordingTarget`, which keeps the commands and reboots the suites send
(Suite.script) as `Boot`s of `Command`s."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from orchestrator.config import QemuConfig, RigConfig
from orchestrator.errors import InfraError
from orchestrator.execution import machine_groups
from orchestrator.suites import Suite
from orchestrator.targets import CommandResult
from orchestrator.targets.qemu import machine_capabilities


@dataclasses.dataclass
class Command:
    id: int  # unique within the kernel's job
    suite: str
    command: str
    timeout: float
    retry_of: int | None = None  # runs only if this earlier attempt failed

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Boot:
    index: int  # 1-based within the kernel's job
    group: str  # the boot configuration's name, as `orchestrator run` names it
    qemu: QemuConfig
    suites: dict[str, list[str]]  # suite -> its case ids served in this boot
    commands: list[Command] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "group": self.group, "qemu": dataclasses.asdict(self.qemu),
                "suites": self.suites, "commands": [c.to_json() for c in self.commands]}

    @classmethod
    def from_json(cls, data: dict[str, Any], qemu: QemuConfig) -> Boot:
        """A boot of plan.json (checked against its schema); qemu: its machine, checked."""
        return cls(data["index"], data["group"], qemu, data["suites"],
                   [Command(**c) for c in data["commands"]])


class LavaHost:
    """What recording and replaying targets share: a LAVA job's host moves no files
    (everything it needs is in its ramdisk), and there is no QEMU of ours to stop."""

    label: str

    def put(self, local: Path, remote: str) -> None:
        raise InfraError(f"{self.label}: a LAVA job cannot copy files into the host")

    def get(self, remote: str, local: Path) -> None:
        raise InfraError(f"{self.label}: a LAVA job cannot copy files out of the host")

    def close(self) -> None:
        pass


class RecordingTarget(LavaHost):
    """A Target that records the commands and reboots suites send (Suite.script);
    every command 'fails' at once with no output."""

    def __init__(self, label: str, qemu: QemuConfig, log_dir: Path, default_timeout: float,
                 first_index: int, first_id: int, group: str) -> None:
        self.label = label
        self.capabilities = machine_capabilities(qemu, host_share=False)
        self.console_log = log_dir / f"{group}.console.log"
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        self.console_log.touch()
        self._qemu, self._group, self._timeout = qemu, group, default_timeout
        self._next_id = first_id
        self.suite = ""
        self.boots = [Boot(first_index, group, qemu, {})]

    def record(self, suite: Suite, ids: list[str]) -> None:
        self.suite = suite.name
        self.boots[-1].suites[suite.name] = ids
        suite.script(self, ids)

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        boot = self.boots[-1]
        boot.suites.setdefault(self.suite, [])
        last = boot.commands[-1] if boot.commands else None
        retry_of = (last.retry_of or last.id) if last and last.command == command else None
        boot.commands.append(Command(self._next_id, self.suite, command,
                                     timeout or self._timeout, retry_of))
        self._next_id += 1
        return CommandResult(command, 1, "", 0.0)

    def reboot(self) -> float:
        # the suite goes on in the next boot (its cases are the same list)
        ids = self.boots[-1].suites.get(self.suite, [])
        self.boots.append(Boot(self.boots[-1].index + 1, self._group, self._qemu,
                               {self.suite: ids}))
        return 0.0

    @property
    def next_id(self) -> int:
        return self._next_id


def record_boots(rig: RigConfig, suites: list[Suite], cases: dict[str, list[str]],
                 work: Path) -> tuple[list[Boot], dict[str, dict[str, Any]]]:
    """Every boot of a kernel's job, with the commands each runs; and the suites a
    LAVA boot cannot serve (suite -> ids and reason), which no boot runs."""
    boots: list[Boot] = []
    skipped: dict[str, dict[str, Any]] = {}
    next_id = 1
    # in run order, the groups that measure wall-clock time (exclusive) last, as
    # `orchestrator run` runs them; the job's first boot is named "boot"
    ordered = sorted(machine_groups(suites, rig.qemu), key=lambda group: group.exclusive)
    for position, group in enumerate(ordered):
        name = "boot" if position == 0 else group.suites[0].name
        target = RecordingTarget(name, group.machine, work, rig.timeouts.command,
                                 len(boots) + 1, next_id, name)
        for suite in group.suites:
            unmet = suite.needs().unmet(target.capabilities)
            if unmet is None:
                target.record(suite, cases[suite.name])
            else:  # never met by a LAVA boot: the import skips it, as a run does
                skipped[suite.name] = {"ids": cases[suite.name], "reason": unmet}
        boots += [b for b in target.boots if b.suites]
        next_id = target.next_id
    return boots, skipped
