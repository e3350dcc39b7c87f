"""report.md, compare.json, measurements.png and trend.png, rendered from case data:
the figures are inspected as matplotlib objects (titles, texts, lines), not as pixels."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator import nightly, report
from orchestrator.compare import Side
from orchestrator.results import Case, Measurement
from orchestrator.verdicts import PASS, SKIP


def measured(kernel: str, test: str, value: float, windows: list[float]) -> Case:
    return Case(f"latency/{test}", "latency", PASS, kernel=kernel, outcome={"kind": "figure"},
                measurement=Measurement(value, "instructions", "exact", [windows]))


def icount_sides() -> list[Side]:
    """Two kernels under icount: every window at the exact figure but a few outliers
    (an interrupt in the window) far above."""
    a = [measured("parent", "ecall", 908.0, [908.0] * 40 + [25000.0]),
         measured("parent", "csr", 412.0, [412.0] * 40)]
    b = [measured("patched", "ecall", 946.0, [946.0] * 39 + [31000.0, 30500.0]),
         measured("patched", "csr", 412.0, [412.0] * 40)]
    return [Side("run1:parent", a), Side("run1:patched", b)]


def test_measurements_figure_shows_each_verdict_and_reported_figure(tmp_path: Path) -> None:
    sides = icount_sides()
    comparisons = report.write(tmp_path, "Run run1", sides, [(sides[0], sides[1])])
    assert (tmp_path / report.PLOT_NAME).stat().st_size > 0
    fig = report.measurement_figure("Run run1", sides, comparisons)
    assert fig._suptitle.get_text() == "Run run1"
    ecall, csr = fig.axes
    assert ecall.get_title().splitlines() == [
        "latency/ecall", "run1:patched vs run1:parent: slower (+38.0 instructions)"]
    assert csr.get_title().splitlines()[1].endswith("same (+0.0 instructions)")
    # the reported figures are marked and written beside their marks
    marked = [line for line in ecall.get_lines() if line.get_marker() == "D"]
    assert [list(line.get_ydata()) for line in marked] == [[908.0], [946.0]]
    assert {t.get_text() for t in ecall.texts} >= {"908.0", "946.0",
                                                    "3 window(s) off the scale"}
    # outliers do not set the scale: both figures are apart on the axis
    low, high = ecall.get_ylim()
    assert low < 908.0 and high > 946.0 and high - low < 200
    assert [t.get_text() for t in ecall.get_xticklabels()] == ["run1:parent", "run1:patched"]


def test_compare_of_a_run_missing_cases_says_they_are_gone(tmp_path: Path) -> None:
    full = [Case("kvm-host/dev-kvm", "kvm-host", PASS, kernel="k")] + [
        Case(f"linux-guest/c{i}", "linux-guest", PASS, kernel="k") for i in range(45)]
    short = [Case("kvm-host/dev-kvm", "kvm-host", PASS, kernel="k"),
             Case("kvm-host/new", "kvm-host", PASS, kernel="k")]
    a, b = Side("r1:k", full), Side("r2:k", short)
    (comp,) = report.write(tmp_path, "r2 against r1", [a, b], [(a, b)])
    assert (len(comp["gone"]), comp["new"]) == (45, ["kvm-host/new"])
    assert json.loads((tmp_path / "compare.json").read_text())[0]["gone"][0] == "linux-guest/c0"
    text = (tmp_path / "report.md").read_text()
    assert "Cases gone: 45 (in r1:k, not in r2:k)" in text
    assert "Cases new: 1 (in r2:k, not in r1:k)" in text
    assert report.headline([comp])[-1] == ("r2:k vs r1:k: 0 case(s) behave differently"
                                           " (45 gone, 1 new case(s): not compared)")
    # one row per run, never both runs summed into one
    table = text.split("```")[1].strip().splitlines()
    assert [row.split()[0] for row in table[2:]] == ["r1:k", "r2:k"]
    assert "1/1 pass" in table[2] and "45/45 pass" in table[2]


def test_report_names_kernel_versions_and_skip_reasons(tmp_path: Path) -> None:
    skipped = [Case(f"kselftest-kvm/get-reg-list/{n}", "kselftest-kvm", SKIP, kernel="k",
                    reason="SBI STA not available") for n in ("sta", "sta-2")] + [
        Case("kselftest-kvm/steal_time", "kselftest-kvm", SKIP, kernel="k",
             reason="no Sscofpmf")]
    side = Side("k", skipped)
    report.write(tmp_path, "Run r", [side], [],
                 {"k": {"release": "6.12.57", "source": "linux-source-6.12=6.12.57-1",
                        "patches": {"0001-x.patch": "d"}, "key": "ab" * 32}})
    text = (tmp_path / "report.md").read_text()
    assert "| k | 6.12.57 | linux-source-6.12=6.12.57-1 | 0001-x.patch | abababababababab |" \
        in text
    assert "3 case(s) skipped, for 2 reason(s)" in text
    assert ("- SBI STA not available: 2 case(s), on k: `kselftest-kvm/get-reg-list/sta`,"
            " `kselftest-kvm/get-reg-list/sta-2`") in text


def test_trend_draws_identical_kernels_apart() -> None:
    points = [{"run": f"2026120{i}-000000", "recorded": float(i), "value": 908.0}
              for i in range(1, 4)]
    trends = [{"kernel": kernel, "case": "latency/ecall", "unit": "instructions",
               "method": "exact", "points": points} for kernel in ("parent", "patched")]
    fig = nightly.trend_figure("Trend up to run 20261203-000000", trends)
    (ax,) = fig.axes
    parent, patched = ax.get_lines()
    assert list(parent.get_ydata()) == list(patched.get_ydata())  # same figures...
    assert all(x < y for x, y in zip(parent.get_xdata(), patched.get_xdata(), strict=True))
    assert parent.get_marker() != patched.get_marker()  # ...two series told apart
    assert parent.get_linestyle() != patched.get_linestyle()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["parent", "patched"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [p["run"] for p in points]
    assert fig._suptitle.get_text() == "Trend up to run 20261203-000000"
