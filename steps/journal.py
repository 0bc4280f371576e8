"""The journal: where every rotation stands, in SQLite (one operator's file, mode 0600)
or PostgreSQL (a team's shared database): steps/db.py says what either must do.

Sessions, step events, facts (key ids and timestamps: never secret values) and a lock
per (AWS account, IAM user) so that two sessions never rotate the same user at once.
Campaigns group sessions (a due fleet, an offboarding): each planned target, why it is
there, and the session that runs it. Every text is passed through the redactor before
it is written.

Locks are leases. The row of (account, user) names its session, the process driving it
(host:pid), the operator, a fencing token and an expiry. A process renews its leases on
every write of the session and from a heartbeat thread; a write whose token no longer
matches is refused (LeaseLost): a process that lost its lease cannot write. The lock
belongs to the session, not to the process: when the process lets go (a gate, an exit)
the lease is parked (no holder, no expiry) and only that session, resumed from any
host, takes it up again; a crashed process's lease expires and then, again, only a
resume of its session takes it over. Another session never gets the user until the
session holding it is done, rolled back or abandoned.
"""

from __future__ import annotations

import json
import os
import secrets as _random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from steps.db import Backend, DatabaseUrlError, JournalUnavailable, is_url
from steps.db import SchemaMismatch as SchemaMismatch  # re-exported: callers catch it from the journal
from steps.db_sqlite import SCHEMA as SCHEMA  # re-exported: the SQLite schema's first version (tests build old journals with it)
from steps.secrets import redact
from steps.status import SessionStatus
from steps.text import shown


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
    def __init__(self, account: str, target: str, holder: SessionRow | None, since: str, host: str = "", parked: bool = False) -> None:
        self.account, self.target, self.holder, self.host = account, target, holder, host
        held = (
            f"session {holder.id} ({holder.mode}, {holder.status}, started {holder.created_at} by {holder.actor or 'unknown'})"
            if holder
            else "an unknown session"
        )
        on = f" on host {host}" + (" (parked: no process drives it now)" if parked else "") if host else ""
        super().__init__(
            f"IAM user {target} in account {account} is locked by {held}{on} since {since}: "
            f"resume it (handrail resume {holder.id if holder else '...'}) or roll it back before starting another"
        )


class SessionNotFound(Exception):
    pass


class CampaignNotFound(SessionNotFound):
    pass


class SessionBusy(Exception):
    """The session is being driven by another live process (its lease has not expired)."""


class LeaseLost(Exception):
    """This process no longer holds the session's lease: it may not write for it."""


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


def _dead_here(holder: str) -> bool:
    """The holder is a process of this host that is gone (its lease need not be waited out)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return not _alive_here(holder)


# One statement takes the lease: a new row, or the session's own row when it is parked,
# held by this very process, or expired. Anything else (another session, another live
# process) returns no row, and the caller reads why.
_TAKE = """
INSERT INTO locks (account, target, session_id, acquired_at, holder, host, operator, token, heartbeat_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, {now}, {now} + ?)
ON CONFLICT (account, target) DO UPDATE SET
    holder = excluded.holder, host = excluded.host, operator = excluded.operator, token = excluded.token,
    heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
WHERE locks.session_id = excluded.session_id
  AND (locks.holder = '' OR locks.holder = excluded.holder OR locks.expires_at < {now})
