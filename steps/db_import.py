"""`handrail db import FILE`: an operator's SQLite journal (and its audit file) into the
team's database, in one transaction: all of it or, refused, nothing.

Sessions, events (in their order, under new ids), facts, validations, campaigns and their
targets, and locks (parked: the session is resumed from wherever, later) keep their ids.
The audit lines cannot keep their own chain inside the database's one chain (their first
line starts from the genesis hash, the database's chain does not), so they are re-chained:
a `journal.imported` record first (the file, how many lines, and the hash of its last
line, which the file's head anchored), then each line as a record of its own with the
original's fields and `imported: {seq, from}`. The file was verified before: a broken
chain is not imported. Its own chain stays checkable in the file kept beside.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.audit import AuditLog, DatabaseAuditLog, _Pending, line_hash
from steps.journal import Journal

_TABLES = ("campaigns", "sessions", "events", "facts", "validations", "campaign_targets", "locks", "approvals")


class ImportRefused(Exception):
    """Nothing was imported."""


@dataclass
class Imported:
    counts: dict[str, int]
    audit_lines: int


def import_journal(source: Path, dest: Journal, audit_file: Path | None, actor: str) -> Imported:
    if dest.kind == "sqlite":
        raise ImportRefused("db import brings a SQLite journal into a shared database: give --database or HANDRAIL_DATABASE_URL")
    if not source.is_file():
        raise ImportRefused(f"{source}: no such file")
    lines: list[bytes] = []
    if audit_file is not None:
        verdict = AuditLog(audit_file).verify()
        if not verdict.ok:
            raise ImportRefused(f"{audit_file}: line {verdict.bad_line}: {verdict.reason}; nothing imported")
        lines = [raw for raw in audit_file.read_bytes().splitlines() if raw.strip()]
    try:
        src = Journal(source)
    except Exception as exc:
        raise ImportRefused(f"{source}: not a handrail journal ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    try:
        with src.backend.read() as tx:
            rows: dict[str, list[dict[str, Any]]] = {
                "campaigns": tx.rows("SELECT * FROM campaigns ORDER BY {rowid}"),
                "sessions": tx.rows("SELECT * FROM sessions ORDER BY {rowid}"),
                "events": tx.rows("SELECT * FROM events ORDER BY id"),
                "facts": tx.rows("SELECT * FROM facts"),
                "validations": tx.rows("SELECT * FROM validations ORDER BY id"),
                "campaign_targets": tx.rows("SELECT * FROM campaign_targets ORDER BY campaign_id, position"),
                "locks": tx.rows("SELECT * FROM locks"),
                "approvals": tx.rows("SELECT * FROM approvals ORDER BY id"),
            }
    finally:
        src.close()
    for row in rows["events"] + rows["validations"] + rows["approvals"]:
        row.pop("id")  # the database numbers them anew, in the same order
    for row in rows["locks"]:  # parked: no process of the old journal drives it any more
        row.update(holder="", token="", expires_at=None, heartbeat_at=None)
    with dest.backend.tx() as tx:
        for table, key in (("sessions", "id"), ("campaigns", "id")):
            ids = [r[key] for r in rows[table]]
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                clash = tx.rows(f"SELECT {key} FROM {table} WHERE {key} IN ({', '.join('?' for _ in part)})", part)
                if clash:
                    raise ImportRefused(f"{table[:-1]} {clash[0][key]} is already in {dest.where}: nothing imported (imported before?)")
        for lock in rows["locks"]:
            held = tx.one("SELECT session_id FROM locks WHERE account = ? AND target = ?", (lock["account"], lock["target"]))
            if held:
                raise ImportRefused(
                    f"IAM user {lock['target']} in account {lock['account']} is locked in both journals "
                    f"(session {lock['session_id']} here, {held['session_id']} there): finish one first; nothing imported"
                )
        for table in _TABLES:
            if rows[table]:
                columns = list(rows[table][0])
                tx.many(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                    [[r[c] for c in columns] for r in rows[table]],
                )
        if lines:
            marker = _Pending(
                {
                    "ts": dest._now(),
                    "action": "journal.imported",
                    "actor": actor,
                    "session": None,
                    "context": {
                        "file": str(audit_file),
                        "journal": str(source),
                        "lines": len(lines),
                        "last_line_hash": line_hash(lines[-1]),
                        "sessions": len(rows["sessions"]),
                    },
                }
            )
            batch = [marker]
            for raw in lines:
                record = json.loads(raw)
                seq = record.pop("seq")
                record.pop("prev", None)
                record["imported"] = {"seq": seq, "from": str(audit_file)}
                batch.append(_Pending(record))
            DatabaseAuditLog(dest.backend).write_in(tx, batch)
    return Imported({t: len(rows[t]) for t in _TABLES}, len(lines))
