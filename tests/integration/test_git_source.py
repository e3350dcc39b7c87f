"""A kernel from a user's own git tree (README: "Your own kernel tree")."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from orchestrator.disasm import CSR_HSTATUS, CSR_SCOUNTEREN, function_csrs

from .conftest import REPO, SCOUNTEREN_BACKPORT, orchestrator, rig_variant, run_cases

pytestmark = pytest.mark.integration


def test_kernel_from_a_git_tree_builds_boots_and_leaves_the_tree_alone(
        user_git_tree: tuple[Path, str], tmp_path: Path) -> None:
    tree, head = user_git_tree

    def use_tree(doc: dict) -> None:
        doc["sources"]["user-tree"] = {"git": str(tree), "ref": "HEAD"}
        doc["kernels"] = [{
            "name": "user-b922307a", "source": "user-tree",
            "patches": [str(SCOUNTEREN_BACKPORT)],
            "config": [str(REPO / "images" / "config" / "kvm-host.config")],
        }]

    config = rig_variant(tmp_path, use_tree)
    result = orchestrator("build", "--json", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = json.loads(result.stdout)
    assert built["source"] == f"git:{head}"
    switch = function_csrs(Path(built["vmlinux"]), "__kvm_riscv_switch_to")
    assert CSR_SCOUNTEREN not in switch and CSR_HSTATUS not in switch

    booted = orchestrator("boot", "user-b922307a", "--", "test", "-c", "/dev/kvm", config=config)
    assert booted.returncode == 0, booted.stderr[-3000:]

    status = subprocess.run(["git", "-C", str(tree), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout
    assert status == ""
    assert subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip() == head


def test_unknown_ref_in_a_git_tree_is_bad_input(user_git_tree: tuple[Path, str],
                                                tmp_path: Path) -> None:
    tree, _ = user_git_tree

    def bad_ref(doc: dict) -> None:
        doc["sources"]["user-tree"] = {"git": str(tree), "ref": "no-such-branch"}
        doc["kernels"][0]["source"] = "user-tree"

    result = orchestrator("build", "b922307a-parent", config=rig_variant(tmp_path, bad_ref))
    assert result.returncode == 2
    assert "sources.user-tree.ref: 'no-such-branch' is not a commit" in result.stderr


def test_a_source_of_another_patch_release_builds_boots_and_passes(
        user_git_tree: tuple[Path, str], tmp_path: Path) -> None:
    """Nothing in the rig or its tests may hold a kernel's version as a literal: the
    same tree with its SUBLEVEL moved on (as a Debian update moves it) builds, reports
    that release at boot and in the run's manifest, and its suites pass."""
    base, _ = user_git_tree
    tree = tmp_path / "linux"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(base), str(tree)], check=True)
    makefile = tree / "Makefile"
    text = makefile.read_text()
    version, patchlevel, sublevel = (
        re.search(rf"^{field} = (\d+)$", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
        for field in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))
    moved = str(int(sublevel) + 100)
    makefile.write_text(re.sub(r"^SUBLEVEL = \d+$", f"SUBLEVEL = {moved}", text, count=1,
                               flags=re.MULTILINE))
    subprocess.run(["git", "-C", str(tree), "-c", "user.name=Rig Test",
                    "-c", "user.email=test@localhost", "commit", "--quiet", "--all",
                    "-m", f"SUBLEVEL {moved}"], check=True)

    def use_tree(doc: dict) -> None:
        doc["sources"]["moved-sublevel"] = {"git": str(tree), "ref": "HEAD"}
        doc["kernels"] = [{
            "name": "moved", "source": "moved-sublevel",
            "patches": [str(SCOUNTEREN_BACKPORT)],
            "config": [str(REPO / "images" / "config" / "kvm-host.config")],
        }]
        for suite in ("isolation", "latency"):
            doc["suites"][suite] = {**doc["suites"][suite], "enabled": False}

    config = rig_variant(tmp_path, use_tree)
    built = orchestrator("build", "--json", config=config)
    assert built.returncode == 0, built.stderr[-3000:]
    (kernel,) = json.loads(built.stdout)
    release = kernel["release"]
    assert release.startswith(f"{version}.{patchlevel}.{moved}"), release

    booted = orchestrator("boot", "moved", "--", "uname", "-r", config=config)
    assert booted.returncode == 0, booted.stderr[-3000:]
    assert booted.stdout.splitlines()[-1] == release

    ran = orchestrator("run", config=config)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    (run_dir,) = (p for p in (tmp_path / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kernels"]["moved"]["release"] == release
    cases = run_cases(tmp_path)
    assert {c["suite"] for c in cases} == {"kvm-host", "counters"}
    assert all(c["verdict"] in ("pass", "known-deviation") for c in cases)
