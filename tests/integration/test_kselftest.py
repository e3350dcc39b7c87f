"""kselftest-kvm end to end: the tree's KVM selftests built, booted and judged.

Real builds and boots: both kernels run every program; a host kernel patch
that breaks the guest's SBI PMU (tests/patches/0301-...) is caught by the
sbi_pmu_test case it breaks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import ktap
from orchestrator.suites.kselftest_kvm import KselftestConfig, KselftestKvm
from tests.integration.conftest import REPO, load_run, orchestrator, rig_variant

pytestmark = pytest.mark.integration

PMU_BUG = REPO / "tests" / "patches" / "0301-bug-sbi-pmu-start-leaves-counter-disabled.patch"


def _run_dir(stderr: str) -> Path:
    line = [line for line in stderr.splitlines() if line.startswith("results: ")][-1]
    return Path(line.split()[1])


def test_both_kernels_run_every_program(readme_run) -> None:
    """In the default job, as `scripts/rig run` runs it."""
    _, run = readme_run
    cases = load_run(run)
    planned = KselftestKvm(KselftestConfig()).plan()
    for kernel in ("b922307a-parent", "b922307a"):
        verdicts = {c["id"]: c for c in cases if c["kernel"] == kernel}
        missing = [i for i in planned if i not in verdicts]
        assert not missing, f"{kernel}: no verdict for {missing}"
        errors = {i: verdicts[i]["reason"] for i in planned if verdicts[i]["verdict"] == "error"}
        assert not errors, f"{kernel}: {errors}"
        for case_id in planned:
            log = run / verdicts[case_id]["log"]
            assert log.is_file() and log.parent.name == "kselftest-kvm", log
            assert "# exit status" in log.read_text()
        # AIA host: KVM offers Sscofpmf, so the overflow test runs instead of skipping
        assert verdicts["kselftest-kvm/riscv/sbi_pmu_test/overflow"]["verdict"] == "pass"
    document = ktap.parse((run / "results.ktap").read_text())
    assert sum(len(r.subtests.results) for r in document.results) == len(cases)


def test_sbi_pmu_bug_is_caught_by_name(tmp_path: Path) -> None:
    def add_buggy_kernel(doc: dict) -> None:
        good = next(k for k in doc["kernels"] if k["name"] == "b922307a")
        doc["kernels"].append({**good, "name": "pmu-bug",
                               "patches": [*good["patches"], str(PMU_BUG)]})

    rig = rig_variant(tmp_path, add_buggy_kernel)
    result = orchestrator("run", "--kernel", "b922307a", "--kernel", "pmu-bug",
                          "--only", "kselftest-kvm/riscv/sbi_pmu_test/*", config=rig,
                          timeout=3 * 3600)
    assert result.returncode == 1, result.stderr[-3000:]
    cases = {(c["kernel"], c["id"]): c for c in load_run(_run_dir(result.stdout + result.stderr))}
    events = "kselftest-kvm/riscv/sbi_pmu_test/events"
    assert cases[("b922307a", events)]["verdict"] == "pass"
    broken = cases[("pmu-bug", events)]
    assert broken["verdict"] == "fail"
    assert "sbi_pmu_test.c" in broken["reason"], broken["reason"]
    # retried before being called a failure, and never flaky: it fails every time
    assert [a["result"] for a in broken["details"]["attempts"]] == ["fail"] * 3
    assert cases[("pmu-bug", f"differs/{events}")]["verdict"] == "fail"
