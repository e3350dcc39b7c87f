"""A kernel from a user's own git tree (README: "Your own kernel tree")."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.disasm import CSR_HSTATUS, CSR_SCOUNTEREN, function_csrs

from .conftest import REPO, SCOUNTEREN_BACKPORT, orchestrator, rig_variant

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
