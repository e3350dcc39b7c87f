// SPDX-License-Identifier: MIT
/*
 * Guest payload "latency": time world-switch round trips of each requested
 * kind (rig_latency_test) with rdtime, the one counter a KVM guest reads
 * without a trap (KVM sets hcounteren.TM only). Each window times an empty
 * loop of `iterations` turns, then the same loop with one round trip per
 * turn; windows interleave the kinds. All windows are timed first and
 * reported afterwards, one LATENCY report each, so that neither the
 * reporting exits nor the host program's output land inside a timed loop.
 */
#include "rig_guest.h"

/* latency-loops.S */
uint64_t rig_time_empty(uint64_t n, unsigned long ext, unsigned long fid);
uint64_t rig_time_ecall(uint64_t n, unsigned long ext, unsigned long fid);
uint64_t rig_time_cycle(uint64_t n, unsigned long ext, unsigned long fid);

static const struct {
	uint64_t (*loop)(uint64_t n, unsigned long ext, unsigned long fid);
	unsigned long ext, fid;
} kinds[RIG_LAT_N_TESTS] = {
	[RIG_LAT_SBI_IN_KERNEL] = { rig_time_ecall, SBI_EXT_BASE,
				    SBI_BASE_GET_SPEC_VERSION },
	[RIG_LAT_USER_EXIT] = { rig_time_ecall, RIG_UCALL_EXT, RIG_UCALL_TICK },
	/* KVM emulates the read in the kernel once the PMU counter runs */
	[RIG_LAT_EMULATED_CSR] = { rig_time_cycle, 0, 0 },
};

static struct {
	uint64_t ticks, baseline;
} result[RIG_LAT_N_TESTS][RIG_LAT_MAX_WINDOWS];

/* Every round trip returns straight to the loop: any trap is unexpected. */
uint64_t rig_payload_trap(struct trap_frame *f)
{
	rig_abort(RIG_ABORT_UNEXPECTED_TRAP, f);
}

void rig_main(uint64_t hartid, uint64_t arg1)
{
	const struct rig_params *p = rig_get_params();
	struct rig_latency r;
	uint64_t n_reports = 0;
	uint32_t t, w;

	(void)hartid;
	(void)arg1;
	if (!p->iterations || !p->windows || p->windows > RIG_LAT_MAX_WINDOWS ||
	    !p->latency_tests || p->latency_tests >> RIG_LAT_N_TESTS)
		rig_abort(RIG_ABORT_BAD_PARAMS, NULL);

	/* Without a started cycle counter, KVM turns rdcycle into illegal-insn. */
	pmu_setup(p->flags & RIG_PARAM_PMU);

	for (w = 0; w < p->windows; w++) {
		for (t = 0; t < RIG_LAT_N_TESTS; t++) {
			if (!(p->latency_tests & (1U << t)))
				continue;
			result[t][w].baseline = rig_time_empty(p->iterations,
							       kinds[t].ext,
							       kinds[t].fid);
			result[t][w].ticks = kinds[t].loop(p->iterations,
							   kinds[t].ext,
							   kinds[t].fid);
		}
	}

	for (w = 0; w < p->windows; w++) {
		for (t = 0; t < RIG_LAT_N_TESTS; t++) {
			if (!(p->latency_tests & (1U << t)))
				continue;
			r.test = t;
			r.window = w;
			r.ticks = result[t][w].ticks;
			r.baseline_ticks = result[t][w].baseline;
			RIG_REPORT(RIG_REPORT_LATENCY, &r);
			n_reports++;
		}
	}
	rig_done(n_reports);
}
