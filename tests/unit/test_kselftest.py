"""kselftest-kvm: build key, plan, expectations and verdicts (no QEMU)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator import compare, config, plan
from orchestrator.errors import BadInput
from orchestrator.expectations import series_of
from orchestrator.suites import kselftest_kvm
from orchestrator.suites.kselftest_kvm import KselftestConfig, KselftestKvm
from orchestrator.suites.kselftest_kvm import build as kselftest
from orchestrator.suites.kselftest_kvm import expect as kselftest_expect
from orchestrator.suites.kselftest_kvm.expect import Known, judge
from orchestrator.targets import Capabilities, Needs
from orchestrator.targets.qemu import qemu_for
from orchestrator.verdicts import KNOWN_DEVIATION, PASS, Case

REPO = Path(__file__).resolve().parents[2]
KVM_PATCH = """From: x
Subject: y
---
diff --git a/arch/riscv/kvm/vcpu_pmu.c b/arch/riscv/kvm/vcpu_pmu.c
--- a/arch/riscv/kvm/vcpu_pmu.c
+++ b/arch/riscv/kvm/vcpu_pmu.c
@@ -1 +1 @@
-a
+b
"""
UAPI_PART = """diff --git a/arch/riscv/include/uapi/asm/kvm.h b/arch/riscv/include/uapi/asm/kvm.h
--- a/arch/riscv/include/uapi/asm/kvm.h
+++ b/arch/riscv/include/uapi/asm/kvm.h
@@ -1 +1 @@
-a
+b
"""


def test_patch_sections_outside_the_selftests_inputs_do_not_change_the_key():
    base = kselftest.selftests_key("100644 blob abc\ttools/testing/selftests/kvm/x.c\n", [],
                                   "gcc 14")
    assert kselftest.relevant_patch_text(KVM_PATCH) == ""
    assert kselftest.selftests_key("100644 blob abc\ttools/testing/selftests/kvm/x.c\n",
                                   [KVM_PATCH], "gcc 14") == base
    both = KVM_PATCH + UAPI_PART
    assert kselftest.relevant_patch_text(both) == UAPI_PART
    assert kselftest.selftests_key("100644 blob abc\ttools/testing/selftests/kvm/x.c\n",
                                   [both], "gcc 14") != base


def test_key_follows_sources_and_toolchain():
    a = kselftest.selftests_key("blob 1", [], "gcc 14")
    assert kselftest.selftests_key("blob 2", [], "gcc 14") != a
    assert kselftest.selftests_key("blob 1", [], "gcc 15") != a


def test_plan_names_programs_and_sbi_pmu_tests():
    suite = KselftestKvm(KselftestConfig())
    ids = suite.plan()
    assert len(ids) == len(kselftest_kvm.PROGRAMS) - 1 + 4 + 1
    assert suite.invocation("kselftest-kvm/demand_paging_test/uffd-missing") == (
        "demand_paging_test", "-b 64M -u MISSING -b 8M")
    assert suite.invocation("kselftest-kvm/demand_paging_test") == ("demand_paging_test",
                                                                    "-b 64M")
    assert KselftestKvm(KselftestConfig(args=())).invocation(
        "kselftest-kvm/dirty_log_test") == ("dirty_log_test", "")
    assert "kselftest-kvm/riscv/sbi_pmu_test/overflow" in ids
    assert "kselftest-kvm/get-reg-list" in ids
    # resolved in the host by kselftest-run (below): -t or -d, a guest mode's ID
    assert suite.invocation("kselftest-kvm/riscv/sbi_pmu_test/overflow") == (
        "riscv/sbi_pmu_test", "--rig-test overflow/basic,events,snapshot,overflow")
    assert suite.invocation("kselftest-kvm/dirty_log_test") == (
        "dirty_log_test", "-i 8 -m first-supported")
    assert suite.invocation("kselftest-kvm/arch_timer") == ("arch_timer", "-e 10000")
    assert suite.invocation("kselftest-kvm/steal_time") == ("steal_time", "")


def fake_program(directory: Path, name: str, usage: str) -> None:
    """A program that prints usage for -h and its options otherwise."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n[ \"$1\" = -h ] && {{ printf '%s' '{usage}'; exit 4; }}\n"
                    "echo \"ran: $*\"\n")
    path.chmod(0o755)


