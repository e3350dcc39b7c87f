"""Elapsed-time formatting on progress lines."""

from __future__ import annotations

import pytest

from orchestrator.progress import clock


@pytest.mark.parametrize(("seconds", "text"), [(0, "0m00s"), (39.9, "0m39s"), (99, "1m39s"),
                                               (600, "10m00s")])
def test_clock(seconds: float, text: str) -> None:
    assert clock(seconds) == text