RETURNING session_id
"""

_RENEW = "UPDATE locks SET heartbeat_at = {now}, expires_at = {now} + ? WHERE session_id = ? AND token = ?"


def open_backend(where: str | Path, *, upgrade: bool = True) -> Backend:
    """A path is a SQLite file (migrated on open: it is one operator's); a postgresql://
    URL is a shared server, whose schema only `handrail db upgrade` changes."""
    if is_url(where):
        from steps.db_postgres import PostgresBackend

        return PostgresBackend(str(where))
    if isinstance(where, str) and "://" in where:
        raise DatabaseUrlError(
            f"database {where.split('://')[0]}://…: handrail keeps its journal in SQLite (a path) or PostgreSQL (postgresql://…)"
        )
    from steps.db_sqlite import SqliteBackend

    return SqliteBackend(Path(where), upgrade=upgrade)


class Journal:
    def __init__(self, where: Path | str, now: Callable[[], str] = now_iso, *, lease_seconds: float | None = None) -> None:
        """`where`: a SQLite file, or a postgresql:// URL. `now` stamps real time (ISO
        8601, UTC); a demo or a snapshot test can freeze it."""
        self.backend = open_backend(where)
        self.kind = self.backend.kind
        self.where = self.backend.where
        self.path = Path(where) if self.kind == "sqlite" else None
        self._now = now
        self.lease_seconds = lease_seconds or float(os.environ.get("HANDRAIL_LEASE_SECONDS", "120"))
        self.host = socket.gethostname()
        self.holder = f"{self.host}:{os.getpid()}"
        self._leases: dict[str, str] = {}  # session id -> the fencing token this process holds
        self._lost: set[str] = set()
        self._leases_lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _tx(self) -> Any:
        return self.backend.tx()

    def _read(self) -> Any:
        return self.backend.read()

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=5)
        self.backend.close()

    # -- sessions -----------------------------------------------------------------------

    def create_session(self, *, lock: tuple[str, str] | None = None, operator: str = "", **fields: Any) -> SessionRow:
        """A new session; with `lock` (account, IAM user), its lease in the same
        transaction: refused (LockHeld), nothing is written."""
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
        with self._tx() as tx:
            tx.run(f"INSERT INTO sessions ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))
            if lock is not None:
                self._take(tx, lock[0], lock[1], row["id"], operator or row["actor"])
        return self.session(row["id"])

    def update_session(self, session_id: str, **fields: Any) -> None:
        if not fields:
            return
        fields["updated_at"] = self._now()
        for key in ("inputs", "options"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        values = [redact(v) if isinstance(v, str) else v for v in fields.values()]
        with self._tx() as tx:
            self._fence(tx, session_id)
            tx.run(f"UPDATE sessions SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", [*values, session_id])

    def session(self, session_id: str) -> SessionRow:
        with self._read() as tx:
            row = tx.one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if row is None:
            raise SessionNotFound(f"no session {shown(session_id)} in {self.where}")
        return _session_row(row)

    def find_session(self, ref: str) -> SessionRow:
        """An exact id, a unique prefix or suffix, or 'last': the session touched most
        recently (a resumed old session beats a newer one left alone)."""
        with self._read() as tx:
            if ref == "last":
                # updated_at has whole seconds: the latest event's id breaks a tie.
                row = tx.one(
                    "SELECT * FROM sessions ORDER BY updated_at DESC,"
                    " COALESCE((SELECT MAX(id) FROM events WHERE events.session_id = sessions.id), 0) DESC, created_at DESC, {rowid} DESC LIMIT 1"
                )
                if row is None:
                    raise SessionNotFound(f"no sessions in {self.where}")
                return _session_row(row)
            like = _like(ref)
            rows = tx.rows("SELECT * FROM sessions WHERE id = ? OR id LIKE ? OR id LIKE ?", (ref, f"{like}%", f"%{like}"))
        exact = [r for r in rows if r["id"] == ref]
        if exact:
            return _session_row(exact[0])
        if not rows:
            raise SessionNotFound(f"no session {shown(ref)} (handrail sessions lists them)")
        if len(rows) > 1:
            raise SessionNotFound(f"{shown(ref)} matches {len(rows)} sessions: {', '.join(r['id'] for r in rows[:5])}")
        return _session_row(rows[0])

    def sessions(self, limit: int = 200) -> list[SessionRow]:
        with self._read() as tx:
            rows = tx.rows("SELECT * FROM sessions ORDER BY created_at DESC, {rowid} DESC LIMIT ?", (limit,))
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
        with self._tx() as tx:
            self._fence(tx, session_id)
            row = tx.one(
                "INSERT INTO events (session_id, step_id, kind, status, summary, evidence, ts_real, ts_sim) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (session_id, step_id, kind, status, redact(summary), redact(json.dumps(evidence or [])), self._now(), ts_sim),
            )
            tx.run("UPDATE sessions SET updated_at = ? WHERE id = ?", (self._now(), session_id))
        assert row is not None
        return int(row["id"])

    def events(self, session_id: str) -> list[EventRow]:
        with self._read() as tx:
            rows = tx.rows("SELECT * FROM events WHERE session_id = ? ORDER BY id", (session_id,))
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
        with self._tx() as tx:
            self._fence(tx, session_id)
            tx.many(
                "INSERT INTO facts (session_id, name, value, step_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(session_id, name) DO UPDATE SET value = excluded.value, step_id = excluded.step_id",
                [(session_id, k, redact(str(v)), step_id) for k, v in facts.items()],
            )

    def facts(self, session_id: str) -> dict[str, str]:
        with self._read() as tx:
            rows = tx.rows("SELECT name, value FROM facts WHERE session_id = ?", (session_id,))
        return {r["name"]: r["value"] for r in rows}

    # -- approvals by a second operator --------------------------------------------------

    def add_approval(
        self, session_id: str, step_id: str, *, approver: str, account: str, reason: str, expires_in: float, os_user: str = ""
    ) -> ApprovalRow:
        stamp = self._now()
        created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        expires = (created + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._tx() as tx:
            row = tx.one(
                "INSERT INTO approvals (session_id, step_id, approver, account, reason, os_user, host, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (session_id, step_id, approver, account, redact(reason), redact(os_user), socket.gethostname(), stamp, expires),
            )
            tx.run("UPDATE sessions SET updated_at = ? WHERE id = ?", (stamp, session_id))
        assert row is not None
        return ApprovalRow(**row)

    def approvals(self, session_id: str, step_id: str | None = None) -> list[ApprovalRow]:
        """A session's approvals, oldest first (one step's, when named)."""
        query = "SELECT * FROM approvals WHERE session_id = ?" + (" AND step_id = ?" if step_id else "") + " ORDER BY id"
        with self._read() as tx:
            rows = tx.rows(query, (session_id, step_id) if step_id else (session_id,))
        return [ApprovalRow(**r) for r in rows]

    def now(self) -> str:
        """Real time as the journal stamps it (ISO 8601, UTC, whole seconds)."""
        return self._now()

    # -- validations of runbooks (the SOP's sandbox-rotation method) ----------------------

    def record_validation(
        self, runbook_id: str, mode: str, account: str, session_id: str | None, started_at: str, outcome: str, detail: str
    ) -> None:
        with self._tx() as tx:
            tx.run(
                "INSERT INTO validations (runbook_id, mode, account, session_id, started_at, finished_at, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (runbook_id, mode, account, session_id, started_at, self._now(), outcome, redact(detail)),
            )

    def last_validation(self, runbook_id: str, mode: str | None = None) -> dict[str, Any] | None:
        query = "SELECT * FROM validations WHERE runbook_id = ?" + (" AND mode = ?" if mode else "") + " ORDER BY id DESC LIMIT 1"
        with self._read() as tx:
            row = tx.one(query, (runbook_id, mode) if mode else (runbook_id,))
        return dict(row) if row else None

    # -- campaigns ----------------------------------------------------------------------

    def create_campaign(self, *, name: str, kind: str, mode: str, targets: list[dict[str, Any]], **fields: Any) -> CampaignRow:
        """A campaign and its planned targets ({runbook, target, inputs, why}), in one transaction."""
        campaign_id = fields.get("id") or "c-" + new_session_id()
        stamp = self._now()
        with self._tx() as tx:
            tx.run(
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
                    fields.get("world"),
                ),
            )
            tx.many(
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
        with self._tx() as tx:
            tx.run(f"UPDATE campaigns SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", [*values, campaign_id])

    def update_target(self, campaign_id: str, position: int, **fields: Any) -> None:
        values = [redact(v) if isinstance(v, str) else v for v in fields.values()]
        with self._tx() as tx:
            tx.run(
                f"UPDATE campaign_targets SET {', '.join(f'{k} = ?' for k in fields)} WHERE campaign_id = ? AND position = ?",
                [*values, campaign_id, position],
            )
            tx.run("UPDATE campaigns SET updated_at = ? WHERE id = ?", (self._now(), campaign_id))

    def campaign(self, campaign_id: str) -> CampaignRow:
        with self._read() as tx:
            row = tx.one("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
        if row is None:
            raise CampaignNotFound(f"no campaign {shown(campaign_id)} in {self.where}")
        return _campaign_row(row)

    def find_campaign(self, ref: str) -> CampaignRow:
        """An exact id, a unique prefix or suffix, a name, or 'last'."""
        with self._read() as tx:
            if ref == "last":
                rows = tx.rows("SELECT * FROM campaigns ORDER BY created_at DESC, {rowid} DESC LIMIT 1")
                if not rows:
                    raise CampaignNotFound(f"no campaigns in {self.where}")
            else:
                like = _like(ref)
                rows = tx.rows(
                    "SELECT * FROM campaigns WHERE id = ? OR id LIKE ? OR id LIKE ? OR name = ? ORDER BY created_at DESC, {rowid} DESC",
                    (ref, f"{like}%", f"%{like}", ref),
                )
        if ref == "last":
            return _campaign_row(rows[0])
        exact = [r for r in rows if r["id"] == ref] or [r for r in rows if r["name"] == ref]
        if len(exact) == 1:
            return _campaign_row(exact[0])
        rows = exact or rows
        if not rows:
            raise CampaignNotFound(f"no campaign {shown(ref)} (handrail campaign list lists them)")
        if len(rows) > 1:
            raise CampaignNotFound(f"{shown(ref)} matches {len(rows)} campaigns: {', '.join(r['id'] for r in rows[:5])}")
        return _campaign_row(rows[0])

    def campaigns(self, limit: int = 200) -> list[CampaignRow]:
        with self._read() as tx:
            rows = tx.rows("SELECT * FROM campaigns ORDER BY created_at DESC, {rowid} DESC LIMIT ?", (limit,))
        return [_campaign_row(r) for r in rows]

    def targets(self, campaign_id: str) -> list[TargetRow]:
        with self._read() as tx:
            rows = tx.rows("SELECT * FROM campaign_targets WHERE campaign_id = ? ORDER BY position", (campaign_id,))
        out = []
        for data in rows:
            data["inputs"] = json.loads(data["inputs"] or "{}")
            out.append(TargetRow(**data))
        return out

    def campaign_sessions(self, campaign_id: str) -> dict[str, SessionRow]:
        """The campaign's sessions by id (one query, not one per target)."""
        with self._read() as tx:
            rows = tx.rows("SELECT * FROM sessions WHERE campaign_id = ?", (campaign_id,))
        return {r["id"]: _session_row(r) for r in rows}

    def campaign_facts(self, campaign_id: str, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
        """Some facts of every session of a campaign: {session id: {name: value}}."""
        with self._read() as tx:
            rows = tx.rows(
                f"SELECT f.session_id, f.name, f.value FROM facts f JOIN sessions s ON s.id = f.session_id "
                f"WHERE s.campaign_id = ? AND f.name IN ({', '.join('?' for _ in names)})",
                (campaign_id, *names),
            )
        out: dict[str, dict[str, str]] = {}
        for r in rows:
            out.setdefault(r["session_id"], {})[r["name"]] = r["value"]
        return out

    # -- locks (leases) -----------------------------------------------------------------

    def check_lock(self, account: str, target: str) -> None:
        """Raise LockHeld if another session holds (account, target); changes nothing."""
        with self._read() as tx:
            row = tx.one("SELECT * FROM locks WHERE account = ? AND target = ?", (account, target))
            if row is not None:
                raise self._held(tx, row)

    def _held(self, tx: Any, row: dict[str, Any]) -> LockHeld:
        other = tx.one("SELECT * FROM sessions WHERE id = ?", (row["session_id"],))
        return LockHeld(
            row["account"],
            row["target"],
            _session_row(other) if other else None,
            row["acquired_at"],
            host=row.get("host") or row["holder"].rpartition(":")[0],
            parked=not row["holder"],
        )

    def acquire_lock(self, account: str, target: str, session_id: str, operator: str = "") -> None:
        """Take (or take up again) the session's lease on (account, target): LockHeld if
        another session holds the user, SessionBusy if another live process drives it."""
        with self._tx() as tx:
            self._take(tx, account, target, session_id, operator)

    def _take(self, tx: Any, account: str, target: str, session_id: str, operator: str) -> None:
        token = _random.token_hex(8)
        won = tx.one(
            _TAKE,
            (account, target, session_id, self._now(), self.holder, self.host, redact(operator), token, self.lease_seconds),
        )
        if won is None:
            row = tx.one("SELECT l.*, {now} AS db_now FROM locks l WHERE account = ? AND target = ?", (account, target))
            assert row is not None  # the conflict was on this row, and this transaction sees it
            if row["session_id"] != session_id:
                raise self._held(tx, row)
            if not _dead_here(row["holder"]):
                until = (
                    f"its lease runs {max(0, round(row['expires_at'] - row['db_now']))}s more unless renewed"
                    if row["expires_at"] is not None
                    else "it holds no expiry"
                )
                raise SessionBusy(
                    f"session {session_id} is open in another process ({row['holder']}, operator {row['operator'] or 'unknown'}); "
                    f"{until}: close it there first"
                )
            # Its process on this host is gone: no need to wait out the lease. Compare-and-swap
            # on the old token, so two resumers cannot both win.
            if not tx.run(
                "UPDATE locks SET holder = ?, host = ?, operator = ?, token = ?, heartbeat_at = {now}, expires_at = {now} + ? "
                "WHERE account = ? AND target = ? AND token = ?",
                (self.holder, self.host, redact(operator), token, self.lease_seconds, account, target, row["token"]),
            ):
                raise SessionBusy(f"session {session_id} was just taken up by another process: close it there first")
        with self._leases_lock:
            self._leases[session_id] = token
            self._lost.discard(session_id)
        self._start_heartbeat()

    def _fence(self, tx: Any, session_id: str) -> None:
        """A write of a session this process drives carries its lease token: refused if
        the lease was taken over or released elsewhere (and the write renews it)."""
        if session_id in self._lost:
            raise LeaseLost(f"session {session_id}: this process lost its lease on the session's IAM user; it writes nothing more for it")
        token = self._leases.get(session_id)
        if token is None:
            return
        if not tx.run(_RENEW, (self.lease_seconds, session_id, token)):
            with self._leases_lock:
                self._leases.pop(session_id, None)
                self._lost.add(session_id)
            raise LeaseLost(
                f"session {session_id}: another process took over or released its lock (the lease expired?); this process writes nothing more for it"
            )

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or not self._heartbeat.is_alive():
            self._heartbeat = threading.Thread(target=self._beat, name="journal-heartbeat", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        """Renew this process's leases while it lives (a long wait inside a step writes nothing)."""
        while not self._stop.wait(self.lease_seconds / 3):
            self.renew()

    def renew(self) -> None:
        with self._leases_lock:
            held = dict(self._leases)
        for session_id, token in held.items():
            try:
                with self._tx() as tx:
                    renewed = tx.run(_RENEW, (self.lease_seconds, session_id, token))
            except (JournalUnavailable, OSError):
                continue  # the next beat tries again; the write that needs it will stop cleanly
            except Exception:
                continue
            if not renewed:
                with self._leases_lock:
                    if self._leases.get(session_id) == token:
                        self._leases.pop(session_id, None)
                        self._lost.add(session_id)

    def release_holder(self, session_id: str) -> None:
        """The process driving the session lets go of it: the lease is parked (no holder,
        no expiry) and waits for the session to be resumed, from any host."""
        with self._leases_lock:
            token = self._leases.pop(session_id, None)
        if token is None:
            return
        with self._tx() as tx:
            tx.run(
                "UPDATE locks SET holder = '', token = '', expires_at = NULL, heartbeat_at = {now} WHERE session_id = ? AND token = ?",
                (session_id, token),
            )

    def release_lock(self, session_id: str) -> None:
        with self._tx() as tx:
            self._fence(tx, session_id)
            tx.run("DELETE FROM locks WHERE session_id = ?", (session_id,))
        with self._leases_lock:
            self._leases.pop(session_id, None)

    def lock_of(self, session_id: str) -> tuple[str, str] | None:
        with self._read() as tx:
            row = tx.one("SELECT account, target FROM locks WHERE session_id = ?", (session_id,))
        return (row["account"], row["target"]) if row else None

    def lease(self, account: str, target: str) -> dict[str, Any] | None:
        """The lock row of (account, IAM user), with the database's clock as `db_now`."""
        with self._read() as tx:
            row: dict[str, Any] | None = tx.one(
                "SELECT l.*, {now} AS db_now FROM locks l WHERE account = ? AND target = ?", (account, target)
            )
        return row

    def holds_lease(self, session_id: str) -> bool:
        return session_id in self._leases


def _campaign_row(row: dict[str, Any]) -> CampaignRow:
    data = dict(row)
    data.pop("n", None)
    data["options"] = json.loads(data["options"] or "{}")
    return CampaignRow(**data)


def _session_row(row: dict[str, Any]) -> SessionRow:
    data = dict(row)
    data.pop("n", None)
    data["inputs"] = json.loads(data["inputs"] or "{}")
    data["options"] = json.loads(data["options"] or "{}")
    data["status"] = SessionStatus(data["status"])
    return SessionRow(**data)


_ID_PART = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def _like(ref: str) -> str:
    """A reference as a LIKE prefix/suffix: only the characters ids are made of (never
    % or _, which would match any session); anything else, or nothing, matches no id."""
    return ref if ref.strip() and set(ref) <= _ID_PART else " no id has a space "
