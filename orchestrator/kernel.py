"""Kernel source, patches, configuration, build and cache.

Layout under the cache directory:

  trees/<source>/src     one git work tree per source (a Debian tarball is
                         committed once into a fresh repository; a user's
                         tree is cloned with --shared)
  trees/<source>/build   the O= build directory, shared by every kernel of
                         that source: switching kernels only switches the
                         patch stack, so make rebuilds just the touched
                         objects and relinks (ccache catches the rest)
  kernels/<name>-<key>/  Image, vmlinux, config, build.log, kernel.json
  ccache/                the compiler cache

A kernel's key hashes its source identity, patch and fragment contents and
the toolchain's version; a kernel is rebuilt only when one of them changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator import cachefile, debian
from orchestrator.config import DebianSource, GitSource, KernelSpec, RigConfig, Source
from orchestrator.errors import BadInput, InfraError
from orchestrator.progress import Progress, run_logged

ARCH = "riscv"
CROSS_COMPILE = "riscv64-linux-gnu-"
# Bump when the build recipe below changes in a way that changes the output.
RECIPE_VERSION = 1
# Fixed build stamps: the same inputs give the same banner and ccache hits.
BUILD_STAMP = {
    "KBUILD_BUILD_TIMESTAMP": "riscv-kvm-rig",
    "KBUILD_BUILD_USER": "rig",
    "KBUILD_BUILD_HOST": "rig",
}


@dataclass(frozen=True)
class BuiltKernel:
    name: str
    key: str
    image: Path
    vmlinux: Path
    config: Path
    build_log: Path
    build_seconds: float
    cached: bool
    source: str
    patches: dict[str, str]  # file name -> sha256
    config_sha256: str
    toolchain: str
    release: str  # the kernel's own include/config/kernel.release (what `uname -r` prints)
    # fragment options this kernel's Kconfig does not have (FragmentOption as a dict)
    dropped_options: tuple[dict, ...] = ()

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("image", "vmlinux", "config", "build_log"):
            data[key] = str(data[key])
        return data


def _git(tree: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(tree), *args], capture_output=True, text=True, check=check
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def toolchain_id() -> str:
    """The cross compiler and linker versions, which are part of every key."""
    lines = []
    for tool in ("gcc", "ld"):
        exe = CROSS_COMPILE + tool
        if shutil.which(exe) is None:
            raise InfraError(f"missing tool {exe} (run 'orchestrator setup')")
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
        lines.append(out.stdout.splitlines()[0])
    return "; ".join(lines)


_debian_sources: dict[tuple[Path, str, str | None], debian.KernelSourcePackage] = {}
_debian_lock = threading.Lock()


def debian_source(source: DebianSource, rig: RigConfig) -> debian.KernelSourcePackage:
    """The package version a Debian source names, resolved once per process (every
    kernel of a run builds the same version)."""
    key = (rig.cache_dir, source.debian_package, source.version)
    with _debian_lock:
        if key not in _debian_sources:
            _debian_sources[key] = debian.kernel_source(
                rig.cache_dir, source.debian_package, source.version,
                Progress(f"source {source.name}"))
        return _debian_sources[key]


def source_id(source: Source, rig: RigConfig) -> str:
    """What identifies a source's content: package and version, or commit id."""
    if isinstance(source, DebianSource):
        return debian_source(source, rig).identity
    resolved = _git(source.git, "rev-parse", "--verify", "--quiet", f"{source.ref}^{{commit}}",
                    check=False)
    if resolved.returncode != 0:
        raise BadInput(f"{rig.path}: sources.{source.name}.ref: {source.ref!r}"
                       f" is not a commit in {source.git}")
    return f"git:{resolved.stdout.strip()}"


