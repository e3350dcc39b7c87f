"""kvm-host: the booted host kernel offers KVM.

Checks what the kernel itself says (its "hypervisor extension available"
line, printed by arch/riscv/kvm/main.c when the H extension is usable)
and what user space sees (/dev/kvm is a character device).

Case ids: kvm-host/hypervisor-extension, kvm-host/dev-kvm
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from orchestrator.suites import OUTCOME_MARK, Suite
from orchestrator.targets import Target
from orchestrator.verdicts import FAIL, PASS, Case

KVM_BANNER = re.compile(r"kvm \[\d+\]: hypervisor extension available")


class KvmHost(Suite):
    name = "kvm-host"
    order = 10

    def plan(self) -> list[str]:
        return [f"{self.name}/hypervisor-extension", f"{self.name}/dev-kvm"]

    def command_for(self, case_id: str) -> str:
        banner_id, dev_id = self.plan()
        if case_id == banner_id:  # the banner is in the kernel log, as on the console
            test = "dmesg | grep -qE 'kvm \\[[0-9]+\\]: hypervisor extension available'"
            return f"{test} && s=true || s=false; echo \"{OUTCOME_MARK} kind=banner seen=$s\""
        if case_id == dev_id:
            return (f"test -c /dev/kvm && p=true || p=false;"
                    f" echo \"{OUTCOME_MARK} kind=dev-kvm present=$p\"")
        return super().command_for(case_id)

    def run(self, target: Target, ids: list[str]) -> Iterator[Case]:
        banner_id, dev_id = self.plan()
        if banner_id in ids:
            console = target.console_log.read_bytes().decode(errors="replace")
            banner = KVM_BANNER.search(console)
            yield self.case(
                banner_id, PASS if banner else FAIL,
                outcome={"kind": "banner", "seen": bool(banner)},
                expected="kvm [N]: hypervisor extension available",
                reason="" if banner else "the kernel did not report the H extension as usable",
                details={"line": banner.group(0) if banner else None})
        if dev_id in ids:
            probe = target.run("test -c /dev/kvm && ls -l /dev/kvm")
            ok = probe.status == 0
            yield self.case(
                dev_id, PASS if ok else FAIL, outcome={"kind": "dev-kvm", "present": ok},
                expected="/dev/kvm is a character device",
                reason="" if ok else "/dev/kvm is missing in the host",
                duration=probe.seconds, details={"output": probe.output.strip()})
