"""The one path from a suite's planned cases to recorded cases (orchestrator.execution):
stamping, skips for unmet needs, errors for exactly the cases an infrastructure error
prevented, rerun commands for a kernel and for an ssh target."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from orchestrator import config
from orchestrator.errors import InfraError
from orchestrator.execution import Execution, machine_groups, rerun_command
from orchestrator.results import RunRecord
from orchestrator.suites import Suite, SuiteConfig
from orchestrator.suites.kvm_host import KvmHost
from orchestrator.suites.latency import Latency, LatencyConfig
from orchestrator.targets import Capabilities, CommandResult, Needs
from orchestrator.verdicts import ERROR, FAIL, PASS, SKIP, Case

REPO = Path(__file__).resolve().parents[2]


class Three(Suite):
    """Reports a, fails b, then the target breaks before c."""

    name = "three"

    def plan(self) -> list[str]:
        return ["three/a", "three/b", "three/c"]

    def run(self, target, ids: list[str]) -> Iterator[Case]:
        yield self.case("three/a", PASS)
        yield self.case("three/b", FAIL, reason="wrong")
        raise InfraError("the host panicked", details="Kernel panic")


class Needy(Three):
    name = "needy"

    def needs(self) -> Needs:
        return Needs(exact_timing=True)


class FakeTarget:
    label = "k1 boot"

    def __init__(self, log: Path) -> None:
        self.capabilities = Capabilities(exact_timing=False, cpus=1, memory_mb=512,
                                         can_reboot=True)
        self.console_log = log

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        return CommandResult(command, 0, "", 0.0)


def execution(tmp_path: Path, on_target: bool = False) -> Execution:
    rig = config.load(REPO / "rig.yaml")
    record = RunRecord(tmp_path / "results")
    return Execution(rig, record, "k1", {"three": Three(SuiteConfig()).plan(),
                                        "needy": Needy(SuiteConfig()).plan()}, on_target)


def test_an_infrastructure_error_is_an_error_for_exactly_the_cases_it_prevented(tmp_path):
    run = execution(tmp_path)
    target = FakeTarget(run.record.dir / "k1" / "boot.console.log")
    assert run.suite(Three(SuiteConfig()), target, target.label)
    cases = {c.id: c for c in run.record.cases}
    assert [cases[i].verdict for i in Three(SuiteConfig()).plan()] == [PASS, FAIL, ERROR]
    assert cases["three/c"].reason == "the host panicked"
    assert cases["three/c"].details == {"output": "Kernel panic"}
    assert {c.kernel for c in cases.values()} == {"k1"}
    assert {c.log for c in cases.values()} == {"k1/boot.console.log"}
    assert cases["three/a"].rerun == ""
    assert cases["three/b"].rerun == "orchestrator run --kernel k1 --only three/b"


def test_unmet_needs_skip_every_case_and_a_target_rerun_names_the_target(tmp_path):
    run = execution(tmp_path, on_target=True)
    target = FakeTarget(tmp_path / "console.log")
    assert not run.suite(Needy(SuiteConfig()), target, target.label)
    assert {(c.verdict, c.reason) for c in run.record.cases} == {
        (SKIP, Needs(exact_timing=True).unmet(target.capabilities))}
    run.fail([Three(SuiteConfig())], InfraError("cannot connect"))
    errors = [c for c in run.record.cases if c.verdict == ERROR]
    assert len(errors) == 3
    assert errors[0].rerun == "orchestrator run --target k1 --only three/a"


def test_suites_share_a_boot_while_their_needs_give_one_machine():
    rig = config.load(REPO / "rig.yaml")
    suites = [KvmHost(SuiteConfig()), Three(SuiteConfig()),
              Latency(LatencyConfig(mode="wallclock"))]
    groups = machine_groups(suites, rig.qemu)
    assert [([s.name for s in g.suites], g.name, g.exclusive) for g in groups] == [
        (["kvm-host", "three"], "boot", False), (["latency"], "latency", True)]
    assert rerun_command(rig, "x/*", ["a", "b"]) == (
        "orchestrator run --kernel a --kernel b --only 'x/*'")
