"""The rig's jobs on a real LAVA lab (tests/integration/lava_lab.py): lava-server,
its scheduler and a worker with two qemu devices on 127.0.0.1. `orchestrator lava
submit` exports, submits one job per kernel, follows, fetches and imports; the
verdicts equal a direct run's, and a canceled job is an infrastructure error that
leaves the other job's results standing.

kselftest-kvm and linux-guest are left out, as in test_lava.py (the first takes
about 5 minutes per kernel; the second is not served by a LAVA device)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator import config as rig_config
from orchestrator.lava import render, replay
from tests.integration.conftest import (
    REPO,
    assert_same_verdicts,
    load_run,
    orchestrator,
    rig_variant,
    run_dir_of,
)
from tests.integration.lava_lab import DEVICES, Lab, lab

pytestmark = pytest.mark.integration

KERNELS = ("b922307a-parent", "b922307a")
KERNEL_ARGS = [a for k in KERNELS for a in ("--kernel", k)]
FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def rig(built_kernels: dict[str, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rig_variant(tmp_path_factory.mktemp("lava-lab-rig"), lambda doc: None)


@pytest.fixture(scope="module")
def lava_lab(rig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The packages (orchestrator setup --lava: nothing to do when cached), then a lab
    whose qemu device type is the rig's own rendered device."""
    started = time.monotonic()
    setup = orchestrator("setup", "--lava", config=rig, timeout=1800)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    FIGURES["setup_seconds"] = round(time.monotonic() - started, 1)
    device = render.render_device(rig_config.load(rig).qemu)
    workdir = tmp_path_factory.mktemp("lava-lab")
    with lab(workdir, device) as running:
        FIGURES["lab"] = running.timings
        yield running
    # the figures docs/lava.md quotes, whatever the tests' outcome
    print("lava lab figures:", json.dumps(FIGURES))
    (workdir / "figures.json").write_text(json.dumps(FIGURES, indent=1) + "\n")
    assert running.leftovers == [], "processes outlived the lab's daemons"


@pytest.fixture(scope="module")
def direct_run(rig: Path) -> tuple[int, dict[tuple[str, str], dict]]:
    """`orchestrator run` of both kernels: its exit code and cases by (kernel, id)."""
    started = time.monotonic()
    direct = orchestrator("run", *KERNEL_ARGS, config=rig)
    FIGURES["direct_run_seconds"] = round(time.monotonic() - started, 1)
    assert direct.returncode in (0, 1), direct.stderr[-3000:]
    return direct.returncode, {(c["kernel"], c["id"]): c
                               for c in load_run(run_dir_of(direct.stdout))}


def _submit(rig: Path, lava_lab: Lab, outdir: Path, *extra: str,
            token: str | None = None) -> subprocess.Popen[str]:
    """`orchestrator lava submit` as a user runs it, the token in the environment."""
    env = dict(os.environ, LAVA_TOKEN=token or lava_lab.token)
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "-c", str(rig), "lava", "submit",
         "--server", lava_lab.url, "--poll", "2", *KERNEL_ARGS, *extra, str(outdir)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _server_job(outdir: Path, kernel: str, missing_ok: bool = False) -> dict:
    path = outdir / "logs" / f"{kernel}{replay.SERVER_JOB_SUFFIX}"
    if missing_ok and not path.exists():
        return {}
    return json.loads(path.read_text())


def test_a_bad_token_is_one_line_and_exit_2(rig: Path, lava_lab: Lab, tmp_path: Path) -> None:
    wrong = "0" * 32
    submit = _submit(rig, lava_lab, tmp_path / "out", token=wrong)
    out, err = submit.communicate(timeout=120)
    assert submit.returncode == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"orchestrator: error: LAVA server {lava_lab.url} refused the token")
    assert wrong not in out + err
    assert not (tmp_path / "out").exists(), "nothing is exported before the server is checked"


