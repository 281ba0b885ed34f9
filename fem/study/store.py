"""The results store: one embedded SQLite database per study folder (``study.sqlite``).

Tables: ``meta`` (schema version, package version), ``study`` (name, recipe, spec), ``runs``
(one row per run: id, parameters, status pending | running | done | failed, error, owner, times,
timings, backend, solver, package versions, attempts, VTU path) and ``metrics`` (one row per run
and level, the columns of :data:`fem.metrics.COLUMNS`).

Concurrency and crashes. The database runs in WAL mode with a long busy timeout, so several
processes can share a folder. A process claims a run in one ``BEGIN IMMEDIATE`` transaction
(pending -> running, with its host and pid as owner), so two processes never take the same run;
a finished run's metrics and its status change are written in one transaction, so a crash
(SIGKILL included) leaves either the whole run or none of it. A run left ``running`` by a process
that no longer exists on this host is put back to pending when a study starts (:meth:`recover`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from ..errors import ModelError

SCHEMA_VERSION = 2
#: metric columns renamed since an earlier schema (old name: new name): schema 2 names the cement
#: a level holds ``cement_placed_ml`` (``cement_volume_ml`` is the volume a run asked for)
RENAMED_METRICS = {"cement_volume_ml": "cement_placed_ml"}
DB_NAME = "study.sqlite"
#: seconds a process waits for another's lock on the store before it gives up
BUSY_TIMEOUT = 120.0
#: SQLite's application id of a vertebra-fem store ("vfem" in ASCII): a database with another
#: id, or with tables but no ``meta``, is someone else's and is never adopted
APPLICATION_ID = 0x7666656D
TABLES = ("meta", "study", "runs", "metrics")
#: the columns every store has had since its tables were created (later ones are added on
#: opening, :meth:`Store._schema`)
COLUMNS = {"meta": ("key", "value"), "study": ("name", "recipe", "spec", "created"),
           "runs": ("run_id", "idx", "params", "status", "error", "owner", "started",
                    "finished", "timings", "backend", "solver", "iterations", "n_dof",
                    "versions", "attempts", "vtu"),
           "metrics": ("run_id", "level")}


class StoreError(ModelError):
    """A study folder or store that cannot be used as it is."""


def _versions() -> dict:
    import numpy
    import scipy

    from .. import __version__

    return {"vertebra-fem": __version__, "numpy": numpy.__version__, "scipy": scipy.__version__}


#: the metric columns that hold text, not numbers
TEXT_METRICS = ("leak_locations", "strength_method", "strength_pushover_by")


def _sql_type(column: str) -> str:
    return "TEXT" if column in TEXT_METRICS else "REAL"


def _metric_columns():
    from ..metrics import COLUMNS

    return [c for c in COLUMNS if c != "level"]


class Store:
    """The SQLite store of one study folder. Opened without ``create`` on a folder or store
    this process cannot write (archived or shared results), it is opened read-only
    (:attr:`read_only`): its results, report and uncertainty read as from a writable one, with
    metric columns added since it was written read as missing (NaN), and nothing is written."""

    def __init__(self, folder, *, create: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        #: the SQL condition that keeps a query to the runs of :meth:`restrict` ("" for all)
        self.scope = ""
        #: whether the store was opened read-only (a folder or file this process cannot write)
        self.read_only = False
        if create:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the study folder {self.folder}: "
                                 f"{exc.strerror}") from None
            if not os.access(self.folder, os.W_OK | os.X_OK):
                raise StoreError(f"the study folder {self.folder} is not writable")
        elif not self.path.exists():
            raise StoreError(f"{self.folder} holds no study (no {DB_NAME}); run "
                             "`vfem study SPEC.toml --out DIR` first")
        else:
            self.read_only = not (os.access(self.path, os.W_OK)
                                  and os.access(self.folder, os.W_OK | os.X_OK))
        try:
            self.db = self._connect()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite database ({exc})") from None
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(1000 * BUSY_TIMEOUT)}")
            # before anything writes: a newer, foreign or damaged store stays as it was
            self._check_integrity()
            self._check_version()
            if not self.read_only:
                self._write_ahead_log()
                self.db.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.DatabaseError, StoreError, UnicodeDecodeError) as exc:
            self.db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.path} is not a usable SQLite database ({exc})") from None
        if self.read_only:
            self._check_readable()
        else:
            self._schema()

    def _connect(self):
        """The connection: read-write, or for a store this process cannot write, read-only:
        ``immutable=1`` (no locks and no files made beside it, as for a file on read-only
        media) where no write-ahead log is beside it, i.e. every change is in the file; else
        ``mode=ro``, which reads the log too (SQLite then makes its shared-memory file where
        the folder lets it), and ``immutable=1`` where SQLite cannot open even that."""
        def connect(target, **kw):
            return sqlite3.connect(target, timeout=BUSY_TIMEOUT, isolation_level=None, **kw)

        if not self.read_only:
            return connect(self.path)
        uri = self.path.absolute().as_uri()
        wal = self.path.with_name(self.path.name + "-wal")
        if not (wal.exists() and wal.stat().st_size):
            return connect(f"{uri}?immutable=1", uri=True)
        try:
            db = connect(f"{uri}?mode=ro", uri=True)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            return connect(f"{uri}?immutable=1", uri=True)

    def _check_readable(self):
        """A read-only store must already hold a study's tables (nothing can create them)."""
        tables = {r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not set(TABLES) <= tables:
            self.db.close()
            raise StoreError(f"{self.path} holds no study yet and cannot be written (a "
                             "read-only folder or file): run the study into a writable --out "
                             "folder")

    def close(self):
        self.db.close()

    def _write_ahead_log(self, timeout: float = BUSY_TIMEOUT):
        """Put the store in WAL mode. Changing the journal mode needs the database to itself,
        and SQLite answers "database is locked" at once instead of waiting when another
        process holds it (two studies started together on a new folder: 1 open in 8 failed
        so), so the change is retried for up to ``timeout`` seconds; once one process has made
        the store WAL, the others find it so."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                # a file system without shared memory answers with the old mode, no error:
                # the store then keeps its rollback journal, as before
                self.db.execute("PRAGMA journal_mode = WAL").fetchone()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(
                    f"database is locked: could not switch it to WAL mode in {timeout:g} s")
            time.sleep(delay)
            delay = min(0.25, 2.0 * delay)

    # ------------------------------------------------------------------ schema

    def _schema(self):
        cols = ", ".join(f'"{c}" {_sql_type(c)}' for c in _metric_columns())
        try:
            with self.transaction():
                self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, "
                                "value TEXT)")
                row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                                      ).fetchone()
                if row is None:
                    self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                    (str(SCHEMA_VERSION),))
                    self.db.execute("INSERT INTO meta VALUES ('created_by', ?)",
                                    (json.dumps(_versions()),))
                else:
                    self._refuse_newer(row[0])
                self.db.execute(
                    "CREATE TABLE IF NOT EXISTS study (id INTEGER PRIMARY KEY CHECK (id = 1), "
                    "name TEXT, recipe TEXT, spec TEXT, created REAL)")
                self.db.execute(
                    "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, idx INTEGER, "
                    "params TEXT, status TEXT, error TEXT, owner TEXT, started REAL, "
                    "finished REAL, timings TEXT, backend TEXT, solver TEXT, iterations "
                    "INTEGER, n_dof INTEGER, versions TEXT, attempts INTEGER DEFAULT 0, "
                    "vtu TEXT)")
                self.db.execute(f"CREATE TABLE IF NOT EXISTS metrics (run_id TEXT, level TEXT, "
                                f"{cols}, PRIMARY KEY (run_id, level))")
                # metric columns added since the store was written (the pushover's): NULL for
                # its earlier runs; a store with more columns than these still reads and writes
                have = {r[1] for r in self.db.execute("PRAGMA table_info(metrics)")}
                self._rename_metrics(have)
                have = {r[1] for r in self.db.execute("PRAGMA table_info(metrics)")}
                for c in _metric_columns():
                    if c not in have:
                        self.db.execute(f'ALTER TABLE metrics ADD COLUMN "{c}" {_sql_type(c)}')
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a vertebra-fem study store ({exc})") from None

    def _rename_metrics(self, have: set) -> None:
        """Migrate a store of an earlier schema: rename its renamed metric columns and record
        the schema it now has (a store migrated so is refused by the releases before)."""
        for old, new in RENAMED_METRICS.items():
            if old in have and new not in have:
                self.db.execute(f'ALTER TABLE metrics RENAME COLUMN "{old}" TO "{new}"')
        self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version' AND "
                        "CAST(value AS INTEGER) < ?", (str(SCHEMA_VERSION), SCHEMA_VERSION))

    def _check_integrity(self):
        """Refuse a database that is damaged, not vertebra-fem's, or missing tables, before
        anything is written to it (a fresh, empty file is a new store)."""
        ok = self.db.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in ok] != ["ok"]:
            raise StoreError(f"{self.path} is damaged (SQLite integrity check: "
                             f"{'; '.join(str(r[0]) for r in ok[:3])}): restore it from a "
                             "backup, or run the study into another --out folder")
        app = self.db.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app not in (0, APPLICATION_ID) or (tables and "meta" not in tables):
            raise StoreError(f"{self.path} is not a vertebra-fem study store (a SQLite database "
                             f"with tables {', '.join(sorted(tables)) or 'none'}"
                             f"{f', application id {app}' if app else ''}): it was left as it "
                             "is; use another --out folder")
        missing = [t for t in TABLES if t not in tables]
        if tables and missing:
            raise StoreError(f"{self.path} is damaged: table(s) {', '.join(missing)} are "
                             "missing; restore it from a backup, or run the study into another "
                             "--out folder")
        for table, needed in COLUMNS.items():  # a damaged schema can rename a column
            if table not in tables:
                continue
            have = {r[1] for r in self.db.execute(f'PRAGMA table_info("{table}")')}
            lost = [c for c in needed if c not in have]
            if lost:
                raise self.damaged(f"table {table}", f"column(s) {', '.join(lost)} missing")

    def _check_version(self):
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
                           ).fetchone() is None:
            return
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None:
            self._refuse_newer(row[0])

    def _refuse_newer(self, version):
        if not str(version).isdigit() or int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer vertebra-fem (store schema {version}, this "
                f"version reads up to {SCHEMA_VERSION}): upgrade vertebra-fem or use another "
                "--out folder")

    def transaction(self):
        return _Transaction(self.db)

    # ------------------------------------------------------------------ study and runs

    def register(self, spec, runs: list[dict]) -> int:
        """Record the study (or check it is the same one) and add its runs; returns the number
        of runs added."""
        from .spec import run_id

        with self.transaction():
            row = self.db.execute("SELECT name FROM study").fetchone()
            if row is None:
                self.db.execute("INSERT INTO study VALUES (1, ?, ?, ?, ?)",
                                (spec.name, spec.recipe, json.dumps(spec.to_dict()),
                                 time.time()))
            elif row[0] != spec.name:
                raise StoreError(f"{self.folder} holds study {row[0]!r}, not {spec.name!r}: "
                                 "use another --out folder")
            else:  # the same study, perhaps grown (more grid values, more samples): its spec
                # is the latest one, which names every run registered so far
                self.db.execute("UPDATE study SET spec = ?", (json.dumps(spec.to_dict()),))
            n0 = self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            for i, p in enumerate(runs):
                self.db.execute("INSERT OR IGNORE INTO runs (run_id, idx, params, status) "
                                "VALUES (?, ?, ?, 'pending')",
                                (run_id(p), n0 + i, json.dumps(p, sort_keys=True)))
            return self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] - n0

    def damaged(self, what: str, exc) -> StoreError:
        """The error for a store whose pages are sound but whose records are not (a flipped
        byte inside a text field passes SQLite's integrity check)."""
        return StoreError(f"{self.path} is damaged ({what}: {exc}): restore it from a backup, "
                          "or run the study into another --out folder")

    def study(self) -> dict:
        try:
            row = self.db.execute("SELECT name, recipe, spec, created FROM study").fetchone()
            if row is None:
                raise StoreError(f"{self.path} holds no study")
            spec = json.loads(row[2])
        except (sqlite3.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
            raise self.damaged("its study record", exc) from None
        if not isinstance(spec, dict):
            raise self.damaged("its study record", "the spec is not a table")
        return {"name": row[0], "recipe": row[1], "spec": spec, "created": row[3]}

    def recover(self) -> int:
        """Put runs left running by a process that no longer exists (this host) back to
        pending; returns how many."""
        host = socket.gethostname()
        n = 0
        with self.transaction():
            for rid, owner in self.db.execute("SELECT run_id, owner FROM runs WHERE status = "
                                              "'running'").fetchall():
                h, _, pid = (owner or "").rpartition(":")
                if h == host and pid.isdigit() and not _alive(int(pid)):
                    self.db.execute("UPDATE runs SET status = 'pending', owner = NULL WHERE "
                                    "run_id = ? AND status = 'running'", (rid,))
                    n += 1
        return n

    def restrict(self, ids) -> None:
        """From now on, through this connection, claim and count only the runs ``ids`` (a
        study's own: :meth:`fem.study.Study.run_ids`). Runs of an earlier version of its spec
        stay in the store as they are, pending or failed ones too, but are not run again."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS own_runs (run_id TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM temp.own_runs")
        self.db.executemany("INSERT OR IGNORE INTO temp.own_runs VALUES (?)",
                            ((str(i),) for i in ids))
        self.scope = " AND run_id IN (SELECT run_id FROM temp.own_runs)"

    def claim(self, *, retry_failed: bool = False):
        """Take the next pending (or, with ``retry_failed``, failed) run: (run_id, params) or
        None when there is none."""
        states = ("pending", "failed") if retry_failed else ("pending",)
        owner = f"{socket.gethostname()}:{os.getpid()}"
        with self.transaction():
            row = self.db.execute(
                f"SELECT run_id, params FROM runs WHERE status IN "
                f"({', '.join('?' * len(states))}){self.scope} ORDER BY idx LIMIT 1",
                states).fetchone()
            if row is None:
                return None
            try:  # before the run is taken: a damaged record leaves it as it was
                params = json.loads(row[1])
            except (ValueError, TypeError) as exc:
                raise self.damaged(f"the parameters of run {row[0]}", exc) from None
            self.db.execute("UPDATE runs SET status = 'running', owner = ?, started = ?, "
                            "error = NULL, attempts = attempts + 1 WHERE run_id = ?",
                            (owner, time.time(), row[0]))
        return row[0], params

    def finish(self, rid: str, out: dict, vtu: str | None):
        """Record a finished run: its metrics rows and status, in one transaction."""
        cols = ["level"] + _metric_columns()
        names = ", ".join('"%s"' % c for c in cols)
        with self.transaction():
            self.db.execute("DELETE FROM metrics WHERE run_id = ?", (rid,))
            self.db.executemany(
                f"INSERT INTO metrics (run_id, {names}) "
                f"VALUES (?, {', '.join('?' * len(cols))})",
                [[rid] + [r.get(c) for c in cols] for r in out["rows"]])
            self.db.execute(
                "UPDATE runs SET status = 'done', finished = ?, timings = ?, backend = ?, "
                "solver = ?, iterations = ?, n_dof = ?, versions = ?, vtu = ?, error = NULL "
                "WHERE run_id = ?",
                (time.time(), json.dumps(out["timings"]), out["backend"], out["solver"],
                 out["iterations"], out["n_dof"], json.dumps(_versions()), vtu, rid))

    def fail(self, rid: str, error: str):
        with self.transaction():
            self.db.execute("UPDATE runs SET status = 'failed', finished = ?, error = ?, "
                            "versions = ? WHERE run_id = ?",
                            (time.time(), error, json.dumps(_versions()), rid))

    def release(self, rid: str):
        """Give a claimed run back (the process is stopping before running it)."""
        with self.transaction():
            self.db.execute("UPDATE runs SET status = 'pending', owner = NULL, attempts = "
                            "attempts - 1 WHERE run_id = ? AND status = 'running'", (rid,))

    def counts(self) -> dict:
        try:
            return dict(self.db.execute(f"SELECT status, COUNT(*) FROM runs WHERE 1{self.scope} "
                                        "GROUP BY status").fetchall())
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self.damaged("its runs table", exc) from None

    def runs_frame(self):
        return self._frame("SELECT * FROM runs ORDER BY idx", "its runs table")

    def metrics_frame(self):
        """The metrics table; a store opened read-only, not migrated, reads with its renamed
        columns under their new names and the columns added since it was written as NaN."""
        df = self._frame("SELECT * FROM metrics", "its metrics table")
        df = df.rename(columns={old: new for old, new in RENAMED_METRICS.items()
                                if old in df.columns and new not in df.columns})
        for c in _metric_columns():
            if c not in df.columns:
                df[c] = None if c in TEXT_METRICS else float("nan")
        return df

    def _frame(self, query: str, what: str):
        import pandas as pd

        try:
            return pd.read_sql_query(query, self.db)
        except (sqlite3.Error, UnicodeDecodeError, pd.errors.DatabaseError) as exc:
            raise self.damaged(what, exc) from None


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one writer at a time."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, tb):
        if kind is None:
            try:
                self.db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:  # disk full at COMMIT: undone
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise StoreError(_write_failed(self.db, exc)) from None
            return False
        if self.db.in_transaction:  # SQLite may have rolled back already (a full disk)
            self.db.execute("ROLLBACK")
        if isinstance(value, sqlite3.DatabaseError):  # disk full while writing: undone
            raise StoreError(_write_failed(self.db, value)) from None
        return False


def _write_failed(db, exc) -> str:
    path = db.execute("PRAGMA database_list").fetchone()[2]
    return (f"writing the study store {path} failed ({exc}); the store is as it was before "
            "this change (free disk space and run the study again: it resumes)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
