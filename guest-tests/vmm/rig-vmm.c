// SPDX-License-Identifier: MIT
/*
 * rig-vmm: a minimal RISC-V KVM VMM for the counter rig.
 *
 * One VM, one vCPU, one memory slot at RIG_RAM_GPA holding a flat payload.
 * The guest reports through "ucalls" (see rig_abi.h); every record becomes
 * one JSON object per line on stdout. Diagnostics go to stderr.
 *
 * With --isolation (payload isolation.bin) the VMM instead counts what
 * happens around every KVM_RUN (exit reasons, host counter probes, CPUs) and
 * prints it with the guest's result as one "isolation" line at the end.
 * With --latency (payload latency.bin) it answers the guest's tick ucalls
 * silently and prints one "latency-window" line per timed window.
 *
 * Exit status: 0 the guest sent "done" (or its isolation result); 1 the
 * guest sent "abort"; 2 VMM error (bad usage, KVM failure, unexpected exit,
 * timeout).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <asm/kvm.h>

#include "rig_abi.h"

/* Present in the 6.12 UAPI; absent before 6.6, where its value 0 was implied. */
#ifndef KVM_REG_RISCV_CSR_GENERAL
#define KVM_REG_RISCV_CSR_GENERAL 0
#endif

#define REG_CORE(name)							\
	(KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CORE |	\
	 KVM_REG_RISCV_CORE_REG(name))
#define REG_CSR(name)							\
	(KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CSR |		\
	 KVM_REG_RISCV_CSR_GENERAL | KVM_REG_RISCV_CSR_REG(name))

enum { EXIT_DONE = 0, EXIT_GUEST_ABORT = 1, EXIT_VMM_ERROR = 2 };

/* --latency defaults: see guest-tests/README.md for how they were chosen. */
#define DEFAULT_ITERATIONS	100
#define DEFAULT_WINDOWS		500

/* Size of vm.exits[], indexed by KVM_EXIT_*; all of them are below it so far. */
#define MAX_EXIT_REASON		64

enum { PROBE_CYCLE, PROBE_TIME, PROBE_INSTRET, N_PROBES };
static const char *const probe_names[N_PROBES] = { "cycle", "time", "instret" };

/* --tests names, indexed by rig_latency_test */
static const char *const latency_names[RIG_LAT_N_TESTS] = {
	[RIG_LAT_SBI_IN_KERNEL] = "sbi-in-kernel",
	[RIG_LAT_USER_EXIT] = "user-exit",
	[RIG_LAT_EMULATED_CSR] = "emulated-csr",
};

struct options {
	const char *payload;
	int pmu;
	int host_probe;
	int have_init;
	uint64_t scounteren_init;
	uint32_t n_scounteren;
	uint64_t scounteren[RIG_MAX_SCOUNTEREN];
	int have_list;
	uint64_t delay_loops;
	unsigned int timeout;
	int isolation;
	int migrate;
	uint64_t n_exits;
	int latency;
	uint64_t iterations;
	uint32_t windows;
	uint32_t latency_tests;
};

static struct {
	int vcpu_fd;
	uint8_t *ram;
	struct kvm_run *run;
	uint64_t records;
	int pmu;
	int host_probe;
	int isolation;
	int migrate;
	int latency;
	uint64_t iterations;	/* --latency, for the window lines */
	/* --isolation statistics, gathered after every KVM_RUN */
	uint64_t kvm_runs;
	uint64_t exits[MAX_EXIT_REASON];
	uint64_t probe_ok[N_PROBES], probe_sigill[N_PROBES];
	cpu_set_t allowed;	/* --migrate cycles through these */
	int next_cpu;
	cpu_set_t used;
} vm = { .vcpu_fd = -1 };

static volatile sig_atomic_t timed_out;

/* ---- JSON output ---------------------------------------------------- */

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void __attribute__((noreturn, format(printf, 2, 3)))
vmm_error(int err, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("{\"kind\":\"vmm-error\",\"error\":");
	json_string(msg);
	if (err) {
		printf(",\"errno\":%d,\"strerror\":", err);
		json_string(strerror(err));
	}
	printf("}\n");
	fflush(stdout);
	exit(EXIT_VMM_ERROR);
}

