"""Latency statistics: exact icount comparison, wall-clock verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator import stats


def boots(center: float, spread: float, n_boots: int = 5, windows: int = 30,
          seed: int = 1) -> stats.Boots:
    rng = np.random.default_rng(seed)
    return [list(rng.normal(center, spread, windows)) for _ in range(n_boots)]


def test_summary_median_and_iqr() -> None:
    summary = stats.summarize([[1, 2, 3], [4, 5]])
    assert (summary.median, summary.q1, summary.q3) == (3.0, 2.0, 4.0)
    assert (summary.boots, summary.windows, summary.q3 - summary.q1) == (2, 5, 2.0)


def test_exact_figure_needs_all_boots_to_agree() -> None:
    assert stats.exact_figure([1234.5, 1234.5, 1234.5]) == 1234.5
    assert stats.exact_figure([1234.5, 1234.6]) is None


@pytest.mark.parametrize(("a", "b", "verdict", "difference"), [
    (1000.0, 1050.0, "slower", 50.0),
    (1000.0, 990.0, "faster", -10.0),
    (1000.0, 1000.0, "same", 0.0),
])
def test_exact_comparison(a: float, b: float, verdict: str, difference: float) -> None:
    result = stats.compare_exact(a, b)
    assert (result.verdict, result.difference) == (verdict, difference)
    assert result.rule.startswith("icount:")


def test_wallclock_same_distribution_is_never_faster_or_slower() -> None:
    for seed in range(5):
        result = stats.compare_wallclock(boots(1000, 20, seed=seed),
                                         boots(1000, 20, seed=seed + 50))
        assert result.verdict in ("same", "inconclusive"), result


def test_wallclock_tight_equal_distributions_are_same() -> None:
    result = stats.compare_wallclock(boots(1000, 1, seed=2), boots(1000, 1, seed=3))
    assert result.verdict == "same"
    assert result.ci_low is not None and 0.98 <= result.ci_low <= result.ci_high <= 1.02


def test_wallclock_clear_slowdown() -> None:
    result = stats.compare_wallclock(boots(1000, 10), boots(1100, 10, seed=9))
    assert result.verdict == "slower"
    assert result.ci_low > 1 + stats.MARGIN and result.p_value < 0.05
    assert 1.08 < result.ratio < 1.12


def test_wallclock_clear_speedup() -> None:
    assert stats.compare_wallclock(boots(1000, 10), boots(900, 10, seed=9)).verdict == "faster"


def test_bootstrap_is_reproducible() -> None:
    a, b = boots(1000, 30), boots(1010, 30, seed=4)
    assert stats.bootstrap_ratio_ci(a, b) == stats.bootstrap_ratio_ci(a, b)


def test_wallclock_small_significant_shift_is_same_within_the_margin() -> None:
    # 1% slower with tight spread: real, but inside TCG's run-to-run noise
    result = stats.compare_wallclock(boots(1000, 2, seed=5), boots(1010, 2, seed=6))
    assert result.p_value < 0.05 and 1 < result.ci_low <= result.ci_high < 1 + stats.MARGIN
    assert result.verdict == "same"


def test_wallclock_shift_straddling_the_margin_is_inconclusive() -> None:
    result = stats.compare_wallclock(boots(1000, 15, seed=7), boots(1020, 15, seed=8))
    assert result.ci_low < 1 + stats.MARGIN < result.ci_high
    assert result.verdict == "inconclusive"
