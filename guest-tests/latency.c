// SPDX-License-Identifier: MIT
/*
 * latency: the guest (guest/latency.c) times world-switch round trips with
 * rdtime, window by window; one "latency-window" line per window and kind,
 * then "latency-done". The guest's tick ucalls (the user-exit round trip)
 * are answered without output.
 *
 *   latency [--iterations N] [--windows N] [--tests LIST]
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rig_host.h"

/* See guest-tests/README.md for how the defaults were chosen. */
#define DEFAULT_ITERATIONS	100
#define DEFAULT_WINDOWS		500

/* --tests names, indexed by rig_latency_test */
static const char *const test_names[RIG_LAT_N_TESTS] = {
	[RIG_LAT_SBI_IN_KERNEL] = "sbi-in-kernel",
	[RIG_LAT_USER_EXIT] = "user-exit",
	[RIG_LAT_EMULATED_CSR] = "emulated-csr",
};

struct options {
	uint64_t iterations;
	uint32_t windows;
	uint32_t tests;			/* bit n = rig_latency_test n */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: latency [--iterations N] [--windows N] [--tests LIST]\n"
		"  --iterations N  round trips per window (default %d)\n"
		"  --windows N     windows per test (default %d, at most %d)\n"
		"  --tests LIST    comma-separated, of sbi-in-kernel, user-exit,\n"
		"                  emulated-csr (default all)\n",
		DEFAULT_ITERATIONS, DEFAULT_WINDOWS, RIG_LAT_MAX_WINDOWS);
}

static uint32_t parse_tests(const char *arg)
{
	char buf[128], *tok[RIG_LAT_N_TESTS];
	unsigned int i, n;
	uint32_t t, tests = 0;

	n = rig_split_list(arg, "--tests", buf, sizeof(buf), tok,
			   RIG_LAT_N_TESTS);
	for (i = 0; i < n; i++) {
		for (t = 0; t < RIG_LAT_N_TESTS; t++)
			if (!strcmp(tok[i], test_names[t]))
				break;
		if (t == RIG_LAT_N_TESTS)
			rig_die(0, "unknown --tests name: %s", tok[i]);
		tests |= 1U << t;
	}
	return tests;
}

static void parse_args(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "iterations", required_argument, NULL, 'n' },
		{ "windows", required_argument, NULL, 'w' },
		{ "tests", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t windows = DEFAULT_WINDOWS;
	int opt;

	*o = (struct options){
		.iterations = DEFAULT_ITERATIONS,
		.tests = (1U << RIG_LAT_N_TESTS) - 1,
	};
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			o->iterations = rig_parse_u64(optarg, "--iterations");
			break;
		case 'w': windows = rig_parse_u64(optarg, "--windows"); break;
		case 'T': o->tests = parse_tests(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); rig_die(0, "bad command line");
		}
	}
	if (optind != argc) {
		usage(stderr);
		rig_die(0, "unexpected argument %s", argv[optind]);
	}
	if (!o->iterations)
		rig_die(0, "--iterations must be at least 1");
	if (windows < 1 || windows > RIG_LAT_MAX_WINDOWS)
		rig_die(0, "--windows must be in 1..%d", RIG_LAT_MAX_WINDOWS);
	o->windows = (uint32_t)windows;
}

static void print_start(struct rig_vcpu *vcpu, const struct options *o)
{
	struct rig_json j;
	uint32_t t;

	json_begin_start(&j, "latency");
	json_bool(&j, "pmu", true);
	json_u64(&j, "iterations", o->iterations);
	json_u64(&j, "windows", o->windows);
	json_array(&j, "tests");
	for (t = 0; t < RIG_LAT_N_TESTS; t++)
		if (o->tests & (1U << t))
			json_str(&j, NULL, test_names[t]);
	json_close(&j);
	json_scounteren_kvm(&j, vcpu);
	json_end(&j);
}

static void print_window(struct rig_vcpu *vcpu, const struct rig_ucall *uc,
			 const struct options *o)
{
	struct rig_latency r;
	struct rig_json j;

	rig_ucall_report(vcpu, uc, RIG_REPORT_LATENCY, &r, sizeof(r));
	if (r.test >= RIG_LAT_N_TESTS)
		rig_die(0, "unknown latency test %u", (unsigned int)r.test);
	json_begin(&j, "latency-window");
	json_str(&j, "test", test_names[r.test]);
	json_u64(&j, "window", r.window);
	json_u64(&j, "iterations", o->iterations);
	json_u64(&j, "ticks", r.ticks);
	json_u64(&j, "baseline_ticks", r.baseline_ticks);
	json_end(&j);
}

static void print_done(struct rig_vcpu *vcpu, const struct rig_ucall *uc)
{
	struct rig_json j;

	json_begin(&j, "latency-done");
	json_u64(&j, "window_records", uc->args[0]);
	json_u64(&j, "records", vcpu->ucalls);
	/* shows which exits KVM handled in the kernel */
	json_kvm_stats(&j, vcpu);
	json_scounteren_kvm(&j, vcpu);
	json_end(&j);
}

int main(int argc, char **argv)
{
	struct rig_params *params;
	struct rig_ucall uc;
	struct rig_vcpu vcpu;
	struct options o;
	struct rig_vm vm;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(&o, argc, argv);

	params = rig_vm_create(&vm);
	/* the emulated-csr reads need a started cycle counter */
	params->flags = RIG_PARAM_PMU;
	params->iterations = o.iterations;
	params->windows = o.windows;
	params->latency_tests = o.tests;
	rig_vcpu_create(&vm, &vcpu);
	print_start(&vcpu, &o);

	/* The tick path (user-exit round trips) is part of what is measured. */
	for (;;) {
		if (!rig_vcpu_run(&vcpu))
			continue;
		switch (rig_get_ucall(&vcpu, &uc)) {
		case RIG_UCALL_TICK:
		case RIG_UCALL_NONE:
			break;
		case RIG_UCALL_REPORT:
			if (!rig_print_pmu_report(&vcpu, &uc))
				print_window(&vcpu, &uc, &o);
			break;
		case RIG_UCALL_DONE:
			print_done(&vcpu, &uc);
			return RIG_EXIT_DONE;
		case RIG_UCALL_ABORT:
			return rig_print_abort(&vcpu, &uc);
		default:
			rig_die(0, "unexpected ucall %" PRIu64 " from the latency guest",
				uc.cmd);
		}
	}
}