def kselftest_run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(kselftest_kvm.RUNNER_SCRIPT), *args], cwd=directory,
                          capture_output=True, text=True, timeout=30)


USAGE_6_12 = "Usage: ./riscv/sbi_pmu_test [-h] [-d <test name>]\n"
USAGE_7_3 = "Usage: ./riscv/sbi_pmu_test [-h] [-t <test name>] [-n <number of LCOFI>]\n"


@pytest.mark.parametrize(("usage", "resolved"), [
    (USAGE_6_12, "-d basic -d events -d snapshot"), (USAGE_7_3, "-t overflow")])
def test_kselftest_run_selects_sbi_pmu_tests_as_the_usage_says(
        tmp_path: Path, usage: str, resolved: str) -> None:
    fake_program(tmp_path, "riscv/sbi_pmu_test", usage)
    done = kselftest_run(tmp_path, "riscv/sbi_pmu_test",
                         "--rig-test", "overflow/basic,events,snapshot,overflow")
    assert done.stdout == f"# rig: riscv/sbi_pmu_test {resolved}\nran: {resolved}\n"


def test_kselftest_run_passes_the_first_supported_guest_mode(tmp_path: Path) -> None:
    fake_program(tmp_path, "dirty_log_test", GUEST_MODES_7_3)
    done = kselftest_run(tmp_path, "dirty_log_test", "-i", "8", "-m", "first-supported")
    assert done.stdout.splitlines() == ["# rig: dirty_log_test -i 8 -m 17", "ran: -i 8 -m 17"]
    # other options pass as they are, without asking -h
    fake_program(tmp_path, "arch_timer", "no usage")
    assert kselftest_run(tmp_path, "arch_timer", "-e", "10000").stdout.splitlines() == [
        "# rig: arch_timer -e 10000", "ran: -e 10000"]
    # no supported mode: a line the suite turns into an error, never a run
    fake_program(tmp_path, "dirty_log_test", GUEST_MODES_7_3.replace(" (supported)", ""))
    done = kselftest_run(tmp_path, "dirty_log_test", "-m", "first-supported")
    assert (done.returncode, done.stdout) == (
        125, "rig-cannot-run: dirty_log_test -h lists no supported guest mode\n")

def test_rig_yaml_plans_the_suite_and_only_globs_select_it():
    rig = config.load(REPO / "rig.yaml")
    chosen = plan.make(rig, only="kselftest-kvm/riscv/sbi_pmu_test/*")
    assert chosen.ids() == [f"kselftest-kvm/riscv/sbi_pmu_test/{t}"
                            for t in kselftest_kvm.SBI_PMU_TESTS]


def test_needs_give_a_bigger_aia_machine_and_leave_others_alone():
    rig = config.load(REPO / "rig.yaml")
    suite = KselftestKvm(rig.suites["kselftest-kvm"])
    machine = qemu_for(suite.needs(), rig.qemu)
    assert machine.machine == "virt,aia=aplic-imsic"
    assert machine.cpu.endswith(",smaia=true,ssaia=true") and machine.memory == "2048M"
    assert machine.tcg_thread == "single" and machine.smp == rig.qemu.smp
    assert qemu_for(Needs(), rig.qemu) == rig.qemu
    caps = Capabilities(exact_timing=False, cpus=2, memory_mb=512, can_reboot=True)
    assert "AIA" in Needs(aia=True).unmet(caps)


@pytest.mark.parametrize(("status", "seconds", "result"), [
    (0, 1.0, "pass"), (4, 1.0, "skip"), (1, 1.0, "fail"), (254, 1.0, "fail"),
    (137, 10.0, "timeout"), (137, 2.0, "fail"),  # killed early: the OOM killer, not us
])
def test_exit_status(status, seconds, result):
    assert kselftest_kvm._result(status, seconds, 10.0) == result


