// SPDX-License-Identifier: MIT
/*
 * Guest payload "counters": for each SCOUNTEREN value in the parameter block
 * and each of cycle/time/instret/hpmcounter3, write SCOUNTEREN, read it back,
 * read the counter twice in VS-mode and then twice in VU-mode, and send one
 * report per (scounteren, counter, mode) to the host. It first probes the SBI
 * PMU (each report says whether the guest has one); with RIG_PARAM_PMU and a
 * PMU present, the cycle, instret (and, if the host has a matching event,
 * hpmcounter3) counters are configured and started, so that KVM's emulation
 * of the trapped reads returns values instead of an illegal instruction.
 */
#include "rig_guest.h"

struct rig_pair {
	uint64_t v1;
	uint64_t v2;
};

/* start.S */
struct rig_pair rig_enter_user(uintptr_t vu_pc, uint64_t delay);
#define DECLARE_READERS(n)					\
	struct rig_pair rig_vs_read_##n(uint64_t delay);	\
	void rig_vu_read_##n(void)
DECLARE_READERS(cycle);
DECLARE_READERS(time);
DECLARE_READERS(instret);
DECLARE_READERS(hpmcounter3);

struct counter {
	uint16_t csr;
	struct rig_pair (*vs_read)(uint64_t delay);
	void (*vu_read)(void);
};

static const struct counter counters[] = {
	{ RIG_CSR_CYCLE, rig_vs_read_cycle, rig_vu_read_cycle },
	{ RIG_CSR_TIME, rig_vs_read_time, rig_vu_read_time },
	{ RIG_CSR_INSTRET, rig_vs_read_instret, rig_vu_read_instret },
	{ RIG_CSR_HPMCOUNTER3, rig_vs_read_hpmcounter3, rig_vu_read_hpmcounter3 },
};

/* Shared with the trap handler; volatile because traps change them. */
static volatile int probe_active;	/* counter reads may trap now */
static volatile int in_user;		/* inside rig_enter_user */
static volatile uint32_t probe_traps;
static volatile uint64_t probe_cause, probe_tval;

uint64_t rig_payload_trap(struct trap_frame *f)
{
	int from_user = !(f->sstatus & SSTATUS_SPP);

	if (f->scause == CAUSE_ECALL_U && from_user && in_user) {
		in_user = 0;
		return 1;	/* start.S returns from rig_enter_user */
	}

	/*
	 * KVM turns a virtual-instruction exit it cannot emulate into an
	 * illegal-instruction trap for the guest; 22 is accepted too so that a
	 * hypervisor that passes it through is reported, not aborted on.
	 */
	if (probe_active && (f->scause == CAUSE_ILLEGAL_INSN ||
			     f->scause == CAUSE_VIRTUAL_INSN)) {
		if (probe_traps++ == 0) {
			probe_cause = f->scause;
			probe_tval = f->stval;
		}
		f->sepc += 4;	/* skip the 4-byte csrr */
		return 0;
	}

	rig_abort(RIG_ABORT_UNEXPECTED_TRAP, f);
}

static void probe(struct rig_counter *r, const struct counter *c,
		  uint64_t delay)
{
	struct rig_pair v;

	write_scounteren(r->scounteren_written);
	r->scounteren_read = read_scounteren();

	probe_traps = 0;
	probe_cause = 0;
	probe_tval = 0;
	probe_active = 1;
	if (r->mode == RIG_MODE_VS) {
		v = c->vs_read(delay);
	} else {
		in_user = 1;
		v = rig_enter_user((uintptr_t)c->vu_read, delay);
	}
	probe_active = 0;

	r->scounteren_after = read_scounteren();
	r->traps = probe_traps;
	r->cause = probe_cause;
	r->tval = probe_tval;
	r->value1 = v.v1;
	r->value2 = v.v2;
	RIG_REPORT(RIG_REPORT_COUNTER, r);
}

void rig_main(uint64_t hartid, uint64_t arg1)
{
	const struct rig_params *p = rig_get_params();
	struct rig_counter r = { 0 };
	uint16_t mode;
	uint32_t i;
	size_t c;

	(void)hartid;
	(void)arg1;

	r.pmu_available = pmu_setup(p->flags & RIG_PARAM_PMU);
	for (i = 0; i < p->n_scounteren; i++) {
		for (c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
			for (mode = RIG_MODE_VS; mode <= RIG_MODE_VU; mode++) {
				r.mode = mode;
				r.csr = counters[c].csr;
				r.scounteren_written = p->scounteren[i];
				probe(&r, &counters[c], p->delay_loops);
				r.test++;
			}
		}
	}
	rig_done(r.test);
}
