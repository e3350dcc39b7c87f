"""Nightly end to end: two successive runs, then one that adds a kernel with
an injected bug; reproducer bundles rerun in an empty directory; publication
to a real SQUAD server started from its PyPI package.

A reduced rig keeps it fast: kvm-host, counters (two SCOUNTEREN values),
isolation (perf_user_access=0, pinned) and one latency test on one boot.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator import config
from orchestrator.identity import build_version
from orchestrator.suites import outcome_line

from .conftest import HSTATUS_BACKPORT, REPO, SCOUNTEREN_BACKPORT, orchestrator, rig_variant

pytestmark = pytest.mark.integration

LEAK = REPO / "tests" / "patches" / "0101-bug-leak-guest-scounteren-to-host.patch"


def reduce(doc: dict) -> None:
    doc["suites"]["counters"]["scounteren"] = [0x0, 0x7]
    doc["suites"]["isolation"].update(perf_user_access=[0], exits=300, migrate=False)
    doc["suites"]["latency"].update(tests=["sbi-in-kernel"], boots=1, windows=20)


def latest_run(results: Path) -> Path:
    return max((d for d in results.iterdir()
                if (d / "manifest.json").is_file() and not d.is_symlink()),
               key=lambda d: (d / "manifest.json").stat().st_mtime)


@pytest.fixture(scope="module")
def nightlies(built_kernels: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two nightly runs of the reduced rig, then a third that adds kernel 'leak'."""
    tmp = tmp_path_factory.mktemp("nightly")
    results = tmp / "results"
    base = rig_variant(tmp, reduce)
    runs = {}
    for name in ("first", "second"):
        runs[name] = orchestrator("nightly", config=base)
        assert runs[name].returncode == 0, runs[name].stdout + runs[name].stderr[-3000:]
        runs[name + "_dir"] = latest_run(results)

    def add_leak(doc: dict) -> None:
        reduce(doc)
        doc["results_dir"] = str(results)
        doc["kernels"].append({"name": "leak", "source": "debian-6.12",
                               "patches": [str(HSTATUS_BACKPORT), str(SCOUNTEREN_BACKPORT),
                                           str(LEAK)],
                               "config": doc["kernels"][-1]["config"]})

    (tmp / "leak").mkdir()
    runs["leak_config"] = rig_variant(tmp / "leak", add_leak)
    runs["third"] = orchestrator("nightly", config=runs["leak_config"])
    runs["third_dir"] = latest_run(results)
    runs["config"], runs["results"] = base, results
    return runs


def test_second_nightly_shows_no_change_and_two_points_per_trend(nightlies: dict) -> None:
    second, run = nightlies["second"], nightlies["second_dir"]
    assert "0 changes since the previous run" in second.stdout
    changes = json.loads((run / "changes.json").read_text())
    assert changes["changes"] == 0
    assert {k["baseline_run"] for k in changes["kernels"]} == {nightlies["first_dir"].name}
    assert changes["trends"], "the reduced rig measures latency/sbi-in-kernel"
    assert {len(t["points"]) for t in changes["trends"]} == {2}
    assert (run / "trend.png").stat().st_size > 0
    report = (run / "report.md").read_text()
    assert "## Since the previous run" in report and "\n0 changes.\n" in report
    # `trend` prints the same figures from the store (before the third run was stored:
    # compare with the third run's own window then)
    shown = orchestrator("trend", "--json", "--last", "2", config=nightlies["config"])
    assert shown.returncode == 0, shown.stderr
    latest = json.loads((nightlies["third_dir"] / "changes.json").read_text())["trends"]
    assert [t for t in json.loads(shown.stdout) if t["kernel"] != "leak"] == [
        {**t, "points": t["points"][-2:]} for t in latest if t["kernel"] != "leak"]


