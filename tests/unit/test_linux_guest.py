"""Suite linux-guest without QEMU: its plan, the guest's `guest:` section, and the
judging of linux-counters records against kernel.perf_user_access's rules."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator import config, expectations
from orchestrator.suites.linux_guest import (
    LinuxGuest,
    LinuxGuestConfig,
    expect,
    host_readers,
    host_script,
)
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


# ---- the host readers (host_readers) ------------------------------------------------

def reader(cpu: int, *, cycle_ok: int = 0, switches: int = 5000, perf: str = "value",
           vcpus: int = 2) -> dict:
    """One host-readers line: 400 wakeups, 50 perf reads per event, all as given."""
    empty = dict.fromkeys(("value", "not-offered", "sigill", "stuck", "failed"), 0)
    return {"kind": "host-readers", "cpu": cpu, "perf_user_access": 1, "wakeups": 400,
            "direct": {"cycle": {"ok": cycle_ok, "sigill": 400 - cycle_ok},
                       "time": {"ok": 400, "sigill": 0},
                       "instret": {"ok": 0, "sigill": 400}},
            "perf": {e: {**empty, perf: 50} for e in ("cycles", "instructions")},
            "vmm_pid": 90, "vcpus": [{"id": i, "exits": 9000, "exits_here": switches // vcpus}
                                     for i in range(vcpus)],
            "world_switches": switches, "rounds_after_switch": 300, "cpu_us": 120000 + cpu}


def test_host_readers_plan_follows_migrate() -> None:
    cfg = LinuxGuestConfig(host_perf_user_access=(0, 2), guest_perf_user_access=(1,))
    assert not [i for i in LinuxGuest(cfg).plan() if "host-readers" in i]
    ids = LinuxGuest(dataclasses.replace(cfg, migrate=True)).plan()
    assert [i for i in ids if "host-readers" in i] == [
        "linux-guest/host-pua=0/host-readers/direct", "linux-guest/host-pua=0/host-readers/perf",
        "linux-guest/host-pua=2/host-readers/direct", "linux-guest/host-pua=2/host-readers/perf"]


def test_host_script_pins_one_reader_per_cpu_for_the_vmm() -> None:
    cfg = LinuxGuestConfig(migrate=True)
    script = host_script(cfg, 1, "console=ttyS0", readers=True)
    assert "taskset -c $cpu /usr/lib/rig/host-readers --while-pid $vmm --vcpus 2" in script
    assert "-name linux-guest,debug-threads=on" in script  # the readers find vCPU threads
    assert "wait $readers" in script
    assert "host-readers" not in host_script(cfg, 1, "console=ttyS0")


def test_host_direct_reads_are_judged_as_isolation_judges_its_vmm() -> None:
    judged, outcome = host_readers.judge_direct([reader(0), reader(1)], host_pua=1)
    assert (judged.verdict, judged.rule) == (PASS, "host-policy")
    assert outcome == {"kind": "host-counters", "cycle": "sigill", "time": "readable",
                       "instret": "sigill"}
    # a guest's scounteren left live: cycle readable where policy 0x2 says SIGILL
    leaked, outcome = host_readers.judge_direct([reader(0), reader(1, cycle_ok=3)], 1)
    assert (leaked.verdict, leaked.rule) == (FAIL, "host-policy")
    assert outcome["cycle"] == "mixed"
    assert "cycle should be SIGILL in host user space (policy 0x2) but was not on 3 of" \
        " 800 probes beside the running guest" in leaked.reason
    # legacy: the same reads are wrong the other way round
    assert host_readers.judge_direct([reader(0)], host_pua=2)[0].verdict == FAIL


@pytest.mark.parametrize("pua,perf,verdict,rule", [
    (0, "not-offered", PASS, "perf-no-user-access"),
    (1, "value", PASS, "perf-user-read"),
    (2, "value", PASS, "perf-user-read"),
    (1, "sigill", FAIL, "perf-user-read"),
    (0, "value", FAIL, "perf-no-user-access"),
])
def test_host_perf_reads_follow_the_documented_rules(pua: int, perf: str, verdict: str,
                                                     rule: str) -> None:
    judged, outcome = host_readers.judge_perf([reader(0, perf=perf), reader(1, perf=perf)], pua)
    assert (judged.verdict, judged.rule) == (verdict, rule), judged.reason
    assert outcome == {"kind": "host-perf", "cycles": perf, "instructions": perf}


def test_host_readers_without_the_evidence_are_errors_not_passes() -> None:
    assert host_readers.missing_evidence([reader(0), reader(1)], cpus=2, vcpus=2) == []
    missing = host_readers.missing_evidence([reader(0, switches=10), reader(1, vcpus=1)], 2, 2)
    assert missing == [
        "the reader on CPU 0 counted 10 world switches on its CPU, fewer than 1000",
        "the reader on CPU 1 found 1 of the VMM's 2 vCPUs"]
    assert host_readers.missing_evidence([reader(1)], 2, 2) == [
        "readers reported for CPUs [1], not each of the host's 2"]
    # the host script did not report the run: no CPU count, no reader
    assert host_readers.missing_evidence([], 0, 2) == ["no reader reported"]


def test_a_host_run_judges_its_readers_lines() -> None:
    suite = LinuxGuest(LinuxGuestConfig(migrate=True))
    ids = [suite.host_case_id(1, check) for check in host_readers.CHECKS]
    output = "\n".join([json.dumps(reader(0)), json.dumps(reader(1, cycle_ok=1))])
    cases = list(suite._host_judged(1, ids, output, {"status": "0", "cpus": "2"}, 1.5))
    assert [(c.id, c.verdict) for c in cases] == [(ids[0], FAIL), (ids[1], PASS)]
    assert cases[0].details["world_switches"] == {"cpu0": 5000, "cpu1": 5000}
    assert cases[1].details["reader_cpu_us"] == {"cpu0": 120000, "cpu1": 120001}
    assert {c.duration for c in cases} == {1.5}  # their part of the guest run
    short = list(suite._host_judged(1, ids, json.dumps(reader(0)), {"cpus": "2"}, 1.5))
    assert {c.verdict for c in short} == {"error"}
