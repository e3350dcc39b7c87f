"""`orchestrator lava export`: per kernel, one LAVA job, its artifacts (with
sha256), the plan the import needs (plan.json) and a qemu device for lava-run."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import itertools
import json
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator import __version__, guest, image, kernel
from orchestrator.config import RigConfig
from orchestrator.lava.jobs import record_boots
from orchestrator.lava.render import SCRIPT_DIR, boot_script, render_device, render_job
from orchestrator.plan import make
from orchestrator.suites import Suite

PLAN_FILE = "plan.json"
DEVICE_FILE = "device/qemu-riscv64.yaml"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _with_scripts(initramfs: Path, scripts: dict[str, str], out: Path) -> None:
    """initramfs plus the job's scripts under /rig-lava."""
    members = image.read_cpio(initramfs.read_bytes())
    members[SCRIPT_DIR] = image.Entry(SCRIPT_DIR, stat.S_IFDIR | 0o755, b"")
    for name, text in scripts.items():
        path = f"{SCRIPT_DIR}/{name}"
        members[path] = image.Entry(path, stat.S_IFREG | 0o755, text.encode())
    buffer = io.BytesIO()
    image.write_cpio(list(members.values()), buffer)
    out.write_bytes(buffer.getvalue())


def _url(path: Path, outdir: Path, base_url: str | None) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/{path.relative_to(outdir).as_posix()}"
    return path.resolve().as_uri()


def _suite_configs(suites: Iterable[Suite]) -> dict[str, dict[str, Any]]:
    return {s.name: dataclasses.asdict(s.cfg) for s in suites}


def export(rig: RigConfig, outdir: Path, kernel_names: list[str] | None = None,
           only: str | None = None, base_url: str | None = None, device_type: str = "qemu",
           tags: list[str] | None = None) -> list[Path]:
    """Write one job per kernel, its artifacts (with sha256), the plan the import
    needs and a qemu device for lava-run; return the jobs' paths."""
    kernels = make(rig, kernel_names, only).kernels
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "jobs").mkdir(exist_ok=True)
    plan: dict[str, Any] = {"rig_version": __version__, "config": str(rig.path), "only": only,
                            "qemu": dataclasses.asdict(rig.qemu),
                            "exported": datetime.datetime.now(datetime.UTC).isoformat(
                                timespec="seconds"),
                            "kernels": {}}
    jobs, sums = [], []
    for spec in kernels:
        # a fresh plan per kernel: suites keep per-kernel state (host_files)
        kplan = make(rig, [spec.name], only)
        plan["suites"] = _suite_configs(kplan.suites)
        built = kernel.build(rig, spec, timeout=rig.timeouts.build)
        art = outdir / "artifacts" / spec.name
        art.mkdir(parents=True, exist_ok=True)
        image_path = art / "Image"
        image_path.write_bytes(built.image.read_bytes())
        # what suites pack into the host (built first: their run() may look at it)
        host_files = {suite.name: suite.host_files(rig, spec) for suite in kplan.suites}
        with tempfile.TemporaryDirectory() as work:
            boots, skipped = record_boots(rig, list(kplan.suites), kplan.cases, Path(work))
        last_boot = {suite: b.index for b in boots for suite in b.suites}
        files: dict[Path, str] = {image_path: sha256(image_path)}
        artifacts: dict[int, dict[str, dict[str, str]]] = {}
        for group, members in itertools.groupby(boots, key=lambda b: b.group):
            group_boots = list(members)
            extra = {k: v for suite in group_boots[0].suites
                     for k, v in host_files[suite].items()}
            scripts = {f"boot-{b.index}.sh": boot_script(spec.name, b, last_boot)
                       for b in group_boots}
            for b in group_boots:
                for command in b.commands:
                    if command.retry_of is None:
                        scripts[f"cmd-{command.id}.sh"] = command.command + "\n"
            ramdisk = art / f"{group}.cpio"
            _with_scripts(guest.host_initramfs(rig.cache_dir, extra), scripts, ramdisk)
            files[ramdisk] = sha256(ramdisk)
            for b in group_boots:
                artifacts[b.index] = {
                    "kernel": {"url": _url(image_path, outdir, base_url),
                               "sha256": files[image_path]},
                    "ramdisk": {"url": _url(ramdisk, outdir, base_url), "sha256": files[ramdisk]}}
        for path, digest in files.items():
            sums.append(f"{digest}  {path.relative_to(outdir).as_posix()}")
        job = outdir / "jobs" / f"{spec.name}.yaml"
        job.write_text(render_job(spec.name, built.key, rig.qemu, boots, artifacts, device_type,
                                  tags, rig.timeouts.boot))
        jobs.append(job)
        plan["kernels"][spec.name] = {"build": built.to_json(),
                                      "boots": [b.to_json() for b in boots], "skipped": skipped}
    (outdir / "artifacts" / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    (outdir / PLAN_FILE).write_text(json.dumps(plan, indent=1) + "\n")
    device = outdir / DEVICE_FILE
    device.parent.mkdir(exist_ok=True)
    device.write_text(render_device(rig.qemu))
    return jobs