def test_get_reg_list_configurations_and_ktap_subtests():
    output = ("sbi-base: PASS\n1..0 # SKIP - h not available, skipping tests\n"
              "1..0 # SKIP - sbi-sta: SBI_EXT_STA not available, skipping tests\n"
              "==== Test Assertion Failure ====\n"
              "  get-reg-list.c:300: !missing_regs\n"
              "  aia: There are 2 missing registers; 0 registers failed get; 0 registers"
              " failed set; 0 registers failed reject; 0 registers skipped set\n")
    found = kselftest_kvm._subresults("kselftest-kvm/get-reg-list", "get-reg-list", output)
    assert [(i, r) for i, r, _ in found] == [("kselftest-kvm/get-reg-list/sbi-base", "pass"),
                                             ("kselftest-kvm/get-reg-list/h", "skip"),
                                             ("kselftest-kvm/get-reg-list/sbi-sta", "skip"),
                                             ("kselftest-kvm/get-reg-list/aia", "fail")]
    ktap_out = "TAP version 13\n1..2\nok 1 vcpu 0 stats\nnot ok 2 vm stats # SKIP no fd\n"
    found = kselftest_kvm._subresults("kselftest-kvm/kvm_binary_stats_test", "x", ktap_out)
    assert found == [("kselftest-kvm/kvm_binary_stats_test/vcpu_0_stats", "pass", ""),
                     ("kselftest-kvm/kvm_binary_stats_test/vm_stats", "skip", "no fd")]


def test_detail_of_a_skip_and_a_failure():
    assert kselftest_kvm._detail("skip", "1..0 # SKIP - Sscofpmf is not available\n") == (
        "Sscofpmf is not available")
    failure = "x\n==== Test Assertion Failure ====\n  sbi_pmu_test.c:123: counter_value_post > 0\n"
    assert "counter_value_post > 0" in kselftest_kvm._detail("fail", failure)


FLAKY = Known("flaky", "timer interrupt late", "arch_timer.c")


@pytest.mark.parametrize(("attempts", "known", "verdict", "flaky"), [
    (["pass"], None, "pass", False),
    (["fail", "fail", "fail"], None, "fail", False),
    (["fail", "pass"], None, "fail", True),  # an unlisted flake is a failure
    (["skip"], None, "skip", False),
    (["timeout"], None, "error", False),
    (["fail", "pass"], FLAKY, "known-deviation", True),  # listed: reported, not a pass
    (["pass"], FLAKY, "pass", False),
    (["fail", "fail", "fail"], FLAKY, "fail", False),
    (["fail", "fail"], Known("fail", "r", "ref"), "known-deviation", False),
    (["pass"], Known("fail", "r", "ref"), "fail", False),  # unexpected pass
    (["skip"], Known("skip", "r", "ref"), "skip", False),
    (["pass"], Known("skip", "r", "ref"), "fail", False),
    (["fail"], Known("skip", "r", "ref"), "fail", False),
])
def test_judge(attempts, known, verdict, flaky):
    judged = judge(attempts, known, "6.12.yaml")
    assert (judged.verdict, judged.flaky) == (verdict, flaky)
    if verdict == "known-deviation":
        assert judged.rule == known.reference
    if known and attempts[-1] == "pass" and known.result != "flaky":
        assert judged.reason.startswith("unexpected pass")


def test_expectations_file_of_the_series_loads():
    assert series_of("6.12.117+") == "6.12"
    assert series_of("6.12.0-rc3") == "6.12"
    for series in ("6.12", "7.3"):  # every shipped series loads, under its own name
        loaded = kselftest_expect.load(series)
        assert loaded.path is not None and loaded.path.name == f"{series}.yaml"
        for case_id in loaded.known:
            assert case_id.startswith("kselftest-kvm/")
    assert sorted(p.stem for p in kselftest_expect.EXPECTATIONS_DIR.glob("*.yaml")) == [
        "6.12", "7.3"]
    assert kselftest_expect.load("1.0").known == {}


def test_expectations_bad_entries_name_the_file(tmp_path):
    (tmp_path / "6.12.yaml").write_text("known:\n  kselftest-kvm/x:\n    result: broken\n"
                                        "    reason: r\n    reference: ref\n")
    with pytest.raises(BadInput, match=r"6\.12\.yaml: known\.kselftest-kvm/x\.result"):
        kselftest_expect.load("6.12", tmp_path)


def test_bisect_check_takes_a_selftest_case_id():
    from orchestrator import bisect

    rig = config.load(REPO / "rig.yaml")
    case_id = "kselftest-kvm/riscv/sbi_pmu_test/events"
    assert bisect.parse_predicate(case_id, rig).only == case_id
    assert bisect.parse_predicate("kselftest-kvm", rig).only == "kselftest-kvm/*"


