"""`orchestrator lava export|import`: the rig's runs as LAVA jobs, and their results back.

A LAVA job cannot talk to the rig while it runs: its test action watches the
console (`monitors`). So the rig decides beforehand what each boot runs:

- export: per kernel, each group of suites that shares a machine (as in
  `orchestrator run`) is recorded against a `RecordingTarget`, which keeps
  the commands and reboots the suites send (Suite.script). Each recorded
  boot becomes a shell script in the host's initramfs (/rig-lava/boot-N.sh,
  started by /init through `rig.run=`), and a deploy/boot/test block of the
  kernel's job whose QEMU options are the group's machine. The script runs
  every command under a watchdog (a command it kills runs once more: the
  job cannot reboot in the middle of a boot), frames its output with
  RIG-CMD-BEGIN/END (status, host uptime before and after, whether the
  watchdog killed it),
  and prints one `RIG-CASE <id> pass|fail` line per case for LAVA's monitor:
  pass when all the suite's commands in that boot ran to their end. A
  command a suite repeats right away (a rerun after a failure) runs again
  only if the previous attempt failed.
- import: the job's log (lava-run's output, or `lavacli jobs logs --raw`)
  gives each boot's console and each command's output. A `ReplayTarget`
  answers the suites' own run() with those outputs, so verdicts come from
  the same judging code as a direct run's, and are written as a run
  directory (results.json, junit.xml, results.ktap, report.md).

docs/lava.md has the why and the how.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import itertools
import json
import re
import shlex
import stat
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import yaml

from orchestrator import __version__, compare, guest, image, kernel, report, store
from orchestrator.config import KernelSpec, QemuConfig, RigConfig
from orchestrator.errors import BadInput, InfraError, tail
from orchestrator.plan import make
from orchestrator.results import FAIL, SKIP, Case, RunRecord
from orchestrator.runner import differ_cases, qemu_for, rerun_command
from orchestrator.suites import Suite, SuiteConfig, registry
from orchestrator.targets import CommandResult
from orchestrator.targets.qemu import KERNEL_ARGS, emulation_args, machine_capabilities

TEMPLATES = Path(__file__).parent / "templates"
PLAN_FILE = "plan.json"
DEVICE_FILE = "device/qemu-riscv64.yaml"
SCRIPT_DIR = "rig-lava"
CASE_PATTERN = r"RIG-CASE (?P<test_case_id>\S+) (?P<result>pass|fail)"
_CMD_END = re.compile(r"RIG-CMD-END (\d+) (\d+) ([\d.]+) ([\d.]+) (\w+)$")
# LAVA's log: one flow mapping per line; lavacli's raw log prefixes each with "- ".
# Console lines are "target" (or "feedback"); LAVA escaped their double quotes.
CONSOLE_LEVELS = ("target", "feedback")
EXTRA_OPTIONS = ("-bios default", "-no-reboot")
DEPLOY_SECONDS = 300
MARGIN_SECONDS = 120  # per boot, on top of its commands' timeouts

BOOT_SCRIPT = """#!/bin/sh
# riscv-kvm-rig, LAVA job for kernel {kernel}: boot {index} ({suites}).
# Written by 'orchestrator lava export'; /init runs it (rig.run=) and powers off.
cd /
# rig_run ID TIMEOUT FILE: FILE's output between RIG-CMD-BEGIN and RIG-CMD-END ID STATUS
# UPTIME-BEFORE UPTIME-AFTER done|timeout. The watchdog kills its process group; a
# command it killed runs once more (where `orchestrator run` would reboot and rerun).
rig_run() {{
    echo "RIG-CMD-BEGIN $1"
    rm -f "/tmp/rig-killed-$1"
    b=$(cut -d' ' -f1 /proc/uptime)
    setsid sh "$3" </dev/null 2>&1 &
    p=$!
    (sleep "$2"; touch "/tmp/rig-killed-$1"; kill -9 -"$p" "$p") >/dev/null 2>&1 &
    w=$!
    wait "$p"
    s=$?
    kill "$w" 2>/dev/null
    e=$(cut -d' ' -f1 /proc/uptime)
    if [ -e "/tmp/rig-killed-$1" ]; then how=timeout; else how=done; fi
    echo "RIG-CMD-END $1 $s $b $e $how"
    if [ "$how" = timeout ]; then
        [ -z "$4" ] && {{ rig_run "$1" "$2" "$3" again; return $?; }}
        ok=fail
    fi
    return $s
}}
echo "RIG-LAVA-BOOT {index}"
{body}
echo "RIG-LAVA-DONE {index}"
"""


# -- recording -----------------------------------------------------------------


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
    def from_json(cls, data: dict[str, Any]) -> Boot:
        return cls(data["index"], data["group"], QemuConfig(**data["qemu"]), data["suites"],
                   [Command(**c) for c in data["commands"]])


class _LavaHost:
    """What recording and replaying targets share: a LAVA job's host moves no files
    (everything it needs is in its ramdisk), and there is no QEMU of ours to stop."""

    label: str

    def put(self, local: Path, remote: str) -> None:
        raise InfraError(f"{self.label}: a LAVA job cannot copy files into the host")

    def get(self, remote: str, local: Path) -> None:
        raise InfraError(f"{self.label}: a LAVA job cannot copy files out of the host")

    def close(self) -> None:
        pass


class RecordingTarget(_LavaHost):
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


def groups(suites: Iterable[Suite], qemu: QemuConfig) -> list[tuple[QemuConfig, list[Suite]]]:
    """Suites whose needs give the same machine share a boot, as in `orchestrator run`:
    in run order, the groups that measure wall-clock time (exclusive) last."""
    grouped = [(machine, list(members)) for machine, members
               in itertools.groupby(suites, key=lambda s: qemu_for(s.needs(), qemu))]
    return ([g for g in grouped if not g[1][0].needs().exclusive]
            + [g for g in grouped if g[1][0].needs().exclusive])


def record_boots(rig: RigConfig, suites: list[Suite], cases: dict[str, list[str]],
                 work: Path) -> tuple[list[Boot], dict[str, dict[str, Any]]]:
    """Every boot of a kernel's job, with the commands each runs; and the suites a
    LAVA boot cannot serve (suite -> ids and reason), which no boot runs."""
    boots: list[Boot] = []
    skipped: dict[str, dict[str, Any]] = {}
    next_id = 1
    for position, (machine, members) in enumerate(groups(suites, rig.qemu)):
        name = "boot" if position == 0 else members[0].name
        target = RecordingTarget(name, machine, work, rig.timeouts.command,
                                 len(boots) + 1, next_id, name)
        for suite in members:
            unmet = suite.needs().unmet(target.capabilities)
            if unmet is None:
                target.record(suite, cases[suite.name])
            else:  # never met by a LAVA boot: the import skips it, as a run does
                skipped[suite.name] = {"ids": cases[suite.name], "reason": unmet}
        boots += [b for b in target.boots if b.suites]
        next_id = target.next_id
    return boots, skipped


def boot_script(kernel_name: str, boot: Boot, last_boot: dict[str, int]) -> str:
    """The host script of one boot (busybox sh). A suite's case lines come in the
    last boot it uses (latency boots several times)."""
    lines = []
    for suite, ids in boot.suites.items():
        lines += [f"echo 'RIG-SUITE-BEGIN {suite}'", "ok=pass"]
        commands = [c for c in boot.commands if c.suite == suite]
        for command in commands:
            call = (f"rig_run {command.id} {command.timeout:g}"
                    f" /{SCRIPT_DIR}/cmd-{command.retry_of or command.id}.sh")
            if command.retry_of:  # only if the attempt before it failed
                lines[-1] += f" || {call}"
            else:
                lines.append(call)
        if last_boot.get(suite) == boot.index:
            lines += [f"echo 'RIG-CASE {case_id} '$ok" for case_id in ids]
        lines.append(f"echo 'RIG-SUITE-END {suite}'")
    return BOOT_SCRIPT.format(kernel=kernel_name, index=boot.index,
                              suites=", ".join(boot.suites), body="\n".join(lines))


def boot_seconds(boot: Boot) -> int:
    """The longest this boot's commands may take (every attempt), plus a margin."""
    return int(sum(c.timeout for c in boot.commands)) + MARGIN_SECONDS


