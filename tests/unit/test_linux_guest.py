"""Suite linux-guest without QEMU: its plan, the guest's `guest:` section, and the
judging of linux-counters records against kernel.perf_user_access's rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import config, expectations
from orchestrator.suites.linux_guest import LinuxGuest, LinuxGuestConfig, expect, host_script
from orchestrator.suites.linux_guest.expect import outcome_of
from orchestrator.verdicts import FAIL, KNOWN_DEVIATION, PASS

from .test_config import default_doc, load_error, write_rig

KVM_6_12 = expectations.for_release("6.12")  # images/expectations/kvm.yaml for a 6.12 host


def expected(method: str, counter: str, perf_user_access: int) -> expect.Expectation:
    return expect.expected(method, counter, perf_user_access, KVM_6_12)


def judge(record: dict, cpus: int) -> expect.Judgement:
    return expect.judge(record, cpus, KVM_6_12)

# lines as linux-counters printed them in a guest under KVM (host 6.12 + b922307a)
TIME_READ = ('{"kind":"read","perf_user_access":1,"method":"direct","counter":"time",'
             '"outcome":"value","value1":122071378,"value2":122076213,"hop_reads":20,'
             '"cpus_seen":"0x3","backwards":0}')
PERF_USER = ('{"kind":"read","perf_user_access":1,"method":"perf","counter":"cycles",'
             '"cap_user_rdpmc":1,"index":1,"pmc_width":64,"outcome":"value","value1":1820468,'
             '"value2":2629172,"hop_reads":20,"cpus_seen":"0x3","backwards":0,"syscall":'
             '{"outcome":"value","value1":70304468,"value2":71418594,"hop_reads":20,'
             '"cpus_seen":"0x3","backwards":0}}')
PERF_LEGACY_UNPLACED = (
    '{"kind":"read","perf_user_access":2,"method":"perf","counter":"cycles","cap_user_rdpmc":0,'
    '"index":0,"pmc_width":0,"outcome":"not-offered","value1":0,"value2":0,"hop_reads":0,'
    '"cpus_seen":"0x0","backwards":0,"syscall":{"outcome":"value","value1":0,"value2":0,'
    '"hop_reads":20,"cpus_seen":"0x3","backwards":0}}')


def direct(pua: int, counter: str, outcome: str, **fields) -> dict:
    record = {"kind": "read", "perf_user_access": pua, "method": "direct", "counter": counter,
              "outcome": outcome, "value1": 0, "value2": 0, "hop_reads": 0,
              "cpus_seen": "0x0", "backwards": 0}
    if outcome == "value":
        record.update(value1=10, value2=20, hop_reads=20, cpus_seen="0x3")
    return {**record, **fields}


@pytest.mark.parametrize("pua,counter,want", [
    (0, "time", "value"), (1, "time", "value"), (2, "time", "value"),
    (0, "cycle", "sigill"), (1, "instret", "sigill"), (2, "cycle", "value"),
])
def test_direct_reads_follow_kernel_rst(pua: int, counter: str, want: str) -> None:
    assert expected("direct", counter, pua).outcome == want


def test_legacy_direct_cycle_names_the_kvm_deviation() -> None:
    judged = judge(direct(2, "cycle", "sigill"), cpus=2)
    assert (judged.verdict, judged.rule) == (KNOWN_DEVIATION, "kvm-unconfigured-counter-traps")
    assert judge(direct(2, "cycle", "value"), cpus=2).verdict == PASS  # as documented


def test_a_lost_time_bit_fails_with_the_rule_it_breaks() -> None:
    judged = judge(direct(1, "time", "sigill"), cpus=2)
    assert (judged.verdict, judged.rule) == (FAIL, "time-always-readable")
    assert "observed: sigill" in judged.reason


def test_recorded_lines_judge_as_on_the_real_kernel() -> None:
    assert judge(json.loads(TIME_READ), cpus=2).verdict == PASS
    user = judge(json.loads(PERF_USER), cpus=2)
    assert (user.verdict, user.rule) == (PASS, "perf-user-read")
    legacy = judge(json.loads(PERF_LEGACY_UNPLACED), cpus=2)
    assert (legacy.verdict, legacy.rule) == (KNOWN_DEVIATION,
                                             "kvm-skip-match-needs-counter-in-use")
    assert outcome_of(json.loads(PERF_USER)) == {"kind": "value", "cap_user_rdpmc": 1}


def test_counts_must_advance_never_go_back_and_really_migrate() -> None:
    flat = judge(direct(1, "time", "value", value1=5, value2=5), cpus=2)
    assert (flat.verdict, flat.rule) == (FAIL, "counter-advances")
    back = judge(direct(1, "time", "value", backwards=1, back_from=9, back_to=3), cpus=2)
    assert (back.verdict, back.rule) == (FAIL, "never-backwards")
    assert "9 -> 3" in back.reason
    stuck = judge(direct(1, "time", "value", cpus_seen="0x1"), cpus=2)
    assert (stuck.verdict, stuck.rule) == (FAIL, "process-migrated")
    assert judge(direct(1, "time", "value", cpus_seen="0x1"), cpus=1).verdict == PASS


def test_a_user_read_with_a_dead_read_count_fails() -> None:
    record = json.loads(PERF_USER)
    record["syscall"].update(value1=0, value2=0)
    judged = judge(record, cpus=2)
    assert (judged.verdict, judged.rule) == (FAIL, "counter-advances")
    unplaced = json.loads(PERF_LEGACY_UNPLACED)
    unplaced["perf_user_access"] = 1  # outside legacy mode nothing excuses it
    assert judge(unplaced, cpus=2).verdict == FAIL


def test_plan_is_host_by_guest_by_probe() -> None:
    ids = LinuxGuest(LinuxGuestConfig(host_perf_user_access=(1,),
                                      guest_perf_user_access=(0, 2))).plan()
    assert len(ids) == 1 * 2 * 5
    assert ids[0] == "linux-guest/host-pua=1/guest-pua=0/direct/cycle"
    assert ids[-1] == "linux-guest/host-pua=1/guest-pua=2/perf/instructions"


def test_host_script_sets_the_host_policy_and_bounds_the_guest() -> None:
    script = host_script(LinuxGuestConfig(timeout=42), 2, "console=ttyS0")
    assert "echo 2 > /proc/sys/kernel/perf_user_access" in script
    assert "timeout -s KILL 42 " in script
    assert "-accel kvm -cpu host -M virt" in script


def test_guest_defaults_to_the_host_source_and_the_guest_fragment(tmp_path: Path) -> None:
    rig = config.load(write_rig(tmp_path, default_doc()))
    spec = rig.guest.kernel_for(rig.kernels[1])
    assert spec.source == rig.kernels[1].source
    assert spec.config == (*rig.kernels[1].config, config.GUEST_CONFIG)
    assert spec.patches == ()
    # both hosts share one guest kernel: the same inputs
    assert spec == rig.guest.kernel_for(rig.kernels[0])


def test_guest_source_must_be_a_known_source(tmp_path: Path) -> None:
    doc = {**default_doc(), "guest": {"source": "nope"}}
    assert "guest.source: got 'nope', expected one of the sources" in load_error(tmp_path, doc)


def test_guest_values_are_checked(tmp_path: Path) -> None:
    doc = default_doc()
    doc["suites"]["linux-guest"]["guest_perf_user_access"] = [3]
    assert "suites.linux-guest.guest_perf_user_access[0]" in load_error(tmp_path, doc)


def test_the_vmm_closure_names_the_debs_apt_downloads() -> None:
    from orchestrator.debian import deb_names

    simulation = """NOTE: This is only a simulation!
Inst libc6 (2.41-12 Debian:13.8/stable [riscv64])
Inst qemu-system-data (1:10.0.13+ds-0+deb13u1 Debian:13.8/stable [all])
Conf libc6 (2.41-12 Debian:13.8/stable [riscv64])
Inst qemu-system-riscv (1:10.0.13+ds-0+deb13u1 Debian:13.8/stable [riscv64])
"""
    assert deb_names(simulation) == [
        "libc6_2.41-12_riscv64.deb",
        "qemu-system-data_1%3a10.0.13+ds-0+deb13u1_all.deb",
        "qemu-system-riscv_1%3a10.0.13+ds-0+deb13u1_riscv64.deb"]
