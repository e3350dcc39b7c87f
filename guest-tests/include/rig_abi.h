/* SPDX-License-Identifier: MIT */
/*
 * Guest <-> VMM ABI of the counter rig. Shared by the guest payloads and
 * rig-vmm, so it uses fixed-width types only and no libc.
 *
 * Guest physical layout (one memory slot):
 *   RIG_RAM_GPA ..             payload (flat binary, entry at its first byte)
 *   RIG_PARAM_GPA              parameter block written by the VMM before the
 *                              first KVM_RUN (last page of the slot)
 *
 * Reporting ("ucall"): the guest fills a struct rig_record in its own RAM and
 * makes an SBI call with a7 = RIG_UCALL_EXT, a6 = RIG_UCALL_RECORD,
 * a0 = GPA of the record, a1 = sizeof(struct rig_record). RIG_UCALL_EXT lies
 * in the SBI "experimental" range 0x08000000-0x08FFFFFF, which KVM (6.12
 * arch/riscv/kvm/vcpu_sbi_base.c, vcpu_sbi_ext_experimental) forwards to user
 * space unconditionally as KVM_EXIT_RISCV_SBI and which is not
 * default_disabled, so it needs no VMM setup. It is preferred over an MMIO
 * store because the VMM gets the record pointer in a register and KVM does not
 * have to decode a guest store instruction. The VMM answers ret[0] = 0
 * (SBI_SUCCESS), ret[1] = number of records seen so far.
 *
 * "Tick": a7 = RIG_UCALL_EXT, a6 = RIG_UCALL_TICK, no arguments. A cheap exit
 * to user space; the VMM answers ret[0] = 0 and prints nothing.
 */
#ifndef RIG_ABI_H
#define RIG_ABI_H

#include <stdint.h>

#define RIG_RAM_GPA		0x80000000UL
#define RIG_RAM_SIZE		(16UL << 20)
#define RIG_PARAM_GPA		(RIG_RAM_GPA + RIG_RAM_SIZE - 0x1000UL)

#define RIG_UCALL_EXT		0x08524947UL	/* "\x08RIG" */
#define RIG_UCALL_RECORD	0UL
#define RIG_UCALL_TICK		1UL

#define RIG_MAGIC		0x52474952U	/* "RIGR" in memory (little endian) */
#define RIG_VERSION		3U

/* Parameter block at RIG_PARAM_GPA. */
#define RIG_MAX_SCOUNTEREN	16
#define RIG_PARAM_PMU		(1U << 0)	/* configure+start SBI PMU counters first */

struct rig_params {
	uint32_t magic;			/* RIG_MAGIC: the guest aborts without it */
	uint32_t version;		/* RIG_VERSION */
	uint32_t flags;			/* RIG_PARAM_* */
	uint32_t n_scounteren;		/* entries used in scounteren[] */
	uint64_t delay_loops;		/* busy-loop iterations between the two reads */
	uint64_t scounteren[RIG_MAX_SCOUNTEREN];
	uint64_t n_exits;		/* isolation: exits to cause, all kinds */
	uint64_t iterations;		/* latency: round trips per timed loop */
	uint32_t windows;		/* latency: timed loops per kind */
	uint32_t latency_tests;		/* latency: bit n = rig_latency_test n */
};

/* Latency round-trip kinds. */
enum rig_latency_test {
	RIG_LAT_SBI_IN_KERNEL = 0,	/* SBI base call, answered by KVM */
	RIG_LAT_USER_EXIT = 1,		/* tick ucall, answered by the VMM */
	RIG_LAT_EMULATED_CSR = 2,	/* rdcycle, emulated by KVM (needs PMU) */
	RIG_LAT_N_TESTS
};
/* The guest keeps every window's ticks until all windows are timed. */
#define RIG_LAT_MAX_WINDOWS	8192

enum rig_kind {
	RIG_KIND_COUNTER = 1,		/* one (scounteren, counter, mode) probe */
	RIG_KIND_PMU_INFO = 2,		/* SBI PMU probe + number of counters */
	RIG_KIND_PMU_CONFIG = 3,	/* cfg_match + start of one event */
	RIG_KIND_DONE = 4,
	RIG_KIND_ABORT = 5,
	RIG_KIND_ISOLATION = 6,		/* end of the isolation payload */
	RIG_KIND_LATENCY = 7,		/* one timed window of the latency payload */
};

enum rig_mode {
	RIG_MODE_VS = 1,
	RIG_MODE_VU = 2,
};

enum rig_outcome {
	RIG_OUTCOME_VALUE = 1,		/* both reads completed without a trap */
	RIG_OUTCOME_EXCEPTION = 2,	/* at least one read trapped into the guest */
};

enum rig_abort_reason {
	RIG_ABORT_BAD_PARAMS = 1,
	RIG_ABORT_UNEXPECTED_TRAP = 2,
	RIG_ABORT_NESTED_TRAP = 3,
};

/* Counter CSR numbers (Zicntr / Zihpm user counters). */
#define RIG_CSR_CYCLE		0xC00
#define RIG_CSR_TIME		0xC01
#define RIG_CSR_INSTRET		0xC02
#define RIG_CSR_HPMCOUNTER3	0xC03

/*
 * One record. Field use by kind:
 *  COUNTER:    all fields except sbi_*; cause/tval valid when outcome is
 *              EXCEPTION (first trap of the two reads), ntraps counts traps.
 *  PMU_INFO:   sbi_error/sbi_value = probe_extension(PMU) error/value,
 *              value1/value2 = num_counters error/value.
 *  PMU_CONFIG: aux = SBI event index, sbi_error/sbi_value = cfg_match result
 *              (sbi_value = counter index), value1 = counter_start error,
 *              counter = CSR the counter index maps to (0 if none).
 *  DONE:       test_id = number of COUNTER (counters payload) or LATENCY
 *              (latency payload) records sent.
 *  ABORT:      aux = rig_abort_reason, cause/tval/value1 = scause/stval/sepc,
 *              value2 = sstatus.
 *  ISOLATION:  scounteren_written/_read = value written and read back right
 *              after the write, scounteren_after = last re-read; test_id =
 *              number of re-reads, value1 = re-reads that differed from the
 *              written value, value2 = the first differing value (valid when
 *              value1 != 0); exits caused: aux = in-kernel SBI calls,
 *              sbi_value = tick ucalls, ntraps = timer interrupts taken.
 *  LATENCY:    test_id = rig_latency_test, aux = window index, value1 =
 *              rdtime ticks of the loop of round trips, value2 = ticks of
 *              the empty loop timed right before it (same iterations).
 */
struct rig_record {
	uint32_t magic;
	uint16_t version;
	uint16_t kind;
	uint32_t test_id;
	uint16_t mode;
	uint16_t counter;
	uint64_t scounteren_written;
	uint64_t scounteren_read;	/* read back right after the write */
	uint64_t scounteren_after;	/* re-read in VS after the counter reads */
	uint32_t outcome;
	uint32_t ntraps;
	uint64_t cause;
	uint64_t tval;
	uint64_t value1;
	uint64_t value2;
	int64_t sbi_error;
	uint64_t sbi_value;
	uint64_t aux;
};

_Static_assert(sizeof(struct rig_record) == 104, "rig_record layout");
_Static_assert(sizeof(struct rig_params) == 48 + 8 * RIG_MAX_SCOUNTEREN,
	       "rig_params layout");

#endif
