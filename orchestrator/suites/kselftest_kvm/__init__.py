"""kselftest-kvm: the kernel's own KVM selftests, built from the tree under test.

Its build module builds tools/testing/selftests/kvm from the same
tree, commit and patches as the host kernel (cached by content); the
programs travel in the host's initramfs (see host_files). Each runs alone,
as the kselftest runner runs it: under a per-program timeout, exit 0 is a
pass, 4 (KSFT_SKIP) a skip, anything else a failure; a timeout, or a host
that panics or hangs, is an error. A failure is run again up to `reruns`
times; one that then passes is flaky, and reported so (never as a clean
pass). Verdicts then go through the series' expectations file
(its expect module): a known failure is a known-deviation.

Case ids (`orchestrator list`), one per program, named as in the Makefile:
  kselftest-kvm/<program>                 e.g. kselftest-kvm/arch_timer
and a variant's own run (kselftest-kvm/demand_paging_test/uffd-missing: -u MISSING),
except sbi_pmu_test, whose four tests (selected with its -d option) are
planned and run one by one, so one's failure cannot hide the others:
  kselftest-kvm/riscv/sbi_pmu_test/{basic,events,snapshot,overflow}
Results a program reports inside its output cannot all be known before it
runs (get-reg-list's configurations depend on the extensions KVM offers;
KTAP subtests on the program), so they are added as found, under the
program's id: kselftest-kvm/<program>/<KTAP test description>, and
kselftest-kvm/get-reg-list/<configuration> for each configuration
get-reg-list reports passed, skipped or failed.

Every attempt's output is kept in <run>/<kernel>/kselftest-kvm/<program>.log.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import ktap
from orchestrator.config import DATA_ROOT
from orchestrator.errors import InfraError
from orchestrator.expectations import series_of
from orchestrator.suites import Fail, Suite, SuiteConfig
from orchestrator.suites.kselftest_kvm import build as kselftest
from orchestrator.suites.kselftest_kvm import expect as kselftest_expect
from orchestrator.targets import Needs, Target
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP, Case

if TYPE_CHECKING:
    from orchestrator.config import KernelSpec, RigConfig

# Linux 6.12's TEST_GEN_PROGS_riscv (tools/testing/selftests/kvm/Makefile)
PROGRAMS = (
    "riscv/sbi_pmu_test", "riscv/ebreak_test", "arch_timer", "coalesced_io_test",
    "demand_paging_test", "dirty_log_test", "get-reg-list", "guest_print_test",
    "kvm_binary_stats_test", "kvm_create_max_vcpus", "kvm_page_table_test",
    "set_memory_region_test", "steal_time",
)
SBI_PMU = "riscv/sbi_pmu_test"
SBI_PMU_TESTS = ("basic", "events", "snapshot", "overflow")  # its -d names
# A second run of a program in another mode, planned beside its default run:
# demand_paging_test serving the guest's faults through userfaultfd.
# Every fault then goes through a user-space handler: 64 MB took 410-425 s emulated, so
# this run gets 8 MB (its -b comes after the program's own options and wins).
VARIANTS = {"demand_paging_test": {"uffd-missing": "-u MISSING -b 8M"}}
HOST_DIR = "usr/lib/kselftest-kvm"
KSFT_SKIP = 4
KILLED = 128 + 9  # status of a program busybox timeout killed with SIGKILL
# how long past its own timeout a program may keep the console before the host
# counts as hung
CONSOLE_GRACE = 60
# get-reg-list prints "<config>: PASS" per configuration, a skip as "1..0 # SKIP - <ext> not
# available, ..." (riscv) or "- <config>: <capability> not available" (the common code)
_GET_REG_PASS = re.compile(r"^([\w+-]+): PASS$", re.MULTILINE)
_GET_REG_SKIP = re.compile(r"^1\.\.0 # SKIP - (?:([\w+-]+): )?(([\w+-]+) not available.*)$",
                           re.MULTILINE)
_GET_REG_FAIL = re.compile(r"(\S+): There are \d+ missing registers; .*$", re.MULTILINE)
_ASSERT = re.compile(r"==== Test Assertion Failure ====\n(.*(?:\n.*){0,12})")
_STACK_FRAME = re.compile(r"^\s*\d+\s+0x[0-9a-f]+")


# Emulated, the programs that map 1 GB and dirty it page by page take minutes each
# (demand_paging_test about 270 s per run here). These options shrink their work, not
# what they check: a 64 MB test region (-b), 8 dirty-log iterations instead of 32 (-i).
# dirty_log_test faults its 1 GB in once per guest mode and log mode (about 20 s each):
# of the three guest modes a riscv host offers it runs the one with 52-bit guest
# physical addresses (the first mode it lists on 6.12; 7.3 lists 56-bit ones). That one is a
# cut in coverage, made for the default job's time (docs/speed.md).
# Options whose spelling differs between series are resolved in the host by
# images/initramfs/kselftest-run from the program's own -h: "-m first-supported" (a
# guest mode's ID is an enum index, which 7.x renumbered for riscv) and sbi_pmu_test's
# test selection (-d to disable the others up to 6.x, -t to run one in 7.x). Each
# command is then the same on every series and target, a LAVA job's included.
RUNNER = "kselftest-run"
RUNNER_SCRIPT = DATA_ROOT / "images" / "initramfs" / RUNNER
_CANNOT_RUN = re.compile(r"^rig-cannot-run: (.*)$", re.MULTILINE)
# an option a program does not know prints its usage and exits with KSFT_SKIP: the rig
# looks for getopt's complaint
_REFUSED = re.compile(r"^\S*: (?:invalid|unrecognized) option\b.*$", re.MULTILINE)
# arch_timer allows a timer interrupt 100 us of lateness by default, which a TCG host
# on a busy machine overruns (it failed 3 attempts in a row once): 10 ms (-e).
DEFAULT_ARGS = ("demand_paging_test -b 64M", "kvm_page_table_test -b 64M",
                "dirty_log_test -i 8 -m first-supported", "arch_timer -e 10000")


@dataclasses.dataclass(frozen=True)
class KselftestConfig(SuiteConfig):
    programs: tuple[str, ...] = PROGRAMS
    # "PROGRAM OPTIONS...": options added to every run of that program
    args: tuple[str, ...] = DEFAULT_ARGS
    timeout: float = 900.0  # seconds per program
    reruns: int = 2  # extra attempts after a failure
    memory_mb: int = 2048  # the 1 GB test regions of three programs need it
    aia: bool = True  # AIA host: KVM offers Sscofpmf (overflow) only with Ssaia


class KselftestKvm(Suite):
    name = "kselftest-kvm"
    Config = KselftestConfig
    order = 80
    found_at_run_time = ("get-reg-list's configurations (as the extensions KVM offers) and"
                         " each program's KTAP subtests, under the program's id")
    cfg: KselftestConfig

    def __init__(self, cfg: SuiteConfig) -> None:
        super().__init__(cfg)
        self._built: kselftest.BuiltSelftests | None = None

    @classmethod
    def validate(cls, cfg: KselftestConfig, fail: Fail) -> None:
        for i, program in enumerate(cfg.programs):
            if not re.fullmatch(r"[\w.+-]+(/[\w.+-]+)?", program):
                fail(f"programs[{i}]", program, "a program path as in the selftests Makefile")
        for i, entry in enumerate(cfg.args):
            program, _, options = entry.partition(" ")
            if program not in cfg.programs or not options.strip():
                fail(f"args[{i}]", entry, "'PROGRAM OPTIONS' for one of the programs")
        if not 1 <= cfg.timeout <= 24 * 3600:
            fail("timeout", cfg.timeout, "seconds, from 1 to 86400")
        if not 0 <= cfg.reruns <= 10:
            fail("reruns", cfg.reruns, "an integer from 0 to 10")
        if not 256 <= cfg.memory_mb <= 64 * 1024:
            fail("memory_mb", cfg.memory_mb, "MiB, from 256 to 65536")

    @classmethod
    def verdicts_differ(cls, a: Case, b: Case) -> bool:
        """A pass on one kernel against a pass after a failed attempt that the
        expectations list as flaky on the other does not tell the kernels apart: which
        kernel's attempt overran a wall-clock window (arch_timer) is chance on a loaded
        machine."""
        if {a.verdict, b.verdict} == {PASS, KNOWN_DEVIATION}:
            return not any(c.details.get("flaky") for c in (a, b))
        return a.verdict != b.verdict

    def needs(self) -> Needs:
        return Needs(memory_mb=self.cfg.memory_mb, aia=self.cfg.aia, one_tcg_thread=True)

    def plan(self) -> list[str]:
        ids = []
        for program in self.cfg.programs:
            if program == SBI_PMU:
                ids += [f"{self.name}/{SBI_PMU}/{t}" for t in SBI_PMU_TESTS]
            else:
                ids.append(f"{self.name}/{program}")
                ids += [f"{self.name}/{program}/{v}" for v in VARIANTS.get(program, {})]
        return ids

    def host_files(self, rig: RigConfig, spec: KernelSpec) -> dict[str, Path]:
        self._built = kselftest.build(rig, spec, timeout=rig.timeouts.build)
        return {f"{HOST_DIR}/{RUNNER}": RUNNER_SCRIPT,
                **{f"{HOST_DIR}/{p}": self._built.path(p) for p in self._built.programs}}

    # -- running -----------------------------------------------------------

    def invocation(self, case_id: str) -> tuple[str, str]:
        """(program, options) that run case_id through kselftest-run."""
        program, args = self._selection(case_id.removeprefix(f"{self.name}/"))
        extra = [e.partition(" ")[2] for e in self.cfg.args if e.partition(" ")[0] == program]
        return program, " ".join([*extra, args]).strip()

    @staticmethod
    def _selection(path: str) -> tuple[str, str]:
        """The program of a case and the options that select the case."""
        if path.startswith(f"{SBI_PMU}/"):
            test = path.rsplit("/", 1)[1]
            return SBI_PMU, f"--rig-test {test}/{','.join(SBI_PMU_TESTS)}"
        program, _, variant = path.rpartition("/")
        if variant in VARIANTS.get(program, {}):
            return program, VARIANTS[program][variant]
        return path, ""

    def run(self, target: Target, ids: list[str]) -> Iterator[Case]:
        if self._built is None:
            raise InfraError("kselftest-kvm: the selftests were not built for this host")
        release = target.run("uname -r").output.strip()
        expectations = kselftest_expect.load(series_of(release))
        log_dir = target.console_log.parent / self.name
        log_dir.mkdir(parents=True, exist_ok=True)
        for case_id in ids:
            program, args = self.invocation(case_id)
            if program in self._built.failed:
                yield self.case(case_id, ERROR, outcome={"kind": "error"},
                                reason=f"{program} did not build: {self._built.failed[program]}")
                continue
            if program not in self._built.programs:
                yield self.case(case_id, ERROR, outcome={"kind": "error"},
                                reason=f"{program} is not among the programs this tree's"
                                       f" selftests Makefile builds for riscv")
                continue
            log = log_dir / (program.replace("/", "-") + ".log")
            try:
                yield from self._run_case(target, case_id, program, args, log, expectations)
            except InfraError as exc:
                yield self.case(case_id, ERROR, outcome={"kind": "error"}, reason=exc.message,
                                log=_relative(log, target), details={"console": exc.details})
                target.reboot()  # the next program gets a fresh host

    def _run_case(self, target: Target, case_id: str, program: str, args: str, log: Path,
                  expectations: kselftest_expect.Expectations) -> Iterator[Case]:
        command = (f"cd /{HOST_DIR} && timeout -s KILL {self.cfg.timeout:g}"
                   f" ./{RUNNER} {program} {args}".rstrip() + " 2>&1")
        attempts: list[dict] = []
        output = ""
        unfit: re.Match[str] | None = None
        with log.open("a") as sink:
            for attempt in range(1 + self.cfg.reruns):
                sink.write(f"$ {command}   # {case_id}, attempt {attempt + 1}\n")
                sink.flush()
                done = target.run(command, timeout=self.cfg.timeout + CONSOLE_GRACE)
                output = done.output
                result = _result(done.status, done.seconds, self.cfg.timeout)
                sink.write(output + f"# exit status {done.status} after {done.seconds:.1f}s:"
                                    f" {result}\n\n")
                attempts.append({"status": done.status, "seconds": done.seconds,
                                 "result": result})
                # options that do not fit fail every attempt alike: no rerun
                unfit = _CANNOT_RUN.search(output) or _REFUSED.search(output)
                if result != FAIL or unfit:
                    break
        if unfit:  # the rig's options do not fit this tree's program: not the kernel's fault
            yield self.case(case_id, ERROR, outcome={"kind": "error"},
                            reason=f"{program} cannot run with the rig's options:"
                                   f" {unfit.group(0)[:200]}",
                            log=_relative(log, target), details={"command": command})
            return
        results = [a["result"] for a in attempts]
        detail = (f"after {self.cfg.timeout:g}s (suites.{self.name}.timeout)"
                  if results[-1] == "timeout" else _detail(results[-1], output))
        judged = kselftest_expect.judge(results, expectations.get(case_id), expectations.where,
                                        detail)
        yield self.case(
            case_id, judged.verdict, reason=judged.reason, rule=judged.rule,
            outcome={"kind": "kselftest", "result": results[-1]},
            expected="exit 0 (pass) or 4 (skip), within the timeout",
            duration=round(sum(a["seconds"] for a in attempts), 3),
            log=_relative(log, target),
            details={"command": command, "attempts": attempts, "flaky": judged.flaky,
                     "expectations": expectations.where})
        for sub_id, result, detail in _subresults(case_id, program, output):
            sub = kselftest_expect.judge([result], expectations.get(sub_id), expectations.where,
                                         detail)
            yield self.case(sub_id, sub.verdict, reason=sub.reason, rule=sub.rule,
                            outcome={"kind": "kselftest", "result": result},
                            expected="as reported by the program", log=_relative(log, target))


def _relative(log: Path, target: Target) -> str:
    """The log's path within the run directory (the parent of the kernel's directory)."""
    return str(log.relative_to(target.console_log.parent.parent))


def _result(status: int, seconds: float, timeout: float) -> str:
    if status == KILLED and seconds >= timeout - 1:
        return "timeout"
    return PASS if status == 0 else SKIP if status == KSFT_SKIP else FAIL


def _detail(result: str, output: str) -> str:
    """The program's own words for a skip or a failure."""
    document = ktap.parse(output)
    if result == SKIP and document.plan_directive == "SKIP":
        return document.plan_reason.removeprefix("- ").strip()
    if result == FAIL:
        found = _ASSERT.search(output)
        if found:  # "file:line: expression", pid/errno, then the message (stack frames left out)
            lines = [line.strip() for line in found.group(1).splitlines()
                     if line.strip() and not _STACK_FRAME.match(line)][:3]
        else:
            lines = [line.strip() for line in output.strip().splitlines()[-3:]]
        return " | ".join(line for line in lines if line)[:400]
    return ""


