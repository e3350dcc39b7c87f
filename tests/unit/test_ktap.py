"""The KTAP parser and writer (Documentation/dev-tools/ktap.rst)."""

from __future__ import annotations

from orchestrator import ktap
from orchestrator.verdicts import Case

# ktap.rst's own example of nesting, with diagnostics and directives
SPEC_EXAMPLE = """\
KTAP version 1
1..1
  KTAP version 1
  1..3
    KTAP version 1
    1..1
    # test_1: initializing test_1
    ok 1 test_1
  ok 1 example_test_1
    KTAP version 1
    1..2
    ok 1 test_1 # SKIP test_1 skipped
    ok 2 test_2
  ok 2 example_test_2
    KTAP version 1
    1..3
    ok 1 test_1
    # test_2: FAIL
    not ok 2 test_2
    ok 3 test_3 # SKIP test_3 skipped
  not ok 3 example_test_3
not ok 1 main_test
"""


def test_spec_example_hierarchy():
    doc = ktap.parse(SPEC_EXAMPLE)
    assert doc.version == "KTAP version 1" and doc.plan == 1
    (main,) = doc.results
    assert (main.description, main.verdict) == ("main_test", "fail")
    examples = main.subtests.results
    assert [r.description for r in examples] == ["example_test_1", "example_test_2",
                                                 "example_test_3"]
    assert [r.verdict for r in examples] == ["pass", "pass", "fail"]
    first = examples[0].subtests.results[0]
    assert first.diagnostics == ["test_1: initializing test_1"]
    skipped = examples[1].subtests.results[0]
    assert (skipped.directive, skipped.reason, skipped.verdict) == (
        "SKIP", "test_1 skipped", "skip")
    third = examples[2].subtests.results
    assert [r.verdict for r in third] == ["pass", "fail", "skip"]
    assert third[1].diagnostics == ["test_2: FAIL"]
    assert doc.problems() == []


def test_directives_and_diagnostic_data():
    doc = ktap.parse("TAP version 13\n1..5\nok 1 a # XFAIL known\nnot ok 2 b # TIMEOUT 30 seconds\n"
                     "not ok 3 - c # ERROR no device\nok 4 d # rcode=0\nok 5 e # todo later\n")
    verdicts = [(r.description, r.verdict, r.reason) for r in doc.results]
    assert verdicts == [("a", "xfail", "known"), ("b", "timeout", "30 seconds"),
                        ("c", "error", "no device"), ("d", "pass", "rcode=0"),
                        ("e", "todo", "later")]


def test_unknown_lines_never_change_results():
    text = ("Random seed: 0x6b8b4567\nTAP version 13\n1..2\n[   12.3] kvm: something\n"
            "ok 1 first\nprintf from the test\nnot ok 2 second\n")
    doc = ktap.parse(text)
    assert [r.verdict for r in doc.results] == ["pass", "fail"]
    assert "Random seed: 0x6b8b4567" in doc.unknown and "printf from the test" in doc.unknown


def test_whole_program_skip_without_a_version_line():
    doc = ktap.parse("Random seed: 1\n1..0 # SKIP - sbi-sta: SBI_EXT_STA not available\n")
    assert doc.plan == 0 and doc.plan_directive == "SKIP"
    assert doc.plan_reason == "- sbi-sta: SBI_EXT_STA not available"


def test_problems_numbering_and_plan():
    doc = ktap.parse("KTAP version 1\n1..3\nok 1 a\nok 3 b\n")
    assert doc.problems() == ["result 'b' is numbered 3, expected 2", "plan 1..3 but 2 result(s)"]


def test_bail_out():
    assert ktap.parse("TAP version 13\n1..2\nok 1 a\nBail out! no memory\n").bail_out == "no memory"


def test_write_round_trips_the_spec_example():
    doc = ktap.parse(SPEC_EXAMPLE)
    again = ktap.parse(ktap.write(doc))
    assert ktap.write(again) == ktap.write(doc)
    assert again.results[0].subtests.results[2].subtests.results[1].diagnostics == ["test_2: FAIL"]