def kernel_key(src_id: str, spec: KernelSpec, toolchain: str) -> str:
    recipe = {
        "recipe": RECIPE_VERSION,
        "source": src_id,
        "patches": [_sha256(p) for p in spec.patches],
        "config": [_sha256(p) for p in spec.config],
        "toolchain": toolchain,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def output_dir(rig: RigConfig, spec: KernelSpec, key: str) -> Path:
    return rig.cache_dir / "kernels" / f"{spec.name}-{key[:16]}"


ARTEFACT_FIELDS = ("image", "vmlinux", "config", "build_log")
CHECKED_FIELDS = ("image", "vmlinux")  # what a boot and the CSR check read


def save_record(out: Path, kernel: BuiltKernel) -> None:
    """kernel.json, written last: its presence marks a complete build. It names
    files relative to out and records the fingerprints of Image and vmlinux."""
    data = kernel.to_json()
    for key in ARTEFACT_FIELDS:
        data[key] = Path(data[key]).name
    data["fingerprints"] = {key: cachefile.fingerprint(getattr(kernel, key))
                            for key in CHECKED_FIELDS}
    (out / "kernel.json").write_text(json.dumps(data, indent=2) + "\n")


def load_cached(out: Path) -> BuiltKernel | None:
    """The cached kernel in out, or None when there is none or it is damaged."""
    record = out / "kernel.json"
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    fingerprints = data.pop("fingerprints", None)
    for key in ARTEFACT_FIELDS:  # older records hold absolute paths: keep the name
        data[key] = out / Path(data[key]).name
    data["cached"] = True
    try:
        kernel = BuiltKernel(**data)
    except TypeError:  # written by an older rig that did not record every field: rebuild
        return None
    if fingerprints is None:  # made before fingerprints were kept: nothing vouches for it
        return None
    for key in CHECKED_FIELDS:
        if not cachefile.intact(getattr(kernel, key), fingerprints[key]):
            cachefile.damaged(f"cached kernel {kernel.name}:", getattr(kernel, key))
            return None
    return kernel


class _Tree:
    """A source's work tree and build directory, used under an exclusive lock."""

    def __init__(self, rig: RigConfig, source: Source, src_id: str) -> None:
        self.rig = rig
        self.root = rig.cache_dir / "trees" / source.name
        self.src = self.root / "src"
        self.build = self.root / "build"
        self.source = source
        self.src_id = src_id
        self.ccache = rig.cache_dir / "ccache"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def base_commit(self, progress: Progress, log: Path) -> str:
        """Make sure the work tree exists; return the commit to patch on top of."""
        if isinstance(self.source, GitSource):
            # --shared borrows the user's objects; re-clone if they are not the ones borrowed
            objects = _git(self.source.git, "rev-parse", "--path-format=absolute",
                           "--git-path", "objects").stdout.strip()
            alternates = self.src / ".git" / "objects" / "info" / "alternates"
            if not alternates.is_file() or alternates.read_text().strip() != objects:
                shutil.rmtree(self.src, ignore_errors=True)
                progress.begin(f"clone --shared {self.source.git}")
                run_logged(["git", "clone", "--quiet", "--shared", "--no-checkout",
                            str(self.source.git), str(self.src)], log, progress)
            return self.src_id.removeprefix("git:")
        marker = self.root / "base.json"
        if marker.is_file():
            state = json.loads(marker.read_text())
            if state.get("source") == self.src_id and (self.src / ".git").exists():
                return state["commit"]
        self._import_tarball(progress, log)
        commit = _git(self.src, "rev-parse", "HEAD").stdout.strip()
        marker.write_text(json.dumps({"source": self.src_id, "commit": commit}))
        return commit

    def _import_tarball(self, progress: Progress, log: Path) -> None:
        assert isinstance(self.source, DebianSource)
        tarball = debian_source(self.source, self.rig).tarball
        for stale in (self.src, self.build):
            shutil.rmtree(stale, ignore_errors=True)
        self.src.mkdir(parents=True)
        progress.begin(f"extract {tarball.name}")
        run_logged(["tar", "-xf", str(tarball), "--strip-components=1",
                    "-C", str(self.src)], log, progress)
        # --force: Debian's top-level .gitignore ignores everything but debian/
        progress.begin("commit the pristine tree")
        ident = ["-c", "user.name=riscv-kvm-rig", "-c", "user.email=rig@localhost",
                 "-c", "gc.auto=0", "-c", "core.autocrlf=false"]
        run_logged(["git", "-C", str(self.src), "init", "--quiet"], log, progress)
        run_logged(["git", "-C", str(self.src), *ident, "add", "--all", "--force"], log, progress)
        run_logged(["git", "-C", str(self.src), *ident, "commit", "--quiet", "--no-verify",
                    "-m", self.src_id], log, progress)

    def checkout(self, commit: str, patches: tuple[Path, ...], progress: Progress,
                 log: Path) -> None:
        """Reset the work tree to commit, then apply the patch stack in order.

        git rewrites only the files that differ, so make sees only those as new.
        """
        progress.begin(f"checkout {commit[:12]} + {len(patches)} patch(es)")
        run_logged(["git", "-C", str(self.src), "checkout", "--quiet", "--force", "--detach",
                    commit], log, progress)
        # -x is safe: this is the rig's own clone and builds go to O=
        run_logged(["git", "-C", str(self.src), "clean", "--quiet", "-fdx"], log, progress)
        for patch in patches:
            check = _git(self.src, "apply", "--check", str(patch), check=False)
            if check.returncode != 0:
                reason = (check.stderr.strip().splitlines() or ["git apply failed"])[0]
                raise BadInput(f"{patch}: does not apply to {self.src_id}"
                               f" with the patches before it: {reason}")
            run_logged(["git", "-C", str(self.src), "apply", str(patch)], log, progress)

    def make_command(self, jobs: int, *targets: str) -> list[str]:
        compiler = f"{CROSS_COMPILE}gcc"
        if shutil.which("ccache"):
            compiler = f"ccache {compiler}"
        return ["make", "-C", str(self.src), f"O={self.build}", f"ARCH={ARCH}",
                f"CROSS_COMPILE={CROSS_COMPILE}", f"CC={compiler}", f"-j{jobs}", *targets]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ, **BUILD_STAMP)
        env.update(CCACHE_DIR=str(self.ccache), CCACHE_BASEDIR=str(self.root),
                   CCACHE_NOHASHDIR="1", CCACHE_MAXSIZE=env.get("CCACHE_MAXSIZE", "5G"))
        return env


