"""Bisect predicates and the cases they select; history patch subjects."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import bisect, config, history
from orchestrator.errors import BadInput

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rig() -> config.RigConfig:
    return config.load(REPO / "rig.yaml")


@pytest.mark.parametrize(("text", "only", "threshold", "ratio"), [
    ("isolation", "isolation/*", None, False),
    ("counters", "counters/*", None, False),
    ("counters/pmu/VU/cycle/scounteren=0x0", "counters/pmu/VU/cycle/scounteren=0x0", None,
     False),
    ("isolation/perf_user_access=1/pinned/*", "isolation/perf_user_access=1/pinned/*", None,
     False),
    ("latency:sbi-in-kernel>+20", "latency/sbi-in-kernel", 20.0, False),
    ("latency:user-exit>x1.05", "latency/user-exit", 1.05, True),
])
def test_predicates(rig: config.RigConfig, text: str, only: str, threshold: float | None,
                    ratio: bool) -> None:
    predicate = bisect.parse_predicate(text, rig)
    assert (predicate.only, predicate.threshold, predicate.ratio) == (only, threshold, ratio)


@pytest.mark.parametrize("text", ["latency:sbi-in-kernel>20", "counters/VU/x",
                                  "latency:nope>+1", "everything"])
def test_bad_predicates(rig: config.RigConfig, text: str) -> None:
    with pytest.raises(BadInput, match="--check"):
        bisect.parse_predicate(text, rig)


def test_latency_predicate_measures_in_its_mode(rig: config.RigConfig) -> None:
    ratio = bisect.parse_predicate("latency:user-exit>x1.1", rig).suites(rig.suites)
    assert ratio["latency"].mode == "wallclock"
    exact = bisect.parse_predicate("latency:user-exit>+5", rig).suites(rig.suites)
    assert exact["latency"].mode == "icount"
    assert bisect.parse_predicate("isolation", rig).suites(rig.suites) == rig.suites


def test_history_subject(tmp_path: Path) -> None:
    tagged = tmp_path / "0001-x.patch"
    tagged.write_text("From: a\nSubject: [PATCH 1/2] RISC-V: KVM: do it\n---\n")
    bare = tmp_path / "0002-y.patch"
    bare.write_text("--- a/f\n+++ b/f\n")
    assert history.subject(tagged) == "RISC-V: KVM: do it"
    assert history.subject(bare) == "0002-y"


GOOD_ID, BAD_ID = "5" * 40, "6" * 40


def test_a_resumed_bisections_log_must_be_one_the_rig_wrote(tmp_path: Path) -> None:
    log = tmp_path / "bisect.log"
    log.write_text(f"# bad: [{BAD_ID}] c5\ngit bisect start '{BAD_ID}' '{GOOD_ID}'\n"
                   f"git bisect skip {GOOD_ID}\n# only skipped commits left to test\n")
    assert bisect.checked_log(log) == log
    for line in ("git bisect run sh -c 'rm -rf ~'", f"git bisect good {GOOD_ID}; touch x",
                 "git bisect start HEAD~3 HEAD", "#\x1b[2Jcomment"):
        log.write_text(f"# bad: [{BAD_ID}] c5\n{line}\n")
        with pytest.raises(BadInput, match=r"bisect\.log:2: got .*, expected a line of"):
            bisect.checked_log(log)


def test_a_resumed_bisections_steps_are_checked(tmp_path: Path) -> None:
    bisection = bisect.Bisection.__new__(bisect.Bisection)  # only its state on disk
    bisection.out, bisection.steps = tmp_path, {}
    steps = tmp_path / "steps.json"
    steps.write_text(f'{{"{GOOD_ID}": {{"commit": "{GOOD_ID}", "verdict": "good",'
                     f' "evidence": "2 case(s), none failing", "seconds": 3.5}}}}')
    bisection._load_steps()
    assert bisection.steps[GOOD_ID].verdict == "good"
    for bad, message in ((f'{{"{GOOD_ID}": {{"commit": "{GOOD_ID}", "verdict": "maybe",'
                          ' "evidence": ""}}', r"\.verdict: got 'maybe'"),
                         (f'{{"{GOOD_ID}": {{"commit": "{BAD_ID}", "verdict": "good",'
                          ' "evidence": ""}}', r"\.commit: got '6{40}', expected '5{40}'"),
                         ('{"../x": {}}', "expected pattern"),
                         ('{"a": ', "steps.json")):
        steps.write_text(bad)
        with pytest.raises(BadInput, match=message):
            bisection._load_steps()
