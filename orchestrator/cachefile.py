"""Cache entries that check themselves.

Each cached file's size and SHA-256 are recorded when it is made; a use
first compares the size, then the hash (a kernel Image hashes in tens of
milliseconds). A damaged entry (truncated, overwritten, half-copied) is
reported and rebuilt, never used. Records hold file names, not absolute
paths, so a cache copied or restored elsewhere (as CI caches are) still works.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def fingerprint(path: Path) -> dict[str, int | str]:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def intact(path: Path, recorded: dict) -> bool:
    try:
        if path.stat().st_size != recorded["size"]:
            return False
    except OSError:
        return False
    return fingerprint(path)["sha256"] == recorded["sha256"]


def damaged(what: str, path: Path) -> None:
    print(f"[cache] {what} {path} is damaged (size or SHA-256 differs from when it was"
          " made); rebuilding it", file=sys.stderr)


def _seal_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def seal(path: Path) -> Path:
    """Record path's fingerprint beside it; return path."""
    _seal_path(path).write_text(json.dumps(fingerprint(path)) + "\n")
    return path


def usable(path: Path, what: str) -> bool:
    """Whether a sealed file is there and intact; a damaged one is removed."""
    seal_file = _seal_path(path)
    if not path.exists():
        return False
    try:
        recorded = json.loads(seal_file.read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded and intact(path, recorded):
        return True
    damaged(what, path)
    path.unlink(missing_ok=True)
    seal_file.unlink(missing_ok=True)
    return False
