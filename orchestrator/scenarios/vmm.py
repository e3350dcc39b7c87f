"""Running a guest-test program in the booted host and reading what it reports.

Each program (guest-tests/README.md) prints one JSON object per line;
anything else on the console (kernel messages) is ignored.
"""

from __future__ import annotations

import json

from orchestrator.guest import host_path
from orchestrator.qemu import CommandResult, HostVM
from orchestrator.results import ERROR, Case


def command(program: str, flags: str) -> str:
    return f"{host_path(program)} {flags}".rstrip()


def parse_records(output: str) -> list[dict]:
    records = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def error_case(case_id: str, kernel: str, scenario: str, vm: HostVM, result: CommandResult,
               expected: str, why: str = "") -> Case:
    """An infrastructure error for a VMM run that did not finish as it should."""
    return Case(id=case_id, kernel=kernel, scenario=scenario, verdict=ERROR,
                observed=result.output[-2000:], expected=expected,
                reason=f"'{result.command}' exited {result.status}{why}",
                log=str(vm.console_log))
