"""The host initramfs: riscv64 busybox, the rig's /init, and test binaries.

The archive is written here in the kernel's "newc" cpio format, so no root
rights and no cpio tool are needed (a /dev/console node is an entry, not a
mknod). Its name hashes its inputs: it is rebuilt only when one changes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from orchestrator import cachefile, debian
from orchestrator.config import DATA_ROOT
from orchestrator.progress import Progress

INIT_SCRIPT = DATA_ROOT / "images" / "initramfs" / "init"
BUSYBOX_PACKAGE = "busybox-static"
# Where the guest-test programs go in the host.
GUEST_TESTS_DIR = "usr/lib/rig"

# /init makes no directories of its own (a fork each): they are here
_DIRS = ("bin", "sbin", "dev", "etc", "proc", "sys", "tmp", "usr", "usr/bin", "usr/sbin",
         "usr/lib", GUEST_TESTS_DIR)


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory, a regular file or a device node."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad(stream: BinaryIO, length: int) -> None:
    stream.write(b"\0" * (-length % 4))


def write_cpio(entries: list[Entry], stream: BinaryIO) -> None:
    """Write entries as a newc cpio archive (see the kernel's
    Documentation/driver-api/early-userspace/buffer-format.rst)."""
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = entry.name.encode() + b"\0"
        fields = [ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0,
                  entry.rdev[0], entry.rdev[1], len(name), 0]
        header = b"070701" + b"".join(b"%08x" % value for value in fields)
        stream.write(header + name)
        _pad(stream, len(header) + len(name))
        stream.write(entry.data)
        _pad(stream, len(entry.data))


def read_cpio(data: bytes) -> dict[str, Entry]:
    """Parse a newc archive (used to check what the rig packed)."""
    members: dict[str, Entry] = {}
    offset = 0
    while True:
        header = data[offset:offset + 110]
        if header[:6] != b"070701":
            raise ValueError(f"bad cpio magic at offset {offset}")
        fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        offset += 110
        name = data[offset:offset + namesize - 1].decode()
        offset += namesize + (-(110 + namesize) % 4)
        body = data[offset:offset + size]
        offset += size + (-size % 4)
        if name == "TRAILER!!!":
            return members
        members[name] = Entry(name, mode, body, (fields[9], fields[10]))


def host_entries(busybox: Path, extra: dict[str, Path], init: Path = INIT_SCRIPT) -> list[Entry]:
    """The archive's members: directories, /dev/console, busybox, /init, extras."""
    entries = [Entry(d, stat.S_IFDIR | 0o755) for d in _DIRS]
    entries.append(Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(Entry("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()))
    entries.append(Entry("init", stat.S_IFREG | 0o755, init.read_bytes()))
    # the unpacker creates no directories on its own: add the extras' parents
    known = set(_DIRS)
    for name in sorted(extra):
        parents = Path(name).parents
        for parent in reversed([str(p) for p in parents if str(p) != "."]):
            if parent not in known:
                known.add(parent)
                entries.append(Entry(parent, stat.S_IFDIR | 0o755))
    for name, source in sorted(extra.items()):
        entries.append(Entry(name, stat.S_IFREG | (source.stat().st_mode & 0o777),
                             source.read_bytes()))
    return entries


def busybox(cache_dir: Path, progress: Progress | None = None) -> Path:
    deb = debian.fetch(cache_dir, BUSYBOX_PACKAGE, progress=progress)
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    target = cache_dir / "initramfs" / f"busybox-{digest[:16]}"
    if not cachefile.usable(target, "busybox"):
        cachefile.seal(debian.extract(deb, "usr/bin/busybox", target))
    return target


def build_initramfs(cache_dir: Path, extra: dict[str, Path] | None = None,
                    progress: Progress | None = None, init: Path = INIT_SCRIPT,
                    kind: str = "host") -> Path:
    """Return the host initramfs (or, with another init, a guest's); extra maps
    archive paths to local files (e.g. f"{GUEST_TESTS_DIR}/counters")."""
    entries = host_entries(busybox(cache_dir, progress), extra or {}, init)
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(f"{entry.name}\0{entry.mode}\0{entry.rdev}\0".encode())
        digest.update(hashlib.sha256(entry.data).digest())
    out = cache_dir / "initramfs" / f"{kind}-{digest.hexdigest()[:16]}.cpio"
    if not cachefile.usable(out, "initramfs"):
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(f".{os.getpid()}.partial")  # runs may race on one name
        with partial.open("wb") as stream:
            write_cpio(entries, stream)
        partial.rename(out)
        cachefile.seal(out)
    return out
