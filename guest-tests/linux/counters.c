// SPDX-License-Identifier: MIT
/*
 * linux-counters: a user process in a Linux guest (suite linux-guest) reads
 * the counters the way applications do.
 *
 * For each kernel.perf_user_access value asked for, it writes the sysctl, then
 * probes, as an unprivileged read would:
 *  - direct: rdcycle, rdtime and rdinstret, a SIGILL caught and reported;
 *  - perf: perf_event_open() of cycles and instructions (user space only),
 *    mmap() of the event's user page, and then, when the page offers it
 *    (cap_user_rdpmc, index), the counter CSR the index names, as perf's
 *    documented self-monitoring read (include/uapi/linux/perf_event.h).
 * Each probe reads twice around some work (the value must advance), then
 * keeps reading while the process hops from CPU to CPU (it must never go
 * backwards). One "read" line per probe, JSON (guest-tests/README.md).
 *
 *   linux-counters [--perf-user-access LIST] [--hops N] [--work N]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rig_counters.h"
#include "rig_host.h"

#define SYSCTL "/proc/sys/kernel/perf_user_access"

struct options {
	unsigned int values[3];
	unsigned int nr_values;
	unsigned int hops;
	unsigned long work;
};

/* How one probe reads its counter; returns false on SIGILL. */
struct reader {
	const char *counter;
	bool (*read)(const struct reader *r, uint64_t *value);
	/* perf probes */
	int fd;
	volatile struct perf_event_mmap_page *page;
};

struct observation {
	const char *outcome;	/* "value", "sigill" or "not-offered" */
	uint64_t value1, value2;
	unsigned int backwards, reads, cpus_seen;
	uint64_t back_from, back_to;
};

/* The one global: where SIGILL resumes (a signal handler has no other way). */
static sigjmp_buf sigill_jump;

static void on_sigill(int sig)
{
	siglongjmp(sigill_jump, sig);
}

#define CSR_READER(name, csr)						\
	static uint64_t read_##name(void)				\
	{								\
		uint64_t v;						\
		__asm__ volatile("csrr %0, " #csr : "=r"(v));		\
		return v;						\
	}
CSR_READER(cycle, cycle)
CSR_READER(time, time)
CSR_READER(instret, instret)

static bool guarded(uint64_t (*fn)(void), uint64_t *value)
{
	if (sigsetjmp(sigill_jump, 1))
		return false;
	*value = fn();
	return true;
}

static bool read_direct(const struct reader *r, uint64_t *value)
{
	if (!strcmp(r->counter, "cycle"))
		return guarded(read_cycle, value);
	if (!strcmp(r->counter, "time"))
		return guarded(read_time, value);
	return guarded(read_instret, value);
}

/* The user page's self-monitoring read; a forbidden counter raises SIGILL. */
static bool read_user_page(const struct reader *r, uint64_t *value)
{
	if (sigsetjmp(sigill_jump, 1))
		return false;
	rig_read_user_page(r->page, value);
	return true;
}

static bool read_syscall(const struct reader *r, uint64_t *value)
{
	return read(r->fd, value, sizeof(*value)) == sizeof(*value);
}

static void work(unsigned long n)
{
	for (volatile unsigned long i = 0; i < n; i++)
		;
}

static void hop_to(unsigned int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static void observe(const struct reader *r, const struct options *o,
		    struct observation *obs)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t prev, now;

	if (!r->read(r, &obs->value1)) {
		obs->outcome = "sigill";
		return;
	}
	work(o->work);
	if (!r->read(r, &obs->value2)) {
		obs->outcome = "sigill";
		return;
	}
	obs->outcome = "value";
	prev = obs->value2;
	for (unsigned int i = 0; i < o->hops; i++) {
		hop_to(i % (cpus > 0 ? cpus : 1));
		obs->cpus_seen |= 1u << (sched_getcpu() & 31);
		if (!r->read(r, &now)) {
			obs->outcome = "sigill";
			return;
		}
		obs->reads++;
		if (now < prev && !obs->backwards++) {
			obs->back_from = prev;
			obs->back_to = now;
		}
		prev = now;
	}
	hop_to(0);
}

static void print_observation(struct rig_json *j, const struct observation *obs)
{
	json_str(j, "outcome", obs->outcome);
	json_u64(j, "value1", obs->value1);
	json_u64(j, "value2", obs->value2);
	json_u64(j, "hop_reads", obs->reads);
	json_hex(j, "cpus_seen", obs->cpus_seen);
	json_u64(j, "backwards", obs->backwards);
	if (obs->backwards) {
		json_u64(j, "back_from", obs->back_from);
		json_u64(j, "back_to", obs->back_to);
	}
}

static void probe_direct(unsigned int pua, const char *counter, const struct options *o)
{
	struct reader r = { .counter = counter, .read = read_direct, .fd = -1 };
	struct observation obs = { 0 };
	struct rig_json j;

	observe(&r, o, &obs);
	json_begin(&j, "read");
	json_u64(&j, "perf_user_access", pua);
	json_str(&j, "method", "direct");
	json_str(&j, "counter", counter);
	print_observation(&j, &obs);
	json_end(&j);
}

static void probe_perf(unsigned int pua, const char *counter, uint64_t config,
		       const struct options *o)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_HARDWARE, .size = sizeof(attr), .config = config,
		.exclude_kernel = 1, .exclude_hv = 1,
	};
	struct reader r = { .counter = counter, .read = read_user_page };
	struct observation obs = { 0 }, counted = { 0 };
	long page_size = sysconf(_SC_PAGESIZE);
	struct rig_json j;

	json_begin(&j, "read");
	json_u64(&j, "perf_user_access", pua);
	json_str(&j, "method", "perf");
	json_str(&j, "counter", counter);
	r.fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
	if (r.fd < 0) {
		json_str(&j, "outcome", "open-failed");
		json_i64(&j, "errno", errno);
		json_end(&j);
		return;
	}
	r.page = mmap(NULL, page_size, PROT_READ, MAP_SHARED, r.fd, 0);
	if (r.page == MAP_FAILED) {
		json_str(&j, "outcome", "mmap-failed");
		json_i64(&j, "errno", errno);
		json_end(&j);
		close(r.fd);
		return;
	}
	/* the kernel fills the page when the event is scheduled in: after some work */
	work(o->work);
	json_u64(&j, "cap_user_rdpmc", r.page->cap_user_rdpmc);
	json_u64(&j, "index", r.page->index);
	json_u64(&j, "pmc_width", r.page->pmc_width);
	if (r.page->cap_user_rdpmc && r.page->index)
		observe(&r, o, &obs);
	else
		obs.outcome = "not-offered";
	print_observation(&j, &obs);
	/* the count as the read() system call gives it, whatever the page offers */
	r.read = read_syscall;
	observe(&r, o, &counted);
	json_object(&j, "syscall");
	print_observation(&j, &counted);
	json_close(&j);
	json_end(&j);
	munmap((void *)r.page, page_size);
	close(r.fd);
}

