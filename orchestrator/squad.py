"""Publication of a run to SQUAD (the results database of Linaro's LKFT) with
squad-client (PyPI), optional: `pip install 'riscv-kvm-rig[squad]'`.

`--squad URL` names a SQUAD project: https://squad.example.org/GROUP/PROJECT.
The token comes from $SQUAD_TOKEN (never the command line, which `ps` shows).
Mapping: the run id is the build version, each kernel an environment, each
case a test (`<suite>/<rest of the id>`; known-deviation and skip are `skip`,
error is `fail`: SQUAD has no infrastructure verdict), each measurement a
metric, and the manifest's identity of each kernel its metadata.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import BadInput, InfraError
from orchestrator.results import DIFFERS
from orchestrator.verdicts import ERROR, FAIL, PASS, Case

TOKEN_ENV = "SQUAD_TOKEN"
_STATUS = {PASS: "pass", FAIL: "fail", ERROR: "fail"}


def split_url(url: str) -> tuple[str, str]:
    """(server URL, 'GROUP/PROJECT') from a project URL."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme not in ("http", "https") or not parts.netloc or len(path) < 2:
        raise BadInput(f"--squad {url}: expected a project URL, http(s)://HOST/GROUP/PROJECT")
    prefix = "/".join(path[:-2])
    server = f"{parts.scheme}://{parts.netloc}/{prefix + '/' if prefix else ''}"
    return server, f"{path[-2]}/{path[-1]}"


def payload(cases: list[Case], manifest: dict[str, Any], kernel: str) -> dict[str, Any]:
    """What one kernel's environment receives: tests, metrics, metadata."""
    mine = [c for c in cases if c.kernel == kernel]
    tests = {c.id: _STATUS.get(c.verdict, "skip") for c in mine}
    metrics = {c.id: c.measurement.value for c in mine if c.measurement}
    built = manifest.get("kernels", {}).get(kernel, {})
    metadata = {"job_id": f"{manifest.get('run_id', '')}-{kernel}",
                "kernel_key": built.get("key"), "kernel_source": built.get("source"),
                "kernel_patches": built.get("patches"), "config_sha256": built.get("config_sha256"),
                "qemu": manifest.get("qemu", {}).get("version"),
                "rig_version": manifest.get("rig_version")}
    return {"tests": tests, "metrics": metrics,
            "metadata": {k: v for k, v in metadata.items() if v is not None}}


def publish(url: str, run_id: str, cases: list[Case], manifest: dict[str, Any]) -> list[str]:
    """Submit every kernel of a run; return one line per kernel submitted."""
    server, project = split_url(url)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise BadInput(f"--squad: set ${TOKEN_ENV} to a SQUAD API token with submit rights")
    try:
        from squad_client.core.api import ApiException, SquadApi
        from squad_client.shortcuts import submit_results
    except ImportError:
        raise InfraError("--squad needs squad-client: pip install 'riscv-kvm-rig[squad]'"
                         ) from None
    kernels = list(dict.fromkeys(c.kernel for c in cases if c.suite != DIFFERS))
    done = []
    try:
        SquadApi.configure(url=server, token=token)
        for kernel in kernels:
            data = payload(cases, {**manifest, "run_id": run_id}, kernel)
            ok, answer = submit_results(group_project_slug=project, build_version=run_id,
                                        env_slug=kernel, **data)
            if not ok:
                raise InfraError(f"SQUAD {server} refused the results of {kernel}"
                                 f" (project {project}, build {run_id}): {answer[:300]}")
            done.append(f"squad: {server}{project}/build/{run_id}/ environment {kernel}:"
                        f" {len(data['tests'])} tests, {len(data['metrics'])} metrics")
    except (ApiException, OSError) as exc:
        raise InfraError(f"SQUAD {server}: {exc}") from None
    return done
