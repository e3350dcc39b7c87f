"""A small kernel git history on top of Debian's linux-source-6.12.

For engineers without a kernel clone, and for the bisect tests:
base (the pristine source) -> one commit per patch, in order. Dates and
identities are fixed, so the same patches always give the same commit ids
(and the rig's kernel cache keys, which hash commit ids, stay valid).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from orchestrator import kernel
from orchestrator.config import DebianSource, RigConfig
from orchestrator.errors import BadInput

EPOCH = 1730419200  # 2024-11-01T00:00:00Z; commit n is dated n minutes later
IDENTITY = {"GIT_AUTHOR_NAME": "riscv-kvm-rig", "GIT_AUTHOR_EMAIL": "rig@localhost",
            "GIT_COMMITTER_NAME": "riscv-kvm-rig", "GIT_COMMITTER_EMAIL": "rig@localhost"}


def subject(patch: Path) -> str:
    """The patch's Subject line without its [PATCH] tag, or its file name."""
    match = re.search(r"^Subject: (?:\[[^\]]*\] )?(.+)$", patch.read_text(errors="replace"),
                      re.MULTILINE)
    return match.group(1).strip() if match else patch.stem


def _git(tree: Path, *args: str, index: int = 0) -> str:
    stamp = f"@{EPOCH + 60 * index} +0000"
    env = dict(os.environ, **IDENTITY, GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    result = subprocess.run(["git", "-C", str(tree), *args], env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise BadInput(f"git {' '.join(args[:2])} in {tree}: {result.stderr.strip()}")
    return result.stdout.strip()


def make(rig: RigConfig, source: DebianSource, dest: Path, patches: list[Path]) -> list[str]:
    """Create dest as a git tree: the pristine source, then a commit per patch.

    Returns the commit ids, base first. The tree is a plain local clone (its
    objects are hard links), independent of the rig's cache afterwards.
    """
    if dest.exists():
        raise BadInput(f"{dest}: already exists (the history helper makes a new tree)")
    for patch in patches:
        if not patch.is_file():
            raise BadInput(f"{patch}: no such patch")
    pristine, base = kernel.pristine_tree(rig, source)
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(pristine), str(dest)],
                   check=True)
    _git(dest, "checkout", "--quiet", "-B", "main", base)
    commits = [base]
    for index, patch in enumerate(patches, start=1):
        check = subprocess.run(["git", "-C", str(dest), "apply", "--check", str(patch)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise BadInput(f"{patch}: does not apply on top of the patches before it:"
                           f" {check.stderr.strip().splitlines()[0]}")
        # --index also stages files a patch creates (Debian's .gitignore hides them)
        _git(dest, "apply", "--index", str(patch))
        _git(dest, "commit", "--quiet", "--no-verify", "-m", subject(patch), index=index)
        commits.append(_git(dest, "rev-parse", "HEAD"))
    return commits
