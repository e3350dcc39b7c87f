"""isolation: host and guest SCOUNTEREN stay apart across world switches.

For each host kernel.perf_user_access value, the guest holds the complement
of the host's user-mode counter policy while it causes thousands of exits
(SBI calls KVM handles itself, exits to the VMM, timer interrupts). After
every KVM_RUN the VMM reads cycle, time and instret under a SIGILL handler:
it must see exactly what the host policy allows. The guest re-reads its own
SCOUNTEREN throughout and must always find its value (REFERENCE.md §2).

Case ids: isolation/perf_user_access=<n>/<pinned|migrating>/<host-policy|guest-value>
"""

from __future__ import annotations

import re

from orchestrator.config import IsolationConfig
from orchestrator.qemu import HostVM
from orchestrator.results import FAIL, PASS, Case
from orchestrator.scenarios import vmm

NAME = "isolation"
COUNTERS = ("cycle", "time", "instret")  # SCOUNTEREN bits 0, 1, 2
_ID = re.compile(r"isolation/perf_user_access=(\d)/(pinned|migrating)/(host-policy|guest-value)$")


def host_policy(perf_user_access: int) -> int:
    """The host's user-mode SCOUNTEREN for a perf_user_access value
    (drivers/perf/riscv_pmu_sbi.c: legacy (2) allows all three, else time only)."""
    return 0x7 if perf_user_access == 2 else 0x2


def guest_value(perf_user_access: int) -> int:
    """The complement of the host policy, so that a leak either way shows."""
    return ~host_policy(perf_user_access) & 0x7


def valid_id(case: str) -> bool:
    return bool(_ID.match(case))


def _variants(cfg: IsolationConfig, only: str | None) -> list[tuple[int, bool]]:
    variants = [(access, migrate) for access in cfg.perf_user_access
                for migrate in ((False, True) if cfg.migrate else (False,))]
    if only is None:
        return variants
    match = _ID.match(only)
    assert match is not None
    return [(int(match.group(1)), match.group(2) == "migrating")]


def judge_host_policy(summary: dict, policy: int) -> tuple[str, str, str]:
    """(verdict, observed, reason) for the VMM's probes of the host's counters.

    `observed` names the behaviour, not the probe counts (which follow the
    number of KVM_RUN returns), so runs and kernels compare by behaviour.
    """
    observed, broken = [], []
    for bit, counter in enumerate(COUNTERS):
        counts = summary["host_probe"][counter]
        allowed = bool(policy >> bit & 1)
        if not counts["sigill"]:
            observed.append(f"{counter} readable")
        elif not counts["ok"]:
            observed.append(f"{counter} SIGILL")
        else:
            observed.append(f"{counter} readable on {counts['ok']} of"
                            f" {counts['ok'] + counts['sigill']} probes")
        wrong = counts["sigill"] if allowed else counts["ok"]
        if wrong:
            should = "readable" if allowed else "SIGILL"
            broken.append(f"{counter} should be {should} in host user space (policy"
                          f" {policy:#x}) but was not on {wrong} of"
                          f" {counts['ok'] + counts['sigill']} probes after KVM_RUN")
    verdict = FAIL if broken else PASS
    return verdict, ", ".join(observed), "; ".join(broken)


def judge_guest_value(summary: dict) -> tuple[str, str, str]:
    written, final = summary["scounteren_written"], summary["scounteren_final"]
    mismatches = summary["guest_mismatches"]
    observed = f"written {written}, final {final}, {mismatches} mismatching re-reads"
    if mismatches or final != written:
        return FAIL, observed, (f"the guest lost its SCOUNTEREN across exits: wrote {written},"
                                f" re-read {summary.get('first_mismatch') or final}")
    return PASS, observed, ""


def run(vm: HostVM, kernel: str, cfg: IsolationConfig, only: str | None = None) -> list[Case]:
    cases = []
    for access, migrate in _variants(cfg, only):
        prefix = f"{NAME}/perf_user_access={access}/{'migrating' if migrate else 'pinned'}"
        policy = host_policy(access)
        flags = (f"--scounteren {guest_value(access):#x} --exits {cfg.exits}"
                 + (" --migrate" if migrate else ""))
        result = vm.run(f"echo {access} > /proc/sys/kernel/perf_user_access && "
                        + vmm.command(NAME, flags))
        summaries = [r for r in vmm.parse_records(result.output)
                     if r.get("kind") == "isolation"]
        if result.status != 0 or not summaries:
            cases.append(vmm.error_case(f"{prefix}/vmm", kernel, NAME, vm, result,
                                        "an isolation summary"))
            continue
        summary = summaries[-1]
        checks = {
            "host-policy": (judge_host_policy(summary, policy),
                            f"host user space reads only what policy {policy:#x} allows"),
            "guest-value": (judge_guest_value(summary),
                            f"the guest keeps SCOUNTEREN {guest_value(access):#x}"),
        }
        for name, ((verdict, observed, reason), expected) in checks.items():
            cid = f"{prefix}/{name}"
            if only is None or cid == only:
                cases.append(Case(id=cid, kernel=kernel, scenario=NAME, verdict=verdict,
                                  observed=observed, expected=expected, reason=reason,
                                  log=str(vm.console_log), extra={"summary": summary}))
    return cases
