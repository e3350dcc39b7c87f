/* SPDX-License-Identifier: MIT */
/*
 * Guest <-> host ABI of the rig's guest tests, shared by the guest payloads
 * and the host programs (fixed-width types only, no libc).
 *
 * Guest physical layout (one memory slot):
 *   RIG_RAM_GPA ..   payload (flat binary, entry at its first byte)
 *   RIG_PARAM_GPA    struct rig_params, written by the host program before
 *                    the first KVM_RUN (last page of the slot)
 *
 * Ucalls: the guest talks to its host program with SBI calls to
 * RIG_UCALL_EXT, an extension id in the SBI "experimental" range
 * 0x08000000-0x08FFFFFF. KVM (6.12 arch/riscv/kvm/vcpu_sbi_base.c,
 * vcpu_sbi_ext_experimental) forwards that range to user space as
 * KVM_EXIT_RISCV_SBI; it is not default_disabled, so it needs no setup. The
 * host program gets the command and its arguments in registers, and for a
 * report the report's address: KVM never has to decode a guest store, as it
 * would for MMIO.
 *
 *   a7 = RIG_UCALL_EXT, a6 = command (enum rig_ucall_cmd), a0.. = arguments
 *
 * The host answers a0 = 0 (SBI_SUCCESS) and, except for TICK, a1 = the
 * number of ucalls it has handled so far.
 */
#ifndef RIG_ABI_H
#define RIG_ABI_H

#include <stdint.h>

#define RIG_RAM_GPA		0x80000000UL
#define RIG_RAM_SIZE		(16UL << 20)
#define RIG_PARAM_GPA		(RIG_RAM_GPA + RIG_RAM_SIZE - 0x1000UL)

#define RIG_UCALL_EXT		0x08524947UL	/* "\x08RIG" */

enum rig_ucall_cmd {
	/* a0 = enum rig_report_type, a1 = GPA of the report, a2 = its size */
	RIG_UCALL_REPORT = 0,
	/* no arguments: a cheap exit to user space, answered silently */
	RIG_UCALL_TICK = 1,
	/* a0 = number of reports of the payload's main type sent */
	RIG_UCALL_DONE = 2,
	/* a0 = enum rig_abort_reason, a1..a4 = scause, stval, sepc, sstatus */
	RIG_UCALL_ABORT = 3,
};

enum rig_abort_reason {
	RIG_ABORT_BAD_PARAMS = 1,
	RIG_ABORT_UNEXPECTED_TRAP = 2,
	RIG_ABORT_NESTED_TRAP = 3,
	RIG_ABORT_TIMER_LOST = 4,	/* isolation: too many wakeups, no timer */
};

#define RIG_MAGIC		0x52474952U	/* "RIGR" in memory (little endian) */
#define RIG_VERSION		6U

/* Parameter block at RIG_PARAM_GPA; each payload reads its own part. */
#define RIG_MAX_SCOUNTEREN	16
#define RIG_PARAM_PMU		(1U << 0)	/* configure+start SBI PMU counters */

struct rig_params {
	uint32_t magic;			/* RIG_MAGIC: the guest aborts without it */
	uint32_t version;		/* RIG_VERSION */
	uint32_t flags;			/* RIG_PARAM_* */
	uint32_t n_scounteren;		/* entries used in scounteren[] */
	uint64_t scounteren[RIG_MAX_SCOUNTEREN];
	uint64_t delay_loops;		/* counters: busy loop between two reads */
	uint64_t n_exits;		/* isolation: exits to cause, all kinds */
	uint64_t iterations;		/* latency: round trips per timed loop */
	uint32_t windows;		/* latency: timed loops per kind */
	uint32_t latency_tests;		/* latency: bit n = rig_latency_test n */
	uint64_t n_timer_exits;		/* isolation: how many of n_exits are timer waits */
	uint64_t n_deadlines;		/* timer: deadlines to program and check */
	uint32_t timer_flags;		/* timer: RIG_TIMER_* */
	uint32_t max_loss_reports;	/* timer: TIMER_LOSS reports at most */
};

/* timer: how the guest programs its deadlines, and what it may read back. */
#define RIG_TIMER_DIRECT	(1U << 0)	/* csrw stimecmp, not SBI set_timer */
#define RIG_TIMER_READBACK	(1U << 1)	/* the vCPU has Sstc: stimecmp is readable */

/* Latency round-trip kinds. */
enum rig_latency_test {
	RIG_LAT_SBI_IN_KERNEL = 0,	/* SBI base call, answered by KVM */
	RIG_LAT_USER_EXIT = 1,		/* tick ucall, answered by user space */
	RIG_LAT_EMULATED_CSR = 2,	/* rdcycle, emulated by KVM (needs PMU) */
	RIG_LAT_N_TESTS
};
/* The guest keeps every window's ticks until all windows are timed. */
#define RIG_LAT_MAX_WINDOWS	8192

/* ---- reports: one struct per type ----------------------------------- */

enum rig_report_type {
	RIG_REPORT_PMU_INFO = 1,
	RIG_REPORT_PMU_CONFIG = 2,
	RIG_REPORT_COUNTER = 3,
	RIG_REPORT_ISOLATION = 4,
	RIG_REPORT_LATENCY = 5,
	RIG_REPORT_TIMER_LOSS = 6,
	RIG_REPORT_TIMER = 7,
};

/* SBI PMU probe, sent by every payload that links pmu.c. */
struct rig_pmu_info {
	int64_t probe_error;		/* sbi_probe_extension(PMU) */
	int64_t probe_value;		/* nonzero: the guest has an SBI PMU */
	int64_t num_counters_error;	/* sbi_pmu_num_counters() */
	int64_t num_counters;
};

