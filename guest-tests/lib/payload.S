/* SPDX-License-Identifier: MIT */
/*
 * The guest payload, embedded in its host program: RIG_PAYLOAD is the path
 * of the flat binary (set by the Makefile), so a program cannot be run with
 * another program's payload or an older build of its own.
 */
	.section .rodata.rig_payload, "a"
	.balign	8
	.globl	rig_payload
	.globl	rig_payload_end
rig_payload:
	.incbin	RIG_PAYLOAD
rig_payload_end:
	.section .note.GNU-stack, "", %progbits