def suite_seconds(boot: Boot) -> int:
    """The longest one suite of this boot may keep the monitor waiting."""
    per_suite: dict[str, float] = {}
    for command in boot.commands:
        per_suite[command.suite] = per_suite.get(command.suite, 0) + command.timeout
    return int(max(per_suite.values(), default=0)) + MARGIN_SECONDS


# -- export --------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def machine_args(qemu: QemuConfig) -> str:
    """QEMU options of one boot; QEMU keeps the last -machine/-cpu/-smp/-m, so these
    override what the device's own options say."""
    return shlex.join(["-machine", qemu.machine, "-cpu", qemu.cpu, "-smp", str(qemu.smp),
                       "-m", qemu.memory, *emulation_args(qemu)])


def kernel_append(qemu: QemuConfig, boot: Boot) -> str:
    return " ".join(p for p in (KERNEL_ARGS, qemu.append,
                                f"rig.run=/{SCRIPT_DIR}/boot-{boot.index}.sh") if p)


def render_job(kernel_name: str, kernel_key: str, rig_qemu: QemuConfig, boots: list[Boot],
               artifacts: dict[int, dict[str, dict[str, str]]], device_type: str = "qemu",
               tags: list[str] | None = None, boot_timeout: float = 120) -> str:
    """The job definition (YAML); artifacts: boot index -> kernel/ramdisk -> url, sha256."""
    blocks = []
    for boot in boots:
        blocks.append({
            "index": boot.index, "namespace": f"boot-{boot.index}", "suites": list(boot.suites),
            "kernel": artifacts[boot.index]["kernel"], "ramdisk": artifacts[boot.index]["ramdisk"],
            "kernel_arg": f'-kernel {{kernel}} -append "{kernel_append(boot.qemu, boot)}"',
            "ramdisk_arg": f"-initrd {{ramdisk}} {machine_args(boot.qemu)}",
            "timeout": boot_seconds(boot), "wait": suite_seconds(boot) + int(boot_timeout)})
    timeouts = {"deploy": DEPLOY_SECONDS,
                "action": max((b["timeout"] for b in blocks), default=600),
                "job": sum(DEPLOY_SECONDS + b["wait"] + b["timeout"] for b in blocks)}
    return _environment().get_template("lava-job.yaml.jinja2").render(
        version=__version__, kernel=kernel_name, kernel_key=kernel_key, device_type=device_type,
        tags=tags or [], timeouts=timeouts, qemu=rig_qemu, extra_options=EXTRA_OPTIONS,
        boots=blocks, case_pattern=CASE_PATTERN)