def test_lab_jobs_give_the_direct_runs_verdicts(rig: Path, lava_lab: Lab,
                                                direct_run: tuple[int, dict],
                                                tmp_path: Path) -> None:
    direct_code, direct_cases = direct_run
    outdir = tmp_path / "lab-run"
    started = time.monotonic()
    submit = _submit(rig, lava_lab, outdir)
    out, err = submit.communicate(timeout=3 * 3600)
    FIGURES["submit_seconds"] = round(time.monotonic() - started, 1)
    FIGURES["jobs"] = {k: {key: job[key] for key in ("device", "queued_seconds", "run_seconds")}
                       for k in KERNELS if (job := _server_job(outdir, k, missing_ok=True))}
    assert submit.returncode == direct_code, err[-3000:]
    assert lava_lab.token not in out + err
    assert not [p for p in outdir.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000
                and lava_lab.token.encode() in p.read_bytes()], "the token was written down"

    jobs = {k: _server_job(outdir, k) for k in KERNELS}
    for kernel, job in jobs.items():
        assert (job["state"], job["health"]) == ("Finished", "Complete"), job
        for progress in ("queued", f"running on {job['device']}", "finished on"):
            assert f"[{kernel}] job {job['id']}: {progress}" in err, err
        # LAVA's own record (its results API): one test case per rig case
        results = yaml.safe_load((outdir / "logs" / f"{kernel}.results.yaml").read_text())
        assert _rig_case_ids(results) == {cid for k, cid in direct_cases if k == kernel
                            and not cid.startswith("differs/")}
    # scale-out: the two jobs ran at the same time, one on each device
    assert {job["device"] for job in jobs.values()} == set(DEVICES)
    first, second = sorted(jobs.values(), key=lambda j: j["start_time"])
    assert second["start_time"] < first["end_time"], "the jobs did not overlap"

    run_dir = run_dir_of(out)
    lab_cases = {(c["kernel"], c["id"]): c for c in load_run(run_dir)}
    assert_same_verdicts(direct_cases, lab_cases)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kernels"][KERNELS[1]]["lava_job"]["server"]["id"] == jobs[KERNELS[1]]["id"]



def _rig_case_ids(results: list[dict]) -> set[str]:
    """The rig's case ids among LAVA's test cases (its monitors' cases, suites rig-*)."""
    ids = set()
    for result in results:
        metadata = result["metadata"]
        if not str(metadata.get("definition", "")).startswith("rig-"):
            continue
        extra = metadata.get("extra") or {}
        items = extra if isinstance(extra, list) else [extra]
        ids |= {item["test_case_id"] for item in items if "test_case_id" in item}
    return ids


def _wait_testing(lava_lab: Lab, kernel: str, timeout: float) -> dict:
    """The kernel's newest job, once its host runs the first of the rig's commands
    (the job's log, as the server has it so far, shows it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = lava_lab.api("jobs/?ordering=-id&limit=10")["results"]
        mine = [j for j in found if j["description"] == f"riscv-kvm-rig {kernel}"]
        if mine and mine[0]["state"] == "Running" and "RIG-CMD-BEGIN" in lava_lab.text(
                f"jobs/{mine[0]['id']}/logs/"):
            return mine[0]
        time.sleep(1)
    raise AssertionError(f"no job of {kernel} running the rig's commands after {timeout:g}s")


def test_a_canceled_job_is_an_infrastructure_error(rig: Path, lava_lab: Lab,
                                                   direct_run: tuple[int, dict],
                                                   tmp_path: Path) -> None:
    _, direct_cases = direct_run
    outdir = tmp_path / "canceled"
    submit = _submit(rig, lava_lab, outdir)
    try:
        canceled = _wait_testing(lava_lab, KERNELS[0], timeout=600)
        lava_lab.api(f"jobs/{canceled['id']}/cancel/")
        out, err = submit.communicate(timeout=3600)
    finally:
        if submit.poll() is None:
            submit.kill()
    assert submit.returncode == 3, err[-3000:]  # errors, not failures
    message = f"LAVA job {canceled['id']} Canceled"
    assert f"[{KERNELS[0]}] {message}" in err
    job = _server_job(outdir, KERNELS[0])
    assert (job["health"], job["error"]) == ("Canceled", message)

    cases = {(c["kernel"], c["id"]): c for c in load_run(run_dir_of(out))}
    mine = {key: c for key, c in cases.items() if key[0] == KERNELS[0]}
    # what the job did not finish is an error carrying LAVA's message; what its host
    # finished before the cancel reached it (the worker hears of it at its next
    # ping) is judged as in a direct run
    errors = {key: c for key, c in mine.items() if c["verdict"] == "error"}
    assert errors and all(message in c["reason"] for c in errors.values())
    assert_same_verdicts({key: direct_cases[key] for key in mine if key not in errors},
                         {key: c for key, c in mine.items() if key not in errors})
    # the other job ran to its end: its cases are the direct run's
    assert _server_job(outdir, KERNELS[1])["health"] == "Complete"
    # (its differences from the canceled kernel are left out: that side is partial)
    assert_same_verdicts(_suite_cases(direct_cases, KERNELS[1]), _suite_cases(cases, KERNELS[1]))


def _suite_cases(cases: dict[tuple[str, str], dict], kernel: str) -> dict[tuple[str, str], dict]:
    return {key: c for key, c in cases.items()
            if key[0] == kernel and not key[1].startswith("differs/")}
