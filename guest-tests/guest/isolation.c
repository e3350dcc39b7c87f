// SPDX-License-Identifier: MIT
/*
 * Guest payload "isolation": write the SCOUNTEREN value of the parameter
 * block, then cause KVM exits in a fixed rotation (an SBI call KVM answers in
 * the kernel, a tick ucall that exits to the VMM, a timer interrupt waited
 * for with wfi) until n_exits, re-reading SCOUNTEREN after each one. The VMM
 * meanwhile checks that the value does not reach host user space; the guest
 * checks that it keeps it. One RIG_KIND_ISOLATION record reports the result.
 */
#include "rig_guest.h"

/*
 * How far ahead the timer is set: 1 ms at QEMU virt's 10 MHz timebase. Long
 * enough that the guest normally reaches wfi (and blocks in KVM) first.
 */
#define TIMER_DELTA		10000UL

static volatile int timer_fired;	/* set by the trap handler */

uint64_t rig_payload_trap(struct trap_frame *f)
{
	if (f->scause != CAUSE_S_TIMER || !(f->sstatus & SSTATUS_SPP))
		guest_abort(RIG_ABORT_UNEXPECTED_TRAP, f);
	/* The interrupt stays pending until the next set_timer: mask it. */
	asm volatile("csrc sie, %0" : : "r"(SIE_STIE));
	timer_fired = 1;
	return 0;
}

static uint64_t read_time(void)
{
	uint64_t t;

	/* VS-mode reads time directly: KVM sets hcounteren.TM. */
	asm volatile("rdtime %0" : "=r"(t));
	return t;
}

static void timer_interrupt(void)
{
	timer_fired = 0;
	sbi_call(SBI_EXT_TIME, SBI_TIME_SET_TIMER, read_time() + TIMER_DELTA,
		 0, 0, 0, 0);
	asm volatile("csrs sie, %0" : : "r"(SIE_STIE));
	/*
	 * wfi with sstatus.SIE clear still wakes on the pending interrupt;
	 * opening SIE only afterwards means the interrupt cannot slip in
	 * between the check and the wfi.
	 */
	while (!timer_fired)
		asm volatile("wfi\n\t"
			     "csrs sstatus, %0\n\t"
			     "csrc sstatus, %0"
			     : : "r"(SSTATUS_SIE) : "memory");
}

void rig_main(uint64_t hartid, uint64_t arg1)
{
	const struct rig_params *p = rig_get_params();
	struct rig_record r = { .kind = RIG_KIND_ISOLATION };
	uint64_t exits, sc;

	(void)hartid;
	(void)arg1;
	if (p->n_scounteren != 1)
		guest_abort(RIG_ABORT_BAD_PARAMS, NULL);

	r.scounteren_written = p->scounteren[0];
	write_scounteren(r.scounteren_written);
	r.scounteren_read = read_scounteren();

	for (exits = 0; exits < p->n_exits; exits++) {
		switch (exits % 3) {
		case 0:
			sbi_call(SBI_EXT_BASE, SBI_BASE_GET_SPEC_VERSION,
				 0, 0, 0, 0, 0);
			r.aux++;
			break;
		case 1:
			sbi_call(RIG_UCALL_EXT, RIG_UCALL_TICK, 0, 0, 0, 0, 0);
			r.sbi_value++;
			break;
		default:
			timer_interrupt();
			r.ntraps++;
			break;
		}
		sc = read_scounteren();
		r.test_id++;
		if (sc != r.scounteren_written && r.value1++ == 0)
			r.value2 = sc;
	}
	r.scounteren_after = read_scounteren();
	ucall(&r);
}
