"""`orchestrator setup`: install what the rig needs, and say what it does.

Debian packages through apt (QEMU >= 10 from bookworm-backports on Debian
12, whose source is added only when no configured suite offers it), and
the Python dependencies into the running virtual environment. Planning is
separate from doing, so a second run finds nothing to do.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import debian
from orchestrator.errors import InfraError

QEMU_PACKAGE = "qemu-system-riscv"
QEMU_MIN_VERSION = "1:10"
PACKAGES = (
    QEMU_PACKAGE,
    "gcc-riscv64-linux-gnu", "binutils-riscv64-linux-gnu", "libc6-dev-riscv64-cross",
    "linux-source-6.12",
    # kernel build: host compiler and the tools Kbuild and Kconfig call
    "make", "gcc", "libc6-dev", "bc", "bison", "flex", "perl", "libssl-dev", "libelf-dev",
    "xz-utils", "ccache", "git",
)
PYTHON_MODULES = {"yaml": "pyyaml", "pexpect": "pexpect", "paramiko": "paramiko",
                  "numpy": "numpy", "scipy": "scipy", "matplotlib": "matplotlib",
                  "jsonschema": "jsonschema", "pytest": "pytest"}
# `setup --lava`: a LAVA lab on this machine (tests/integration/lava_lab.py starts
# it without systemd): the dispatcher (lava-run, lava-worker), the server (Django
# app, scheduler; gunicorn) and PostgreSQL, all from Debian. The dispatcher needs
# python3-guestfs, hence qemu-system-x86, which must come from the suite the rig's
# QEMU came from (bookworm-backports on Debian 12), or apt would want bookworm's
# 7.2 qemu-system-common back. Recommends stay out (apache2, lava-coordinator).
LAVA_PACKAGES = ("lava-dispatcher", "lava-server", "postgresql")
QEMU_X86 = "qemu-system-x86"
BACKPORTS_SOURCE = Path("/etc/apt/sources.list.d/riscv-kvm-rig-backports.sources")


@dataclass
class Plan:
    add_backports: bool = False
    install: list[str] = field(default_factory=list)
    from_backports: list[str] = field(default_factory=list)
    python: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.add_backports or self.install or self.from_backports or self.python)

    def describe(self, codename: str) -> str:
        steps = []
        if self.add_backports:
            steps.append(f"add the {codename}-backports apt source")
        if self.install:
            steps.append("apt install " + " ".join(self.install))
        if self.from_backports:
            steps.append(f"apt install from {codename}-backports " + " ".join(self.from_backports))
        if self.python:
            steps.append("pip install " + " ".join(self.python))
        return "; ".join(steps)


def _dpkg_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", package],
                         capture_output=True, text=True)
    status, _, version = out.stdout.partition("\t")
    return version if out.returncode == 0 and status.endswith(" installed") else ""


def _candidates(package: str) -> list[tuple[str, str]]:
    """(version, suite) pairs apt could install, newest first as apt lists them."""
    out = subprocess.run(["apt-cache", "madison", package], capture_output=True, text=True)
    pairs = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3:
            pairs.append((parts[1], parts[2].split()[1].split("/")[0]))
    return pairs


def version_at_least(version: str, minimum: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", version, "ge", minimum]).returncode == 0


def os_release() -> dict[str, str]:
    values = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            values[key] = value.strip('"')
    except OSError:
        pass
    return values


def plan(installed: dict[str, str], qemu_candidates: list[tuple[str, str]], codename: str,
         missing_python: list[str]) -> Plan:
    """What to do, given installed versions ('' if absent) and QEMU's candidates."""
    result = Plan(python=missing_python)
    result.install = [p for p in PACKAGES if p != QEMU_PACKAGE and not installed.get(p)]
    if installed.get(QEMU_PACKAGE) and version_at_least(installed[QEMU_PACKAGE], QEMU_MIN_VERSION):
        return result
    usable = [(v, suite) for v, suite in qemu_candidates if version_at_least(v, QEMU_MIN_VERSION)]
    if usable:
        suite = usable[0][1]
        target = result.from_backports if suite.endswith("-backports") else result.install
        target.append(QEMU_PACKAGE)
    elif codename == "bookworm":
        result.add_backports = True
        result.from_backports.append(QEMU_PACKAGE)
    else:
        raise InfraError(f"no {QEMU_PACKAGE} >= 10 in apt for Debian {codename or '?'}"
                         f" (candidates: {qemu_candidates or 'none'})")
    return result


