"""Shared fixtures for tests that build kernels and boot them under QEMU.

They use the default rig.yaml and the user's cache directory, so a warm
cache makes them fast; a cold one builds both kernels first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def orchestrator(*args: str, config: Path | None = None,
                 timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, from the repository."""
    cmd = [sys.executable, "-m", "orchestrator", "-c", str(config or REPO / "rig.yaml"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def rig_variant(tmp_path: Path, edit) -> Path:
    """A copy of rig.yaml edited by edit(doc), with results under tmp_path."""
    doc = yaml.safe_load((REPO / "rig.yaml").read_text())
    for kernel in doc["kernels"]:
        kernel["patches"] = [str(REPO / p) for p in kernel.get("patches", [])]
        kernel["config"] = [str(REPO / p) for p in kernel.get("config", [])]
    doc["results_dir"] = str(tmp_path / "results")
    edit(doc)
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


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


@pytest.fixture(scope="session")
def built_kernels() -> dict[str, dict]:
    """Both kernels of the default rig.yaml, built (or found in the cache)."""
    result = orchestrator("build", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return {k["name"]: k for k in json.loads(result.stdout)}
