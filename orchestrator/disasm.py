"""Which CSRs a function of a built vmlinux accesses, read from its machine code.

The CSR number is taken from the instruction word (SYSTEM opcode, funct3
non-zero, bits 31:20), not from objdump's symbolic name, so the answer does
not depend on the disassembler knowing a CSR's name.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
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
# objdump -d line: address, encoding (4 or 2 bytes), mnemonic, operands
_LINE = re.compile(r"^\s*[0-9a-f]+:\s+([0-9a-f]{4}|[0-9a-f]{8})\s+(\S+)\s*(.*)$", re.MULTILINE)
_CALLEE = re.compile(r"<([\w.]+)(?:\+0x[0-9a-f]+)?>")

# The functions a world-switch round trip runs through (those not inlined), for
# comparing two kernels' paths instruction by instruction.
ROUND_TRIP_FUNCTIONS = ("__kvm_riscv_switch_to", "kvm_riscv_vcpu_enter_exit",
                        "kvm_arch_vcpu_ioctl_run", "kvm_riscv_vcpu_exit",
                        "kvm_riscv_vcpu_sbi_ecall", "kvm_riscv_vcpu_csr_return",
                        "kvm_riscv_vcpu_virtual_insn")


def csr_number(word: int) -> int | None:
    """The CSR a 32-bit instruction accesses, or None if it is not a CSR instruction."""
    if word & 0x7F != SYSTEM_OPCODE or (word >> 12) & 0x7 in (0, 4):
        return None
    return word >> 20


def _disassembly(vmlinux: Path, function: str) -> str:
    out = subprocess.run(
        [f"{CROSS_COMPILE}objdump", "-d", f"--disassemble={function}", str(vmlinux)],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise InfraError(f"objdump failed on {vmlinux}: {out.stderr.strip()}")
    if f"<{function}>:" not in out.stdout:
        raise InfraError(f"{vmlinux}: no function {function}")
    return out.stdout


def function_csrs(vmlinux: Path, function: str) -> set[int]:
    """CSR numbers accessed by the instructions of one function."""
    words = (int(hexword, 16) for hexword in _INSN.findall(_disassembly(vmlinux, function)))
    return {csr for csr in map(csr_number, words) if csr is not None}


def world_switch_report(vmlinux: Path) -> dict[str, list[str]]:
    """For each world-switch function, the watched CSRs it accesses by name."""
    report = {}
    for function in WORLD_SWITCH_FUNCTIONS:
        found = function_csrs(vmlinux, function)
        report[function] = sorted(name for name, number in WATCHED_CSRS.items()
                                  if number in found)
    return report


@dataclass(frozen=True)
class FunctionCode:
    """A function's machine code in brief: its instruction count and its callees."""

    instructions: int
    calls: tuple[str, ...]  # functions it calls or jumps to outside itself, sorted


def function_code(disassembly: str, function: str) -> FunctionCode:
    """The instruction count and callees of one function, from objdump -d output."""
    lines = _LINE.findall(disassembly)
    calls = {callee for _, mnemonic, operands in lines
             if mnemonic in ("jal", "call", "tail", "j", "auipc", "jalr")
             for callee in _CALLEE.findall(operands) if callee != function}
    return FunctionCode(len(lines), tuple(sorted(calls)))


def round_trip_code(vmlinux: Path) -> dict[str, FunctionCode | None]:
    """Each of ROUND_TRIP_FUNCTIONS in vmlinux (None: inlined or absent there)."""
    found: dict[str, FunctionCode | None] = {}
    for function in ROUND_TRIP_FUNCTIONS:
        try:
            found[function] = function_code(_disassembly(vmlinux, function), function)
        except InfraError:
            found[function] = None
    return found
