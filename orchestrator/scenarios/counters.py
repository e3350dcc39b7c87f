"""counters: KVM guests read cycle, time, instret and hpmcounter3 from VS and
VU mode under each guest SCOUNTEREN value, with and without the counters
configured through the SBI PMU; each read is judged by orchestrator.expect.

Case ids: counters/<pmu|no-pmu>/<VS|VU>/<counter>/scounteren=<hex>
"""

from __future__ import annotations

import re

from orchestrator import expect
from orchestrator.config import CountersConfig
from orchestrator.qemu import HostVM
from orchestrator.results import FAIL, Case
from orchestrator.scenarios import vmm

NAME = "counters"
_ID = re.compile(r"counters/(pmu|no-pmu)/(VS|VU)/(\w+)/scounteren=(0x[0-9a-f]+)$")


def case_id(pmu: bool, record: dict) -> str:
    state = "pmu" if pmu else "no-pmu"
    written = record["scounteren_written"]
    return f"{NAME}/{state}/{record['mode']}/{record['counter']}/scounteren={written}"


def vmm_command(values: list[int], pmu: bool, delay: int) -> str:
    listed = ",".join(f"{v:#x}" for v in values)
    return vmm.command(NAME, f"--scounteren {listed} --delay {delay}"
                             + (" --pmu" if pmu else ""))


def _plan(cfg: CountersConfig, only: str | None) -> list[tuple[bool, list[int]]]:
    if only is None:
        return [(False, list(cfg.scounteren)), (True, list(cfg.scounteren))]
    match = _ID.match(only)
    assert match, only  # runner.check_only checked it
    return [(match.group(1) == "pmu", [int(match.group(4), 16)])]


def valid_id(case: str) -> bool:
    return bool(_ID.match(case))


def run(vm: HostVM, kernel: str, cfg: CountersConfig, only: str | None = None) -> list[Case]:
    cases = []
    for pmu, values in _plan(cfg, only):
        command = vmm_command(values, pmu, cfg.delay)
        result = vm.run(command)
        records = vmm.parse_records(result.output)
        counter_records = [r for r in records if r.get("kind") == "counter"]
        for record in counter_records:
            cid = case_id(pmu, record)
            if only is not None and cid != only:
                continue
            judged = expect.judge(record)
            # a failure leads with the rule it broke (a deviation's reason already does)
            reason = f"{judged.rule}: {judged.reason}" if judged.verdict == FAIL else judged.reason
            cases.append(Case(
                id=cid, kernel=kernel, scenario=NAME, verdict=judged.verdict,
                observed=judged.observed, expected=judged.expected, reason=reason,
                log=str(vm.console_log), extra={"record": record, "rule": judged.rule},
            ))
        finished = any(r.get("kind") == "done" for r in records)
        if result.status != 0 or not finished:
            cases.append(vmm.error_case(
                f"{NAME}/{'pmu' if pmu else 'no-pmu'}/vmm", kernel, NAME, vm, result,
                "counters exit 0 and done", "" if finished else " without the guest finishing"))
    return cases