def test_from_cases_one_subtest_per_kernel_and_suite():
    cases = [
        Case("kvm-host/dev-kvm", "kvm-host", "pass", kernel="k1"),
        Case("kselftest-kvm/arch_timer", "kselftest-kvm", "known-deviation", kernel="k1",
             rule="arch_timer.c", reason="flaky # sometimes"),
        Case("kselftest-kvm/steal_time", "kselftest-kvm", "fail", kernel="k1", reason="boom",
             log="k1/kselftest-kvm/steal_time.log"),
        Case("kselftest-kvm/x", "kselftest-kvm", "skip", kernel="k1", reason="no ext"),
        Case("kselftest-kvm/y", "kselftest-kvm", "error", kernel="k1", reason="timed out"),
    ]
    text = ktap.write(ktap.from_cases(cases))
    doc = ktap.parse(text)
    assert [r.description for r in doc.results] == ["k1.kvm-host", "k1.kselftest-kvm"]
    assert [r.verdict for r in doc.results] == ["pass", "fail"]
    inner = doc.results[1].subtests.results
    # a known deviation is an XFAIL, never a plain pass
    assert [r.verdict for r in inner] == ["xfail", "fail", "skip", "error"]
    assert inner[0].reason == "arch_timer.c: flaky # sometimes"
    assert inner[1].diagnostics == ["boom", "log: k1/kselftest-kvm/steal_time.log"]
    assert doc.problems() == [] and doc.results[1].subtests.problems() == []


# -- a test program's output is foreign input: limits, fuzzing ---------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from orchestrator.results import FAIL, PASS  # noqa: E402


def _nested(levels: int) -> str:
    lines = [f"{'  ' * i}KTAP version 1\n{'  ' * i}1..1" for i in range(levels)]
    closing = [f"{'  ' * i}ok 1 level{i}" for i in reversed(range(levels))]
    return "\n".join(lines + closing) + "\n"


def test_subtests_nested_1000_deep_are_left_out_not_a_crash():
    doc = ktap.parse(_nested(1000))
    assert [r.description for r in doc.results] == ["level0"]
    assert any(f"nested deeper than {ktap.MAX_NESTING}" in p for p in doc.problems())
    depth, node = 0, doc
    while node.results and node.results[0].subtests is not None:
        node, depth = node.results[0].subtests, depth + 1
    assert depth == ktap.MAX_NESTING - 1


def test_nesting_within_the_limit_is_read_whole():
    doc = ktap.parse(_nested(ktap.MAX_NESTING - 1))
    assert doc.problems() == []


def test_a_20000_digit_test_number_is_not_a_result():
    doc = ktap.parse(f"KTAP version 1\n1..1\nok {'9' * 20000} huge\nok 1 fine\n")
    assert [r.description for r in doc.results] == ["fine"]
    assert len(doc.unknown) == 1 and doc.problems() == []
    assert ktap.parse(f"1..{'9' * 20000}\n").plan is None


def test_output_past_the_line_limit_is_cut_and_said():
    text = "KTAP version 1\n" + "# chatter\n" * (ktap.MAX_LINES + 10)
    doc = ktap.parse(text)
    assert any("output cut at" in p for p in doc.problems())


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \t\n#.okntKTAPversion1209SKIP-!Bail")),
               max_size=400))
def test_any_output_parses(text):
    doc = ktap.parse(text)
    doc.problems()
    ktap.write(doc)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=30), st.text(max_size=30),
                          st.booleans()), min_size=1, max_size=6))
def test_no_case_id_or_reason_adds_a_result(cases):
    """Whatever a case id or reason holds (newlines, '#', 'ok 2'), the written
    KTAP reads back as the same number of results at each level."""
    run = [Case(f"kselftest-kvm/{cid}", "kselftest-kvm", FAIL if failed else PASS,
                kernel="k", reason=reason, log="k/boot.console.log")
           for cid, reason, failed in cases]
    back = ktap.parse(ktap.write(ktap.from_cases(run)))
    assert len(back.results) == 1 and back.problems() == []
    sub = back.results[0].subtests
    assert len(sub.results) == len(run) and sub.problems() == []
    assert [r.ok for r in sub.results] == [c.verdict == PASS for c in run]


def test_a_deviation_names_its_rule_once() -> None:
    rule = "kvm-unconfigured-counter-traps"
    deviation = Case("counters/VS/cycle", "counters", "known-deviation", kernel="k1", rule=rule,
                     reason=f"{rule}: a VS read returns a value")
    inner = ktap.parse(ktap.write(ktap.from_cases([deviation]))).results[0].subtests.results
    assert inner[0].reason == f"{rule}: a VS read returns a value"
