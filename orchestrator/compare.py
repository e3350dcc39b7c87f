"""Comparisons between two sides (kernels of a run, or runs), from case data alone.

- behaviour: cases whose outcome (or verdict) differs, through each suite's
  `differs()`;
- measurements: per case with a measurement on both sides, the figures,
  difference, ratio and verdict (orchestrator.stats: exact under icount,
  bootstrap CI and Mann-Whitney for distributions);
- gone / new: the cases one side has and the other has not (a suite that did
  not run, cases that appeared): no behaviour is compared for them, and a
  comparison says so rather than reporting none as differing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator import stats
from orchestrator.errors import BadInput
from orchestrator.results import DIFFERS
from orchestrator.suites import registry
from orchestrator.verdicts import ERROR, SKIP, Case

NOT_COMPARED = (ERROR, SKIP)


@dataclass(frozen=True)
class Difference:
    id: str
    kernel: str  # the side that differs from the baseline
    reason: str
    outcome: dict[str, Any]  # {"kind": "differs", "baseline": ..., "observed": ...}


def _differs(a: Case, b: Case) -> str | None:
    suite = registry().get(a.suite)
    why = suite.differs(a, b) if suite else None
    if why is None and (suite.verdicts_differ(a, b) if suite else a.verdict != b.verdict):
        why = f"verdict {b.verdict} vs {a.verdict}"
    return why


def differences(a: list[Case], b: list[Case], a_label: str) -> list[Difference]:
    """Cases of b that behave differently than the same case in a."""
    by_id = {c.id: c for c in a if c.suite != DIFFERS}
    found = []
    for case in b:
        ref = by_id.get(case.id)
        if ref is None or ref.verdict in NOT_COMPARED or case.verdict in NOT_COMPARED:
            continue
        why = _differs(ref, case)
        if why:
            found.append(Difference(case.id, case.kernel, f"behaviour differs from {a_label}:"
                                    f" {why}", {"kind": "differs", "baseline": ref.outcome,
                                                "observed": case.outcome}))
    return found


def by_kernel(cases: list[Case]) -> dict[str, list[Case]]:
    kernels: dict[str, list[Case]] = {}
    for case in cases:
        kernels.setdefault(case.kernel, []).append(case)
    return kernels


def behaviour(cases: list[Case], baseline: str) -> list[Difference]:
    """Every other kernel's differences from the baseline kernel of one run."""
    kernels = by_kernel(cases)
    reference = kernels.get(baseline, [])
    return [d for name, mine in kernels.items() if name != baseline
            for d in differences(reference, mine, baseline)]


def measurements(a: list[Case], b: list[Case]) -> dict[str, dict]:
    """Per case measured on both sides: the comparison of B against A."""
    a_measured = {c.id: c.measurement for c in a if c.measurement}
    out = {}
    for case in b:
        ma, mb = a_measured.get(case.id), case.measurement
        if ma is None or mb is None:
            continue
        if (ma.method, ma.unit) != (mb.method, mb.unit):
            raise BadInput(f"{case.id}: cannot compare {ma.method} {ma.unit} with"
                           f" {mb.method} {mb.unit}")
        result = (stats.compare_exact(ma.value, mb.value) if ma.method == "exact"
                  else stats.compare_wallclock(ma.samples, mb.samples))
        out[case.id] = {"method": ma.method, "unit": ma.unit, **result.to_json()}
    return out


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a kernel's cases, labelled (e.g. RUN_A:b922307a)."""

    label: str
    cases: list[Case]


def only_in(a: list[Case], b: list[Case]) -> list[str]:
    """The ids of a's cases that b does not have, in a's order."""
    present = {c.id for c in b}
    return [c.id for c in a if c.suite != DIFFERS and c.id not in present]


def compare(a: Side, b: Side) -> dict:
    return {"a": a.label, "b": b.label, "measurements": measurements(a.cases, b.cases),
            "differences": [d.__dict__ for d in differences(a.cases, b.cases, a.label)],
            "gone": only_in(a.cases, b.cases), "new": only_in(b.cases, a.cases)}
