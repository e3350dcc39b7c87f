"""Publication of a run to SQUAD (the results database of Linaro's LKFT) with
squad-client (PyPI), optional: `pip install 'riscv-kvm-rig[squad]'`.

`--squad URL` names a SQUAD project: https://squad.example.org/GROUP/PROJECT.
The token comes from $SQUAD_TOKEN (never the command line, which `ps` shows);
credentials written into the URL (user:password@) are never printed.
Mapping: each kernel's identity (`identity.build_version`: release, commit or
Debian version, build key) is a build, so the same kernel on later nights adds
test runs to the same build, and SQUAD compares builds as kernels change; the
kernel's name is the environment; each case a test (`<suite>/<rest of the id>`;
known-deviation and skip are `skip`, error is `fail`: SQUAD has no
infrastructure verdict), each measurement a metric, and the run id, the
manifest's identity of the kernel and the QEMU version its metadata.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import BadInput, InfraError
from orchestrator.identity import build_version, git_commit
from orchestrator.results import DIFFERS
from orchestrator.verdicts import ERROR, FAIL, PASS, Case

TOKEN_ENV = "SQUAD_TOKEN"
_STATUS = {PASS: "pass", FAIL: "fail", ERROR: "fail"}


_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def shown(text: str) -> str:
    """text (a URL, or a message quoting one) as it may be printed: any user and
    password in a URL replaced by ***."""
    return _CREDENTIALS.sub("***@", text)


def split_url(url: str) -> tuple[str, str]:
    """(server URL, 'GROUP/PROJECT') from a project URL."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # never echoed: the URL may hold a password, and error lines end up in CI logs
        raise BadInput(f"--squad: the URL holds credentials (USER:PASSWORD@); give"
                       f" http(s)://HOST/GROUP/PROJECT and the token in ${TOKEN_ENV}")
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme not in ("http", "https") or not parts.netloc or len(path) < 2:
        raise BadInput(f"--squad {shown(url)}: expected a project URL,"
                       " http(s)://HOST/GROUP/PROJECT")
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
                "run_id": manifest.get("run_id"), "kernel_release": built.get("release"),
                "kernel_commit": git_commit(built), "kernel_key": built.get("key"),
                "kernel_source": built.get("source"),
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
    built = manifest.get("kernels", {})
    done = []
    try:
        SquadApi.configure(url=server, token=token)
        for kernel in kernels:
            data = payload(cases, {**manifest, "run_id": run_id}, kernel)
            version = build_version(built.get(kernel, {}))
            ok, answer = submit_results(group_project_slug=project, build_version=version,
                                        env_slug=kernel, **data)
            if not ok:
                raise InfraError(f"SQUAD {shown(server)} refused the results of {kernel}"
                                 f" (project {project}, build {version}):"
                                 f" {answer[:300]}")
            done.append(f"squad: {shown(server)}{project}/build/{version}/ environment"
                        f" {kernel}: {len(data['tests'])} tests,"
                        f" {len(data['metrics'])} metrics")
    except (ApiException, OSError) as exc:
        raise InfraError(f"SQUAD {shown(server)}: {shown(str(exc))}") from None
    return done
