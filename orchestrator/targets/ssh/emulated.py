"""An emulated host reachable over SSH: dropbear in the initramfs, QEMU user networking.

`orchestrator boot --ssh` and the ssh-target integration test boot the
rig's host this way. Three newc archives are concatenated (the kernel
unpacks them in order):
- the usual host initramfs (orchestrator.image), unchanged, so boots
  without SSH stay small;
- the SSH add-on, cached by content: Debian riscv64 dropbear-bin, the
  shared libraries it loads, OpenSSH's sftp-server (dropbear serves SFTP by
  running it) and a passwd file for root;
- per boot: a fresh ed25519 host key (dropbear's own key format) and the
  authorized key of a fresh client key. Both live in the boot's directory
  under the results directory; nothing here is ever committed.

The /init brings up eth0 and starts dropbear when the kernel command line
has `rig.ssh`. QEMU forwards one port of 127.0.0.1 (never another address)
to the host's port 22.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from orchestrator import cachefile, debian
from orchestrator.image import Entry, write_cpio
from orchestrator.progress import Progress
from orchestrator.targets.ssh.entry import SshEntry

KERNEL_ARG = "rig.ssh"
MULTIARCH = "usr/lib/riscv64-linux-gnu"
# archive path -> (Debian riscv64 package, path in the package)
FILES = {
    "usr/sbin/dropbear": ("dropbear-bin", "usr/sbin/dropbear"),
    # dropbear runs this for the "sftp" subsystem (its compiled-in path)
    "usr/lib/sftp-server": ("openssh-sftp-server", "usr/lib/openssh/sftp-server"),
    # the program interpreter dropbear asks for
    "lib/ld-linux-riscv64-lp64d.so.1": ("libc6", f"{MULTIARCH}/ld-linux-riscv64-lp64d.so.1"),
    f"{MULTIARCH}/libc.so.6": ("libc6", f"{MULTIARCH}/libc.so.6"),
    f"{MULTIARCH}/libcrypt.so.1": ("libcrypt1", f"{MULTIARCH}/libcrypt.so.1"),
    f"{MULTIARCH}/libtomcrypt.so.1": ("libtomcrypt1", f"{MULTIARCH}/libtomcrypt.so.1"),
    f"{MULTIARCH}/libtommath.so.1": ("libtommath1", f"{MULTIARCH}/libtommath.so.1"),
    f"{MULTIARCH}/libgmp.so.10": ("libgmp10", f"{MULTIARCH}/libgmp.so.10"),  # libtomcrypt's
    f"{MULTIARCH}/libz.so.1": ("zlib1g", f"{MULTIARCH}/libz.so.1"),
}
PACKAGES = tuple(dict.fromkeys(package for package, _ in FILES.values()))
_DIRS = ("lib", "usr/sbin", "usr/lib/riscv64-linux-gnu", "etc", "etc/dropbear")
_ETC = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": b"root:x:0:\n",
    "etc/shells": b"/bin/sh\n",
}
HOST_KEY = "etc/dropbear/dropbear_ed25519_host_key"


def addon_entries(debs: dict[str, Path], scratch: Path) -> list[Entry]:
    """The SSH add-on's members, from the packages' .debs unpacked under scratch
    (library symlinks resolved to their files)."""
    for package, deb in debs.items():
        subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch / package)], check=True)
    entries = [Entry(d, stat.S_IFDIR | 0o755) for d in _DIRS]
    for name, (package, member) in FILES.items():
        entries.append(Entry(name, stat.S_IFREG | 0o755, (scratch / package / member).read_bytes()))
    entries += [Entry(name, stat.S_IFREG | 0o644, data) for name, data in _ETC.items()]
    return entries


def addon_cpio(cache_dir: Path, progress: Progress | None = None) -> Path:
    """The SSH add-on archive, named by what goes in (the checked .debs, the file
    list) and sealed like the rig's other cache entries (orchestrator.cachefile)."""
    debs = {package: debian.fetch(cache_dir, package, progress=progress) for package in PACKAGES}
    recipe = {"files": FILES, "etc": {name: data.decode() for name, data in _ETC.items()},
              "debs": {package: hashlib.sha256(deb.read_bytes()).hexdigest()
                       for package, deb in debs.items()}}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    out = cache_dir / "initramfs" / f"ssh-{digest[:16]}.cpio"
    if not cachefile.usable(out, "ssh initramfs"):
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial")
        with tempfile.TemporaryDirectory(dir=out.parent) as scratch, \
                partial.open("wb") as stream:
            write_cpio(addon_entries(debs, Path(scratch)), stream)
        partial.rename(out)
        cachefile.seal(out)
    return out


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def dropbear_host_key(key: Ed25519PrivateKey) -> bytes:
    """dropbear's ed25519 key file: string "ssh-ed25519", string (seed || public key)."""
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return _ssh_string(b"ssh-ed25519") + _ssh_string(seed + public)


