// SPDX-License-Identifier: MIT
/* Ucall decoding (see rig_abi.h) and the reports every program shares. */
#include <inttypes.h>
#include <string.h>

#include "rig_host.h"

static void __attribute__((noreturn)) die_on_exit(const struct kvm_run *run)
{
	switch (run->exit_reason) {
	case KVM_EXIT_RISCV_SBI:
		rig_die(0, "unhandled SBI call ext 0x%lx fid 0x%lx",
			(unsigned long)run->riscv_sbi.extension_id,
			(unsigned long)run->riscv_sbi.function_id);
	case KVM_EXIT_MMIO:
		rig_die(0, "guest %s unmapped GPA 0x%llx",
			run->mmio.is_write ? "wrote" : "read",
			(unsigned long long)run->mmio.phys_addr);
	case KVM_EXIT_SYSTEM_EVENT:
		rig_die(0, "guest system event type %u before done",
			(unsigned int)run->system_event.type);
	case KVM_EXIT_FAIL_ENTRY:
		rig_die(0, "KVM_EXIT_FAIL_ENTRY reason 0x%llx",
			(unsigned long long)run->fail_entry
				.hardware_entry_failure_reason);
	case KVM_EXIT_INTERNAL_ERROR:
		rig_die(0, "KVM_EXIT_INTERNAL_ERROR suberror %u",
			(unsigned int)run->internal.suberror);
	default:
		rig_die(0, "unexpected exit reason %u",
			(unsigned int)run->exit_reason);
	}
}

/* An exit that is no ucall: none to handle for KVM_EXIT_INTR, else the end. */
uint64_t rig_not_ucall(const struct kvm_run *run)
{
	if (run->exit_reason != KVM_EXIT_INTR)
		die_on_exit(run);
	return RIG_UCALL_NONE;
}

/* The arguments of every ucall but the tick; counts it, answers the count. */
void rig_ucall_args(struct rig_vcpu *vcpu, struct rig_ucall *uc)
{
	struct kvm_run *run = vcpu->run;

	if (uc->cmd > RIG_UCALL_ABORT)
		die_on_exit(run);
	memcpy(uc->args, run->riscv_sbi.args, sizeof(uc->args));
	run->riscv_sbi.ret[1] = ++vcpu->ucalls;
}

void rig_ucall_report(struct rig_vcpu *vcpu, const struct rig_ucall *uc,
		      uint32_t type, void *report, size_t size)
{
	uint64_t gpa = uc->args[1], len = uc->args[2];

	if (uc->cmd != RIG_UCALL_REPORT || uc->args[0] != type)
		rig_die(0, "expected a report of type %u, got ucall %" PRIu64
			" type %" PRIu64, (unsigned int)type, uc->cmd,
			uc->args[0]);
	if (len != size || gpa < RIG_RAM_GPA || gpa % 8 ||
	    gpa - RIG_RAM_GPA > RIG_RAM_SIZE - size)
		rig_die(0, "bad report gpa 0x%" PRIx64 " size %" PRIu64
			" (type %u wants %zu)", gpa, len, (unsigned int)type,
			size);
	memcpy(report, vcpu->vm->ram + (gpa - RIG_RAM_GPA), size);
}

static const char *abort_reason(uint64_t reason)
{
	switch (reason) {
	case RIG_ABORT_BAD_PARAMS:	return "bad-params";
	case RIG_ABORT_UNEXPECTED_TRAP:	return "unexpected-trap";
	case RIG_ABORT_NESTED_TRAP:	return "nested-trap";
	case RIG_ABORT_TIMER_LOST:	return "timer-lost";
	default:			return "other";
	}
}

int rig_print_abort(struct rig_vcpu *vcpu, const struct rig_ucall *uc)
{
	struct rig_json j;

	json_begin(&j, "abort");
	json_str(&j, "reason", abort_reason(uc->args[0]));
	json_u64(&j, "cause", uc->args[1]);
	json_hex(&j, "tval", uc->args[2]);
	json_hex(&j, "sepc", uc->args[3]);
	json_hex(&j, "sstatus", uc->args[4]);
	json_scounteren_kvm(&j, vcpu);
	json_end(&j);
	return RIG_EXIT_GUEST_ABORT;
}

const char *rig_counter_name(uint32_t csr)
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

static const char *event_name(uint64_t eidx)
{
	switch (eidx) {
	case 0x00001: return "hw-cpu-cycles";
	case 0x00002: return "hw-instructions";
	case 0x10019: return "dtlb-read-miss";
	default:      return "other";
	}
}

bool rig_print_pmu_report(struct rig_vcpu *vcpu, const struct rig_ucall *uc)
{
	struct rig_pmu_config cfg;
	struct rig_pmu_info info;
	struct rig_json j;

	if (uc->cmd != RIG_UCALL_REPORT)
		return false;
	switch (uc->args[0]) {
	case RIG_REPORT_PMU_INFO:
		rig_ucall_report(vcpu, uc, RIG_REPORT_PMU_INFO, &info,
				 sizeof(info));
		json_begin(&j, "pmu-info");
		json_i64(&j, "probe_error", info.probe_error);
		json_i64(&j, "probe_value", info.probe_value);
		json_i64(&j, "num_counters_error", info.num_counters_error);
		json_i64(&j, "num_counters", info.num_counters);
		json_bool(&j, "pmu_available",
			  !info.probe_error && info.probe_value);
		break;
	case RIG_REPORT_PMU_CONFIG:
		rig_ucall_report(vcpu, uc, RIG_REPORT_PMU_CONFIG, &cfg,
				 sizeof(cfg));
		json_begin(&j, "pmu-config");
		json_str(&j, "event", event_name(cfg.event_idx));
		json_hex(&j, "event_idx", cfg.event_idx);
		json_i64(&j, "cfg_match_error", cfg.cfg_match_error);
		if (!cfg.cfg_match_error) {
			json_u64(&j, "counter_index", cfg.counter_index);
			json_str(&j, "counter_csr",
				 rig_counter_name(cfg.counter_csr));
			json_i64(&j, "start_error", cfg.start_error);
		}
		break;
	default:
		return false;
	}
	json_scounteren_kvm(&j, vcpu);
	json_end(&j);
	return true;
}
