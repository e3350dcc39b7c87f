"""A run as a KCIDB document, valid against kcidb-io's schema (the one the Linux
kernel CI database validates submissions with)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from kcidb_io import schema

from orchestrator import kcidb, store
from orchestrator.results import Case, Measurement, RunRecord, finished
from orchestrator.verdicts import ERROR, FAIL, KNOWN_DEVIATION, PASS, SKIP

DEBIAN = {"release": "6.12.57", "source": "linux-source-6.12=6.12.57-1", "key": "3f" * 32,
          "patches": {}, "config_sha256": "c" * 64, "toolchain": "riscv64-linux-gnu-gcc 12.2.0",
          "build_seconds": 302.0}
PATCHED = {**DEBIAN, "key": "0c" * 32,
           "patches": {"0001-RISC-V-KVM-Save-restore-SCOUNTEREN.patch": "d" * 64}}


def run_of_two_kernels(results: Path) -> RunRecord:
    record = RunRecord(results, "20261202-151027")
    rule = "kvm-unconfigured-counter-traps"
    for kernel in ("b922307a-parent", "b922307a"):
        for case in (
            Case("kvm-host/dev-kvm", "kvm-host", PASS, kernel=kernel, duration=0.4),
            Case("counters/no-pmu/VS/hpmcounter3/scounteren=0x8", "counters", KNOWN_DEVIATION,
                 kernel=kernel, rule=rule, reason=f"{rule}: a VS read returns a value"),
            Case("counters/no-pmu/VU/cycle/scounteren=0x0", "counters", FAIL, kernel=kernel,
                 rule="vu-bit0", reason="vu-bit0: read a value", rerun="orchestrator run"),
            Case("kselftest-kvm/steal_time", "kselftest-kvm", SKIP, kernel=kernel,
                 reason="SBI STA not available"),
            Case("linux-guest/x", "linux-guest", ERROR, kernel=kernel, reason="timed out",
                 rerun="orchestrator run"),
            Case("latency/ecall", "latency", PASS, kernel=kernel,
                 measurement=Measurement(908.0, "instructions", "exact", [[908.0]])),
        ):
            # every case the rig records says what it saw; results.json's schema needs it
            record.add(dataclasses.replace(case, outcome={"kind": case.verdict}))
    record.set_manifest(qemu={"version": "QEMU emulator version 10.0.2", "machine": "virt",
                              "cpu": "rv64,h=true", "icount": "shift=0"}, host="rig-host",
                        kernels={"b922307a-parent": DEBIAN, "b922307a": PATCHED})
    record.flush()
    return record


def test_a_run_is_a_valid_kcidb_document(tmp_path: Path) -> None:
    record = run_of_two_kernels(tmp_path)
    record.finish()
    data = json.loads((record.dir / kcidb.FILE_NAME).read_text())
    schema.V5_3.validate(data)
    assert len(data["checkouts"]) == 2  # the same source, with and without the patch
    builds = {b["comment"]: b for b in data["builds"]}
    # the kernel's identity, never the run's
    assert builds["b922307a-parent"]["id"] == "riscv_kvm_rig:6.12.57-deb6.12.57-1-3f3f3f3f3f3f"
    assert builds["b922307a"]["id"] == "riscv_kvm_rig:6.12.57-deb6.12.57-1-0c0c0c0c0c0c"
    assert all(record.run_id not in b["id"] for b in data["builds"])
    tests = {(t["build_id"], t["path"]): t for t in data["tests"]}
    assert len(tests) == 12
    mine = builds["b922307a"]["id"]
    deviation = tests[(mine, "counters.no-pmu.VS.hpmcounter3.scounteren_0x8")]
    assert deviation["status"] == "SKIP"
    assert deviation["misc"]["verdict"] == KNOWN_DEVIATION
    assert deviation["comment"].count("kvm-unconfigured-counter-traps") == 1
    assert tests[(mine, "linux-guest.x")]["status"] == "ERROR"
    assert tests[(mine, "latency.ecall")]["number"] == {"value": 908.0, "unit": "instructions"}


def test_kcidb_schema_refuses_what_the_rig_must_not_write(tmp_path: Path) -> None:
    """The check can fail: an id without its origin, or a case id as the path, is refused."""
    record = run_of_two_kernels(tmp_path)
    good = kcidb.document(record.run_id, record.cases, record.manifest)
    schema.V5_3.validate(good)
    no_origin = json.loads(json.dumps(good))
    no_origin["builds"][0]["id"] = "6.12.57"
    raw_path = json.loads(json.dumps(good))
    raw_path["tests"][1]["path"] = "counters/no-pmu/VS/hpmcounter3/scounteren=0x8"
    for broken in (no_origin, raw_path):
        with pytest.raises(Exception, match="does not match|is not valid"):
            schema.V5_3.validate(broken)


def test_finish_marks_the_run_complete_and_points_latest_at_it(tmp_path: Path) -> None:
    first = run_of_two_kernels(tmp_path)
    assert not finished(first.dir)
    assert not (tmp_path / "latest").exists()  # a run being written is never `latest`
    first.finish()
    assert finished(first.dir) and os.readlink(tmp_path / "latest") == first.run_id
    second = run_of_two_kernels(tmp_path)
    second.finish()
    assert (tmp_path / "latest" / "results.json").is_file()
    assert os.readlink(tmp_path / "latest") == second.run_id


def test_an_unfinished_run_is_stored_but_never_a_baseline(tmp_path: Path) -> None:
    done = run_of_two_kernels(tmp_path)
    done.finish()
    writing = run_of_two_kernels(tmp_path)  # no finish(): still being written
    with store.Store(store.path_for(tmp_path)) as db:
        db.import_dir(done.dir)
        db.import_dir(writing.dir)
        assert [r.partial for r in db.runs()] == [False, True]