static bool set_perf_user_access(unsigned int value)
{
	FILE *f = fopen(SYSCTL, "w");
	bool ok;

	if (!f)
		return false;
	ok = fprintf(f, "%u\n", value) > 0;
	return fclose(f) == 0 && ok;
}

static void parse(int argc, char **argv, struct options *o)
{
	char buf[64], *tok[3];

	*o = (struct options){ .values = { 0, 1, 2 }, .nr_values = 3, .hops = 200,
			       .work = 100000 };
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			rig_die(0, "option %s needs a value", argv[i]);
		if (!strcmp(argv[i], "--perf-user-access")) {
			o->nr_values = rig_split_list(argv[++i], "--perf-user-access", buf,
						      sizeof(buf), tok, 3);
			for (unsigned int k = 0; k < o->nr_values; k++) {
				o->values[k] = rig_parse_u64(tok[k], "--perf-user-access");
				if (o->values[k] > 2)
					rig_die(0, "--perf-user-access: %u is not 0, 1 or 2",
						o->values[k]);
			}
		} else if (!strcmp(argv[i], "--hops")) {
			o->hops = rig_parse_u64(argv[++i], "--hops");
		} else if (!strcmp(argv[i], "--work")) {
			o->work = rig_parse_u64(argv[++i], "--work");
		} else {
			rig_die(0, "unknown option %s", argv[i]);
		}
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_sigill };
	static const char *const direct[] = { "cycle", "time", "instret" };
	struct options o;
	struct rig_json j;

	parse(argc, argv, &o);
	sigaction(SIGILL, &sa, NULL);
	json_begin(&j, "start");
	json_str(&j, "program", "linux-counters");
	json_u64(&j, "cpus", (uint64_t)sysconf(_SC_NPROCESSORS_ONLN));
	json_end(&j);
	for (unsigned int k = 0; k < o.nr_values; k++) {
		unsigned int pua = o.values[k];

		if (!set_perf_user_access(pua))
			rig_die(errno, "cannot write %u to " SYSCTL, pua);
		/* direct reads first: no perf event of ours is open yet */
		for (unsigned int c = 0; c < 3; c++)
			probe_direct(pua, direct[c], &o);
		probe_perf(pua, "cycles", PERF_COUNT_HW_CPU_CYCLES, &o);
		probe_perf(pua, "instructions", PERF_COUNT_HW_INSTRUCTIONS, &o);
	}
	json_begin(&j, "done");
	json_end(&j);
	return 0;
}
