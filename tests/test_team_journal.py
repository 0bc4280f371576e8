"""A team's shared journal: PostgreSQL behind `--database` / HANDRAIL_DATABASE_URL.

Locks are leases held by a session (fenced writes, parked at a gate, taken over only by
resuming that session), the schema is versioned and upgraded by `handrail db upgrade`, an
old SQLite journal comes in by `handrail db import`, and a database that goes away stops
a step cleanly and loses nothing."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pgserver
import pytest
from world_helpers import TARGET, Handrail, Served, handrail, home, served

from steps.db import SCHEMA_VERSION
from steps.journal import LeaseLost, LockHeld, SessionBusy
from steps.wiring import TrainingWiring


@pytest.fixture
def empty_database(pg_server: str, worker_id: str):
    name = f"handrail_empty_{worker_id}_{os.getpid()}"
    pgserver.admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    yield pgserver.with_database(pg_server, name)
    pgserver.admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- the schema ---------------------------------------------------------------------------------


def test_a_database_without_the_schema_is_refused_until_db_upgrade_applies_it(empty_database, cli):
    refused = cli("--database", empty_database, "sessions")
    assert refused.exit_code == 2
    assert "handrail db upgrade" in one_line(refused)

    upgraded = cli("--database", empty_database, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    applied = ", ".join(str(v) for v in range(1, SCHEMA_VERSION + 1))
    assert f"schema upgraded to version {SCHEMA_VERSION} (applied {applied})" in upgraded.stdout
    again = cli("--database", empty_database, "db", "upgrade")
    assert again.exit_code == 0 and "nothing to do" in again.stdout
    assert cli("--database", empty_database, "sessions").stdout.strip() == "no unfinished sessions"


def test_an_unreachable_or_unusable_database_is_one_line_and_no_traceback(cli, monkeypatch):
    monkeypatch.setenv("HANDRAIL_DATABASE_TIMEOUT", "2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    down = cli("--database", f"postgresql://someone:hunter2hunter2@127.0.0.1:{closed_port}/team", "sessions")
    assert down.exit_code == 1
    line = one_line(down)
    assert "cannot be reached" in line and "hunter2" not in line
    wrong = cli("--database", "mysql://db/team", "sessions")
    assert wrong.exit_code == 2 and "postgresql://" in one_line(wrong)


# -- leases -------------------------------------------------------------------------------------


def test_a_process_that_lost_its_lease_cannot_write_for_the_session(backend, rig, lean):
    world = rig.world(lean)
    first = rig.start(world)
    rig.run_steps(first, 2)
    before = len(rig.engine.journal.events(first.id))

    taken = rig.new_engine().resume(first.id, lambda row: TrainingWiring(world))  # the same host:pid takes it up
    with pytest.raises(LeaseLost):
        rig.step(first)

    assert len(taken.journal.events(first.id)) == before  # the loser wrote nothing, not even its step's start
    assert rig.drive(taken).code == 0


def test_a_lease_expired_elsewhere_is_taken_over_by_resuming_its_session_and_by_nothing_else(backend, rig, lean):
    world = rig.world(lean)
    first = rig.start(world)
    rig.run_steps(first, 2)
    first.journal.release_holder(first.id)  # the process lets go (its wiring, the world, stays up for the test)
    with rig.engine.journal.backend.tx() as tx:  # a crashed process on another host, its lease run out
        tx.run("UPDATE locks SET holder = 'laptop-7:4242', host = 'laptop-7', expires_at = {now} - 1 WHERE session_id = ?", (first.id,))

    with pytest.raises(LockHeld) as refused:
        rig.start(world, engine=rig.new_engine())
    assert first.id in str(refused.value) and "on host laptop-7" in str(refused.value)

    resumed = rig.new_engine().resume(first.id, lambda row: TrainingWiring(world))
    lease = resumed.journal.lease(world.aws.account_id, TARGET)
    assert lease["holder"] == resumed.journal.holder and lease["expires_at"] > lease["db_now"]
    assert rig.drive(resumed).code == 0


def test_a_live_lease_on_another_host_refuses_a_resume(backend, rig, lean):
    world = rig.world(lean)
    first = rig.start(world)
    first.journal.release_holder(first.id)  # the process lets go (its wiring, the world, stays up for the test)
    with rig.engine.journal.backend.tx() as tx:
        tx.run("UPDATE locks SET holder = 'laptop-7:4242', host = 'laptop-7', expires_at = {now} + 300 WHERE session_id = ?", (first.id,))
    with pytest.raises(SessionBusy, match="laptop-7:4242"):
        rig.new_engine().resume(first.id, lambda row: TrainingWiring(world))


def test_a_session_stopped_at_its_gate_keeps_the_user_locked_with_a_parked_lease(backend, rig, lean):
    world = rig.world(lean)
    first = rig.start(world)
    drove = rig.drive(first, fast_forward=False)
    assert first.status == "waiting", drove.text
    first.journal.release_holder(first.id)  # the process lets go (its wiring, the world, stays up for the test)

    lease = rig.engine.journal.lease(world.aws.account_id, TARGET)
    assert lease["session_id"] == first.id and lease["holder"] == "" and lease["expires_at"] is None  # never expires
    with pytest.raises(LockHeld, match="parked"):
        rig.start(world, engine=rig.new_engine())


def test_the_heartbeat_renews_a_lease_while_the_process_lives(backend, rig, lean, monkeypatch):
    monkeypatch.setenv("HANDRAIL_LEASE_SECONDS", "1.5")
    world = rig.world(lean)
    first = rig.start(world)
    journal = rig.engine.journal
    seen = journal.lease(world.aws.account_id, TARGET)["heartbeat_at"]
    # No write of the session meanwhile: only the heartbeat can carry the lease past
    # the time it would have expired. (Polled: on a loaded machine a beat comes late.)
    deadline = time.monotonic() + 20
    while (lease := journal.lease(world.aws.account_id, TARGET))["heartbeat_at"] <= seen + 1.5:
        assert time.monotonic() < deadline, f"the lease was not renewed past its first expiry: {lease}"
        time.sleep(0.1)
    assert lease["expires_at"] > lease["heartbeat_at"] > seen + 1.5
    assert first.id == lease["session_id"]


# -- import -------------------------------------------------------------------------------------


def test_db_import_brings_an_old_journal_in_once_with_its_audit_rechained(pg_url, cli, handrail_home):
    done = cli("run", "--yes", "--fast-forward", "--confirm-irreversible", "--json")  # the operator's own SQLite journal
    assert done.exit_code == 0, done.output
    session = json.loads(done.stdout)["session"]
    lines = (handrail_home / "audit.jsonl").read_text().splitlines()

    imported = cli("--database", pg_url, "db", "import", handrail_home / "journal.sqlite3")
    assert imported.exit_code == 0, imported.output
    assert f"{len(lines)} audit line(s) re-chained" in imported.stdout

    listed = json.loads(cli("--database", pg_url, "sessions", "--all", "--json").stdout)
    assert [s["session"] for s in listed] == [session] and listed[0]["status"] == "done"
    shown = json.loads(cli("--database", pg_url, "show", session, "--json").stdout)
    assert shown["new_key_id"] == json.loads(done.stdout)["new_key_id"]
    verified = cli("--database", pg_url, "audit", "verify")
    assert verified.exit_code == 0 and f"{len(lines) + 1} records, chain intact" in verified.stdout
    records = [json.loads(line) for line in cli("--database", pg_url, "audit", "show").stdout.splitlines()]
    assert records[0]["action"] == "journal.imported" and records[0]["context"]["lines"] == len(lines)
    assert [r["imported"]["seq"] for r in records[1:]] == list(range(1, len(lines) + 1))

    again = cli("--database", pg_url, "db", "import", handrail_home / "journal.sqlite3")
    assert again.exit_code == 2 and "already in" in one_line(again)
    assert len(cli("--database", pg_url, "audit", "show").stdout.splitlines()) == len(lines) + 1  # nothing added


# -- faults -------------------------------------------------------------------------------------


@pytest.fixture
def proxied(pg_url: str, monkeypatch):
    """HANDRAIL_DATABASE_URL through a proxy the test can kill (the server keeps running)."""
    from tcpproxy import Proxy

    parts = urlsplit(pg_url)
    proxy = Proxy(parts.port or 5432)
    proxy.start()
    url = urlunsplit((parts.scheme, f"{parts.username}@127.0.0.1:{proxy.port}", parts.path, "", ""))
    monkeypatch.setenv("HANDRAIL_DATABASE_URL", url)
    monkeypatch.setenv("HANDRAIL_DATABASE_TIMEOUT", "2")
    yield proxy
    proxy.kill()


@pytest.mark.slow
def test_the_database_going_away_in_a_step_stops_it_with_exit_1_and_resume_goes_on_when_it_is_back(proxied, pg_url, cli, monkeypatch):
    """The database becomes unreachable in the middle of step 4 (its action ran, its result
    cannot be recorded): one line, exit 1, every earlier record kept; back up, `handrail
    resume` runs step 4 again (it looks before it acts) and finishes."""
    killed: list[str] = []
    before_step = TrainingWiring.before_step

    def cut(self, step_id: str, attempt: int) -> None:
        before_step(self, step_id, attempt)
        if step_id == "create-key" and not killed:
            killed.append(step_id)
            proxied.kill()

    monkeypatch.setattr(TrainingWiring, "before_step", cut)
    stopped = cli("run", "--yes", "--fast-forward", "--confirm-irreversible", "--json")

    assert killed and stopped.exit_code == 1, stopped.output
    assert stopped.stdout == "" and "Traceback" not in stopped.output
    line = stopped.stderr.strip().splitlines()[-1]  # the steps' progress (stderr with --json), then the stop: one line
    assert line.startswith("handrail: the journal database") and "unreachable" in line
    session = re.search(r"handrail resume (\S+)`", line).group(1)

    import psycopg

    with psycopg.connect(pg_url) as conn:  # straight to the server: what was recorded before the cut
        kinds = [
            r[0] + ":" + (r[1] or "")
            for r in conn.execute("SELECT kind, step_id FROM events WHERE session_id = %s ORDER BY id", (session,))
        ]
    assert kinds[-1] == "started:create-key" and "step:free-key-slot" in kinds

    monkeypatch.setattr(TrainingWiring, "before_step", before_step)
    proxied.start()
    resumed = cli("resume", session, "--yes", "--fast-forward", "--confirm-irreversible", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["status"] == "done"
    assert cli("audit", "verify").exit_code == 0


# -- done: two operators, one user, one database --------------------------------------------------


@pytest.mark.slow
def test_two_homes_racing_for_one_user_on_a_shared_database_one_runs_one_is_refused(pg_url, served: Served, tmp_path: Path):
    homes = [tmp_path / "alice", tmp_path / "bob"]
    env = {**served.env, "HANDRAIL_DATABASE_URL": pg_url}
    operators = [Handrail(h, handrail_cwd(tmp_path, i), env) for i, h in enumerate(homes)]
    live = ("run", "--mode", "live", "--user", TARGET, "--yes", "--override-gate", "rehearsal", "--confirm-irreversible", "--json")

    procs = [op.popen(*live) for op in operators]  # at once
    deadline = time.monotonic() + 120
    while all(p.poll() is None for p in procs):  # the refused one ends first: the other rotates for a while
        assert time.monotonic() < deadline, "neither process ended"
        time.sleep(0.1)
    loser = next(i for i, p in enumerate(procs) if p.poll() is not None)
    winner = 1 - loser
    refused_out = procs[loser].communicate()[0].decode()
    assert procs[loser].returncode == 3, refused_out
    refusal = refused_out.strip().splitlines()[-1]
    held_by = re.search(r"locked by session (\S+) ", refusal).group(1)
    assert f"on host {socket.gethostname()}" in refusal

    assert procs[winner].poll() is None, "the winner ended before the loser could look"
    listed = json.loads(operators[loser]("sessions", "--json").stdout)  # the other home sees the running session
    assert [(s["session"], s["status"]) for s in listed] == [(held_by, "active")]

    out, _ = procs[winner].communicate(timeout=240)
    assert procs[winner].returncode == 0, out.decode()[-3000:]
    summary = json.loads(out.decode()[out.decode().index("{\n") :])
    assert summary["session"] == held_by and summary["status"] == "done"
    everything = json.loads(operators[loser]("sessions", "--all", "--json").stdout)
    assert [s["session"] for s in everything] == [held_by]  # the refused one left nothing behind
    for op in operators:
        verified = op("audit", "verify")
        assert verified.returncode == 0, verified.stderr
        assert "chain intact" in verified.stdout
    assert not any((h / "audit.jsonl").exists() for h in homes)  # the chain is the database's


def handrail_cwd(tmp_path: Path, i: int) -> Path:
    cwd = tmp_path / f"cwd-{i}"
    cwd.mkdir(exist_ok=True)
    return cwd


def test_an_old_sqlite_journal_s_lock_becomes_a_parked_lease_of_its_session(tmp_path, cli, monkeypatch):
    import sqlite3

    from steps.journal import SCHEMA, Journal

    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)  # a journal from before schema versions and leases
    db.execute(
        "INSERT INTO sessions (id, runbook_id, runbook_path, runbook_sha, mode, target, account, status, created_at, updated_at) "
        "VALUES ('s-old', 'aws-iam-access-key', 'x', 'y', 'live', 'u', '123456789012', 'waiting', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
    )
    db.execute("INSERT INTO locks VALUES ('123456789012', 'u', 's-old', '2026-01-01T00:00:00Z', 'laptop-3:999')")
    db.commit()
    db.close()

    journal = Journal(path)
    lease = journal.lease("123456789012", "u")
    assert (lease["session_id"], lease["holder"], lease["host"], lease["expires_at"]) == ("s-old", "", "laptop-3", None)
    assert journal.backend.schema_version() == SCHEMA_VERSION
    with pytest.raises(LockHeld, match="s-old.* on host laptop-3 \\(parked"):
        journal.check_lock("123456789012", "u")
    journal.acquire_lock("123456789012", "u", "s-old")  # its session takes it up again
    journal.close()

    monkeypatch.setenv("HANDRAIL_HOME", str(tmp_path))
    upgraded = cli("db", "upgrade")
    assert upgraded.exit_code == 0 and "nothing to do" in upgraded.stdout
    refused = cli("db", "import", path)  # into itself: a shared database is needed
    assert refused.exit_code == 2 and "--database" in one_line(refused)
