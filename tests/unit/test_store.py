"""The results store: migrations, idempotent import, concurrent writers, look-ups."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from orchestrator import store
from orchestrator.errors import BadInput
from orchestrator.results import RunRecord
from orchestrator.verdicts import FAIL, PASS, Case, Measurement


def make_run(results: Path, run_id: str, kernels: dict[str, str], verdict: str = PASS,
             value: float = 100.0, only: str | None = None) -> Path:
    """A run directory as `orchestrator run` writes it: kernel name -> build key."""
    record = RunRecord(results, run_id)
    for name in kernels:
        record.add(Case("counters/a", "counters", verdict, kernel=name, outcome={"kind": "value"},
                        reason="" if verdict == PASS else "differs",
                        rerun="" if verdict == PASS else "orchestrator run --only counters/a"))
        record.add(Case("latency/x", "latency", PASS, kernel=name, outcome={"kind": "figure"},
                        measurement=Measurement(value, "instructions", "exact", [[value]])))
    record.flush()
    record.set_manifest(rig_version="0.1.0", qemu={"version": "QEMU 10"}, only=only,
                        kernels={n: {"key": key, "source": "git:abc123", "patches": {"p": "1"},
                                     "config_sha256": "c", "toolchain": "t"}
                                 for n, key in kernels.items()})
    record.finish()
    return record.dir


def test_fresh_store_has_every_migration(tmp_path: Path) -> None:
    with store.Store(tmp_path / "s.sqlite") as db:
        assert db.version == store.SCHEMA_VERSION == len(store.MIGRATIONS)
        assert db.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_old_store_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    with store.Store(tmp_path / "s.sqlite", upto=1) as old:
        assert old.version == 1
        # what a rig of schema 1 wrote: a run and its kernel, with schema 1's columns
        old.db.execute("INSERT INTO runs (id, run_id, dir, recorded, partial, manifest)"
                       " VALUES (1, 'r1', 'r1', 1.0, 0, '{}')")
        old.db.execute("INSERT INTO kernels VALUES (1, 'k', 'key1', 'src', NULL, '{}', 'c', 't')")
    with store.Store(tmp_path / "s.sqlite") as db:
        assert db.version == store.SCHEMA_VERSION
        kernel = db.kernels(db.runs()[0])["k"]
        assert (kernel.build_key, kernel.release) == ("key1", None)
        indexes = {r[0] for r in db.db.execute("SELECT name FROM sqlite_master"
                                               " WHERE type = 'index'")}
        assert "kernels_by_name" in indexes
        assert [r.run_id for r in db.runs()] == ["r1"]


def test_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    with pytest.raises(BadInput, match="newer than this rig"):
        store.Store(path)


def test_import_is_idempotent(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r1", {"k": "key1"})
    with store.Store(store.path_for(tmp_path)) as db:
        assert db.import_dir(run) is True
        assert db.import_dir(run) is False
        assert len(db.cases(db.run("r1"))) == 2
        assert db.db.execute("SELECT count(*) FROM measurements").fetchone()[0] == 1
        kernel = db.kernels(db.run("r1"))["k"]
        assert (kernel.git_commit, kernel.build_key) == ("abc123", "key1")


def test_import_of_a_directory_without_a_run_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    with store.Store(store.path_for(tmp_path)) as db, pytest.raises(BadInput):
        db.import_dir(tmp_path / "nothing")


def _writer(results: str, prefix: str, count: int) -> None:
    for i in range(count):
        run = make_run(Path(results), f"{prefix}{i}", {"k": "key"})
        store.record_run(Path(results), run, [Case("a/b", "a", PASS, kernel="k")] * 1,
                         json.loads((run / "manifest.json").read_text()), 0)


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(tmp_path), p, 15)) for p in "ab"]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    with store.Store(store.path_for(tmp_path)) as db:
        assert len(db.runs()) == 30
        assert db.db.execute("SELECT count(*) FROM cases").fetchone()[0] == 30


def test_previous_run_by_name_then_build_key_skipping_partial_runs(tmp_path: Path) -> None:
    with store.Store(store.path_for(tmp_path)) as db:
        for i, (run_id, kernels, only) in enumerate([
                ("r1", {"a": "ka"}, None), ("r2", {"a": "ka2"}, None),
                ("r3", {"a": "ka2"}, "counters/*"), ("r4", {"a": "ka3", "renamed": "ka"}, None)]):
            db.add_run(make_run(tmp_path, run_id, kernels, only=only), [],
                       json.loads((tmp_path / run_id / "manifest.json").read_text()), 0,
                       recorded=1000.0 + i)
        r4 = db.run("r4")
        kernels = db.kernels(r4)
        assert db.previous(r4, kernels["a"]).run_id == "r2"  # r3 ran some cases only
        assert db.previous(r4, kernels["renamed"]).run_id == "r1"  # no name match: by key
        assert db.previous(db.run("r1"), db.kernels(db.run("r1"))["a"]) is None


def test_trend_keeps_the_last_n_runs_oldest_first(tmp_path: Path) -> None:
    with store.Store(store.path_for(tmp_path)) as db:
        for i in range(4):
            run = make_run(tmp_path, f"r{i}", {"k": "key"}, value=100.0 + i)
            db.import_dir(run)
            db.db.execute("UPDATE runs SET recorded = ? WHERE run_id = ?", (1000 + i, f"r{i}"))
        (series,) = db.trend(3)
        assert (series["kernel"], series["case"]) == ("k", "latency/x")
        assert [p["value"] for p in series["points"]] == [101.0, 102.0, 103.0]
        (upto,) = db.trend(2, upto=db.run("r2"))
        assert [p["run"] for p in upto["points"]] == ["r1", "r2"]


def test_verdicts_are_stored_per_case(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r1", {"k": "key1"}, verdict=FAIL)
    with store.Store(store.path_for(tmp_path)) as db:
        db.import_dir(run)
        assert {c.id: c.verdict for c in db.cases(db.run("r1"))}["counters/a"] == FAIL
