"""The journal in SQLite (stdlib): one operator's file under HANDRAIL_HOME, mode 0600.

Migrated on open: the file is its owner's, so an older journal is brought up to date the
first time a newer handrail opens it (nothing is lost).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from steps.db import SCHEMA_VERSION, SchemaMismatch, template
from steps.paths import private_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id            TEXT PRIMARY KEY,
    runbook_id    TEXT NOT NULL,
    runbook_path  TEXT NOT NULL,
    runbook_sha   TEXT NOT NULL,
    mode          TEXT NOT NULL,
    target        TEXT NOT NULL DEFAULT '',
    account       TEXT NOT NULL DEFAULT '',
    actor         TEXT NOT NULL DEFAULT '',
    reason        TEXT NOT NULL DEFAULT '',
    inputs        TEXT NOT NULL DEFAULT '{}',
    options       TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    sim_offset    REAL,
    world         TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    step_id     TEXT,
    kind        TEXT NOT NULL,
    status      TEXT,
    summary     TEXT NOT NULL DEFAULT '',
    evidence    TEXT NOT NULL DEFAULT '[]',
    ts_real     TEXT NOT NULL,
    ts_sim      TEXT
);
CREATE INDEX IF NOT EXISTS events_by_session ON events(session_id, id);
CREATE TABLE IF NOT EXISTS facts (
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    step_id     TEXT,
    PRIMARY KEY (session_id, name)
);
CREATE TABLE IF NOT EXISTS validations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    runbook_id  TEXT NOT NULL,
    mode        TEXT NOT NULL,
    account     TEXT NOT NULL DEFAULT '',
    session_id  TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS locks (
    account     TEXT NOT NULL,
    target      TEXT NOT NULL,
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    acquired_at TEXT NOT NULL,
    holder      TEXT NOT NULL,
    PRIMARY KEY (account, target)
);
CREATE TABLE IF NOT EXISTS campaigns (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL DEFAULT '',
    mode          TEXT NOT NULL,
    account       TEXT NOT NULL DEFAULT '',
    actor         TEXT NOT NULL DEFAULT '',
    options       TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    sim_offset    REAL,
    world         TEXT
);
CREATE TABLE IF NOT EXISTS campaign_targets (
    campaign_id   TEXT NOT NULL REFERENCES campaigns(id),
    position      INTEGER NOT NULL,
    runbook       TEXT NOT NULL,
    target        TEXT NOT NULL,
    inputs        TEXT NOT NULL DEFAULT '{}',
    why           TEXT NOT NULL DEFAULT '',
    session_id    TEXT REFERENCES sessions(id),
    state         TEXT NOT NULL DEFAULT 'planned',
    detail        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (campaign_id, position)
);
"""

NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _v1(db: sqlite3.Connection) -> None:
    """The schema before versions were recorded, and the columns added to it since."""
    for statement in SCHEMA.split(";"):  # not executescript: it would commit the migration's transaction
        if statement.strip():
            db.execute(statement)
    have = {r["name"] for r in db.execute("PRAGMA table_info(sessions)")}
    if "campaign_id" not in have:
        db.execute("ALTER TABLE sessions ADD COLUMN campaign_id TEXT REFERENCES campaigns(id)")
    db.execute("CREATE INDEX IF NOT EXISTS sessions_by_campaign ON sessions(campaign_id)")


def _v2(db: sqlite3.Connection) -> None:
    """Locks become leases (holder host, operator, fencing token, expiry); the audit chain
    gets tables (used where the audit lives in the database)."""
    for column, declaration in (
        ("host", "TEXT NOT NULL DEFAULT ''"),
        ("operator", "TEXT NOT NULL DEFAULT ''"),
        ("token", "TEXT NOT NULL DEFAULT ''"),
        ("heartbeat_at", "REAL"),
        ("expires_at", "REAL"),
    ):
        db.execute(f"ALTER TABLE locks ADD COLUMN {column} {declaration}")
    # A lock from before leases: its host is the holder's, and it waits parked for its session.
    db.execute("UPDATE locks SET host = substr(holder, 1, instr(holder, ':') - 1) WHERE holder LIKE '%:%'")
    db.execute("UPDATE locks SET holder = ''")
    db.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY, session TEXT, action TEXT NOT NULL, line TEXT NOT NULL)")
    db.execute("CREATE INDEX audit_by_session ON audit(session, seq)")
    db.execute("CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL)")
    db.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?)", ("0" * 64,))


def _v3(db: sqlite3.Connection) -> None:
    """Approvals by a second operator (steps/approval.py)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS approvals (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL REFERENCES sessions(id), "
        "step_id TEXT NOT NULL, approver TEXT NOT NULL, account TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL, "
        "os_user TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, expires_at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS approvals_by_step ON approvals(session_id, step_id, id)")


MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [(1, _v1), (2, _v2), (3, _v3)]
assert MIGRATIONS[-1][0] == SCHEMA_VERSION


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @staticmethod
    def _sql(sql: str) -> str:
        return template(sql, NOW, "rowid", "")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute(self._sql(sql), tuple(params)).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self._db.execute(self._sql(sql), tuple(params)).fetchone()
        return dict(row) if row is not None else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(self._sql(sql), tuple(params)).rowcount

    def many(self, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(self._sql(sql), [tuple(p) for p in seq])


class SqliteBackend:
    kind = "sqlite"

    def __init__(self, path: Path, *, upgrade: bool = True) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        private_file(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA foreign_keys = ON")
        # WAL: a commit is an append, not an fsync (synchronous=NORMAL), so a campaign's
        # threads do not queue behind the disk. A crash of the process loses nothing; a
        # power cut may lose the last commits, and resume runs those steps again (every
        # action looks before it acts).
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        if upgrade:
            self.upgrade()
        for extra in (self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm"), self.path):
            if extra.exists():
                os.chmod(extra, 0o600)

    @contextmanager
    def tx(self) -> Iterator[_Tx]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[_Tx]:
        with self._lock:
            yield _Tx(self._db)

    def schema_version(self) -> int:
        with self._lock:
            tables = {r["name"] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "schema_version" in tables:
                row = self._db.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
                return int(row["v"] or 0)
            return 0

    def upgrade(self) -> list[int]:
        applied: list[int] = []
        with self._lock:
            have = self.schema_version()
            if have > SCHEMA_VERSION:
                raise SchemaMismatch(
                    f"journal {self.path} has schema version {have}, newer than this handrail's {SCHEMA_VERSION}: upgrade handrail"
                )
            for version, migrate in MIGRATIONS:
                if version <= have:
                    continue
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if self.schema_version() >= version:  # another process got there first
                        self._db.execute("ROLLBACK")
                        continue
                    migrate(self._db)
                    self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                    self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                applied.append(version)
        return applied

    def close(self) -> None:
        with self._lock:
            self._db.close()
