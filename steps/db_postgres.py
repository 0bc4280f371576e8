"""The journal in PostgreSQL: a team's shared journal (psycopg 3 and its pool).

Imported only when a postgresql:// URL is given, so the embedded default never loads
psycopg. The schema is changed only by `handrail db upgrade` (a shared server's schema is
not changed behind its owners' backs); opening a database whose schema is behind refuses.
A lost connection is JournalUnavailable: the caller stops cleanly and resumes later.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from steps.db import SCHEMA_VERSION, DatabaseUrlError, JournalUnavailable, SchemaMismatch, template

NOW = "extract(epoch from clock_timestamp())::float8"

_V1 = [
    """CREATE TABLE sessions (
        n             BIGSERIAL,
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
        sim_offset    DOUBLE PRECISION,
        world         TEXT,
        campaign_id   TEXT
    )""",
    """CREATE TABLE events (
        id          BIGSERIAL PRIMARY KEY,
        session_id  TEXT NOT NULL REFERENCES sessions(id),
        step_id     TEXT,
        kind        TEXT NOT NULL,
        status      TEXT,
        summary     TEXT NOT NULL DEFAULT '',
        evidence    TEXT NOT NULL DEFAULT '[]',
        ts_real     TEXT NOT NULL,
        ts_sim      TEXT
    )""",
    "CREATE INDEX events_by_session ON events(session_id, id)",
    """CREATE TABLE facts (
        session_id  TEXT NOT NULL REFERENCES sessions(id),
        name        TEXT NOT NULL,
        value       TEXT NOT NULL,
        step_id     TEXT,
        PRIMARY KEY (session_id, name)
    )""",
    """CREATE TABLE validations (
        id          BIGSERIAL PRIMARY KEY,
        runbook_id  TEXT NOT NULL,
        mode        TEXT NOT NULL,
        account     TEXT NOT NULL DEFAULT '',
        session_id  TEXT,
        started_at  TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        detail      TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE locks (
        account     TEXT NOT NULL,
        target      TEXT NOT NULL,
        session_id  TEXT NOT NULL REFERENCES sessions(id),
        acquired_at TEXT NOT NULL,
        holder      TEXT NOT NULL,
        PRIMARY KEY (account, target)
    )""",
    """CREATE TABLE campaigns (
        n             BIGSERIAL,
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        kind          TEXT NOT NULL DEFAULT '',
        mode          TEXT NOT NULL,
        account       TEXT NOT NULL DEFAULT '',
        actor         TEXT NOT NULL DEFAULT '',
        options       TEXT NOT NULL DEFAULT '{}',
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        sim_offset    DOUBLE PRECISION,
        world         TEXT
    )""",
    "ALTER TABLE sessions ADD FOREIGN KEY (campaign_id) REFERENCES campaigns(id)",
    "CREATE INDEX sessions_by_campaign ON sessions(campaign_id)",
    """CREATE TABLE campaign_targets (
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
    )""",
]

# Locks become leases; the audit chain lives here (one chain per database).
_V2 = [
    "ALTER TABLE locks ADD COLUMN host TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE locks ADD COLUMN operator TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE locks ADD COLUMN token TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE locks ADD COLUMN heartbeat_at DOUBLE PRECISION",
    "ALTER TABLE locks ADD COLUMN expires_at DOUBLE PRECISION",
    "CREATE TABLE audit (seq BIGINT PRIMARY KEY, session TEXT, action TEXT NOT NULL, line TEXT NOT NULL)",
    "CREATE INDEX audit_by_session ON audit(session, seq)",
    "CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL)",
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')",
]

# Approvals by a second operator (steps/approval.py).
_V3 = [
    """CREATE TABLE approvals (
        id          BIGSERIAL PRIMARY KEY,
        session_id  TEXT NOT NULL REFERENCES sessions(id),
        step_id     TEXT NOT NULL,
        approver    TEXT NOT NULL,
        account     TEXT NOT NULL DEFAULT '',
        reason      TEXT NOT NULL,
        os_user     TEXT NOT NULL DEFAULT '',
        host        TEXT NOT NULL DEFAULT '',
        created_at  TEXT NOT NULL,
        expires_at  TEXT NOT NULL
    )""",
    "CREATE INDEX approvals_by_step ON approvals(session_id, step_id, id)",
]

MIGRATIONS: list[tuple[int, list[str]]] = [(1, _V1), (2, _V2), (3, _V3)]
assert MIGRATIONS[-1][0] == SCHEMA_VERSION


def _env_number(name: str, default: float, low: float, high: float) -> float:
    """A number from the environment, or one line naming the variable (exit 2)."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # nan fails this too
        raise DatabaseUrlError(f"${name}: {text[:40]!r} is not a number from {low:g} to {high:g}")
    return value


def display(url: str) -> str:
    """The URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _is_connection_error(exc: BaseException) -> bool:
    """A lost or refused connection (not a constraint or a syntax error)."""
    import psycopg
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout | psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = getattr(exc, "sqlstate", None)
        return state is None or state.startswith(("08", "57P"))
    return False


class _Tx:
    def __init__(self, cur: Any) -> None:
        self._cur = cur

    @staticmethod
    def _sql(sql: str) -> str:
        return template(sql, NOW, "n", " FOR UPDATE").replace("%", "%%").replace("?", "%s")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self._cur.execute(self._sql(sql), tuple(params))
        return list(self._cur.fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        self._cur.execute(self._sql(sql), tuple(params))
        row = self._cur.fetchone()
        return dict(row) if row is not None else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cur.execute(self._sql(sql), tuple(params))
        return int(self._cur.rowcount)

    def many(self, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        if seq:
            self._cur.executemany(self._sql(sql), [tuple(p) for p in seq])


class PostgresBackend:
    kind = "postgresql"

    def __init__(self, url: str, *, check_schema: bool = True) -> None:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.url = url
        self.where = display(url)
        # How long a transaction waits for a connection (the server restarting) before
        # the step stops with JournalUnavailable.
        self.timeout = _env_number("HANDRAIL_DATABASE_TIMEOUT", 10.0, 0.1, 3600.0)
        pool_size = int(_env_number("HANDRAIL_DATABASE_POOL", 8, 1, 256))
        try:  # one plain connection first: a wrong password or database name says so at once
            psycopg.connect(url, connect_timeout=max(2, int(self.timeout))).close()
        except psycopg.Error as exc:
            raise self._unavailable(exc, "cannot be reached") from None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"row_factory": dict_row, "connect_timeout": max(2, int(self.timeout)), "application_name": "handrail"},
            timeout=self.timeout,
            check=ConnectionPool.check_connection,  # a connection the server dropped is not handed out
            open=False,
            name="handrail",
        )
        try:
            self._pool.open(wait=True, timeout=self.timeout)
        except PoolTimeout:
            self._pool.close()
            raise JournalUnavailable(f"the journal database {self.where} cannot be reached (waited {self.timeout:g}s)") from None
        if check_schema:
            have = self.schema_version()
            if have != SCHEMA_VERSION:
                self._pool.close()
                if have > SCHEMA_VERSION:
                    raise SchemaMismatch(
                        f"the journal database {self.where} has schema version {have}, newer than this handrail's {SCHEMA_VERSION}: upgrade handrail"
                    )
                raise SchemaMismatch(
                    f"the journal database {self.where} has schema version {have}, this handrail needs {SCHEMA_VERSION}: "
                    "run `handrail db upgrade` (it needs CREATE on the schema)"
                )

    def _unavailable(self, exc: BaseException, what: str = "is unreachable") -> JournalUnavailable:
        text = [line for line in str(exc).strip().splitlines() if line.strip()]
        why = text[0].strip() if text else type(exc).__name__
        return JournalUnavailable(f"the journal database {self.where} {what} ({why})")

    @contextmanager
    def _connection(self, write: bool) -> Iterator[_Tx]:
        try:
            with self._pool.connection() as conn:
                if write:
                    with conn.transaction(), conn.cursor() as cur:
                        yield _Tx(cur)
                else:
                    with conn.cursor() as cur:
                        yield _Tx(cur)
        except Exception as exc:
            if _is_connection_error(exc):
                raise self._unavailable(exc) from None
            raise

    def tx(self) -> Any:
        return self._connection(True)

    def read(self) -> Any:
        return self._connection(False)

    def schema_version(self) -> int:
        with self.read() as tx:
            exists = tx.one("SELECT to_regclass('schema_version') IS NOT NULL AS present")
            if not exists or not exists["present"]:
                return 0
            row = tx.one("SELECT MAX(version) AS v FROM schema_version")
        return int(row["v"] or 0) if row else 0

    def upgrade(self) -> list[int]:
        applied: list[int] = []
        with self.tx() as tx:
            # One upgrader at a time; the others find the work done.
            tx.run("SELECT pg_advisory_xact_lock(hashtext('handrail schema'))")
            tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            row = tx.one("SELECT MAX(version) AS v FROM schema_version")
            have = int(row["v"] or 0) if row else 0
            if have > SCHEMA_VERSION:
                raise SchemaMismatch(
                    f"the journal database {self.where} has schema version {have}, newer than this handrail's: upgrade handrail"
                )
            for version, statements in MIGRATIONS:
                if version <= have:
                    continue
                for statement in statements:
                    tx.run(statement)
                tx.run("INSERT INTO schema_version (version) VALUES (?)", (version,))
                applied.append(version)
        return applied

    def close(self) -> None:
        self._pool.close()
