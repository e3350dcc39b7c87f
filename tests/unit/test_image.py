"""The initramfs writer: a newc archive the kernel can unpack."""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from orchestrator import image


def archive(tmp_path: Path) -> bytes:
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF" + b"x" * 1001)  # odd size exercises padding
    vmm = tmp_path / "counters"
    vmm.write_bytes(b"vmm")
    vmm.chmod(0o755)
    stream = io.BytesIO()
    image.write_cpio(image.host_entries(busybox, {f"{image.GUEST_TESTS_DIR}/counters": vmm}),
                     stream)
    return stream.getvalue()


def test_archive_round_trips_with_console_init_and_extras(tmp_path: Path) -> None:
    members = image.read_cpio(archive(tmp_path))
    console = members["dev/console"]
    assert stat.S_ISCHR(console.mode) and console.rdev == (5, 1)
    init = members["init"]
    assert init.data == image.INIT_SCRIPT.read_bytes()
    assert init.mode & 0o111 and init.data.startswith(b"#!/bin/busybox sh")
    assert members["bin/busybox"].data.startswith(b"\x7fELF")
    assert len(members["bin/busybox"].data) == 1005
    assert members[f"{image.GUEST_TESTS_DIR}/counters"].data == b"vmm"
    assert stat.S_ISDIR(members["proc"].mode)


def test_archive_is_four_byte_aligned_and_ends_with_trailer(tmp_path: Path) -> None:
    data = archive(tmp_path)
    assert len(data) % 4 == 0
    assert b"TRAILER!!!\0" in data[-128:]


@pytest.mark.skipif(shutil.which("cpio") is None, reason="no cpio tool to cross-check with")
def test_gnu_cpio_lists_the_same_members(tmp_path: Path) -> None:
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=archive(tmp_path),
                             capture_output=True, check=True).stdout.decode().split()
    assert set(listing) == set(image.read_cpio(archive(tmp_path)))


def test_reader_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="bad cpio magic"):
        image.read_cpio(b"not an archive" * 10)
