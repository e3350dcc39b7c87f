"""Expectations by kernel version (images/expectations/kvm.yaml) and the explanations
of cross-version changes they give."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import compare, expectations
from orchestrator.errors import BadInput
from orchestrator.results import KNOWN_DEVIATION, PASS, Case


@pytest.mark.parametrize("release, expected", [
    ("6.12.118+", (6, 12, 118)), ("7.3.4", (7, 3, 4)), ("6.12", (6, 12)),
    ("7.3.0-rc7", (7, 3, 0))])
def test_version_tuple(release, expected):
    assert expectations.version_tuple(release) == expected


def test_range_is_since_inclusive_until_exclusive():
    holds = expectations.Range("6.12", "7.3").holds
    assert holds("6.12.118+") and holds("7.2.13") and not holds("7.3.0") and not holds("6.6.1")


def test_the_shipped_file_covers_6_12_and_7_3_only():
    for release in ("6.12.118+", "7.3.4"):
        found = expectations.for_release(release)
        assert found is not None and "kvm-skip-match-needs-counter-in-use" in found.deviations
    assert expectations.for_release("7.4.0") is None
    assert "no expectations for Linux 7.4" in expectations.no_expectations("7.4.0")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kvm.yaml"
    path.write_text(text)
    return path


TABLES = """
counters:
  hcounteren: 2
  trapped: [{when: {}, outcome: illegal, why: w}]
  deviation: [{when: {}, deviation: d1}]
linux-guest: [{when: {method: perf}, kvm_outcome: not-offered, counts: false, deviation: d1}]
"""


def test_a_deviation_that_ended_explains_a_pass(tmp_path):
    path = write(tmp_path, 'checked: ["6.12", "7.3"]\ndeviations:\n  d1: {since: "6.12",'
                           ' until: "7.0", rule: r, source: s}\n' + TABLES)
    assert set(expectations.for_release("7.3.4", path).deviations) == set()
    explain = expectations.explainer("6.12.118+", "7.3.4", path)
    before = Case("counters/x", "counters", KNOWN_DEVIATION, rule="d1")
    after = Case("counters/x", "counters", PASS)
    change = compare.case_changes([before], [after], {})[0]
    assert change.kind == "verdict"
    assert explain(change, before, after) == (
        "d1 holds for 6.12 up to (not including) 7.0, not for 7.3.4 (kvm.yaml)")


def test_a_deviation_holding_on_both_sides_explains_nothing(tmp_path):
    path = write(tmp_path, 'checked: ["6.12", "7.3"]\ndeviations:\n  d1: {since: "6.12",'
                           ' until: null, rule: r, source: s}\n' + TABLES)
    explain = expectations.explainer("6.12.118+", "7.3.4", path)
    before = Case("counters/x", "counters", KNOWN_DEVIATION, rule="d1")
    after = Case("counters/x", "counters", PASS)
    assert explain(compare.case_changes([before], [after], {})[0], before, after) == ""


@pytest.mark.parametrize("text, message", [
    ("checked: 6.12\n", "checked: got 6.12"),
    ('checked: ["6.12"]\ndeviations:\n  d1: {since: soon, rule: r, source: s}\n' + TABLES,
     "deviations.d1.since: got 'soon'"),
    ('checked: ["6.12"]\ndeviations:\n  d1: {rule: r, source: s}\n'
     + TABLES.replace("deviation: d1}]\nlinux", "deviation: d2}]\nlinux"),
     "counters.deviation[0].deviation: got 'd2'"),
])
def test_a_bad_file_is_named_with_its_key(tmp_path, text, message):
    expectations._load.cache_clear()
    with pytest.raises(BadInput, match="kvm.yaml") as caught:
        expectations.for_release("6.12.1", write(tmp_path, text))
    assert message in caught.value.message


def test_case_changes_lists_every_kind():
    def case(name: str, verdict: str = PASS, **fields) -> Case:
        return Case(f"kvm-host/{name}", "kvm-host", verdict, **fields)
    a = [case("same", outcome={"k": 1}), case("gone"), case("judged"),
         case("behaves", outcome={"k": 1})]
    b = [case("same", outcome={"k": 1}), case("new"), case("judged", "fail", reason="broke"),
         case("behaves", outcome={"k": 2})]
    kinds = {c.id.split("/")[1]: c.kind for c in compare.case_changes(a, b, {})}
    assert kinds == {"new": "new", "gone": "gone", "judged": "verdict", "behaves": "behaviour"}