def test_initramfs_gets_the_parents_of_extra_files(tmp_path):
    from orchestrator import image

    program = tmp_path / "sbi_pmu_test"
    program.write_bytes(b"\x7fELF")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"bb")
    names = [e.name for e in image.host_entries(
        busybox, {"usr/lib/kselftest-kvm/riscv/sbi_pmu_test": program})]
    assert names.index("usr/lib/kselftest-kvm") < names.index("usr/lib/kselftest-kvm/riscv") \
        < names.index("usr/lib/kselftest-kvm/riscv/sbi_pmu_test")


GUEST_MODES_7_3 = """\
 -m: specify the guest mode ID to test
     (default: test all supported modes)
     This option may be used multiple times.
     Guest mode IDs:
         0:    PA-bits:52,  VA-bits:48,  4K pages
         16:    PA-bits:36,  VA-bits:47, 16K pages
         17:    PA-bits:56,  VA-bits:57,  4K pages (supported)
         18:    PA-bits:56,  VA-bits:48,  4K pages (supported)
"""


class ScriptedHost:
    """A Target whose programs exit with scripted statuses (the run logic, no QEMU)."""

    label = "scripted"

    def __init__(self, tmp_path: Path, statuses: dict[str, list[int]]) -> None:
        self.console_log = tmp_path / "k1" / "boot.console.log"
        self.console_log.parent.mkdir(parents=True)
        self.statuses = statuses
        self.commands: list[str] = []

    def run(self, command: str, timeout: float | None = None):
        from orchestrator.targets import CommandResult

        self.commands.append(command)
        if command == "uname -r":
            return CommandResult(command, 0, "6.12.117+\n", 0.1)
        program = command.split(f" ./{kselftest_kvm.RUNNER} ", 1)[1].split()[0]
        status = self.statuses[program].pop(0)
        return CommandResult(command, status, f"{program} said {status}\n", 1.5)


def test_run_reruns_failures_and_reports_a_flake(tmp_path):
    from orchestrator.suites.kselftest_kvm.build import BuiltSelftests

    suite = KselftestKvm(KselftestConfig(reruns=2))
    suite._built = BuiltSelftests("k", tmp_path, ("arch_timer", "steal_time", "dirty_log_test"),
                                  1.0, True)
    host = ScriptedHost(tmp_path, {"arch_timer": [1, 0], "steal_time": [1, 1, 1],
                                   "dirty_log_test": [4]})
    ids = ["kselftest-kvm/arch_timer", "kselftest-kvm/steal_time",
           "kselftest-kvm/dirty_log_test"]
    cases = {c.id: c for c in suite.run(host, ids)}
    timer = cases["kselftest-kvm/arch_timer"]
    # listed as flaky in images/kselftest/6.12.yaml: reported, never a clean pass
    assert timer.verdict == "known-deviation" and timer.details["flaky"]
    assert [a["result"] for a in timer.details["attempts"]] == ["fail", "pass"]
    steal = cases["kselftest-kvm/steal_time"]
    assert steal.verdict == "fail" and len(steal.details["attempts"]) == 3
    dirty = cases["kselftest-kvm/dirty_log_test"]
    assert dirty.verdict == "skip"
    assert " ./kselftest-run dirty_log_test -i 8 -m first-supported " in dirty.details["command"]
    log = tmp_path / timer.log
    assert timer.log == "k1/kselftest-kvm/arch_timer.log"
    assert log.read_text().count("attempt") == 2 and "exit status 0" in log.read_text()


def test_an_initramfs_cut_short_in_the_cache_is_written_again(tmp_path, monkeypatch):
    from orchestrator import image

    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"bb" * 100)
    monkeypatch.setattr(image, "busybox", lambda cache_dir, progress=None: busybox)
    extra = tmp_path / "prog"
    extra.write_bytes(b"\x7fELF" * 1000)
    out = image.build_initramfs(tmp_path, {"usr/lib/kselftest-kvm/prog": extra})
    whole = out.read_bytes()
    out.write_bytes(whole[:1000])
    assert image.build_initramfs(tmp_path, {"usr/lib/kselftest-kvm/prog": extra}) == out
    assert out.read_bytes() == whole


