"""Suite linux-guest on real kernels: a Linux guest under Debian's riscv64 QEMU
with KVM, inside each host, reads the counters from its user space. The real
kernel passes (KVM's documented deviations named); a host kernel that loses
the guest's SCOUNTEREN across exits (tests/patches/0102-...) is caught."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from orchestrator import kernel
from orchestrator.config import load as load_config

from .conftest import (
    REPO,
    interactive,
    orchestrator,
    rig_variant,
    run_cases,
)

pytestmark = pytest.mark.integration
BUG = "0102-bug-lose-guest-scounteren.patch"


def with_bug_kernel(doc: dict) -> None:
    commit = doc["kernels"][1]
    doc["kernels"] = [commit, {**commit, "name": "bug-lose",
                               "patches": [*commit["patches"],
                                           str(REPO / "tests" / "patches" / BUG)]}]


@pytest.fixture(scope="module")
def guest_run(built_kernels: dict, tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("linux-guest")
    result = orchestrator("run", "--only", "linux-guest/*",
                          config=rig_variant(tmp_path, with_bug_kernel, linux_guest=True))
    (run_dir,) = (p for p in (tmp_path / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    return result, run_cases(tmp_path), run_dir


def test_the_real_kernel_passes_with_kvm_deviations_named(guest_run) -> None:
    result, cases, run_dir = guest_run
    mine = [c for c in cases if c["kernel"] == "b922307a" and c["suite"] == "linux-guest"]
    assert len(mine) == 3 * 3 * 5  # host value x guest value x probe
    assert {c["verdict"] for c in mine} == {"pass", "known-deviation"}, [
        (c["id"], c["reason"]) for c in mine if c["verdict"] not in ("pass", "known-deviation")]
    deviations = Counter(c["rule"] for c in mine if c["verdict"] == "known-deviation")
    # legacy mode (guest value 2): direct cycle/instret trap, perf cannot place the event
    assert deviations == {"kvm-unconfigured-counter-traps": 6,
                          "kvm-skip-match-needs-counter-in-use": 6}, deviations
    for c in mine:
        if c["id"].endswith("/direct/time") or "/guest-pua=1/perf/" in c["id"]:
            record = c["details"]["record"]
            assert record["outcome"] == "value" and record["value2"] > record["value1"]
            assert record["cpus_seen"] == "0x3"  # the process ran on both vCPUs
    # each guest run moved the VMM's threads between host CPUs and reached user space
    runs = {c["id"].split("/")[1]: c["details"] for c in mine}
    assert len(runs) == 3
    for details in runs.values():
        assert int(details["vmm"]["moves"]) > 0 and details["vmm"]["status"] == "0"
        assert 0 < details["guest_boot_seconds"] < 120
    for host_pua in (0, 1, 2):
        console = run_dir / "b922307a" / f"linux-guest-host-pua={host_pua}.console.log"
        assert "RIG-GUEST-EXIT 0" in console.read_text()


def test_a_host_that_loses_the_guest_scounteren_is_caught(guest_run) -> None:
    result, cases, _ = guest_run
    assert result.returncode == 1, result.stderr[-2000:]
    failed = [c for c in cases if c["kernel"] == "bug-lose" and c["verdict"] == "fail"
              and c["suite"] == "linux-guest"]
    # the guest's time bit is lost: its user space can no longer read time directly
    time_reads = [c for c in failed if c["id"].endswith("/direct/time")]
    assert len(time_reads) == 9, [(c["id"], c["reason"]) for c in failed]
    assert all(c["rule"] == "time-always-readable" for c in time_reads)
    assert all(c["outcome"] == {"kind": "sigill"} for c in time_reads)
    assert f"fail: bug-lose {time_reads[0]['id']}: " in result.stdout or \
        "fail: bug-lose linux-guest/" in result.stdout


def test_shell_guest_reaches_the_guest_shell(built_kernels: dict, tmp_path: Path) -> None:
    """`orchestrator shell KERNEL --guest` boots the host, starts the guest in it and
    hands over the guest's console: a command typed there runs in the guest."""
    config = rig_variant(tmp_path, lambda doc: None, linux_guest=True)
    rig = load_config(config)
    guest_kernel = kernel.build(rig, rig.guest.kernel_for(rig.kernel("b922307a")))
    with interactive(config, "shell", "b922307a", "--guest", timeout=300) as child:
        child.expect(f"RIG-GUEST-READY kernel={re.escape(guest_kernel.release)} ")
        child.expect("# ")
        child.sendline("echo GUEST-$((6 * 7)) $(nproc) $(cat /proc/sys/kernel/perf_user_access)")
        child.expect(r"GUEST-42 2 1")  # the guest's two vCPUs, its default policy
        child.sendline("poweroff -f")
        child.expect("RIG-END")  # the VMM exited: the host's command is over


def test_a_guest_that_does_not_finish_is_an_error_with_its_console(
        built_kernels: dict, tmp_path: Path) -> None:
    """A guest run longer than `timeout` is killed: the cases it did not report are
    errors (infrastructure, not failures) carrying the guest console's tail, which stays
    in results/. Here the guest reaches user space, then hops between its vCPUs far
    longer than allowed."""
    def endless(doc: dict) -> None:
        doc["suites"]["linux-guest"].update(timeout=60, hops=100000,
                                            host_perf_user_access=[1])

    result = orchestrator("run", "--kernel", "b922307a", "--only", "linux-guest/*",
                          config=rig_variant(tmp_path, endless, linux_guest=True))
    assert result.returncode == 3, result.stderr[-2000:]
    cases = run_cases(tmp_path)
    assert len(cases) == 15
    # what the guest reported before it was killed keeps its verdict (a trapping read
    # makes no hops); the rest are errors
    judged = [c for c in cases if c["verdict"] != "error"]
    errors = [c for c in cases if c["verdict"] == "error"]
    assert judged and errors
    assert all(c["id"].endswith(("/cycle", "/instret")) for c in judged)
    assert {c["reason"] for c in errors} == {
        "the guest did not finish in time (the VMM was killed)"}
    assert '"program":"linux-counters"' in errors[0]["details"]["output"]
    (run_dir,) = (p for p in (tmp_path / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    console = (run_dir / "b922307a" / "linux-guest-host-pua=1.console.log").read_text()
    assert "RIG-GUEST-READY" in console and "RIG-GUEST-EXIT" not in console
