"""`orchestrator lava submit`: the rig's run as jobs on a LAVA server, and back.

Export (orchestrator.lava.export), submit one job per kernel through the
server's REST API (v0.2), follow them (queued, running on which device,
finished and how), fetch each job's log and LAVA's own test results, and
import the logs exactly as `orchestrator lava import` does.

The token comes from $LAVA_TOKEN or from a lavacli identity
(~/.config/lavacli.yaml); it goes only into the Authorization header, never
into output, files or error messages. A server that cannot be reached or that
refuses the token is bad input (exit 2, one line); a job the server ends
Incomplete or Canceled is an infrastructure error carrying LAVA's own message
(the import turns what the job did not run into error cases).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TextIO

import yaml

from orchestrator.config import RigConfig
from orchestrator.errors import BadInput, InfraError
from orchestrator.lava import export, replay
from orchestrator.results import RunRecord

TOKEN_ENV = "LAVA_TOKEN"
LAVACLI_CONFIG = Path("~/.config/lavacli.yaml")
API = "api/v0.2/"
FINISHED = "Finished"
HTTP_TIMEOUT = 60


@dataclasses.dataclass
class Server:
    url: str  # the server's root, ending in /
    token: str = dataclasses.field(repr=False)

    def request(self, path: str, method: str = "GET",
                data: dict[str, Any] | None = None) -> bytes:
        """One API call; failures as one line naming the server, never the token."""
        request = urllib.request.Request(
            urllib.parse.urljoin(self.url, API + path), method=method,
            data=json.dumps(data).encode() if data is not None else None,
            headers={"Authorization": f"Token {self.token}", "Accept": "application/json",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise BadInput(f"LAVA server {self.url} refused the token"
                               f" (HTTP {exc.code} on {path})") from None
            raise InfraError(f"LAVA server {self.url}: HTTP {exc.code} on {method} {path}:"
                             f" {_message(exc.read())}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BadInput(f"LAVA server {self.url} cannot be reached: {reason}") from None

    def json(self, path: str, method: str = "GET",
             data: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.request(path, method, data)
        try:
            return json.loads(body or b"{}")
        except ValueError:
            raise InfraError(f"LAVA server {self.url}: {path} did not answer JSON"
                             f" ({body[:80]!r})") from None


def _message(body: bytes) -> str:
    """LAVA's own error text from an error response (JSON 'message'/'detail' or text)."""
    text = body.decode(errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("detail") or data)[:300]
    return str(data)[:300]


def _root(uri: str) -> str:
    """A server's root from what users give: https://host/, or lavacli's .../RPC2."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(f"LAVA server URL {uri!r}: not an http(s) URL")
    path = parts.path.removesuffix("/").removesuffix("/RPC2")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


def server_from(url: str | None, identity: str | None, environ: dict[str, str],
                config_path: Path = LAVACLI_CONFIG) -> Server:
    """The server and token: --server and $LAVA_TOKEN, else the lavacli identity
    (--identity, or 'default') for whichever of the two is missing."""
    token = environ.get(TOKEN_ENV, "")
    if url and token and not identity:
        return Server(_root(url), token)
    path = config_path.expanduser()
    name = identity or "default"
    try:
        identities = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        identities = {}
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(f"{path}: not a lavacli configuration ({exc})") from None
    entry = identities.get(name) if isinstance(identities, dict) else None
    if not isinstance(entry, dict):
        if identity:
            raise BadInput(f"{path}: no lavacli identity {identity!r}")
        missing = "--server URL" if not url else f"${TOKEN_ENV}"
        raise BadInput(f"lava submit: no {missing} and no lavacli identity 'default' in {path}")
    uri = url or str(entry.get("uri", ""))
    token = token or str(entry.get("token", ""))
    if not uri or not token:
        raise BadInput(f"{path}: identity {name!r} has no {'uri' if not uri else 'token'}")
    return Server(_root(uri), token)


def check(server: Server) -> str:
    """Who the token is: reaching the server and an accepted token, before any work."""
    user = server.json("system/whoami/").get("user")
    if not user:
        raise BadInput(f"LAVA server {server.url} refused the token (it answers as anonymous)")
    return str(user)


# -- jobs ------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    kernel: str
    id: int
    state: str = ""  # none seen yet: the first answer is news
    health: str = "Unknown"
    device: str = ""
    failure: str = ""
    submit_time: str = ""
    start_time: str = ""
    end_time: str = ""

    @property
    def finished(self) -> bool:
        return self.state == FINISHED

    def seconds(self, start: str, end: str) -> float | None:
        times = [_parse_time(getattr(self, start)), _parse_time(getattr(self, end))]
        if None in times:
            return None
        return round((times[1] - times[0]).total_seconds(), 1)  # type: ignore[operator]

    @property
    def queued_seconds(self) -> float | None:
        return self.seconds("submit_time", "start_time")

    @property
    def run_seconds(self) -> float | None:
        return self.seconds("start_time", "end_time")

    @property
    def error(self) -> str:
        """LAVA's own account of a job that did not complete ('' if it did)."""
        if self.health not in ("Incomplete", "Canceled"):
            return ""
        why = f": {self.failure}" if self.failure else ""
        return f"LAVA job {self.id} {self.health}{why}"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "queued_seconds": self.queued_seconds,
                "run_seconds": self.run_seconds, "error": self.error or None}

    def update(self, data: dict[str, Any]) -> bool:
        """Take the server's view; True if state, health or device changed."""
        before = (self.state, self.health, self.device)
        self.state = str(data.get("state") or self.state)
        self.health = str(data.get("health") or self.health)
        self.device = str(data.get("actual_device") or "")
        self.failure = str(data.get("failure_comment") or "")
        for key in ("submit_time", "start_time", "end_time"):
            self.__dict__[key] = str(data.get(key) or "")
        return before != (self.state, self.health, self.device)

    def describe(self) -> str:
        where = f" on {self.device}" if self.device else ""
        if self.state in ("Submitted", "Scheduling"):
            return f"job {self.id}: queued, waiting for a device"
        if self.state == "Scheduled":  # its worker starts it at its next ping
            return f"job {self.id}: queued, scheduled{where}"
        if not self.finished:
            return f"job {self.id}: {self.state.lower()}{where}"
        return f"job {self.id}: finished{where}, {self.health}" + (
            f" ({self.failure})" if self.failure else "")


