"""counters: KVM guests read cycle, time, instret and hpmcounter3 from VS and
VU mode under each guest SCOUNTEREN value, with and without the counters
configured through the SBI PMU; each read is judged by its expect module
(docs/counter-access.md).

Case ids: counters/<pmu|no-pmu>/<VS|VU>/<counter>/scounteren=<hex>
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

from orchestrator import expectations, guest
from orchestrator.errors import tail
from orchestrator.expectations import KvmExpectations
from orchestrator.suites import OUTCOME_MARK, Fail, Suite, SuiteConfig
from orchestrator.suites.counters import expect
from orchestrator.targets import Target
from orchestrator.verdicts import Case

PROGRAM = "counters"
# matched whole (fullmatch): a case id read back from a run is foreign input
_ID = re.compile(r"counters/(pmu|no-pmu)/(VS|VU)/(\w+)/scounteren=(0x[0-9a-f]+)", re.ASCII)
SCOUNTEREN_MAX = 0xFFFFFFFF  # a 32-bit CSR
MAX_VALUES = 16  # the VMM's parameter block holds this many


@dataclasses.dataclass(frozen=True)
class CountersConfig(SuiteConfig):
    # guest SCOUNTEREN values written before the reads
    scounteren: tuple[int, ...] = (0x0, 0x1, 0x2, 0x4, 0x7, 0xFFFFFFFF)
    # busy-loop iterations between a counter's two reads
    delay: int = 1000


class Counters(Suite):
    name = "counters"
    Config = CountersConfig
    order = 20
    cfg: CountersConfig

    @classmethod
    def validate(cls, cfg: CountersConfig, fail: Fail) -> None:
        for i, value in enumerate(cfg.scounteren):
            if not 0 <= value <= SCOUNTEREN_MAX:
                fail(f"scounteren[{i}]", value, f"a 32-bit value, 0 to {SCOUNTEREN_MAX:#x}")
        if len(set(cfg.scounteren)) > MAX_VALUES:
            fail("scounteren", list(cfg.scounteren), f"at most {MAX_VALUES} distinct values")
        if not 1 <= cfg.delay <= 10**9:
            fail("delay", cfg.delay, "an integer from 1 to 1000000000")

    @staticmethod
    def case_id(pmu: bool, mode: str, counter: str, scounteren: int) -> str:
        return f"counters/{'pmu' if pmu else 'no-pmu'}/{mode}/{counter}/scounteren={scounteren:#x}"

    def plan(self) -> list[str]:
        return [self.case_id(pmu, mode, counter, value)
                for pmu in (False, True) for value in dict.fromkeys(self.cfg.scounteren)
                for mode in expect.MODES for counter in expect.COUNTER_CSRS]

    def command_for(self, case_id: str) -> str:
        match = _ID.fullmatch(case_id)
        if not match:
            return super().command_for(case_id)
        pmu, mode, counter, value = match.groups()
        # the program's record of this read (guest-tests/README.md), reduced to outcome_of
        return "\n".join([
            f"{self._command(pmu == 'pmu', [int(value, 16)])} > /tmp/out",
            f"r=$(grep '\"kind\":\"counter\"' /tmp/out | grep '\"mode\":\"{mode}\",'"
            f" | grep '\"counter\":\"{counter}\",' | head -n 1)",
            'case "$r" in',
            f"""*'"outcome":"exception"'*) echo "{OUTCOME_MARK} cause=$(echo "$r" |"""
            """ sed -E 's/.*"cause":([0-9]+).*/\\1/') kind=exception" ;;""",
            f"""*'"outcome":"value"'*) echo "{OUTCOME_MARK} kind=value" ;;""",
            f'*) cat /tmp/out; echo "{OUTCOME_MARK} kind=missing" ;;',
            "esac"])

    def run(self, target: Target, ids: list[str]) -> Iterator[Case]:
        kvm = expectations.for_target(target)
        for pmu in (False, True):
            wanted = [i for i in ids if (m := _ID.fullmatch(i)) and (m.group(1) == "pmu") == pmu]
            if wanted:
                yield from self._run_program(target, pmu, wanted, kvm)

    def _command(self, pmu: bool, values: list[int]) -> str:
        flags = (f"--scounteren {','.join(f'{v:#x}' for v in values)} --delay {self.cfg.delay}"
                 + (" --pmu" if pmu else ""))
        return guest.command(PROGRAM, flags)

    def _run_program(self, target: Target, pmu: bool, ids: list[str],
                     kvm: tuple[KvmExpectations | None, str]) -> Iterator[Case]:
        values = list(dict.fromkeys(int(_ID.fullmatch(i).group(4), 16) for i in ids))
        result = target.run(self._command(pmu, values))
        share = round(result.seconds / len(ids), 3)  # one program reads them all
        reported = set()
        for record in guest.parse_records(result.output):
            if record.get("kind") != "counter":
                continue
            cid = self.case_id(pmu, record["mode"], record["counter"],
                               int(record["scounteren_written"], 16))
            if cid not in ids or cid in reported:
                continue
            reported.add(cid)
            judged = expect.judge(record, kvm[0])
            yield self.case(cid, judged.verdict, reason=judged.case_reason, rule=judged.rule,
                            outcome=expect.outcome_of(record), expected=judged.expected,
                            duration=share,
                            details={"observed": judged.observed, "record": record,
                                     "expectations": kvm[1]})
        missing = [i for i in ids if i not in reported]
        if missing:
            yield from self.errors(missing, f"'{result.command}' exited {result.status}"
                                            " before reporting this read", tail(result.output))
