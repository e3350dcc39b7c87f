"""The CI examples in docs/ci/ run: their YAML is parsed and the job's own shell
steps run as the CI service would run them, two nights in a row, in a project
directory of which only the rig's cache survives between nights (what each
example caches). `scripts/rig nightly` is a stand-in that puts a prepared run in
results/ and then runs the rig's real `nightly --from` on it: the run itself is
what tests/integration covers; here it is the job around it (what is cached,
which JUnit and artifacts a night reports, the exit code)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.results import Case, RunRecord
from orchestrator.verdicts import PASS

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "docs" / "ci"
# what scripts/rig needs before it can install the rest (a bare Debian image has no
# Python): the examples' first step installs it; run as root, sudo is not needed
FIRST_PACKAGES = "apt-get install -y -qq python3-venv git"

STAND_IN = """#!/usr/bin/env bash
set -euo pipefail
[ "$1" = nightly ] || exit 2
shift
mkdir -p results
cp -r "$TONIGHT" results/
ln -sfn "$(basename "$TONIGHT")" results/latest  # as a finished run points it
exec "$RIG_PYTHON" -m orchestrator -c "$RIG_YAML" nightly --from "$(basename "$TONIGHT")" "$@"
"""


def prepared_run(where: Path, run_id: str, linux_guest_cases: int) -> Path:
    """A finished run of one kernel: kvm-host, and linux-guest's cases (0: gone)."""
    record = RunRecord(where, run_id)
    record.add(Case("kvm-host/dev-kvm", "kvm-host", PASS, kernel="k", outcome={"kind": "ok"}))
    for i in range(linux_guest_cases):
        record.add(Case(f"linux-guest/c{i}", "linux-guest", PASS, kernel="k",
                        outcome={"kind": "ok"}))
    record.set_manifest(kernels={"k": {"key": "key1", "source": "linux-source-6.12=6.12.57-1",
                                       "release": "6.12.57", "patches": {}}})
    record.flush()
    record.finish()
    shutil.rmtree(where / "latest", ignore_errors=True)
    (where / "latest").unlink(missing_ok=True)
    return record.dir


@pytest.fixture
def nights(tmp_path: Path) -> list[Path]:
    """Two nights: the second lost linux-guest's 45 cases."""
    made = tmp_path / "prepared"
    return [prepared_run(made, "20261201-020000", 45), prepared_run(made, "20261202-020000", 0)]


def project(tmp_path: Path) -> Path:
    """A checkout as the CI service makes it, with the stand-in for scripts/rig."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True, exist_ok=True)
    (root / "scripts" / "rig").write_text(STAND_IN)
    (root / "scripts" / "rig").chmod(0o755)
    return root


def new_night(root: Path, kept: str) -> None:
    """Everything but the cached path goes, as on a fresh checkout."""
    for entry in root.iterdir():
        if entry.name not in (kept.rstrip("/"), "scripts"):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def environment(tonight: Path, variables: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RIG_CACHE_DIR", "RIG_STORE", "RIG_RESULTS_DIR", "SQUAD_URL")}
    return {**env, **variables, "TONIGHT": str(tonight), "RIG_PYTHON": sys.executable,
            "RIG_YAML": str(REPO / "rig.yaml"), "PYTHONPATH": str(REPO)}


def _expand_gitlab(text: str, root: Path) -> str:
    return text.replace("$CI_PROJECT_DIR", str(root))


def test_gitlab_job_caches_the_rig_cache_and_reports_only_this_night(
        tmp_path: Path, nights: list[Path]) -> None:
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["nightly"]
    assert job["image"] == "debian:bookworm"
    cached = job["cache"]["paths"]
    assert cached == [".rig-cache/"]  # never results/: earlier nights are not reported again
    root = project(tmp_path)
    variables = {k: _expand_gitlab(v, root) for k, v in job["variables"].items()}
    assert variables["RIG_STORE"].startswith(variables["RIG_CACHE_DIR"])
    assert any(FIRST_PACKAGES in line for line in job["before_script"])
    steps = [line for line in job["before_script"] if not line.startswith("apt-get")]
    script = "\n".join([*steps, *job["script"]])
    codes = []
    for tonight in nights:
        new_night(root, cached[0])
        done = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=root,
                              env=environment(tonight, variables),
                              capture_output=True, text=True, timeout=300)
        codes.append(done.returncode)
        reported = sorted(root.glob(job["artifacts"]["reports"]["junit"]))
        assert [p.parent.name for p in reported] == [tonight.name], done.stdout + done.stderr
    # the second night lost 45 cases: red (nightly.fail_on has gone-cases)
    assert codes == [0, 1]
    assert "gone-cases: 45" in (root / "results" / nights[1].name / "report.md").read_text()
    assert (root / ".rig-cache" / "rig.sqlite").is_file()


def _expand_github(text: str, root: Path) -> str:
    text = text.replace("${{ github.workspace }}", str(root))
    return re.sub(r"\$\{\{ (secrets|vars)\.\w+ \}\}", "", text)


def test_github_job_runs_in_debian_and_uploads_only_this_night(
        tmp_path: Path, nights: list[Path]) -> None:
    job = yaml.safe_load((CI / "github-actions.yml").read_text())["jobs"]["nightly"]
    # Ubuntu's archive lacks QEMU >= 10 and linux-source-6.12: the job runs in Debian
    assert job["container"] == "debian:bookworm"
    assert FIRST_PACKAGES in job["steps"][0]["run"]
    cache = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == ".rig-cache"
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload"))
    root = project(tmp_path)
    variables = {k: _expand_github(v, root) for k, v in job["env"].items()}
    for night, tonight in enumerate(nights):
        new_night(root, cache["with"]["path"])
        summary = root / "summary.md"
        codes = []
        for step in job["steps"]:
            if "run" not in step or step["run"].startswith("apt-get"):
                continue  # a service's action, or the packages checked above
            if codes and codes[-1] != 0 and step.get("if") != "always()":
                continue
            env = {**variables, **{k: _expand_github(v, root) for k, v in
                                   step.get("env", {}).items()},
                   "GITHUB_STEP_SUMMARY": str(summary)}
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                                   _expand_github(step["run"], root)], cwd=root,
                                  env=environment(tonight, env), capture_output=True,
                                  text=True, timeout=300)
            codes.append(done.returncode)
        assert codes == [[0, 0], [1, 0]][night]
        assert summary.read_text().startswith(f"# Run {tonight.name}")
        uploaded = [p for p in (root / "results").iterdir()
                    if f"!results/{p.name}" not in upload["with"]["path"]]
        assert [p.name for p in uploaded] == [tonight.name]
    changes = json.loads((root / "results" / nights[1].name / "changes.json").read_text())
    assert len(changes["kernels"][0]["cases"]["gone-cases"]) == 45
