"""The results store: every run, case and measurement in one SQLite database.

results/rig.sqlite sits beside the run directories it indexes. Run
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
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput, InfraError
from orchestrator.results import exit_code, load_cases
from orchestrator.verdicts import Case

STORE_NAME = "rig.sqlite"
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
    return results_dir / STORE_NAME


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
                migrate(self.db, upto, str(path))
            except sqlite3.DatabaseError as exc:
                raise InfraError(f"{path}: results store unusable: {exc}") from None

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
                host: str | None = None) -> bool:
        """Store one run (replacing an earlier copy of it); False if it was there unchanged."""
        run_id = run_dir.name
        partial = bool(manifest.get("only")) or "--only" in manifest.get("reproduce", "")
        payload = json.dumps(manifest, sort_keys=True)
        qemu = manifest.get("qemu", {}).get("version")
        with _transaction(self.db):
            row = self.db.execute("SELECT id, manifest, (SELECT count(*) FROM cases WHERE run"
                                  " = runs.id) FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row and row[1] == payload and row[2] == len(cases):
                return False
            if row:
                self.db.execute("DELETE FROM runs WHERE id = ?", (row[0],))
            cursor = self.db.execute(
                "INSERT INTO runs (run_id, dir, recorded, partial, exit_code, rig_version,"
                " qemu_version, host, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, self._relative(run_dir), recorded or time.time(), partial, code,
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
        """Store a run directory as written by `orchestrator run`; False if already stored."""
        try:
            cases = load_cases(run_dir)
            manifest = json.loads((run_dir / "manifest.json").read_text())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"{run_dir}: not a run directory of results schema v1 ({exc})"
                           ) from None
        # the run's own time: its manifest, written as it went
        recorded = (run_dir / "manifest.json").stat().st_mtime
        return self.add_run(run_dir, cases, manifest, exit_code(cases), recorded=recorded)

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
        return [Case.from_json(json.loads(r[0])) for r in self.db.execute(query + " ORDER BY rowid",
                                                                          args)]

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
