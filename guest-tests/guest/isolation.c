// SPDX-License-Identifier: MIT
/*
 * Guest payload "isolation": write the SCOUNTEREN value of the parameter
 * block, then cause n_exits KVM exits, re-reading SCOUNTEREN after each one.
 * n_timer_exits of them are timer interrupts waited for with wfi, spread
 * evenly; the others alternate between an SBI call KVM answers in the kernel
 * and a tick ucall that exits to user space. (With n_timer_exits a third of
 * n_exits this is the rotation SBI, tick, timer.) The host program meanwhile
 * checks that the value does not reach host user space; the guest checks
 * that it keeps it. One ISOLATION report gives the result.
 */
#include "rig_guest.h"

/*
 * How far ahead the timer is set: 1 ms at QEMU virt's 10 MHz timebase. Long
 * enough that the guest normally reaches wfi (and blocks in KVM) first.
 */
#define TIMER_DELTA		10000UL
/*
 * The wait for one timer interrupt is bounded by wakeups, not by time: wfi
 * may return early, but this many times without the interrupt means it is
 * not coming. (A wfi that never returns is left to the caller's timeout.)
 */
#define TIMER_MAX_WAKEUPS	100000UL

static volatile int timer_fired;	/* set by the trap handler */

uint64_t rig_payload_trap(struct trap_frame *f)
{
	if (f->scause != CAUSE_S_TIMER || !(f->sstatus & SSTATUS_SPP))
		rig_abort(RIG_ABORT_UNEXPECTED_TRAP, f);
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
	unsigned long wakeups = 0;

	timer_fired = 0;
	sbi_call(SBI_EXT_TIME, SBI_TIME_SET_TIMER, read_time() + TIMER_DELTA,
		 0, 0, 0, 0);
	asm volatile("csrs sie, %0" : : "r"(SIE_STIE));
	/*
	 * wfi with sstatus.SIE clear still wakes on the pending interrupt;
	 * opening SIE only afterwards means the interrupt cannot slip in
	 * between the check and the wfi.
	 */
	while (!timer_fired) {
		if (wakeups++ == TIMER_MAX_WAKEUPS)
			rig_abort(RIG_ABORT_TIMER_LOST, NULL);
		asm volatile("wfi\n\t"
			     "csrs sstatus, %0\n\t"
			     "csrc sstatus, %0"
			     : : "r"(SSTATUS_SIE) : "memory");
	}
}

void rig_main(uint64_t hartid, uint64_t arg1)
{
	const struct rig_params *p = rig_get_params();
	struct rig_isolation r = { 0 };
	uint64_t sc;

	(void)hartid;
	(void)arg1;
	if (p->n_scounteren != 1)
		rig_abort(RIG_ABORT_BAD_PARAMS, NULL);

	r.scounteren_written = p->scounteren[0];
	write_scounteren(r.scounteren_written);
	r.scounteren_read = read_scounteren();

	if (p->n_timer_exits > p->n_exits)
		rig_abort(RIG_ABORT_BAD_PARAMS, NULL);
	for (r.checks = 0; r.checks < p->n_exits; r.checks++) {
		/* exit i is a timer wait when floor(i * timers / exits) steps up after it */
		if ((r.checks + 1) * p->n_timer_exits / p->n_exits >
		    r.checks * p->n_timer_exits / p->n_exits) {
			timer_interrupt();
			r.timer_interrupts++;
		} else if ((r.sbi_in_kernel + r.user_exits) % 2 == 0) {
			sbi_call(SBI_EXT_BASE, SBI_BASE_GET_SPEC_VERSION,
				 0, 0, 0, 0, 0);
			r.sbi_in_kernel++;
		} else {
			rig_tick();
			r.user_exits++;
		}
		sc = read_scounteren();
		if (sc != r.scounteren_written && r.mismatches++ == 0)
			r.first_mismatch = sc;
	}
	r.scounteren_final = read_scounteren();
	RIG_REPORT(RIG_REPORT_ISOLATION, &r);
	rig_done(1);
}
