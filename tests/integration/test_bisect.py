"""orchestrator bisect on a history made by `orchestrator history`:

  c0 linux-source-6.12   c1 b6114a7e backport   c2 b922307a backport (good)
  c3-c5 notes   c6 breaks the build   c7 fixes it   c8 leaks the guest's
  SCOUNTEREN into the host   c9 note   c10 25 nops per world switch   c11 note (bad)

git bisect's midpoint over c3..c11 is c6, so both bisects must skip it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, orchestrator, rig_variant

pytestmark = pytest.mark.integration
PATCHES = REPO / "tests" / "patches"
BROKEN = ("--- a/arch/riscv/kvm/vcpu.c\n+++ b/arch/riscv/kvm/vcpu.c\n@@ -8,2 +8,3 @@\n \n"
          "+#error bisect test: this commit does not build\n #include <linux/bitops.h>\n")
FIXED = ("--- a/arch/riscv/kvm/vcpu.c\n+++ b/arch/riscv/kvm/vcpu.c\n@@ -8,3 +8,2 @@\n \n"
         "-#error bisect test: this commit does not build\n #include <linux/bitops.h>\n")


def note(n: int) -> str:
    return (f"Subject: [PATCH] docs: bisect test note {n}\n---\n--- /dev/null\n"
            f"+++ b/Documentation/rig-note-{n}.txt\n@@ -0,0 +1 @@\n+note {n}\n")


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def history(built_kernels: dict, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("history")
    texts = [note(1), note(2), note(3),
             "Subject: [PATCH] KVM: break the build\n---\n" + BROKEN,
             "Subject: [PATCH] KVM: fix the build\n---\n" + FIXED,
             (PATCHES / "0101-bug-leak-guest-scounteren-to-host.patch").read_text(),
             note(4),
             (PATCHES / "0201-test-25-nops-in-world-switch.patch").read_text(),
             note(5)]
    patches = []
    for index, text in enumerate(texts, start=3):
        patch = tmp / f"c{index}.patch"
        patch.write_text(text)
        patches.append(str(patch))
    tree = tmp / "linux"
    made = orchestrator("history", str(tree), *patches, config=rig_variant(tmp, lambda d: None))
    assert made.returncode == 0, made.stderr[-2000:]
    commits = [line.split()[0] for line in made.stdout.splitlines()]
    assert len(commits) == 12
    assert git(tree, "rev-list", "--count", "HEAD") == "12"
    return tree, commits


def fast_checks(doc: dict) -> None:
    doc["suites"]["isolation"] = {"perf_user_access": [1], "exits": 300, "migrate": False}
    doc["suites"]["latency"] = {"boots": 1, "windows": 50}


def bisect(tmp_path: Path, tree: Path, check: str, good: str, bad: str):
    """Run the CLI; return its result, result.json (on success) and the bisect's directory."""
    result = orchestrator("bisect", "--tree", str(tree), "--good", good, "--bad", bad,
                          "--check", check, config=rig_variant(tmp_path, fast_checks))
    out = next((tmp_path / "results").glob("bisect-*"), None)
    found = json.loads((out / "result.json").read_text()) if result.returncode == 0 else None
    return result, found, out


def assert_tree_left_as_found(tree: Path, head: str) -> None:
    assert git(tree, "rev-parse", "HEAD") == head
    assert git(tree, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(tree, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (tree / ".git" / "BISECT_START").exists()


def test_history_helper_makes_the_commits_in_order(history) -> None:
    tree, commits = history
    subjects = git(tree, "log", "--reverse", "--format=%s").splitlines()
    assert subjects[0].startswith("linux-source-6.12=")
    assert "b6114a7e" in subjects[1] and "b922307a" in subjects[2]
    assert "leak" in subjects[8].lower() and "nops" in subjects[10]


def test_isolation_bisect_names_the_leaking_commit(history, tmp_path: Path) -> None:
    tree, commits = history
    result, found, out = bisect(tmp_path, tree, "isolation", commits[2], commits[11])
    assert result.returncode == 0, result.stderr[-3000:]
    assert found["first_bad"] == commits[8], found["subjects"]
    assert found["steps"][commits[6]]["verdict"] == "skip"
    assert "untestable" in found["steps"][commits[6]]["evidence"]
    assert "host-policy" in found["steps"][commits[8]]["evidence"]
    assert f"first bad commit: {commits[8]}" in result.stdout
    assert f"skipped {commits[6][:12]}" in result.stdout
    assert list(out.glob("step-*/*/results.json"))  # each step kept like a run
    assert_tree_left_as_found(tree, commits[11])


def test_latency_bisect_names_the_commit_that_added_instructions(history,
                                                                 tmp_path: Path) -> None:
    tree, commits = history
    result, found, _ = bisect(tmp_path, tree, "latency:sbi-in-kernel>+20", commits[2],
                              commits[11])
    assert result.returncode == 0, result.stderr[-3000:]
    assert found["first_bad"] == commits[10], found["subjects"]
    steps = found["steps"]
    # exactly the 25 nops over its parent; c8 (the leak: one csrr instead of ld + csrrw)
    # already cost one instruction less than the good commit
    assert steps[commits[10]]["figure"] - steps[commits[9]]["figure"] == 25.0
    assert steps[commits[9]]["figure"] - steps[commits[2]]["figure"] == -1.0
    assert "(+24.0, limit +20)" in steps[commits[10]]["evidence"]
    assert found["steps"][commits[6]]["verdict"] == "skip"
    assert_tree_left_as_found(tree, commits[11])


def test_bisect_refuses_a_good_commit_that_is_bad(history, tmp_path: Path) -> None:
    tree, commits = history
    result, _, _ = bisect(tmp_path, tree, "isolation", commits[9], commits[11])
    assert result.returncode == 2
    assert f"--good {commits[9][:12]} is bad, not good" in result.stderr
    assert_tree_left_as_found(tree, commits[11])


def test_bad_predicate_is_bad_input(history, tmp_path: Path) -> None:
    tree, commits = history
    result, _, _ = bisect(tmp_path, tree, "latency:warp-drive>+3", commits[2], commits[11])
    assert result.returncode == 2
    assert "no latency test 'warp-drive'" in result.stderr


def test_ctrl_c_resets_the_tree_and_resume_carries_on(history, tmp_path: Path) -> None:
    tree, commits = history
    config = rig_variant(tmp_path, fast_checks)
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "-c", str(config), "bisect", "--tree",
         str(tree), "--good", commits[2], "--bad", commits[11], "--check", "isolation"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "step 2:" in line:  # the first step judged, the second under way
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        proc.kill()
        proc.wait()
    assert_tree_left_as_found(tree, commits[11])
    (out,) = (tmp_path / "results").glob("bisect-*")
    assert "git bisect start" in (out / "bisect.log").read_text()

    resumed = orchestrator("bisect", "--resume", out.name, config=config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    found = json.loads((out / "result.json").read_text())
    assert found["first_bad"] == commits[8]
    assert_tree_left_as_found(tree, commits[11])
