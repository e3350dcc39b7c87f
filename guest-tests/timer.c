// SPDX-License-Identifier: MIT
/*
 * timer: the guest (guest/timer.c) programs hundreds or thousands of timer deadlines and
 * checks each interrupt against `time`, while this program makes KVM put and
 * load the vCPU (kvm_arch_vcpu_put/kvm_arch_vcpu_load) the ways a real host
 * does, from a second thread:
 *
 *   signal   SIGUSR1 to the vCPU thread after each --period-us sleep:
 *            KVM_RUN returns EINTR (KVM_EXIT_INTR) and is called again
 *   preempt  a real-time (SCHED_FIFO) thread on the vCPU thread's CPU
 *            wakes after each --period-us sleep and preempts it
 *   migrate  the vCPU thread's affinity moved to the other CPU after each
 *            --period-us sleep, while it runs
 *   none     nothing but what the host does anyway
 *
 *   timer [--source S] [--deadlines N] [--rounds R] [--period-us P] [--direct]
 *         [--max-loss-reports K]
 *
 * Each of the R rounds is a fresh VM and vCPU (so its first deadline is the
 * first after reset) with N/R of the deadlines. A `timer-loss` line gives
 * each lost deadline the guest reports, with KVM's view of the timer
 * (KVM_GET_ONE_REG KVM_REG_RISCV_TIMER compare/state/time) at that exit; one
 * `timer` line at the end sums the rounds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rig_host.h"

enum source { SOURCE_NONE, SOURCE_SIGNAL, SOURCE_PREEMPT, SOURCE_MIGRATE, N_SOURCES };
static const char *const source_names[N_SOURCES] = { "none", "signal", "preempt", "migrate" };

static const char *const kind_names[RIG_TIMER_N_KINDS] = {
	"first", "short", "long", "replaced",
};
static const char *const class_names[RIG_TIMER_N_CLASSES] = {
	"on_time", "late", "early", "never",
};

#define RIG_REG_TIMER(name)						\
	(KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_TIMER |	\
	 KVM_REG_RISCV_TIMER_REG(name))
#define RIG_REG_ISA_SSTC						\
	(KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_ISA_EXT |	\
	 KVM_RISCV_ISA_EXT_SSTC)

struct options {
	enum source source;
	uint64_t deadlines;
	uint64_t rounds;
	uint64_t period_us;
	uint64_t max_loss_reports;
	bool direct;
};

/* What the second thread needs and counts; shared with the vCPU thread. */
struct disturber {
	enum source source;
	uint64_t period_ns;
	pthread_t vcpu_thread;
	pid_t vcpu_tid;
	int cpus[2];			/* the vCPU's CPU, and another one */
	atomic_bool stop;
	atomic_uint_fast64_t events;	/* signals sent, affinity moves, wakeups */
};

/* Summed over the rounds. */
struct totals {
	struct rig_timer guest;
	uint64_t kvm_runs, intr_exits, loss_lines;
	bool sstc;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: timer [--source none|signal|preempt|migrate] [--deadlines N]\n"
		"             [--rounds R] [--period-us P] [--direct]"
		" [--max-loss-reports K]\n"
		"  --source S          what puts and loads the vCPU (default none)\n"
		"  --deadlines N       deadlines in all (default 2000)\n"
		"  --rounds R          fresh VMs they are split over (default 1)\n"
		"  --period-us P       pause between events (default 1000)\n"
		"  --direct            the guest writes stimecmp (needs Sstc)\n"
		"  --max-loss-reports K  timer-loss lines per round at most (default 8)\n");
}

static enum source parse_source(const char *s)
{
	int i;

	for (i = 0; i < N_SOURCES; i++)
		if (!strcmp(s, source_names[i]))
			return i;
	rig_die(0, "--source %s: not one of none, signal, preempt, migrate", s);
}