SUB_ID_MAX = 200
_KTAP_RESULTS = {"pass": PASS, "fail": FAIL, "skip": SKIP, "xfail": KNOWN_DEVIATION,
                 "todo": SKIP, "timeout": "timeout", "error": FAIL}


def _subresults(case_id: str, program: str, output: str) -> list[tuple[str, str, str]]:
    """(sub-case id, result, detail) for each result reported inside the output."""
    found: list[tuple[str, str, str]] = []
    if program == "get-reg-list":
        for match in _GET_REG_PASS.finditer(output):
            found.append((f"{case_id}/{match.group(1)}", PASS, ""))
        for match in _GET_REG_SKIP.finditer(output):
            config = match.group(1) or match.group(3)
            found.append((f"{case_id}/{config}", SKIP, match.group(2).strip()))
        for match in _GET_REG_FAIL.finditer(output):
            found.append((f"{case_id}/{match.group(1)}", FAIL, match.group(0).strip()))
        return found
    seen: set[str] = set()
    for result in ktap.parse(output).results:
        # a case id is one line of bounded length (results schema): the program's
        # description is foreign text
        name = re.sub(r"[\s\x00-\x1f\x7f]+", "_", result.description)[:SUB_ID_MAX] \
            or str(result.number)
        sub_id = f"{case_id}/{name}"
        if sub_id in seen:
            sub_id = f"{sub_id}#{result.number}"
        seen.add(sub_id)
        found.append((sub_id, _KTAP_RESULTS[result.verdict], result.reason))
    return found
