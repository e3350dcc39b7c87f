"""Bisect predicates and the scenarios they switch on; history patch subjects."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import bisect, history
from orchestrator.config import ScenariosConfig
from orchestrator.errors import BadInput


@pytest.mark.parametrize(("text", "scenario", "case", "threshold", "ratio"), [
    ("isolation", "isolation", None, None, False),
    ("counters", "counters", None, None, False),
    ("counters/pmu/VU/cycle/scounteren=0x0", "counters",
     "counters/pmu/VU/cycle/scounteren=0x0", None, False),
    ("isolation/perf_user_access=1/pinned/host-policy", "isolation",
     "isolation/perf_user_access=1/pinned/host-policy", None, False),
    ("latency:sbi-in-kernel>+20", "latency", "sbi-in-kernel", 20.0, False),
    ("latency:user-exit>x1.05", "latency", "user-exit", 1.05, True),
])
def test_predicates(text: str, scenario: str, case: str | None, threshold: float | None,
                    ratio: bool) -> None:
    predicate = bisect.parse_predicate(text)
    assert (predicate.scenario, predicate.case, predicate.threshold, predicate.ratio) == (
        scenario, case, threshold, ratio)


@pytest.mark.parametrize("text", ["latency", "latency:sbi-in-kernel>20", "counters/VU/x",
                                  "latency:nope>+1", "everything"])
def test_bad_predicates(text: str) -> None:
    with pytest.raises(BadInput, match="--check"):
        bisect.parse_predicate(text)


def test_predicate_switches_on_only_its_scenario() -> None:
    isolation = bisect.parse_predicate("isolation").scenarios(ScenariosConfig())
    assert isolation.isolation.enabled
    assert not isolation.counters.enabled and not isolation.latency.enabled
    latency = bisect.parse_predicate("latency:user-exit>x1.1").scenarios(ScenariosConfig())
    assert latency.latency.enabled and latency.latency.tests == ("user-exit",)
    assert latency.latency.mode == "wallclock"
    assert not latency.counters.enabled and not latency.isolation.enabled
    exact = bisect.parse_predicate("latency:user-exit>+5").scenarios(ScenariosConfig())
    assert exact.latency.mode == "icount"


def test_history_subject(tmp_path: Path) -> None:
    tagged = tmp_path / "0001-x.patch"
    tagged.write_text("From: a\nSubject: [PATCH 1/2] RISC-V: KVM: do it\n---\n")
    bare = tmp_path / "0002-y.patch"
    bare.write_text("--- a/f\n+++ b/f\n")
    assert history.subject(tagged) == "RISC-V: KVM: do it"
    assert history.subject(bare) == "0002-y"
