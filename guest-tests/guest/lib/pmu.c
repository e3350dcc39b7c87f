// SPDX-License-Identifier: MIT
/*
 * SBI PMU probe and setup. KVM returns a value for a trapped cycle, instret
 * or hpmcounter read only once the guest has configured and started that
 * counter through the SBI PMU extension; without Sscofpmf on the host, KVM
 * 6.12 leaves the guest PMU uninitialised and the probe says no.
 */
#include "rig_guest.h"

#define SBI_EXT_PMU		0x504D55UL
#define SBI_PMU_NUM_COUNTERS	0UL
#define SBI_PMU_COUNTER_GET_INFO 1UL
#define SBI_PMU_CFG_MATCH	2UL
#define SBI_PMU_COUNTER_START	3UL
#define SBI_PMU_CFG_FLAG_CLEAR_VALUE (1UL << 1)

static void pmu_config(uint64_t event_idx, unsigned long ctr_base,
		       unsigned long ctr_mask)
{
	struct rig_pmu_config r = { .event_idx = event_idx };
	struct sbiret ret, info;

	ret = sbi_call(SBI_EXT_PMU, SBI_PMU_CFG_MATCH, ctr_base, ctr_mask,
		       SBI_PMU_CFG_FLAG_CLEAR_VALUE, event_idx, 0);
	r.cfg_match_error = ret.error;
	if (!ret.error) {
		r.counter_index = (uint64_t)ret.value;
		/* counter_start: base = the index SBI gave back, mask 1, no flags */
		r.start_error = sbi_call(SBI_EXT_PMU, SBI_PMU_COUNTER_START,
					 (unsigned long)ret.value, 1, 0,
					 0, 0).error;
		/* counter info bits 11:0 name the CSR KVM emulates for it */
		info = sbi_call(SBI_EXT_PMU, SBI_PMU_COUNTER_GET_INFO,
				(unsigned long)ret.value, 0, 0, 0, 0);
		if (!info.error && info.value >= 0)
			r.counter_csr = (uint32_t)(info.value & 0xfff);
	}
	RIG_REPORT(RIG_REPORT_PMU_CONFIG, &r);
}

int pmu_setup(int configure)
{
	struct rig_pmu_info r;
	struct sbiret probe, num;
	unsigned long all;

	probe = sbi_call(SBI_EXT_BASE, SBI_BASE_PROBE_EXT, SBI_EXT_PMU,
			 0, 0, 0, 0);
	num = sbi_call(SBI_EXT_PMU, SBI_PMU_NUM_COUNTERS, 0, 0, 0, 0, 0);
	r.probe_error = probe.error;
	r.probe_value = probe.value;
	r.num_counters_error = num.error;
	r.num_counters = num.value;
	RIG_REPORT(RIG_REPORT_PMU_INFO, &r);
	if (probe.error || !probe.value)
		return 0;
	/* no counters to start: the reads show the unconfigured result */
	if (!configure || num.error || num.value <= 0)
		return 1;

	all = num.value >= 64 ? ~0UL : (1UL << num.value) - 1;
	pmu_config(0x00001, 0, all);	/* HW CPU_CYCLES: KVM fixes it to index 0 */
	pmu_config(0x00002, 0, all);	/* HW INSTRUCTIONS: index 2 */
	/*
	 * hpmcounter3: a programmable counter needs an event the host can
	 * count; DTLB read miss (cache event 0x10019) is one QEMU virt maps.
	 */
	if (num.value > 3)
		pmu_config(0x10019, 3, 1);
	return 1;
}
