// SPDX-License-Identifier: MIT
/*
 * host-readers: a host process that reads the counters beside a running VMM
 * (suite linux-guest), to catch a guest's SCOUNTEREN left live in the host
 * after a world switch.
 *
 * Started pinned to one host CPU (taskset -c CPU: the perf_event mmap grants
 * user access on every CPU the process has run on, so it must never have run
 * elsewhere), it wakes every --interval-ms until the process --while-pid has
 * ended, and each time
 *  - reads cycle, time and instret directly under a SIGILL handler, with no
 *    perf event of its own open (an event of ours would grant the access);
 *  - every --perf-every wakeups, opens cycles and instructions events
 *    (user space only), mmaps their user pages and reads each counter as
 *    perf's self-monitoring read does, then closes them again;
 *  - adds the KVM exits of each vCPU of the VMM that ran on this CPU since
 *    the last wakeup: the vCPU's "exits" statistic (the binary stats fd QEMU
 *    keeps open per vCPU, taken with pidfd_getfd) and the CPU its thread last
 *    ran on (/proc/PID/task/TID/stat; QEMU names the thread "CPU N/KVM" with
 *    -name debug-threads=on).
 * One "host-readers" JSON line at the end (guest-tests/README.md).
 *
 *   host-readers --while-pid PID [--vcpus N] [--interval-ms N] [--perf-every N]
 *                [--work N]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rig_counters.h"
#include "rig_host.h"

#define SYSCTL "/proc/sys/kernel/perf_user_access"
#define MAX_VCPUS 8

enum { DIRECT_CYCLE, DIRECT_TIME, DIRECT_INSTRET, N_DIRECT };
static const char *const direct_names[N_DIRECT] = { "cycle", "time", "instret" };

/* What one perf read of the user page gave. */
enum { PERF_VALUE, PERF_NOT_OFFERED, PERF_SIGILL, PERF_STUCK, PERF_FAILED, N_PERF_OUTCOMES };
static const char *const perf_outcome_names[N_PERF_OUTCOMES] = {
	"value", "not-offered", "sigill", "stuck", "failed",
};
enum { PERF_CYCLES, PERF_INSTRUCTIONS, N_PERF };
static const char *const perf_names[N_PERF] = { "cycles", "instructions" };
static const uint64_t perf_configs[N_PERF] = {
	PERF_COUNT_HW_CPU_CYCLES, PERF_COUNT_HW_INSTRUCTIONS,
};

struct options {
	int while_pid;
	unsigned int vcpus;
	unsigned int interval_ms;
	unsigned int perf_every;
	unsigned long work;
};

/* One vCPU of the VMM: its statistics fd (ours, by pidfd_getfd) and its thread. */
struct vcpu {
	int id;
	int stats_fd;
	uint64_t exits_offset;		/* of the "exits" value in the stats fd */
	int stat_fd;			/* /proc/PID/task/TID/stat of its thread */
	uint64_t last_exits;
	int last_cpu;
	uint64_t exits_here;		/* exits while its thread was on our CPU */
};

struct tally {
	int cpu;
	uint64_t wakeups, rounds_after_switch;
	uint64_t direct_ok[N_DIRECT], direct_sigill[N_DIRECT];
	uint64_t perf[N_PERF][N_PERF_OUTCOMES];
	int perf_errno;			/* of the first open or mmap that failed */
	int vmm_pid;
	unsigned int n_vcpus;
	struct vcpu vcpus[MAX_VCPUS];
	uint64_t world_switches;	/* all vCPUs' exits on our CPU */
};

/* The one global: where SIGILL resumes (a signal handler has no other way). */
static sigjmp_buf sigill_jump;

static void on_sigill(int sig)
{
	siglongjmp(sigill_jump, sig);
}

static bool read_direct(int which)
{
	if (sigsetjmp(sigill_jump, 1))
		return false;
	(void)rig_read_counter(which);
	return true;
}

/* perf's self-monitoring read (rig_counters.h), classified. */
static int read_user_page(volatile struct perf_event_mmap_page *pc, uint64_t *value)
{
	if (sigsetjmp(sigill_jump, 1))
		return PERF_SIGILL;
	return rig_read_user_page(pc, value) ? PERF_VALUE : PERF_NOT_OFFERED;
}

