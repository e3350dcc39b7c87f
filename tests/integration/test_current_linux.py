"""Current Linux beside 6.12: the shipped 7.3 example (docs/examples/linux-7.3.yaml)
runs every suite on Debian's linux-source-7.3, as shipped and with b922307a
reverted, and `orchestrator compare` explains what differs from 6.12.

Cold, the 7.3 package is downloaded (167 MB) and its tree built once; later runs
take the kernels, guest kernel and selftests from the cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator.disasm import CSR_SCOUNTEREN, function_csrs
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION

from .conftest import REPO, load_run, orchestrator, rig_variant

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "docs" / "examples" / "linux-7.3.yaml"


def example_with_results_in(tmp_path: Path) -> Path:
    """The shipped example, its paths made absolute, writing under tmp_path/results."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for kernel in doc["kernels"]:
        for key in ("patches", "config"):
            kernel[key] = [str((EXAMPLE.parent / p).resolve()) for p in kernel.get(key, [])]
    doc["results_dir"] = str(tmp_path / "results")
    path = tmp_path / "linux-7.3.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def only_run(results: Path) -> Path:
    (run_dir,) = (p for p in results.iterdir() if p.is_dir() and p.name[0].isdigit())
    return run_dir


@pytest.fixture(scope="module")
def run_7_3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("linux-7.3")
    result = orchestrator("run", config=example_with_results_in(tmp_path), timeout=5400)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return only_run(tmp_path / "results")


def test_every_suite_runs_on_both_7_3_kernels_with_every_failure_explained(
        run_7_3: Path) -> None:
    cases = load_run(run_7_3)
    kernels = {c["kernel"] for c in cases}
    assert kernels == {"b922307a-reverted", "linux-7.3"}
    for kernel in kernels:
        suites = {c["suite"] for c in cases if c["kernel"] == kernel}
        assert {"kvm-host", "counters", "isolation", "latency", "linux-guest",
                "kselftest-kvm", "timer"} <= suites
    unexplained = [f"{c['kernel']} {c['id']}: {c['verdict']}: {c['reason']}" for c in cases
                   if c["verdict"] in (ERROR, FAIL)]
    assert unexplained == []
    # a known failure carries the deviation or expectation that explains it
    assert all(c["rule"] for c in cases if c["verdict"] == KNOWN_DEVIATION)


def test_the_run_records_the_kernel_and_package_versions(run_7_3: Path) -> None:
    manifest = json.loads((run_7_3 / "manifest.json").read_text())
    for name in ("b922307a-reverted", "linux-7.3"):
        built = manifest["kernels"][name]
        assert built["release"].startswith("7.3.")
        assert built["source"].startswith("linux-source-7.3=7.3.")
    report = (run_7_3 / "report.md").read_text()
    assert manifest["kernels"]["linux-7.3"]["release"] in report


def test_the_revert_puts_scounteren_back_into_the_world_switch(run_7_3: Path) -> None:
    manifest = json.loads((run_7_3 / "manifest.json").read_text())
    switch = {name: function_csrs(Path(manifest["kernels"][name]["vmlinux"]),
                                  "__kvm_riscv_switch_to")
              for name in ("b922307a-reverted", "linux-7.3")}
    assert CSR_SCOUNTEREN in switch["b922307a-reverted"]
    assert CSR_SCOUNTEREN not in switch["linux-7.3"]


def test_compare_with_6_12_lists_and_explains_what_differs(run_7_3: Path,
                                                           tmp_path: Path) -> None:
    config = rig_variant(tmp_path, lambda doc: None)
    baseline = orchestrator("run", "--only", "latency/*", config=config)
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    run_6_12 = only_run(tmp_path / "results")
    # the 7.3 run lives elsewhere: compare takes run directories
    compared = orchestrator("compare", str(run_6_12), str(run_7_3), config=config)
    assert compared.returncode == 0, compared.stderr[-3000:]
    out = tmp_path / "results" / f"compare-{run_6_12.name}-vs-{run_7_3.name}"
    comparisons = json.loads((out / "compare.json").read_text())
    # kernels paired in order: parent with reverted, b922307a with 7.3 as shipped
    assert [c["b"].split(":")[1] for c in comparisons] == ["b922307a-reverted", "linux-7.3"]
    for comp in comparisons:
        assert comp["a_release"].startswith("6.12.") and comp["b_release"].startswith("7.3.")
        kinds = {c["id"]: c["kind"] for c in comp["changes"]}
        # only latency ran on 6.12: every other 7.3 case is new, and each figure moved
        assert kinds["latency/sbi-in-kernel"] == "figure"
        assert kinds["kvm-host/dev-kvm"] == "new"
    report = (out / "report.md").read_text()
    assert "Case by case" in report and comparisons[0]["b_release"] in report
