"""linux-guest: a real Linux guest under a real VMM in each host, reading the
counters from its user space.

For each host kernel.perf_user_access value, the host starts Debian's
riscv64 QEMU with `-accel kvm -cpu host -M virt` on the guest kernel and
initramfs (its guestvm module, shared into the host over virtio-9p). The
guest's /init runs linux-counters, which for each guest perf_user_access
value reads cycle, time and instret directly and cycles and instructions
through perf_event_open + mmap, hopping between the guest's vCPUs, while
the host moves the VMM's threads between its CPUs. Each read is judged by
its expect module.

With `migrate`, the host also looks from its own side (host_readers): one
reader per host CPU reads the counters beside the VMM's moving vCPU threads
for as long as the guest runs, judged against the host's perf_user_access as
suite isolation judges its VMM's probes.

The host keeps the guest's console in a file and hands it over at the end
(results/<run>/<kernel>/linux-guest-host-pua=<h>.console.log): a guest panic
printed on the host console would read as the host's own.

Case ids: linux-guest/host-pua=<h>/guest-pua=<g>/<direct|perf>/<counter>
          linux-guest/host-pua=<h>/host-readers/<direct|perf>   (with migrate)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

from orchestrator import expectations, guest
from orchestrator.config import KernelSpec, RigConfig
from orchestrator.errors import InfraError, tail
from orchestrator.expectations import KvmExpectations
from orchestrator.suites import Fail, Suite, SuiteConfig
from orchestrator.suites.linux_guest import expect as rules
from orchestrator.suites.linux_guest import guestvm, host_readers, vmm
from orchestrator.targets import Console, Needs, Target
from orchestrator.verdicts import Case

MOUNT = "/mnt/linux-guest"
GUEST_CPUS = 2
GUEST_MEMORY = "128M"
_ID = re.compile(r"linux-guest/host-pua=(\d)/guest-pua=(\d)/(direct|perf)/(\w+)", re.ASCII)
_HOST_ID = re.compile(r"linux-guest/host-pua=(\d)/host-readers/(direct|perf)", re.ASCII)
_RUN = re.compile(r"^RIG-GUEST-RUN (.*)$", re.MULTILINE)
# what the host script exits with before the guest runs
SCRIPT_ERRORS = {90: "cannot mount the guest share (virtio-9p)",
                 91: "cannot set the host's kernel.perf_user_access"}


@dataclasses.dataclass(frozen=True)
class LinuxGuestConfig(SuiteConfig):
    host_perf_user_access: tuple[int, ...] = (0, 1, 2)   # one guest boot per value
    guest_perf_user_access: tuple[int, ...] = (0, 1, 2)  # set in turn inside each guest
    hops: int = 200          # reads per probe while the process moves between vCPUs
    # the host moves the VMM's threads between its CPUs, and host readers beside them check
    # host user space (the host-readers cases)
    migrate: bool = False
    timeout: float = 300.0   # seconds per guest run (VMM start to power-off)
    # an AIA host: KVM offers guests Sscofpmf only then, and without it the guest's
    # perf cannot exclude the kernel (PERF_PMU_CAP_NO_EXCLUDE: EINVAL)
    aia: bool = True


# Mounted, the share is read once whole (under 1 s): the loader and QEMU then page the VMM
# in from the host's page cache. Paged in from the 9p mount itself, with another host on
# the cores, the first guest run of a boot was 9-30 s slower than the next (docs/speed.md).
MOUNT_SCRIPT = f"""mkdir -p {MOUNT}
grep -q ' {MOUNT} 9p ' /proc/mounts || {{ mount -t 9p \\
    -o trans=virtio,version=9p2000.L,cache=loose,msize=262144,ro linux-guest {MOUNT} &&
    find {MOUNT} -type f -exec cat {{}} + >/dev/null; }}"""


def vmm_command(kernel_args: str, console: str) -> str:
    """The host command line that boots the guest; console: QEMU's console options."""
    # named vCPU threads ("CPU <n>/KVM"): the host readers find them by name
    return (f"{vmm.command(MOUNT + '/vmm')} -accel kvm -cpu host -M virt"
            " -name linux-guest,debug-threads=on"
            f" -smp {GUEST_CPUS} -m {GUEST_MEMORY} -no-reboot -kernel {MOUNT}/Image"
            f" -initrd {MOUNT}/initramfs.cpio -append '{kernel_args}' {console}")