static void work(unsigned long n)
{
	for (volatile unsigned long i = 0; i < n; i++)
		;
}

static int perf_read_once(struct tally *t, uint64_t config, unsigned long n)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_HARDWARE, .size = sizeof(attr), .config = config,
		.exclude_kernel = 1, .exclude_hv = 1,
	};
	long page_size = sysconf(_SC_PAGESIZE);
	volatile struct perf_event_mmap_page *page;
	uint64_t value1 = 0, value2 = 0;
	int fd, outcome;

	fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
	if (fd < 0) {
		t->perf_errno = t->perf_errno ? t->perf_errno : errno;
		return PERF_FAILED;
	}
	page = mmap(NULL, page_size, PROT_READ, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED) {
		t->perf_errno = t->perf_errno ? t->perf_errno : errno;
		close(fd);
		return PERF_FAILED;
	}
	/* the kernel fills the page when the event is scheduled in */
	work(n);
	outcome = read_user_page(page, &value1);
	if (outcome == PERF_VALUE) {
		work(n);
		outcome = read_user_page(page, &value2);
		if (outcome == PERF_VALUE && value2 <= value1)
			outcome = PERF_STUCK;
	}
	munmap((void *)page, page_size);
	close(fd);
	return outcome;
}

/* ---- the VMM's vCPUs ------------------------------------------------ */