static void parse_args(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "source", required_argument, NULL, 's' },
		{ "deadlines", required_argument, NULL, 'n' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "period-us", required_argument, NULL, 'p' },
		{ "max-loss-reports", required_argument, NULL, 'k' },
		{ "direct", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	*o = (struct options){ .deadlines = 2000, .rounds = 1, .period_us = 1000,
			       .max_loss_reports = 8 };
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': o->source = parse_source(optarg); break;
		case 'n': o->deadlines = rig_parse_u64(optarg, "--deadlines"); break;
		case 'r': o->rounds = rig_parse_u64(optarg, "--rounds"); break;
		case 'p': o->period_us = rig_parse_u64(optarg, "--period-us"); break;
		case 'k':
			o->max_loss_reports = rig_parse_u64(optarg, "--max-loss-reports");
			break;
		case 'd': o->direct = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); rig_die(0, "bad command line");
		}
	}
	if (optind != argc) {
		usage(stderr);
		rig_die(0, "unexpected argument %s", argv[optind]);
	}
	if (!o->rounds || o->rounds > o->deadlines)
		rig_die(0, "--rounds %" PRIu64 " not in 1..--deadlines (%" PRIu64 ")",
			o->rounds, o->deadlines);
	if (!o->period_us || o->period_us > 1000000)
		rig_die(0, "--period-us %" PRIu64 " not in 1..1000000", o->period_us);
	if (o->max_loss_reports > UINT32_MAX)
		rig_die(0, "--max-loss-reports %" PRIu64 " too large", o->max_loss_reports);
}

/* ---- the second thread ---------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin_thread(pid_t tid, int cpu)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(tid, sizeof(one), &one) < 0)
		rig_die(errno, "sched_setaffinity thread %d to CPU %d", (int)tid, cpu);
}

/*
 * The thread sleeps between events (a host without high-resolution timers
 * rounds the sleep up to its next tick). preempt runs on the vCPU's CPU as
 * a real-time thread, so that each wakeup preempts the vCPU thread at once
 * (a busy thread of the vCPU thread's own class took its turn only every
 * few ticks); signal and migrate run on the other CPU.
 */
static void *disturb(void *arg)
{
	struct disturber *d = arg;
	struct timespec pause = { .tv_sec = (time_t)(d->period_ns / 1000000000u),
				  .tv_nsec = (long)(d->period_ns % 1000000000u) };
	struct sched_param fifo = { .sched_priority = 1 };
	int at = 0;

	pin_thread(0, d->cpus[d->source == SOURCE_PREEMPT ? 0 : 1]);
	if (d->source == SOURCE_PREEMPT &&
	    (errno = pthread_setschedparam(pthread_self(), SCHED_FIFO, &fifo)))
		rig_die(errno, "--source preempt: SCHED_FIFO for its thread");
	while (!atomic_load_explicit(&d->stop, memory_order_relaxed)) {
		nanosleep(&pause, NULL);
		if (d->source == SOURCE_SIGNAL) {
			pthread_kill(d->vcpu_thread, SIGUSR1);
		} else if (d->source == SOURCE_MIGRATE) {
			at ^= 1;
			pin_thread(d->vcpu_tid, d->cpus[at]);
		}
		atomic_fetch_add(&d->events, 1);
	}
	return NULL;
}

static void on_sigusr1(int sig)
{
	(void)sig;	/* only there to make KVM_RUN return EINTR */
}

static void sigusr1_while_running(int how)
{
	sigset_t usr1;

	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if ((errno = pthread_sigmask(how, &usr1, NULL)))
		rig_die(errno, "pthread_sigmask");
}

/* The vCPU thread's context switches so far (/proc, always there). */
static void context_switches(uint64_t *voluntary, uint64_t *involuntary)
{
	char path[64], line[128];
	FILE *f;

	*voluntary = *involuntary = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)gettid());
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "voluntary_ctxt_switches: %" SCNu64, voluntary);
		sscanf(line, "nonvoluntary_ctxt_switches: %" SCNu64, involuntary);
	}
	fclose(f);
}

/* ---- output --------------------------------------------------------- */

static void json_timer_reg(struct rig_json *j, struct rig_vcpu *vcpu,
			   const char *key, uint64_t id)
{
	uint64_t v;

	if (rig_vcpu_get_reg(vcpu, id, &v) == 0)
		json_hex(j, key, v);
	else
		json_null(j, key);
}

static void print_start(const struct options *o, const struct disturber *d)
{
	struct rig_json j;

	json_begin_start(&j, "timer");
	json_str(&j, "source", source_names[o->source]);
	json_u64(&j, "deadlines", o->deadlines);
	json_u64(&j, "rounds", o->rounds);
	json_u64(&j, "period_us", o->period_us);
	json_bool(&j, "direct", o->direct);
	json_i64(&j, "vcpu_cpu", d->cpus[0]);
	json_i64(&j, "other_cpu", d->cpus[1]);
	json_end(&j);
}

