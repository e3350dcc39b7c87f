"""Targets: a running host kernel that suites talk to.

A suite never knows how its host was started. It declares what it needs
(`Needs`), the runner hands it a `Target` that has it, and the suite runs
commands, moves files and reads the console through the protocol below.
`targets.qemu` boots the rig's kernels under QEMU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


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
