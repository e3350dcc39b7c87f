/* SPDX-License-Identifier: MIT */
/*
 * Timed loops of the latency payload:
 *   uint64_t rig_time_<name>(uint64_t n, unsigned long ext, unsigned long fid)
 * runs <insn> n (>= 1) times with a7 = ext, a6 = fid (an SBI call keeps all
 * registers but a0/a1) and returns the rdtime ticks the loop took. Every loop
 * is the same code around <insn>, so the empty one is the baseline.
 */

.macro TIMED name, insn:vararg
	.globl	rig_time_\name
	.align	2
rig_time_\name:
	mv	t0, a0
	mv	a7, a1
	mv	a6, a2
	/*
	 * Start right after a tick edge: the window's phase against the 100
	 * instructions of a tick (icount shift 0) is then the same in every
	 * window, so equal instruction counts give equal tick counts.
	 */
	rdtime	t1
1:	rdtime	t2
	beq	t1, t2, 1b
2:	\insn
	addi	t0, t0, -1
	bnez	t0, 2b
	rdtime	a0
	sub	a0, a0, t2
	ret
.endm

	.text
	TIMED	empty
	TIMED	ecall, ecall
	/* hcounteren.CY is 0 under KVM: a virtual-instruction trap each time */
	TIMED	cycle, csrr t3, cycle
