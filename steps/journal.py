"""The journal: where every rotation stands, in SQLite (stdlib), mode 0600.

Sessions, step events, facts (key ids and timestamps: never secret values) and a lock
per (AWS account, IAM user) so that two sessions never rotate the same user at once.
Campaigns group sessions (a due fleet, an offboarding): each planned target, why it is
there, and the session that runs it. Every text is passed through the redactor before
it is written.
"""

from __future__ import annotations

import json
import os
import secrets as _random
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from steps.paths import private_file
from steps.secrets import redact
from steps.status import SessionStatus

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
CREATE TABLE IF NOT EXISTS approvals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    step_id     TEXT NOT NULL,
    approver    TEXT NOT NULL,
    account     TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL,
    os_user     TEXT NOT NULL DEFAULT '',
    host        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_step ON approvals(session_id, step_id, id);
"""

# Columns added after a journal was first created: (table, column, declaration).
MIGRATIONS = (("sessions", "campaign_id", "TEXT REFERENCES campaigns(id)"),)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_session_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + _random.token_hex(2)


@dataclass
class SessionRow:
    id: str
    runbook_id: str
    runbook_path: str
    runbook_sha: str
    mode: str
    target: str
    account: str
    actor: str
    reason: str
    inputs: dict[str, str]
    options: dict[str, Any]
    status: SessionStatus
    created_at: str
    updated_at: str
    sim_offset: float | None
    world: str | None
    campaign_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.status.finished


@dataclass
class CampaignRow:
    id: str
    name: str
    kind: str
    mode: str
    account: str
    actor: str
    options: dict[str, Any]
    created_at: str
    updated_at: str
    sim_offset: float | None
    world: str | None


@dataclass
class TargetRow:
    """One planned target of a campaign: a runbook on an IAM user, why, and its session."""

    campaign_id: str
    position: int
    runbook: str
    target: str
    inputs: dict[str, str]
    why: str
    session_id: str | None
    state: str
    detail: str


@dataclass
class EventRow:
    id: int
    session_id: str
    step_id: str | None
    kind: str
    status: str | None
    summary: str
    evidence: list[str]
    ts_real: str
    ts_sim: str | None


@dataclass
class ApprovalRow:
    """A second operator's yes to one step of a session, until it expires (real time, UTC)."""

    id: int
    session_id: str
    step_id: str
    approver: str  # the approver's STS principal ARN
    account: str
    reason: str
    os_user: str
    host: str
    created_at: str
    expires_at: str

    def valid_at(self, now: str) -> bool:
        return now < self.expires_at


class LockHeld(Exception):
    def __init__(self, account: str, target: str, holder: SessionRow | None, since: str) -> None:
        self.account, self.target, self.holder = account, target, holder
        held = (
            f"session {holder.id} ({holder.mode}, {holder.status}, started {holder.created_at} by {holder.actor or 'unknown'})"
            if holder
            else "an unknown session"
        )
        super().__init__(
            f"IAM user {target} in account {account} is locked by {held} since {since}: "
            f"resume it (handrail resume {holder.id if holder else '...'}) or roll it back before starting another"
        )


class SessionNotFound(Exception):
    pass


class CampaignNotFound(SessionNotFound):
    pass


class SessionBusy(Exception):
    """The session is being driven by another live process on this host."""


