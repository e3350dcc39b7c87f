"""latency: the cost of a world-switch round trip, timed over whole loops.

The guest times `iterations` round trips per window with rdtime, next to an
empty loop of the same length (docs/latency-method.md). `time` ticks at
10 MHz, so one tick is 100 ns of QEMU's clock, which under `-icount shift=0`
is 100 instructions: a window's figure is 100 * (ticks - baseline_ticks) /
iterations, in instructions (icount) or nanoseconds (wallclock) per round
trip, with the boot's smallest baseline (see window_figures).

The suite needs a host on one CPU and, in icount mode, exact timing; it
reboots its target between `boots`. Under icount a boot's figure is the
minimum over its windows (those no host interrupt landed in) and must be
identical across boots: a difference is an infrastructure error, since
icount makes execution deterministic. In wallclock mode every window is
kept for the statistics in orchestrator.stats.

On a target the rig did not boot (an ssh host) there is no exact timing:
adapt() switches icount to wallclock there (with at least the wall-clock
minimum of boots and windows) and drops the one-CPU need, which only
shapes the QEMU machine. If that target cannot reboot, the "boots" are
separate VMM runs in its one boot, and the case's details say so.

Case ids: latency/<test>
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator

from orchestrator import guest, stats
from orchestrator.errors import BadInput, InfraError, tail
from orchestrator.suites import Fail, Suite, SuiteConfig
from orchestrator.targets import Capabilities, Needs, Target
from orchestrator.verdicts import ERROR, PASS, Case, Measurement

PROGRAM = "latency"
TESTS = ("sbi-in-kernel", "user-exit", "emulated-csr")
MODES = {"icount": "instructions", "wallclock": "ns"}  # mode -> unit
INSTRUCTIONS_PER_TICK = 100  # 10 MHz time base at 1 GHz of icount shift 0
MAX_WINDOWS = 8192  # the guest keeps every window's ticks until the end
# Fewer boots or windows cannot tell a wall-clock difference (docs/latency-method.md).
WALLCLOCK_MIN_BOOTS, WALLCLOCK_MIN_WINDOWS = 5, 30


@dataclasses.dataclass(frozen=True)
class LatencyConfig(SuiteConfig):
    # icount: exact instructions per round trip; wallclock: ns of QEMU's clock
    mode: str = "icount"
    tests: tuple[str, ...] = TESTS
    # round trips per timed window: at 100, a host tick lands in only ~2-7% of
    # windows, and 100 x ticks / iterations is a whole number of instructions
    iterations: int = 100
    # timed windows per boot: at most ~7% of them meet a host tick, so the minimum
    # over 50 is a clean window (docs/latency-method.md); each costs ~20 ms under icount
    windows: int = 50
    # boots per kernel: two show that a figure repeats (docs/latency-method.md)
    boots: int = 2


def window_figures(records: list[dict]) -> list[float]:
    """Per-window figures of one test in one boot.

    The empty loop's cost is the boot's smallest baseline: a host interrupt
    can land in a baseline window too, and subtracting that window's own
    inflated baseline would make its figure too low.
    """
    baseline = min(r["baseline_ticks"] for r in records)
    return [INSTRUCTIONS_PER_TICK * (r["ticks"] - baseline) / r["iterations"] for r in records]


class Latency(Suite):
    name = "latency"
    Config = LatencyConfig
    order = 90
    cfg: LatencyConfig

    def command_for(self, case_id: str) -> str:
        raise BadInput(f"{case_id}: a latency figure is not reproducible alone: it is the"
                       " minimum (icount) or distribution (wall clock) over several boots,"
                       " judged against other kernels; rerun it with"
                       f" 'orchestrator run --kernel KERNEL --only {case_id}'")

    @classmethod
    def validate(cls, cfg: LatencyConfig, fail: Fail) -> None:
        if cfg.mode not in MODES:
            fail("mode", cfg.mode, " or ".join(MODES))
        for i, test in enumerate(cfg.tests):
            if test not in TESTS:
                fail(f"tests[{i}]", test, "one of " + ", ".join(TESTS))
        for key, top in (("iterations", 10**6), ("windows", MAX_WINDOWS), ("boots", 100)):
            if not 1 <= getattr(cfg, key) <= top:
                fail(key, getattr(cfg, key), f"an integer from 1 to {top}")
        if cfg.mode == "icount" and cfg.iterations % INSTRUCTIONS_PER_TICK:
            # a tick is 100 instructions: other loop lengths give fractional figures
            fail("iterations", cfg.iterations,
                 f"a multiple of {INSTRUCTIONS_PER_TICK} in icount mode")
        if cfg.mode == "wallclock":
            if cfg.boots < WALLCLOCK_MIN_BOOTS:
                fail("boots", cfg.boots, f">= {WALLCLOCK_MIN_BOOTS} in wallclock mode")
            if cfg.windows < WALLCLOCK_MIN_WINDOWS:
                fail("windows", cfg.windows, f">= {WALLCLOCK_MIN_WINDOWS} in wallclock mode")

    # One host CPU: icount counts are global to all harts, and fewer threads mean less noise.
    cpus: int | None = 1
    samples = "boots"  # what a figure's groups of windows are (see run)

    def needs(self) -> Needs:
        # One host CPU: icount counts are global to all harts, and fewer threads mean less
        # noise. Icount figures are exact whatever runs beside them; wall-clock ones are not.
        icount = self.cfg.mode == "icount"
        return Needs(exact_timing=icount, cpus=self.cpus, exclusive=not icount)

    def adapt(self, caps: Capabilities) -> Latency:
        cfg = self.cfg
        if cfg.mode == "icount" and not caps.exact_timing:
            cfg = dataclasses.replace(cfg, mode="wallclock",
                                      boots=max(cfg.boots, WALLCLOCK_MIN_BOOTS),
                                      windows=max(cfg.windows, WALLCLOCK_MIN_WINDOWS))
        adapted = Latency(cfg)
        adapted.cpus = None  # the target's CPUs are what they are
        return adapted

    def plan(self) -> list[str]:
        return [f"{self.name}/{test}" for test in dict.fromkeys(self.cfg.tests)]

    def run(self, target: Target, ids: list[str]) -> Iterator[Case]:
        tests = [i.removeprefix(f"{self.name}/") for i in ids]
        per_test: dict[str, stats.Boots] = {test: [] for test in tests}
        reboots = target.capabilities.can_reboot
        started = time.monotonic()
        self.samples = "boots" if reboots else "VMM runs in one boot (the target cannot reboot)"
        for index in range(self.cfg.boots):
            if index and reboots:
                target.reboot()
            print(f"[{target.label}] latency {'boot' if reboots else 'run'}"
                  f" {index + 1}/{self.cfg.boots} ({self.cfg.mode})", file=sys.stderr)
            for test, windows in self._measure(target, tests).items():
                per_test[test].append(windows)
        share = round((time.monotonic() - started) / len(tests), 3)  # the boots measure all
        for test in tests:
            yield dataclasses.replace(self._judge(test, per_test[test]), duration=share)

    def script(self, target: Target, ids: list[str]) -> None:
        # run() stops at the first boot without every window: record all boots
        tests = [i.removeprefix(f"{self.name}/") for i in ids]
        for index in range(self.cfg.boots):
            if index:
                target.reboot()
            target.run(self._command(tests))

    def _command(self, tests: list[str]) -> str:
        return guest.command(PROGRAM, f"--iterations {self.cfg.iterations}"
                                      f" --windows {self.cfg.windows}"
                                      f" --tests {','.join(tests)}")

    def _measure(self, target: Target, tests: list[str]) -> dict[str, list[float]]:
        """One boot's per-window figures for each test."""
        command = self._command(tests)
        result = target.run(command)
        windows: dict[str, list[dict]] = {test: [] for test in tests}
        for record in guest.parse_records(result.output):
            if record.get("kind") == "latency-window" and record.get("test") in windows:
                windows[record["test"]].append(record)
        short = [t for t, found in windows.items() if len(found) != self.cfg.windows]
        if result.status != 0 or short:
            raise InfraError(f"{target.label}: '{command}' exited {result.status}"
                             + (f" with windows missing for {', '.join(short)}" if short else ""),
                             details=tail(result.output))
        return {test: window_figures(found) for test, found in windows.items()}

    def _judge(self, test: str, boots: stats.Boots) -> Case:
        unit, cid = MODES[self.cfg.mode], f"{self.name}/{test}"
        if self.cfg.mode == "icount":
            picks = [min(windows) for windows in boots]
            figure = stats.exact_figure(picks)
            if figure is None:
                return self.case(cid, ERROR, outcome={"kind": "error"},
                                 expected="one figure on every boot",
                                 details={"per_boot_min": picks},
                                 reason=f"icount figures differ across boots: {picks} {unit}"
                                        " (icount execution should be deterministic)")
            measurement = Measurement(figure, unit, "exact", boots)
            shown = f"{figure:.1f} {unit} per round trip (emulated: icount)"
        else:
            summary = stats.summarize(boots)
            measurement = Measurement(summary.median, unit, "distribution", boots)
            shown = (f"median {summary.median:.0f} {unit} per round trip, IQR {summary.q1:.0f}"
                     f"-{summary.q3:.0f} over {summary.boots} boots x {len(boots[0])} windows"
                     " (the host's clock)")
        return self.case(cid, PASS, outcome={"kind": "figure"}, measurement=measurement,
                         expected=f"a {self.cfg.mode} figure",
                         details={"observed": shown, "samples": self.samples})