static const char *counter_name(uint16_t csr)
{
	switch (csr) {
	case RIG_CSR_CYCLE:	  return "cycle";
	case RIG_CSR_TIME:	  return "time";
	case RIG_CSR_INSTRET:	  return "instret";
	case RIG_CSR_HPMCOUNTER3: return "hpmcounter3";
	case 0:			  return "none";
	default:		  return "other";
	}
}

static const char *cause_name(uint64_t cause)
{
	switch (cause) {
	case 2:	 return "illegal-instruction";
	case 22: return "virtual-instruction";
	default: return "other";
	}
}

static const char *event_name(uint64_t eidx)
{
	switch (eidx) {
	case 0x00001: return "hw-cpu-cycles";
	case 0x00002: return "hw-instructions";
	case 0x10019: return "dtlb-read-miss";
	default:      return "other";
	}
}

/* ---- KVM helpers ---------------------------------------------------- */

static int get_reg(uint64_t id, uint64_t *val)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)val };

	return ioctl(vm.vcpu_fd, KVM_GET_ONE_REG, &reg);
}

static void set_reg(uint64_t id, uint64_t val, const char *what)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)&val };

	if (ioctl(vm.vcpu_fd, KVM_SET_ONE_REG, &reg) < 0)
		vmm_error(errno, "KVM_SET_ONE_REG %s", what);
}

/* ---- host-side counter probe ---------------------------------------- */

/*
 * After each exit, read the counters from host user space under a SIGILL
 * handler: a read that succeeds where the host's SCOUNTEREN policy says
 * SIGILL means the guest's SCOUNTEREN leaked past the world switch.
 */
static sigjmp_buf probe_env;

static void sigill_handler(int sig)
{
	(void)sig;
	siglongjmp(probe_env, 1);
}

static int host_read(int which)
{
	uint64_t v;

	if (sigsetjmp(probe_env, 1))
		return 0;
	switch (which) {
	case PROBE_CYCLE: asm volatile("rdcycle %0" : "=r"(v)); break;
	case PROBE_TIME: asm volatile("rdtime %0" : "=r"(v)); break;
	default: asm volatile("rdinstret %0" : "=r"(v)); break;
	}
	(void)v;
	return 1;
}

static void print_host_probe(void)
{
	int i;

	printf(",\"host\":{");
	for (i = 0; i < N_PROBES; i++)
		printf("%s\"%s\":\"%s\"", i ? "," : "", probe_names[i],
		       host_read(i) ? "ok" : "sigill");
	printf("}");
}

/* ---- --isolation statistics ----------------------------------------- */

/* The run loop stops with vmm-error on other exits; they print as numbers. */
static const char *exit_name(int reason)
{
	switch (reason) {
	case KVM_EXIT_INTR:	 return "KVM_EXIT_INTR";
	case KVM_EXIT_RISCV_SBI: return "KVM_EXIT_RISCV_SBI";
	default:		 return NULL;
	}
}

/* --migrate: move this (the vCPU) thread to the next allowed CPU. */
static void pin_next_cpu(void)
{
	cpu_set_t one;

	do
		vm.next_cpu = (vm.next_cpu + 1) % CPU_SETSIZE;
	while (!CPU_ISSET(vm.next_cpu, &vm.allowed));
	CPU_ZERO(&one);
	CPU_SET(vm.next_cpu, &one);
	if (sched_setaffinity(0, sizeof(one), &one) < 0)
		vmm_error(errno, "sched_setaffinity CPU %d", vm.next_cpu);
}

/*
 * Right after KVM_RUN returns, before anything else can reschedule or
 * rewrite SCOUNTEREN: probe the counters, then note the exit and the CPU.
 * Keeps errno for the caller's check of KVM_RUN.
 */
static void after_run(void)
{
	int i, cpu, err = errno;

	for (i = 0; i < N_PROBES; i++) {
		if (host_read(i))
			vm.probe_ok[i]++;
		else
			vm.probe_sigill[i]++;
	}
	vm.kvm_runs++;
	if (vm.run->exit_reason >= MAX_EXIT_REASON)
		vmm_error(0, "exit reason %u out of range",
			  (unsigned int)vm.run->exit_reason);
	vm.exits[vm.run->exit_reason]++;
	cpu = sched_getcpu();
	if (cpu >= 0 && cpu < CPU_SETSIZE)
		CPU_SET(cpu, &vm.used);
	errno = err;
}

