"""A built kernel's identity where kernel CI systems show builds (SQUAD, KCIDB),
read from a run manifest's kernel entry (orchestrator.kernel.BuiltKernel.to_json)."""

from __future__ import annotations

import re
from typing import Any

_NOT_IN_VERSION = re.compile(r"[^a-zA-Z0-9_.-]")


def git_commit(built: dict[str, Any]) -> str | None:
    """The commit a kernel was built from (a manifest's kernel entry), for git sources."""
    source = built.get("source") or ""
    return source.removeprefix("git:") if source.startswith("git:") else None


def build_version(built: dict[str, Any]) -> str:
    """A kernel's identity where kernel CI systems show builds (SQUAD, KCIDB), from a
    manifest's kernel entry: its release, its commit (git sources) or Debian package
    version, and its build key, which tells patch stacks, config fragments and
    toolchains apart: '6.12.118_-deb6.12.118-1_deb12u1-62b24b476961' (SQUAD takes a
    version of [a-zA-Z0-9_.-] only: other characters become '_'). The same kernel
    built on another night has the same identity; a run id is never part of it."""
    source = built.get("source") or ""
    commit = git_commit(built)
    release = built.get("release") or source.partition("=")[2] or "unknown"
    origin = f"-g{commit[:12]}" if commit else (
        f"-deb{source.partition('=')[2]}" if "=" in source else "")
    key = built.get("key") or ""
    return _NOT_IN_VERSION.sub("_", f"{release}{origin}{f'-{key[:12]}' if key else ''}")