def render_device(qemu: QemuConfig) -> str:
    """A rendered qemu device for lava-run on this machine (no server, no KVM)."""
    return _environment().get_template("lava-device-qemu.yaml.jinja2").render(
        binary=qemu.binary, machine=qemu.machine, cpu=qemu.cpu, memory=qemu.memory_mb,
        extra_options=EXTRA_OPTIONS)


def _with_scripts(initramfs: Path, scripts: dict[str, str], out: Path) -> None:
    """initramfs plus the job's scripts under /rig-lava."""
    members = image.read_cpio(initramfs.read_bytes())
    members[SCRIPT_DIR] = image.Entry(SCRIPT_DIR, stat.S_IFDIR | 0o755, b"")
    for name, text in scripts.items():
        path = f"{SCRIPT_DIR}/{name}"
        members[path] = image.Entry(path, stat.S_IFREG | 0o755, text.encode())
    buffer = io.BytesIO()
    image.write_cpio(list(members.values()), buffer)
    out.write_bytes(buffer.getvalue())


def _url(path: Path, outdir: Path, base_url: str | None) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/{path.relative_to(outdir).as_posix()}"
    return path.resolve().as_uri()


def _suite_configs(suites: Iterable[Suite]) -> dict[str, dict[str, Any]]:
    return {s.name: dataclasses.asdict(s.cfg) for s in suites}