static bool read_small_file(int dirfd, const char *path, char *buf, size_t size)
{
	int fd = openat(dirfd, path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return true;
}

/* The CPU a thread last ran on: field 39 of its stat, after the ")" of its name. */
static int thread_cpu(int stat_fd)
{
	char buf[1024], *p;
	ssize_t n = pread(stat_fd, buf, sizeof(buf) - 1, 0);
	int field;

	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	for (field = 2; p && field < 39; field++)
		p = strchr(p + 1, ' ');
	return p ? atoi(p + 1) : -1;
}

/* Where "exits" lies in a vCPU statistics fd (KVM_GET_STATS_FD layout). */
static bool find_exits(int fd, uint64_t *offset)
{
	struct kvm_stats_header h;
	struct kvm_stats_desc *d;
	size_t dsize;
	char *descs;
	bool found = false;

	if (pread(fd, &h, sizeof(h), 0) != sizeof(h))
		return false;
	dsize = sizeof(*d) + h.name_size;
	descs = malloc(dsize * h.num_desc);
	if (!descs)
		return false;
	if (pread(fd, descs, dsize * h.num_desc, h.desc_offset) == (ssize_t)(dsize * h.num_desc)) {
		for (uint32_t i = 0; i < h.num_desc && !found; i++) {
			d = (struct kvm_stats_desc *)(descs + i * dsize);
			if (!strcmp(d->name, "exits") && d->size == 1) {
				*offset = h.data_offset + d->offset;
				found = true;
			}
		}
	}
	free(descs);
	return found;
}

/* The thread named "CPU <id>/KVM" in /proc/PID/task, its stat opened. */
static int open_vcpu_thread_stat(int pid, int id)
{
	char path[64], want[32], comm[64];
	struct dirent *e;
	int fd = -1, task_dir;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	snprintf(want, sizeof(want), "CPU %d/KVM\n", id);
	dir = opendir(path);
	if (!dir)
		return -1;
	task_dir = dirfd(dir);
	while (fd < 0 && (e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%.32s/comm", e->d_name);
		if (read_small_file(task_dir, path, comm, sizeof(comm)) && !strcmp(comm, want)) {
			snprintf(path, sizeof(path), "%.32s/stat", e->d_name);
			fd = openat(task_dir, path, O_RDONLY);
		}
	}
	closedir(dir);
	return fd;
}

static bool known_vcpu(const struct tally *t, int id)
{
	for (unsigned int i = 0; i < t->n_vcpus; i++)
		if (t->vcpus[i].id == id)
			return true;
	return false;
}

static void add_vcpu(struct tally *t, int pid, int target_fd, int id)
{
	struct vcpu *v = &t->vcpus[t->n_vcpus];
	int pidfd;

	if (t->n_vcpus == MAX_VCPUS || known_vcpu(t, id))
		return;
	*v = (struct vcpu){ .id = id, .last_cpu = -1, .stat_fd = -1 };
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	v->stats_fd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, target_fd, 0);
	if (pidfd >= 0)
		close(pidfd);
	if (v->stats_fd < 0)
		return;
	v->stat_fd = open_vcpu_thread_stat(pid, id);
	if (v->stat_fd < 0 || !find_exits(v->stats_fd, &v->exits_offset)) {
		close(v->stats_fd);
		if (v->stat_fd >= 0)
			close(v->stat_fd);
		return;
	}
	t->vmm_pid = pid;
	t->n_vcpus++;
}

/* Takes the vCPU statistics fds of pid that are not ours yet. */
static void attach_vmm(struct tally *t, int pid)
{
	char path[64], link[64];
	struct dirent *e;
	ssize_t n;
	DIR *dir;
	int id;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	dir = opendir(path);
	if (!dir)
		return;
	while ((e = readdir(dir))) {
		n = readlinkat(dirfd(dir), e->d_name, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (sscanf(link, "anon_inode:kvm-vcpu-stats:%d", &id) == 1)
			add_vcpu(t, pid, atoi(e->d_name), id);
	}
	closedir(dir);
}

/*
 * The VMM is the process holding vCPU statistics fds (the host runs one),
 * most likely the one we were told to wait for: that one is looked at first,
 * a walk of every process's fds costs. It creates its vCPUs one after the
 * other, so its fds are looked at again later.
 */
static void find_vmm(struct tally *t, int likely_pid)
{
	struct dirent *e;
	DIR *proc;

	attach_vmm(t, t->vmm_pid > 0 ? t->vmm_pid : likely_pid);
	if (t->vmm_pid > 0)
		return;
	proc = opendir("/proc");
	while (proc && t->vmm_pid <= 0 && (e = readdir(proc)))
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9' && atoi(e->d_name) != getpid())
			attach_vmm(t, atoi(e->d_name));
	if (proc)
		closedir(proc);
}

/* Adds the exits each vCPU made on our CPU since the last wakeup; true if any. */
static bool count_world_switches(struct tally *t)
{
	uint64_t before = t->world_switches, exits;
	int cpu;

	for (unsigned int i = 0; i < t->n_vcpus; i++) {
		struct vcpu *v = &t->vcpus[i];

		if (pread(v->stats_fd, &exits, sizeof(exits), v->exits_offset) != sizeof(exits))
			continue;
		cpu = thread_cpu(v->stat_fd);
		/* on our CPU at both ends of the interval: the exits were made here */
		if (cpu == t->cpu && v->last_cpu == t->cpu) {
			v->exits_here += exits - v->last_exits;
			t->world_switches += exits - v->last_exits;
		}
		v->last_exits = exits;
		v->last_cpu = cpu;
	}
	return t->world_switches > before;
}

/* ---- one wakeup ----------------------------------------------------- */

static void read_all(struct tally *t, const struct options *o)
{
	for (int c = 0; c < N_DIRECT; c++) {
		if (read_direct(c))
			t->direct_ok[c]++;
		else
			t->direct_sigill[c]++;
	}
	if (t->wakeups % o->perf_every == 0)
		for (int e = 0; e < N_PERF; e++)
			t->perf[e][perf_read_once(t, perf_configs[e], o->work)]++;
	t->wakeups++;
}

static void print_tally(const struct tally *t, int perf_user_access)
{
	struct rusage usage;
	struct rig_json j;

	json_begin(&j, "host-readers");
	json_i64(&j, "cpu", t->cpu);
	json_i64(&j, "perf_user_access", perf_user_access);
	json_u64(&j, "wakeups", t->wakeups);
	json_object(&j, "direct");
	for (int c = 0; c < N_DIRECT; c++) {
		json_object(&j, direct_names[c]);
		json_u64(&j, "ok", t->direct_ok[c]);
		json_u64(&j, "sigill", t->direct_sigill[c]);
		json_close(&j);
	}
	json_close(&j);
	json_object(&j, "perf");
	for (int e = 0; e < N_PERF; e++) {
		json_object(&j, perf_names[e]);
		for (int k = 0; k < N_PERF_OUTCOMES; k++)
			json_u64(&j, perf_outcome_names[k], t->perf[e][k]);
		json_close(&j);
	}
	json_close(&j);
	if (t->perf_errno)
		json_i64(&j, "perf_errno", t->perf_errno);
	json_i64(&j, "vmm_pid", t->vmm_pid);
	json_array(&j, "vcpus");
	for (unsigned int i = 0; i < t->n_vcpus; i++) {
		json_object(&j, NULL);
		json_i64(&j, "id", t->vcpus[i].id);
		json_u64(&j, "exits", t->vcpus[i].last_exits);
		json_u64(&j, "exits_here", t->vcpus[i].exits_here);
		json_close(&j);
	}
	json_close(&j);
	json_u64(&j, "world_switches", t->world_switches);
	json_u64(&j, "rounds_after_switch", t->rounds_after_switch);
	/* the CPU time taken from the VMM's threads: what the readers cost a run */
	if (getrusage(RUSAGE_SELF, &usage) == 0)
		json_u64(&j, "cpu_us", (uint64_t)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) *
				       1000000 + usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
	json_end(&j);
}

static int read_perf_user_access(void)
{
	char buf[16];

	return read_small_file(AT_FDCWD, SYSCTL, buf, sizeof(buf)) ? atoi(buf) : -1;
}

static void parse(int argc, char **argv, struct options *o)
{
	*o = (struct options){ .while_pid = -1, .vcpus = 1, .interval_ms = 20, .perf_every = 8,
			       .work = 2000 };
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			rig_die(0, "option %s needs a value", argv[i]);
		if (!strcmp(argv[i], "--while-pid"))
			o->while_pid = (int)rig_parse_u64(argv[++i], "--while-pid");
		else if (!strcmp(argv[i], "--vcpus"))
			o->vcpus = (unsigned int)rig_parse_u64(argv[++i], "--vcpus");
		else if (!strcmp(argv[i], "--interval-ms"))
			o->interval_ms = (unsigned int)rig_parse_u64(argv[++i], "--interval-ms");
		else if (!strcmp(argv[i], "--perf-every"))
			o->perf_every = (unsigned int)rig_parse_u64(argv[++i], "--perf-every");
		else if (!strcmp(argv[i], "--work"))
			o->work = rig_parse_u64(argv[++i], "--work");
		else
			rig_die(0, "unknown option %s", argv[i]);
	}
	if (o->while_pid <= 0)
		rig_die(0, "--while-pid PID is required");
	if (!o->vcpus || o->vcpus > MAX_VCPUS)
		rig_die(0, "--vcpus must be 1 to %d", MAX_VCPUS);
	if (!o->perf_every)
		rig_die(0, "--perf-every must be at least 1");
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_sigill, .sa_flags = SA_NODEFER };
	struct tally t = { .vmm_pid = -1 };
	struct pollfd done = { .events = POLLIN };
	struct options o;
	cpu_set_t allowed;
	bool ended = false;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse(argc, argv, &o);
	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		rig_die(errno, "sched_getaffinity");
	if (CPU_COUNT(&allowed) != 1)
		rig_die(0, "start it pinned to one CPU (taskset -c CPU), not %d",
			CPU_COUNT(&allowed));
	t.cpu = sched_getcpu();
	if (sigaction(SIGILL, &sa, NULL) < 0)
		rig_die(errno, "sigaction SIGILL");
	/* readable once the process has ended: the wait between wakeups */
	done.fd = (int)syscall(SYS_pidfd_open, o.while_pid, 0);
	if (done.fd < 0)
		rig_die(errno, "pidfd_open %d", o.while_pid);
	/* until the VMM has ended, then once more: a leak outlives the last exit */
	while (!ended) {
		ended = poll(&done, 1, (int)o.interval_ms) > 0;
		/* a /proc walk costs: about twice a second, until every vCPU is found */
		if (!ended && t.n_vcpus < o.vcpus && t.wakeups % 25 == 0)
			find_vmm(&t, o.while_pid);
		if (count_world_switches(&t))
			t.rounds_after_switch++;
		read_all(&t, &o);
	}
	print_tally(&t, read_perf_user_access());
	return 0;
}