def _parse_time(stamp: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def submit_job(server: Server, kernel: str, definition: str) -> Job:
    try:
        answer = server.json("jobs/", "POST", {"definition": definition})
    except InfraError as exc:  # 400: LAVA rejected the definition, with its reason
        raise BadInput(f"LAVA server {server.url} rejected the job of {kernel}:"
                       f" {exc.message.split(': ', 2)[-1]}") from None
    ids = answer.get("job_ids") or []
    if len(ids) != 1:
        raise InfraError(f"LAVA server {server.url}: submitting {kernel}'s job gave"
                         f" job ids {ids!r}")
    return Job(kernel, int(ids[0]))


def follow(server: Server, jobs: list[Job], poll: float, out: TextIO) -> None:
    """Until every job is finished, print each change (queued, running where, done)."""
    while True:
        for job in jobs:
            if not job.finished and job.update(server.json(f"jobs/{job.id}/")):
                print(f"[{job.kernel}] {job.describe()}", file=out, flush=True)
        if all(job.finished for job in jobs):
            return
        time.sleep(poll)


def fetch(server: Server, job: Job, outdir: Path) -> None:
    """The job's log (as the server keeps it), LAVA's test results and the server's
    record of the job, under OUTDIR/logs/ where `lava import` reads them."""
    logs = outdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        (logs / f"{job.kernel}.yaml").write_bytes(server.request(f"jobs/{job.id}/logs/"))
    except InfraError as exc:
        if "HTTP 404" not in exc.message:  # a job canceled before it ran has no log
            raise
    (logs / f"{job.kernel}.results.yaml").write_bytes(server.request(f"jobs/{job.id}/yaml/"))
    (logs / f"{job.kernel}{replay.SERVER_JOB_SUFFIX}").write_text(
        json.dumps({**job.to_json(), "url": f"{server.url}scheduler/job/{job.id}"},
                   indent=1) + "\n")


def run(rig: RigConfig, server: Server, outdir: Path, kernel_names: list[str] | None,
        only: str | None, base_url: str | None, device_type: str, tags: list[str] | None,
        poll: float, out: TextIO = sys.stderr) -> tuple[RunRecord, list[Job], float]:
    """Export, submit, follow, fetch, import; the run, the jobs and the wall time
    from the first submission to the last job's end."""
    user = check(server)
    print(f"lava submit: {server.url} as {user}", file=out, flush=True)
    outdir = outdir.resolve()
    paths = export.export(rig, outdir, kernel_names, only, base_url, device_type, tags)
    started = time.monotonic()
    jobs = []
    for path in paths:
        job = submit_job(server, path.stem, path.read_text())
        print(f"[{job.kernel}] job {job.id}: submitted ({server.url}scheduler/job/{job.id})",
              file=out, flush=True)
        jobs.append(job)
    follow(server, jobs, poll, out)
    wall = round(time.monotonic() - started, 1)
    for job in jobs:
        fetch(server, job, outdir)
        if job.error:
            print(f"[{job.kernel}] {job.error}", file=out, flush=True)
    for job in jobs:
        print(f"[{job.kernel}] job {job.id} on {job.device or '-'}: queued"
              f" {_seconds(job.queued_seconds)}, ran {_seconds(job.run_seconds)}", file=out)
    print(f"lava submit: {len(jobs)} job(s) in {wall:g}s", file=out, flush=True)
    return replay.import_run(rig, outdir), jobs, wall


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g}s"