/*
 * The vCPU's counters from KVM's binary statistics (cumulative event counts
 * only): exits KVM handles in the kernel (SBI calls, wfi) never reach the run
 * loop, so these show that the guest's exits happened. null without stats.
 */
static void print_kvm_stats(void)
{
	struct kvm_stats_header h;
	const struct kvm_stats_desc *d;
	const char *sep = "";
	char *descs = NULL;
	size_t dsize, total;
	uint64_t val;
	uint32_t i;
	int fd;

	printf(",\"kvm_stats\":");
	fd = ioctl(vm.vcpu_fd, KVM_GET_STATS_FD, NULL);
	if (fd < 0 || pread(fd, &h, sizeof(h), 0) != sizeof(h))
		goto unavailable;
	dsize = sizeof(*d) + h.name_size;
	total = dsize * h.num_desc;
	descs = malloc(total);
	if (!descs || pread(fd, descs, total, h.desc_offset) != (ssize_t)total)
		goto unavailable;
	printf("{");
	for (i = 0; i < h.num_desc; i++) {
		d = (const struct kvm_stats_desc *)(descs + i * dsize);
		if ((d->flags & KVM_STATS_TYPE_MASK) != KVM_STATS_TYPE_CUMULATIVE ||
		    (d->flags & KVM_STATS_UNIT_MASK) != KVM_STATS_UNIT_NONE ||
		    d->size != 1 ||
		    pread(fd, &val, sizeof(val), h.data_offset + d->offset) !=
			    sizeof(val))
			continue;
		printf("%s", sep);
		json_string(d->name);
		printf(":%" PRIu64, val);
		sep = ",";
	}
	printf("}");
	free(descs);
	close(fd);
	return;
unavailable:
	printf("null");
	free(descs);
	if (fd >= 0)
		close(fd);
}

static void print_isolation(const struct rig_record *r)
{
	const char *sep = "";
	const char *name;
	int i;

	printf("{\"kind\":\"isolation\",\"scounteren_written\":\"0x%" PRIx64
	       "\",\"scounteren_read\":\"0x%" PRIx64
	       "\",\"scounteren_final\":\"0x%" PRIx64
	       "\",\"guest_checks\":%" PRIu32 ",\"guest_mismatches\":%" PRIu64,
	       r->scounteren_written, r->scounteren_read, r->scounteren_after,
	       r->test_id, r->value1);
	if (r->value1)
		printf(",\"first_mismatch\":\"0x%" PRIx64 "\"", r->value2);
	else
		printf(",\"first_mismatch\":null");
	printf(",\"guest_exits_attempted\":{\"sbi_in_kernel\":%" PRIu64
	       ",\"user_exit\":%" PRIu64 ",\"timer\":%" PRIu32 "}",
	       r->aux, r->sbi_value, r->ntraps);

	printf(",\"vmm_exits\":{");
	for (i = 0; i < MAX_EXIT_REASON; i++) {
		if (!vm.exits[i])
			continue;
		name = exit_name(i);
		if (name)
			printf("%s\"%s\":%" PRIu64, sep, name, vm.exits[i]);
		else
			printf("%s\"KVM_EXIT_%d\":%" PRIu64, sep, i, vm.exits[i]);
		sep = ",";
	}
	printf("},\"kvm_runs\":%" PRIu64 ",\"host_probe\":{", vm.kvm_runs);
	for (i = 0; i < N_PROBES; i++)
		printf("%s\"%s\":{\"ok\":%" PRIu64 ",\"sigill\":%" PRIu64 "}",
		       i ? "," : "", probe_names[i], vm.probe_ok[i],
		       vm.probe_sigill[i]);
	printf("},\"migrate\":%s,\"cpus\":[", vm.migrate ? "true" : "false");
	sep = "";
	for (i = 0; i < CPU_SETSIZE; i++) {
		if (CPU_ISSET(i, &vm.used)) {
			printf("%s%d", sep, i);
			sep = ",";
		}
	}
	printf("]");
	print_kvm_stats();
}

/* ---- ucall decoding ------------------------------------------------- */

