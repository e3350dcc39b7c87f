"""Timeouts per step (rig.yaml `timeouts:`), clamped to an optional job budget.

Every wait the rig makes (a build, a boot, a command in a host) takes its
limit from here: the step's own timeout, or what is left of the job's
budget if that is less. A step that finds the budget spent fails at once.
"""

from __future__ import annotations

import time

from orchestrator.config import TimeoutsConfig
from orchestrator.errors import InfraError


class Budget:
    def __init__(self, timeouts: TimeoutsConfig) -> None:
        self.timeouts = timeouts
        self.deadline = (time.monotonic() + timeouts.job) if timeouts.job else None

    def limit(self, step: str, requested: float | None = None) -> float:
        """Seconds step may take: `requested`, else its rig.yaml timeout, within the budget."""
        seconds = requested if requested is not None else getattr(self.timeouts, step)
        if self.deadline is None:
            return seconds
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise InfraError(f"the job budget of {self.timeouts.job:g}s is spent"
                             f" (timeouts.job); {step} not started")
        return min(seconds, left)
