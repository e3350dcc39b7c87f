"""Suite discovery: the rig's packages, and modules and packages in $RIG_SUITE_PATH."""

from __future__ import annotations

import pytest

from orchestrator import suites


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(suites, "_REGISTRY", None)  # restored after the test


def test_every_builtin_suite_is_a_package_found_in_run_order(fresh_registry):
    found = suites.registry()
    assert list(found) == ["kvm-host", "counters", "isolation", "timer", "linux-guest",
                           "kselftest-kvm", "latency"]
    assert all(cls.__module__.count(".") == 2 for cls in found.values())


def test_only_linux_guest_offers_a_guest_shell(fresh_registry):
    assert [n for n, cls in suites.registry().items() if cls.has_guest_shell()] == ["linux-guest"]


SUITE = '''
from orchestrator.suites import Suite
from {helper} import CASES


class {cls}(Suite):
    name = "{name}"

    def plan(self):
        return list(CASES)
'''


def test_suite_path_holds_modules_and_packages(fresh_registry, tmp_path, monkeypatch):
    package = tmp_path / "boxed"
    package.mkdir()
    (package / "__init__.py").write_text(SUITE.format(helper="rig_suite_boxed.cases",
                                                      cls="Boxed", name="boxed"))
    (package / "cases.py").write_text('CASES = ("boxed/a", "boxed/b")\n')
    (tmp_path / "single.py").write_text('CASES = ("single/a",)\n' + SUITE.format(
        helper="builtins", cls="Single", name="single").replace(
        "from builtins import CASES\n", ""))
    monkeypatch.setenv(suites.SUITE_PATH_ENV, str(tmp_path))
    found = suites.registry()
    assert found["boxed"](found["boxed"].Config()).plan() == ["boxed/a", "boxed/b"]
    assert found["single"](found["single"].Config()).plan() == ["single/a"]
