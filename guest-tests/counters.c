// SPDX-License-Identifier: MIT
/*
 * counters: the guest (guest/counters.c) reads cycle, time, instret and
 * hpmcounter3 twice in VS- and in VU-mode under each requested SCOUNTEREN
 * value; one "counter" line per (value, counter, mode), then "done".
 *
 *   counters [--scounteren LIST] [--pmu] [--delay N]
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "rig_host.h"

struct options {
	bool pmu;
	uint32_t n_scounteren;
	uint64_t scounteren[RIG_MAX_SCOUNTEREN];
	uint64_t delay_loops;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: counters [--scounteren LIST] [--pmu] [--delay N]\n"
		"  --scounteren LIST  comma-separated values the guest writes\n"
		"                     (default 0x0,0x2,0x7,0xf)\n"
		"  --pmu              the guest configures+starts SBI PMU counters first\n"
		"  --delay N          busy-loop iterations between the two reads\n"
		"                     (default 1000)\n");
}

static void parse_scounteren(struct options *o, const char *arg)
{
	char buf[512], *tok[RIG_MAX_SCOUNTEREN];
	uint32_t i;

	o->n_scounteren = rig_split_list(arg, "--scounteren", buf, sizeof(buf),
					 tok, RIG_MAX_SCOUNTEREN);
	for (i = 0; i < o->n_scounteren; i++)
		o->scounteren[i] = rig_parse_u64(tok[i], "scounteren");
}

static void parse_args(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "scounteren", required_argument, NULL, 's' },
		{ "pmu", no_argument, NULL, 'p' },
		{ "delay", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	*o = (struct options){ .delay_loops = 1000 };
	parse_scounteren(o, "0x0,0x2,0x7,0xf");
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': parse_scounteren(o, optarg); break;
		case 'p': o->pmu = true; break;
		case 'd': o->delay_loops = rig_parse_u64(optarg, "--delay"); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); rig_die(0, "bad command line");
		}
	}
	if (optind != argc) {
		usage(stderr);
		rig_die(0, "unexpected argument %s", argv[optind]);
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

static void print_counter(struct rig_vcpu *vcpu, const struct rig_ucall *uc,
			  const struct options *o)
{
	struct rig_counter r;
	struct rig_json j;

	rig_ucall_report(vcpu, uc, RIG_REPORT_COUNTER, &r, sizeof(r));
	json_begin(&j, "counter");
	json_u64(&j, "test", r.test);
	json_bool(&j, "pmu", o->pmu);
	json_bool(&j, "pmu_available", r.pmu_available);
	json_str(&j, "mode", r.mode == RIG_MODE_VS ? "VS" :
			     r.mode == RIG_MODE_VU ? "VU" : "?");
	json_str(&j, "counter", rig_counter_name(r.csr));
	json_hex(&j, "csr", r.csr);
	json_hex(&j, "scounteren_written", r.scounteren_written);
	json_hex(&j, "scounteren_read", r.scounteren_read);
	json_hex(&j, "scounteren_after", r.scounteren_after);
	if (r.traps) {
		json_str(&j, "outcome", "exception");
		json_u64(&j, "cause", r.cause);
		json_str(&j, "cause_name", cause_name(r.cause));
		json_hex(&j, "tval", r.tval);
	} else {
		json_str(&j, "outcome", "value");
	}
	json_u64(&j, "traps", r.traps);
	json_u64(&j, "value1", r.value1);
	json_u64(&j, "value2", r.value2);
	json_bool(&j, "advanced", r.value2 > r.value1);
	json_scounteren_kvm(&j, vcpu);
	json_end(&j);
}

static void print_start(struct rig_vcpu *vcpu, const struct options *o)
{
	struct rig_json j;
	uint32_t i;

	json_begin_start(&j, "counters");
	json_bool(&j, "pmu", o->pmu);
	json_u64(&j, "delay", o->delay_loops);
	json_array(&j, "scounteren_list");
	for (i = 0; i < o->n_scounteren; i++)
		json_hex(&j, NULL, o->scounteren[i]);
	json_close(&j);
	json_scounteren_kvm(&j, vcpu);
	json_end(&j);
}

static void print_done(struct rig_vcpu *vcpu, const struct rig_ucall *uc)
{
	struct rig_json j;

	json_begin(&j, "done");
	json_u64(&j, "counter_records", uc->args[0]);
	json_u64(&j, "records", vcpu->ucalls);
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
	params->flags = o.pmu ? RIG_PARAM_PMU : 0;
	params->n_scounteren = o.n_scounteren;
	for (uint32_t i = 0; i < o.n_scounteren; i++)
		params->scounteren[i] = o.scounteren[i];
	params->delay_loops = o.delay_loops;
	rig_vcpu_create(&vm, &vcpu);
	print_start(&vcpu, &o);

	for (;;) {
		if (!rig_vcpu_run(&vcpu))
			continue;
		switch (rig_get_ucall(&vcpu, &uc)) {
		case RIG_UCALL_NONE:
			break;
		case RIG_UCALL_REPORT:
			if (!rig_print_pmu_report(&vcpu, &uc))
				print_counter(&vcpu, &uc, &o);
			break;
		case RIG_UCALL_DONE:
			print_done(&vcpu, &uc);
			return RIG_EXIT_DONE;
		case RIG_UCALL_ABORT:
			return rig_print_abort(&vcpu, &uc);
		default:
			rig_die(0, "unexpected ucall %" PRIu64 " from the counters guest",
				uc.cmd);
		}
	}
}
