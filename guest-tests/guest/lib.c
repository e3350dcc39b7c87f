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

	/* "memory": the VMM reads the record through guest RAM. */
	asm volatile("ecall"
		     : "+r"(a0), "+r"(a1)
		     : "r"(a2), "r"(a3), "r"(a4), "r"(a6), "r"(a7)
		     : "memory");
	ret.error = (long)a0;
	ret.value = (long)a1;
	return ret;
}

void ucall(struct rig_record *r)
{
	r->magic = RIG_MAGIC;
	r->version = RIG_VERSION;
	sbi_call(RIG_UCALL_EXT, RIG_UCALL_RECORD, (uintptr_t)r, sizeof(*r),
		 0, 0, 0);
}

void guest_abort(uint64_t reason, const struct trap_frame *f)
{
	struct rig_record r = { .kind = RIG_KIND_ABORT, .aux = reason };

	if (f) {
		r.cause = f->scause;
		r.tval = f->stval;
		r.value1 = f->sepc;
		r.value2 = f->sstatus;
	}
	ucall(&r);
	for (;;)
		asm volatile("wfi");
}

const struct rig_params *rig_get_params(void)
{
	const struct rig_params *p = (const struct rig_params *)RIG_PARAM_GPA;

	if (p->magic != RIG_MAGIC || p->version != RIG_VERSION ||
	    p->n_scounteren > RIG_MAX_SCOUNTEREN)
		guest_abort(RIG_ABORT_BAD_PARAMS, NULL);
	return p;
}

uint64_t rig_trap(struct trap_frame *f)
{
	static volatile int trap_depth;
	uint64_t ret;

	/* A trap inside the handler would overwrite sepc/scause: give up. */
	if (trap_depth++)
		guest_abort(RIG_ABORT_NESTED_TRAP, f);
	ret = rig_payload_trap(f);
	trap_depth--;
	return ret;
}
