"""The host's side of linux-guest: what host user space could read while the
guest ran, beside the VMM's vCPU threads.

While each guest runs, the host runs guest-tests' host-readers, one per host
CPU, pinned to it (`taskset -c`), until the VMM has ended, while the host
script moves the VMM's threads from CPU to CPU: so every reader shares its
CPU, in turn, with vCPU threads that leave and re-enter the guest. A host
kernel that leaves the guest's SCOUNTEREN live after a world switch lets
host user space read what its own kernel.perf_user_access forbids (or stops
it reading what it allows) until something rewrites the CSR.

Each reader wakes every 20 ms and reads cycle, time and instret
directly (SIGILL caught, no perf event of its own open: its own event would
grant the access), and now and then cycles and instructions through a
perf_event mmap user page. The direct reads are judged exactly as suite
isolation judges its VMM's probes (isolation.judge_host_policy against
isolation.host_policy), the perf reads by the documented perf_user_access
rules linux-guest's own expect module applies in the guest. In the host no
KVM deviation applies: these are the host kernel's own counters, not ones KVM
emulates, so isolation's rules name none and neither do these.

The evidence (missing_evidence: what is not there makes errors, not passes):
a reader on every host CPU, each having found the VMM's vCPUs and counted
at least MIN_WORLD_SWITCHES of their exits on its own CPU (from each vCPU's
KVM `exits` statistic, attributed to a CPU when the vCPU thread was found on
it at both ends of a reader's interval: a lower bound), and each having made
perf reads.

Case ids: linux-guest/host-pua=<h>/host-readers/<direct|perf>
"""

from __future__ import annotations

from typing import Any

from orchestrator import guest
from orchestrator.suites.isolation import host_policy, judge_host_policy
from orchestrator.suites.linux_guest import expect
from orchestrator.verdicts import FAIL, PASS, Judgement

PROGRAM = "host-readers"
CHECKS = ("direct", "perf")
# A Linux guest exits thousands of times a second run (timer, SBI IPIs, wfi); a reader
# that saw fewer beside it did not share its CPU with the guest long enough to count.
MIN_WORLD_SWITCHES = 1000


def start_script(vcpus: int) -> str:
    """Shell lines that start one reader per host CPU, pinned there, for the VMM $vmm;
    their pids are left in $readers, their output in /tmp/linux-guest-readers-<cpu>.out."""
    program = guest.command(PROGRAM, f"--while-pid $vmm --vcpus {vcpus}")
    return f"""readers=; cpu=0
while [ $cpu -lt $(nproc) ]; do
    taskset -c $cpu {program} >/tmp/linux-guest-readers-$cpu.out 2>&1 &
    readers="$readers $!"; cpu=$((cpu + 1))
done"""


def records(output: str) -> list[dict[str, Any]]:
    return [r for r in guest.parse_records(output) if r.get("kind") == PROGRAM]


def by_cpu(readers: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """One field of each reader's line, by its CPU: `world_switches`, the vCPU exits
    it counted there; `cpu_us`, the CPU time it took from the VMM's threads."""
    return {f"cpu{r['cpu']}": r.get(field) for r in readers}


def missing_evidence(readers: list[dict[str, Any]], cpus: int, vcpus: int) -> list[str]:
    """What the readers should have seen but did not (module docstring)."""
    missing = []
    seen_cpus = sorted(r["cpu"] for r in readers)
    if not readers:
        return ["no reader reported"]
    if seen_cpus != list(range(cpus)):
        missing.append(f"readers reported for CPUs {seen_cpus}, not each of the host's {cpus}")
    for r in readers:
        where = f"the reader on CPU {r['cpu']}"
        if len(r["vcpus"]) != vcpus:
            missing.append(f"{where} found {len(r['vcpus'])} of the VMM's {vcpus} vCPUs")
        elif r["world_switches"] < MIN_WORLD_SWITCHES:
            missing.append(f"{where} counted {r['world_switches']} world switches on its CPU,"
                           f" fewer than {MIN_WORLD_SWITCHES}")
        if not all(sum(r["perf"][event].values()) for event in expect.PERF_COUNTERS):
            missing.append(f"{where} made no perf read")
    return missing


def judge_direct(readers: list[dict[str, Any]], host_pua: int) -> tuple[Judgement, dict]:
    """All readers' direct reads against the host policy, as isolation judges its VMM's."""
    probes = {counter: {"ok": sum(r["direct"][counter]["ok"] for r in readers),
                        "sigill": sum(r["direct"][counter]["sigill"] for r in readers)}
              for counter in readers[0]["direct"]}
    policy = host_policy(host_pua)
    verdict, outcome, reason = judge_host_policy({"host_probe": probes}, policy,
                                                 when="beside the running guest")
    seen = ", ".join(f"{c} {p['ok']} read/{p['sigill']} SIGILL" for c, p in probes.items())
    return Judgement(verdict, f"host user space reads only what policy {policy:#x} allows",
                     seen, reason, "host-policy"), outcome


def _kind(counts: dict[str, int]) -> str:
    kinds = [k for k, n in counts.items() if n]
    return kinds[0] if len(kinds) == 1 else "mixed" if kinds else "none"


def judge_perf(readers: list[dict[str, Any]], host_pua: int) -> tuple[Judgement, dict]:
    """All readers' perf user-page reads against the documented perf_user_access rules."""
    outcome: dict[str, str] = {"kind": "host-perf"}
    seen, broken, rules = [], [], []
    for event in expect.PERF_COUNTERS:
        counts = {k: sum(r["perf"][event][k] for r in readers) for k in readers[0]["perf"][event]}
        want = expect.expected("perf", event, host_pua, None)
        outcome[event] = _kind(counts)
        seen.append(f"{event} " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
        wrong = sum(n for k, n in counts.items() if k != want.outcome)
        if wrong:
            broken.append(f"{event}: {wrong} of {sum(counts.values())} reads were not"
                          f" '{want.outcome}' ({want.why})")
            rules.append(want.rule)
    expected = ", ".join(f"{e} {expect.expected('perf', e, host_pua, None).outcome}"
                         for e in expect.PERF_COUNTERS)
    if broken:
        return Judgement(FAIL, expected, "; ".join(seen), "; ".join(broken), rules[0]), outcome
    # the host's own rules: no KVM deviation applies to host user space (kvm None)
    rule = expect.expected("perf", expect.PERF_COUNTERS[0], host_pua, None).rule
    return Judgement(PASS, expected, "; ".join(seen), "", rule), outcome


def judged(check: str, readers: list[dict[str, Any]], host_pua: int) -> tuple[Judgement, dict]:
    return (judge_direct if check == "direct" else judge_perf)(readers, host_pua)
