"""run_kernels prepares the host initramfs while the first kernel builds (a cold cache:
the riscv64 busybox download and the guest-test build need no kernel)."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import pytest

from orchestrator import runner

STEP = 0.5  # seconds each side takes


class FakeSuite:
    def __init__(self, events: list[tuple[str, float]]) -> None:
        self.events = events

    def prefetch(self, rig: object) -> None:
        self.events.append(("prefetch starts", time.monotonic()))


class FakeKernelRun:
    """What run_kernels uses of a KernelRun: rig.cache_dir, plan.suites (their
    prefetch), build(base), run(exclusive)."""

    def __init__(self, cache_dir: Path, events: list[tuple[str, float]]) -> None:
        self.rig = type("Rig", (), {"cache_dir": cache_dir})()
        self.plan = type("Plan", (), {"suites": [FakeSuite(events)]})()
        self.events = events
        self.initramfs: Path | None = None

    def build(self, base_initramfs: concurrent.futures.Future[Path]) -> None:
        self.events.append(("compile starts", time.monotonic()))
        time.sleep(STEP)  # the kernel compiling
        self.initramfs = base_initramfs.result()

    def run(self, exclusive: bool) -> None:
        pass


def test_the_initramfs_is_prepared_while_the_first_kernel_compiles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, float]] = []

    def host_initramfs(cache_dir: Path) -> Path:
        events.append(("initramfs starts", time.monotonic()))
        time.sleep(STEP)  # apt download, guest tests, archive
        return cache_dir / "host.cpio"

    monkeypatch.setattr(runner.guest, "host_initramfs", host_initramfs)
    kernels = [FakeKernelRun(tmp_path, events), FakeKernelRun(tmp_path, events)]
    started = time.monotonic()
    runner.run_kernels(kernels, runner.LiveTargets())  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert [k.initramfs for k in kernels] == [tmp_path / "host.cpio"] * 2
    assert [e for e, _ in events].count("initramfs starts") == 1
    first_compile, initramfs = (next(t for e, t in events if e == what)
                                for what in ("compile starts", "initramfs starts"))
    assert initramfs < first_compile + STEP  # it started while the first kernel compiled
    assert elapsed < 3 * STEP  # two compiles and the initramfs in sequence would take 3 STEPs
    # the first kernel's suites prefetch in the same thread, after the initramfs
    (prefetch,) = [t for e, t in events if e == "prefetch starts"]
    assert initramfs + STEP <= prefetch < started + 2 * STEP
