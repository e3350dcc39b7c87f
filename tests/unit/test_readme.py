"""The README stays a page: its commands are ones the rig takes, its links lead to
pages that exist, and it fits on a screen or two. Its commands run in the suite
too: `scripts/rig run` (tests/integration/conftest.py, readme_run), `scripts/rig
test` (the CI), `scripts/rig nightly` and the rest through the CLI they call
(tests/integration/test_nightly.py, test_bisect.py, test_lava.py)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from orchestrator import cli

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_the_readme_fits_in_200_lines() -> None:
    assert len(README.splitlines()) <= 200


def test_every_linked_page_exists() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert links
    assert [link for link in links if not (REPO / link).exists()] == []


def commands() -> list[list[str]]:
    """The commands of the README's shell blocks and of its inline code."""
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    inline = re.findall(r"`((?:\.venv/bin/)?orchestrator [^`]+)`", README.replace("\n  ", " "))
    return [shlex.split(line) for line in [*lines, *inline] if line]


def test_scripts_rig_takes_each_action_the_readme_names() -> None:
    actions = [c[1] for c in commands() if c[0] == "scripts/rig"]
    assert actions == ["run", "test", "nightly"]
    usage = subprocess.run([str(REPO / "scripts" / "rig")], capture_output=True, text=True)
    assert usage.returncode == 2
    assert "run|test|nightly" in usage.stderr


def test_every_orchestrator_command_in_the_readme_parses() -> None:
    parser = cli.build_parser()
    found = [c for c in commands() if c[0].endswith("orchestrator")]
    assert len(found) >= 5
    for command in found:
        args = [a.replace("KERNEL", "b922307a").replace("CASE", "kvm-host/dev-kvm")
                .replace("RUN_A", "r1").replace("RUN_B", "r2").replace("NAME", "qemu")
                .replace("OUTDIR", "out").replace("SUBCOMMAND", "run")
                for a in command[1:] if a not in ("[--guest]", "--help")]
        parser.parse_args(args)
