"""Shared fixtures for tests that build kernels and boot them under QEMU.

They use the default rig.yaml and the user's cache directory, so a warm
cache makes them fast; a cold one builds both kernels first.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pexpect
import pytest
import yaml

from orchestrator import compare, config, results
from orchestrator.verdicts import Case

REPO = Path(__file__).resolve().parents[2]
PATCHES = REPO / "images" / "patches"
HSTATUS_BACKPORT = PATCHES / "0001-RISC-V-KVM-swap-HSTATUS-in-C-backport-b6114a7e.patch"
SCOUNTEREN_BACKPORT = PATCHES / "0002-RISC-V-KVM-swap-SCOUNTEREN-in-C-backport-b922307a.patch"


def orchestrator(*args: str, config: Path | None = None,
                 timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, from the repository."""
    cmd = [sys.executable, "-m", "orchestrator", "-c", str(config or REPO / "rig.yaml"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def interactive(config: Path, *args: str, timeout: float) -> Iterator[pexpect.spawn]:
    """The CLI on a terminal of its own, as a person runs `shell` (text, 40x200). After
    the body's dialogue, Ctrl-] leaves: the CLI must exit 0 and leave no QEMU running
    (config is rig_variant's, so its directory names this test's QEMUs)."""
    child = pexpect.spawn(sys.executable, ["-m", "orchestrator", "-c", str(config), *args],
                          cwd=str(REPO), timeout=timeout, encoding="utf-8",
                          dimensions=(40, 200))
    try:
        yield child
        child.sendcontrol("]")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert qemu_processes_mentioning(str(config.parent)) == []


def rig_variant(tmp_path: Path, edit, selftests: bool = False,
                linux_guest: bool = False) -> Path:
    """A copy of rig.yaml edited by edit(doc), with results under tmp_path.

    The kselftest-kvm and linux-guest suites (a minute or more per kernel) are
    switched off unless selftests / linux_guest is true; `--only SUITE/...` still
    runs their cases."""
    doc = yaml.safe_load((REPO / "rig.yaml").read_text())
    for kernel in doc["kernels"]:
        kernel["patches"] = [str(REPO / p) for p in kernel.get("patches", [])]
        kernel["config"] = [str(REPO / p) for p in kernel.get("config", [])]
    doc["results_dir"] = str(tmp_path / "results")
    for suite, wanted in (("kselftest-kvm", selftests), ("linux-guest", linux_guest)):
        if not wanted:
            doc["suites"][suite] = {**doc["suites"][suite], "enabled": False}
    edit(doc)
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def load_run(run_dir: Path) -> list[dict]:
    """A run's cases from results.json, validated against the shipped schema v1."""
    data = json.loads((run_dir / "results.json").read_text())
    jsonschema.validate(data, json.loads(results.SCHEMA_PATH.read_text()))
    return data["cases"]


def run_dir_of(stdout: str) -> Path:
    """The run directory a CLI command printed ('results: DIR (exit N)')."""
    line = next(x for x in stdout.splitlines() if x.startswith("results: "))
    return Path(line.split()[1])


def assert_same_verdicts(direct: dict[tuple[str, str], dict],
                         other: dict[tuple[str, str], dict]) -> None:
    """Cases by (kernel, id): the same cases, each with the same outcome and a verdict
    its suite does not call different (a chance event such as isolation's hung first
    run, passed on the rerun, is no difference: Suite.verdicts_differ), and the same
    figure where the direct run's is exact (icount)."""
    assert other.keys() == direct.keys()
    for key, case in direct.items():
        theirs = other[key]
        assert theirs["outcome"] == case["outcome"], key
        assert not compare.verdicts_differ(Case.from_json(case), Case.from_json(theirs)), \
            (key, case["verdict"], theirs["verdict"])
        if case.get("measurement") and case["measurement"]["method"] == "exact":
            assert theirs["measurement"]["value"] == case["measurement"]["value"], key


def run_cases(tmp_path: Path) -> list[dict]:
    """The cases of the one run under tmp_path/results."""
    (run_dir,) = (p for p in (tmp_path / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    return load_run(run_dir)


def qemu_processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes whose command line contains text."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "qemu-system" in cmdline and text in cmdline:
            found.append(int(entry.name))
    return found


# name -> "release (source)" of each default kernel this session tested, for its summary
TESTED_KERNELS: dict[str, str] = {}


@pytest.fixture(scope="session")
def built_kernels() -> dict[str, dict]:
    """Both kernels of the default rig.yaml, built (or found in the cache)."""
    result = orchestrator("build", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    kernels = {k["name"]: k for k in json.loads(result.stdout)}
    TESTED_KERNELS.update({name: f"{k['release']} ({k['source']})"
                           for name, k in kernels.items()})
    return kernels


def pytest_terminal_summary(terminalreporter) -> None:
    """Say which kernel versions the integration tests ran against: the source
    package moves under the cache (a Debian update), the tests do not pin it."""
    for name, version in sorted(TESTED_KERNELS.items()):
        terminalreporter.write_line(f"tested kernel {name}: {version}")


@pytest.fixture(scope="session")
def user_git_tree(built_kernels: dict[str, dict],
                  tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A user's kernel clone: Debian's 6.12 with the b6114a7e backport committed on top.

    Cloned from the rig's own git tree of linux-source-6.12 (see the README's
    cache layout); fixed dates make the commit id, and so the kernel key, stable.
    """
    pristine = config.load(REPO / "rig.yaml").cache_dir / "trees" / "debian-6.12" / "src"
    tree = tmp_path_factory.mktemp("user") / "linux"
    env = dict(os.environ, GIT_AUTHOR_NAME="Rig Test", GIT_AUTHOR_EMAIL="test@localhost",
               GIT_COMMITTER_NAME="Rig Test", GIT_COMMITTER_EMAIL="test@localhost",
               GIT_AUTHOR_DATE="2024-11-01T00:00:00Z", GIT_COMMITTER_DATE="2024-11-01T00:00:00Z")
    for args in (["clone", "--quiet", "--shared", str(pristine), str(tree)],
                 ["-C", str(tree), "apply", str(HSTATUS_BACKPORT)],
                 ["-C", str(tree), "commit", "--quiet", "--all", "-m", "b6114a7e backport"]):
        subprocess.run(["git", *args], check=True, env=env)
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    return tree, head


@pytest.fixture(scope="session")
def readme_run(built_kernels: dict[str, dict], tmp_path_factory: pytest.TempPathFactory):
    """The README's main command, `scripts/rig run`, on the default rig (results in a
    temporary directory), once per session: (its CompletedProcess, its run directory)."""
    tmp_path = tmp_path_factory.mktemp("readme-run")
    config = rig_variant(tmp_path, lambda doc: None, selftests=True, linux_guest=True)
    result = subprocess.run([str(REPO / "scripts" / "rig"), "run"], cwd=REPO,
                            env=dict(os.environ, RIG_CONFIG=str(config)),
                            capture_output=True, text=True, timeout=3 * 3600)
    (run_dir,) = (p for p in (tmp_path / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    return result, run_dir
