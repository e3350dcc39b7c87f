"""Options of the unit tests."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="write the expected files under tests/unit/golden/ from what the"
                          " code renders now (then review the diff before committing it)")
