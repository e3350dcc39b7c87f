"""World-switch latency: exact under icount, and honest in wall-clock mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, load_run, orchestrator, rig_variant

pytestmark = pytest.mark.integration
TESTS = ("emulated-csr", "sbi-in-kernel", "user-exit")
NOPS = 25  # tests/patches/0201-test-25-nops-in-world-switch.patch


def latency_only(doc: dict) -> None:
    for suite in ("counters", "isolation", "timer"):
        doc["suites"][suite] = {"enabled": False}


@pytest.fixture(scope="module")
def icount_run(built_kernels: dict, tmp_path_factory: pytest.TempPathFactory):
    """b922307a first (the baseline), then b922307a + 25 nops, then the parent."""
    tmp_path = tmp_path_factory.mktemp("icount")

    def kernels(doc: dict) -> None:
        latency_only(doc)
        parent, commit = doc["kernels"]
        nops = {**commit, "name": "nops-25", "patches": [
            *commit["patches"],
            str(REPO / "tests" / "patches" / "0201-test-25-nops-in-world-switch.patch")]}
        doc["kernels"] = [commit, nops, parent]

    result = orchestrator("run", config=rig_variant(tmp_path, kernels))
    (run_dir,) = (p for p in (tmp_path / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    return result, run_dir


def test_icount_figures_are_identical_across_both_boots(icount_run) -> None:
    result, run_dir = icount_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cases = load_run(run_dir)
    latency = [c for c in cases if c["suite"] == "latency"]
    assert len(latency) == 3 * len(TESTS)
    for case in latency:
        measurement = case["measurement"]
        picks = [min(windows) for windows in measurement["samples"]]
        assert len(picks) == 2 and len(set(picks)) == 1, (case["kernel"], case["id"], picks)
        assert measurement["value"] == picks[0] > 0
        assert (measurement["unit"], measurement["method"]) == ("instructions", "exact")
        assert "emulated" in case["details"]["observed"]


def test_added_nops_measure_as_exactly_that_many_instructions_slower(icount_run) -> None:
    _, run_dir = icount_run
    comparisons = json.loads((run_dir / "compare.json").read_text())
    (nops,) = [c for c in comparisons if c["b"] == "nops-25"]
    assert nops["a"] == "b922307a"
    assert set(nops["measurements"]) == {f"latency/{t}" for t in TESTS}
    for test, figures in nops["measurements"].items():
        assert figures["difference"] == NOPS, (test, figures)
        assert figures["verdict"] == "slower"
    report = (run_dir / "report.md").read_text()
    assert f"| +{NOPS}.0 instructions |" in report and "**slower**" in report


def test_report_states_the_exact_difference_of_b922307a_and_its_parent(icount_run) -> None:
    _, run_dir = icount_run
    comparisons = json.loads((run_dir / "compare.json").read_text())
    (parent,) = [c for c in comparisons if c["b"] == "b922307a-parent"]
    report = (run_dir / "report.md").read_text()
    assert "## b922307a-parent against b922307a" in report
    assert "emulated (QEMU TCG, -icount shift=0: instructions, exact)" in report
    for test, figures in parent["measurements"].items():
        difference = figures["difference"]
        assert difference == round(difference)  # whole instructions, no noise
        expected = "same" if difference == 0 else ("slower" if difference > 0 else "faster")
        assert figures["verdict"] == expected
        assert f"| {test} | {figures['a']['median']:.1f} instructions |" in report
    assert (run_dir / "measurements.png").stat().st_size > 10_000


def test_wallclock_runs_of_one_kernel_compare_as_same_or_inconclusive(
        built_kernels: dict, tmp_path: Path) -> None:
    def wallclock(doc: dict) -> None:
        latency_only(doc)
        doc["suites"]["latency"] = {"mode": "wallclock", "boots": 5, "windows": 30}

    config = rig_variant(tmp_path, wallclock)
    for _ in range(2):
        result = orchestrator("run", "--kernel", "b922307a", config=config)
        assert result.returncode == 0, result.stderr[-3000:]
    run_a, run_b = sorted(p.name for p in (tmp_path / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    compared = orchestrator("compare", run_a, run_b, config=config)
    assert compared.returncode == 0, compared.stderr
    comparison = json.loads(
        (tmp_path / "results" / f"compare-{run_a}-vs-{run_b}" / "compare.json").read_text())
    verdicts = {test: c["verdict"] for test, c in comparison[0]["measurements"].items()}
    assert set(verdicts) == {f"latency/{t}" for t in TESTS}
    assert set(verdicts.values()) <= {"same", "inconclusive"}, comparison
    for c in comparison[0]["measurements"].values():
        assert c["method"] == "distribution" and c["unit"] == "ns"
        assert c["a"]["boots"] == 5 and c["a"]["windows"] == 5 * 30
        assert c["ci_low"] < c["ci_high"] and 0 <= c["p_value"] <= 1
    assert "latency/sbi-in-kernel: " in compared.stdout


def test_compare_rejects_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    result = orchestrator("compare", str(tmp_path), str(tmp_path),
                          config=rig_variant(tmp_path, lambda doc: None))
    assert result.returncode == 2
    assert "no run there" in result.stderr


def test_bench_script_reports_figures(built_kernels: dict, tmp_path: Path) -> None:
    config = rig_variant(tmp_path, latency_only)
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "-c",
                             str(config), "--kernel", "b922307a", "--repeat", "2"], cwd=REPO,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("warm 1: ")
    figures = json.loads(Path(result.stdout.split("figures: ")[1].strip()).read_text())
    assert len(figures["warm"]) == 2 and not figures["cold"]
    kernel = figures["warm"][0]["kernels"]["b922307a"]
    assert kernel["cached"] is True and kernel["build_seconds"] > 0
    assert len(kernel["boot_seconds"]) == 1 + 2  # kvm-host's boot and 2 latency boots
    assert set(kernel["suite_seconds"]) == {"kvm-host", "latency"}
    assert figures["warm"][0]["boots"] == 3
    summary = figures["warm_summary"]
    walls = sorted(run["wall_seconds"] for run in figures["warm"])
    assert (summary["wall_seconds"]["min"], summary["wall_seconds"]["max"]) == tuple(walls)
    assert summary["peak_rss_mib"]["qemu"]["min"] > 0
    assert "b922307a/latency" in summary["suite_seconds"]
