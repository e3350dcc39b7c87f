/* SPDX-License-Identifier: MIT */
/*
 * Guest entry, VS-mode trap entry and the VS->VU->VS round trip, shared by
 * all payloads. Runs in VS-mode with vsatp = Bare.
 */

#define SSTATUS_SPP	0x100
#define FRAME_SIZE	(36 * 8)	/* x0..x31, sepc, scause, stval, sstatus */
#define USER_SAVE	(13 * 8)	/* ra, s0..s11 */

	.section .text.entry, "ax"
	.globl	_start
_start:
	/* a0 = hartid, a1 = 0 (set by the VMM); both are kept for rig_main. */
	la	sp, rig_stack_top
	la	t0, rig_trap_entry
	csrw	stvec, t0		/* direct mode: entry is 4-byte aligned */
	csrw	sie, zero		/* no interrupts until a payload enables one */
	la	t0, __bss_start
	la	t1, __bss_end
1:	bgeu	t0, t1, 2f
	sd	zero, 0(t0)
	addi	t0, t0, 8
	j	1b
2:	call	rig_main
3:	wfi
	j	3b

	.text
	.align	2
	.globl	rig_trap_entry
rig_trap_entry:
	/* Traps from VU arrive on the VU sp, which is the VS sp of rig_enter_user. */
	addi	sp, sp, -FRAME_SIZE
	.irp	n,1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	sd	x\n, \n*8(sp)
	.endr
	addi	t0, sp, FRAME_SIZE
	sd	t0, 2*8(sp)
	csrr	t0, sepc
	sd	t0, 32*8(sp)
	csrr	t0, scause
	sd	t0, 33*8(sp)
	csrr	t0, stval
	sd	t0, 34*8(sp)
	csrr	t0, sstatus
	sd	t0, 35*8(sp)

	mv	a0, sp
	call	rig_trap
	bnez	a0, .Lleave_user

	ld	t0, 32*8(sp)
	csrw	sepc, t0
	.irp	n,1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	ld	x\n, \n*8(sp)
	.endr
	addi	sp, sp, FRAME_SIZE
	sret

.Lleave_user:
	/*
	 * ecall from the VU stub: return from rig_enter_user in VS-mode with the
	 * stub's a0/a1 (the two counter values) as the result.
	 */
	ld	a0, 10*8(sp)
	ld	a1, 11*8(sp)
	la	t0, rig_user_saved_sp
	ld	sp, 0(t0)
	ld	ra, 0*8(sp)
	ld	s0, 1*8(sp)
	ld	s1, 2*8(sp)
	ld	s2, 3*8(sp)
	ld	s3, 4*8(sp)
	ld	s4, 5*8(sp)
	ld	s5, 6*8(sp)
	ld	s6, 7*8(sp)
	ld	s7, 8*8(sp)
	ld	s8, 9*8(sp)
	ld	s9, 10*8(sp)
	ld	s10, 11*8(sp)
	ld	s11, 12*8(sp)
	addi	sp, sp, USER_SAVE + 8	/* keep sp 16-byte aligned */
	ret

/*
 * struct rig_pair rig_enter_user(uintptr_t vu_pc, uint64_t delay)
 * Runs the stub at vu_pc in VU-mode with a0 = delay; the stub ends with
 * ecall, which the trap handler turns into a return from this function.
 */
	.globl	rig_enter_user
rig_enter_user:
	addi	sp, sp, -(USER_SAVE + 8)
	sd	ra, 0*8(sp)
	sd	s0, 1*8(sp)
	sd	s1, 2*8(sp)
	sd	s2, 3*8(sp)
	sd	s3, 4*8(sp)
	sd	s4, 5*8(sp)
	sd	s5, 6*8(sp)
	sd	s6, 7*8(sp)
	sd	s7, 8*8(sp)
	sd	s8, 9*8(sp)
	sd	s9, 10*8(sp)
	sd	s10, 11*8(sp)
	sd	s11, 12*8(sp)
	la	t0, rig_user_saved_sp
	sd	sp, 0(t0)
	csrw	sepc, a0
	li	t0, SSTATUS_SPP
	csrc	sstatus, t0		/* sret to U (V stays 1: VU-mode) */
	mv	a0, a1
	sret

	.bss
	.align	3
	.globl	rig_user_saved_sp
rig_user_saved_sp:
	.skip	8
	.align	4
rig_stack:
	.skip	16384
rig_stack_top:
