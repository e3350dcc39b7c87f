// SPDX-License-Identifier: MIT
/*
 * VM and vCPU setup: one VM, one memory slot of RIG_RAM_SIZE at RIG_RAM_GPA
 * holding the program's payload, one vCPU started at its first byte.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rig_host.h"

struct rig_params *rig_vm_create(struct rig_vm *vm)
{
	const size_t size = (size_t)(rig_payload_end - rig_payload);
	struct kvm_userspace_memory_region region;
	struct rig_params *params;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		rig_die(errno, "open /dev/kvm");
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		rig_die(0, "unexpected KVM API version");
	vm->fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		rig_die(errno, "KVM_CREATE_VM");

	vm->ram = mmap(NULL, RIG_RAM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->ram == MAP_FAILED)
		rig_die(errno, "mmap guest RAM");
	if (!size || size > RIG_PARAM_GPA - RIG_RAM_GPA)
		rig_die(0, "payload size %zu not in 1..%lu", size,
			RIG_PARAM_GPA - RIG_RAM_GPA);
	memcpy(vm->ram, rig_payload, size);

	region = (struct kvm_userspace_memory_region){
		.slot = 0,
		.guest_phys_addr = RIG_RAM_GPA,
		.memory_size = RIG_RAM_SIZE,
		.userspace_addr = (uintptr_t)vm->ram,
	};
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		rig_die(errno, "KVM_SET_USER_MEMORY_REGION");

	params = (struct rig_params *)(vm->ram + (RIG_PARAM_GPA - RIG_RAM_GPA));
	params->magic = RIG_MAGIC;
	params->version = RIG_VERSION;
	return params;
}

void rig_vcpu_create(struct rig_vm *vm, struct rig_vcpu *vcpu)
{
	int mmap_size;

	vcpu->vm = vm;
	vcpu->ucalls = 0;
	vcpu->fd = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
	if (vcpu->fd < 0)
		rig_die(errno, "KVM_CREATE_VCPU");
	mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size < (int)sizeof(struct kvm_run))
		rig_die(errno, "KVM_GET_VCPU_MMAP_SIZE");
	vcpu->run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED)
		rig_die(errno, "mmap kvm_run");

	/* Boot protocol as for a kernel: a0 = hartid, a1 = 0 (no DT). */
	rig_vcpu_set_reg(vcpu, RIG_REG_CORE(regs.pc), RIG_RAM_GPA, "pc");
	rig_vcpu_set_reg(vcpu, RIG_REG_CORE(regs.a0), 0, "a0");
	rig_vcpu_set_reg(vcpu, RIG_REG_CORE(regs.a1), 0, "a1");
}

void rig_vm_destroy(struct rig_vm *vm, struct rig_vcpu *vcpu)
{
	int mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);

	munmap(vcpu->run, (size_t)mmap_size);
	close(vcpu->fd);
	munmap(vm->ram, RIG_RAM_SIZE);
	close(vm->fd);
	close(vm->kvm_fd);
}

int rig_vcpu_get_reg(struct rig_vcpu *vcpu, uint64_t id, uint64_t *val)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)val };

	return ioctl(vcpu->fd, KVM_GET_ONE_REG, &reg);
}

void rig_vcpu_set_reg(struct rig_vcpu *vcpu, uint64_t id, uint64_t val,
		      const char *what)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)&val };

	if (ioctl(vcpu->fd, KVM_SET_ONE_REG, &reg) < 0)
		rig_die(errno, "KVM_SET_ONE_REG %s", what);
}

/* KVM_RUN returned an error: false for EINTR, the end otherwise. */
bool rig_vcpu_run_failed(void)
{
	if (errno != EINTR)
		rig_die(errno, "KVM_RUN");
	return false;
}

void rig_pin_to_cpu(int cpu)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(0, sizeof(one), &one) < 0)
		rig_die(errno, "sched_setaffinity CPU %d", cpu);
}

/* -- what a VM reports of itself (JSON members, see report.c) ------------- */

void json_scounteren_kvm(struct rig_json *j, struct rig_vcpu *vcpu)
{
	uint64_t sc;

	if (rig_vcpu_get_reg(vcpu, RIG_REG_CSR(scounteren), &sc) == 0)
		json_hex(j, "scounteren_kvm", sc);
}

/*
 * Cumulative event counts only: the exits KVM handles in the kernel (SBI
 * calls, wfi) never reach user space, these show that they happened.
 */
void json_kvm_stats(struct rig_json *j, struct rig_vcpu *vcpu)
{
	const struct kvm_stats_desc *d;
	struct kvm_stats_header h;
	char *descs = NULL;
	size_t dsize, total;
	uint64_t val;
	uint32_t i;
	int fd;

	fd = ioctl(vcpu->fd, KVM_GET_STATS_FD, NULL);
	if (fd < 0 || pread(fd, &h, sizeof(h), 0) != sizeof(h))
		goto unavailable;
	dsize = sizeof(*d) + h.name_size;
	total = dsize * h.num_desc;
	descs = malloc(total);
	if (!descs || pread(fd, descs, total, h.desc_offset) != (ssize_t)total)
		goto unavailable;
	json_object(j, "kvm_stats");
	for (i = 0; i < h.num_desc; i++) {
		d = (const struct kvm_stats_desc *)(descs + i * dsize);
		if ((d->flags & KVM_STATS_TYPE_MASK) == KVM_STATS_TYPE_CUMULATIVE &&
		    (d->flags & KVM_STATS_UNIT_MASK) == KVM_STATS_UNIT_NONE &&
		    d->size == 1 &&
		    pread(fd, &val, sizeof(val), h.data_offset + d->offset) ==
			    sizeof(val))
			json_u64(j, d->name, val);
	}
	json_close(j);
	free(descs);
	close(fd);
	return;
unavailable:
	json_null(j, "kvm_stats");
	free(descs);
	if (fd >= 0)
		close(fd);
}

void json_begin_start(struct rig_json *j, const char *program)
{
	json_begin(j, "vmm-start");
	json_str(j, "program", program);
	json_u64(j, "abi_version", RIG_VERSION);
	json_u64(j, "payload_bytes", (uint64_t)(rig_payload_end - rig_payload));
}
