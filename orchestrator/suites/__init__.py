"""Suites: what the rig checks in a booted host, one package each.

A suite is a subclass of `Suite` in a subpackage of this package, beside its
judging rules and the helpers only it uses (or in a module or package of a
directory named in $RIG_SUITE_PATH, for checks kept outside the rig). It
declares:
- `name`, its rig.yaml section `suites.<name>` as a frozen dataclass
  `Config` (defaults, types) plus `validate()` for ranges;
- `needs()`: what its target must offer (exact timing, CPUs, memory);
- `plan()`: its case ids, known before anything runs;
- `run(target, ids)`: runs the selected cases and yields `Case`s;
- optionally `host_files(rig, spec)` (files packed into the host initramfs)
  and `host_share(rig, spec)` (a directory the host mounts read-only over
  virtio-9p, mount tag = the suite's name, for what is too big to pack), and
  `prefetch(rig)` for kernel-independent downloads done during the first build;
- optionally `differs(a, b)`: how two kernels' outcomes of a case differ
  (default: their `outcome` data are unequal), and `verdicts_differ(a, b)`:
  whether their verdicts differ in a way that matters when the outcomes do
  not (default: any two verdicts);
- optionally `script(target, ids)`: the commands and reboots run() would send,
  for a target that only records them to run later without the rig (a LAVA
  job, orchestrator.lava); the default runs run() itself against it;
- optionally `command_for(case_id)`: a host shell script that reruns one case
  alone and prints its outcome as one line, `outcome_line(outcome)`, so that
  `orchestrator reproduce` can bundle it to run without the rig (default:
  the suite's cases cannot be rerun alone, said with a reason);
- optionally `start_guest_shell(target)`: starts in the host the guest the
  suite runs, its console on the host's, for `orchestrator shell --guest`.
Nothing else in the rig names a suite: adding one is adding a package (or,
for a host-shell check, one module).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from orchestrator import plugins
from orchestrator.errors import BadInput, InfraError
from orchestrator.targets import Capabilities, Console, Needs, Target
from orchestrator.verdicts import ERROR, Case

if TYPE_CHECKING:
    from orchestrator.config import KernelSpec, RigConfig

SUITE_PATH_ENV = "RIG_SUITE_PATH"

# fail(key, value, expected): raises BadInput naming rig.yaml, suites.<name>.<key>
Fail = Callable[[str, Any, str], NoReturn]


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
    """Every suite's section has `enabled`; suites add their own fields."""

    enabled: bool = True


class Suite:
    name: ClassVar[str]
    Config: ClassVar[type[SuiteConfig]] = SuiteConfig
    # order in a run, lowest first (cheap checks of the host before long ones)
    order: ClassVar[int] = 50
    # what a run adds to the planned ids, known only as the suite runs ("" for none)
    found_at_run_time: ClassVar[str] = ""

    def __init__(self, cfg: SuiteConfig) -> None:
        self.cfg = cfg

    @classmethod
    def validate(cls, cfg: SuiteConfig, fail: Fail) -> None:
        """Check values beyond their types; call fail(key, value, expected)."""

    def needs(self) -> Needs:
        return Needs()

    def adapt(self, caps: Capabilities) -> Suite:
        """This suite as it runs on a target the rig did not boot (an ssh host, whose
        capabilities are fixed): a copy that trades a preference for what caps offer,
        or self. Needs that remain unmet then skip the suite."""
        return self

    def plan(self) -> list[str]:
        raise NotImplementedError

    def host_files(self, rig: RigConfig, spec: KernelSpec) -> dict[str, Path]:
        """Files to pack into the host's initramfs for spec's kernel (archive path ->
        local file), built here if need be; called before the host boots."""
        return {}

    def prefetch(self, rig: RigConfig) -> None:
        """Fetch or build what the suite needs that depends on no kernel (downloads),
        beside the first kernel's compile; what it makes must be cached, and a later
        call of the same work must find it there."""

    def host_share(self, rig: RigConfig, spec: KernelSpec) -> Path | None:
        """A directory the host gets read-only (mount tag: the suite's name) for spec's
        kernel, built here if need be; None: no share. Needs.host_share asks for it."""
        return None

    def run(self, target: Target, ids: list[str]) -> Iterator[Case]:
        raise NotImplementedError

    def script(self, target: Target, ids: list[str]) -> None:
        """Send target the commands and reboots run(target, ids) would send. The target
        records them for a job that runs without the rig (orchestrator.lava) and answers
        every command with a failure and no output, so that the commands a suite reruns
        after a failure are recorded too. This default drives run() itself, which fits
        suites whose commands do not depend on earlier commands' output; others override it."""
        with contextlib.suppress(InfraError):
            for _ in self.run(target, ids):
                pass

    @classmethod
    def differs(cls, a: Case, b: Case) -> str | None:
        """How b's behaviour differs from a's on one case, or None if it does not."""
        if a.outcome == b.outcome:
            return None
        return f"{_brief(b.outcome)} vs {_brief(a.outcome)}"

    @classmethod
    def verdicts_differ(cls, a: Case, b: Case) -> bool:
        """Whether two kernels' verdicts on a case whose outcomes are equal say their
        behaviour differs (default: any two verdicts do)."""
        return a.verdict != b.verdict

    def start_guest_shell(self, target: Console) -> str:
        """Start, in target's booted host, the guest this suite runs, its console on
        target's console (`orchestrator shell --guest`); returns how to end the guest."""
        raise BadInput(f"suite {self.name} starts no guest in the host")

    @classmethod
    def has_guest_shell(cls) -> bool:
        return cls.start_guest_shell is not Suite.start_guest_shell

    def command_for(self, case_id: str) -> str:
        """A host script (busybox sh) that reruns case_id alone and prints
        `RIG-OUTCOME <outcome_line(outcome)>` with the outcome the rig would record."""
        raise BadInput(f"{case_id}: suite {self.name} has no command that reruns one case alone")

    # -- helpers for suite modules ---------------------------------------------

    def case(self, case_id: str, verdict: str, **fields: Any) -> Case:
        return Case(id=case_id, suite=self.name, verdict=verdict, **fields)

    def errors(self, ids: list[str], reason: str, details: str = "") -> Iterator[Case]:
        """An infrastructure error for each of ids (what ran did not report them)."""
        for case_id in ids:
            yield self.case(case_id, ERROR, reason=reason, outcome={"kind": "error"},
                            details={"output": details} if details else {})


OUTCOME_MARK = "RIG-OUTCOME"


def outcome_line(outcome: dict[str, Any]) -> str:
    """An outcome as a host script prints it: sorted key=value, JSON for non-strings."""
    return " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                    for k, v in sorted(outcome.items()))


def _brief(outcome: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in outcome.items())


_REGISTRY: dict[str, type[Suite]] | None = None


def registry() -> dict[str, type[Suite]]:
    """Every suite class by name, in run order."""
    global _REGISTRY
    if _REGISTRY is None:
        found = plugins.find(Suite, __name__, __path__, SUITE_PATH_ENV, "rig_suite_")
        _REGISTRY = {cls.name: cls for cls in sorted(found, key=lambda c: (c.order, c.name))}
    return _REGISTRY
