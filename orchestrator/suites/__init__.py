"""Suites: what the rig checks in a booted host, one module each.

A suite is a subclass of `Suite` in a module of this package (or of a
directory named in $RIG_SUITE_PATH, for checks kept outside the rig). It
declares:
- `name`, its rig.yaml section `suites.<name>` as a frozen dataclass
  `Config` (defaults, types) plus `validate()` for ranges;
- `needs()`: what its target must offer (exact timing, CPUs, memory);
- `plan()`: its case ids, known before anything runs;
- `run(target, ids)`: runs the selected cases and yields `Case`s;
- optionally `differs(a, b)`: how two kernels' outcomes of a case differ
  (default: their `outcome` data are unequal).
Nothing else in the rig names a suite: adding one is adding a module.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from orchestrator.results import ERROR, Case
from orchestrator.targets import Needs, Target

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

    def __init__(self, cfg: SuiteConfig) -> None:
        self.cfg = cfg

    @classmethod
    def validate(cls, cfg: SuiteConfig, fail: Fail) -> None:
        """Check values beyond their types; call fail(key, value, expected)."""

    def needs(self) -> Needs:
        return Needs()

    def plan(self) -> list[str]:
        raise NotImplementedError

    def host_files(self, rig: RigConfig, spec: KernelSpec) -> dict[str, Path]:
        """Files to pack into the host's initramfs for spec's kernel (archive path ->
        local file), built here if need be; called before the host boots."""
        return {}

    def run(self, target: Target, ids: list[str]) -> Iterator[Case]:
        raise NotImplementedError

    @classmethod
    def differs(cls, a: Case, b: Case) -> str | None:
        """How b's behaviour differs from a's on one case, or None if it does not."""
        if a.outcome == b.outcome:
            return None
        return f"{_brief(b.outcome)} vs {_brief(a.outcome)}"

    # -- helpers for suite modules ---------------------------------------------

    def case(self, case_id: str, verdict: str, **fields: Any) -> Case:
        return Case(id=case_id, suite=self.name, verdict=verdict, **fields)

    def errors(self, ids: list[str], reason: str, details: str = "") -> Iterator[Case]:
        """An infrastructure error for each of ids (what ran did not report them)."""
        for case_id in ids:
            yield self.case(case_id, ERROR, reason=reason, outcome={"kind": "error"},
                            details={"output": details} if details else {})


def _brief(outcome: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in outcome.items())


def _modules() -> Iterator[Any]:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{__name__}.{info.name}")
    for directory in filter(None, os.environ.get(SUITE_PATH_ENV, "").split(os.pathsep)):
        for path in sorted(Path(directory).glob("*.py")):
            name = f"rig_suite_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            yield module


_REGISTRY: dict[str, type[Suite]] | None = None


def registry() -> dict[str, type[Suite]]:
    """Every suite class by name, in run order."""
    global _REGISTRY
    if _REGISTRY is None:
        found = [cls for module in _modules() for _, cls in inspect.getmembers(module)
                 if inspect.isclass(cls) and issubclass(cls, Suite) and cls is not Suite
                 and cls.__module__ == module.__name__]
        _REGISTRY = {cls.name: cls for cls in sorted(found, key=lambda c: (c.order, c.name))}
    return _REGISTRY


def suite_of(case_id: str) -> str:
    return case_id.split("/", 1)[0]
