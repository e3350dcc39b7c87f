"""The host console as a person uses it: an interactive shell, and Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, interactive, qemu_processes_mentioning, rig_variant

pytestmark = pytest.mark.integration


def test_shell_gives_an_interactive_host_console(built_kernels: dict, tmp_path: Path) -> None:
    config = rig_variant(tmp_path, lambda doc: None)
    with interactive(config, "shell", "b922307a", timeout=120) as child:
        child.expect("Ctrl-] to leave")
        # busybox ash may follow its prompt with a cursor-position query (ESC[6n) in the
        # same read: the prompt need not end the buffer
        child.expect(r"~ # ")
        child.sendline("echo $((6 * 7)) $(cat /proc/sys/kernel/osrelease)")
        child.expect(f"42 {re.escape(built_kernels['b922307a']['release'])}")
    (log,) = (tmp_path / "results" / "boots").glob("b922307a-*.console.log")
    assert "RIG-READY" in log.read_text(errors="replace")


def test_ctrl_c_stops_qemu_and_keeps_the_console_log(built_kernels: dict, tmp_path: Path) -> None:
    config = rig_variant(tmp_path, lambda doc: None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "-c", str(config), "boot", "b922307a", "--",
         "sleep", "600"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "ready in" in line:
                break
        assert qemu_processes_mentioning(str(tmp_path)), "QEMU should be running now"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert "interrupted" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert qemu_processes_mentioning(str(tmp_path)) == []
    (log,) = (tmp_path / "results" / "boots").glob("b922307a-*.console.log")
    assert "RIG-READY" in log.read_text(errors="replace")
