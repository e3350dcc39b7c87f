"""A LAVA lab on 127.0.0.1 for the tests: Debian's lava-server and lava-dispatcher
(installed by `orchestrator setup --lava`), started without systemd.

`lab(workdir, device_type_template)` starts, each as a child process of its own
session:

- PostgreSQL 15 on a private cluster (initdb in a fresh directory, TCP on
  127.0.0.1 only, run as the `postgres` user: it refuses root);
- lava-server's Django app, configured through the environment (DATABASE_URL,
  SECRET_KEY and LAVA_SETTINGS_*: see lava_server/settings/prod.py), never
  through /etc/lava-server: database migrated, an admin user and its token,
  device type `qemu` whose template is the rig's rendered qemu device, one
  worker and two devices on it (qemu-01, qemu-02);
- gunicorn serving lava_server.wsgi (the REST API and the workers' endpoints),
  lava-server's scheduler, and lava-worker (which runs lava-run for each job).

Everything lives in a temporary directory of its own (configuration, database
cluster, media, the worker's files). On exit the lab cancels what still runs,
stops the daemons (their process groups), kills any process its daemons left
(a job's lava-run, QEMU), copies its daemons' logs to workdir/logs and removes the rest.
Nothing goes to /etc; lava-run keeps its per-job downloads in its own directory
(/var/lib/lava/dispatcher/tmp) and removes them after the job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

WORKER = "rig-worker"
DEVICES = ("qemu-01", "qemu-02")
ADMIN = "admin"


@dataclasses.dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT/
    token: str  # the admin's API token
    dir: Path
    timings: dict[str, float]
    # what outlived the daemons' own shutdown and had to be killed (pid, command line)
    leftovers: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def api(self, path: str, method: str = "GET", data: dict | None = None) -> dict:
        return json.loads(self._call(path, method, data) or b"{}")

    def text(self, path: str) -> str:
        """A text answer (a job's log); '' if the server has none yet."""
        try:
            return self._call(path).decode(errors="replace")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return ""
            raise

    def _call(self, path: str, method: str = "GET", data: dict | None = None) -> bytes:
        request = urllib.request.Request(
            f"{self.url}api/v0.2/{path}", method=method,
            data=json.dumps(data).encode() if data is not None else None,
            headers={"Authorization": f"Token {self.token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps one directory each)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql"
                           " (orchestrator setup --lava installs it)")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_root(cmd: list[str], env: dict[str, str] | None = None) -> list[str]:
    """cmd as root (the dispatcher insists on it). Its environment is the Popen's:
    sudo is told to keep those variables, so no secret shows on a command line."""
    if os.geteuid() == 0:
        return cmd
    keep = f"--preserve-env={','.join(env)}" if env else "--preserve-env=PATH"
    return ["sudo", "-n", keep, *cmd]


def _as_user(user: str, cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *cmd]
    return ["sudo", "-n", "-u", user, *cmd]


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        if os.geteuid() == 0:
            os.killpg(process.pid, sig)
        else:
            subprocess.run(["sudo", "-n", "kill", f"-{sig.name}", "--", f"-{process.pid}"],
                           stderr=subprocess.DEVNULL)


def _stop(process: subprocess.Popen, sig: signal.Signals = signal.SIGTERM) -> None:
    if process.poll() is not None:
        return
    _signal_group(process, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=30)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live process."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # the command may contain spaces and ')': the fields after the last ')'
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(roots: list[int]) -> dict[int, str]:
    """The live processes under roots (lava-run renames itself, so the tree is what
    ties a job's lava-run and QEMU to the lab): pid -> command line."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, todo = {}, list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = (Path(f"/proc/{child}/cmdline").read_bytes()
                                .replace(b"\0", b" ").decode(errors="replace").strip())
            except OSError:
                continue
            todo.append(child)
    return found


def _wait_for(what: str, ready, timeout: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError, ValueError):
            if ready():
                return
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout:g}s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


class _Daemons:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str],
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
        log = self.logs / f"{name}.out"
        with log.open("ab") as sink:
            process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sink, env=env,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append((name, process))
        return process, log

    def stop_all(self) -> None:
        for name, process in reversed(self.started):
            # PostgreSQL's fast shutdown is SIGINT
            _stop(process, signal.SIGINT if name == "postgres" else signal.SIGTERM)


def _postgres(daemons: _Daemons, cluster: Path, password: str) -> int:
    """A private PostgreSQL cluster with the lavaserver role and database; its port."""
    bin_dir = postgres_bin()
    pwfile = cluster.parent / "pg-password"
    pwfile.write_text(password + "\n")
    subprocess.run(_as_root(["chown", "postgres:postgres", str(cluster), str(pwfile)]),
                   check=True)
    subprocess.run(_as_user("postgres", [
        str(bin_dir / "initdb"), "-D", str(cluster), "-U", "postgres", "--auth=scram-sha-256",
        f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"]),
        check=True, capture_output=True)
    port = _free_port()
    process, log = daemons.start("postgres", _as_user("postgres", [
        str(bin_dir / "postgres"), "-D", str(cluster), "-h", "127.0.0.1", "-p", str(port),
        "-k", str(cluster)]))
    env = dict(os.environ, PGPASSWORD=password)
    _wait_for("PostgreSQL", lambda: subprocess.run(
        [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0,
        60, process, log)
    for sql in (f"CREATE ROLE lavaserver LOGIN PASSWORD '{password}'",
                "CREATE DATABASE lavaserver OWNER lavaserver ENCODING 'UTF8'"):
        subprocess.run([str(bin_dir / "psql"), "-q", "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", "-d", "postgres", "-c", sql],
                       env=env, check=True, capture_output=True)
    return port


def _settings(lab_dir: Path, db_port: int, password: str) -> dict[str, str]:
    """lava-server's configuration, all in the environment (lava_server.settings.prod)."""
    return {
        "DJANGO_SETTINGS_MODULE": "lava_server.settings.prod",
        "DATABASE_URL": f"postgres://lavaserver:{password}@127.0.0.1:{db_port}/lavaserver",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LAVA_SETTINGS_DEVICES_PATH": str(lab_dir / "devices"),
        "LAVA_YAML_SETTINGS_DEVICE_TYPES_PATHS": json.dumps([str(lab_dir / "device-types")]),
        "LAVA_SETTINGS_HEALTH_CHECKS_PATH": str(lab_dir / "health-checks"),
        "LAVA_SETTINGS_MEDIA_ROOT": str(lab_dir / "media"),
        "LAVA_SETTINGS_DJANGO_LOGFILE": str(lab_dir / "logs" / "django.log"),
        "LAVA_SETTINGS_DISPATCHER_CONFIG_PATH": str(lab_dir / "dispatcher.d"),
        "LAVA_YAML_SETTINGS_INSTANCE_NAME": json.dumps("rig-test-lab"),
        # plain http on 127.0.0.1
        "LAVA_YAML_SETTINGS_SESSION_COOKIE_SECURE": "false",
        "LAVA_YAML_SETTINGS_CSRF_COOKIE_SECURE": "false",
        "LAVA_YAML_SETTINGS_HTTPS_XML_RPC": "false",
        "PATH": "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin",
        "LC_ALL": "C.UTF-8",
    }


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(_as_root(["lava-server", "manage", *args], env), env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"lava-server manage {' '.join(args[:2])} exited"
                           f" {result.returncode}:\n{result.stderr[-3000:]}")
    return result.stdout


@contextlib.contextmanager
def lab(workdir: Path, device_type_template: str) -> Iterator[Lab]:
    """A running lab; see the module's docstring."""
    # a test run stopped with SIGTERM (a CI timeout) still tears the lab down
    previous = signal.signal(signal.SIGTERM, _leave)
    timings: dict[str, float] = {}
    started = time.monotonic()
    # the lab's own directory, readable by the users its daemons switch to (postgres,
    # lavaserver for the scheduler): outside pytest's private temporary directories
    lab_dir = Path(tempfile.mkdtemp(prefix="rig-lava-lab-"))
    os.chmod(lab_dir, 0o755)
    for sub in ("logs", "media", "device-types", "devices", "health-checks", "dispatcher.d",
                "worker", "pg"):
        (lab_dir / sub).mkdir()
    (lab_dir / "device-types" / "qemu.jinja2").write_text(device_type_template)
    for device in DEVICES:
        (lab_dir / "devices" / f"{device}.jinja2").write_text("{% extends 'qemu.jinja2' %}\n")
    daemons = _Daemons(lab_dir / "logs")
    password = secrets.token_hex(16)
    lab_obj: Lab | None = None
    try:
        db_port = _postgres(daemons, lab_dir / "pg", password)
        timings["database_seconds"] = round(time.monotonic() - started, 1)
        http_port = _free_port()
        env = _settings(lab_dir, db_port, password)
        mark = time.monotonic()
        _manage(env, "migrate", "--noinput")
        timings["migrate_seconds"] = round(time.monotonic() - mark, 1)
        _manage(env, "users", "add", ADMIN, "--superuser", "--staff",
                "--passwd", secrets.token_hex(12))
        token = secrets.token_hex(32)
        _manage(env, "tokens", "add", "--user", ADMIN, "--secret", token,
                "--description", "rig tests")
        _manage(env, "device-types", "add", "qemu")
        worker_out = _manage(env, "workers", "add", WORKER)
        worker_token = next(line.split(":", 1)[1].strip() for line in worker_out.splitlines()
                            if line.startswith("Token:"))
        for device in DEVICES:
            _manage(env, "devices", "add", "--device-type", "qemu", "--worker", WORKER,
                    device)
        url = f"http://127.0.0.1:{http_port}/"
        gunicorn, gunicorn_log = daemons.start("gunicorn", _as_root([
            "gunicorn3", "lava_server.wsgi", "--bind", f"127.0.0.1:{http_port}",
            "--workers", "2", "--worker-class", "eventlet", "--timeout", "120",
            "--log-file", str(lab_dir / "logs" / "gunicorn.log")], env), env)
        lab_obj = Lab(url, token, lab_dir, timings)
        _wait_for("gunicorn", lambda: lab_obj.api("system/version/") is not None, 120,
                  gunicorn, gunicorn_log)
        daemons.start("lava-scheduler", _as_root([
            "lava-server", "manage", "lava-scheduler", "--level", "DEBUG",
            "--log-file", str(lab_dir / "logs" / "lava-scheduler.log")], env), env)
        token_file = lab_dir / "worker-token"
        token_file.touch(mode=0o600)
        token_file.write_text(worker_token)
        worker_env = {"PATH": env["PATH"], "LC_ALL": "C.UTF-8"}
        worker, worker_log = daemons.start("lava-worker", _as_root([
            "lava-worker", "--name", WORKER, "--url", url, "--token-file", str(token_file),
            "--worker-dir", str(lab_dir / "worker"), "--level", "DEBUG",
            "--log-file", str(lab_dir / "logs" / "lava-worker.log")], worker_env), worker_env)
        _wait_for("lava-worker", lambda: _worker_online(lab_obj), 120, worker, worker_log)
        timings["lab_seconds"] = round(time.monotonic() - started, 1)
        yield lab_obj
    finally:
        if lab_obj is not None:
            with contextlib.suppress(OSError, ValueError):
                _cancel_all(lab_obj)
        under = descendants([process.pid for _, process in daemons.started])
        daemons.stop_all()
        alive = {pid: cmd for pid, cmd in under.items() if Path(f"/proc/{pid}").exists()}
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL) if os.geteuid() == 0 else subprocess.run(
                    ["sudo", "-n", "kill", "-KILL", str(pid)])
        if lab_obj is not None:
            lab_obj.leftovers = sorted(alive.items())
        # its logs stay with the test's files; the rest (the database) goes
        shutil.copytree(lab_dir / "logs", workdir / "logs", dirs_exist_ok=True)
        subprocess.run(_as_root(["rm", "-rf", str(lab_dir)]), check=False)
        signal.signal(signal.SIGTERM, previous)


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def _worker_online(lab_obj: Lab) -> bool:
    worker = lab_obj.api(f"workers/{WORKER}/")
    return worker.get("state") == "Online"


def _cancel_all(lab_obj: Lab) -> None:
    jobs = lab_obj.api("jobs/?state__in=Submitted,Scheduling,Scheduled,Running&limit=100")
    for job in jobs.get("results", []):
        lab_obj.api(f"jobs/{job['id']}/cancel/")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and lab_obj.api(
            "jobs/?state__in=Scheduled,Running,Canceling&limit=1").get("count"):
        time.sleep(1)
