"""CSR numbers decoded from instruction words (encodings from a 6.12 vmlinux)."""

from __future__ import annotations

import pytest

from orchestrator.disasm import csr_number


@pytest.mark.parametrize(("word", "csr"), [
    (0x106393F3, 0x106),  # csrrw t2, scounteren, t2
    (0x60031373, 0x600),  # csrrw t1, hstatus, t1
    (0x100292F3, 0x100),  # csrrw t0, sstatus, t0
    (0x141022F3, 0x141),  # csrr  t0, sepc
    (0xC0102573, 0xC01),  # rdtime a0
])
def test_csr_instructions(word: int, csr: int) -> None:
    assert csr_number(word) == csr


@pytest.mark.parametrize("word", [
    0x00000073,  # ecall
    0x10200073,  # sret
    0x00A50533,  # add a0, a0, a0
    0x0005B503,  # ld a0, 0(a1)
])
def test_other_instructions(word: int) -> None:
    assert csr_number(word) is None


OBJDUMP = """
ffffffff80012340 <kvm_riscv_vcpu_exit>:
ffffffff80012340:	1101                	addi	sp,sp,-32
ffffffff80012342:	ec06                	sd	ra,24(sp)
ffffffff80012344:	00c000ef          	jal	ffffffff80012350 <preempt_count_add>
ffffffff80012348:	0f0000ef          	jal	ffffffff80012438 <kvm_riscv_vcpu_exit+0xf8>
ffffffff8001234c:	8082                	ret
"""


def test_function_code_counts_instructions_and_names_callees() -> None:
    from orchestrator.disasm import FunctionCode, function_code

    assert function_code(OBJDUMP, "kvm_riscv_vcpu_exit") == FunctionCode(5, ("preempt_count_add",))
