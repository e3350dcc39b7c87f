"""Golden tests of what `orchestrator lava export` renders: a job definition, the host
script of its first boot and the device, compared whole with the checked-in files under
tests/unit/golden/. A deliberate change: rerun with --update-golden and review the diff."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator import config
from orchestrator.config import QemuConfig, TimeoutsConfig
from orchestrator.lava import jobs, render
from orchestrator.suites import SuiteConfig
from orchestrator.suites.counters import Counters, CountersConfig
from orchestrator.suites.isolation import Isolation, IsolationConfig
from orchestrator.suites.kvm_host import KvmHost
from orchestrator.suites.latency import Latency, LatencyConfig

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[2]
# pinned here rather than read from rig.yaml: a change of the rig's defaults is not a
# change of how a job is rendered
QEMU = QemuConfig(cpu="rv64,h=true,sscofpmf=true", smp=2, memory="1G")


def recorded(tmp_path: Path) -> list[jobs.Boot]:
    rig = dataclasses.replace(config.load(REPO / "rig.yaml"), qemu=QEMU,
                              timeouts=TimeoutsConfig())
    suites = [KvmHost(SuiteConfig()),
              Counters(CountersConfig(scounteren=(0x0, 0x7))),
              Isolation(IsolationConfig(perf_user_access=(0, 2), exits=60)),
              Latency(LatencyConfig(tests=("sbi-in-kernel", "user-exit"), windows=5))]
    boots, skipped = jobs.record_boots(rig, suites, {s.name: s.plan() for s in suites},
                                       tmp_path)
    assert skipped == {}
    return boots


def check(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.write_text(text)
    assert path.is_file(), f"{path} is missing: run pytest with --update-golden"
    assert text == path.read_text(), (
        f"{name} differs from the golden file; if the change is meant, rerun with"
        " --update-golden and review the diff")


@pytest.fixture
def update(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def test_rendered_job(tmp_path: Path, update: bool) -> None:
    boots = recorded(tmp_path)
    artifacts = {b.index: {"kernel": {"url": "https://files.example.org/k1/Image",
                                      "sha256": "1" * 64},
                           "ramdisk": {"url": f"https://files.example.org/k1/{b.group}.cpio",
                                       "sha256": "2" * 64}} for b in boots}
    check("lava-job.yaml", render.render_job("k1", "0" * 64, QEMU, boots, artifacts,
                                             tags=["riscv-h"], boot_timeout=120), update)


def test_rendered_boot_script(tmp_path: Path, update: bool) -> None:
    boots = recorded(tmp_path)
    last_boot = {suite: b.index for b in boots for suite in b.suites}
    check("lava-boot-1.sh", render.boot_script("k1", boots[0], last_boot), update)


def test_rendered_device(update: bool) -> None:
    check("lava-device-qemu.yaml", render.render_device(QEMU), update)
