// SPDX-License-Identifier: MIT
/*
 * isolation: the guest (guest/isolation.c) holds one SCOUNTEREN value across
 * thousands of exits; after every KVM_RUN this program reads cycle, time and
 * instret in host user space under a SIGILL handler, and counts the results,
 * the exit reasons and the host CPUs it ran on. One "isolation" line at the
 * end joins them with the guest's own re-reads.
 *
 *   isolation --scounteren VAL [--exits N] [--timer-exits T] [--migrate]
 *
 * The vCPU thread is pinned to the first CPU of its initial affinity mask
 * for the whole run, or with --migrate moved to the next CPU of that mask
 * (round robin) before every KVM_RUN.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rig_host.h"

/* Size of exits[], indexed by KVM_EXIT_*; all of them are below it so far. */
#define MAX_EXIT_REASON		64

enum { PROBE_CYCLE, PROBE_TIME, PROBE_INSTRET, N_PROBES };
static const char *const probe_names[N_PROBES] = { "cycle", "time", "instret" };

struct options {
	uint64_t scounteren;
	uint64_t n_exits;
	uint64_t n_timer_exits;
	bool migrate;
};

/* Which host CPU the vCPU thread runs on. */
struct placement {
	bool migrate;
	cpu_set_t allowed;		/* the initial affinity mask */
	int cpu;			/* the CPU it is pinned to now */
};

/* Gathered right after every KVM_RUN. */
struct observed {
	uint64_t kvm_runs;
	uint64_t exits[MAX_EXIT_REASON];
	uint64_t probe_ok[N_PROBES], probe_sigill[N_PROBES];
	cpu_set_t cpus;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: isolation --scounteren VAL [--exits N] [--timer-exits T]"
		" [--migrate]\n"
		"  --scounteren VAL  the value the guest writes and keeps\n"
		"  --exits N         exits the guest causes (default 3000)\n"
		"  --timer-exits T   how many of them wait for a timer interrupt\n"
		"                    (default N/3; the others alternate between\n"
		"                    an in-kernel SBI call and an exit to user space)\n"
		"  --migrate         move the vCPU thread to the next allowed CPU\n"
		"                    before every KVM_RUN (default: pinned to one)\n");
}

static void parse_args(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "scounteren", required_argument, NULL, 's' },
		{ "exits", required_argument, NULL, 'e' },
		{ "timer-exits", required_argument, NULL, 't' },
		{ "migrate", no_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_value = false, have_timers = false;
	int opt;

	*o = (struct options){ .n_exits = 3000 };
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			o->scounteren = rig_parse_u64(optarg, "--scounteren");
			have_value = true;
			break;
		case 'e': o->n_exits = rig_parse_u64(optarg, "--exits"); break;
		case 't':
			o->n_timer_exits = rig_parse_u64(optarg, "--timer-exits");
			have_timers = true;
			break;
		case 'm': o->migrate = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); rig_die(0, "bad command line");
		}
	}
	if (optind != argc) {
		usage(stderr);
		rig_die(0, "unexpected argument %s", argv[optind]);
	}
	if (!have_value)
		rig_die(0, "--scounteren VAL is required");
	if (!have_timers)
		o->n_timer_exits = o->n_exits / 3;
	if (o->n_timer_exits > o->n_exits)
		rig_die(0, "--timer-exits %" PRIu64 " is more than --exits %" PRIu64,
			o->n_timer_exits, o->n_exits);
}

/* ---- host-side counter probe ---------------------------------------- */

/*
 * A read that succeeds where the host's SCOUNTEREN policy says SIGILL (or
 * the reverse) means the guest's SCOUNTEREN leaked past the world switch.
 * The jump buffer is global because the signal handler needs it.
 */
static sigjmp_buf probe_env;

static void sigill_handler(int sig)
{
	(void)sig;
	siglongjmp(probe_env, 1);
}

static bool host_read(int which)
{
	uint64_t v;

	if (sigsetjmp(probe_env, 1))
		return false;
	switch (which) {
	case PROBE_CYCLE: asm volatile("rdcycle %0" : "=r"(v)); break;
	case PROBE_TIME: asm volatile("rdtime %0" : "=r"(v)); break;
	default: asm volatile("rdinstret %0" : "=r"(v)); break;
	}
	(void)v;
	return true;
}

/*
 * Right after KVM_RUN returns, before anything else can reschedule or
 * rewrite SCOUNTEREN: probe the counters, then note the exit and the CPU.
 */
static void observe(struct observed *s, const struct kvm_run *run, bool ran)
{
	uint32_t reason = ran ? run->exit_reason : KVM_EXIT_INTR;
	int i, cpu;

	for (i = 0; i < N_PROBES; i++) {
		if (host_read(i))
			s->probe_ok[i]++;
		else
			s->probe_sigill[i]++;
	}
	s->kvm_runs++;
	if (reason >= MAX_EXIT_REASON)
		rig_die(0, "exit reason %u out of range", (unsigned int)reason);
	s->exits[reason]++;
	cpu = sched_getcpu();
	if (cpu >= 0 && cpu < CPU_SETSIZE)
		CPU_SET(cpu, &s->cpus);
}

/* The first CPU of the allowed set after p->cpu, wrapping around. */
static void next_cpu(struct placement *p)
{
	do
		p->cpu = (p->cpu + 1) % CPU_SETSIZE;
	while (!CPU_ISSET(p->cpu, &p->allowed));
	rig_pin_to_cpu(p->cpu);
}

