"""Choosing a Debian kernel source package: version order and the apt listing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator import debian
from orchestrator.debian import ForeignApt


def test_newest_first_follows_dpkg_ordering():
    # a backport (~bpo) is older than the release it backports; 6.12.118 > 6.12.95
    versions = ["6.12.95-1~bpo12+1", "7.3.4-1", "7.3.4-1~bpo13+1", "6.12.118-1~deb12u1",
                "7.2.13-1"]
    assert debian.newest_first(versions) == [
        "7.3.4-1", "7.3.4-1~bpo13+1", "7.2.13-1", "6.12.118-1~deb12u1", "6.12.95-1~bpo12+1"]


MADISON = {
    "linux-source-7.2": " linux-source-7.2 |   7.2.13-1 | http://m/debian sid/main amd64 Packages\n"
                        " linux-source-7.2 | 7.2.11-1~bpo13+1 | http://m/debian trixie-backports"
                        "/main amd64 Packages\n",
    "linux-source-7.3": " linux-source-7.3 | 7.3.4-1~bpo13+1 | http://m/debian trixie-backports"
                        "/main amd64 Packages\n",
    "linux-source-6.12": " linux-source-6.12 | 6.12.107-1 | http://m/debian trixie/main amd64"
                         " Packages\n",
}


@pytest.fixture
def fake_apt(monkeypatch):
    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if cmd[0] != "apt-cache":
            return real_run(cmd, *args, **kwargs)
        if "pkgnames" in cmd:
            out = "linux-source\nlinux-source-7.2\nlinux-source-6.12\nlinux-source-7.3\n"
        else:
            out = MADISON.get(cmd[-1], "")
        return subprocess.CompletedProcess(cmd, 0, out, "")
    monkeypatch.setattr(debian.subprocess, "run", run)
    return ForeignApt(Path("/nonexistent"), "amd64")


@pytest.mark.parametrize("package, version, expected", [
    ("linux-source-*", None, ("linux-source-7.3", "7.3.4-1~bpo13+1")),
    ("linux-source-7.2", None, ("linux-source-7.2", "7.2.13-1")),
    ("linux-source-7.2", "*~bpo*", ("linux-source-7.2", "7.2.11-1~bpo13+1")),
    ("linux-source-6.*", None, ("linux-source-6.12", "6.12.107-1")),
])
def test_the_newest_match_is_chosen(fake_apt, package, version, expected):
    assert debian.offered_versions(fake_apt, package, version)[0] == expected


def test_nothing_matches(fake_apt):
    assert debian.offered_versions(fake_apt, "linux-source-9.*", None) == []
