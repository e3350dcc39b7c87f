// SPDX-License-Identifier: MIT
/*
 * Guest payload "timer": program n_deadlines timer deadlines, one after the
 * other, and check each interrupt against `time`. By default each deadline
 * goes through SBI TIME set_timer (KVM handles the call in the kernel); with
 * RIG_TIMER_DIRECT the guest writes stimecmp itself (the vCPU's Sstc).
 *
 * The first deadline of the vCPU's life comes first, then the kinds rotate:
 * short, replaced, short, long (enum rig_timer_kind). Each ends up on time,
 * late, early or never (enum rig_timer_class). With RIG_TIMER_READBACK the
 * guest also reads stimecmp right after programming it: the value the
 * hardware will compare `time` against, whatever KVM's own copy holds.
 *
 * A deadline is lost when the interrupt comes before it (an older deadline
 * still in force), never comes, or stimecmp reads back something else. The
 * first max_loss_reports losses are reported one by one (TIMER_LOSS, the
 * host adds KVM's view of the timer), all of them in the final TIMER report.
 */
#include "rig_guest.h"

/* QEMU virt's timebase is 10 MHz: 10 time units per microsecond. */
#define TICKS_PER_US		10UL
#define SHORT_DELTA		(100 * TICKS_PER_US)
#define LONG_DELTA		(500 * TICKS_PER_US)
#define REPLACED_DELTA		(1000000 * TICKS_PER_US)
/* How many far deadlines a replaced one goes through before the near one. */
#define REPLACED_STEPS		32
/* Lateness that still counts as on time: the host may be busy for a tick. */
#define ON_TIME_SLACK		(1000 * TICKS_PER_US)
/*
 * How long after a deadline the guest waits for its interrupt. With
 * READBACK a wait that finds stimecmp still holding the deadline goes on to
 * the long bound (the host or QEMU was slow, nothing was lost); without it
 * the guest cannot tell, and waits longer at once.
 */
#define BOUND_READBACK		(5000 * TICKS_PER_US)
#define BOUND_BLIND		(50000 * TICKS_PER_US)
#define BOUND_LONG		(1000000 * TICKS_PER_US)

#define CSR_STIMECMP		"0x14d"

static volatile int timer_fired;	/* set by the trap handler */
static volatile uint64_t fired_at;

static uint64_t read_time(void)
{
	uint64_t t;

	asm volatile("rdtime %0" : "=r"(t));
	return t;
}

uint64_t rig_payload_trap(struct trap_frame *f)
{
	if (f->scause != CAUSE_S_TIMER || !(f->sstatus & SSTATUS_SPP))
		rig_abort(RIG_ABORT_UNEXPECTED_TRAP, f);
	fired_at = read_time();
	/* The interrupt stays pending until the next deadline: mask it. */
	asm volatile("csrc sie, %0" : : "r"(SIE_STIE));
	timer_fired = 1;
	return 0;
}

static uint64_t read_stimecmp(void)
{
	uint64_t v;

	asm volatile("csrr %0, " CSR_STIMECMP : "=r"(v));
	return v;
}

static void program(uint32_t flags, uint64_t deadline)
{
	if (flags & RIG_TIMER_DIRECT)
		asm volatile("csrw " CSR_STIMECMP ", %0" : : "r"(deadline) : "memory");
	else
		sbi_call(SBI_EXT_TIME, SBI_TIME_SET_TIMER, deadline, 0, 0, 0, 0);
}

/* Spin with the timer interrupt open until it fires or `time` passes limit. */
static int wait_until(uint64_t limit)
{
	asm volatile("csrs sstatus, %0" : : "r"(SSTATUS_SIE) : "memory");
	while (!timer_fired && read_time() < limit)
		;
	asm volatile("csrc sstatus, %0" : : "r"(SSTATUS_SIE) : "memory");
	return timer_fired;
}

static uint32_t kind_of(uint64_t index)
{
	static const uint32_t rotation[] = {
		RIG_TIMER_SHORT, RIG_TIMER_REPLACED, RIG_TIMER_SHORT, RIG_TIMER_LONG,
	};

	if (index == 0)
		return RIG_TIMER_FIRST;
	return rotation[(index - 1) % (sizeof(rotation) / sizeof(rotation[0]))];
}