def test_sub_case_ids_are_one_bounded_line_whatever_the_program_prints():
    """A description is the program's text: control characters and length never reach
    a case id (results.json's schema would refuse the run when read back)."""
    output = ("KTAP version 1\n1..2\nok 1 a\x1b[31mred\x00\n"
              f"ok 2 {'x' * 5000}\n")
    found = kselftest_kvm._subresults("kselftest-kvm/t", "t", output)
    assert [f[0] for f in found] == ["kselftest-kvm/t/a_[31mred_",
                                     "kselftest-kvm/t/" + "x" * kselftest_kvm.SUB_ID_MAX]


def test_a_listed_flaky_pass_against_a_pass_is_no_behaviour_difference() -> None:
    outcome = {"kind": "kselftest", "result": "pass"}
    clean = Case("kselftest-kvm/arch_timer", "kselftest-kvm", PASS, kernel="a",
                 outcome=outcome)
    flaky = Case("kselftest-kvm/arch_timer", "kselftest-kvm", KNOWN_DEVIATION, kernel="b",
                 outcome=outcome, details={"flaky": True})
    listed_fail = Case("kselftest-kvm/arch_timer", "kselftest-kvm", KNOWN_DEVIATION,
                       kernel="b", outcome=outcome, details={"flaky": False})
    assert compare.behaviour([clean, flaky], "a") == []
    assert [d.kernel for d in compare.behaviour([clean, listed_fail], "a")] == ["b"]


def test_a_program_that_does_not_build_is_named_with_its_first_error(tmp_path: Path) -> None:
    (tmp_path / "arch_timer").write_bytes(b"\x7fELF...")
    log = ("riscv64-linux-gnu-gcc ... -c memslot_perf_test.c\n"
           "memslot_perf_test.c:112:1: error: static assertion failed: \"atomic bool is not"
           " lockless\"\nmake: *** [Makefile:300: memslot_perf_test.o] Error 1\n")
    built, failed = kselftest._built_programs(["arch_timer", "memslot_perf_test"], tmp_path, log)
    assert built == ["arch_timer"]
    assert failed == {"memslot_perf_test": "memslot_perf_test.c:112:1: error: static assertion"
                                           " failed: \"atomic bool is not lockless\""}


def test_a_program_that_refuses_the_rigs_options_is_an_error_not_a_skip(tmp_path):
    from orchestrator.suites.kselftest_kvm.build import BuiltSelftests

    class RefusingHost(ScriptedHost):
        def run(self, command: str, timeout: float | None = None):
            from orchestrator.targets import CommandResult

            if command == "uname -r":
                return super().run(command, timeout)
            # what 7.3's sbi_pmu_test prints for 6.12's -d, then exit(KSFT_SKIP)
            return CommandResult(command, 4, "./riscv/sbi_pmu_test: invalid option -- 'd'\n"
                                             "Usage: ./riscv/sbi_pmu_test [-h]\n", 0.3)

    suite = KselftestKvm(KselftestConfig())
    suite._built = BuiltSelftests("k", tmp_path, ("riscv/sbi_pmu_test",), 1.0, True)
    (case,) = suite.run(RefusingHost(tmp_path, {}), ["kselftest-kvm/riscv/sbi_pmu_test/basic"])
    assert case.verdict == "error"
    assert case.reason == ("riscv/sbi_pmu_test cannot run with the rig's options:"
                           " ./riscv/sbi_pmu_test: invalid option -- 'd'")


def test_options_the_host_cannot_resolve_are_an_error_without_reruns(tmp_path):
    from orchestrator.suites.kselftest_kvm.build import BuiltSelftests
    from orchestrator.targets import CommandResult

    class UnresolvingHost(ScriptedHost):
        def run(self, command: str, timeout: float | None = None):
            if command == "uname -r":
                return super().run(command, timeout)
            self.commands.append(command)
            return CommandResult(command, 125, "rig-cannot-run: dirty_log_test -h lists no"
                                               " supported guest mode\n", 0.2)

    suite = KselftestKvm(KselftestConfig(reruns=2))
    suite._built = BuiltSelftests("k", tmp_path, ("dirty_log_test",), 1.0, True)
    host = UnresolvingHost(tmp_path, {})
    (case,) = suite.run(host, ["kselftest-kvm/dirty_log_test"])
    assert case.verdict == "error" and "lists no supported guest mode" in case.reason
    assert len([c for c in host.commands if "kselftest-run" in c]) == 1
