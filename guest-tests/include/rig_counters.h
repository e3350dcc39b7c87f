/* SPDX-License-Identifier: MIT */
/*
 * Counter reads of the plain Linux programs (linux/, host/): any counter CSR
 * by number, and perf's self-monitoring read of an mmapped event's user page
 * (include/uapi/linux/perf_event.h). A read the CSR policy forbids raises
 * SIGILL in here: the caller catches it.
 */
#ifndef RIG_COUNTERS_H
#define RIG_COUNTERS_H

#include <linux/perf_event.h>
#include <stdbool.h>
#include <stdint.h>

/* cycle (0), time (1), instret (2), hpmcounterN (N): a CSR number is an immediate. */
#define RIG_COUNTER_CSR(n) \
	case n: __asm__ volatile("csrr %0, " #n " + 0xc00" : "=r"(v)); break
static inline uint64_t rig_read_counter(unsigned int n)
{
	uint64_t v = 0;

	switch (n) {
	RIG_COUNTER_CSR(0); RIG_COUNTER_CSR(1); RIG_COUNTER_CSR(2); RIG_COUNTER_CSR(3);
	RIG_COUNTER_CSR(4); RIG_COUNTER_CSR(5); RIG_COUNTER_CSR(6); RIG_COUNTER_CSR(7);
	RIG_COUNTER_CSR(8); RIG_COUNTER_CSR(9); RIG_COUNTER_CSR(10); RIG_COUNTER_CSR(11);
	RIG_COUNTER_CSR(12); RIG_COUNTER_CSR(13); RIG_COUNTER_CSR(14); RIG_COUNTER_CSR(15);
	RIG_COUNTER_CSR(16); RIG_COUNTER_CSR(17); RIG_COUNTER_CSR(18); RIG_COUNTER_CSR(19);
	RIG_COUNTER_CSR(20); RIG_COUNTER_CSR(21); RIG_COUNTER_CSR(22); RIG_COUNTER_CSR(23);
	RIG_COUNTER_CSR(24); RIG_COUNTER_CSR(25); RIG_COUNTER_CSR(26); RIG_COUNTER_CSR(27);
	RIG_COUNTER_CSR(28); RIG_COUNTER_CSR(29); RIG_COUNTER_CSR(30); RIG_COUNTER_CSR(31);
	}
	return v;
}
#undef RIG_COUNTER_CSR

/*
 * offset + the counter the page's index names, under the page's seqlock, into
 * *value; false if the page offers no counter (cap_user_rdpmc, index,
 * pmc_width), *value then being the offset alone.
 */
static inline bool rig_read_user_page(volatile struct perf_event_mmap_page *pc,
				      uint64_t *value)
{
	uint32_t seq, idx, width;
	int64_t pmc, offset;
	bool offered;

	do {
		seq = pc->lock;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		idx = pc->index;
		offset = pc->offset;
		width = pc->pmc_width;
		offered = pc->cap_user_rdpmc && idx && width;
		pmc = offered ? (int64_t)rig_read_counter(idx - 1) : 0;
		if (offered && width < 64) {
			pmc <<= 64 - width;
			pmc >>= 64 - width;
		}
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	} while (pc->lock != seq);
	*value = (uint64_t)(offset + pmc);
	return offered;
}

#endif
