"""The results store: every run, case and measurement in one SQLite database.

results/rig.sqlite sits beside the run directories it indexes ($RIG_STORE puts
it elsewhere: run directories are then recorded by absolute path). Run
directories stay the source of truth (results.json, manifest.json); the
store makes questions across runs cheap: the previous run of a kernel, a
figure over the last N runs.

Schema changes are migrations: MIGRATIONS[i] (SQL statements separated by
';', none inside comments) takes a database from `PRAGMA user_version` i to
i + 1, each in one transaction, so a store
written by an older rig is brought up to date on open, and one written by a
newer rig is refused rather than misread.

Two runs may finish at once (a nightly and an engineer's run on one results
directory): the database is in WAL mode, writers wait for each other
(busy timeout), and each run is written in one IMMEDIATE transaction, so a
reader sees a run whole or not at all.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import validate
from orchestrator.errors import BadInput, InfraError
from orchestrator.results import (
    CASE_SCHEMA,
    MANIFEST,
    exit_code,
    finished,
    load_cases,
    load_manifest,
)
from orchestrator.verdicts import Case

STORE_NAME = "rig.sqlite"
STORE_ENV = "RIG_STORE"
BUSY_TIMEOUT_MS = 60_000

MIGRATIONS: list[str] = [
    # 1: runs with their manifest, kernels with their build identity, cases, measurements
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        dir TEXT NOT NULL,
        recorded REAL NOT NULL,        -- unix time the run was stored
        partial INTEGER NOT NULL,      -- 1: a run of some cases only (--only)
        exit_code INTEGER,
        rig_version TEXT,
        qemu_version TEXT,
        host TEXT,
        manifest TEXT NOT NULL         -- manifest.json as written by the run
    );
    CREATE TABLE kernels (
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        build_key TEXT,                -- hashes source, patches, config fragments, toolchain
        source TEXT,
        git_commit TEXT,               -- for git sources (Debian ones carry their version)
        patches TEXT,                  -- JSON: file name -> sha256
        config_sha256 TEXT,
        toolchain TEXT,
        PRIMARY KEY (run, name)
    );
    CREATE TABLE cases (
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        kernel TEXT NOT NULL,
        case_id TEXT NOT NULL,
        suite TEXT NOT NULL,
        verdict TEXT NOT NULL,
        rule TEXT,
        outcome TEXT NOT NULL,         -- JSON
        record TEXT NOT NULL,          -- the whole case, JSON (schema v1)
        PRIMARY KEY (run, kernel, case_id)
    );
    CREATE TABLE measurements (
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        kernel TEXT NOT NULL,
        case_id TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL,
        method TEXT NOT NULL,
        samples TEXT NOT NULL,         -- JSON: per boot, per window
        PRIMARY KEY (run, kernel, case_id)
    );
    """,
    # 2: the look-ups nightly and trend make: a kernel's runs, newest first
    """
    CREATE INDEX kernels_by_name ON kernels(name, run);
    CREATE INDEX kernels_by_key ON kernels(build_key, run);
    CREATE INDEX measurements_by_case ON measurements(kernel, case_id, run);
    """,
    # 3: the kernel's own version (include/config/kernel.release); older runs: NULL
    """
    ALTER TABLE kernels ADD COLUMN release TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def path_for(results_dir: Path) -> Path:
    """results_dir/rig.sqlite, or $RIG_STORE: a CI job that keeps only the rig's cache
    between nights keeps the store there and starts each night with an empty results/."""
    explicit = os.environ.get(STORE_ENV)
    return Path(explicit).resolve() if explicit else results_dir / STORE_NAME


@dataclass(frozen=True)
class StoredRun:
    id: int
    run_id: str
    dir: Path
    recorded: float
    partial: bool
    exit_code: int | None


@dataclass(frozen=True)
class StoredKernel:
    name: str
    build_key: str | None
    source: str | None
    git_commit: str | None
    patches: dict[str, str]
    config_sha256: str | None
    toolchain: str | None
    release: str | None = None  # None: recorded by a rig that did not keep it


def migrate(db: sqlite3.Connection, upto: int = SCHEMA_VERSION, where: str = "") -> int:
    """Apply the migrations the database lacks; return its version before."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise BadInput(f"{where}: store schema version {found} is newer than this rig's"
                       f" ({SCHEMA_VERSION}); use a newer rig or another results directory")
    for version in range(found, upto):
        with _transaction(db):
            # user_version is read again inside the lock: another process may have migrated
            if db.execute("PRAGMA user_version").fetchone()[0] > version:
                continue
            for statement in filter(str.strip, MIGRATIONS[version].split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")
    return found


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: two writers queue on the busy
    # timeout instead of one failing when it upgrades a read lock.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Store:
    def __init__(self, path: Path, upto: int = SCHEMA_VERSION) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One process at a time opens the store: two creating it at once could get
        # "database is locked" from the switch to WAL without waiting on busy_timeout
        # (4 of 40 runs of test_two_processes_write_at_once failed so).
        with open(f"{path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # autocommit mode: transactions are explicit (_transaction)
                self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000,
                                          isolation_level=None)
                self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA foreign_keys = ON")
                self._check()
                migrate(self.db, upto, str(path))
            except sqlite3.DatabaseError as exc:
                raise self._damaged(str(exc)) from None

    def _check(self) -> None:
        """The store is foreign input too (a disk, a copy, a hand may have damaged
        it): quick_check reads every page, so damage is found on open, before a
        figure is read from it or a run written into it."""
        answer = "\n".join(r[0] for r in self.db.execute("PRAGMA quick_check(1)"))
        if answer != "ok":  # the first problem, past a "*** in database main ***" header
            said = [line for line in answer.splitlines() if not line.startswith("***")]
            raise self._damaged(said[0] if said else answer or "no answer to quick_check")

    def _stored_badly(self, run_id: str, problem: str) -> BadInput:
        return BadInput(f"{self.path}: run {run_id}: {problem}; remove the run with"
                        f" 'orchestrator forget {run_id}' (and import its directory again)")

    def _damaged(self, problem: str) -> BadInput:
        aside = self.path.with_name(self.path.name + ".damaged")
        return BadInput(f"{self.path}: the results store is damaged ({problem});"
                        f" the run directories hold every result: move it aside (mv {self.path}"
                        f" {aside}) and rebuild it with 'orchestrator import"
                        f" {self.path.parent}'")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    # -- writing ------------------------------------------------------------------

    def add_run(self, run_dir: Path, cases: list[Case], manifest: dict[str, Any],
                code: int | None, recorded: float | None = None,
                host: str | None = None, complete: bool = True) -> bool:
        """Store one run (replacing an earlier copy of it from the same directory); False
        if it was there unchanged. A run id stored from another directory is refused:
        two runs under one id would be one run mixing both. complete: False for a run
        that did not finish; like a run of some cases (--only), it is then never a
        baseline nor a point of a trend."""
        run_id = validate.name(run_dir.name, f"{run_dir}: run id")
        where = self._relative(run_dir)
        partial = (not complete or bool(manifest.get("only"))
                   or "--only" in manifest.get("reproduce", ""))
        payload = json.dumps(manifest, sort_keys=True)
        qemu = manifest.get("qemu", {}).get("version")
        with _transaction(self.db):
            row = self.db.execute("SELECT id, manifest, (SELECT count(*) FROM cases WHERE run"
                                  " = runs.id), dir FROM runs WHERE run_id = ?",
                                  (run_id,)).fetchone()
            if row and row[3] != where:
                raise BadInput(f"{run_dir}: run id {run_id} is already stored from"
                               f" {self.path.parent / row[3]}; to store this one instead:"
                               f" orchestrator forget {run_id}")
            if row and row[1] == payload and row[2] == len(cases):
                return False
            if row:
                self.db.execute("DELETE FROM runs WHERE id = ?", (row[0],))
            cursor = self.db.execute(
                "INSERT INTO runs (run_id, dir, recorded, partial, exit_code, rig_version,"
                " qemu_version, host, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, where, recorded or time.time(), partial, code,
                 manifest.get("rig_version"), qemu, host or manifest.get("host"), payload))
            run = cursor.lastrowid
            for name, k in manifest.get("kernels", {}).items():
                source = k.get("source") or ""
                self.db.execute(
                    "INSERT INTO kernels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run, name, k.get("key"), source or None,
                     source.removeprefix("git:") if source.startswith("git:") else None,
                     json.dumps(k.get("patches", {})), k.get("config_sha256"),
                     k.get("toolchain"), k.get("release")))
            for case in cases:
                self.db.execute(
                    "INSERT OR REPLACE INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run, case.kernel, case.id, case.suite, case.verdict, case.rule,
                     json.dumps(case.outcome, sort_keys=True), json.dumps(case.to_json())))
                m = case.measurement
                if m is not None:
                    self.db.execute(
                        "INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (run, case.kernel, case.id, m.value, m.unit, m.method,
                         json.dumps(m.samples)))
        return True

    def import_dir(self, run_dir: Path) -> bool:
        """Store a run directory as written by `orchestrator run`; False if already stored.
        A run that has not finished (still being written, or killed) is stored as partial."""
        run_dir = run_dir.resolve()
        cases, manifest = load_cases(run_dir), load_manifest(run_dir)
        # the run's own time: its manifest, written as it went
        recorded = (run_dir / MANIFEST).stat().st_mtime
        return self.add_run(run_dir, cases, manifest, exit_code(cases), recorded=recorded,
                            complete=finished(run_dir))

    def forget(self, run_id: str) -> StoredRun:
        """Remove a stored run (its run directory is left alone)."""
        with _transaction(self.db):
            stored = self.run(run_id)
            if stored is None:
                raise BadInput(f"{self.path}: no run {validate.shown(run_id)} stored")
            self.db.execute("DELETE FROM runs WHERE id = ?", (stored.id,))
        return stored

    # -- reading ------------------------------------------------------------------

    def runs(self) -> list[StoredRun]:
        return [self._run(r) for r in self.db.execute(
            "SELECT id, run_id, dir, recorded, partial, exit_code FROM runs"
            " ORDER BY recorded, id")]

    def run(self, run_id: str) -> StoredRun | None:
        row = self.db.execute("SELECT id, run_id, dir, recorded, partial, exit_code FROM runs"
                              " WHERE run_id = ?", (run_id,)).fetchone()
        return self._run(row) if row else None

    def _relative(self, run_dir: Path) -> str:
        """Run directories beside the store are kept relative: results/ can move."""
        try:
            return str(run_dir.resolve().relative_to(self.path.parent.resolve()))
        except ValueError:
            return str(run_dir.resolve())

    def _run(self, row: tuple) -> StoredRun:
        return StoredRun(row[0], row[1], self.path.parent / row[2], row[3], bool(row[4]),
                         row[5])

    def kernels(self, run: StoredRun) -> dict[str, StoredKernel]:
        return {r[0]: StoredKernel(r[0], r[1], r[2], r[3], json.loads(r[4] or "{}"), r[5], r[6],
                                   r[7])
                for r in self.db.execute(
                    "SELECT name, build_key, source, git_commit, patches, config_sha256,"
                    " toolchain, release FROM kernels WHERE run = ? ORDER BY rowid", (run.id,))}

    def cases(self, run: StoredRun, kernel: str | None = None) -> list[Case]:
        query = "SELECT record FROM cases WHERE run = ?"
        args: tuple = (run.id,)
        if kernel is not None:
            query, args = query + " AND kernel = ?", (run.id, kernel)
        found = []
        for (record,) in self.db.execute(query + " ORDER BY rowid", args):
            try:  # a record an older rig stored unchecked
                data = validate.check(validate.parse_json(record, "record"), CASE_SCHEMA,
                                      "record")
            except BadInput as exc:
                raise self._stored_badly(run.run_id, exc.message) from None
            found.append(Case.from_json(data))
        return found

    def previous(self, before: StoredRun, kernel: StoredKernel) -> StoredRun | None:
        """The last complete run before `before` holding this kernel: by name, else by
        build key (the same build under another name)."""
        for column, value in (("name", kernel.name), ("build_key", kernel.build_key)):
            if value is None:
                continue
            row = self.db.execute(
                "SELECT r.id, r.run_id, r.dir, r.recorded, r.partial, r.exit_code FROM runs r"
                f" JOIN kernels k ON k.run = r.id WHERE k.{column} = ? AND r.partial = 0"
                " AND (r.recorded < ? OR (r.recorded = ? AND r.id < ?))"
                " ORDER BY r.recorded DESC, r.id DESC LIMIT 1",
                (value, before.recorded, before.recorded, before.id)).fetchone()
            if row:
                return self._run(row)
        return None

    def trend(self, last: int, upto: StoredRun | None = None) -> list[dict[str, Any]]:
        """Per kernel and measured case, its figures over the last `last` complete runs
        (up to and including `upto`), oldest first, each with the kernel's release
        then: one line per kernel name across versions."""
        bound = (upto.recorded, upto.id) if upto else (float("inf"), 0)
        runs = self.db.execute(
            "SELECT id FROM runs WHERE partial = 0 AND (recorded < ? OR (recorded = ? AND"
            " id <= ?)) ORDER BY recorded DESC, id DESC LIMIT ?",
            (bound[0], bound[0], bound[1] if upto else 1 << 62, last)).fetchall()
        ids = [r[0] for r in runs]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        series: dict[tuple[str, str], dict[str, Any]] = {}
        for kernel, cid, value, unit, method, samples, run_id, recorded, release in (
                self.db.execute(
                    "SELECT m.kernel, m.case_id, m.value, m.unit, m.method, m.samples, r.run_id,"
                    " r.recorded, k.release FROM measurements m JOIN runs r ON r.id = m.run"
                    " LEFT JOIN kernels k ON k.run = m.run AND k.name = m.kernel"
                    f" WHERE m.run IN ({marks}) ORDER BY m.kernel, m.case_id, r.recorded, r.id",
                    ids)):
            if not isinstance(value, int | float) or value != value:  # stored by an older rig
                raise self._stored_badly(run_id, f"measurement of {kernel} {cid}: got"
                                                 f" {validate.shown(value)}, expected a number")
            entry = series.setdefault((kernel, cid), {"kernel": kernel, "case": cid,
                                                      "unit": unit, "method": method,
                                                      "points": []})
            entry["points"].append({"run": run_id, "recorded": recorded, "value": value,
                                    "release": release,
                                    **_spread(method, json.loads(samples))})
        return list(series.values())


def _spread(method: str, samples: list[list[float]]) -> dict[str, float]:
    """The IQR of a distribution's windows (an exact figure has none)."""
    if method == "exact" or not samples:
        return {}
    from orchestrator import stats  # numpy, only when there is a distribution
    summary = stats.summarize(samples)
    return {"q1": summary.q1, "q3": summary.q3}


def record_run(results_dir: Path, run_dir: Path, cases: list[Case],
               manifest: dict[str, Any], code: int) -> None:
    """The runner's hook: store a finished run. The store is an index, so a
    failure to write it is reported, never allowed to lose the run's results."""
    try:
        with closing(Store(path_for(results_dir))) as store:
            store.add_run(run_dir, cases, manifest, code, host=socket.gethostname())
    except (InfraError, BadInput, sqlite3.Error) as exc:
        message = getattr(exc, "message", str(exc))
        print(f"results store: run {run_dir.name} not recorded: {message}"
              f" (retry with 'orchestrator import {run_dir}')", flush=True)