static void print_common_tail(void)
{
	uint64_t sc;

	/* What KVM holds as the guest's SCOUNTEREN while the vCPU is out. */
	if (get_reg(REG_CSR(scounteren), &sc) == 0)
		printf(",\"scounteren_kvm\":\"0x%" PRIx64 "\"", sc);
	if (vm.host_probe)
		print_host_probe();
	printf("}\n");
	fflush(stdout);
}

static int handle_record(const struct rig_record *r)
{
	switch (r->kind) {
	case RIG_KIND_COUNTER:
		printf("{\"kind\":\"counter\",\"test\":%" PRIu32
		       ",\"pmu\":%s,\"mode\":\"%s\",\"counter\":\"%s\",\"csr\":\"0x%x\""
		       ",\"scounteren_written\":\"0x%" PRIx64 "\""
		       ",\"scounteren_read\":\"0x%" PRIx64 "\""
		       ",\"scounteren_after\":\"0x%" PRIx64 "\"",
		       r->test_id, vm.pmu ? "true" : "false",
		       r->mode == RIG_MODE_VS ? "VS" :
		       r->mode == RIG_MODE_VU ? "VU" : "?",
		       counter_name(r->counter), (unsigned int)r->counter,
		       r->scounteren_written, r->scounteren_read,
		       r->scounteren_after);
		if (r->outcome == RIG_OUTCOME_VALUE)
			printf(",\"outcome\":\"value\"");
		else
			printf(",\"outcome\":\"exception\",\"cause\":%" PRIu64
			       ",\"cause_name\":\"%s\",\"tval\":\"0x%" PRIx64 "\"",
			       r->cause, cause_name(r->cause), r->tval);
		printf(",\"traps\":%" PRIu32 ",\"value1\":%" PRIu64
		       ",\"value2\":%" PRIu64 ",\"advanced\":%s",
		       r->ntraps, r->value1, r->value2,
		       r->value2 > r->value1 ? "true" : "false");
		print_common_tail();
		return -1;
	case RIG_KIND_PMU_INFO:
		printf("{\"kind\":\"pmu-info\",\"probe_error\":%" PRId64
		       ",\"probe_value\":%" PRIu64 ",\"num_counters_error\":%" PRId64
		       ",\"num_counters\":%" PRId64,
		       r->sbi_error, r->sbi_value, (int64_t)r->value1,
		       (int64_t)r->value2);
		print_common_tail();
		return -1;
	case RIG_KIND_PMU_CONFIG:
		printf("{\"kind\":\"pmu-config\",\"event\":\"%s\",\"event_idx\":\"0x%"
		       PRIx64 "\",\"cfg_match_error\":%" PRId64,
		       event_name(r->aux), r->aux, r->sbi_error);
		if (!r->sbi_error)
			printf(",\"counter_index\":%" PRIu64 ",\"counter_csr\":\"%s\""
			       ",\"start_error\":%" PRId64,
			       r->sbi_value, counter_name(r->counter),
			       (int64_t)r->value1);
		print_common_tail();
		return -1;
	case RIG_KIND_LATENCY:
		if (r->test_id >= RIG_LAT_N_TESTS)
			vmm_error(0, "unknown latency test %u",
				  (unsigned int)r->test_id);
		printf("{\"kind\":\"latency-window\",\"test\":\"%s\",\"window\":%"
		       PRIu64 ",\"iterations\":%" PRIu64 ",\"ticks\":%" PRIu64
		       ",\"baseline_ticks\":%" PRIu64 "}\n",
		       latency_names[r->test_id], r->aux, vm.iterations,
		       r->value1, r->value2);
		return -1;
	case RIG_KIND_DONE:
		if (vm.latency) {
			printf("{\"kind\":\"latency-done\",\"window_records\":%"
			       PRIu32 ",\"records\":%" PRIu64,
			       r->test_id, vm.records);
			/* shows which exits KVM handled in the kernel */
			print_kvm_stats();
		} else {
			printf("{\"kind\":\"done\",\"counter_records\":%" PRIu32
			       ",\"records\":%" PRIu64,
			       r->test_id, vm.records);
		}
		print_common_tail();
		return EXIT_DONE;
	case RIG_KIND_ISOLATION:
		print_isolation(r);
		print_common_tail();
		return EXIT_DONE;
	case RIG_KIND_ABORT:
		printf("{\"kind\":\"abort\",\"reason\":\"%s\",\"cause\":%" PRIu64
		       ",\"tval\":\"0x%" PRIx64 "\",\"sepc\":\"0x%" PRIx64
		       "\",\"sstatus\":\"0x%" PRIx64 "\"",
		       r->aux == RIG_ABORT_BAD_PARAMS ? "bad-params" :
		       r->aux == RIG_ABORT_UNEXPECTED_TRAP ? "unexpected-trap" :
		       r->aux == RIG_ABORT_NESTED_TRAP ? "nested-trap" : "other",
		       r->cause, r->tval, r->value1, r->value2);
		print_common_tail();
		return EXIT_GUEST_ABORT;
	default:
		vmm_error(0, "unknown record kind %u", (unsigned int)r->kind);
	}
}