/* ---- output --------------------------------------------------------- */

/* The run stops with vmm-error on other exits; they print as numbers. */
static const char *exit_name(int reason)
{
	switch (reason) {
	case KVM_EXIT_INTR:	 return "KVM_EXIT_INTR";
	case KVM_EXIT_RISCV_SBI: return "KVM_EXIT_RISCV_SBI";
	default:		 return NULL;
	}
}

static void print_start(struct rig_vcpu *vcpu, const struct options *o,
			const struct placement *p)
{
	struct rig_json j;

	json_begin_start(&j, "isolation");
	json_hex(&j, "scounteren", o->scounteren);
	json_u64(&j, "exits", o->n_exits);
	json_u64(&j, "timer_exits", o->n_timer_exits);
	json_bool(&j, "migrate", p->migrate);
	if (!p->migrate)
		json_i64(&j, "pinned_cpu", p->cpu);
	json_scounteren_kvm(&j, vcpu);
	json_end(&j);
}

static void print_isolation(struct rig_vcpu *vcpu, const struct rig_ucall *uc,
			    const struct observed *s,
			    const struct placement *p)
{
	struct rig_isolation r;
	struct rig_json j;
	char name[32];
	int i;

	rig_ucall_report(vcpu, uc, RIG_REPORT_ISOLATION, &r, sizeof(r));
	json_begin(&j, "isolation");
	json_hex(&j, "scounteren_written", r.scounteren_written);
	json_hex(&j, "scounteren_read", r.scounteren_read);
	json_hex(&j, "scounteren_final", r.scounteren_final);
	json_u64(&j, "guest_checks", r.checks);
	json_u64(&j, "guest_mismatches", r.mismatches);
	if (r.mismatches)
		json_hex(&j, "first_mismatch", r.first_mismatch);
	else
		json_null(&j, "first_mismatch");
	json_object(&j, "guest_exits_attempted");
	json_u64(&j, "sbi_in_kernel", r.sbi_in_kernel);
	json_u64(&j, "user_exit", r.user_exits);
	json_u64(&j, "timer", r.timer_interrupts);
	json_close(&j);

	json_object(&j, "vmm_exits");
	for (i = 0; i < MAX_EXIT_REASON; i++) {
		if (!s->exits[i])
			continue;
		if (exit_name(i))
			snprintf(name, sizeof(name), "%s", exit_name(i));
		else
			snprintf(name, sizeof(name), "KVM_EXIT_%d", i);
		json_u64(&j, name, s->exits[i]);
	}
	json_close(&j);
	json_u64(&j, "kvm_runs", s->kvm_runs);
	json_object(&j, "host_probe");
	for (i = 0; i < N_PROBES; i++) {
		json_object(&j, probe_names[i]);
		json_u64(&j, "ok", s->probe_ok[i]);
		json_u64(&j, "sigill", s->probe_sigill[i]);
		json_close(&j);
	}
	json_close(&j);
	json_bool(&j, "migrate", p->migrate);
	json_array(&j, "cpus");
	for (i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &s->cpus))
			json_i64(&j, NULL, i);
	json_close(&j);
	json_kvm_stats(&j, vcpu);
	json_scounteren_kvm(&j, vcpu);
	json_end(&j);
}

int main(int argc, char **argv)
{
	struct placement place = { .cpu = -1 };
	struct observed seen = { 0 };
	struct rig_params *params;
	bool reported = false, ran;
	struct rig_ucall uc;
	struct rig_vcpu vcpu;
	struct sigaction sa;
	struct options o;
	struct rig_vm vm;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(&o, argc, argv);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sigill_handler;
	sa.sa_flags = SA_NODEFER;
	if (sigaction(SIGILL, &sa, NULL) < 0)
		rig_die(errno, "sigaction SIGILL");

	/* pinned: the first allowed CPU, before the vCPU exists */
	place.migrate = o.migrate;
	if (sched_getaffinity(0, sizeof(place.allowed), &place.allowed) < 0)
		rig_die(errno, "sched_getaffinity");
	if (!place.migrate)
		next_cpu(&place);

	params = rig_vm_create(&vm);
	params->n_scounteren = 1;
	params->scounteren[0] = o.scounteren;
	params->n_exits = o.n_exits;
	params->n_timer_exits = o.n_timer_exits;
	rig_vcpu_create(&vm, &vcpu);
	print_start(&vcpu, &o, &place);

	for (;;) {
		if (place.migrate)
			next_cpu(&place);
		ran = rig_vcpu_run(&vcpu);
		observe(&seen, vcpu.run, ran);
		if (!ran)
			continue;
		switch (rig_get_ucall(&vcpu, &uc)) {
		case RIG_UCALL_NONE:
		case RIG_UCALL_TICK:
			break;
		case RIG_UCALL_REPORT:
			print_isolation(&vcpu, &uc, &seen, &place);
			reported = true;
			break;
		case RIG_UCALL_DONE:
			if (!reported)
				rig_die(0, "the isolation guest ended without its report");
			return RIG_EXIT_DONE;
		case RIG_UCALL_ABORT:
			return rig_print_abort(&vcpu, &uc);
		default:
			rig_die(0, "unexpected ucall %" PRIu64 " from the isolation guest",
				uc.cmd);
		}
	}
}
