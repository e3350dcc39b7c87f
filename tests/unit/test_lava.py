"""orchestrator.lava without a dispatcher: recording, job and device rendering,
boot scripts, reading a job log, replaying it through the suites."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from orchestrator.config import QemuConfig
from orchestrator.errors import InfraError
from orchestrator.lava import jobs, logs, render, replay
from orchestrator.suites import SuiteConfig
from orchestrator.suites.isolation import Isolation, IsolationConfig
from orchestrator.suites.kselftest_kvm import KselftestConfig, KselftestKvm
from orchestrator.suites.kvm_host import KvmHost
from orchestrator.suites.latency import Latency, LatencyConfig

QEMU = QemuConfig(machine="virt", cpu="rv64,h=true", smp=2, memory="512M")
ICOUNT = QemuConfig(machine="virt", cpu="rv64,h=true", smp=1, memory="512M",
                    icount="shift=0,sleep=off")


def recorder(tmp_path: Path, qemu: QemuConfig = QEMU) -> jobs.RecordingTarget:
    return jobs.RecordingTarget("t", qemu, tmp_path, 300, 1, 1, "boot")


def test_recording_keeps_commands_timeouts_and_reruns(tmp_path: Path) -> None:
    target = recorder(tmp_path)
    target.record(Isolation(IsolationConfig(perf_user_access=(0, 2), timeout=90)),
                  Isolation(IsolationConfig(perf_user_access=(0, 2))).plan())
    commands = target.boots[0].commands
    assert [c.timeout for c in commands] == [90, 90]
    assert commands[0].command.startswith("echo 0 > /proc/sys/kernel/perf_user_access")
    assert all(c.retry_of is None for c in commands)

    # kselftest reruns a failed program: the attempts are one chain
    suite = KselftestKvm(KselftestConfig(programs=("arch_timer",), args=(), reruns=2))
    suite._built = type("Built", (), {"programs": ("arch_timer",), "failed": {}})()
    target = recorder(tmp_path)
    target.record(suite, suite.plan())
    uname, *attempts = target.boots[0].commands
    assert uname.command == "uname -r"
    assert len(attempts) == 3
    assert [a.retry_of for a in attempts] == [None, attempts[0].id, attempts[0].id]


def test_latency_records_one_boot_per_configured_boot(tmp_path: Path) -> None:
    target = recorder(tmp_path, ICOUNT)
    suite = Latency(LatencyConfig(boots=3, tests=("sbi-in-kernel",)))
    target.record(suite, suite.plan())
    assert [b.index for b in target.boots] == [1, 2, 3]
    assert all(len(b.commands) == 1 and b.suites == {"latency": ["latency/sbi-in-kernel"]}
               for b in target.boots)
    assert len({b.commands[0].command for b in target.boots}) == 1
    assert len({b.commands[0].id for b in target.boots}) == 3


def test_boot_script_runs_a_rerun_only_after_a_failure(tmp_path: Path) -> None:
    boot = jobs.Boot(1, "boot", QEMU, {"s": ["s/a", "s/b"]}, [
        jobs.Command(1, "s", "prog", 60), jobs.Command(2, "s", "prog", 60, retry_of=1),
        jobs.Command(3, "s", "other", 30)])
    script = render.boot_script("k", boot, {"s": 1})
    assert "rig_run 1 60 /rig-lava/cmd-1.sh || rig_run 2 60 /rig-lava/cmd-1.sh\n" in script
    assert "rig_run 3 30 /rig-lava/cmd-3.sh\n" in script
    assert re.search(r"RIG-CASE s/a '\$ok\n.*RIG-CASE s/b '\$ok\n.*RIG-SUITE-END s", script,
                     re.DOTALL)
    # a suite's case lines come in its last boot only
    assert "RIG-CASE" not in render.boot_script("k", boot, {"s": 2})


def test_job_renders_blocks_per_boot_with_machine_options(tmp_path: Path) -> None:
    boots = [jobs.Boot(1, "boot", QEMU, {"kvm-host": ["kvm-host/dev-kvm"]},
                       [jobs.Command(1, "kvm-host", "true", 300)]),
             jobs.Boot(2, "latency", ICOUNT, {"latency": ["latency/user-exit"]},
                       [jobs.Command(2, "latency", "x", 300)])]
    art = {i: {"kernel": {"url": "https://lab/Image", "sha256": "aa"},
               "ramdisk": {"url": f"https://lab/{i}.cpio", "sha256": "bb"}} for i in (1, 2)}
    job = yaml.safe_load(render.render_job("k1", "key", QEMU, boots, art, tags=["riscv-h"]))
    assert job["device_type"] == "qemu" and job["tags"] == ["riscv-h"]
    assert job["context"]["arch"] == "riscv64" and job["context"]["no_kvm"] is True
    deploys = [a["deploy"] for a in job["actions"] if "deploy" in a]
    assert [d["namespace"] for d in deploys] == ["boot-1", "boot-2"]
    assert deploys[1]["images"]["ramdisk"]["image_arg"] == (
        "-initrd {ramdisk} -machine virt -cpu rv64,h=true -smp 1 -m 512M"
        " -icount shift=0,sleep=off")
    assert deploys[0]["images"]["kernel"]["sha256sum"] == "aa"
    kernel_arg = shlex.split(deploys[1]["images"]["kernel"]["image_arg"])
    assert kernel_arg[:3] == ["-kernel", "{kernel}", "-append"]
    assert kernel_arg[3].endswith(" rig.run=/rig-lava/boot-2.sh") and len(kernel_arg) == 4
    tests = [a["test"] for a in job["actions"] if "test" in a]
    monitor = tests[0]["monitors"][0]
    assert monitor["start"] == "RIG-SUITE-BEGIN kvm-host"
    match = re.search(monitor["pattern"], "RIG-CASE kvm-host/dev-kvm pass")
    assert match and match["test_case_id"] == "kvm-host/dev-kvm" and match["result"] == "pass"
    # QEMU's console, which the monitors read, waits as long as the boot action allows
    boot_actions = [a["boot"] for a in job["actions"] if "boot" in a]
    assert all(b["timeout"]["seconds"] >= 300 + 120 for b in boot_actions)


def test_machine_options_carry_the_tcg_threading() -> None:
    options = render.machine_args(QemuConfig(smp=2, tcg_thread="single"))
    assert options.endswith("-smp 2 -m 512M -accel tcg,thread=single")


def test_values_reach_lavas_command_line_quoted() -> None:
    """LAVA splits image_arg and the device's options as a shell does: what rig.yaml
    says of the machine and the kernel command line stays one word each."""
    odd = QemuConfig(machine="virt,aia=aplic-imsic", cpu="rv64,h=true",
                     append='quiet x="$(touch /tmp/canary)" `id`')
    boot = jobs.Boot(1, "boot", odd, {"kvm-host": ["kvm-host/dev-kvm"]}, [])
    art = {1: {"kernel": {"url": "u", "sha256": "a"}, "ramdisk": {"url": "v", "sha256": "b"}}}
    job = yaml.safe_load(render.render_job("k1", "key", odd, [boot], art))
    images = next(a["deploy"] for a in job["actions"] if "deploy" in a)["images"]
    append = shlex.split(images["kernel"]["image_arg"])[3]
    assert append.endswith('quiet x="$(touch /tmp/canary)" `id` rig.run=/rig-lava/boot-1.sh')
    device = yaml.safe_load(render.render_device(odd))
    options = device["actions"]["boot"]["methods"]["qemu"]["parameters"]["options"]
    assert [shlex.split(o) for o in options[:2]] == [["-machine", "virt,aia=aplic-imsic"],
                                                   ["-cpu", "rv64,h=true"]]


def test_device_is_a_riscv64_qemu_without_kvm() -> None:
    device = yaml.safe_load(render.render_device(QEMU))
    options = device["actions"]["boot"]["methods"]["qemu"]["parameters"]
    assert device["available_architectures"] == ["riscv64"]
    assert options["command"] == "qemu-system-riscv64"
    assert "-enable-kvm" not in " ".join(options["options"] + options["extra"])
    assert "-bios default" in options["extra"]


def _entry(level: str, message: object, **extra: str) -> str:
    return json.dumps({"dt": "2026-01-01T00:00:00", "lvl": level, "msg": message, **extra})


def log_text(lines_by_boot: dict[int, list[str]], raw: bool = False) -> str:
    entries = []
    for index, lines in lines_by_boot.items():
        entries.append(_entry("debug", f"start: 2.1.1 execute-qemu (timeout 00:02:00)"
                                       f" [boot-{index}]"))
        entries.append(_entry("info", "Boot command: qemu-system-riscv64 -x"))
        for line in lines:
            # LAVA escapes double quotes before it logs a console line
            entries.append(_entry("target", line.replace('"', '\\"')))
    entries.append(_entry("results", {"definition": "lava", "case": "job", "result": "pass"}))
    return "\n".join(("- " if raw else "") + e for e in entries) + "\n"


BANNER = "[    0.3] kvm [1]: hypervisor extension available"


def test_read_log_frames_commands_and_unescapes_quotes() -> None:
    text = log_text({1: [BANNER, "RIG-LAVA-BOOT 1", "RIG-CMD-BEGIN 1",
                         '{"kind":"x","v":"a\\"b"}', "partialRIG-CMD-END 1 3 1.50 4.25 done",
                         "RIG-CMD-BEGIN 2", "RIG-CMD-END 2 137 5.00 95.00 timeout",
                         "RIG-LAVA-DONE 1"]}, raw=True)
    job = logs.read_log(text)
    boot = job.boots[1]
    assert boot.finished and boot.command_line == "qemu-system-riscv64 -x"
    (first,) = boot.commands[1]
    assert (first.status, first.seconds, first.timed_out) == (3, 2.75, False)
    assert first.output == '{"kind":"x","v":"a\\"b"}\npartial'
    assert json.loads(first.output.splitlines()[0])["v"] == 'a"b'
    assert boot.commands[2][0].timed_out and not job.error


def test_feedback_lines_go_to_their_namespace() -> None:
    text = log_text({1: ["RIG-LAVA-BOOT 1"], 2: ["RIG-LAVA-BOOT 2"]})
    text += _entry("feedback", "RIG-LAVA-DONE 1", ns="boot-1") + "\n"
    job = logs.read_log(text)
    assert job.boots[1].finished and not job.boots[2].finished


def _kvm_host_boot() -> jobs.Boot:
    return jobs.Boot(1, "boot", QEMU, {"kvm-host": KvmHost(SuiteConfig()).plan()},
                     [jobs.Command(1, "kvm-host", "test -c /dev/kvm && ls -l /dev/kvm", 300)])


def test_replay_judges_with_the_suites_own_code(tmp_path: Path) -> None:
    job = logs.read_log(log_text({1: [BANNER, "RIG-LAVA-BOOT 1", "RIG-CMD-BEGIN 1",
                                      "crw------- 1 0 0 10, 232 /dev/kvm",
                                      "RIG-CMD-END 1 0 1.0 1.1 done"]}))
    target = replay.ReplayTarget("k", [_kvm_host_boot()], job.boots, tmp_path, "")
    suite = KvmHost(SuiteConfig())
    cases = {c.id: c for c in suite.run(target, suite.plan())}
    assert cases["kvm-host/hypervisor-extension"].verdict == "pass"
    assert cases["kvm-host/dev-kvm"].verdict == "pass"
    assert cases["kvm-host/dev-kvm"].duration == 0.1

    job = logs.read_log(log_text({1: ["RIG-LAVA-BOOT 1", "RIG-CMD-BEGIN 1",
                                      "RIG-CMD-END 1 1 1.0 1.1 done"]}))
    target = replay.ReplayTarget("k", [_kvm_host_boot()], job.boots, tmp_path, "")
    cases = {c.id: c for c in suite.run(target, suite.plan())}
    assert cases["kvm-host/hypervisor-extension"].verdict == "fail"
    assert cases["kvm-host/dev-kvm"].verdict == "fail"


def test_replay_turns_what_the_job_lacks_into_infrastructure_errors(tmp_path: Path) -> None:
    boot = _kvm_host_boot()
    command = boot.commands[0].command
    timed_out = logs.read_log(log_text({1: ["RIG-CMD-BEGIN 1",
                                            "RIG-CMD-END 1 137 1.0 301.0 timeout"]}))
    with pytest.raises(InfraError, match="timed out after 300s"):
        replay.ReplayTarget("k", [boot], timed_out.boots, tmp_path, "").run(command)
    died = logs.read_log(log_text({1: ["RIG-CMD-BEGIN 1", "Kernel panic"]}))
    with pytest.raises(InfraError, match="did not finish"):
        replay.ReplayTarget("k", [boot], died.boots, tmp_path, "").run(command)
    with pytest.raises(InfraError, match="has no boot 1.*job: it broke"):
        replay.ReplayTarget("k", [boot], {}, tmp_path, "it broke").run(command)
    target = replay.ReplayTarget("k", [boot], died.boots, tmp_path, "")
    with pytest.raises(InfraError, match="did not run 'other'"):
        target.run("other")
    with pytest.raises(InfraError, match="another boot"):
        target.reboot()


def test_replay_skips_a_rerun_that_never_ran(tmp_path: Path) -> None:
    boot = jobs.Boot(1, "boot", QEMU, {"s": ["s/a"]},
                     [jobs.Command(1, "s", "prog", 60), jobs.Command(2, "s", "prog", 60, 1)])
    job = logs.read_log(log_text({1: ["RIG-CMD-BEGIN 1", "RIG-CMD-END 1 1 0 1 done",
                                      "RIG-CMD-BEGIN 2", "ok", "RIG-CMD-END 2 0 1 2 done"]}))
    target = replay.ReplayTarget("k", [boot], job.boots, tmp_path, "")
    assert target.run("prog").status == 1
    assert target.run("prog").output == "ok\n"
    passed = logs.read_log(log_text({1: ["RIG-CMD-BEGIN 1", "RIG-CMD-END 1 0 0 1 done"]}))
    target = replay.ReplayTarget("k", [boot], passed.boots, tmp_path, "")
    assert target.run("prog").status == 0
    with pytest.raises(InfraError, match="did not run"):
        target.run("prog")  # a third call: nothing left


def test_a_killed_command_rerun_in_the_same_boot_serves_the_suites_rerun(tmp_path: Path) -> None:
    boot = _kvm_host_boot()
    command = boot.commands[0].command
    job = logs.read_log(log_text({1: ["RIG-CMD-BEGIN 1", "RIG-CMD-END 1 137 1 301 timeout",
                                      "RIG-CMD-BEGIN 1", "crw", "RIG-CMD-END 1 0 301 302 done"]}))
    target = replay.ReplayTarget("k", [boot], job.boots, tmp_path, "")
    with pytest.raises(InfraError, match="timed out"):
        target.run(command)
    assert target.reboot() == 0.0  # no boot left, but the second attempt is there
    assert target.run(command).output == "crw\n"
    with pytest.raises(InfraError, match="another boot"):
        target.reboot()


def test_boot_script_reruns_a_killed_command_once() -> None:
    script = render.boot_script("k", _kvm_host_boot(), {"kvm-host": 1})
    assert '[ -z "$4" ] && { rig_run "$1" "$2" "$3" again; return $?; }' in script


def test_a_suite_no_lava_boot_can_serve_gets_no_boot_and_is_skipped(tmp_path: Path) -> None:
    """linux-guest needs a directory of the rig's machine (virtio-9p): not a LAVA boot."""
    from orchestrator import config
    from orchestrator.suites.linux_guest import LinuxGuest, LinuxGuestConfig

    rig = config.load(Path(__file__).resolve().parents[2] / "rig.yaml")
    guest = LinuxGuest(LinuxGuestConfig(host_perf_user_access=(1,)))
    host = KvmHost(SuiteConfig())
    boots, skipped = jobs.record_boots(rig, [host, guest],
                                       {"kvm-host": host.plan(), "linux-guest": guest.plan()},
                                       tmp_path)
    assert [list(b.suites) for b in boots] == [["kvm-host"]]
    assert skipped["linux-guest"]["ids"] == guest.plan()
    assert "virtio-9p" in skipped["linux-guest"]["reason"]
