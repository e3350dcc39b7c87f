"""`orchestrator setup` planning: what gets installed from where."""

from __future__ import annotations

import pytest

from orchestrator import provision
from orchestrator.errors import InfraError

ALL_BUT_QEMU = {p: "1.0" for p in provision.PACKAGES if p != provision.QEMU_PACKAGE}
BACKPORTS_QEMU = [("1:10.0.2+ds-2+deb13u1~bpo12+1", "bookworm-backports")]


def test_nothing_to_do_when_everything_is_installed() -> None:
    installed = {**ALL_BUT_QEMU, provision.QEMU_PACKAGE: "1:10.0.2+ds-2"}
    assert provision.plan(installed, BACKPORTS_QEMU, "bookworm", []).empty()


def test_qemu_from_configured_backports() -> None:
    todo = provision.plan(ALL_BUT_QEMU, BACKPORTS_QEMU, "bookworm", [])
    assert todo.from_backports == [provision.QEMU_PACKAGE]
    assert not todo.add_backports and not todo.install


def test_backports_added_on_bookworm_when_no_suite_has_qemu_10() -> None:
    todo = provision.plan(ALL_BUT_QEMU, [], "bookworm", [])
    assert todo.add_backports
    assert todo.from_backports == [provision.QEMU_PACKAGE]


def test_old_qemu_is_upgraded() -> None:
    installed = {**ALL_BUT_QEMU, provision.QEMU_PACKAGE: "1:7.2+dfsg-7"}
    todo = provision.plan(installed, BACKPORTS_QEMU, "bookworm", [])
    assert todo.from_backports == [provision.QEMU_PACKAGE]


def test_qemu_from_main_on_trixie() -> None:
    todo = provision.plan(ALL_BUT_QEMU, [("1:10.0.2+ds-2", "trixie")], "trixie", [])
    assert todo.install == [provision.QEMU_PACKAGE] and not todo.add_backports


def test_missing_packages_and_python_modules_are_listed() -> None:
    installed = {**ALL_BUT_QEMU, "ccache": "", provision.QEMU_PACKAGE: "1:10.1"}
    todo = provision.plan(installed, [], "bookworm", ["pexpect"])
    assert todo.install == ["ccache"] and todo.python == ["pexpect"]


def test_no_qemu_10_anywhere_is_an_error() -> None:
    with pytest.raises(InfraError, match="no qemu-system-riscv >= 10"):
        provision.plan(ALL_BUT_QEMU, [("1:8.2", "jammy")], "jammy", [])


def test_plan_is_described_in_words() -> None:
    todo = provision.plan({}, [], "bookworm", ["pexpect"])
    text = todo.describe("bookworm")
    assert text.startswith("add the bookworm-backports apt source; apt install ")
    assert "apt install from bookworm-backports qemu-system-riscv" in text
    assert text.endswith("pip install pexpect")


def test_setup_on_another_system_lists_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(provision, "os_release", lambda: {"ID": "fedora", "ID_LIKE": ""})
    with pytest.raises(InfraError, match="unsupported system"):
        provision.setup()
    err = capsys.readouterr().err
    assert "not a Debian or Ubuntu system" in err
    for package in ("gcc-riscv64-linux-gnu", "linux-source-6.12", "pexpect"):
        assert package in err


def test_lava_lab_packages_beside_a_backports_qemu() -> None:
    none: dict[str, str] = {}
    assert provision.lava_packages(none, "bookworm-backports") == [
        "lava-dispatcher", "lava-server", "postgresql", "qemu-system-x86/bookworm-backports"]
    assert provision.lava_packages(none, "trixie") == [
        "lava-dispatcher", "lava-server", "postgresql"]
    # a machine that ran an earlier setup --lava: only the server side is missing
    assert provision.lava_packages({"lava-dispatcher": "2023.01-2"}, "bookworm-backports") == [
        "lava-server", "postgresql"]
    every = dict.fromkeys(provision.LAVA_PACKAGES, "1")
    assert provision.lava_packages(every, "bookworm-backports") == []