/*
 * At the exit of the guest's report KVM has just copied stimecmp into its
 * own copy (kvm_riscv_vcpu_timer_sync), so `compare` is the deadline in force.
 */
static void print_loss(struct rig_vcpu *vcpu, const struct rig_ucall *uc,
		       uint64_t round, bool readback)
{
	struct rig_timer_loss l;
	struct rig_json j;

	rig_ucall_report(vcpu, uc, RIG_REPORT_TIMER_LOSS, &l, sizeof(l));
	if (l.kind >= RIG_TIMER_N_KINDS || l.class >= RIG_TIMER_N_CLASSES)
		rig_die(0, "timer-loss report with kind %u class %u", l.kind, l.class);
	json_begin(&j, "timer-loss");
	json_u64(&j, "round", round);
	json_u64(&j, "index", l.index);
	json_str(&j, "deadline_kind", kind_names[l.kind]);
	json_str(&j, "class", class_names[l.class]);
	json_hex(&j, "requested", l.requested);
	if (l.replaced)
		json_hex(&j, "replaced", l.replaced);
	json_hex(&j, "set_at", l.set_at);
	if (readback)	/* all ones is a value too: a reset's */
		json_hex(&j, "readback", l.readback);
	else
		json_null(&j, "readback");
	if (l.fired_at)
		json_hex(&j, "fired_at", l.fired_at);
	else
		json_null(&j, "fired_at");
	json_hex(&j, "guest_now", l.now);
	json_object(&j, "kvm_timer");
	json_timer_reg(&j, vcpu, "compare", RIG_REG_TIMER(compare));
	json_timer_reg(&j, vcpu, "state", RIG_REG_TIMER(state));
	json_timer_reg(&j, vcpu, "time", RIG_REG_TIMER(time));
	json_close(&j);
	json_end(&j);
}

static void add_round(struct totals *t, const struct rig_timer *r)
{
	int k, c;

	t->guest.deadlines += r->deadlines;
	for (k = 0; k < RIG_TIMER_N_KINDS; k++)
		for (c = 0; c < RIG_TIMER_N_CLASSES; c++)
			t->guest.counts[k][c] += r->counts[k][c];
	t->guest.readbacks += r->readbacks;
	t->guest.readback_mismatches += r->readback_mismatches;
	t->guest.losses += r->losses;
	if (r->max_late > t->guest.max_late)
		t->guest.max_late = r->max_late;
}

static void print_timer(const struct options *o, const struct totals *t,
			const struct disturber *d, uint64_t voluntary,
			uint64_t involuntary)
{
	struct rig_json j;
	int k, c;

	json_begin(&j, "timer");
	json_str(&j, "source", source_names[o->source]);
	json_bool(&j, "direct", o->direct);
	json_bool(&j, "sstc", t->sstc);
	json_u64(&j, "deadlines", t->guest.deadlines);
	json_u64(&j, "losses", t->guest.losses);
	json_object(&j, "by_kind");
	for (k = 0; k < RIG_TIMER_N_KINDS; k++) {
		json_object(&j, kind_names[k]);
		for (c = 0; c < RIG_TIMER_N_CLASSES; c++)
			json_u64(&j, class_names[c], t->guest.counts[k][c]);
		json_close(&j);
	}
	json_close(&j);
	json_u64(&j, "readbacks", t->guest.readbacks);
	json_u64(&j, "readback_mismatches", t->guest.readback_mismatches);
	json_u64(&j, "max_late_ticks", t->guest.max_late);
	json_u64(&j, "loss_lines", t->loss_lines);
	json_u64(&j, "kvm_runs", t->kvm_runs);
	json_u64(&j, "intr_exits", t->intr_exits);
	json_u64(&j, "source_events", atomic_load(&d->events));
	json_u64(&j, "voluntary_switches", voluntary);
	json_u64(&j, "involuntary_switches", involuntary);
	json_end(&j);
}

/* ---- one round: a fresh VM and vCPU --------------------------------- */