def host_script(cfg: LinuxGuestConfig, host_pua: int, kernel_args: str,
                readers: bool = False) -> str:
    """The host's part: mount the share, set the host policy, run the VMM with the
    guest console in a file, move its threads about (beside the host readers, if
    readers), report one RIG-GUEST-RUN line and the readers' lines."""
    log = f"/tmp/linux-guest-{host_pua}.log"
    migrate = "1" if cfg.migrate else ""
    console = f"-display none -monitor none -serial file:{log}"
    return f"""
{MOUNT_SCRIPT} || exit 90
echo {host_pua} > /proc/sys/kernel/perf_user_access || exit 91
: > {log}
start=$(cut -d' ' -f1 /proc/uptime)
timeout -s KILL {cfg.timeout:g} {vmm_command(kernel_args, console)} \\
    </dev/null >/tmp/linux-guest-vmm.out 2>&1 &
vmm=$!
{host_readers.start_script(GUEST_CPUS) if readers else "readers="}
ready=; moves=0; i=0
while kill -0 $vmm 2>/dev/null; do
    [ -z "$ready" ] && grep -q RIG-GUEST-READY {log} && ready=$(cut -d' ' -f1 /proc/uptime)
    if [ -n "$ready" ] && [ -n "{migrate}" ]; then
        for task in /proc/$vmm/task/*; do
            taskset -p -c $((i % $(nproc))) "${{task##*/}}" >/dev/null 2>&1 \\
                && moves=$((moves + 1))
        done
    fi
    i=$((i + 1))
    sleep 0.1
done
wait $vmm
status=$?
end=$(cut -d' ' -f1 /proc/uptime)
[ -n "$readers" ] && wait $readers
echo "RIG-GUEST-RUN status=$status start=$start ready=${{ready:-none}} end=$end moves=$moves \
readers_end=$(cut -d' ' -f1 /proc/uptime) cpus=$(nproc)"
[ -n "$readers" ] && cat /tmp/linux-guest-readers-*.out
tail -n 20 /tmp/linux-guest-vmm.out
"""


SHELL_KERNEL_ARGS = "console=ttyS0 panic=-1 quiet rig.shell"


