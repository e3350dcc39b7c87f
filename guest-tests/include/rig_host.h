/* SPDX-License-Identifier: MIT */
/*
 * Host-side library of the guest tests (lib/): one VM with one vCPU and one
 * memory slot holding the program's embedded payload, ucall decoding and
 * JSON-lines reporting. Each test program (counters.c, isolation.c,
 * latency.c) keeps its own state and passes it in.
 */
#ifndef RIG_HOST_H
#define RIG_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/ioctl.h>

#include <linux/kvm.h>
#include <asm/kvm.h>

#include "rig_abi.h"

/* Exit status of every test program. */
enum { RIG_EXIT_DONE = 0, RIG_EXIT_GUEST_ABORT = 1, RIG_EXIT_ERROR = 2 };

/* Present in the 6.12 UAPI; absent before 6.6, where its value 0 was implied. */
#ifndef KVM_REG_RISCV_CSR_GENERAL
#define KVM_REG_RISCV_CSR_GENERAL 0
#endif

#define RIG_REG_CORE(name)						\
	(KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CORE |	\
	 KVM_REG_RISCV_CORE_REG(name))
#define RIG_REG_CSR(name)						\
	(KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CSR |		\
	 KVM_REG_RISCV_CSR_GENERAL | KVM_REG_RISCV_CSR_REG(name))

/* The guest payload, linked in by lib/payload.S. */
extern const uint8_t rig_payload[], rig_payload_end[];

struct rig_vm {
	int kvm_fd;
	int fd;
	uint8_t *ram;			/* RIG_RAM_SIZE bytes at RIG_RAM_GPA */
};

struct rig_vcpu {
	int fd;
	struct kvm_run *run;
	struct rig_vm *vm;
	uint64_t ucalls;		/* ucalls answered, ticks not counted */
};

/* A ucall as the guest made it: the command and its register arguments. */
struct rig_ucall {
	uint64_t cmd;			/* enum rig_ucall_cmd */
	uint64_t args[6];		/* a0..a5 */
};

/* No ucall to handle: the vCPU came out for a host interrupt. */
#define RIG_UCALL_NONE		(~0ULL)

/* ---- lib/vm.c ------------------------------------------------------- */

/*
 * Creates the VM, its RAM slot and the payload in it; returns the parameter
 * block (magic and version set, the rest 0) for the caller to fill in.
 */
struct rig_params *rig_vm_create(struct rig_vm *vm);
/* Closes and unmaps what rig_vm_create and rig_vcpu_create made. */
void rig_vm_destroy(struct rig_vm *vm, struct rig_vcpu *vcpu);
/* One vCPU, started at the payload's entry with a0 = hartid 0, a1 = 0. */
void rig_vcpu_create(struct rig_vm *vm, struct rig_vcpu *vcpu);
int rig_vcpu_get_reg(struct rig_vcpu *vcpu, uint64_t id, uint64_t *val);
void rig_vcpu_set_reg(struct rig_vcpu *vcpu, uint64_t id, uint64_t val,
		      const char *what);
bool rig_vcpu_run_failed(void);
/*
 * KVM_RUN once; false if a signal interrupted it (no exit to handle).
 * Inline, like rig_get_ucall: the path of a tick ucall through this program
 * is part of the user-exit round trip that latency measures.
 */
static inline bool rig_vcpu_run(struct rig_vcpu *vcpu)
{
	if (ioctl(vcpu->fd, KVM_RUN, 0) == 0)
		return true;
	return rig_vcpu_run_failed();
}
/* Pins the calling thread (the vCPU's) to one host CPU. */
void rig_pin_to_cpu(int cpu);

/* ---- lib/ucall.c ---------------------------------------------------- */

uint64_t rig_not_ucall(const struct kvm_run *run);
void rig_ucall_args(struct rig_vcpu *vcpu, struct rig_ucall *uc);

/*
 * Decodes the exit of the last rig_vcpu_run into uc and returns its command
 * (RIG_UCALL_NONE for KVM_EXIT_INTR); answers the ucall. Any other exit is
 * an error that ends the program.
 */
static inline uint64_t rig_get_ucall(struct rig_vcpu *vcpu,
				     struct rig_ucall *uc)
{
	struct kvm_run *run = vcpu->run;

	if (run->exit_reason != KVM_EXIT_RISCV_SBI ||
	    run->riscv_sbi.extension_id != RIG_UCALL_EXT)
		return rig_not_ucall(run);
	run->riscv_sbi.ret[0] = 0;	/* SBI_SUCCESS */
	uc->cmd = run->riscv_sbi.function_id;
	/* the tick has no arguments and nothing to count */
	if (uc->cmd != RIG_UCALL_TICK)
		rig_ucall_args(vcpu, uc);
	return uc->cmd;
}
/* The report a REPORT ucall points at, checked to be of this type and size. */
void rig_ucall_report(struct rig_vcpu *vcpu, const struct rig_ucall *uc,
		      uint32_t type, void *report, size_t size);
/* Prints an ABORT ucall; returns RIG_EXIT_GUEST_ABORT. */
int rig_print_abort(struct rig_vcpu *vcpu, const struct rig_ucall *uc);
/* Prints the PMU_INFO/PMU_CONFIG report of uc; false if it is neither. */
bool rig_print_pmu_report(struct rig_vcpu *vcpu, const struct rig_ucall *uc);
/* "cycle", "time", "instret", "hpmcounter3", "none" (0) or "other". */
const char *rig_counter_name(uint32_t csr);

/* ---- lib/report.c --------------------------------------------------- */

#define RIG_JSON_MAX_DEPTH	4

/*
 * One JSON object on one line of stdout. A NULL key adds an array element.
 * Nothing is kept between lines.
 */
struct rig_json {
	unsigned int depth;
	bool more[RIG_JSON_MAX_DEPTH];	/* the next member needs a comma */
	char close[RIG_JSON_MAX_DEPTH];
};

void json_begin(struct rig_json *j, const char *kind);
void json_end(struct rig_json *j);	/* closes the line and flushes it */
void json_str(struct rig_json *j, const char *key, const char *s);
void json_u64(struct rig_json *j, const char *key, uint64_t v);
void json_i64(struct rig_json *j, const char *key, int64_t v);
void json_hex(struct rig_json *j, const char *key, uint64_t v);
void json_bool(struct rig_json *j, const char *key, bool v);
void json_null(struct rig_json *j, const char *key);
void json_object(struct rig_json *j, const char *key);
void json_array(struct rig_json *j, const char *key);
void json_close(struct rig_json *j);	/* the innermost object or array */

/* What KVM holds as the guest's SCOUNTEREN while the vCPU is out. */
void json_scounteren_kvm(struct rig_json *j, struct rig_vcpu *vcpu);
/* The vCPU's cumulative KVM statistics (binary stats fd), or null. */
void json_kvm_stats(struct rig_json *j, struct rig_vcpu *vcpu);
/* The common start of every program's first line. */
void json_begin_start(struct rig_json *j, const char *program);

/* Prints a "vmm-error" line and exits with RIG_EXIT_ERROR. */
void __attribute__((noreturn, format(printf, 2, 3)))
rig_die(int err, const char *fmt, ...);

/* Option parsing helpers; bad input ends in rig_die. */
uint64_t rig_parse_u64(const char *s, const char *what);
unsigned int rig_split_list(const char *arg, const char *what, char *buf,
			    size_t size, char **tok, unsigned int max);

#endif
