"""The Linux guest that suite linux-guest boots inside each host, and how the
host gets it.

Three parts, each cached by its inputs:
- the guest kernel (rig.yaml `guest:`; by default the host's source with
  images/config/kvm-guest.config), built like a host kernel;
- the guest initramfs: busybox, images/initramfs/guest-init as /init, and
  guest-tests' linux-counters;
- the VMM tree: Debian's riscv64 qemu-system-riscv64 and the libraries it
  loads (its vmm module).

They are laid out in one directory that the host mounts read-only over
virtio-9p (the suite's share, mount tag `linux-guest`):

  Image  initramfs.cpio  vmm/bin/...  vmm/lib/...

Hard links, not copies: a share costs no space, and its name hashes the
three parts, so hosts with the same guest share one directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from orchestrator import guest, image, kernel
from orchestrator.config import DATA_ROOT, KernelSpec, RigConfig
from orchestrator.errors import InfraError
from orchestrator.progress import Progress
from orchestrator.suites.linux_guest import vmm

GUEST_INIT = DATA_ROOT / "images" / "initramfs" / "guest-init"
PROGRAM = "linux-counters"


def guest_initramfs(cache_dir: Path, progress: Progress | None = None) -> Path:
    program = guest.built(cache_dir, progress) / PROGRAM
    return image.build_initramfs(cache_dir, {f"{image.GUEST_TESTS_DIR}/{PROGRAM}": program},
                                 progress, init=GUEST_INIT, kind="guest")


def _link_tree(source: Path, dest: Path) -> None:
    for path in sorted(source.rglob("*")):
        target = dest / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def share(rig: RigConfig, host: KernelSpec, progress: Progress | None = None) -> Path:
    """The directory handed to host's kernel: the guest kernel, initramfs and VMM."""
    progress = progress or Progress("linux guest")
    built = kernel.build(rig, rig.guest.kernel_for(host), progress)
    unmet = kernel.unmet_needs(built, ["linux-guest"])
    if unmet:
        raise InfraError(f"guest kernel: {unmet['linux-guest']}")
    initramfs = guest_initramfs(rig.cache_dir, progress)
    tree = vmm.tree(rig.cache_dir, progress)
    key = hashlib.sha256(f"{built.key}\0{initramfs.name}\0{tree.name}".encode()).hexdigest()
    out = rig.cache_dir / "guest-share" / key[:16]
    if (out / "ready").is_file():
        return out
    scratch = out.with_name(f".{out.name}.{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    os.link(built.image, scratch / "Image")
    os.link(initramfs, scratch / "initramfs.cpio")
    _link_tree(tree, scratch / "vmm")
    (scratch / "ready").write_text(f"guest kernel {built.key[:16]}, {initramfs.name},"
                                   f" vmm {tree.name}\n")
    shutil.rmtree(out, ignore_errors=True)
    scratch.rename(out)
    return out
