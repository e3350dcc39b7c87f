"""Which CSRs a function of a built vmlinux accesses, read from its machine code.

The CSR number is taken from the instruction word (SYSTEM opcode, funct3
non-zero, bits 31:20), not from objdump's symbolic name, so the answer does
not depend on the disassembler knowing a CSR's name.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from orchestrator.errors import InfraError
from orchestrator.kernel import CROSS_COMPILE

CSR_SSTATUS = 0x100
CSR_SCOUNTEREN = 0x106
CSR_HSTATUS = 0x600
SYSTEM_OPCODE = 0x73

# The functions around KVM's world switch, and the CSRs the rig reports for them.
WORLD_SWITCH_FUNCTIONS = ("__kvm_riscv_switch_to", "kvm_riscv_vcpu_enter_exit")
WATCHED_CSRS = {"sstatus": CSR_SSTATUS, "scounteren": CSR_SCOUNTEREN, "hstatus": CSR_HSTATUS}

_INSN = re.compile(r"^\s*[0-9a-f]+:\s+([0-9a-f]{8})\s", re.MULTILINE)


def csr_number(word: int) -> int | None:
    """The CSR a 32-bit instruction accesses, or None if it is not a CSR instruction."""
    if word & 0x7F != SYSTEM_OPCODE or (word >> 12) & 0x7 in (0, 4):
        return None
    return word >> 20


def function_csrs(vmlinux: Path, function: str) -> set[int]:
    """CSR numbers accessed by the instructions of one function."""
    out = subprocess.run(
        [f"{CROSS_COMPILE}objdump", "-d", f"--disassemble={function}", str(vmlinux)],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise InfraError(f"objdump failed on {vmlinux}: {out.stderr.strip()}")
    if f"<{function}>:" not in out.stdout:
        raise InfraError(f"{vmlinux}: no function {function}")
    words = (int(hexword, 16) for hexword in _INSN.findall(out.stdout))
    return {csr for csr in map(csr_number, words) if csr is not None}


def world_switch_report(vmlinux: Path) -> dict[str, list[str]]:
    """For each world-switch function, the watched CSRs it accesses by name."""
    report = {}
    for function in WORLD_SWITCH_FUNCTIONS:
        found = function_csrs(vmlinux, function)
        report[function] = sorted(name for name, number in WATCHED_CSRS.items()
                                  if number in found)
    return report
