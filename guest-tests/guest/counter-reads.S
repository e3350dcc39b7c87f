/*
 * Counter-read sequences of the counters payload, run in VS-mode directly
 * or in VU-mode through rig_enter_user (start.S).
 */

/*
 * The same read sequence runs in both modes: zero the results (a trapped
 * read leaves its destination untouched), read, busy-wait a0 iterations,
 * read again. Each read is one 4-byte csrr, which the trap handler skips.
 */
.macro READ2 csr
	mv	t0, a0
	li	a0, 0
	li	a1, 0
	csrr	a0, \csr
	beqz	t0, 2f
1:	addi	t0, t0, -1
	bnez	t0, 1b
2:	csrr	a1, \csr
.endm

/* struct rig_pair rig_vs_read_<counter>(uint64_t delay) */
.macro VS_READ name, csr
	.globl	rig_vs_read_\name
	.align	2
rig_vs_read_\name:
	READ2	\csr
	ret
.endm

/* VU stub: entered by sret from rig_enter_user, leaves by ecall. */
.macro VU_READ name, csr
	.globl	rig_vu_read_\name
	.align	2
rig_vu_read_\name:
	READ2	\csr
	ecall
1:	j	1b			/* not reached: ecall never returns here */
.endm

	.text
	VS_READ	cycle, 0xc00
	VS_READ	time, 0xc01
	VS_READ	instret, 0xc02
	VS_READ	hpmcounter3, 0xc03
	VU_READ	cycle, 0xc00
	VU_READ	time, 0xc01
	VU_READ	instret, 0xc02
	VU_READ	hpmcounter3, 0xc03
