"""The plug-in shape: a suite written in one file outside the rig is listed,
configured, run, reported and compared without any rig module changing; and an
installed rig (pip install ., not editable) runs its embedded default from an
empty directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, load_run, rig_variant

pytestmark = pytest.mark.integration

TOY = '''
"""toy: a suite kept outside the rig, in one file."""
import dataclasses

from orchestrator.results import Measurement
from orchestrator.verdicts import FAIL, PASS
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
                                      "kselftest-kvm", "linux-guest")}
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
    (run_dir,) = (p for p in (tmp_path / "results").iterdir() if p.is_dir())
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
    (run_dir,) = (p for p in (empty / "results").iterdir() if p.is_dir())
    assert [(c["id"], c["verdict"]) for c in load_run(run_dir)] == [
        ("kvm-host/hypervisor-extension", "pass"), ("kvm-host/dev-kvm", "pass")]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["reproduce"].startswith("orchestrator run --kernel b922307a")  # no -c
    assert "_data" in manifest["config"] and not list(empty.glob("*.yaml"))
