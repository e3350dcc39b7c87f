"""Cross-compile guest-tests/ (one program per test, payload embedded) for the host:
the guest programs several suites run, built and packed in one place.

The output directory's name hashes every source file and the toolchain,
so the binaries are rebuilt only when one of them changes. What is built
is packed into the host initramfs under image.GUEST_TESTS_DIR.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from orchestrator import cachefile, image, kernel
from orchestrator.config import DATA_ROOT
from orchestrator.progress import Progress, run_logged

SOURCE_DIR = DATA_ROOT / "guest-tests"
# One program per C file at the top of guest-tests/ (with its payload in guest/<name>.c),
# and one per file in linux/ for a Linux guest's user space (suite linux-guest), built as
# linux-<name>: guest-tests/Makefile derives its TESTS and LINUX_TESTS the same way, so
# a suite's new program is a new file there and nothing else.
PROGRAMS = tuple(sorted(p.stem for p in SOURCE_DIR.glob("*.c")))
LINUX_PROGRAMS = tuple(sorted(f"linux-{p.stem}" for p in SOURCE_DIR.glob("linux/*.c")))


def _sources() -> list[Path]:
    """What the build reads: not the build output, nor the documentation (a README
    edit must not rebuild the programs and the initramfs)."""
    return sorted(p for p in SOURCE_DIR.rglob("*")
                  if p.is_file() and p.suffix != ".md"
                  and "build" not in p.relative_to(SOURCE_DIR).parts)


def source_key(toolchain: str) -> str:
    digest = hashlib.sha256(toolchain.encode())
    for path in _sources():
        digest.update(str(path.relative_to(SOURCE_DIR)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def built(cache_dir: Path, progress: Progress | None = None) -> Path:
    """The directory of every built program (built now if a source changed)."""
    progress = progress or Progress("guest-tests")
    out = cache_dir / "guest-tests" / source_key(kernel.toolchain_id())[:16]
    names = PROGRAMS + LINUX_PROGRAMS
    if not all(cachefile.usable(out / name, "guest-test program") for name in names):
        out.mkdir(parents=True, exist_ok=True)
        progress.begin(f"make -C {SOURCE_DIR.name}")
        run_logged(["make", "-B", "-C", str(SOURCE_DIR), f"O={out}",
                    f"CROSS_COMPILE={kernel.CROSS_COMPILE}"], out / "build.log", progress)
        for name in names:
            cachefile.seal(out / name)
        progress.done(f"built in {out}")
    return out


def build(cache_dir: Path, progress: Progress | None = None) -> dict[str, Path]:
    """Build (or reuse) the guest tests; return the host's archive path -> built file."""
    out = built(cache_dir, progress)
    return {f"{image.GUEST_TESTS_DIR}/{name}": out / name for name in PROGRAMS}


def host_path(name: str) -> str:
    """Where a guest-test binary lives inside the booted host."""
    return f"/{image.GUEST_TESTS_DIR}/{name}"


def host_initramfs(cache_dir: Path, extra: dict[str, Path] | None = None) -> Path:
    """The host initramfs with the guest tests packed in, and extra files (archive
    path -> local file) some suites need."""
    return image.build_initramfs(cache_dir, {**build(cache_dir), **(extra or {})})


def command(program: str, flags: str) -> str:
    """The host command line that runs one guest-test program (its payload is built in)."""
    return f"{host_path(program)} {flags}"


def parse_records(output: str) -> list[dict]:
    """A program's JSON lines (guest-tests/README.md); other console lines are ignored."""
    records = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
