"""The rig's jobs under a real LAVA dispatcher: Debian's lava-run runs the exported
jobs against the cached kernels on a rendered qemu device (riscv64, TCG), the
import judges their logs, and the verdicts equal a direct run's.

kselftest-kvm is left out (about 5 minutes per kernel; its commands go through
the same recording and replay as the others)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import (
    assert_same_verdicts,
    load_run,
    orchestrator,
    rig_variant,
    run_dir_of,
)

pytestmark = pytest.mark.integration

KERNELS = ("b922307a-parent", "b922307a")


def _lava_run(export: Path, kernel: str, work: Path) -> subprocess.Popen[bytes]:
    """lava-run on the exported job; its log (stderr) is what a server would keep."""
    (export / "logs").mkdir(exist_ok=True)
    sink = (export / "logs" / f"{kernel}.yaml").open("wb")
    cmd = ["lava-run", "--job-id", f"rig-{kernel}", "--output-dir", str(work / kernel),
           "--device", str(export / "device" / "qemu-riscv64.yaml"),
           str(export / "jobs" / f"{kernel}.yaml")]
    if os.geteuid() != 0:  # lava-run insists on root
        cmd = ["sudo", "-n", *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sink)


def test_lava_jobs_give_the_direct_runs_verdicts(built_kernels: dict[str, dict],
                                                 tmp_path: Path) -> None:
    config = rig_variant(tmp_path, lambda doc: None)
    setup = orchestrator("setup", "--lava", config=config, timeout=1800)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert shutil.which("lava-run"), "orchestrator setup --lava did not install lava-run"
    kernel_args = [a for k in KERNELS for a in ("--kernel", k)]

    started = time.monotonic()
    direct = orchestrator("run", *kernel_args, config=config)
    direct_seconds = time.monotonic() - started
    assert direct.returncode in (0, 1), direct.stderr[-3000:]
    direct_cases = {(c["kernel"], c["id"]): c for c in load_run(run_dir_of(direct.stdout))}

    export = tmp_path / "lava"
    exported = orchestrator("lava", "export", *kernel_args, str(export), config=config)
    assert exported.returncode == 0, exported.stderr[-3000:]
    for line in (export / "artifacts" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((export / name).read_bytes()).hexdigest() == digest
    job = yaml.safe_load((export / "jobs" / f"{KERNELS[1]}.yaml").read_text())
    assert job["device_type"] == "qemu" and job["context"]["arch"] == "riscv64"
    ramdisk_args = [a["deploy"]["images"]["ramdisk"]["image_arg"]
                    for a in job["actions"] if "deploy" in a]
    assert any("-icount shift=0,sleep=off" in arg for arg in ramdisk_args)

    # one job per kernel, side by side as the direct run runs its kernels
    started = time.monotonic()
    jobs = [_lava_run(export, kernel, tmp_path / "lava-out") for kernel in KERNELS]
    codes = [job.wait(timeout=3 * 3600) for job in jobs]
    lava_seconds = time.monotonic() - started
    for kernel, code in zip(KERNELS, codes, strict=True):
        log = (export / "logs" / f"{kernel}.yaml").read_text()
        assert code == 0, f"lava-run {kernel} exited {code}:\n{log[-3000:]}"
        # LAVA's own record: one test case per rig case, from its monitors
        results = [yaml.safe_load(line)["msg"] for line in log.splitlines()
                   if '"lvl": "results"' in line]
        reported = {r["extra"]["test_case_id"] for r in results
                    if r.get("definition", "").startswith("rig-")}
        assert reported == {cid for k, cid in direct_cases if k == kernel
                            and not cid.startswith("differs/")}

    imported = orchestrator("lava", "import", str(export), config=config)
    assert imported.returncode == direct.returncode, imported.stderr[-3000:]
    run_dir = run_dir_of(imported.stdout)
    lava_cases = {(c["kernel"], c["id"]): c for c in load_run(run_dir)}
    assert (run_dir / "junit.xml").is_file() and (run_dir / "results.ktap").is_file()
    assert (run_dir / "report.md").is_file()

    # icount figures are exact whatever the host's load
    assert_same_verdicts(direct_cases, lava_cases)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    figures = {"direct_run_seconds": round(direct_seconds, 1),
               "lava_jobs_seconds": round(lava_seconds, 1),
               "lava_job_seconds_from_log": {k: manifest["kernels"][k]["lava_job"]["seconds"]
                                             for k in KERNELS}}
    print("lava vs direct:", json.dumps(figures))
    (tmp_path / "timing.json").write_text(json.dumps(figures) + "\n")