/*
 * The statistics and the window lines need the VMM mode and the payload to
 * match: refuse a record only another payload sends.
 */
static int kind_fits_mode(uint16_t kind)
{
	if (kind == RIG_KIND_ABORT)
		return 1;
	if (vm.isolation || kind == RIG_KIND_ISOLATION)
		return vm.isolation && kind == RIG_KIND_ISOLATION;
	/* counters and latency share the PMU and done records */
	return kind != (vm.latency ? RIG_KIND_COUNTER : RIG_KIND_LATENCY);
}

/* Returns an exit status when the run is over, -1 to keep running. */
static int handle_sbi(struct kvm_run *run)
{
	uint64_t gpa = run->riscv_sbi.args[0];
	uint64_t len = run->riscv_sbi.args[1];
	struct rig_record rec;

	if (run->riscv_sbi.extension_id == RIG_UCALL_EXT &&
	    run->riscv_sbi.function_id == RIG_UCALL_TICK) {
		run->riscv_sbi.ret[0] = 0;	/* SBI_SUCCESS */
		return -1;
	}
	if (run->riscv_sbi.extension_id != RIG_UCALL_EXT ||
	    run->riscv_sbi.function_id != RIG_UCALL_RECORD)
		vmm_error(0, "unhandled SBI call ext 0x%lx fid 0x%lx",
			  (unsigned long)run->riscv_sbi.extension_id,
			  (unsigned long)run->riscv_sbi.function_id);
	if (len != sizeof(rec) || gpa < RIG_RAM_GPA || gpa % 8 ||
	    gpa - RIG_RAM_GPA > RIG_RAM_SIZE - sizeof(rec))
		vmm_error(0, "bad ucall record gpa 0x%" PRIx64 " len %" PRIu64,
			  gpa, len);
	memcpy(&rec, vm.ram + (gpa - RIG_RAM_GPA), sizeof(rec));
	if (rec.magic != RIG_MAGIC || rec.version != RIG_VERSION)
		vmm_error(0, "bad ucall record magic 0x%x version %u",
			  (unsigned int)rec.magic, (unsigned int)rec.version);
	if (!kind_fits_mode(rec.kind))
		vmm_error(0, "record kind %u does not fit the %s mode",
			  (unsigned int)rec.kind, vm.isolation ? "--isolation" :
			  vm.latency ? "--latency" : "counters");

	vm.records++;
	run->riscv_sbi.ret[0] = 0;	/* SBI_SUCCESS */
	run->riscv_sbi.ret[1] = (unsigned long)vm.records;
	return handle_record(&rec);
}

/* ---- setup ---------------------------------------------------------- */

