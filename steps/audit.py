"""The audit log: append-only JSON lines, each carrying the hash of the line before.

Changing, removing or reordering any line breaks the chain at that line, which
`verify` reports. The last line has no successor to vouch for it, so a head file beside
the log (`audit.jsonl.head`: the last sequence number and hash) anchors it: an edited or
removed last line no longer matches the head. Appends take an exclusive file lock, so
two processes never write the same sequence number. Every line passes through the
redactor.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from steps.paths import private_file
from steps.secrets import redact

if TYPE_CHECKING:
    from steps.db import Backend, Tx
    from steps.journal import Journal

GENESIS = "0" * 64


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


@dataclass
class Verdict:
    ok: bool
    lines: int
    bad_line: int | None = None
    reason: str = ""
    note: str = ""


def _broken_link(n: int, raw: bytes | str, prev: str, what: str) -> Verdict | None:
    """Record n of a chain, as stored: why it does not follow `prev`, or None when it does.
    The one rule for a link, whether the chain is a file's lines or a table's rows."""
    try:
        record = json.loads(raw)
    except ValueError:
        return Verdict(False, n, n, "not valid JSON")
    if not isinstance(record, dict):
        return Verdict(False, n, n, "not a JSON object")
    if record.get("prev") != prev:
        return Verdict(False, n, n, f"its 'prev' hash does not match the {what} before: a {what} was changed, removed or inserted")
    if record.get("seq") != n:
        return Verdict(False, n, n, f"sequence number {record.get('seq')!r}, expected {n}")
    return None


@dataclass
class _Pending:
    record: dict[str, Any]
    seq: int | None = None
    error: BaseException | None = None


class Audit(Protocol):
    """What the engine and the commands ask of an audit chain, wherever it lives."""

    where: str

    def append(
        self, action: str, *, session: str | None = None, actor: str | None = None, context: dict[str, Any] | None = None, **fields: Any
    ) -> int: ...

    def records(self) -> Iterator[dict[str, Any]]: ...

    def find(self, session: str, action: str) -> int | None: ...

    def for_session(self, session: str) -> list[dict[str, Any]]: ...

    def verify(self) -> Verdict: ...


class _GroupCommit:
    """Group commit: the threads of one process (a campaign's sessions) that append
    while another is writing hand their records to the next writer, which chains and
    writes them all at once (one file lock and fsync, or one transaction), in the order
    they came."""

    def __init__(self) -> None:
        self._queue_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._writer = threading.Lock()  # one writer at a time in this process; the file lock or the database orders processes

    def append(
        self, action: str, *, session: str | None = None, actor: str | None = None, context: dict[str, Any] | None = None, **fields: Any
    ) -> int:
        """Append one record; returns its sequence number (1-based)."""
        record: dict[str, Any] = {
            "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "action": action,
            "actor": actor or "",
            "session": session,
        }
        if context is not None:
            record["context"] = context
        record.update({k: v for k, v in fields.items() if v is not None})
        item = _Pending(record)
        with self._queue_lock:
            self._pending.append(item)
        with self._writer:
            if item.seq is None and item.error is None:
                with self._queue_lock:
                    batch, self._pending = self._pending, []
                try:
                    self._write(batch)
                except BaseException as exc:
                    for pending in batch:
                        pending.seq, pending.error = None, exc
                    raise
        if item.error is not None:
            raise item.error
        assert item.seq is not None
        return item.seq

    def _write(self, batch: list[_Pending]) -> None:
        raise NotImplementedError

    def for_session(self, session: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("session") == session]

    def records(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError


def chain(batch: list[_Pending], seq: int, prev: str) -> list[tuple[int, _Pending, bytes]]:
    """Number and link a batch after (seq, prev): (seq, item, line) each, redacted."""
    out = []
    for item in batch:
        seq += 1
        record = {"seq": seq, **item.record, "prev": prev}
        line = redact(json.dumps(record, separators=(",", ":"), default=str)).encode()
        out.append((seq, item, line))
        prev = line_hash(line)
        item.seq = seq
    return out


class AuditLog(_GroupCommit):
    """The chain in a JSON-lines file (the journal in SQLite keeps its audit here)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.where = str(self.path)
        private_file(self.path)

    @property
    def head_path(self) -> Path:
        return self.path.with_name(self.path.name + ".head")

    def _write_head(self, seq: int, digest: str) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{seq} {digest}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.head_path)

    def _read_head(self) -> tuple[int, str] | None:
        try:
            seq, digest = self.head_path.read_text().split()
            return int(seq), digest
        except (OSError, ValueError):
            return None

    def _write(self, batch: list[_Pending]) -> None:
        with open(self.path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                last = _last_line(fh)
                if last is None:
                    seq, prev = 0, GENESIS
                else:
                    seq, prev = int(json.loads(last)["seq"]), line_hash(last)
                lines = [line for _, _, line in chain(batch, seq, prev)]
                fh.seek(0, os.SEEK_END)
                fh.write(b"".join(line + b"\n" for line in lines))
                fh.flush()
                os.fsync(fh.fileno())
                self._write_head(seq + len(lines), line_hash(lines[-1]))
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def records(self) -> Iterator[dict[str, Any]]:
        with open(self.path, "rb") as fh:
            for raw in fh:
                if raw.strip():
                    yield json.loads(raw)

    def find(self, session: str, action: str) -> int | None:
        """The line number of `session`'s `action` record, or None. Read from the end back
        to the session's start: a log that grows with every rotation is not read whole
        for each one (a campaign's steps 8 would make that quadratic)."""
        needle = f'"session":{json.dumps(session)}'.encode()
        with open(self.path, "rb") as fh:
            for raw in _lines_backwards(fh):
                if needle not in raw:
                    continue
                record = json.loads(raw)
                if record.get("session") != session:
                    continue
                if record.get("action") == action:
                    return int(record["seq"])
                if record.get("action") == "session.started":
                    return None  # nothing of this session comes before its start
        return None

    def verify(self) -> Verdict:
        prev = GENESIS
        n = 0
        with open(self.path, "rb") as fh:
            for n, raw in enumerate(fh, start=1):
                if not raw.endswith(b"\n"):
                    return Verdict(False, n, n, "line is not terminated (truncated write?)")
                broken = _broken_link(n, raw, prev, "line")
                if broken is not None:
                    return broken
                prev = line_hash(raw)
        head = self._read_head()
        if head is None:
            if n == 0:
                return Verdict(True, 0)
            return Verdict(True, n, note=f"no head file ({self.head_path.name}): the last line is not anchored")
        seq, digest = head
        if seq != n:
            where = n + 1 if seq > n else seq + 1
            return Verdict(
                False, n, where, f"the head file records {seq} lines, the log has {n}: lines were removed or appended outside handrail"
            )
        if digest != prev:
            return Verdict(False, n, n, "the last line does not match the head file: it was changed")
        return Verdict(True, n)


class DatabaseAuditLog(_GroupCommit):
    """The chain in the journal's database: one chain per database, whichever process or
    host appends. Each append is one short transaction that locks the chain's head row
    (SELECT … FOR UPDATE), so concurrent appenders queue for a moment and never fork
    the chain; the head row anchors the last line as the head file does for the file."""

    PAGE = 1000

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        self.where = f"{backend.where} (table audit)"

    def _write(self, batch: list[_Pending]) -> None:
        with self.backend.tx() as tx:
            self.write_in(tx, batch)

    def write_in(self, tx: Tx, batch: list[_Pending]) -> None:
        """Chain `batch` inside the caller's transaction (an import writes it with the rows)."""
        head = tx.one("SELECT seq, hash FROM audit_head WHERE id = 1{for_update}")
        if head is None:
            raise RuntimeError(f"{self.where}: the audit chain has no head row (run `handrail db upgrade`)")
        lines = chain(batch, int(head["seq"]), head["hash"])
        tx.many(
            "INSERT INTO audit (seq, session, action, line) VALUES (?, ?, ?, ?)",
            [(seq, item.record.get("session"), item.record["action"], line.decode()) for seq, item, line in lines],
        )
        tx.run("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (lines[-1][0], line_hash(lines[-1][2])))

    def _lines(self) -> Iterator[tuple[int, str]]:
        after = 0
        while True:
            with self.backend.read() as tx:
                rows = tx.rows("SELECT seq, line FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, self.PAGE))
            if not rows:
                return
            for row in rows:
                yield int(row["seq"]), row["line"]
            after = int(rows[-1]["seq"])

    def records(self) -> Iterator[dict[str, Any]]:
        for _, line in self._lines():
            yield json.loads(line)

    def find(self, session: str, action: str) -> int | None:
        with self.backend.read() as tx:
            row = tx.one("SELECT seq FROM audit WHERE session = ? AND action = ? ORDER BY seq DESC LIMIT 1", (session, action))
        return int(row["seq"]) if row else None

    def for_session(self, session: str) -> list[dict[str, Any]]:
        with self.backend.read() as tx:
            rows = tx.rows("SELECT line FROM audit WHERE session = ? ORDER BY seq", (session,))
        return [json.loads(r["line"]) for r in rows]

    def verify(self) -> Verdict:
        prev = GENESIS
        n = 0
        for n, (seq, line) in enumerate(self._lines(), start=1):
            if seq != n:
                return Verdict(False, n - 1, n, f"sequence number {seq} where {n} was expected: a record was removed")
            broken = _broken_link(n, line, prev, "record")
            if broken is not None:
                return broken
            prev = line_hash(line.encode())
        with self.backend.read() as tx:
            head = tx.one("SELECT seq, hash FROM audit_head WHERE id = 1")
        if head is None:
            return Verdict(False, n, n + 1, "the chain's head row is missing")
        if int(head["seq"]) != n:
            where = n + 1 if int(head["seq"]) > n else int(head["seq"]) + 1
            return Verdict(
                False,
                n,
                where,
                f"the head row records {head['seq']} records, the table has {n}: records were removed or added outside handrail",
            )
        if head["hash"] != prev:
            return Verdict(False, n, n, "the last record does not match the head row: it was changed")
        return Verdict(True, n)


def open_audit(journal: Journal, path: Path) -> Audit:
    """The chain in the journal's database when it is a shared one, else the local file."""
    if journal.kind == "sqlite":
        return AuditLog(path)
    return DatabaseAuditLog(journal.backend)


def _lines_backwards(fh: BinaryIO, block: int = 65536) -> Iterator[bytes]:
    """The non-empty lines of a file opened in binary mode, last first."""
    fh.seek(0, os.SEEK_END)
    pos = fh.tell()
    rest = b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        chunk = bytes(fh.read(step)) + rest
        lines = chunk.split(b"\n")
        rest = lines.pop(0)  # may be the tail of a line that starts in the block before
        for line in reversed(lines):
            if line.strip():
                yield line
    if rest.strip():
        yield rest


def _last_line(fh: BinaryIO) -> bytes | None:
    """The last non-empty line of a file opened in binary mode, read from the end."""
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    if end == 0:
        return None
    block = 4096
    data = b""
    pos = end
    while pos > 0:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        data = bytes(fh.read(step)) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    stripped = data.rstrip(b"\n")
    return stripped or None
