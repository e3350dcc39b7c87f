"""An ssh target for real: the emulated host with dropbear, reached through paramiko.

`orchestrator boot --ssh b922307a` keeps a host running with a forwarded
port of 127.0.0.1; `orchestrator run --target` then runs counters,
isolation and latency there over SSH and SFTP, and the verdicts must be the
ones the same kernel gets over its serial console.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, orchestrator, qemu_processes_mentioning, rig_variant

pytestmark = pytest.mark.integration
KERNEL = "b922307a"
SUITES = ("counters", "isolation", "latency")


def three_suites(doc: dict) -> None:
    doc["suites"]["kvm-host"] = {"enabled": False}
    doc["suites"]["timer"] = {"enabled": False}  # KVM_RUN's put/load sources: test_timer.py
    # fewer exits than the default 3000: the same checks, less time on a loaded machine
    doc["suites"]["isolation"]["exits"] = 600
    # the fewest samples wall-clock mode allows (config validation's minimum)
    doc["suites"]["latency"].update(mode="wallclock", boots=5, windows=30)


def cases_of(run_dir: Path) -> dict[str, dict]:
    return {c["id"]: c for c in json.loads((run_dir / "results.json").read_text())["cases"]}


def only_run(results: Path, before: set[Path]) -> Path:
    (run_dir,) = [d for d in results.iterdir()
                  if d.is_dir() and d not in before and d.name not in ("boots", "latest")]
    return run_dir


@pytest.fixture(scope="module")
def console_run(built_kernels: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("console")
    rig = rig_variant(tmp_path, three_suites)
    result = orchestrator("run", "--kernel", KERNEL, config=rig)
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    return only_run(tmp_path / "results", set())


@pytest.fixture(scope="module")
def ssh_host(built_kernels: dict, tmp_path_factory: pytest.TempPathFactory):
    """`orchestrator boot --ssh` running; yields (rig.yaml with its target, target name)."""
    tmp_path = tmp_path_factory.mktemp("ssh")
    rig = rig_variant(tmp_path, three_suites)
    boot = subprocess.Popen([sys.executable, "-m", "orchestrator", "-c", str(rig), "boot",
                             "--ssh", KERNEL], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ssh_line = boot.stdout.readline().strip()
        entry_line = boot.stdout.readline().strip()
        assert entry_line.startswith("rig.yaml target entry: "), (
            ssh_line, entry_line, boot.stderr.read() if boot.poll() is not None else "")
        snippet = Path(entry_line.split(": ", 1)[1])
        targets = yaml.safe_load(snippet.read_text())["targets"]
        doc = yaml.safe_load(rig.read_text())
        doc["targets"] = targets
        rig.write_text(yaml.safe_dump(doc))
        (name,) = targets
        yield rig, name, ssh_line, boot, targets[name]
    finally:
        boot.send_signal(signal.SIGINT)
        try:
            boot.wait(timeout=60)
        except subprocess.TimeoutExpired:
            boot.kill()
            boot.wait()


@pytest.fixture(scope="module")
def ssh_run(ssh_host) -> Path:
    rig, name, *_ = ssh_host
    results = rig.parent / "results"
    before = set(results.iterdir())
    result = orchestrator("run", "--target", name, config=rig)
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    return only_run(results, before)


def test_boot_prints_an_ssh_command_for_127_0_0_1_only(ssh_host) -> None:
    _, _, ssh_line, boot, entry = ssh_host
    assert boot.poll() is None
    assert ssh_line.startswith("ssh -p ") and ssh_line.endswith("root@127.0.0.1")
    assert entry["host"] == "127.0.0.1"
    (pid,) = qemu_processes_mentioning(f"hostfwd=tcp:127.0.0.1:{entry['port']}-:22")
    assert pid
    key = Path(entry["key_file"])
    assert key.stat().st_mode & 0o777 == 0o600
    rig, *_ = ssh_host
    assert key.is_relative_to(rig.parent / "results" / "boots")  # per boot, never in the repo


def test_same_verdicts_over_ssh_as_over_the_console(console_run: Path, ssh_run: Path) -> None:
    console, ssh = cases_of(console_run), cases_of(ssh_run)
    assert set(ssh) == set(console)
    assert {c["suite"] for c in ssh.values()} == set(SUITES)
    differ = {cid: (console[cid]["verdict"], ssh[cid]["verdict"]) for cid in console
              if console[cid]["verdict"] != ssh[cid]["verdict"]}
    assert not differ
    for cid, case in ssh.items():
        assert case["verdict"] != "error", (cid, case["reason"])
        if case["suite"] != "latency":
            assert case["outcome"] == console[cid]["outcome"], cid


def test_latency_runs_in_wallclock_mode_without_reboots(ssh_run: Path) -> None:
    latency = [c for c in cases_of(ssh_run).values() if c["suite"] == "latency"]
    assert latency
    for case in latency:
        assert case["measurement"]["unit"] == "ns" and case["measurement"]["value"] > 0
        assert len(case["measurement"]["samples"]) == 5
        assert "one boot" in case["details"]["samples"]


def test_manifest_records_the_host_as_found(ssh_run: Path, ssh_host) -> None:
    _, name, *_ = ssh_host
    about = json.loads((ssh_run / "manifest.json").read_text())["kernels"][name]
    assert about["uname"].startswith("Linux ") and "riscv64" in about["uname"]
    assert about["machine"] == "riscv64"
    # one ISA string for both harts, with the H extension among its single letters
    (isa,) = about["isa"]
    assert isa.startswith("rv64") and "h" in isa.split("_")[0][4:], isa
    # the rig's tinyconfig host has neither /proc/config.gz nor /boot: recorded as such
    assert about["kernel_config"]["source"] is None
    assert "/usr/lib/rig/counters" in about["guest_tests"]
    assert about["capabilities"]["exact_timing"] is False
    assert about["capabilities"]["cpus"] == 2


def test_ctrl_c_stops_the_host(ssh_host, ssh_run: Path) -> None:
    _, _, _, boot, entry = ssh_host
    boot.send_signal(signal.SIGINT)
    assert boot.wait(timeout=60) == 130
    deadline = time.monotonic() + 10
    while qemu_processes_mentioning(f"127.0.0.1:{entry['port']}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not qemu_processes_mentioning(f"127.0.0.1:{entry['port']}")