def export(rig: RigConfig, outdir: Path, kernel_names: list[str] | None = None,
           only: str | None = None, base_url: str | None = None, device_type: str = "qemu",
           tags: list[str] | None = None) -> list[Path]:
    """Write one job per kernel, its artifacts (with sha256), the plan the import
    needs and a qemu device for lava-run; return the jobs' paths."""
    kernels = make(rig, kernel_names, only).kernels
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "jobs").mkdir(exist_ok=True)
    plan: dict[str, Any] = {"rig_version": __version__, "config": str(rig.path), "only": only,
                            "qemu": dataclasses.asdict(rig.qemu),
                            "exported": datetime.datetime.now(datetime.UTC).isoformat(
                                timespec="seconds"),
                            "kernels": {}}
    jobs, sums = [], []
    for spec in kernels:
        # a fresh plan per kernel: suites keep per-kernel state (host_files)
        kplan = make(rig, [spec.name], only)
        plan["suites"] = _suite_configs(kplan.suites)
        built = kernel.build(rig, spec, timeout=rig.timeouts.build)
        art = outdir / "artifacts" / spec.name
        art.mkdir(parents=True, exist_ok=True)
        image_path = art / "Image"
        image_path.write_bytes(built.image.read_bytes())
        # what suites pack into the host (built first: their run() may look at it)
        host_files = {suite.name: suite.host_files(rig, spec) for suite in kplan.suites}
        with tempfile.TemporaryDirectory() as work:
            boots, skipped = record_boots(rig, list(kplan.suites), kplan.cases, Path(work))
        last_boot = {suite: b.index for b in boots for suite in b.suites}
        files: dict[Path, str] = {image_path: sha256(image_path)}
        artifacts: dict[int, dict[str, dict[str, str]]] = {}
        for group, members in itertools.groupby(boots, key=lambda b: b.group):
            group_boots = list(members)
            extra = {k: v for suite in group_boots[0].suites
                     for k, v in host_files[suite].items()}
            scripts = {f"boot-{b.index}.sh": boot_script(spec.name, b, last_boot)
                       for b in group_boots}
            for b in group_boots:
                for command in b.commands:
                    if command.retry_of is None:
                        scripts[f"cmd-{command.id}.sh"] = command.command + "\n"
            ramdisk = art / f"{group}.cpio"
            _with_scripts(guest.host_initramfs(rig.cache_dir, extra), scripts, ramdisk)
            files[ramdisk] = sha256(ramdisk)
            for b in group_boots:
                artifacts[b.index] = {
                    "kernel": {"url": _url(image_path, outdir, base_url),
                               "sha256": files[image_path]},
                    "ramdisk": {"url": _url(ramdisk, outdir, base_url), "sha256": files[ramdisk]}}
        for path, digest in files.items():
            sums.append(f"{digest}  {path.relative_to(outdir).as_posix()}")
        job = outdir / "jobs" / f"{spec.name}.yaml"
        job.write_text(render_job(spec.name, built.key, rig.qemu, boots, artifacts, device_type,
                                  tags, rig.timeouts.boot))
        jobs.append(job)
        plan["kernels"][spec.name] = {"build": built.to_json(),
                                      "boots": [b.to_json() for b in boots], "skipped": skipped}
    (outdir / "artifacts" / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    (outdir / PLAN_FILE).write_text(json.dumps(plan, indent=1) + "\n")
    device = outdir / DEVICE_FILE
    device.parent.mkdir(exist_ok=True)
    device.write_text(render_device(rig.qemu))
    return jobs


# -- the job's log ---------------------------------------------------------------


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


# -- import --------------------------------------------------------------------


class ReplayTarget(_LavaHost):
    """A Target that answers the suites' commands with what the job's host printed.

    Boots are the job's boots of one group, in order; reboot() moves to the next.
    A command is matched by its text, in order, within the current boot."""

    def __init__(self, label: str, boots: list[Boot], logs: dict[int, BootLog],
                 log_dir: Path, job_error: str) -> None:
        self.label = label
        self.capabilities = machine_capabilities(boots[0].qemu, host_share=False)
        self._boots, self._logs, self._dir, self._error = boots, logs, log_dir, job_error
        self._position = -1
        self._served: dict[int, int] = {}  # command id -> attempts handed out
        self._last: Recorded | None = None
        self.console_log = log_dir / "unused"
        self.boot_history: list[float] = []
        self._start(0)

    def _start(self, position: int) -> None:
        self._position = position
        boot = self._boots[position]
        self.console_log = self._dir / f"lava-boot-{boot.index}.console.log"
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        log = self._logs.get(boot.index)
        self.console_log.write_text(log.console if log else "")

    @property
    def boot(self) -> Boot:
        return self._boots[self._position]

    def _missing(self, what: str) -> InfraError:
        why = f" (the job: {self._error})" if self._error else ""
        return InfraError(f"{self.label}: {what}{why}; console log: {self.console_log}",
                          details=tail(self.console_log.read_text()))

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        log = self._logs.get(self.boot.index)
        if log is None:
            raise self._missing(f"the LAVA job has no boot {self.boot.index}")
        for planned in self.boot.commands:
            attempts = log.commands.get(planned.id, [])
            served = self._served.get(planned.id, 0)
            again = served and served < len(attempts) and attempts[served - 1].timed_out
            if planned.command != command or (served and not again):
                continue
            self._served[planned.id] = served + 1
            if not attempts:
                if planned.retry_of is not None:
                    continue  # the attempt before it passed: this one never ran
                raise self._missing(f"the job's host did not finish {command!r}")
            done = self._last = attempts[served]
            if done.timed_out:
                raise self._missing(f"timed out after {planned.timeout:g}s waiting for"
                                    f" command {command!r} to finish")
            return CommandResult(command, done.status, done.output, done.seconds)
        raise self._missing(f"boot {self.boot.index} of the LAVA job did not run {command!r}"
                            " (the suite asked for what export did not record)")

    def reboot(self) -> float:
        last = self._last
        if last and last.timed_out and len(self._logs[self.boot.index].commands[last.id]) \
                > self._served[last.id]:
            # the job's script ran the killed command once more in the same boot:
            # the suite's rerun after a reboot gets that attempt
            print(f"[{self.label}] no reboot in a LAVA job: the command the watchdog killed"
                  " was run once more in the same boot", file=sys.stderr)
            self._last = None
            return 0.0
        if self._position + 1 >= len(self._boots):
            raise self._missing(f"the LAVA job booted this machine {len(self._boots)} time(s);"
                                " the suite asked for another boot")
        self._start(self._position + 1)
        return 0.0



def _suite(name: str, saved: dict[str, Any] | None, rig: RigConfig) -> Suite:
    """The suite as export configured it (plan.json), lists back to tuples."""
    cls = registry().get(name)
    if cls is None:
        raise BadInput(f"{PLAN_FILE}: suite {name} is not in this rig")
    cfg: SuiteConfig = rig.suites[name]
    if saved:
        names = {f.name for f in dataclasses.fields(cls.Config)}
        cfg = cls.Config(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in saved.items() if k in names})
    return cls(cfg)