static uint64_t loss_reports;		/* TIMER_LOSS reports sent */

static void report_loss(const struct rig_params *p, struct rig_timer_loss *l)
{
	if (loss_reports++ < p->max_loss_reports) {
		l->now = read_time();
		RIG_REPORT(RIG_REPORT_TIMER_LOSS, l);
	}
}

/*
 * The far deadlines a replaced one goes through, each read back at once: a
 * loss is reported right away (KVM's copy then still holds the stale
 * value), with the class never (it never took effect). Returns whether one
 * was lost; *last is the last one programmed.
 */
static int program_far(const struct rig_params *p, struct rig_timer *r,
		       const struct rig_timer_loss *deadline, uint64_t *last)
{
	struct rig_timer_loss l = *deadline;
	unsigned int step;
	int lost = 0;

	for (step = 0; step < REPLACED_STEPS; step++) {
		l.requested = read_time() + REPLACED_DELTA + step;
		program(p->timer_flags, l.requested);
		if (!(p->timer_flags & RIG_TIMER_READBACK))
			continue;
		r->readbacks++;
		l.readback = read_stimecmp();
		if (l.readback == l.requested || lost)
			continue;
		lost = 1;
		r->readback_mismatches++;
		l.class = RIG_TIMER_NEVER;
		report_loss(p, &l);
	}
	*last = l.requested;
	return lost;
}

/* Programs deadline `index` of its kind, waits for it and classifies it. */
static void one_deadline(const struct rig_params *p, struct rig_timer *r,
			 struct rig_timer_loss *l, uint64_t index)
{
	uint32_t flags = p->timer_flags;
	int readback = flags & RIG_TIMER_READBACK;
	uint64_t delta = kind_of(index) == RIG_TIMER_LONG ? LONG_DELTA : SHORT_DELTA;
	int lost_far = 0, mismatch = 0;

	*l = (struct rig_timer_loss){ .index = index, .kind = kind_of(index) };
	timer_fired = 0;
	fired_at = 0;
	if (l->kind == RIG_TIMER_REPLACED) {
		lost_far = program_far(p, r, l, &l->replaced);
	}
	l->set_at = read_time();
	l->requested = l->set_at + delta;
	program(flags, l->requested);
	if (readback) {
		l->readback = read_stimecmp();
		r->readbacks++;
		mismatch = l->readback != l->requested;
		r->readback_mismatches += mismatch;
	}
	asm volatile("csrs sie, %0" : : "r"(SIE_STIE));

	if (!wait_until(l->requested + (readback ? BOUND_READBACK : BOUND_BLIND)) &&
	    readback && read_stimecmp() == l->requested)
		wait_until(l->requested + BOUND_LONG);
	asm volatile("csrc sie, %0" : : "r"(SIE_STIE));

	if (!timer_fired)
		l->class = RIG_TIMER_NEVER;
	else if (fired_at < l->requested)
		l->class = RIG_TIMER_EARLY;
	else if (fired_at - l->requested > ON_TIME_SLACK)
		l->class = RIG_TIMER_LATE;
	else
		l->class = RIG_TIMER_ON_TIME;
	l->fired_at = timer_fired ? fired_at : 0;
	r->counts[l->kind][l->class]++;
	if (l->class != RIG_TIMER_ON_TIME && l->class != RIG_TIMER_LATE)
		mismatch = 1;
	else if (fired_at - l->requested > r->max_late)
		r->max_late = fired_at - l->requested;
	r->losses += mismatch || lost_far;
	if (mismatch)
		report_loss(p, l);
}

void rig_main(uint64_t hartid, uint64_t arg1)
{
	const struct rig_params *p = rig_get_params();
	struct rig_timer r = { 0 };
	struct rig_timer_loss loss;

	(void)hartid;
	(void)arg1;
	if (!p->n_deadlines)
		rig_abort(RIG_ABORT_BAD_PARAMS, NULL);
	for (r.deadlines = 0; r.deadlines < p->n_deadlines; r.deadlines++)
		one_deadline(p, &r, &loss, r.deadlines);
	/* Nothing fires after the end. */
	program(p->timer_flags, ~0ULL);
	RIG_REPORT(RIG_REPORT_TIMER, &r);
	rig_done(1);
}
