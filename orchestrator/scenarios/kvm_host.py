"""kvm-host: the booted host kernel offers KVM.

Checks what the kernel itself says (its "hypervisor extension available"
line, printed by arch/riscv/kvm/main.c when the H extension is usable)
and what user space sees (/dev/kvm is a character device).
"""

from __future__ import annotations

import re

from orchestrator.qemu import HostVM
from orchestrator.results import FAIL, PASS, Case

NAME = "kvm-host"
KVM_BANNER = re.compile(r"kvm \[\d+\]: hypervisor extension available")
CASES = (f"{NAME}/hypervisor-extension", f"{NAME}/dev-kvm")


def valid_id(case: str) -> bool:
    return case in CASES


def run(vm: HostVM, kernel: str) -> list[Case]:
    console = vm.console_log.read_bytes().decode(errors="replace")
    banner = KVM_BANNER.search(console)
    cases = [Case(
        id=CASES[0], kernel=kernel, scenario=NAME,
        verdict=PASS if banner else FAIL,
        observed=banner.group(0) if banner else None,
        expected="kvm [N]: hypervisor extension available",
        reason="" if banner else "the kernel did not report the H extension as usable",
        log=str(vm.console_log),
    )]
    probe = vm.run("test -c /dev/kvm && ls -l /dev/kvm")
    cases.append(Case(
        id=CASES[1], kernel=kernel, scenario=NAME,
        verdict=PASS if probe.status == 0 else FAIL,
        observed=probe.output.strip() or f"exit {probe.status}",
        expected="/dev/kvm is a character device",
        reason="" if probe.status == 0 else "/dev/kvm is missing in the host",
        seconds=probe.seconds, log=str(vm.console_log),
    ))
    return cases