static int run_round(const struct options *o, struct totals *t, uint64_t round)
{
	uint64_t share = o->deadlines / o->rounds + (round < o->deadlines % o->rounds);
	struct rig_params *params;
	struct rig_timer summary;
	bool reported = false;
	struct rig_ucall uc;
	struct rig_vcpu vcpu;
	struct rig_vm vm;
	uint64_t sstc = 0;
	int status = -1;

	params = rig_vm_create(&vm);
	rig_vcpu_create(&vm, &vcpu);
	/* an old KVM without the register: no Sstc for the guest either */
	if (rig_vcpu_get_reg(&vcpu, RIG_REG_ISA_SSTC, &sstc) < 0)
		sstc = 0;
	t->sstc = sstc != 0;
	if (o->direct && !sstc)
		rig_die(0, "--direct: the vCPU has no Sstc (KVM_RISCV_ISA_EXT_SSTC off)");
	params->n_deadlines = share;
	params->max_loss_reports = (uint32_t)o->max_loss_reports;
	params->timer_flags = (o->direct ? RIG_TIMER_DIRECT : 0) |
			      (sstc ? RIG_TIMER_READBACK : 0);

	/* signals interrupt KVM_RUN only: VM setup and teardown are not retried */
	sigusr1_while_running(SIG_UNBLOCK);
	while (status < 0) {
		t->kvm_runs++;
		if (!rig_vcpu_run(&vcpu)) {
			t->intr_exits++;
			continue;
		}
		switch (rig_get_ucall(&vcpu, &uc)) {
		case RIG_UCALL_NONE:
			t->intr_exits++;
			break;
		case RIG_UCALL_REPORT:
			if (uc.args[0] == RIG_REPORT_TIMER_LOSS) {
				print_loss(&vcpu, &uc, round, sstc != 0);
				t->loss_lines++;
				break;
			}
			rig_ucall_report(&vcpu, &uc, RIG_REPORT_TIMER, &summary,
					 sizeof(summary));
			add_round(t, &summary);
			reported = true;
			break;
		case RIG_UCALL_DONE:
			if (!reported)
				rig_die(0, "the timer guest ended without its report");
			status = RIG_EXIT_DONE;
			break;
		case RIG_UCALL_ABORT:
			status = rig_print_abort(&vcpu, &uc);
			break;
		default:
			rig_die(0, "unexpected ucall %" PRIu64 " from the timer guest", uc.cmd);
		}
	}
	sigusr1_while_running(SIG_BLOCK);
	rig_vm_destroy(&vm, &vcpu);
	return status;
}

int main(int argc, char **argv)
{
	struct disturber dist = { .cpus = { -1, -1 } };
	uint64_t vol0, invol0, vol1, invol1, round, start;
	struct totals totals = { 0 };
	struct sigaction sa;
	struct options o;
	pthread_t thread;
	cpu_set_t allowed;
	int status = RIG_EXIT_DONE, cpu;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(&o, argc, argv);

	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		rig_die(errno, "sched_getaffinity");
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed))
			continue;
		if (dist.cpus[0] < 0)
			dist.cpus[0] = cpu;
		else if (dist.cpus[1] < 0)
			dist.cpus[1] = cpu;
	}
	if (dist.cpus[1] < 0 && (o.source == SOURCE_SIGNAL || o.source == SOURCE_MIGRATE))
		rig_die(0, "--source %s needs two allowed CPUs", source_names[o.source]);
	pin_thread(0, dist.cpus[0]);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1;
	sa.sa_flags = SA_RESTART;	/* output is not cut short either */
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		rig_die(errno, "sigaction SIGUSR1");
	sigusr1_while_running(SIG_BLOCK);

	dist.source = o.source;
	dist.period_ns = o.period_us * 1000;
	dist.vcpu_thread = pthread_self();
	dist.vcpu_tid = gettid();
	print_start(&o, &dist);

	context_switches(&vol0, &invol0);
	if (o.source != SOURCE_NONE && (errno = pthread_create(&thread, NULL, disturb, &dist)))
		rig_die(errno, "pthread_create");
	/*
	 * The guest starts once the source is at work: on a host starved of
	 * CPU time the thread's first wakeup may come late. Bounded: without
	 * one in 10 s the run goes on and its summary shows no events.
	 */
	for (start = now_ns(); o.source != SOURCE_NONE && !atomic_load(&dist.events) &&
	     now_ns() - start < 10000000000u;)
		sched_yield();
	for (round = 0; round < o.rounds && status == RIG_EXIT_DONE; round++)
		status = run_round(&o, &totals, round);
	atomic_store(&dist.stop, true);
	if (o.source != SOURCE_NONE)
		pthread_join(thread, NULL);
	context_switches(&vol1, &invol1);
	if (status == RIG_EXIT_DONE)
		print_timer(&o, &totals, &dist, vol1 - vol0, invol1 - invol0);
	return status;
}
