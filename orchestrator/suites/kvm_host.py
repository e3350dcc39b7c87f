"""kvm-host: the booted host kernel offers KVM.

Checks what the kernel itself says (its "hypervisor extension available"
line, printed by arch/riscv/kvm/main.c when the H extension is usable)
and what user space sees (/dev/kvm is a character device).

Case ids: kvm-host/hypervisor-extension, kvm-host/dev-kvm
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from orchestrator.results import FAIL, PASS, Case
from orchestrator.suites import Suite
from orchestrator.targets import Target

KVM_BANNER = re.compile(r"kvm \[\d+\]: hypervisor extension available")


class KvmHost(Suite):
    name = "kvm-host"
    order = 10

    def plan(self) -> list[str]:
        return [f"{self.name}/hypervisor-extension", f"{self.name}/dev-kvm"]

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
