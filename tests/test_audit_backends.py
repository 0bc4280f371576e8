"""One audit chain wherever it lives: the JSON-lines file beside a SQLite journal, or the
`audit` table of a shared PostgreSQL journal. Both chain every record to the one before,
name the first record that was changed or removed, and stay one unbroken chain when
several processes append at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steps.audit import GENESIS, Audit, AuditLog, DatabaseAuditLog, line_hash

N = 8


@pytest.fixture
def where(backend, handrail_home) -> str:
    """The journal's location for this backend: the home's SQLite file or the database URL."""
    return os.environ.get("HANDRAIL_DATABASE_URL") or str(handrail_home / "journal.sqlite3")


def open_chain(where: str, home: Path) -> Audit:
    from steps.audit import open_audit
    from steps.journal import Journal

    return open_audit(Journal(where), home / "audit.jsonl")


@pytest.fixture
def chain(where, handrail_home) -> Audit:
    audit = open_chain(where, handrail_home)
    for n in range(1, N + 1):
        audit.append(f"test.event.{n}", session=f"s-{n % 2}", actor="arn:aws:iam::123456789012:user/op", context={"n": n})
    return audit


def raw_lines(audit: Audit) -> list[str]:
    if isinstance(audit, AuditLog):
        return audit.path.read_text().splitlines()
    assert isinstance(audit, DatabaseAuditLog)
    return [line for _, line in audit._lines()]


def tamper(audit: Audit, seq: int, how: str) -> None:
    """Change the stored chain behind handrail's back, as someone with write access could."""
    if isinstance(audit, AuditLog):
        lines = audit.path.read_bytes().splitlines(keepends=True)
        if how == "edit":
            record = json.loads(lines[seq - 1])
            record["actor"] = "arn:aws:iam::123456789012:user/someone-else"
            lines[seq - 1] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        else:
            del lines[seq - 1]
        audit.path.write_bytes(b"".join(lines))
        return
    assert isinstance(audit, DatabaseAuditLog)
    with audit.backend.tx() as tx:
        if how == "edit":
            row = tx.one("SELECT line FROM audit WHERE seq = ?", (seq,))
            assert row is not None
            record = json.loads(row["line"])
            record["actor"] = "arn:aws:iam::123456789012:user/someone-else"
            tx.run("UPDATE audit SET line = ? WHERE seq = ?", (json.dumps(record, separators=(",", ":")), seq))
        else:
            tx.run("DELETE FROM audit WHERE seq = ?", (seq,))


def test_each_record_carries_the_hash_of_the_one_before(chain):
    lines = raw_lines(chain)
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, N + 1))
    assert records[0]["prev"] == GENESIS
    for before, record in zip(lines, records[1:]):
        assert record["prev"] == line_hash(before.encode())
    assert chain.verify().ok and chain.verify().lines == N


def test_a_record_of_a_session_is_found_and_listed(chain):
    assert chain.find("s-1", "test.event.7") == 7
    assert chain.find("s-1", "test.event.2") is None
    assert [r["context"]["n"] for r in chain.for_session("s-0")] == [2, 4, 6, 8]


@pytest.mark.parametrize("seq", [1, 4, N])
def test_an_edited_record_breaks_the_chain_at_that_record(chain, seq):
    tamper(chain, seq, "edit")
    verdict = chain.verify()
    assert not verdict.ok
    assert verdict.bad_line == (seq + 1 if seq < N else N)  # the next record no longer vouches for it; the last, the head


@pytest.mark.parametrize("seq", [3, N])
def test_a_removed_record_breaks_the_chain(chain, seq):
    tamper(chain, seq, "delete")
    verdict = chain.verify()
    assert not verdict.ok
    assert verdict.bad_line in (seq, seq + 1) if seq < N else verdict.bad_line == N


def test_the_chain_is_redacted_like_the_file(chain):
    from steps.secrets import REDACTOR, Secret

    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    Secret(secret, "test secret")
    try:
        chain.append("test.leak", context={"oops": f"secret={secret}"})
    finally:
        REDACTOR.forget(secret)
    assert secret not in "\n".join(raw_lines(chain))
    assert chain.verify().ok


APPENDER = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from steps.audit import open_audit
from steps.journal import Journal
audit = open_audit(Journal({where!r}), Path({home!r}) / "audit.jsonl")
for n in range({count}):
    audit.append("test.concurrent", session="p-" + sys.argv[1], context={{"n": n}})
"""


@pytest.mark.slow
def test_concurrent_appends_from_several_processes_keep_one_unbroken_chain(where, handrail_home):
    root = str(Path(__file__).resolve().parents[1])
    processes, count = 4, 40
    script = APPENDER.format(root=root, where=where, home=str(handrail_home), count=count)
    running = [subprocess.Popen([sys.executable, "-c", script, str(i)]) for i in range(processes)]
    assert [p.wait(timeout=120) for p in running] == [0] * processes
    audit = open_chain(where, handrail_home)
    verdict = audit.verify()
    assert verdict.ok, verdict
    assert verdict.lines == processes * count
    records = list(audit.records())
    for i in range(processes):  # each process's records in its own order
        assert [r["context"]["n"] for r in records if r["session"] == f"p-{i}"] == list(range(count))
