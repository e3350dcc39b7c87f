"""latency: the cost of a world-switch round trip, timed over whole loops.

The guest times `iterations` round trips per window with rdtime, next to an
empty loop of the same length (REFERENCE.md §3). `time` ticks at 10 MHz, so
one tick is 100 ns of QEMU's clock, which under `-icount shift=0` is 100
instructions: a window's figure is 100 * (ticks - baseline_ticks) / iterations,
in instructions (icount) or nanoseconds (wallclock) per round trip, with the
boot's smallest baseline (see window_figures).

Each boot is a fresh QEMU with the host on one CPU. Under icount a boot's
figure is the minimum over its windows (the windows no host interrupt landed
in) and must be identical across boots: a difference is an infrastructure
error, since icount makes execution deterministic. In wallclock mode every
window is kept for the statistics in orchestrator.stats.

Case ids: latency/<test>
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator

from orchestrator import stats
from orchestrator.config import LATENCY_TESTS, LatencyConfig, QemuConfig
from orchestrator.errors import InfraError
from orchestrator.qemu import HostVM
from orchestrator.results import ERROR, PASS, Case
from orchestrator.scenarios import vmm

NAME = "latency"
ICOUNT = "shift=0,sleep=off"
INSTRUCTIONS_PER_TICK = 100  # 10 MHz time base at 1 GHz of icount shift 0
UNITS = {"icount": "instructions", "wallclock": "ns"}


def valid_id(case: str) -> bool:
    return case.removeprefix(f"{NAME}/") in LATENCY_TESTS


def qemu_for(mode: str, qemu: QemuConfig) -> QemuConfig:
    """One host CPU: counts are global to all harts, and fewer threads mean less noise."""
    return dataclasses.replace(qemu, icount=ICOUNT if mode == "icount" else None, smp=1)


def window_figures(records: list[dict]) -> list[float]:
    """Per-window figures of one test in one boot.

    The empty loop's cost is the boot's smallest baseline: a host interrupt
    can land in a baseline window too, and subtracting that window's own
    inflated baseline would make its figure too low.
    """
    baseline = min(r["baseline_ticks"] for r in records)
    return [INSTRUCTIONS_PER_TICK * (r["ticks"] - baseline) / r["iterations"] for r in records]


def measure(vm: HostVM, cfg: LatencyConfig, tests: tuple[str, ...]) -> dict[str, list[float]]:
    """One boot's per-window figures for each test."""
    command = vmm.command(NAME, f"--iterations {cfg.iterations}"
                                f" --windows {cfg.windows} --tests {','.join(tests)}")
    result = vm.run(command)
    windows: dict[str, list[dict]] = {test: [] for test in tests}
    for record in vmm.parse_records(result.output):
        if record.get("kind") == "latency-window" and record.get("test") in windows:
            windows[record["test"]].append(record)
    figures = {test: window_figures(records) if records else []
               for test, records in windows.items()}
    short = [t for t, values in figures.items() if len(values) != cfg.windows]
    if result.status != 0 or short:
        raise InfraError(f"{vm.label}: '{command}' exited {result.status}"
                         + (f" with windows missing for {', '.join(short)}" if short else ""),
                         details=result.output[-2000:])
    return figures


def judge(kernel: str, test: str, mode: str, boots: stats.Boots, log: str) -> Case:
    unit = UNITS[mode]
    extra = {"mode": mode, "unit": unit, "per_boot": boots}
    if mode == "icount":
        picks = [min(windows) for windows in boots]
        extra["per_boot_min"] = picks
        figure = stats.exact_figure(picks)
        if figure is None:
            return Case(id=f"{NAME}/{test}", kernel=kernel, scenario=NAME, verdict=ERROR,
                        observed=picks, expected="one figure on every boot", log=log, extra=extra,
                        reason=f"icount figures differ across boots: {picks} {unit}"
                               " (icount execution should be deterministic)")
        extra["figure"] = figure
        observed = f"{figure:.1f} {unit} per round trip (emulated: icount)"
    else:
        summary = stats.summarize(boots)
        extra["figure"] = summary.median
        observed = (f"median {summary.median:.0f} {unit} per round trip, IQR {summary.q1:.0f}"
                    f"-{summary.q3:.0f} over {summary.boots} boots x {len(boots[0])} windows"
                    " (emulated: QEMU's clock)")
    return Case(id=f"{NAME}/{test}", kernel=kernel, scenario=NAME, verdict=PASS,
                observed=observed, expected=f"a {mode} figure", log=log, extra=extra)


def run(cfg: LatencyConfig, kernel: str, boot: Callable[[QemuConfig, str], HostVM],
        qemu: QemuConfig, only: str | None = None) -> Iterator[Case]:
    """Boot `cfg.boots` times (boot(qemu, name) makes the HostVM) and yield a case per test."""
    tests = (only.removeprefix(f"{NAME}/"),) if only else cfg.tests
    per_test: dict[str, stats.Boots] = {test: [] for test in tests}
    boot_seconds, logs = [], []
    for index in range(1, cfg.boots + 1):
        with boot(qemu_for(cfg.mode, qemu), f"latency-{index}") as vm:
            logs.append(str(vm.console_log))
            boot_seconds.append(vm.boot())
            print(f"[{kernel}] latency boot {index}/{cfg.boots} ({cfg.mode})", file=sys.stderr)
            for test, windows in measure(vm, cfg, tests).items():
                per_test[test].append(windows)
    for test in tests:
        case = judge(kernel, test, cfg.mode, per_test[test], logs[0])
        case.extra["boot_seconds"] = boot_seconds
        yield case
