"""rig.yaml -> the plan: which kernels, which suites, which case ids.

Every case id is known before anything runs (`orchestrator list`).
`--only` takes a glob over them (fnmatch: `counters/pmu/VU/*`); with it,
suites switched off in rig.yaml can still be named.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from orchestrator.config import KernelSpec, RigConfig
from orchestrator.errors import BadInput
from orchestrator.suites import Suite, registry


@dataclass(frozen=True)
class Plan:
    kernels: tuple[KernelSpec, ...]
    suites: tuple[Suite, ...]  # in run order, each with at least one selected case
    cases: dict[str, list[str]]  # suite name -> selected case ids

    def ids(self) -> list[str]:
        return [cid for suite in self.suites for cid in self.cases[suite.name]]


def make(rig: RigConfig, kernel_names: list[str] | None = None,
         only: str | None = None) -> Plan:
    kernels = tuple(rig.kernel(n) for n in kernel_names) if kernel_names else rig.kernels
    suites, cases = [], {}
    for name, cls in registry().items():
        cfg = rig.suites[name]
        if not (cfg.enabled or only):
            continue
        suite = cls(cfg)
        ids = suite.plan()
        if only:
            ids = [cid for cid in ids if fnmatch.fnmatchcase(cid, only)]
        if ids:
            suites.append(suite)
            cases[name] = ids
    if only and not suites:
        raise BadInput(f"--only: {only!r} matches no case id (see 'orchestrator list';"
                       " e.g. counters/pmu/VU/cycle/scounteren=0x0, 'isolation/*')")
    return Plan(kernels, tuple(suites), cases)