static void on_alarm(int sig)
{
	(void)sig;
	timed_out = 1;
	if (vm.run)
		vm.run->immediate_exit = 1;	/* a KVM_RUN not yet entered bails out */
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rig-vmm [options] PAYLOAD.bin\n"
		"  --scounteren LIST      comma-separated values the guest writes\n"
		"                         (default 0x0,0x2,0x7,0xf)\n"
		"  --pmu                  guest configures+starts SBI PMU counters first\n"
		"  --scounteren-init VAL  set the vCPU's SCOUNTEREN via ONE_REG before running\n"
		"  --delay N              busy-loop iterations between the two reads (default 1000)\n"
		"  --host-probe           after every exit, try rdcycle/rdtime/rdinstret in the VMM\n"
		"  --timeout SECONDS      give up after this long (default 60)\n"
		"  --isolation            isolation.bin: one --scounteren value, count host probes,\n"
		"                         exit reasons and CPUs over every KVM_RUN\n"
		"  --exits N              (--isolation) exits the guest causes (default 3000)\n"
		"  --migrate              (--isolation) pin the vCPU thread to the next CPU\n"
		"                         before every KVM_RUN\n"
		"  --latency              latency.bin: time world-switch round trips with\n"
		"                         rdtime (implies --pmu)\n"
		"  --iterations N         (--latency) round trips per window (default %d)\n"
		"  --windows N            (--latency) windows per test (default %d, max %d)\n"
		"  --tests LIST           (--latency) comma-separated, of sbi-in-kernel,\n"
		"                         user-exit, emulated-csr (default all)\n",
		DEFAULT_ITERATIONS, DEFAULT_WINDOWS, RIG_LAT_MAX_WINDOWS);
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		vmm_error(0, "bad %s: %s", what, s);
	return (uint64_t)v;
}

/* Splits a comma-separated option value into at most max tokens. */
static unsigned int split_list(const char *arg, const char *what,
			       char *buf, size_t size, char **tok,
			       unsigned int max)
{
	char *t, *save = NULL;
	unsigned int n = 0;

	if (strlen(arg) >= size)
		vmm_error(0, "%s list too long", what);
	strcpy(buf, arg);
	for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == max)
			vmm_error(0, "at most %u %s values", max, what);
		tok[n++] = t;
	}
	if (!n)
		vmm_error(0, "empty %s list", what);
	return n;
}

static void parse_list(struct options *o, const char *arg)
{
	char buf[512], *tok[RIG_MAX_SCOUNTEREN];
	uint32_t i;

	o->n_scounteren = split_list(arg, "--scounteren", buf, sizeof(buf),
				     tok, RIG_MAX_SCOUNTEREN);
	for (i = 0; i < o->n_scounteren; i++)
		o->scounteren[i] = parse_u64(tok[i], "scounteren");
}

static void parse_tests(struct options *o, const char *arg)
{
	char buf[128], *tok[RIG_LAT_N_TESTS];
	unsigned int i, n;
	uint32_t t;

	n = split_list(arg, "--tests", buf, sizeof(buf), tok, RIG_LAT_N_TESTS);
	o->latency_tests = 0;
	for (i = 0; i < n; i++) {
		for (t = 0; t < RIG_LAT_N_TESTS; t++)
			if (!strcmp(tok[i], latency_names[t]))
				break;
		if (t == RIG_LAT_N_TESTS)
			vmm_error(0, "unknown --tests name: %s", tok[i]);
		o->latency_tests |= 1U << t;
	}
}

