"""Debian packages for another architecture, fetched without touching the
machine's apt setup.

riscv64 packages (busybox-static) come from a private apt configuration
under the cache directory: its own sources list, lists and archive cache.
The mirror is the Debian archive this machine's apt already uses. Suites
are tried in order, because a suite's index can be caught mid-sync (apt
then reports a size mismatch).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from orchestrator import cachefile
from orchestrator.errors import BadInput, InfraError
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
        self.use_suites(mirror, (suite,))

    def use_suites(self, mirror: str, suites: tuple[str, ...]) -> None:
        for sub in ("lists/partial", "cache/archives/partial", "debs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # an empty dpkg status: nothing counts as installed, so apt resolves whole
        # dependency closures (fetch_closure)
        (self.root / "status").write_text("")
        self.sources.write_text("".join(
            f"deb [arch={self.arch} signed-by={KEYRING}] {mirror} {suite} main\n"
            for suite in suites))

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


# -- kernel source packages (linux-source-X.Y, arch all) from any Debian suite ----

# Codenames, not aliases (stable-backports, ...): a mirror may serve an alias's
# index weeks behind its codename's. The security archive is left out: its
# updates reach a host of that release through the host's own apt.
KERNEL_SOURCE_SUITES = ("bookworm-backports", "trixie", "trixie-backports", "forky", "sid")


@dataclass(frozen=True)
class KernelSourcePackage:
    """One version of a Debian kernel source package and its tarball on disk."""

    package: str
    version: str
    tarball: Path

    @property
    def identity(self) -> str:
        return f"{self.package}={self.version}"


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def installed_version(package: str) -> str | None:
    """The version of package the host's dpkg has installed, or None."""
    query = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package],
                           capture_output=True, text=True)
    status = query.stdout.split()
    if query.returncode != 0 or status[:3] != ["install", "ok", "installed"]:
        return None
    return status[3]


def newest_first(versions: list[str]) -> list[str]:
    """Debian versions, newest first (dpkg's ordering: 7.3.4-1~bpo13+1 < 7.3.4-1)."""
    def compare(a: str, b: str) -> int:
        if a == b:
            return 0
        newer = subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0
        return -1 if newer else 1
    return sorted(versions, key=functools.cmp_to_key(compare))


def offered_versions(apt: ForeignApt, package_pattern: str,
                     version_pattern: str | None) -> list[tuple[str, str]]:
    """(package, version) pairs the private apt's suites offer that match the
    patterns (fnmatch), newest version first."""
    prefix = re.split(r"[*?\[]", package_pattern, maxsplit=1)[0]
    names = subprocess.run(["apt-cache", *apt.options(), "pkgnames", prefix],
                           capture_output=True, text=True).stdout.split()
    offered = []
    for name in sorted(n for n in set(names) if fnmatch.fnmatchcase(n, package_pattern)):
        madison = subprocess.run(["apt-cache", *apt.options(), "madison", name],
                                 capture_output=True, text=True).stdout
        for line in madison.splitlines():
            fields = [f.strip() for f in line.split("|")]
            if len(fields) == 3 and fields[0] == name and (
                    version_pattern is None or fnmatch.fnmatchcase(fields[1], version_pattern)):
                offered.append((name, fields[1]))
    by_version = {version: name for name, version in offered}
    return [(by_version[v], v) for v in newest_first(list(by_version))]


def _extract_tarball(deb: Path, package: str, dest: Path) -> Path:
    """usr/src/<package>.tar.xz out of deb, to dest (whole, then renamed)."""
    return extract(deb, f"usr/src/{package}.tar.xz", dest)


def kernel_source(cache_dir: Path, package_pattern: str, version_pattern: str | None,
                  progress: Progress | None = None) -> KernelSourcePackage:
    """The kernel source package a rig.yaml source names, on disk.

    An exact name the host has installed (what `orchestrator setup` installs) is
    taken from /usr/src. Anything else comes from the private apt's Debian suites:
    the newest version matching the patterns. Each call refreshes the indices
    (apt fetches only what changed), so a nightly sees a new upload; offline, the
    last resolution of the same patterns is reused.
    """
    exact = not re.search(r"[*?\[]", package_pattern) and version_pattern is None
    if exact and (version := installed_version(package_pattern)):
        tarball = Path("/usr/src") / f"{package_pattern}.tar.xz"
        if tarball.is_file():
            return KernelSourcePackage(package_pattern, version, tarball)

    progress = progress or Progress(f"Debian {package_pattern}")
    apt = ForeignApt(cache_dir / "apt-kernel-sources", host_arch())
    apt.root.mkdir(parents=True, exist_ok=True)
    wanted = f"{package_pattern} {version_pattern or ''}".strip()
    memo = apt.root / f"resolved-{hashlib.sha256(wanted.encode()).hexdigest()[:16]}.json"
    log = apt.root / "apt.log"
    apt.use_suites(debian_mirror(), KERNEL_SOURCE_SUITES)
    progress.begin(f"apt-get update ({', '.join(KERNEL_SOURCE_SUITES)})")
    try:
        # no --error-on=any: a suite caught mid-sync or signed by a key this host's
        # keyring lacks is left out (its index is not trusted), the others count
        run_logged(["apt-get", *apt.options(), "update"], log, progress)
        offered = offered_versions(apt, package_pattern, version_pattern)
    except InfraError as exc:
        offered = []
        progress.done(f"apt-get update failed: {exc.message}")
    if not offered:
        if memo.is_file():
            known = json.loads(memo.read_text())
            tarball = Path(known["tarball"])
            if tarball.is_file() and _sha256(tarball) == known["sha256"]:
                progress.done(f"offline: {known['package']}={known['version']} as last resolved")
                return KernelSourcePackage(known["package"], known["version"], tarball)
        raise BadInput(f"debian_package {wanted}: no Debian suite of"
                       f" {', '.join(KERNEL_SOURCE_SUITES)} offers it (see {log})")
    package, version = offered[0]
    found = _fetch_kernel_source(apt, package, version, log, progress)
    memo.write_text(json.dumps({"package": package, "version": version,
                                "tarball": str(found.tarball),
                                "sha256": _sha256(found.tarball)}))
    return found


def _fetch_kernel_source(apt: ForeignApt, package: str, version: str, log: Path,
                         progress: Progress) -> KernelSourcePackage:
    """package=version's tarball under the private apt's root, downloaded once."""
    home = apt.root / "sources" / f"{package}_{version.replace(':', '%3a')}"
    tarball = home / f"{package}.tar.xz"
    record = home / "source.json"
    if record.is_file() and tarball.is_file():
        if _sha256(tarball) == json.loads(record.read_text())["tarball_sha256"]:
            return KernelSourcePackage(package, version, tarball)
        cachefile.damaged(f"{package}={version}", tarball)
    home.mkdir(parents=True, exist_ok=True)
    debs = apt.root / "debs"
    for old in debs.glob("*.deb"):
        old.unlink()
    progress.begin(f"apt-get download {package}={version}")
    # apt checks the download against the signed index's SHA256
    run_logged(["apt-get", *apt.options(), "download", f"{package}={version}"], log, progress,
               cwd=debs)
    deb = next(debs.glob(f"{package}_*.deb"))
    progress.begin(f"extract {package}.tar.xz")
    _extract_tarball(deb, package, tarball)
    deb.unlink()  # the tarball is what is kept
    record.write_text(json.dumps({"package": package, "version": version,
                                  "tarball_sha256": _sha256(tarball)}))
    progress.done(f"{package} {version}")
    return KernelSourcePackage(package, version, tarball)