def _alive_here(holder: str) -> bool:
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class Journal:
    def __init__(self, path: Path, now: Callable[[], str] = now_iso) -> None:
        """`now` stamps real time (ISO 8601, UTC); a demo or a snapshot test can freeze it."""
        self.path = Path(path)
        self._now = now
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
        self._db.executescript(SCHEMA)
        self._migrate()
        for extra in (self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm"), self.path):
            if extra.exists():
                os.chmod(extra, 0o600)

    def _migrate(self) -> None:
        """Journals made by an older handrail get the columns added since (nothing is lost)."""
        with self._lock:
            for table, column, declaration in MIGRATIONS:
                have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            self._db.execute("CREATE INDEX IF NOT EXISTS sessions_by_campaign ON sessions(campaign_id)")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- sessions -----------------------------------------------------------------------

    def create_session(self, **fields: Any) -> SessionRow:
        fields.setdefault("id", new_session_id())
        stamp = self._now()
        row = {
            "id": fields["id"],
            "runbook_id": fields["runbook_id"],
            "runbook_path": fields["runbook_path"],
            "runbook_sha": fields["runbook_sha"],
            "mode": fields["mode"],
            "target": fields.get("target", ""),
            "account": fields.get("account", ""),
            "actor": redact(fields.get("actor", "")),
            "reason": redact(fields.get("reason", "")),
            "inputs": redact(json.dumps(fields.get("inputs", {}))),
            "options": redact(json.dumps(fields.get("options", {}))),
            "status": fields.get("status", SessionStatus.ACTIVE),
            "created_at": stamp,
            "updated_at": stamp,
            "sim_offset": fields.get("sim_offset"),
            "world": None,
            "campaign_id": fields.get("campaign_id"),
        }
        with self._tx() as db:
            db.execute(
                f"INSERT INTO sessions ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
        return self.session(row["id"])

    def update_session(self, session_id: str, **fields: Any) -> None:
        if not fields:
            return
        fields["updated_at"] = self._now()
        for key in ("inputs", "options"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        values = [redact(v) if isinstance(v, str) else v for v in fields.values()]
        with self._tx() as db:
            db.execute(f"UPDATE sessions SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", [*values, session_id])

    def session(self, session_id: str) -> SessionRow:
        with self._lock:
            row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(f"no session {session_id!r} in {self.path}")
        return _session_row(row)

    def find_session(self, ref: str) -> SessionRow:
        """An exact id, a unique prefix or suffix, or 'last': the session touched most
        recently (a resumed old session beats a newer one left alone)."""
        with self._lock:
            if ref == "last":
                # updated_at has whole seconds: the latest event's id breaks a tie.
                row = self._db.execute(
                    "SELECT * FROM sessions ORDER BY updated_at DESC,"
                    " (SELECT MAX(id) FROM events WHERE events.session_id = sessions.id) DESC, created_at DESC, rowid DESC LIMIT 1"
                ).fetchone()
                if row is None:
                    raise SessionNotFound(f"no sessions in {self.path}")
                return _session_row(row)
            rows = self._db.execute("SELECT * FROM sessions WHERE id = ? OR id LIKE ? OR id LIKE ?", (ref, f"{ref}%", f"%{ref}")).fetchall()
        exact = [r for r in rows if r["id"] == ref]
        if exact:
            return _session_row(exact[0])
        if not rows:
            raise SessionNotFound(f"no session {ref!r} (handrail sessions lists them)")
        if len(rows) > 1:
            raise SessionNotFound(f"{ref!r} matches {len(rows)} sessions: {', '.join(r['id'] for r in rows[:5])}")
        return _session_row(rows[0])

    def sessions(self, limit: int = 200) -> list[SessionRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM sessions ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [_session_row(r) for r in rows]

    def unfinished(self) -> list[SessionRow]:
        return [s for s in self.sessions() if not s.finished]

    # -- events and facts ---------------------------------------------------------------

    def add_event(
        self,
        session_id: str,
        kind: str,
        *,
        step_id: str | None = None,
        status: str | None = None,
        summary: str = "",
        evidence: list[str] | None = None,
        ts_sim: str | None = None,
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO events (session_id, step_id, kind, status, summary, evidence, ts_real, ts_sim) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, step_id, kind, status, redact(summary), redact(json.dumps(evidence or [])), self._now(), ts_sim),
            )
            db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (self._now(), session_id))
            assert cur.lastrowid is not None
            return cur.lastrowid

    def events(self, session_id: str) -> list[EventRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM events WHERE session_id = ? ORDER BY id", (session_id,)).fetchall()
        return [
            EventRow(
                r["id"],
                r["session_id"],
                r["step_id"],
                r["kind"],
                r["status"],
                r["summary"],
                json.loads(r["evidence"]),
                r["ts_real"],
                r["ts_sim"],
            )
            for r in rows
        ]

    def set_facts(self, session_id: str, facts: dict[str, str], step_id: str | None = None) -> None:
        if not facts:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO facts (session_id, name, value, step_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(session_id, name) DO UPDATE SET value = excluded.value, step_id = excluded.step_id",
                [(session_id, k, redact(str(v)), step_id) for k, v in facts.items()],
            )

    def facts(self, session_id: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT name, value FROM facts WHERE session_id = ?", (session_id,)).fetchall()
        return {r["name"]: r["value"] for r in rows}

    # -- approvals by a second operator --------------------------------------------------

    def add_approval(
        self, session_id: str, step_id: str, *, approver: str, account: str, reason: str, expires_in: float, os_user: str = ""
    ) -> ApprovalRow:
        stamp = self._now()
        created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        expires = (created + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO approvals (session_id, step_id, approver, account, reason, os_user, host, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, step_id, approver, account, redact(reason), redact(os_user), socket.gethostname(), stamp, expires),
            )
            db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (stamp, session_id))
            assert cur.lastrowid is not None
            row_id = cur.lastrowid
        return next(a for a in self.approvals(session_id) if a.id == row_id)

    def approvals(self, session_id: str, step_id: str | None = None) -> list[ApprovalRow]:
        """A session's approvals, oldest first (one step's, when named)."""
        query = "SELECT * FROM approvals WHERE session_id = ?" + (" AND step_id = ?" if step_id else "") + " ORDER BY id"
        with self._lock:
            rows = self._db.execute(query, (session_id, step_id) if step_id else (session_id,)).fetchall()
        return [ApprovalRow(**dict(r)) for r in rows]

    def now(self) -> str:
        """Real time as the journal stamps it (ISO 8601, UTC, whole seconds)."""
        return self._now()

    # -- validations of runbooks (the SOP's sandbox-rotation method) ----------------------

    def record_validation(
        self, runbook_id: str, mode: str, account: str, session_id: str | None, started_at: str, outcome: str, detail: str
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO validations (runbook_id, mode, account, session_id, started_at, finished_at, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (runbook_id, mode, account, session_id, started_at, self._now(), outcome, redact(detail)),
            )

    def last_validation(self, runbook_id: str, mode: str | None = None) -> dict[str, Any] | None:
        query = "SELECT * FROM validations WHERE runbook_id = ?" + (" AND mode = ?" if mode else "") + " ORDER BY id DESC LIMIT 1"
        with self._lock:
            row = self._db.execute(query, (runbook_id, mode) if mode else (runbook_id,)).fetchone()
        return dict(row) if row else None

    # -- campaigns ----------------------------------------------------------------------

    def create_campaign(self, *, name: str, kind: str, mode: str, targets: list[dict[str, Any]], **fields: Any) -> CampaignRow:
        """A campaign and its planned targets ({runbook, target, inputs, why}), in one transaction."""
        campaign_id = fields.get("id") or "c-" + new_session_id()
        stamp = self._now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO campaigns (id, name, kind, mode, account, actor, options, created_at, updated_at, sim_offset, world) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    campaign_id,
                    redact(name),
                    kind,
                    mode,
                    fields.get("account", ""),
                    redact(fields.get("actor", "")),
                    redact(json.dumps(fields.get("options", {}))),
                    stamp,
                    stamp,
                    fields.get("sim_offset"),
                    None,
                ),
            )
            db.executemany(
                "INSERT INTO campaign_targets (campaign_id, position, runbook, target, inputs, why) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (campaign_id, i, t["runbook"], t["target"], redact(json.dumps(t.get("inputs", {}))), redact(t.get("why", "")))
                    for i, t in enumerate(targets)
                ],
            )
        return self.campaign(campaign_id)

    def update_campaign(self, campaign_id: str, **fields: Any) -> None:
        if "options" in fields:
            fields["options"] = json.dumps(fields["options"])
        fields["updated_at"] = self._now()
        values = [redact(v) if isinstance(v, str) else v for v in fields.values()]
        with self._tx() as db:
            db.execute(f"UPDATE campaigns SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", [*values, campaign_id])

    def update_target(self, campaign_id: str, position: int, **fields: Any) -> None:
        values = [redact(v) if isinstance(v, str) else v for v in fields.values()]
        with self._tx() as db:
            db.execute(
                f"UPDATE campaign_targets SET {', '.join(f'{k} = ?' for k in fields)} WHERE campaign_id = ? AND position = ?",
                [*values, campaign_id, position],
            )
            db.execute("UPDATE campaigns SET updated_at = ? WHERE id = ?", (self._now(), campaign_id))

    def campaign(self, campaign_id: str) -> CampaignRow:
        with self._lock:
            row = self._db.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        if row is None:
            raise CampaignNotFound(f"no campaign {campaign_id!r} in {self.path}")
        return _campaign_row(row)

    def find_campaign(self, ref: str) -> CampaignRow:
        """An exact id, a unique prefix or suffix, a name, or 'last'."""
        with self._lock:
            if ref == "last":
                rows = self._db.execute("SELECT * FROM campaigns ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchall()
                if not rows:
                    raise CampaignNotFound(f"no campaigns in {self.path}")
            else:
                rows = self._db.execute(
                    "SELECT * FROM campaigns WHERE id = ? OR id LIKE ? OR id LIKE ? OR name = ? ORDER BY created_at DESC, rowid DESC",
                    (ref, f"{ref}%", f"%{ref}", ref),
                ).fetchall()
        if ref == "last":
            return _campaign_row(rows[0])
        exact = [r for r in rows if r["id"] == ref] or [r for r in rows if r["name"] == ref]
        if len(exact) == 1:
            return _campaign_row(exact[0])
        rows = exact or rows
        if not rows:
            raise CampaignNotFound(f"no campaign {ref!r} (handrail campaign list lists them)")
        if len(rows) > 1:
            raise CampaignNotFound(f"{ref!r} matches {len(rows)} campaigns: {', '.join(r['id'] for r in rows[:5])}")
        return _campaign_row(rows[0])

    def campaigns(self, limit: int = 200) -> list[CampaignRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM campaigns ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [_campaign_row(r) for r in rows]

    def targets(self, campaign_id: str) -> list[TargetRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM campaign_targets WHERE campaign_id = ? ORDER BY position", (campaign_id,)).fetchall()
        out = []
        for r in rows:
            data = dict(r)
            data["inputs"] = json.loads(data["inputs"] or "{}")
            out.append(TargetRow(**data))
        return out

    def campaign_sessions(self, campaign_id: str) -> dict[str, SessionRow]:
        """The campaign's sessions by id (one query, not one per target)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM sessions WHERE campaign_id = ?", (campaign_id,)).fetchall()
        return {r["id"]: _session_row(r) for r in rows}

    def campaign_facts(self, campaign_id: str, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
        """Some facts of every session of a campaign: {session id: {name: value}}."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT f.session_id, f.name, f.value FROM facts f JOIN sessions s ON s.id = f.session_id "
                f"WHERE s.campaign_id = ? AND f.name IN ({', '.join('?' for _ in names)})",
                (campaign_id, *names),
            ).fetchall()
        out: dict[str, dict[str, str]] = {}
        for r in rows:
            out.setdefault(r["session_id"], {})[r["name"]] = r["value"]
        return out

    # -- locks --------------------------------------------------------------------------

    def check_lock(self, account: str, target: str) -> None:
        """Raise LockHeld if another session holds (account, target); changes nothing."""
        with self._lock:
            row = self._db.execute("SELECT * FROM locks WHERE account = ? AND target = ?", (account, target)).fetchone()
            if row is not None:
                other = self._db.execute("SELECT * FROM sessions WHERE id = ?", (row["session_id"],)).fetchone()
                raise LockHeld(account, target, _session_row(other) if other else None, row["acquired_at"])

    def acquire_lock(self, account: str, target: str, session_id: str) -> None:
        holder = f"{socket.gethostname()}:{os.getpid()}"
        with self._tx() as db:
            row = db.execute("SELECT * FROM locks WHERE account = ? AND target = ?", (account, target)).fetchone()
            if row is not None and row["session_id"] != session_id:
                other = db.execute("SELECT * FROM sessions WHERE id = ?", (row["session_id"],)).fetchone()
                raise LockHeld(account, target, _session_row(other) if other else None, row["acquired_at"])
            if row is None:
                db.execute(
                    "INSERT INTO locks (account, target, session_id, acquired_at, holder) VALUES (?, ?, ?, ?, ?)",
                    (account, target, session_id, self._now(), holder),
                )
            elif row["holder"] != holder:
                if row["holder"] and _alive_here(row["holder"]):
                    raise SessionBusy(f"session {session_id} is open in another process ({row['holder']}): close it there first")
                db.execute("UPDATE locks SET holder = ? WHERE session_id = ?", (holder, session_id))

    def release_holder(self, session_id: str) -> None:
        """The process driving the session let go of it (the lock itself stays)."""
        with self._tx() as db:
            db.execute(
                "UPDATE locks SET holder = '' WHERE session_id = ? AND holder = ?", (session_id, f"{socket.gethostname()}:{os.getpid()}")
            )

    def release_lock(self, session_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM locks WHERE session_id = ?", (session_id,))

    def lock_of(self, session_id: str) -> tuple[str, str] | None:
        with self._lock:
            row = self._db.execute("SELECT account, target FROM locks WHERE session_id = ?", (session_id,)).fetchone()
        return (row["account"], row["target"]) if row else None


def _campaign_row(row: sqlite3.Row) -> CampaignRow:
    data = dict(row)
    data["options"] = json.loads(data["options"] or "{}")
    return CampaignRow(**data)


def _session_row(row: sqlite3.Row) -> SessionRow:
    data = dict(row)
    data["inputs"] = json.loads(data["inputs"] or "{}")
    data["options"] = json.loads(data["options"] or "{}")
    data["status"] = SessionStatus(data["status"])
    return SessionRow(**data)