/* Configuration and start of one SBI PMU event. */
struct rig_pmu_config {
	uint64_t event_idx;		/* SBI event index */
	int64_t cfg_match_error;
	uint64_t counter_index;		/* valid when cfg_match_error == 0 */
	int64_t start_error;		/* valid when cfg_match_error == 0 */
	uint32_t counter_csr;		/* CSR of counter_index, 0 if unknown */
	uint32_t pad;
};

enum rig_mode {
	RIG_MODE_VS = 1,
	RIG_MODE_VU = 2,
};

/* Counter CSR numbers (Zicntr / Zihpm user counters). */
#define RIG_CSR_CYCLE		0xC00
#define RIG_CSR_TIME		0xC01
#define RIG_CSR_INSTRET		0xC02
#define RIG_CSR_HPMCOUNTER3	0xC03

/* Two reads of one counter in one mode under one guest SCOUNTEREN. */
struct rig_counter {
	uint32_t test;			/* sequence number */
	uint16_t mode;			/* enum rig_mode */
	uint16_t csr;			/* RIG_CSR_* */
	uint64_t scounteren_written;
	uint64_t scounteren_read;	/* read back right after the write */
	uint64_t scounteren_after;	/* re-read in VS after the reads */
	uint64_t value1, value2;	/* the two reads; 0 where a read trapped */
	uint32_t traps;			/* traps taken by the two reads */
	uint32_t pmu_available;		/* the guest's SBI PMU probe said yes */
	uint64_t cause, tval;		/* first trap; valid when traps != 0 */
};

/* End of the isolation payload. */
struct rig_isolation {
	uint64_t scounteren_written;
	uint64_t scounteren_read;	/* read back right after the write */
	uint64_t scounteren_final;	/* read at the end */
	uint64_t checks;		/* re-reads, one after each exit */
	uint64_t mismatches;		/* re-reads != scounteren_written */
	uint64_t first_mismatch;	/* valid when mismatches != 0 */
	uint64_t sbi_in_kernel;		/* exits caused, by kind */
	uint64_t user_exits;
	uint64_t timer_interrupts;
};

/* One timed window of the latency payload. */
struct rig_latency {
	uint32_t test;			/* enum rig_latency_test */
	uint32_t window;
	uint64_t ticks;			/* rdtime ticks of the round-trip loop */
	uint64_t baseline_ticks;	/* the empty loop timed right before */
};

/*
 * timer: the kinds of deadline the guest programs, in rotation after the
 * first one of a vCPU's life, and how each ended up.
 */
enum rig_timer_kind {
	RIG_TIMER_FIRST = 0,		/* the first after reset (KVM's copy all ones) */
	RIG_TIMER_SHORT = 1,		/* 100 us ahead */
	RIG_TIMER_LONG = 2,		/* 500 us ahead */
	RIG_TIMER_REPLACED = 3,		/* 32 about 1 s ahead in turn, then one 100 us ahead */
	RIG_TIMER_N_KINDS
};

enum rig_timer_class {
	RIG_TIMER_ON_TIME = 0,		/* fired at or after it, within 1 ms */
	RIG_TIMER_LATE = 1,		/* fired later, stimecmp still held it */
	RIG_TIMER_EARLY = 2,		/* fired before it */
	RIG_TIMER_NEVER = 3,		/* not fired within the bound */
	RIG_TIMER_N_CLASSES
};

/* One lost deadline, reported as the guest sees it (the host adds KVM's view). */
struct rig_timer_loss {
	uint64_t index;			/* deadline number in this run, from 0 */
	uint32_t kind;			/* enum rig_timer_kind */
	uint32_t class;			/* enum rig_timer_class */
	uint64_t requested;		/* the deadline programmed (time units) */
	uint64_t replaced;		/* REPLACED: the far deadline it replaced, else 0 */
	uint64_t set_at;		/* time when it was programmed */
	uint64_t readback;		/* stimecmp right after; with READBACK only */
	uint64_t fired_at;		/* time of the interrupt, 0 if none */
	uint64_t now;			/* time at this report */
};

/* End of the timer payload: counts[kind][class] and the losses among them. */
struct rig_timer {
	uint64_t deadlines;
	uint64_t counts[RIG_TIMER_N_KINDS][RIG_TIMER_N_CLASSES];
	uint64_t readbacks;		/* stimecmp reads right after programming */
	uint64_t readback_mismatches;	/* of them, not the deadline programmed */
	uint64_t losses;		/* deadlines early, never, or read back wrong */
	uint64_t max_late;		/* the latest on-time/late firing, time units */
};

_Static_assert(sizeof(struct rig_params) == 72 + 8 * RIG_MAX_SCOUNTEREN,
	       "rig_params layout");
_Static_assert(sizeof(struct rig_pmu_info) == 32, "rig_pmu_info layout");
_Static_assert(sizeof(struct rig_pmu_config) == 40, "rig_pmu_config layout");
_Static_assert(sizeof(struct rig_counter) == 72, "rig_counter layout");
_Static_assert(sizeof(struct rig_isolation) == 72, "rig_isolation layout");
_Static_assert(sizeof(struct rig_latency) == 24, "rig_latency layout");
_Static_assert(sizeof(struct rig_timer_loss) == 64, "rig_timer_loss layout");
_Static_assert(sizeof(struct rig_timer) == 40 + 8 * RIG_TIMER_N_KINDS * RIG_TIMER_N_CLASSES,
	       "rig_timer layout");

#endif
