"""Target kinds as plug-ins: rig.yaml's `targets:` entries are parsed by the kind their
`type` names, found in orchestrator.targets or in $RIG_TARGET_PATH."""

from __future__ import annotations

import pytest

from orchestrator import config, targets
from tests.unit.test_config import default_doc, load_error, write_rig

KIND = '''
import dataclasses
from typing import ClassVar

from orchestrator.targets import TargetKind


@dataclasses.dataclass(frozen=True)
class PortEntry:
    type: ClassVar[str] = "serial"
    name: str
    device: str


class Serial(TargetKind):
    type = "serial"

    @classmethod
    def entry(cls, reader, name, raw):
        keys = reader.mapping(f"targets.{name}", raw, ["type", "device"])
        return PortEntry(name, reader.scalar(f"targets.{name}.device", keys.get("device"), str))
'''


@pytest.fixture
def fresh_kinds(monkeypatch):
    monkeypatch.setattr(targets, "_KINDS", None)  # restored after the test


def test_the_rig_has_its_qemu_and_ssh_kinds(fresh_kinds):
    found = targets.kinds()
    assert set(found) == {"qemu", "ssh"}
    assert [t for t, kind in found.items() if kind.standing] == ["ssh"]


def test_a_kind_in_one_file_parses_its_own_entries(fresh_kinds, tmp_path, monkeypatch):
    plugins = tmp_path / "kinds"
    plugins.mkdir()
    (plugins / "serial.py").write_text(KIND)
    monkeypatch.setenv(targets.TARGET_PATH_ENV, str(plugins))
    doc = default_doc()
    doc["targets"] = {"bench": {"type": "serial", "device": "/dev/ttyUSB0"}}
    rig = config.load(write_rig(tmp_path, doc))
    entry = rig.target("bench")
    assert (entry.type, entry.name, entry.device) == ("serial", "bench", "/dev/ttyUSB0")
    assert targets.kinds()["serial"].session_log(entry, tmp_path) == tmp_path / "bench.serial.log"
    doc["targets"]["bench"]["speed"] = 115200
    assert "targets.bench.speed: unknown key (expected one of: type, device)" in load_error(
        tmp_path, doc)


def test_an_unknown_kind_names_the_kinds_there_are(fresh_kinds, tmp_path):
    doc = default_doc()
    doc["targets"] = {"bench": {"type": "serial"}}
    assert load_error(tmp_path, doc).endswith(
        "targets.bench.type: got 'serial', expected ssh")
