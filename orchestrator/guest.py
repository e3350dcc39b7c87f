"""Cross-compile guest-tests/ (one program per test, payload embedded) for the host.

The output directory's name hashes every source file and the toolchain,
so the binaries are rebuilt only when one of them changes. What is built
is packed into the host initramfs under image.GUEST_TESTS_DIR.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from orchestrator import image, kernel
from orchestrator.progress import Progress, run_logged

SOURCE_DIR = Path(__file__).resolve().parent.parent / "guest-tests"
PROGRAMS = ("counters", "isolation", "latency")


def _sources() -> list[Path]:
    return sorted(p for p in SOURCE_DIR.rglob("*")
                  if p.is_file() and "build" not in p.relative_to(SOURCE_DIR).parts)


def source_key(toolchain: str) -> str:
    digest = hashlib.sha256(toolchain.encode())
    for path in _sources():
        digest.update(str(path.relative_to(SOURCE_DIR)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build(cache_dir: Path, progress: Progress | None = None) -> dict[str, Path]:
    """Build (or reuse) the guest tests; return archive path -> built file."""
    progress = progress or Progress("guest-tests")
    out = cache_dir / "guest-tests" / source_key(kernel.toolchain_id())[:16]
    done = out / ".complete"
    if not done.is_file():
        out.mkdir(parents=True, exist_ok=True)
        progress.begin(f"make -C {SOURCE_DIR.name}")
        run_logged(["make", "-C", str(SOURCE_DIR), f"O={out}",
                    f"CROSS_COMPILE={kernel.CROSS_COMPILE}"], out / "build.log", progress)
        done.touch()
        progress.done(f"built in {out}")
    return {f"{image.GUEST_TESTS_DIR}/{name}": out / name for name in PROGRAMS}


def host_path(name: str) -> str:
    """Where a guest-test binary lives inside the booted host."""
    return f"/{image.GUEST_TESTS_DIR}/{name}"


def host_initramfs(cache_dir: Path) -> Path:
    """The host initramfs with the guest tests packed in."""
    return image.build_initramfs(cache_dir, build(cache_dir))
