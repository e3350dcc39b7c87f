"""Window figures from the latency payload's raw tick counts."""

from __future__ import annotations

from orchestrator.suites.latency import window_figures


def window(ticks: int, baseline: int, iterations: int = 100) -> dict:
    return {"kind": "latency-window", "test": "sbi-in-kernel", "ticks": ticks,
            "baseline_ticks": baseline, "iterations": iterations}


def test_figure_is_instructions_per_round_trip_over_the_empty_loop() -> None:
    assert window_figures([window(910, 2), window(910, 2)]) == [908.0, 908.0]


def test_an_interrupted_baseline_window_cannot_lower_the_minimum() -> None:
    # a host tick (about 46 ticks of work) landed in the second window's empty loop
    figures = window_figures([window(910, 2), window(910, 48), window(948, 2)])
    assert min(figures) == 908.0
    assert figures == [908.0, 908.0, 946.0]