def test_added_kernel_with_injected_failure_is_exactly_new(nightlies: dict) -> None:
    third, run = nightlies["third"], nightlies["third_dir"]
    assert third.returncode == 1, third.stdout + third.stderr[-3000:]
    cases = json.loads((run / "results.json").read_text())["cases"]
    failing = {c["id"] for c in cases if c["kernel"] == "leak" and c["verdict"] == "fail"}
    assert "isolation/perf_user_access=0/pinned/host-policy" in failing
    assert not [c for c in cases if c["kernel"] != "leak" and c["verdict"] == "fail"]
    changes = {k["kernel"]: k for k in json.loads((run / "changes.json").read_text())["kernels"]}
    assert changes["leak"]["baseline_run"] is None
    assert {c["id"] for c in changes["leak"]["cases"]["new-failures"]} == failing
    for name in ("b922307a-parent", "b922307a"):
        assert changes[name]["changes"] == 0, changes[name]
    for cid in failing:
        assert f"new failure: {cid}:" in third.stdout


def rerun_bundle(nightlies: dict, tmp_path: Path, case_id: str, kernel: str) -> tuple[str, str]:
    made = orchestrator("reproduce", case_id, "--kernel", kernel, "--run",
                        str(nightlies["third_dir"]), "--out", str(tmp_path / "made"), "--tar",
                        config=nightlies["leak_config"])
    assert made.returncode == 0, made.stderr
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    shutil.unpack_archive(tmp_path / "made.tar.gz", empty)
    shutil.rmtree(tmp_path / "made")  # nothing of the rig's is left to lean on
    ran = subprocess.run(["sh", str(empty / "made" / "run.sh")], capture_output=True,
                         text=True, timeout=600, env={"PATH": os.environ["PATH"]},
                         cwd=tmp_path)
    cases = json.loads((nightlies["third_dir"] / "results.json").read_text())["cases"]
    recorded = next(c for c in cases if c["id"] == case_id and c["kernel"] == kernel)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout, outcome_line(recorded["outcome"])


def test_reproducer_bundle_reruns_the_new_failure(nightlies: dict, tmp_path: Path) -> None:
    out, outcome = rerun_bundle(nightlies, tmp_path,
                                "isolation/perf_user_access=0/pinned/host-policy", "leak")
    assert "cycle=readable" in outcome  # the leak, as the run saw it
    assert f"\noutcome: {outcome}\n" in out and "same outcome as the run" in out


def test_reproducer_bundle_reruns_a_trapping_read(nightlies: dict, tmp_path: Path) -> None:
    out, outcome = rerun_bundle(nightlies, tmp_path,
                                "counters/no-pmu/VU/hpmcounter3/scounteren=0x7", "b922307a")
    assert outcome == "cause=2 kind=exception"
    assert f"\noutcome: {outcome}\n" in out


def test_latency_is_not_reproducible_alone(nightlies: dict) -> None:
    made = orchestrator("reproduce", "latency/sbi-in-kernel", "--kernel", "b922307a",
                        config=nightlies["config"])
    assert made.returncode == 2
    assert "not reproducible alone" in made.stderr


# -- SQUAD -------------------------------------------------------------------------

SQUAD_SETUP = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from squad.core.models import Group
user = User.objects.create_superuser('rig', 'rig@localhost', 'rig-test-password')
group = Group.objects.create(slug='rig')
group.projects.create(slug='nightly')
print('TOKEN', Token.objects.create(user=user).key)
"""


def squad_venv() -> Path:
    """A venv with SQUAD (the server) in the rig's cache, made once."""
    venv = config.load(REPO / "rig.yaml").cache_dir / "squad-venv"
    if not (venv / "bin" / "squad").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "squad"],
                             capture_output=True, text=True, timeout=1800)
        if pip.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip("the SQUAD server (PyPI package 'squad') does not install with"
                        f" Python {sys.version.split()[0]} here: {pip.stderr.strip()[-600:]}")
    offline_web_assets(venv)
    return venv


