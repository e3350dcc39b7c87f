"""Targets: a running host kernel that suites talk to, and the kinds of them.

A suite never knows how its host was started. It declares what it needs
(`Needs`), the runner hands it a `Target` that has it, and the suite runs
commands, moves files and reads the console through the protocol below.

Each kind of target is a plug-in: a `TargetKind` subclass in a module (or
package) of this package, or of a directory named in $RIG_TARGET_PATH, keyed
by the `type:` of rig.yaml's `targets:` entries. It owns its entry (parsing
and validating it), opening a target from it, and what that target offers
(its Capabilities). `qemu` boots the rig's kernels; `ssh` reaches a host
as it is. Nothing else in the rig names a kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from orchestrator import plugins

if TYPE_CHECKING:
    from orchestrator.budget import Budget
    from orchestrator.config import Reader, RigConfig

TARGET_PATH_ENV = "RIG_TARGET_PATH"


@dataclass(frozen=True)
class CommandResult:
    command: str
    status: int
    output: str
    seconds: float


@dataclass(frozen=True)
class Capabilities:
    """What a target offers; suites ask for these through Needs."""

    exact_timing: bool  # instruction-exact clock (QEMU -icount shift=0)
    cpus: int
    memory_mb: int
    can_reboot: bool
    aia: bool = False  # AIA interrupt controllers (APLIC + IMSIC) and the Ssaia extension
    host_share: bool = False  # a suite's directory of the rig's machine, mounted over virtio-9p


@dataclass(frozen=True)
class Needs:
    """What a suite needs from its target. Suites with equal needs share one boot."""

    exact_timing: bool = False
    cpus: int | None = None  # exactly this many CPUs; None: the target's own
    min_cpus: int = 1
    memory_mb: int | None = None  # at least this much; None: the target's own
    aia: bool = False  # an AIA machine (KVM offers guests Sscofpmf only on an Ssaia host)
    # runs alone, with nothing else on the machine: it measures wall-clock time, or its
    # host wants every core (a guest's vCPUs each busy on a host vCPU)
    exclusive: bool = False
    host_share: bool = False  # the suite's host_share() directory, mounted in the host
    # Emulated hosts only, not a capability: the host's vCPUs on one TCG thread. Work that
    # waits on other CPUs (memslot updates, userfaultfd) then costs no host scheduling when
    # another host shares the cores (docs/speed.md).
    one_tcg_thread: bool = False

    def unmet(self, caps: Capabilities) -> str | None:
        """Why caps cannot serve these needs, or None."""
        if self.exact_timing and not caps.exact_timing:
            return "needs exact instruction timing (QEMU icount), which this target lacks"
        if self.cpus is not None and caps.cpus != self.cpus:
            return f"needs exactly {self.cpus} CPU(s), the target has {caps.cpus}"
        if caps.cpus < self.min_cpus:
            return f"needs at least {self.min_cpus} CPUs, the target has {caps.cpus}"
        if self.memory_mb is not None and caps.memory_mb < self.memory_mb:
            return f"needs {self.memory_mb} MB of memory, the target has {caps.memory_mb}"
        if self.aia and not caps.aia:
            return "needs AIA (APLIC + IMSIC, Ssaia), which this target lacks"
        if self.host_share and not caps.host_share:
            return "needs a directory of the rig's machine shared into the host (virtio-9p)"
        return None


class Target(Protocol):
    """A booted host kernel. Errors are orchestrator.errors.InfraError."""

    label: str
    capabilities: Capabilities

    @property
    def console_log(self) -> Path:
        """Everything the host printed on its console during this boot."""
        ...

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run a shell command in the host; timeout None: the rig's command timeout."""
        ...

    def put(self, local: Path, remote: str) -> None:
        """Copy a local file into the host (mode kept)."""
        ...

    def get(self, remote: str, local: Path) -> None:
        """Copy a file out of the host."""
        ...

    def reboot(self) -> float:
        """Start the host afresh (needs can_reboot); seconds until it is ready."""
        ...

    def close(self) -> None:
        """Stop the host (QEMU is killed); safe to call twice."""
        ...


class Console(Target, Protocol):
    """A target whose console a person can take over (`orchestrator shell`)."""

    def send(self, command: str) -> int:
        """Start a shell script in the host without waiting for it; its id."""
        ...

    def interact(self) -> None:
        """Hand the console to the user until they leave."""
        ...


class StandingTarget(Target, Protocol):
    """A host the rig does not boot (`orchestrator run --target NAME`): it is connected
    to, described in manifest.json, and runs the plan as it is."""

    @property
    def running(self) -> bool:
        """Connected (False before connect() and after a lost connection)."""
        ...

    @property
    def address(self) -> str:
        """Where the host is, for people (user@host:port, a serial port, ...)."""
        ...

    def connect(self) -> float:
        """Reach the host; seconds it took. Sets capabilities to what the host offers."""
        ...

    def about(self) -> dict[str, Any]:
        """What manifest.json says of the target itself (its `type` first)."""
        ...

    def describe(self, out_dir: Path) -> dict[str, Any]:
        """What the host is: at least `uname` and `machine` (uname -m)."""
        ...


class TargetKind:
    """One kind of target, named by `type` in rig.yaml's `targets:` entries.

    entry(): the parsed, validated entry (a frozen dataclass with a `name`), through
    reader (orchestrator.config.Reader: errors name rig.yaml and the key); open():
    a StandingTarget for the entry, not yet connected; `session`: what its log
    (console_log) holds, for people."""

    type: ClassVar[str]
    session: ClassVar[str] = "console"
    # run with --target NAME (False: the rig's QEMU, which boots the kernels it builds)
    standing: ClassVar[bool] = True

    @classmethod
    def entry(cls, reader: Reader, name: str, raw: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def open(cls, entry: Any, log_dir: Path, budget: Budget, rig: RigConfig) -> StandingTarget:
        raise NotImplementedError(f"a {cls.type} target is not run with --target")

    @classmethod
    def session_log(cls, entry: Any, log_dir: Path) -> Path:
        """Where the target's log of a run goes (its console_log)."""
        return session_log(entry, log_dir)


def session_log(entry: Any, log_dir: Path) -> Path:
    """A standing target's log in log_dir: <name>.<type>.log."""
    return log_dir / f"{entry.name}.{entry.type}.log"


_KINDS: dict[str, type[TargetKind]] | None = None


def kinds() -> dict[str, type[TargetKind]]:
    """Every target kind by its rig.yaml `type`."""
    global _KINDS
    if _KINDS is None:
        found = plugins.find(TargetKind, __name__, __path__, TARGET_PATH_ENV, "rig_target_")
        _KINDS = {cls.type: cls for cls in found}
    return _KINDS


def open_target(entry: Any, log_dir: Path, budget: Budget, rig: RigConfig) -> Any:
    """The target of entry's kind (its `type`), not yet booted or connected: a QemuTarget
    for a targets.qemu.QemuBoot, a StandingTarget for a rig.yaml entry."""
    return kinds()[entry.type].open(entry, log_dir, budget, rig)
