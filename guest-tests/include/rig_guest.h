/* SPDX-License-Identifier: MIT */
/*
 * Guest-side library (guest/lib/) linked into every payload, and the
 * interface to start.S. Each payload provides rig_main() and
 * rig_payload_trap().
 */
#ifndef RIG_GUEST_H
#define RIG_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include "rig_abi.h"

#define SSTATUS_SIE		0x2UL
#define SSTATUS_SPP		0x100UL
#define SIE_STIE		0x20UL
#define CAUSE_INTERRUPT		(1UL << 63)
#define CAUSE_ILLEGAL_INSN	2UL
#define CAUSE_S_TIMER		(CAUSE_INTERRUPT | 5UL)
#define CAUSE_ECALL_U		8UL
#define CAUSE_VIRTUAL_INSN	22UL

#define SBI_EXT_BASE		0x10UL
#define SBI_BASE_GET_SPEC_VERSION 0UL
#define SBI_BASE_PROBE_EXT	3UL
#define SBI_EXT_TIME		0x54494D45UL
#define SBI_TIME_SET_TIMER	0UL

/* Layout fixed by rig_trap_entry in start.S. */
struct trap_frame {
	uint64_t x[32];
	uint64_t sepc;
	uint64_t scause;
	uint64_t stval;
	uint64_t sstatus;
};

struct sbiret {
	long error;
	long value;
};

/* Called from start.S; not static so the assembler can reach them. */
void rig_main(uint64_t hartid, uint64_t arg1);
uint64_t rig_trap(struct trap_frame *f);

/*
 * The payload's trap handler, called by rig_trap outside nested traps.
 * Returns nonzero to leave rig_enter_user (start.S), 0 to sret; traps it
 * does not expect end in rig_abort.
 */
uint64_t rig_payload_trap(struct trap_frame *f);

struct sbiret sbi_call(unsigned long ext, unsigned long fid,
		       unsigned long arg0, unsigned long arg1,
		       unsigned long arg2, unsigned long arg3,
		       unsigned long arg4);

/* Ucalls (rig_abi.h): one report of a type, given as its struct. */
void rig_report(uint32_t type, const void *report, unsigned long size);
#define RIG_REPORT(type, report) rig_report((type), (report), sizeof(*(report)))
/* The end of the payload; n_reports counts its main reports. */
void __attribute__((noreturn)) rig_done(uint64_t n_reports);
void __attribute__((noreturn)) rig_abort(uint64_t reason,
					 const struct trap_frame *f);

static inline void rig_tick(void)
{
	sbi_call(RIG_UCALL_EXT, RIG_UCALL_TICK, 0, 0, 0, 0, 0);
}

/* The parameter block, or rig_abort if the host did not write a valid one. */
const struct rig_params *rig_get_params(void);

/*
 * pmu.c: probe the SBI PMU (one PMU_INFO report) and return whether the
 * guest has one. With configure set and a PMU present, also configure and
 * start HW cycles, HW instructions and, on counter 3, DTLB read misses (one
 * PMU_CONFIG report per event).
 */
int pmu_setup(int configure);

static inline uint64_t read_scounteren(void)
{
	uint64_t v;

	asm volatile("csrr %0, scounteren" : "=r"(v));
	return v;
}

static inline void write_scounteren(uint64_t v)
{
	asm volatile("csrw scounteren, %0" : : "r"(v) : "memory");
}

#endif
