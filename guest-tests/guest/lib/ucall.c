// SPDX-License-Identifier: MIT
/* Guest-side pieces every payload needs: SBI calls, ucalls, trap dispatch. */
#include "rig_guest.h"

/* The compiler may emit calls to memset for struct initialisers. */
void *memset(void *s, int c, size_t n);
void *memset(void *s, int c, size_t n)
{
	unsigned char *p = s;

	while (n--)
		*p++ = (unsigned char)c;
	return s;
}

struct sbiret sbi_call(unsigned long ext, unsigned long fid,
		       unsigned long arg0, unsigned long arg1,
		       unsigned long arg2, unsigned long arg3,
		       unsigned long arg4)
{
	register unsigned long a0 asm("a0") = arg0;
	register unsigned long a1 asm("a1") = arg1;
	register unsigned long a2 asm("a2") = arg2;
	register unsigned long a3 asm("a3") = arg3;
	register unsigned long a4 asm("a4") = arg4;
	register unsigned long a6 asm("a6") = fid;
	register unsigned long a7 asm("a7") = ext;
	struct sbiret ret;

	/* "memory": the host reads a report through guest RAM. */
	asm volatile("ecall"
		     : "+r"(a0), "+r"(a1)
		     : "r"(a2), "r"(a3), "r"(a4), "r"(a6), "r"(a7)
		     : "memory");
	ret.error = (long)a0;
	ret.value = (long)a1;
	return ret;
}

void rig_report(uint32_t type, const void *report, unsigned long size)
{
	sbi_call(RIG_UCALL_EXT, RIG_UCALL_REPORT, type, (uintptr_t)report,
		 size, 0, 0);
}

void rig_done(uint64_t n_reports)
{
	sbi_call(RIG_UCALL_EXT, RIG_UCALL_DONE, n_reports, 0, 0, 0, 0);
	for (;;)
		asm volatile("wfi");
}

void rig_abort(uint64_t reason, const struct trap_frame *f)
{
	if (f)
		sbi_call(RIG_UCALL_EXT, RIG_UCALL_ABORT, reason, f->scause,
			 f->stval, f->sepc, f->sstatus);
	else
		sbi_call(RIG_UCALL_EXT, RIG_UCALL_ABORT, reason, 0, 0, 0, 0);
	for (;;)
		asm volatile("wfi");
}

const struct rig_params *rig_get_params(void)
{
	const struct rig_params *p = (const struct rig_params *)RIG_PARAM_GPA;

	if (p->magic != RIG_MAGIC || p->version != RIG_VERSION ||
	    p->n_scounteren > RIG_MAX_SCOUNTEREN)
		rig_abort(RIG_ABORT_BAD_PARAMS, NULL);
	return p;
}

uint64_t rig_trap(struct trap_frame *f)
{
	static volatile int trap_depth;
	uint64_t ret;

	/* A trap inside the handler would overwrite sepc/scause: give up. */
	if (trap_depth++)
		rig_abort(RIG_ABORT_NESTED_TRAP, f);
	ret = rig_payload_trap(f);
	trap_depth--;
	return ret;
}