def openssh_public(key: Ed25519PrivateKey) -> str:
    """'ssh-ed25519 AAAA...' (an authorized_keys or known_hosts key)."""
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


@dataclass(frozen=True)
class BootKeys:
    """One boot's keys: the client's private key file and the known_hosts file."""

    client_key: Path
    known_hosts: Path
    cpio: Path  # the host key and authorized_keys, as an archive to append


def make_keys(directory: Path, port: int) -> BootKeys:
    """Fresh host and client keys for one boot, written under directory (mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    host, client = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    client_key = directory / "id_ed25519"
    client_key.touch(mode=0o600)
    client_key.write_bytes(client.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.OpenSSH,
                                                serialization.NoEncryption()))
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {openssh_public(host)}\n")
    entries = [
        Entry("root", stat.S_IFDIR | 0o700),
        Entry("root/.ssh", stat.S_IFDIR | 0o700),
        Entry("root/.ssh/authorized_keys", stat.S_IFREG | 0o600,
              (openssh_public(client) + " rig\n").encode()),
        Entry(HOST_KEY, stat.S_IFREG | 0o600, dropbear_host_key(host)),
    ]
    cpio = directory / "keys.cpio"
    cpio.touch(mode=0o600)
    with cpio.open("wb") as stream:
        write_cpio(entries, stream)
    return BootKeys(client_key, known_hosts, cpio)


def concatenate(parts: list[Path], out: Path) -> Path:
    """One initrd file of several archives, in order."""
    with out.open("wb") as stream:
        for part in parts:
            stream.write(part.read_bytes())
    return out


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def qemu_network_args(port: int) -> list[str]:
    """A virtio network card on QEMU's user network; 127.0.0.1:port -> the host's 22."""
    return ["-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-device,netdev=n0"]


def fingerprint(known_hosts: Path) -> str:
    """SHA256 fingerprint of the (first) key in a known_hosts file, as OpenSSH prints it."""
    blob = base64.b64decode(known_hosts.read_text().split()[2])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def prepare(cache_dir: Path, base_initramfs: Path, boot_dir: Path, name: str
            ) -> tuple[Path, tuple[str, ...], SshEntry]:
    """For one boot: the initrd with SSH, QEMU's network arguments, and the ssh
    target entry that reaches the host once it is ready (keys under boot_dir)."""
    port = free_port()
    keys = make_keys(boot_dir, port)
    initrd = concatenate([base_initramfs, addon_cpio(cache_dir), keys.cpio],
                         boot_dir / "initramfs-ssh.cpio")
    entry = SshEntry(name=name, host="127.0.0.1", port=port, user="root",
                      key_file=keys.client_key, known_hosts=keys.known_hosts)
    return initrd, tuple(qemu_network_args(port)), entry


def entry_yaml(entry: SshEntry) -> str:
    """The rig.yaml `targets:` section that names this host."""
    fields = {"type": "ssh", "host": entry.host, "port": entry.port, "user": entry.user,
              "key_file": str(entry.key_file), "known_hosts": str(entry.known_hosts)}
    return yaml.safe_dump({"targets": {entry.name: fields}}, sort_keys=False)
