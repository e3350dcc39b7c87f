"""Build the kernel's own KVM selftests (tools/testing/selftests/kvm) for a host kernel.

They come from the same tree, commit and patch stack as the kernel they
run on: `make headers` (the exported uapi headers, into a build directory
of their own, so no rsync and no write into the kernel's O= directory),
then the selftests' Makefile, cross-compiled and linked static.

The output is cached by content: the key hashes the git blobs of every
path the build reads (KEY_PATHS) at the source's base commit, the parts
of the kernel's patches that touch those paths, and the toolchain. A
patch to arch/riscv/kvm/ or a bisect step that leaves the selftests and
uapi headers alone reuses the binaries without taking the tree's lock.

Layout: kselftest-kvm/<key16>/ holds the Makefile's OUTPUT (programs under
their Makefile names, e.g. riscv/sbi_pmu_test), build.log and programs.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import kernel
from orchestrator.config import KernelSpec, RigConfig
from orchestrator.errors import InfraError
from orchestrator.progress import Progress, TimedOut, run_logged

SELFTESTS = "tools/testing/selftests/kvm"
# Everything the selftests' build reads from the tree (their Makefile's -I
# paths, lib.mk, the kselftest headers) and what `make headers` exports.
KEY_PATHS = (
    SELFTESTS,
    "tools/testing/selftests/lib.mk",
    "tools/testing/selftests/kselftest.h",
    "tools/testing/selftests/kselftest_harness.h",
    "tools/testing/selftests/rseq",
    "tools/include",
    "tools/arch/riscv",
    "tools/build",
    "scripts/subarch.include",
    "include/uapi",
    f"arch/{kernel.ARCH}/include/uapi",
    "scripts/headers_install.sh",
    "scripts/Makefile.headersinst",
    "scripts/unifdef.c",
)
# Bump when the recipe below changes what is built.
RECIPE_VERSION = 1
_DIFF_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class BuiltSelftests:
    key: str
    directory: Path
    programs: tuple[str, ...]  # Makefile names, e.g. "riscv/sbi_pmu_test"
    build_seconds: float
    cached: bool
    # programs of the Makefile that did not build -> the compiler's first error
    failed: dict[str, str] = field(default_factory=dict)

    def path(self, program: str) -> Path:
        return self.directory / program


def _touches(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in KEY_PATHS)


def relevant_patch_text(patch: str) -> str:
    """The sections of a git patch that change a KEY_PATHS file (renames count)."""
    starts = [m.start() for m in _DIFF_FILE.finditer(patch)] + [len(patch)]
    kept = []
    for begin, end in zip(starts, starts[1:], strict=False):
        section = patch[begin:end]
        match = _DIFF_FILE.match(section)
        assert match
        if _touches(match.group(1)) or _touches(match.group(2)):
            kept.append(section)
    return "".join(kept)


def selftests_key(blobs: str, patches: list[str], toolchain: str) -> str:
    """blobs: `git ls-tree -r` of KEY_PATHS at the base; patches: their texts."""
    digest = hashlib.sha256(json.dumps({"recipe": RECIPE_VERSION, "toolchain": toolchain})
                            .encode())
    digest.update(blobs.encode())
    for text in patches:
        relevant = relevant_patch_text(text)
        if relevant:  # a patch that touches none of KEY_PATHS leaves the key alone
            digest.update(hashlib.sha256(relevant.encode()).digest())
    return digest.hexdigest()


def _base_blobs(tree: kernel._Tree, progress: Progress) -> tuple[str, str]:
    """The base commit and the blob listing of KEY_PATHS at it."""
    log = tree.root / "kselftest-import.log"
    with tree.locked():  # the first use of a source imports or clones it
        commit = tree.base_commit(progress, log)
    listing = kernel._git(tree.src, "ls-tree", "-r", commit, "--", *KEY_PATHS, check=False)
    if listing.returncode != 0 or SELFTESTS not in listing.stdout:
        raise InfraError(f"{tree.source.name} at {commit[:12]} has no {SELFTESTS}")
    return commit, listing.stdout


def build(rig: RigConfig, spec: KernelSpec, progress: Progress | None = None,
          timeout: float | None = None) -> BuiltSelftests:
    """The selftests for spec's tree, built unless a build with the same key is cached."""
    progress = progress or Progress(f"kselftest-kvm {spec.name}")
    toolchain = kernel.toolchain_id()
    tree = kernel._Tree(rig, spec.source, kernel.source_id(spec.source, rig))
    commit, blobs = _base_blobs(tree, progress)
    key = selftests_key(blobs, [p.read_text(errors="replace") for p in spec.patches], toolchain)
    out = rig.cache_dir / "kselftest-kvm" / key[:16]
    record = out / "programs.json"
    if record.is_file():
        data = json.loads(record.read_text())
        progress.done(f"cached ({key[:16]}), built in {data['build_seconds']:.0f}s")
        return BuiltSelftests(key, out, tuple(data["programs"]), data["build_seconds"], True,
                              data.get("failed", {}))

    with tree.locked():
        started = time.monotonic()  # the wait for another build's lock does not count
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        log = out / "build.log"
        tree.checkout(commit, spec.patches, progress, log)
        headers = tree.root / "kselftest-headers"
        env = tree.environment()
        progress.begin("make headers")
        run_logged(["make", "-C", str(tree.src), f"O={headers}", f"ARCH={kernel.ARCH}",
                    f"CROSS_COMPILE={kernel.CROSS_COMPILE}", "headers"], log, progress,
                   env=env, timeout=timeout)
        # LDFLAGS from the environment: the Makefile appends to it (a command-line
        # value would replace its -pthread); it does not read USERLDFLAGS.
        env = dict(env, LDFLAGS="-static")
        progress.begin(f"make -k -C {SELFTESTS} -j{rig.build_jobs}")
        # -k: a program that does not build (e.g. a newer tree's test the cross
        # compiler rejects) leaves the others to build; each is judged below
        make = ["make", "-k", "-C", str(tree.src / SELFTESTS), f"ARCH={kernel.ARCH}",
                f"CROSS_COMPILE={kernel.CROSS_COMPILE}", f"OUTPUT={out}",
                f"KHDR_INCLUDES=-isystem {headers / 'usr' / 'include'}", f"-j{rig.build_jobs}"]
        try:
            run_logged(make, log, progress, env=env, timeout=timeout)
        except TimedOut:
            raise
        except InfraError:
            pass  # what did not build is judged program by program below
        wanted = _list_programs(tree.src / SELFTESTS, out, env)
        programs, failed = _built_programs(wanted, out, log.read_text(errors="replace"))
        if not programs:
            raise InfraError(f"kselftest build: no program built; see {log}")
    seconds = round(time.monotonic() - started, 1)
    record.write_text(json.dumps({"key": key, "programs": programs, "failed": failed,
                                  "build_seconds": seconds, "toolchain": toolchain},
                                 indent=2) + "\n")
    progress.done(f"{len(programs)} programs built, {len(failed)} did not, in {seconds:.0f}s"
                  f" -> {out}")
    return BuiltSelftests(key, out, tuple(programs), seconds, False, failed)


