"""The counters and isolation suites on real kernels: the two real kernels
pass (KVM's documented deviations reported as such, identically), and kernels
carrying deliberate bugs (tests/patches/) are caught with the rule they break."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from .conftest import REPO, orchestrator, rig_variant, run_cases

pytestmark = pytest.mark.integration
REAL = ("b922307a-parent", "b922307a")
BUGS = {
    # kernel: (patch, the rule whose failure must name the bug)
    "bug-leak": ("0101-bug-leak-guest-scounteren-to-host.patch", "host-policy"),
    "bug-lose": ("0102-bug-lose-guest-scounteren.patch", "guest-scounteren-preserved"),
    "bug-ctr0": ("0103-bug-emulate-unconfigured-counter-as-zero.patch", "counter-advances"),
}


def with_bug_kernels(doc: dict) -> None:
    doc["suites"]["latency"] = {"enabled": False}  # test_latency.py covers it
    commit = doc["kernels"][1]
    for name, (patch, _) in BUGS.items():
        doc["kernels"].append({**commit, "name": name,
                               "patches": [*commit["patches"],
                                           str(REPO / "tests" / "patches" / patch)]})


@pytest.fixture(scope="module")
def bug_run(built_kernels: dict, tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("bugs")
    result = orchestrator("run", config=rig_variant(tmp_path, with_bug_kernels))
    return result, run_cases(tmp_path)


def test_real_kernels_pass_with_known_deviations_named(bug_run) -> None:
    result, cases = bug_run
    for kernel in REAL:
        mine = [c for c in cases if c["kernel"] == kernel]
        verdicts = Counter(c["verdict"] for c in mine)
        assert set(verdicts) == {"pass", "known-deviation"}, [
            (c["id"], c["reason"]) for c in mine if c["verdict"] not in ("pass", "known-deviation")]
        counter_cases = [c for c in mine if c["suite"] == "counters"]
        assert len(counter_cases) == 6 * 4 * 2 * 2  # scounteren x counter x mode x PMU
        rules = {c["rule"] for c in counter_cases if c["verdict"] == "known-deviation"}
        assert rules == {"kvm-unconfigured-counter-traps", "kvm-ignores-guest-scounteren"}
        isolation = [c for c in mine if c["suite"] == "isolation"]
        assert len(isolation) == 12
        # "pinned" means one host CPU for the whole run, "migrating" at least two
        for c in isolation:
            cpus = c["details"]["summary"]["cpus"]
            assert len(cpus) == 1 if "/pinned/" in c["id"] else len(cpus) >= 2, (c["id"], cpus)
    # KVM ignores the guest's bit: a VU cycle read with scounteren 0 returns a value
    (vu_read,) = [c for c in cases if c["kernel"] == "b922307a"
                  and c["id"] == "counters/pmu/VU/cycle/scounteren=0x0"]
    assert vu_read["verdict"] == "known-deviation"
    assert vu_read["details"]["record"]["outcome"] == "value"
    assert vu_read["outcome"] == {"kind": "value"}
    assert vu_read["reason"].startswith("kvm-ignores-guest-scounteren: ")


def test_real_kernels_behave_identically(bug_run) -> None:
    _, cases = bug_run
    assert not [c for c in cases if c["suite"] == "differs" and c["kernel"] in REAL]
    by_id = {}
    for c in cases:
        if c["kernel"] in REAL and c["suite"] == "counters":
            by_id.setdefault(c["id"], set()).add((c["verdict"], c["outcome"]["kind"]))
    assert all(len(outcomes) == 1 for outcomes in by_id.values())


@pytest.mark.parametrize("kernel", sorted(BUGS))
def test_each_bug_kernel_fails_with_the_rule_it_breaks(bug_run, kernel: str) -> None:
    result, cases = bug_run
    assert result.returncode == 1, result.stderr[-2000:]
    failures = [c for c in cases if c["kernel"] == kernel and c["verdict"] == "fail"]
    rule = BUGS[kernel][1]
    named = [c for c in failures if rule in c["id"] or c["reason"].startswith(rule)]
    assert named, [(c["id"], c["reason"]) for c in failures][:5]
    assert all(c["rerun"] for c in failures)
    assert f"fail: {kernel} {named[0]['id']}: " in result.stdout


def test_only_reruns_one_case_and_prints_its_record(built_kernels: dict, tmp_path: Path) -> None:
    case = "counters/pmu/VU/cycle/scounteren=0x0"
    result = orchestrator("run", "--kernel", "b922307a", "--only", case,
                          config=rig_variant(tmp_path, lambda doc: None))
    assert result.returncode == 0, result.stderr[-2000:]
    (only,) = run_cases(tmp_path)
    assert (only["id"], only["kernel"], only["verdict"]) == (case, "b922307a", "known-deviation")
    printed = json.loads(result.stdout.split("\n--- console of b922307a")[0])
    assert printed["details"]["record"]["mode"] == "VU"
    assert "--scounteren 0x0" in result.stdout and "--pmu" in result.stdout  # the console


def test_only_rejects_an_unknown_case_id(tmp_path: Path) -> None:
    result = orchestrator("run", "--kernel", "b922307a", "--only", "counters/VU/cycle",
                          config=rig_variant(tmp_path, lambda doc: None))
    assert result.returncode == 2
    assert "--only: 'counters/VU/cycle' matches no case id" in result.stderr


def test_a_host_without_sscofpmf_gives_the_no_guest_pmu_deviation(
        built_kernels: dict, tmp_path: Path) -> None:
    """KVM 6.12 leaves the guest PMU uninitialised without the host's Sscofpmf: the
    guest's own SBI PMU probe says so, and the reads follow KVM's documented answer."""
    def no_sscofpmf(doc: dict) -> None:
        doc["qemu"]["cpu"] = "rv64,h=true,sscofpmf=false"
        doc["suites"] = {"counters": {"scounteren": [0x0, 0x7]}, "isolation": {"enabled": False},
                         "kselftest-kvm": {"enabled": False}, "linux-guest": {"enabled": False},
                         "latency": {"enabled": False}, "kvm-host": {"enabled": False},
                         "timer": {"enabled": False}}

    result = orchestrator("run", "--kernel", "b922307a",
                          config=rig_variant(tmp_path, no_sscofpmf))
    assert result.returncode == 0, result.stderr[-2000:]
    cases = run_cases(tmp_path)
    assert len(cases) == 2 * 4 * 2 * 2
    assert all(c["details"]["record"]["pmu_available"] is False for c in cases)
    rules = Counter(c["rule"] for c in cases if c["verdict"] == "known-deviation")
    assert rules["kvm-no-guest-pmu"] > 0, rules
    (vs_cycle,) = [c for c in cases if c["id"] == "counters/pmu/VS/cycle/scounteren=0x7"]
    assert (vs_cycle["verdict"], vs_cycle["rule"]) == ("known-deviation", "kvm-no-guest-pmu")
    assert vs_cycle["details"]["record"]["value2"] == 0  # KVM's constant, not a counter
