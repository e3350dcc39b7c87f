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

import dataclasses
from collections.abc import Callable
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


def verdicts_differ(a: Case, b: Case) -> bool:
    """Whether two verdicts on one case tell the kernels apart, by the case's suite's
    rule (a chance event a suite names is none); plain inequality for other cases."""
    suite = registry().get(a.suite)
    return suite.verdicts_differ(a, b) if suite else a.verdict != b.verdict


def _differs(a: Case, b: Case) -> str | None:
    suite = registry().get(a.suite)
    why = suite.differs(a, b) if suite else None
    if why is None and verdicts_differ(a, b):
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


def baselines(sources: dict[str, str]) -> dict[str, str]:
    """kernel -> the kernel it is compared with inside a run: the first kernel built
    from the same source (sources: kernel -> its source, in run order). Kernels of
    different sources (series) are compared across runs (orchestrator compare),
    where a change is explained, not failed."""
    first: dict[str, str] = {}
    return {name: first.setdefault(source, name) for name, source in sources.items()}


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
    """One side of a comparison: a kernel's cases, labelled (e.g. RUN_A:b922307a), and
    the kernel's version when known (include/config/kernel.release)."""

    label: str
    cases: list[Case]
    release: str = ""


CHANGE_KINDS = ("new", "gone", "verdict", "behaviour", "figure")


@dataclass(frozen=True)
class CaseChange:
    """How one case differs between side A and side B, and what explains it."""

    id: str
    kind: str  # one of CHANGE_KINDS
    before: str | None  # A's verdict (None: no such case)
    after: str | None
    why: str
    explained: str = ""  # "": nothing in the rig's data explains it


# explain(change, case on A or None, case on B or None) -> the explanation or ""
Explainer = Callable[[CaseChange, Case | None, Case | None], str]


def _no_explanation(change: CaseChange, a: Case | None, b: Case | None) -> str:
    return ""


def case_changes(a: list[Case], b: list[Case], figures: dict[str, dict],
                 explain: Explainer = _no_explanation) -> list[CaseChange]:
    """Case by case, what is new on B, gone from A, judged differently, behaves
    differently under the same verdict, or measures differently (figures: the
    measurements() of A against B)."""
    before = {c.id: c for c in a if c.suite != DIFFERS}
    after = {c.id: c for c in b if c.suite != DIFFERS}
    found = []
    for cid in [*after, *(i for i in before if i not in after)]:
        old, new = before.get(cid), after.get(cid)
        if old is None or new is None:
            kind = "new" if old is None else "gone"
            case = new or old
            assert case is not None
            change = CaseChange(cid, kind, old and old.verdict, new and new.verdict,
                                f"{case.verdict}: {case.reason}".rstrip(": "))
        elif old.verdict != new.verdict:
            change = CaseChange(cid, "verdict", old.verdict, new.verdict,
                                f"{old.verdict} -> {new.verdict}: {new.reason or old.reason}")
        elif cid in figures and figures[cid].get("verdict") not in (None, "same"):
            m = figures[cid]
            change = CaseChange(cid, "figure", old.verdict, new.verdict,
                                f"{m['a']['median']:g} -> {m['b']['median']:g} {m['unit']}"
                                f" ({m['difference']:+g}): {m['verdict']}")
        elif old.verdict not in NOT_COMPARED and (why := _differs(old, new)):
            change = CaseChange(cid, "behaviour", old.verdict, new.verdict, why)
        else:
            continue
        found.append(dataclasses.replace(change, explained=explain(change, old, new)))
    return found


# explainer(release of A, release of B) -> the Explainer for that pair of kernels
ExplainerFor = Callable[[str, str], Explainer]


def only_in(a: list[Case], b: list[Case]) -> list[str]:
    """The ids of a's cases that b does not have, in a's order."""
    present = {c.id for c in b}
    return [c.id for c in a if c.suite != DIFFERS and c.id not in present]


def compare(a: Side, b: Side, explainer: ExplainerFor | None = None) -> dict:
    explain = explainer(a.release, b.release) if explainer else _no_explanation
    figures = measurements(a.cases, b.cases)
    return {"a": a.label, "b": b.label, "a_release": a.release, "b_release": b.release,
            "measurements": figures,
            "differences": [d.__dict__ for d in differences(a.cases, b.cases, a.label)],
            "gone": only_in(a.cases, b.cases), "new": only_in(b.cases, a.cases),
            "changes": [c.__dict__ for c in case_changes(a.cases, b.cases, figures, explain)]}
