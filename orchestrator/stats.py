"""Statistics for latency figures: exact counts under icount, and for wall
clock the median, IQR, a bootstrap confidence interval of the median ratio
and a Mann-Whitney U test (docs/latency-method.md).

Samples are kept per boot (a list of windows per boot): boots are the
independent units, so the bootstrap resamples boots first, then windows
within each chosen boot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# numpy and scipy are imported where they are used: together they take a second or
# more to import, which every run, list and bisect step would pay up front, while
# icount figures (exact_figure, compare_exact) need neither.

Boots = list[list[float]]  # per boot, one figure per window

CONFIDENCE = 0.95
ALPHA = 0.05
# Wall clock under TCG moves by a few percent between runs of one kernel: a
# ratio whose whole CI lies within 1 +/- MARGIN is "same", and only one whose
# whole CI lies beyond it (with p < ALPHA) is "faster" or "slower".
MARGIN = 0.02
BOOTSTRAP_ROUNDS = 2000


@dataclass(frozen=True)
class Summary:
    median: float
    q1: float
    q3: float
    boots: int
    windows: int


@dataclass(frozen=True)
class Comparison:
    """B against A: difference, ratio, and the verdict with the rule that decided it."""

    a: Summary
    b: Summary
    difference: float
    ratio: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    verdict: str  # faster | slower | same | inconclusive
    rule: str

    def to_json(self) -> dict:
        return asdict(self)


def summarize(boots: Boots) -> Summary:
    import numpy as np

    pooled = np.concatenate([np.asarray(b, dtype=float) for b in boots])
    q1, median, q3 = np.percentile(pooled, [25, 50, 75])
    return Summary(float(median), float(q1), float(q3), len(boots), len(pooled))


def bootstrap_ratio_ci(a: Boots, b: Boots, rounds: int = BOOTSTRAP_ROUNDS,
                       seed: int = 0) -> tuple[float, float]:
    """CI of median(B) / median(A), resampling boots, then windows in each boot."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays_a = [np.asarray(x, dtype=float) for x in a]
    arrays_b = [np.asarray(x, dtype=float) for x in b]

    def resampled_median(arrays: list[np.ndarray]) -> float:
        chosen = rng.integers(len(arrays), size=len(arrays))
        windows = [rng.choice(arrays[i], size=len(arrays[i])) for i in chosen]
        return float(np.median(np.concatenate(windows)))

    ratios = [resampled_median(arrays_b) / resampled_median(arrays_a) for _ in range(rounds)]
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def exact_figure(per_boot: list[float]) -> float | None:
    """The one figure all boots agree on under icount, or None if they differ."""
    return per_boot[0] if len(set(per_boot)) == 1 else None


def compare_exact(a: float, b: float) -> Comparison:
    """icount figures are exact: any difference is real, none is 'same'."""
    diff = b - a
    verdict = "same" if diff == 0 else ("slower" if diff > 0 else "faster")
    point = Summary(a, a, a, 0, 0), Summary(b, b, b, 0, 0)
    return Comparison(*point, difference=diff, ratio=b / a if a else float("nan"),
                      ci_low=None, ci_high=None, p_value=None, verdict=verdict,
                      rule="icount: instruction counts are exact and identical across boots,"
                           " so any difference is real")


def compare_wallclock(a: Boots, b: Boots) -> Comparison:
    import numpy as np
    from scipy.stats import mannwhitneyu

    sa, sb = summarize(a), summarize(b)
    low, high = bootstrap_ratio_ci(a, b)
    pooled_a = np.concatenate([np.asarray(x, dtype=float) for x in a])
    pooled_b = np.concatenate([np.asarray(x, dtype=float) for x in b])
    p = float(mannwhitneyu(pooled_a, pooled_b, alternative="two-sided").pvalue)
    if low > 1 + MARGIN and p < ALPHA:
        verdict, rule = "slower", f"CI of the median ratio above 1 + {MARGIN} and p < {ALPHA}"
    elif high < 1 - MARGIN and p < ALPHA:
        verdict, rule = "faster", f"CI of the median ratio below 1 - {MARGIN} and p < {ALPHA}"
    elif low >= 1 - MARGIN and high <= 1 + MARGIN:
        verdict, rule = "same", f"CI of the median ratio within 1 +/- {MARGIN}"
    else:
        verdict, rule = "inconclusive", (f"the CI of the median ratio is neither within nor"
                                         f" beyond 1 +/- {MARGIN} (or p >= {ALPHA})")
    return Comparison(sa, sb, difference=sb.median - sa.median, ratio=sb.median / sa.median,
                      ci_low=low, ci_high=high, p_value=p, verdict=verdict, rule=rule)