def _log_path(directory: Path, kernel_name: str) -> Path | None:
    for candidate in (directory / "logs" / f"{kernel_name}.yaml",
                      directory / "logs" / f"{kernel_name}.log"):
        if candidate.is_file():
            return candidate
    return None


def _add(record: RunRecord, rig: RigConfig, case: Case, kernel_name: str,
         log: Path | None) -> None:
    case.kernel = kernel_name
    case.log = case.log or (record.relative(log) if log else "")
    if case.verdict in (FAIL, "error"):
        case.rerun = rerun_command(rig, [kernel_name], case.id)
    record.add(case)


def _replay_kernel(rig: RigConfig, record: RunRecord, name: str, entry: dict[str, Any],
                   suites_cfg: dict[str, Any], job: JobLog | None, log_file: Path | None) -> None:
    boots = [Boot.from_json(b) for b in entry["boots"]]
    spec = rig.kernel(name) if any(k.name == name for k in rig.kernels) else None
    log_dir = record.dir / name
    for suite_name, skip in entry.get("skipped", {}).items():
        suite = _suite(suite_name, suites_cfg.get(suite_name), rig)
        for cid in skip["ids"]:
            _add(record, rig, suite.case(cid, SKIP, reason=skip["reason"],
                                         outcome={"kind": "skipped"}), name, None)
    for group, members in itertools.groupby(boots, key=lambda b: b.group):
        group_boots = list(members)
        target = ReplayTarget(f"{name} {group} (LAVA)", group_boots,
                              job.boots if job else {}, log_dir,
                              job.error if job else f"no job log for {name} (looked for"
                                                    f" logs/{name}.yaml)")
        logged = [job.boots[b.index] for b in group_boots if job and b.index in job.boots]
        record.set_target(name, group, suites=list(group_boots[0].suites),
                          lava_boots=[b.index for b in group_boots],
                          qemu_command=logged[0].command_line if logged else "",
                          log=str(log_file) if log_file else None)
        order = dict.fromkeys(s for b in group_boots for s in b.suites)
        for suite_name in order:
            suite = _suite(suite_name, suites_cfg.get(suite_name), rig)
            ids = next(b.suites[suite_name] for b in group_boots if suite_name in b.suites)
            unmet = suite.needs().unmet(target.capabilities)
            if unmet:
                for cid in ids:
                    _add(record, rig, suite.case(cid, SKIP, reason=unmet,
                                                 outcome={"kind": "skipped"}),
                         name, target.console_log)
                continue
            _replay_suite(rig, record, suite, ids, target, name, spec)
        record.flush()