def _built_programs(wanted: list[str], out: Path, log_text: str
                    ) -> tuple[list[str], dict[str, str]]:
    """(the programs built as ELF files, {program: why not} for the others)."""
    built, failed = [], {}
    for program in wanted:
        binary = out / program
        if binary.is_file() and binary.read_bytes()[:4] == b"\x7fELF":
            built.append(program)
        else:
            failed[program] = first_error(log_text, program)
    return built, failed


def first_error(log_text: str, program: str) -> str:
    """The compiler's first error about program's source, else the log's first error."""
    errors = [line.strip() for line in log_text.splitlines() if re.search(r"\berror\b", line)]
    stem = program.rsplit("/", 1)[-1]
    mine = [e for e in errors if f"{stem}.c" in e or f"{stem}.o" in e]
    return ((mine or errors or ["not built (no error in the build log)"])[0])[:300]


def _list_programs(source: Path, out: Path, env: dict[str, str]) -> list[str]:
    """The Makefile's TEST_GEN_PROGS for riscv."""
    query = subprocess.run(["make", "-s", "-C", str(source), f"ARCH={kernel.ARCH}",
                            f"CROSS_COMPILE={kernel.CROSS_COMPILE}", f"OUTPUT={out}",
                            "--eval=print-progs: ; @echo $(TEST_GEN_PROGS)", "print-progs"],
                           env=env, capture_output=True, text=True)
    if query.returncode != 0:
        raise InfraError(f"kselftest build: cannot list the programs: {query.stderr[-500:]}")
    return [os.path.relpath(p, out) for p in query.stdout.split()]