def offline_web_assets(venv: Path) -> None:
    """SQUAD's web front end downloads its JavaScript and CSS from the internet at start-up
    (squad/frontend/static/download); this machine reaches package registries only. The
    test uses the API alone, so each asset is an empty placeholder, recorded in
    download.status as that script records what it fetched, and the script skips it."""
    (static,) = venv.glob("lib/python*/site-packages/squad/frontend/static")
    status = []
    for line in (static / "download.conf").read_text().splitlines():
        fields = line.split()
        if len(fields) != 3 or line.startswith("#"):
            continue
        destination, url, sha1 = fields
        target = static / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            if url.endswith((".js", ".css")):
                target.touch()
            else:
                target.mkdir()
        status.append(f"{destination} {url} {sha1}")
    (static / "download.status").write_text("\n".join(status) + "\n")


@pytest.fixture(scope="module")
def squad_server(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("squad_client", reason="squad-client is not installed:"
                        " pip install -e '.[test]' installs it")
    venv = squad_venv()
    home = tmp_path_factory.mktemp("squad")
    env = {**os.environ, "DATABASE": f"ENGINE=django.db.backends.sqlite3:NAME={home}/db",
           "SECRET_KEY": "rig-test-only", "SQUAD_STATIC_DIR": str(home / "static"),
           "SQUAD_STORAGE_DIR": str(home / "storage")}
    admin = str(venv / "bin" / "squad-admin")
    subprocess.run([admin, "migrate", "-v", "0"], env=env, check=True, timeout=600)
    made = subprocess.run([admin, "shell", "-c", SQUAD_SETUP], env=env, check=True,
                          capture_output=True, text=True)
    token = made.stdout.split("TOKEN", 1)[1].split()[0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(venv / "bin" / "squad"), "--fast", "--bind",
                               f"127.0.0.1:{port}", "--workers", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=(home / "server.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/version/", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"SQUAD did not answer: {(home / 'server.log').read_text()[-2000:]}")
        yield url, token
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_nightly_publishes_to_squad(nightlies: dict, squad_server: tuple[str, str]) -> None:
    url, token = squad_server
    run = nightlies["second_dir"]
    env_token = {"SQUAD_TOKEN": token}
    cmd = [sys.executable, "-m", "orchestrator", "-c", str(nightlies["config"]), "nightly",
           "--from", str(run), "--squad", f"{url}/rig/nightly"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env_token})
    assert done.returncode == 0, done.stdout + done.stderr
    cases = json.loads((run / "results.json").read_text())["cases"]
    for kernel in ("b922307a-parent", "b922307a"):
        mine = [c for c in cases if c["kernel"] == kernel]
        assert f"environment {kernel}: {len(mine)} tests, 1 metrics" in done.stdout

    def get(path: str) -> dict:
        request = urllib.request.Request(f"{url}/api/{path}",
                                         headers={"Authorization": f"Token {token}"})
        return json.loads(urllib.request.urlopen(request, timeout=10).read())

    # each kernel is a build under its identity (release, Debian version, key), never the run
    built = json.loads((run / "manifest.json").read_text())["kernels"]
    assert not get("builds/?version=" + run.name)["results"]
    testruns = []
    for kernel in ("b922307a-parent", "b922307a"):
        (build,) = get("builds/?version=" + build_version(built[kernel]))["results"]
        testruns += get(f"builds/{build['id']}/testruns/")["results"]
    assert len(testruns) == 2

    def count(path: str) -> int:  # the tests endpoint pages with a cursor, without a count
        page, total = get(path), 0
        while True:
            total += len(page["results"])
            if not page.get("next"):
                return total
            page = get(page["next"].split("/api/", 1)[1])

    stored = sum(count(f"testruns/{t['id']}/tests/?limit=100") for t in testruns)
    assert stored == len([c for c in cases if c["suite"] != "differs"])
    # a bad token is an infrastructure error (3), not a test failure
    refused = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "SQUAD_TOKEN": "not-a-token"})
    assert refused.returncode == 3, refused.stdout + refused.stderr