def pristine_tree(rig: RigConfig, source: DebianSource,
                  progress: Progress | None = None) -> tuple[Path, str]:
    """The rig's git tree of a Debian kernel source and its pristine commit."""
    progress = progress or Progress(f"source {source.name}")
    tree = _Tree(rig, source, source_id(source, rig))
    with tree.locked():
        commit = tree.base_commit(progress, tree.root / "import.log")
    return tree.src, commit


@dataclass(frozen=True)
class FragmentOption:
    symbol: str  # CONFIG_X
    value: str  # 'n' for '# CONFIG_X is not set'
    fragment: str  # the fragment's file name
    needed_by: tuple[str, ...] = ()  # suites that cannot run without it

    def line(self) -> str:
        needed = f" (needed by {', '.join(self.needed_by)})" if self.needed_by else ""
        return f"{self.fragment}: {self.symbol}={self.value}{needed}"


_NEEDED_BY = re.compile(r"#\s*needed by:\s*(.+)")


def _fragment_symbols(fragment: Path) -> dict[str, FragmentOption]:
    """CONFIG_X -> what the fragment asks for it. A comment line `# needed by: SUITE,
    ...` marks the options after it, up to the next blank line, as needed by those
    suites."""
    wanted = {}
    needed_by: tuple[str, ...] = ()
    for line in fragment.read_text().splitlines():
        line = line.strip()
        if not line:
            needed_by = ()
            continue
        marker = _NEEDED_BY.fullmatch(line)
        if marker:
            needed_by = tuple(s.strip() for s in marker.group(1).split(",") if s.strip())
            continue
        unset = re.fullmatch(r"# (CONFIG_\w+) is not set", line)
        if unset:
            wanted[unset.group(1)] = FragmentOption(unset.group(1), "n", fragment.name,
                                                    needed_by)
        elif line.startswith("CONFIG_") and "=" in line:
            symbol, value = line.split("=", 1)
            wanted[symbol] = FragmentOption(symbol, value, fragment.name, needed_by)
    return wanted


def check_config(final_config: Path, fragments: tuple[Path, ...],
                 in_kconfig: Callable[[str], bool]) -> list[FragmentOption]:
    """Every symbol a fragment sets must survive olddefconfig unchanged; one this
    kernel's Kconfig no longer has (in_kconfig says, e.g. PROC_SYSCTL in 7.x) is
    returned instead, for the run to report (and to stop the suites needing it)."""
    final = {}
    for line in final_config.read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            symbol, value = line.split("=", 1)
            final[symbol] = value
    dropped = []
    for fragment in fragments:
        for symbol, option in _fragment_symbols(fragment).items():
            got = final.get(symbol, "n")
            if got == option.value:
                continue
            if not in_kconfig(symbol):
                dropped.append(option)
                continue
            raise BadInput(f"{fragment}: {symbol}={option.value} did not survive olddefconfig"
                           f" (final .config has {symbol}={got}); check its dependencies")
    return dropped


