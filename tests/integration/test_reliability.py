"""The rig against a hostile machine (scripts/reliability.py): signals at random
points, kill -9 and a rerun, two runs at once, a CPU hog, corrupted cache
entries of each kind, a full disk. Each fault must be handled with nothing lost."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.integration

_spec = importlib.util.spec_from_file_location("reliability", REPO / "scripts" / "reliability.py")
assert _spec and _spec.loader
reliability = importlib.util.module_from_spec(_spec)
sys.modules["reliability"] = reliability  # dataclasses look their module up there
_spec.loader.exec_module(reliability)

SEED = int(os.environ.get("RIG_RELIABILITY_SEED", "20261129"))


@pytest.mark.parametrize("fault", sorted(reliability.FAULTS))
def test_fault_is_handled_and_nothing_is_lost(built_kernels: dict, fault: str) -> None:
    findings = list(reliability.check(REPO / "rig.yaml", [fault], SEED))
    assert findings
    for finding in findings:
        assert finding.ok, finding