static void parse_args(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "scounteren", required_argument, NULL, 's' },
		{ "pmu", no_argument, NULL, 'p' },
		{ "scounteren-init", required_argument, NULL, 'i' },
		{ "delay", required_argument, NULL, 'd' },
		{ "host-probe", no_argument, NULL, 'H' },
		{ "timeout", required_argument, NULL, 't' },
		{ "isolation", no_argument, NULL, 'I' },
		{ "exits", required_argument, NULL, 'e' },
		{ "migrate", no_argument, NULL, 'm' },
		{ "latency", no_argument, NULL, 'L' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "windows", required_argument, NULL, 'w' },
		{ "tests", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, have_exits = 0, have_latency_opt = 0;
	uint64_t windows = DEFAULT_WINDOWS;

	memset(o, 0, sizeof(*o));
	parse_list(o, "0x0,0x2,0x7,0xf");
	o->delay_loops = 1000;
	o->timeout = 60;
	o->n_exits = 3000;
	o->iterations = DEFAULT_ITERATIONS;
	o->latency_tests = (1U << RIG_LAT_N_TESTS) - 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': parse_list(o, optarg); o->have_list = 1; break;
		case 'p': o->pmu = 1; break;
		case 'i':
			o->have_init = 1;
			o->scounteren_init = parse_u64(optarg, "--scounteren-init");
			break;
		case 'd': o->delay_loops = parse_u64(optarg, "--delay"); break;
		case 'H': o->host_probe = 1; break;
		case 't':
			o->timeout = (unsigned int)parse_u64(optarg, "--timeout");
			break;
		case 'I': o->isolation = 1; break;
		case 'e':
			o->n_exits = parse_u64(optarg, "--exits");
			have_exits = 1;
			break;
		case 'm': o->migrate = 1; break;
		case 'L': o->latency = 1; break;
		case 'n':
			o->iterations = parse_u64(optarg, "--iterations");
			have_latency_opt = 1;
			break;
		case 'w':
			windows = parse_u64(optarg, "--windows");
			have_latency_opt = 1;
			break;
		case 'T': parse_tests(o, optarg); have_latency_opt = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); vmm_error(0, "bad command line");
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		vmm_error(0, "expected exactly one payload file");
	}
	o->payload = argv[optind];
	if (o->isolation && (!o->have_list || o->n_scounteren != 1))
		vmm_error(0, "--isolation needs exactly one --scounteren value");
	if (!o->isolation && (have_exits || o->migrate))
		vmm_error(0, "--exits and --migrate need --isolation");
	if (o->isolation && o->latency)
		vmm_error(0, "--isolation and --latency exclude each other");
	if (!o->latency && have_latency_opt)
		vmm_error(0, "--iterations, --windows and --tests need --latency");
	if (!o->iterations)
		vmm_error(0, "--iterations must be at least 1");
	if (windows < 1 || windows > RIG_LAT_MAX_WINDOWS)
		vmm_error(0, "--windows must be in 1..%d", RIG_LAT_MAX_WINDOWS);
	o->windows = (uint32_t)windows;
	/* the emulated-csr reads need a started cycle counter */
	if (o->latency)
		o->pmu = 1;
}

static void load_payload(const char *path)
{
	const size_t max = RIG_PARAM_GPA - RIG_RAM_GPA;
	struct stat st;
	size_t done = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		vmm_error(errno, "cannot open payload %s", path);
	if ((size_t)st.st_size > max || st.st_size == 0)
		vmm_error(0, "payload size %lld not in 1..%zu",
			  (long long)st.st_size, max);
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, vm.ram + done, (size_t)st.st_size - done);

		if (n <= 0)
			vmm_error(n < 0 ? errno : 0, "reading payload %s", path);
		done += (size_t)n;
	}
	close(fd);
}

static void print_start(const struct options *o)
{
	const char *sep;
	uint32_t i;

	printf("{\"kind\":\"vmm-start\",\"abi_version\":%u,\"payload\":",
	       RIG_VERSION);
	json_string(o->payload);
	printf(",\"pmu\":%s,\"delay\":%" PRIu64 ",\"scounteren_list\":[",
	       o->pmu ? "true" : "false", o->delay_loops);
	for (i = 0; i < o->n_scounteren; i++)
		printf("%s\"0x%" PRIx64 "\"", i ? "," : "", o->scounteren[i]);
	printf("]");
	if (o->have_init)
		printf(",\"scounteren_init\":\"0x%" PRIx64 "\"", o->scounteren_init);
	if (o->isolation)
		printf(",\"isolation\":true,\"exits\":%" PRIu64 ",\"migrate\":%s",
		       o->n_exits, o->migrate ? "true" : "false");
	if (o->latency) {
		printf(",\"latency\":true,\"iterations\":%" PRIu64
		       ",\"windows\":%" PRIu32 ",\"tests\":[",
		       o->iterations, o->windows);
		sep = "";
		for (i = 0; i < RIG_LAT_N_TESTS; i++) {
			if (o->latency_tests & (1U << i)) {
				printf("%s\"%s\"", sep, latency_names[i]);
				sep = ",";
			}
		}
		printf("]");
	}
	print_common_tail();
}

