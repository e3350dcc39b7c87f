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

from orchestrator import validate
from orchestrator.errors import BadInput

_CMD_END = re.compile(r"RIG-CMD-END (\d{1,9}) (\d{1,9}) (\d{1,12}(?:\.\d{1,9})?)"
                      r" (\d{1,12}(?:\.\d{1,9})?) (done|timeout)\s*\Z")
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


_QEMU_START = re.compile(r"start: [\d.]+ execute-qemu .*\[boot-(\d{1,6})\]")
_NAMESPACE = re.compile(r"boot-(\d{1,6})")  # matched whole


def read_log(text: str, where: str = "LAVA log") -> JobLog:
    """Parse a LAVA job log (lava-run's output or `lavacli jobs logs --raw`). Console
    lines belong to the boot whose QEMU LAVA started last, or (feedback, read later)
    to the boot their namespace names. The log is foreign input: a line that is not
    an entry is BadInput naming `where` and the line."""
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
            if validate.nesting(line) > validate.MAX_DEPTH:
                raise yaml.YAMLError("nested too deep")
            entry = yaml.load(line, Loader=loader)
        except (yaml.YAMLError, RecursionError):
            raise BadInput(f"{where}: line {number}: not a LAVA log entry:"
                           f" {validate.shown(line)}") from None
        if not isinstance(entry, dict):
            raise BadInput(f"{where}: line {number}: not a LAVA log entry:"
                           f" {validate.shown(line)}")
        level, message = entry.get("lvl"), entry.get("msg")
        if isinstance(entry.get("dt"), str):
            stamps.append(entry["dt"])
        if isinstance(message, str) and level in ("debug", "info"):
            started = _QEMU_START.search(message)
            if started:
                current = boots.setdefault(int(started.group(1)), BootLog(int(started.group(1))))
            elif message.startswith("Boot command: ") and current is not None:
                current.command_line = message.removeprefix("Boot command: ")
        elif level in CONSOLE_LEVELS and isinstance(message, str):
            message = message.replace('\\"', '"')  # LAVA escaped them
            if "RIG-CMD-END " in message and not _CMD_END.search(message):
                raise BadInput(f"{where}: line {number}: {validate.shown(message)}: not the"
                               " end of a command as the boot script prints it (RIG-CMD-END"
                               " ID STATUS UPTIME UPTIME done|timeout)")
            named = _NAMESPACE.fullmatch(entry["ns"]) if isinstance(entry.get("ns"), str) \
                else None
            boot = (boots.setdefault(int(named.group(1)), BootLog(int(named.group(1))))
                    if named else current)
            if boot is not None:
                boot.lines.append(message)
        elif level == "results" and isinstance(message, dict):
            lava_results.append(message)
            if message.get("definition") == "lava" and message.get("case") == "job" \
                    and message.get("result") == "fail":
                said = message.get("error_msg")  # one bounded line, whatever the log holds
                error = (" ".join(said.split())[:validate.SHOWN * 5] if isinstance(said, str)
                         else validate.shown(said)) if said else "the LAVA job failed"
    for boot in boots.values():
        _read_commands(boot)
    return JobLog(boots, lava_results, error, _span(stamps))


def _span(stamps: list[str]) -> float:
    times = []
    for stamp in (stamps[0], stamps[-1]) if stamps else ():
        with contextlib.suppress(ValueError):
            times.append(datetime.datetime.fromisoformat(stamp))
    try:
        return round((times[-1] - times[0]).total_seconds(), 1) if len(times) == 2 else 0.0
    except TypeError:  # one stamp with a time zone, the other without
        return 0.0


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