def _replay_suite(rig: RigConfig, record: RunRecord, suite: Suite, ids: list[str],
                  target: ReplayTarget, name: str, spec: KernelSpec | None) -> None:
    done: set[str] = set()
    try:
        if spec is not None:
            suite.host_files(rig, spec)  # suites that read what they packed (cached)
        for case in suite.run(target, ids):
            _add(record, rig, case, name, target.console_log)
            done.add(case.id)
    except InfraError as exc:
        print(f"[{target.label}] {suite.name}: {exc.message}", file=sys.stderr)
        for case in suite.errors([i for i in ids if i not in done], exc.message, exc.details):
            _add(record, rig, case, name, target.console_log)
        return
    for case in suite.errors([i for i in ids if i not in done],
                             f"suite {suite.name} did not report this case"):
        _add(record, rig, case, name, target.console_log)


def import_run(rig: RigConfig, directory: Path) -> RunRecord:
    """Judge the job logs under directory/logs with the suites' own code; write a run."""
    plan_path = directory / PLAN_FILE
    try:
        plan = json.loads(plan_path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{plan_path}: not an 'orchestrator lava export' directory ({exc})"
                       ) from None
    record = RunRecord(rig.results_dir)
    kernels = list(plan["kernels"])
    print(f"lava import {directory}: {len(kernels)} kernel(s), results in {record.dir}",
          file=sys.stderr)
    record.set_manifest(
        rig_version=__version__, config=plan["config"], only=plan.get("only"),
        qemu={**plan["qemu"], "version": "as the LAVA worker has it (see the job logs)"},
        reproduce=f"orchestrator lava import {shlex.quote(str(directory))}",
        source={"lava": str(directory.resolve()), "exported": plan.get("exported")},
        suites=plan.get("suites", {}),
        kernels={name: {**entry["build"], "targets": {}}
                 for name, entry in plan["kernels"].items()})
    started = time.monotonic()
    for name in kernels:
        log_file = _log_path(directory, name)
        job = read_log(log_file.read_text(errors="replace")) if log_file else None
        _replay_kernel(rig, record, name, plan["kernels"][name], plan.get("suites", {}),
                       job, log_file)
        if job:
            record.manifest["kernels"][name]["lava_job"] = {
                "log": str(log_file), "seconds": job.seconds, "error": job.error or None,
                "boots_logged": sorted(job.boots)}
    baselines = compare.baselines({name: plan["kernels"][name]["build"]["source"].split("=")[0]
                                   for name in kernels})
    for case in differ_cases(rig, record.cases, baselines):
        record.add(case)
    record.set_manifest(import_seconds=round(time.monotonic() - started, 2))
    record.order(kernels)
    record.flush()
    if len(kernels) > 1 and not plan.get("only"):
        report.write_run(record.dir, record.cases, record.manifest["kernels"], baselines)
    store.record_run(rig.results_dir, record.dir, record.cases, record.manifest,
                     record.exit_code())
    return record

