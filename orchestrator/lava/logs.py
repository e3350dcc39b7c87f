"""A LAVA job's log (lava-run's output, or `lavacli jobs logs --raw`) read back:
each boot's console and each framed command's output. Foreign input: a line
that is no LAVA log entry is bad input, named by its number."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import re
from typing import Any

import yaml

from orchestrator.errors import BadInput

_CMD_END = re.compile(r"RIG-CMD-END (\d+) (\d+) ([\d.]+) ([\d.]+) (\w+)$")
# LAVA's log: one flow mapping per line; lavacli's raw log prefixes each with "- ".
# Console lines are "target" (or "feedback"); LAVA escaped their double quotes.
CONSOLE_LEVELS = ("target", "feedback")


@dataclasses.dataclass
class Recorded:
    """One command as the job's host ran it."""

    id: int
    status: int
    seconds: float
    timed_out: bool
    output: str


@dataclasses.dataclass
class BootLog:
    index: int
    lines: list[str] = dataclasses.field(default_factory=list)
    command_line: str = ""  # QEMU's, as LAVA ran it
    commands: dict[int, list[Recorded]] = dataclasses.field(default_factory=dict)
    finished: bool = False

    @property
    def console(self) -> str:
        return "".join(line + "\n" for line in self.lines)


@dataclasses.dataclass
class JobLog:
    boots: dict[int, BootLog]
    lava_results: list[dict[str, Any]]  # the "results" entries LAVA logged
    error: str  # the job's own error, if it failed
    seconds: float  # from the log's first entry to its last


_QEMU_START = re.compile(r"start: [\d.]+ execute-qemu .*\[boot-(\d+)\]")
_NAMESPACE = re.compile(r"boot-(\d+)$")


def read_log(text: str) -> JobLog:
    """Parse a LAVA job log (lava-run's output or `lavacli jobs logs --raw`). Console
    lines belong to the boot whose QEMU LAVA started last, or (feedback, read later)
    to the boot their namespace names."""
    boots: dict[int, BootLog] = {}
    lava_results: list[dict[str, Any]] = []
    error, current, stamps = "", None, []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line.startswith("- "):
            line = line[2:]
        if not line.startswith("{"):
            continue
        try:
            entry = yaml.load(line, Loader=loader)
        except yaml.YAMLError:
            raise BadInput(f"LAVA log line {number}: not a LAVA log entry: {line[:80]}") from None
        level, message = entry.get("lvl"), entry.get("msg")
        stamps.append(str(entry.get("dt", "")))
        if isinstance(message, str) and level in ("debug", "info"):
            started = _QEMU_START.search(message)
            if started:
                current = boots.setdefault(int(started.group(1)), BootLog(int(started.group(1))))
            elif message.startswith("Boot command: ") and current is not None:
                current.command_line = message.removeprefix("Boot command: ")
        elif level in CONSOLE_LEVELS and isinstance(message, str):
            message = message.replace('\\"', '"')  # LAVA escaped them
            named = _NAMESPACE.match(str(entry.get("ns", "")))
            boot = (boots.setdefault(int(named.group(1)), BootLog(int(named.group(1))))
                    if named else current)
            if boot is not None:
                boot.lines.append(message)
        elif level == "results" and isinstance(message, dict):
            lava_results.append(message)
            if message.get("definition") == "lava" and message.get("case") == "job" \
                    and message.get("result") == "fail":
                error = str(message.get("error_msg") or "the LAVA job failed")
    for boot in boots.values():
        _read_commands(boot)
    return JobLog(boots, lava_results, error, _span(stamps))


def _span(stamps: list[str]) -> float:
    times = []
    for stamp in (stamps[0], stamps[-1]) if stamps else ():
        with contextlib.suppress(ValueError):
            times.append(datetime.datetime.fromisoformat(stamp))
    return round((times[-1] - times[0]).total_seconds(), 1) if len(times) == 2 else 0.0


def _read_commands(boot: BootLog) -> None:
    """The commands' framed outputs in a boot's console."""
    current: list[str] | None = None
    for line in boot.lines:
        if line.startswith("RIG-CMD-BEGIN "):
            current = []
            continue
        end = _CMD_END.search(line)
        if end and current is not None:
            output = "".join(x + "\n" for x in current) + line[:end.start()]
            ident, status, begin, finish, how = end.groups()
            boot.commands.setdefault(int(ident), []).append(
                Recorded(int(ident), int(status), round(float(finish) - float(begin), 2),
                         how == "timeout", output))
            current = None
        elif current is not None:
            current.append(line)
        if line.strip() == f"RIG-LAVA-DONE {boot.index}":
            boot.finished = True
