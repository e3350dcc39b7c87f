"""A LAVA job rendered from its recorded boots: each boot's host script (run by
/init through `rig.run=`; every command under a watchdog, its output framed
with RIG-CMD-BEGIN/END, one `RIG-CASE <id> pass|fail` line per case for
LAVA's monitor), the job definition (templates/lava-job.yaml.jinja2) and a
qemu device for lava-run."""

from __future__ import annotations

import shlex
from pathlib import Path

import jinja2

from orchestrator import __version__
from orchestrator.config import QemuConfig
from orchestrator.lava.jobs import Boot
from orchestrator.targets.qemu import KERNEL_ARGS, emulation_args

TEMPLATES = Path(__file__).parent / "templates"
SCRIPT_DIR = "rig-lava"
CASE_PATTERN = r"RIG-CASE (?P<test_case_id>\S+) (?P<result>pass|fail)"
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


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    environment.filters["shell_quote"] = shlex.quote  # LAVA splits options as a shell does
    return environment


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
            "kernel_arg": "-kernel {kernel} -append "
                          + shlex.quote(kernel_append(boot.qemu, boot)),
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
