"""Debian packages for another architecture, fetched without touching the
machine's apt setup.

riscv64 packages (busybox-static) come from a private apt configuration
under the cache directory: its own sources list, lists and archive cache.
The mirror is the Debian archive this machine's apt already uses. Suites
are tried in order, because a suite's index can be caught mid-sync (apt
then reports a size mismatch).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from orchestrator import cachefile
from orchestrator.errors import InfraError
from orchestrator.progress import Progress, run_logged

FOREIGN_SUITES = ("trixie", "sid", "forky")
T = TypeVar("T")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def debian_mirror() -> str:
    """The URI of the Debian archive (not security) that apt is set up with."""
    policy = subprocess.run(["apt-cache", "policy"], capture_output=True, text=True).stdout
    lines = policy.splitlines()
    for entry, release in zip(lines, lines[1:], strict=False):
        match = re.match(r"\s*-?\d+\s+(\S+)\s+\S+/main\s+\S+\s+Packages", entry)
        if match and "o=Debian," in release and "l=Debian," in release:
            return match.group(1).rstrip("/")
    raise InfraError("apt knows no Debian archive (o=Debian, l=Debian);"
                     " run 'apt-get update' or 'orchestrator setup'")


class ForeignApt:
    """apt-get with its own state, for one foreign architecture."""

    def __init__(self, root: Path, arch: str) -> None:
        self.root = root
        self.arch = arch
        self.sources = root / "sources.list"

    def options(self) -> list[str]:
        return [
            "-o", f"Dir::Etc::SourceList={self.sources}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={self.root / 'lists'}",
            "-o", f"Dir::State::status={self.root / 'status'}",
            "-o", f"Dir::Cache={self.root / 'cache'}",
            "-o", f"APT::Architecture={self.arch}",
            "-o", f"APT::Architectures::={self.arch}",
            "-o", "APT::Sandbox::User=root",
            "-o", "Debug::NoLocking=1",
        ]

    def use_suite(self, mirror: str, suite: str) -> None:
        for sub in ("lists/partial", "cache/archives/partial", "debs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # an empty dpkg status: nothing counts as installed, so apt resolves whole
        # dependency closures (fetch_closure)
        (self.root / "status").write_text("")
        self.sources.write_text(
            f"deb [arch={self.arch} signed-by={KEYRING}] {mirror} {suite} main\n")

    def package_sha256(self, package: str) -> str:
        show = subprocess.run(["apt-cache", *self.options(), "show", package],
                              capture_output=True, text=True)
        match = re.search(r"^SHA256: (\w+)", show.stdout, re.MULTILINE)
        if not match:
            raise InfraError(f"apt-cache show {package}:{self.arch} gave no SHA256")
        return match.group(1)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(cache_dir: Path, package: str, arch: str = "riscv64",
          progress: Progress | None = None) -> Path:
    """Download package:arch once; return the path of its checked .deb."""
    progress = progress or Progress(f"{package}:{arch}")
    apt = ForeignApt(cache_dir / f"apt-{arch}", arch)
    record = apt.root / f"{package}.json"
    if record.is_file():
        known = json.loads(record.read_text())
        deb = apt.root / "debs" / Path(known["deb"]).name  # a name; older records: a path
        if deb.is_file() and _sha256(deb) == known["sha256"]:
            return deb
        if deb.is_file():
            cachefile.damaged(f"{package}:{arch}", deb)

    log = apt.root / "apt.log"

    def download(suite: str) -> Path:
        want = apt.package_sha256(package)
        debs = apt.root / "debs"
        for old in debs.glob(f"{package}_*.deb"):
            old.unlink()
        progress.begin(f"apt-get download {package}:{arch} ({suite})")
        run_logged(["apt-get", *apt.options(), "download", package], log, progress, cwd=debs)
        deb = next(debs.glob(f"{package}_*.deb"))
        if _sha256(deb) != want:
            raise InfraError(f"{deb.name} does not match the index's SHA256")
        record.write_text(json.dumps({"deb": deb.name, "sha256": want, "suite": suite}))
        progress.done(f"{deb.name} from {suite}")
        return deb

    return _from_some_suite(apt, f"{package}:{arch}", download, log, progress)


def _from_some_suite(apt: ForeignApt, what: str, attempt: Callable[[str], T], log: Path,
                     progress: Progress) -> T:
    """attempt(suite) after `apt-get update` of each of FOREIGN_SUITES in turn, until
    one succeeds; an InfraError moves on to the next suite."""
    mirror = debian_mirror()
    apt.root.mkdir(parents=True, exist_ok=True)
    failures = []
    for suite in FOREIGN_SUITES:
        apt.use_suite(mirror, suite)
        progress.begin(f"apt-get update ({suite}, {apt.arch})")
        try:
            # --error-on=any: a suite caught mid-sync fails here, not at download
            run_logged(["apt-get", *apt.options(), "--error-on=any", "update"], log, progress)
            return attempt(suite)
        except InfraError as exc:
            failures.append(f"{suite}: {exc.message}")
    raise InfraError(f"could not fetch {what} from any of {', '.join(FOREIGN_SUITES)}",
                     details="\n".join(failures))


def extract(deb: Path, member: str, dest: Path) -> Path:
    """Extract one file of a .deb (e.g. 'usr/bin/busybox') to dest."""
    scratch = dest.parent / f".{dest.name}.extract"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True)
    shutil.move(str(scratch / member), dest)
    shutil.rmtree(scratch)
    return dest


def deb_names(simulation: str) -> list[str]:
    """The archive file names of what `apt-get install --simulate` would install:
    "Inst NAME (VERSION SUITE [ARCH])" -> NAME_VERSION_ARCH.deb, ':' quoted as apt does."""
    return [f"{name}_{version.replace(':', '%3a')}_{arch}.deb" for name, version, arch
            in re.findall(r"^Inst (\S+) \((\S+) .*\[(\S+)\]\)", simulation, re.MULTILINE)]


def fetch_closure(cache_dir: Path, package: str, arch: str = "riscv64",
                  progress: Progress | None = None) -> list[Path]:
    """Download package:arch and everything it depends on (no recommends), once;
    return the checked .debs. The set is recorded with each file's SHA-256, so a
    later call needs no network and a damaged file is fetched again."""
    progress = progress or Progress(f"{package}:{arch} and its dependencies")
    apt = ForeignApt(cache_dir / f"apt-{arch}", arch)
    archives = apt.root / "cache" / "archives"
    record = apt.root / f"closure-{package}.json"
    if record.is_file():
        known = json.loads(record.read_text())
        debs = [archives / name for name in known["debs"]]
        if all(d.is_file() and _sha256(d) == known["debs"][d.name] for d in debs):
            return debs

    log = apt.root / "apt.log"

    def download(suite: str) -> list[Path]:
        progress.begin(f"apt-get install --download-only {package}:{arch} ({suite})")
        # apt checks every download against the index's hashes
        run_logged(["apt-get", *apt.options(), "install", "--yes", "--download-only",
                    "--no-install-recommends", package], log, progress)
        plan = subprocess.run(
            ["apt-get", *apt.options(), "install", "--simulate", "--no-install-recommends",
             package], capture_output=True, text=True)
        if plan.returncode != 0:
            raise InfraError(f"apt-get install --simulate {package} exited {plan.returncode}")
        debs = [archives / name for name in deb_names(plan.stdout)]
        if not debs or not all(d.is_file() for d in debs):
            raise InfraError(f"apt did not leave the {len(debs)} .debs it listed")
        record.write_text(json.dumps({"suite": suite,
                                      "debs": {d.name: _sha256(d) for d in debs}}, indent=1))
        progress.done(f"{len(debs)} packages from {suite}")
        return debs

    return _from_some_suite(apt, f"{package}:{arch} with its dependencies", download, log,
                            progress)