int main(int argc, char **argv)
{
	struct kvm_userspace_memory_region region;
	struct rig_params *params;
	struct sigaction sa;
	struct options o;
	int kvm, vmfd, mmap_size, status, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(&o, argc, argv);
	vm.pmu = o.pmu;
	vm.host_probe = o.host_probe;
	vm.isolation = o.isolation;
	vm.migrate = o.migrate;
	vm.latency = o.latency;
	vm.iterations = o.iterations;
	if (sched_getaffinity(0, sizeof(vm.allowed), &vm.allowed) < 0)
		vmm_error(errno, "sched_getaffinity");
	vm.next_cpu = -1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sigill_handler;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGILL, &sa, NULL);
	sa.sa_handler = on_alarm;
	sa.sa_flags = 0;	/* no SA_RESTART: KVM_RUN must return EINTR */
	sigaction(SIGALRM, &sa, NULL);

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		vmm_error(errno, "open /dev/kvm");
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		vmm_error(0, "unexpected KVM API version");
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vmfd < 0)
		vmm_error(errno, "KVM_CREATE_VM");

	vm.ram = mmap(NULL, RIG_RAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm.ram == MAP_FAILED)
		vmm_error(errno, "mmap guest RAM");
	load_payload(o.payload);

	params = (struct rig_params *)(vm.ram + (RIG_PARAM_GPA - RIG_RAM_GPA));
	params->magic = RIG_MAGIC;
	params->version = RIG_VERSION;
	params->flags = o.pmu ? RIG_PARAM_PMU : 0;
	params->n_scounteren = o.n_scounteren;
	params->delay_loops = o.delay_loops;
	memcpy(params->scounteren, o.scounteren, sizeof(o.scounteren));
	params->n_exits = o.n_exits;
	/* left 0 otherwise: latency.bin then aborts with bad-params at once */
	if (o.latency) {
		params->iterations = o.iterations;
		params->windows = o.windows;
		params->latency_tests = o.latency_tests;
	}

	region = (struct kvm_userspace_memory_region){
		.slot = 0,
		.guest_phys_addr = RIG_RAM_GPA,
		.memory_size = RIG_RAM_SIZE,
		.userspace_addr = (uintptr_t)vm.ram,
	};
	if (ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		vmm_error(errno, "KVM_SET_USER_MEMORY_REGION");

	vm.vcpu_fd = ioctl(vmfd, KVM_CREATE_VCPU, 0);
	if (vm.vcpu_fd < 0)
		vmm_error(errno, "KVM_CREATE_VCPU");
	mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size < (int)sizeof(struct kvm_run))
		vmm_error(errno, "KVM_GET_VCPU_MMAP_SIZE");
	vm.run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, vm.vcpu_fd, 0);
	if (vm.run == MAP_FAILED)
		vmm_error(errno, "mmap kvm_run");

	/* Boot protocol as for a kernel: a0 = hartid, a1 = 0 (no DT). */
	set_reg(REG_CORE(regs.pc), RIG_RAM_GPA, "pc");
	set_reg(REG_CORE(regs.a0), 0, "a0");
	set_reg(REG_CORE(regs.a1), 0, "a1");
	if (o.have_init)
		set_reg(REG_CSR(scounteren), o.scounteren_init, "scounteren");

	print_start(&o);
	alarm(o.timeout);
	for (;;) {
		if (timed_out)
			vmm_error(0, "timeout after %u s", o.timeout);
		if (vm.migrate)
			pin_next_cpu();
		ret = ioctl(vm.vcpu_fd, KVM_RUN, 0);
		if (vm.isolation)
			after_run();
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			vmm_error(errno, "KVM_RUN");
		}
		switch (vm.run->exit_reason) {
		case KVM_EXIT_RISCV_SBI:
			status = handle_sbi(vm.run);
			if (status >= 0)
				return status;
			break;
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_MMIO:
			vmm_error(0, "guest %s unmapped GPA 0x%llx",
				  vm.run->mmio.is_write ? "wrote" : "read",
				  (unsigned long long)vm.run->mmio.phys_addr);
		case KVM_EXIT_SYSTEM_EVENT:
			vmm_error(0, "guest system event type %u before done",
				  (unsigned int)vm.run->system_event.type);
		case KVM_EXIT_FAIL_ENTRY:
			vmm_error(0, "KVM_EXIT_FAIL_ENTRY reason 0x%llx",
				  (unsigned long long)vm.run->fail_entry
					  .hardware_entry_failure_reason);
		case KVM_EXIT_INTERNAL_ERROR:
			vmm_error(0, "KVM_EXIT_INTERNAL_ERROR suberror %u",
				  (unsigned int)vm.run->internal.suberror);
		default:
			vmm_error(0, "unexpected exit reason %u",
				  (unsigned int)vm.run->exit_reason);
		}
	}
}