def lava_packages(installed: dict[str, str], qemu_suite: str) -> list[str]:
    """apt arguments that install the missing LAVA packages beside the rig's QEMU
    (installed: package -> version, '' if absent)."""
    missing = [p for p in LAVA_PACKAGES if not installed.get(p)]
    if "lava-dispatcher" in missing and qemu_suite.endswith("-backports"):
        missing.append(f"{QEMU_X86}/{qemu_suite}")
    return missing


def setup_lava(dry_run: bool) -> int:
    qemu = _dpkg_version(QEMU_PACKAGE)
    suite = next((s for v, s in _candidates(QEMU_PACKAGE) if v == qemu), "")
    installed = {p: _dpkg_version(p) for p in LAVA_PACKAGES}
    todo = lava_packages(installed, suite)
    if not todo:
        print("setup: " + ", ".join(f"{p} {v}" for p, v in installed.items()) + " installed")
        return 0
    print(f"setup: {'would' if dry_run else 'will'} apt install --no-install-recommends"
          f" {' '.join(todo)}")
    if not dry_run:
        _apt_get("install", "-y", "--no-install-recommends", *todo)
    return 0


def _missing_python() -> list[str]:
    return [package for module, package in PYTHON_MODULES.items()
            if importlib.util.find_spec(module) is None]


def _apt_get(*args: str) -> None:
    cmd = ["apt-get", *args]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise InfraError(f"need root for: {' '.join(cmd)} (no sudo found)")
        cmd = ["sudo", *cmd]
    print("setup: $ " + " ".join(cmd), flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, env=env).returncode != 0:
        raise InfraError(f"setup: '{' '.join(cmd)}' failed")


def _add_backports(codename: str) -> None:
    mirror = debian.debian_mirror()
    text = (f"Types: deb\nURIs: {mirror}\nSuites: {codename}-backports\nComponents: main\n"
            f"Signed-By: {debian.KEYRING}\n")
    print(f"setup: adding {codename}-backports ({mirror}) as {BACKPORTS_SOURCE}")
    if os.geteuid() == 0:
        BACKPORTS_SOURCE.write_text(text)
    else:
        subprocess.run(["sudo", "tee", str(BACKPORTS_SOURCE)], input=text, text=True,
                       stdout=subprocess.DEVNULL, check=True)


def _not_debian_message() -> str:
    return ("this is not a Debian or Ubuntu system; install by hand:\n"
            f"  system packages: {', '.join(PACKAGES)} (QEMU >= 10 with qemu-system-riscv64)\n"
            f"  python packages: {', '.join(PYTHON_MODULES.values())}\n"
            "then run 'orchestrator setup' again to check")


def setup(dry_run: bool = False, lava: bool = False) -> int:
    release = os_release()
    family = {release.get("ID", "")} | set(release.get("ID_LIKE", "").split())
    if not family & {"debian", "ubuntu"}:
        print(_not_debian_message(), file=sys.stderr)
        raise InfraError("setup: unsupported system (see the list above)")
    codename = release.get("VERSION_CODENAME", "")
    installed = {p: _dpkg_version(p) for p in PACKAGES}
    qemu = installed[QEMU_PACKAGE]
    if not dry_run and (not all(installed.values())
                        or not version_at_least(qemu, QEMU_MIN_VERSION)):
        _apt_get("update")  # plan against fresh package lists
    todo = plan(installed, _candidates(QEMU_PACKAGE), codename, _missing_python())
    if todo.empty():
        print(f"setup: nothing to do, everything is installed ({QEMU_PACKAGE} {qemu})")
        return setup_lava(dry_run) if lava else 0
    print(f"setup: {'would' if dry_run else 'will'} {todo.describe(codename)}")
    if dry_run:
        return 0
    if todo.add_backports:
        _add_backports(codename)
        _apt_get("update")
    if todo.install:
        _apt_get("install", "-y", "--no-install-recommends", *todo.install)
    if todo.from_backports:
        _apt_get("install", "-y", "-t", f"{codename}-backports", *todo.from_backports)
    if todo.python:
        if sys.prefix == sys.base_prefix:
            raise InfraError("setup: missing Python packages " + ", ".join(todo.python)
                             + "; run from the project's virtual environment (scripts/rig)")
        pip = [sys.executable, "-m", "pip", "install", *todo.python]
        print("setup: $ " + " ".join(pip), flush=True)
        subprocess.run(pip, check=True)
    print("setup: done")
    return setup_lava(dry_run) if lava else 0