def unmet_needs(built: BuiltKernel, suites: list[str]) -> dict[str, str]:
    """suite -> why it cannot run on built: a fragment option it needs that the
    kernel's Kconfig dropped."""
    unmet: dict[str, str] = {}
    for recorded in built.dropped_options:
        option = FragmentOption(**{**recorded, "needed_by": tuple(recorded["needed_by"])})
        for suite in set(option.needed_by) & set(suites):
            unmet.setdefault(suite, f"{option.line()}: not in {built.release}'s Kconfig")
    return unmet


def kconfig_knows(tree: Path) -> Callable[[str], bool]:
    """Whether a Kconfig file of tree defines the symbol (CONFIG_X)."""
    def knows(symbol: str) -> bool:
        name = symbol.removeprefix("CONFIG_")
        found = _git(tree, "grep", "-q", "-E", f"^[[:space:]]*(menu)?config {name}[[:space:]]*$",
                     "--", "*Kconfig*", check=False)
        return found.returncode == 0
    return knows


def build(rig: RigConfig, spec: KernelSpec, progress: Progress | None = None,
          timeout: float | None = None) -> BuiltKernel:
    """Return the built kernel for spec, building it only if it is not cached;
    the compile step may take timeout seconds (default: rig.yaml timeouts.build)."""
    progress = progress or Progress(f"kernel {spec.name}")
    toolchain = toolchain_id()
    src_id = source_id(spec.source, rig)
    key = kernel_key(src_id, spec, toolchain)
    out = output_dir(rig, spec, key)
    cached = load_cached(out)
    if cached:
        progress.done(f"cached ({key[:16]}), built in {cached.build_seconds:.0f}s")
        return cached

    tree = _Tree(rig, spec.source, src_id)
    started = time.monotonic()
    with tree.locked():
        cached = load_cached(out)  # another run may have built it while we waited
        if cached:
            progress.done(f"built meanwhile by another run ({key[:16]})")
            return cached
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        log = out / "build.log"
        commit = tree.base_commit(progress, log)
        tree.checkout(commit, spec.patches, progress, log)
        tree.build.mkdir(exist_ok=True)
        env = tree.environment()
        progress.begin("configure: tinyconfig + " + ", ".join(p.name for p in spec.config))
        run_logged(tree.make_command(1, "tinyconfig"), log, progress, env=env)
        if spec.config:
            run_logged([str(tree.src / "scripts/kconfig/merge_config.sh"), "-m",
                        "-O", str(tree.build), str(tree.build / ".config"),
                        *map(str, spec.config)], log, progress, cwd=tree.src, env=env)
        run_logged(tree.make_command(1, "olddefconfig"), log, progress, env=env)
        dropped = check_config(tree.build / ".config", spec.config, kconfig_knows(tree.src))
        for option in dropped:
            progress.done(f"warning: {option.line()}: not in this kernel's Kconfig")
        progress.begin(f"make -j{rig.build_jobs} Image")
        run_logged(tree.make_command(rig.build_jobs, "Image"), log, progress, env=env,
                   timeout=timeout or rig.timeouts.build)
        for artefact, name in (("arch/riscv/boot/Image", "Image"), ("vmlinux", "vmlinux"),
                               (".config", "config")):
            shutil.copy2(tree.build / artefact, out / name)
        release = (tree.build / "include/config/kernel.release").read_text().strip()

    kernel = BuiltKernel(
        name=spec.name, key=key, image=out / "Image", vmlinux=out / "vmlinux",
        config=out / "config", build_log=out / "build.log",
        build_seconds=round(time.monotonic() - started, 1), cached=False, source=src_id,
        patches={p.name: _sha256(p) for p in spec.patches},
        config_sha256=_sha256(out / "config"), toolchain=toolchain, release=release,
        dropped_options=tuple(asdict(option) for option in dropped),
    )
    save_record(out, kernel)
    progress.done(f"built in {kernel.build_seconds:.0f}s -> {kernel.image}")
    return kernel
