"""The VMM that suite linux-guest runs inside each host: Debian's riscv64 QEMU.

Debian packages no kvmtool for riscv64, so the guest runs under
qemu-system-riscv64 from `qemu-system-riscv` (trixie or later), started in
the host with `-accel kvm -cpu host -M virt`. The rig fetches that package
and its dependency closure through its private apt (orchestrator.debian),
then assembles a flat tree holding only what the binary loads:

  bin/qemu-system-riscv64
  lib/<every shared library it needs, transitively>
  lib/ld-linux-riscv64-lp64d.so.1

The host runs it through the loader (`lib/ld-linux... --library-path lib`),
so the tree works wherever it is mounted. It is handed to the host over
virtio-9p, read-only, beside the guest's kernel and initramfs: the host
initramfs stays small. The tree's name hashes the .debs it came from, so the
same packages give the same tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

from orchestrator import cachefile, debian
from orchestrator.errors import InfraError
from orchestrator.progress import Progress

PACKAGE = "qemu-system-riscv"
BINARY = "usr/bin/qemu-system-riscv64"
LOADER = "ld-linux-riscv64-lp64d.so.1"
LIBRARY_DIRS = ("usr/lib/riscv64-linux-gnu", "lib/riscv64-linux-gnu", "usr/lib", "lib")


def needed(elf: Path) -> list[str]:
    """The DT_NEEDED names of an ELF file (readelf reads any architecture)."""
    out = subprocess.run(["readelf", "-d", str(elf)], capture_output=True, text=True, check=True)
    return [line.split("[", 1)[1].split("]", 1)[0]
            for line in out.stdout.splitlines() if "(NEEDED)" in line]


def _find(stage: Path, name: str) -> Path:
    for directory in LIBRARY_DIRS:
        candidate = stage / directory / name
        if candidate.exists():
            return candidate.resolve()
    raise InfraError(f"{name}, needed by {BINARY}, is in none of the fetched packages")


def library_closure(stage: Path, binary: Path) -> dict[str, Path]:
    """Every shared library binary loads, by soname, found in the extracted stage."""
    found: dict[str, Path] = {}
    pending = needed(binary)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found[name] = _find(stage, name)
        pending.extend(needed(found[name]))
    found.setdefault(LOADER, _find(stage, LOADER))
    return found


# the run's prefetch thread and a kernel's host_share may ask at the same time
_LOCK = threading.Lock()


def tree(cache_dir: Path, progress: Progress | None = None) -> Path:
    """The assembled VMM tree (built once per set of .debs)."""
    with _LOCK:
        return _tree(cache_dir, progress or Progress("vmm"))


def _tree(cache_dir: Path, progress: Progress) -> Path:
    debs = debian.fetch_closure(cache_dir, PACKAGE, progress=progress)
    digest = hashlib.sha256()
    for deb in sorted(debs):
        digest.update(deb.name.encode() + b"\0" + hashlib.sha256(deb.read_bytes()).digest())
    out = cache_dir / "vmm" / digest.hexdigest()[:16]
    binary = out / "bin" / Path(BINARY).name
    if cachefile.usable(binary, "VMM binary"):
        return out
    progress.begin(f"assemble {PACKAGE} from {len(debs)} packages")
    scratch = out.with_name(f".{out.name}.{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    stage = scratch / "stage"
    stage.mkdir(parents=True)
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(stage)], check=True)
    (scratch / "bin").mkdir()
    (scratch / "lib").mkdir()
    shutil.copy2(stage / BINARY, scratch / "bin")
    for name, path in sorted(library_closure(stage, stage / BINARY).items()):
        shutil.copy2(path, scratch / "lib" / name)
    shutil.rmtree(stage)
    cachefile.seal(scratch / "bin" / Path(BINARY).name)
    shutil.rmtree(out, ignore_errors=True)
    scratch.rename(out)
    progress.done(f"{out} ({sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) >> 20}"
                  " MiB)")
    return out


def command(root: str) -> str:
    """How the host starts the VMM from the tree mounted at root."""
    return (f"{root}/lib/{LOADER} --library-path {root}/lib "
            f"{root}/bin/{Path(BINARY).name}")