class LinuxGuest(Suite):
    name = "linux-guest"
    Config = LinuxGuestConfig
    order = 40
    cfg: LinuxGuestConfig

    @classmethod
    def validate(cls, cfg: LinuxGuestConfig, fail: Fail) -> None:
        for key in ("host_perf_user_access", "guest_perf_user_access"):
            values = getattr(cfg, key)
            if not values:
                fail(key, list(values), "a non-empty list of 0, 1 and 2")
            for i, value in enumerate(values):
                if value not in rules.PERF_USER_ACCESS:
                    fail(f"{key}[{i}]", value, "0, 1 or 2")
        if not 0 <= cfg.hops <= 100000:
            fail("hops", cfg.hops, "an integer from 0 to 100000")
        if not 10 <= cfg.timeout <= 86400:
            fail("timeout", cfg.timeout, "seconds from 10 to 86400")

    def needs(self) -> Needs:
        # Alone, a host runs the three guests in about 15 s; beside another kernel's host
        # (both emulated, each wanting both cores) in 40-43 s.
        return Needs(min_cpus=2 if self.cfg.migrate else 1, aia=self.cfg.aia, host_share=True,
                     exclusive=True)

    def prefetch(self, rig: RigConfig) -> None:
        vmm.tree(rig.cache_dir)

    def host_share(self, rig: RigConfig, spec: KernelSpec) -> Path | None:
        return guestvm.share(rig, spec)

    def start_guest_shell(self, target: Console) -> str:
        target.run(MOUNT_SCRIPT)
        target.send(vmm_command(SHELL_KERNEL_ARGS, "-nographic"))
        return "'poweroff -f' ends the guest"

    @staticmethod
    def case_id(host_pua: int, guest_pua: int, method: str, counter: str) -> str:
        return f"linux-guest/host-pua={host_pua}/guest-pua={guest_pua}/{method}/{counter}"

    @staticmethod
    def host_case_id(host_pua: int, check: str) -> str:
        return f"linux-guest/host-pua={host_pua}/host-readers/{check}"

    def plan(self) -> list[str]:
        ids = []
        for h in dict.fromkeys(self.cfg.host_perf_user_access):
            ids += [self.case_id(h, g, method, counter)
                    for g in dict.fromkeys(self.cfg.guest_perf_user_access)
                    for method, counters in (("direct", rules.DIRECT_COUNTERS),
                                             ("perf", rules.PERF_COUNTERS))
                    for counter in counters]
            if self.cfg.migrate:
                ids += [self.host_case_id(h, check) for check in host_readers.CHECKS]
        return ids

    def run(self, target: Target, ids: list[str]) -> Iterator[Case]:
        kvm = expectations.for_target(target)  # the host's KVM is what the guest meets
        for host_pua in dict.fromkeys(self.cfg.host_perf_user_access):
            wanted = [i for i in ids if (m := _ID.fullmatch(i) or _HOST_ID.fullmatch(i))
                      and int(m.group(1)) == host_pua]
            if wanted:
                yield from self._guest_run(target, host_pua, wanted, kvm)

    def _guest_run(self, target: Target, host_pua: int, ids: list[str],
                   kvm: tuple[KvmExpectations | None, str]) -> Iterator[Case]:
        # every guest value when only host-reader cases are asked for: the guest still
        # runs its probes, its SCOUNTEREN moving as they change the guest's policy
        guest_values = sorted({int(m.group(2)) for m in map(_ID.fullmatch, ids) if m}
                              or set(self.cfg.guest_perf_user_access))
        kernel_args = (f"console=ttyS0 panic=-1 quiet rig.perf-user-access="
                       f"{','.join(map(str, guest_values))} rig.hops={self.cfg.hops}")
        host_ids = [i for i in ids if _HOST_ID.fullmatch(i)]
        result = target.run(host_script(self.cfg, host_pua, kernel_args, bool(host_ids)),
                            timeout=self.cfg.timeout + 60)
        if result.status in SCRIPT_ERRORS:
            yield from self.errors(ids, SCRIPT_ERRORS[result.status], tail(result.output))
            return
        console = target.console_log.parent / f"{self.name}-host-pua={host_pua}.console.log"
        try:
            target.get(f"/tmp/linux-guest-{host_pua}.log", console)
        except InfraError as exc:
            yield from self.errors(ids, f"cannot fetch the guest console: {exc.message}")
            return
        guest_console = console.read_bytes().decode(errors="replace").replace("\r", "")
        found = _RUN.search(result.output)
        run = dict(kv.split("=", 1) for kv in found.group(1).split()) if found else {}
        details = {"guest_console": tail(guest_console), "vmm": run,
                   "guest_boot_seconds": _boot_seconds(run), "expectations": kvm[1]}
        share = round(result.seconds / len(ids), 3)
        yield from self._judged(host_pua, [i for i in ids if i not in host_ids],
                                guest_console, run, details, kvm[0], share)
        if host_ids:
            yield from self._host_judged(host_pua, host_ids, result.output, run, share)

    def _host_judged(self, host_pua: int, ids: list[str], output: str,
                     run: dict[str, str], share: float) -> Iterator[Case]:
        """share: each case's part of the guest run that read them all."""
        readers = host_readers.records(output)
        missing = host_readers.missing_evidence(readers, int(run.get("cpus", 0)), GUEST_CPUS)
        if missing:
            yield from self.errors(ids, "the host readers did not see what the check needs: "
                                        + "; ".join(missing), tail(output))
            return
        reader_details = {"world_switches": host_readers.by_cpu(readers, "world_switches"),
                          "reader_cpu_us": host_readers.by_cpu(readers, "cpu_us"),
                          "readers": readers, "vmm": run}
        for cid in ids:
            judged, outcome = host_readers.judged(_HOST_ID.fullmatch(cid).group(2), readers,
                                                  host_pua)
            yield self.case(cid, judged.verdict, reason=judged.case_reason, rule=judged.rule,
                            outcome=outcome, expected=judged.expected, duration=share,
                            details={**reader_details, "observed": judged.observed})

    def _judged(self, host_pua: int, ids: list[str], console: str, run: dict[str, str],
                details: dict, kvm: KvmExpectations | None,
                share: float = 0.0) -> Iterator[Case]:
        """share: each case's part of the guest run that read them all."""
        records = guest.parse_records(console)
        start = next((r for r in records if r.get("kind") == "start"), {})
        cpus = int(start.get("cpus", GUEST_CPUS))
        reported = set()
        for record in records:
            if record.get("kind") != "read":
                continue
            cid = self.case_id(host_pua, record["perf_user_access"],
                               record["method"], record["counter"])
            if cid not in ids or cid in reported:
                continue
            reported.add(cid)
            judged = rules.judge(record, cpus, kvm)
            yield self.case(cid, judged.verdict, reason=judged.case_reason, rule=judged.rule,
                            outcome=rules.outcome_of(record), expected=judged.expected,
                            duration=share,
                            details={**details, "observed": judged.observed, "record": record})
        missing = [i for i in ids if i not in reported]
        if missing:
            yield from self.errors(missing, _why_missing(console, run),
                                   details["guest_console"])


def _boot_seconds(run: dict[str, str]) -> float | None:
    """QEMU start in the host to the guest's /init, as the host's clock saw it."""
    try:
        return round(float(run["ready"]) - float(run["start"]), 2)
    except (KeyError, ValueError):
        return None


def _why_missing(console: str, run: dict[str, str]) -> str:
    if not run:
        return "the host script did not report the guest run"
    if run.get("status") == "137":
        return "the guest did not finish in time (the VMM was killed)"
    if "Kernel panic" in console:
        return "the guest kernel panicked: " + next(
            line for line in console.splitlines() if "Kernel panic" in line).strip()
    if run.get("ready") == "none":
        # with `quiet` (5 s faster) a guest that hangs early prints nothing
        return (f"the guest never reached user space (VMM exit status {run.get('status')})"
                + ("; its console is empty" if not console.strip() else ""))
    return f"the guest stopped before reporting this read (VMM exit status {run.get('status')})"

