"""The plug-in shape: a suite written in one file outside the rig is listed,
configured, run, reported and compared without any rig module changing; a target
kind written in one file runs a host-shell suite; and an installed rig (pip install
., not editable) runs its embedded default from an empty directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import guest

from .conftest import REPO, load_run, qemu_processes_mentioning, rig_variant, run_cases

pytestmark = pytest.mark.integration

TOY = '''
"""toy: a suite kept outside the rig, in one file."""
import dataclasses

from orchestrator.results import FAIL, PASS, Measurement
from orchestrator.suites import Suite, SuiteConfig


@dataclasses.dataclass(frozen=True)
class ToyConfig(SuiteConfig):
    word: str = "hello"


class Toy(Suite):
    name = "toy"
    Config = ToyConfig

    @classmethod
    def validate(cls, cfg, fail):
        if not cfg.word.isalpha():
            fail("word", cfg.word, "letters only")

    def plan(self):
        return [f"toy/echo-{self.cfg.word}", "toy/proc-version", "toy/online-cpus"]

    def run(self, target, ids):
        for cid in ids:
            if cid.startswith("toy/echo-"):
                out = target.run(f"echo {self.cfg.word}").output.strip()
                yield self.case(cid, PASS if out == self.cfg.word else FAIL,
                                outcome={"kind": "echo", "text": out}, reason="",
                                expected=self.cfg.word)
            elif cid == "toy/proc-version":  # carries the build time: differs per kernel
                out = target.run("cat /proc/version").output.strip()
                yield self.case(cid, PASS, outcome={"kind": "version", "text": out})
            else:
                cpus = int(target.run("nproc").output)
                yield self.case(cid, PASS, outcome={"kind": "count"},
                                measurement=Measurement(cpus, "cpus", "exact", [[cpus]]))
'''


def test_a_suite_in_one_file_is_listed_run_reported_and_compared(
        built_kernels: dict, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "toy.py").write_text(TOY)

    def only_toy(doc: dict) -> None:
        doc["suites"] = {name: {"enabled": False}
                         for name in ("counters", "isolation", "latency", "kvm-host",
                                      "kselftest-kvm", "linux-guest", "timer")}
        doc["suites"]["toy"] = {"word": "rig"}

    config = rig_variant(tmp_path, only_toy)
    env = dict(os.environ, RIG_SUITE_PATH=str(plugins))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator", "-c", str(config), *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=900)

    listed = cli("list")
    assert listed.stdout.split() == ["toy/echo-rig", "toy/proc-version", "toy/online-cpus"]
    (tmp_path / "rig.yaml").write_text(config.read_text().replace("word: rig", "word: r1g"))
    refused = cli("list")
    assert refused.returncode == 2
    assert "suites.toy.word: got 'r1g', expected letters only" in refused.stderr
    (tmp_path / "rig.yaml").write_text(config.read_text().replace("word: r1g", "word: rig"))

    result = cli("run")
    assert result.returncode == 1, result.stderr[-2000:]  # the kernels' builds differ
    (run_dir,) = (p for p in (tmp_path / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    cases = load_run(run_dir)
    mine = {(c["kernel"], c["id"]): c for c in cases}
    for kernel in ("b922307a-parent", "b922307a"):
        assert mine[(kernel, "toy/echo-rig")]["verdict"] == "pass"
        assert mine[(kernel, "toy/online-cpus")]["measurement"]["value"] == 2
    (differs,) = [c for c in cases if c["suite"] == "differs"]
    assert differs["id"] == "differs/toy/proc-version" and differs["kernel"] == "b922307a"
    assert differs["reason"].startswith("behaviour differs from b922307a-parent: ")
    report = (run_dir / "report.md").read_text()
    assert "toy" in report.splitlines()[3]  # a column of the summary table
    assert "| toy/online-cpus | 2.0 cpus | 2.0 cpus | +0.0 cpus |" in report
    assert "- `toy/proc-version`: behaviour differs" in report
    compared = json.loads((run_dir / "compare.json").read_text())
    assert compared[0]["measurements"]["toy/online-cpus"]["verdict"] == "same"


BOARD = '''
"""board: a target kind kept outside the rig, in one file. A board reached over its
serial console, stood in for by the rig's own QEMU host of one of its kernels
(built by the rig, booted through the qemu kind's factory) when the run connects."""
import dataclasses
import hashlib
import shlex
from typing import ClassVar

from orchestrator import guest, kernel
from orchestrator.targets import TargetKind, open_target
from orchestrator.targets.qemu import QemuBoot


@dataclasses.dataclass(frozen=True)
class BoardEntry:
    type: ClassVar[str] = "board"
    name: str
    kernel: str


class Console:
    """The board as a standing target: connecting is booting it."""

    def __init__(self, host, entry):
        self.host, self.entry, self.label = host, entry, entry.name
        self.address = f"the serial console of {entry.kernel}"
        self.capabilities = host.capabilities

    @property
    def running(self):
        return self.host.running

    @property
    def console_log(self):
        return self.host.console_log

    def connect(self):
        return self.host.boot()

    def about(self):
        return {"type": "board", "kernel": self.entry.kernel}

    def describe(self, out_dir):
        return {"uname": self.run("uname -a").output.strip(),
                "machine": self.run("uname -m").output.strip()}

    def run(self, command, timeout=None):
        return self.host.run(command, timeout)

    def put(self, local, remote):
        # a console is slow (~1 MB in 5 minutes emulated): send only what the board lacks
        # (this one has the guest tests in its initramfs already)
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
        if self.run(f"sha256sum {shlex.quote(remote)}").output.split()[:1] != [digest]:
            self.host.put(local, remote)

    def get(self, remote, local):
        self.host.get(remote, local)

    def reboot(self):
        return self.host.reboot()

    def close(self):
        self.host.close()


class Board(TargetKind):
    type = "board"

    @classmethod
    def entry(cls, reader, name, raw):
        keys = reader.mapping(f"targets.{name}", raw, ["type", "kernel"])
        return BoardEntry(name, reader.scalar(f"targets.{name}.kernel", keys.get("kernel"), str))

    @classmethod
    def open(cls, entry, log_dir, budget, rig):
        built = kernel.build(rig, rig.kernel(entry.kernel))
        boot = QemuBoot(entry.name, rig.qemu, built.image, guest.host_initramfs(rig.cache_dir),
                        label=entry.name)
        return Console(open_target(boot, log_dir, budget, rig), entry)

    @classmethod
    def session_log(cls, entry, log_dir):
        return log_dir / f"{entry.name}.console.log"
'''


def test_a_target_kind_in_one_file_runs_a_host_shell_suite(
        built_kernels: dict, tmp_path: Path) -> None:
    plugins = tmp_path / "kinds"
    plugins.mkdir()
    (plugins / "board.py").write_text(BOARD)

    def with_board(doc: dict) -> None:
        doc["targets"] = {"qemu": {"type": "qemu"},
                          "bench": {"type": "board", "kernel": "b922307a"}}

    config = rig_variant(tmp_path, with_board)
    env = dict(os.environ, RIG_TARGET_PATH=str(plugins))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator", "-c", str(config), *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=900)

    result = cli("run", "--target", "bench", "--only", "kvm-host/*")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--- console of bench, last" in result.stdout
    cases = run_cases(tmp_path)
    assert {(c["id"], c["kernel"], c["verdict"]) for c in cases} == {
        ("kvm-host/hypervisor-extension", "bench", "pass"), ("kvm-host/dev-kvm", "bench", "pass")}
    (run_dir,) = (p for p in (tmp_path / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    about = json.loads((run_dir / "manifest.json").read_text())["kernels"]["bench"]
    assert about["target"] == {"type": "board", "kernel": "b922307a"}
    assert about["machine"] == "riscv64"
    assert about["guest_tests"] == sorted(f"/usr/lib/rig/{name}" for name in guest.HOST_PROGRAMS)
    assert "hypervisor extension available" in (run_dir / "bench" / "bench.console.log"
                                                 ).read_text(errors="replace")
    assert qemu_processes_mentioning(str(tmp_path)) == []

    # without the plug-in the kind is unknown, and rig.yaml says so
    refused = subprocess.run([sys.executable, "-m", "orchestrator", "-c", str(config), "list"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "targets.bench.type: got 'board', expected ssh" in refused.stderr


def test_installed_rig_runs_its_embedded_default_in_an_empty_directory(
        built_kernels: dict, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                              "--disable-pip-version-check", str(REPO)],
                             capture_output=True, text=True, timeout=1800)
    assert install.returncode == 0, install.stderr[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RIG_CONFIG"}
    tool = str(venv / "bin" / "orchestrator")
    listed = subprocess.run([tool, "list", "--json"], cwd=empty, env=env, capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    plan = json.loads(listed.stdout)
    assert plan["kernels"] == ["b922307a-parent", "b922307a"]
    assert len(plan["suites"]["counters"]) == 96
    ran = subprocess.run([tool, "run", "--kernel", "b922307a", "--only", "kvm-host/*"],
                         cwd=empty, env=env, capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, ran.stderr[-3000:]
    (run_dir,) = (p for p in (empty / "results").iterdir()
                  if p.is_dir() and not p.is_symlink())
    assert [(c["id"], c["verdict"]) for c in load_run(run_dir)] == [
        ("kvm-host/hypervisor-extension", "pass"), ("kvm-host/dev-kvm", "pass")]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["reproduce"].startswith("orchestrator run --kernel b922307a")  # no -c
    assert "_data" in manifest["config"] and not list(empty.glob("*.yaml"))
