"""The journal: one lock per (AWS account, IAM user), private files under HANDRAIL_HOME,
and enough recorded to know where every session stands."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from steps import paths
from steps.journal import Journal, LockHeld, SessionBusy, SessionNotFound
from steps.wiring import TrainingWiring


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the lock -----------------------------------------------------------------------------------


def test_a_second_session_on_the_same_user_is_refused_naming_the_holder(backend, rig, lean):
    world = rig.world(lean)
    first = rig.start(world)
    rig.run_steps(first, 3)
    keys = rig.keys(world)

    with pytest.raises(LockHeld) as refused:
        rig.start(world)

    message = str(refused.value)
    assert first.id in message
    assert f"handrail resume {first.id}" in message
    assert "raxx-vault-operator" in message and world.aws.account_id in message
    assert refused.value.holder.id == first.id
    assert rig.engine.journal.lock_of(first.id) == (world.aws.account_id, "raxx-vault-operator")
    assert rig.keys(world) == keys  # the refused session touched nothing


def test_the_lock_is_refused_from_another_process_too(backend, rig, lean):
    world = rig.world(lean)
    first = rig.start(world)
    with pytest.raises(LockHeld, match=first.id):
        rig.start(world, engine=rig.new_engine())


def test_a_refused_session_writes_nothing_to_the_journal(backend, rig, lean):
    world = rig.world(lean)
    first = rig.start(world)
    with pytest.raises(LockHeld):
        rig.start(world)
    assert [row.id for row in rig.engine.journal.sessions()] == [first.id]
    assert rig.engine.journal.unfinished() == [rig.engine.journal.session(first.id)]


def test_a_session_open_in_another_live_process_cannot_be_resumed_until_that_process_ends(backend, rig, lean):
    import socket
    import subprocess

    world = rig.world(lean)
    first = rig.start(world)
    other = subprocess.Popen(["sleep", "60"])
    try:
        # The lease as that process would hold it: live, and not expired.
        with rig.engine.journal.backend.tx() as tx:
            tx.run("UPDATE locks SET holder = ? WHERE session_id = ?", (f"{socket.gethostname()}:{other.pid}", first.id))
        with pytest.raises(SessionBusy, match=str(other.pid)):
            rig.new_engine().resume(first.id, lambda row: TrainingWiring(world))
    finally:
        other.kill()
        other.wait()
    resumed = rig.new_engine().resume(first.id, lambda row: TrainingWiring(world))
    assert rig.drive(resumed).code == 0


@pytest.mark.parametrize("how", ["done", "rolled-back", "abandoned"])
def test_after_the_first_session_ends_a_new_one_may_start(backend, rig, lean, how):
    world = rig.world(lean)
    first = rig.start(world)
    if how == "done":
        assert rig.drive(first).code == 0
    elif how == "rolled-back":
        rig.run_steps(first, 3)
        assert first.rollback()[0]
    else:
        rig.run_steps(first, 3)
        first.abandon("handed over to the next shift")
    assert first.status == how
    assert rig.engine.journal.lock_of(first.id) is None

    second = rig.start(world)

    assert rig.engine.journal.lock_of(second.id) == (world.aws.account_id, "raxx-vault-operator")


def test_abandoning_needs_a_reason_and_is_audited(backend, rig, lean):
    from steps.engine import EngineError

    session = rig.start(rig.world(lean))
    with pytest.raises(EngineError):
        session.abandon("  ")
    assert rig.engine.journal.lock_of(session.id) is not None
    session.abandon("wrong user picked")
    records = [r for r in rig.engine.audit.records() if r.get("session") == session.id]
    assert any(r["action"] == "session.abandon" and r["context"]["reason"] == "wrong user picked" for r in records)


def test_a_session_whose_process_died_keeps_its_lock_and_resumes_with_it(backend, rig, lean):
    world = rig.world(lean)
    first = rig.start(world)
    rig.run_steps(first, 3)
    first_id = first.id
    del first

    with pytest.raises(LockHeld, match=first_id):
        rig.start(world, engine=rig.new_engine())
    resumed = rig.new_engine().resume(first_id, lambda row: TrainingWiring(world))
    assert rig.drive(resumed).code == 0
    assert resumed.journal.lock_of(first_id) is None


def test_the_lock_is_per_user_another_user_in_the_same_account_may_rotate(backend, rig, scenario_file):
    path = scenario_file("two-users", other_users={"raxx-s3-backup": [{"status": "Active", "age": "40d", "last_used": "1h"}]})
    world = rig.world(path)
    first = rig.start(world)

    second = rig.start(world, target_user="raxx-s3-backup", check_call=None)

    assert rig.engine.journal.lock_of(second.id) == (world.aws.account_id, "raxx-s3-backup")
    assert rig.engine.journal.lock_of(first.id) == (world.aws.account_id, "raxx-vault-operator")
    assert rig.drive(second).code == 0
    assert rig.keys(world, "raxx-s3-backup") == {second.facts["new_key_id"]: "Active"}


def test_the_cli_refuses_a_second_run_on_a_locked_user_with_exit_3(backend, live_world, cli, runbook_without_settle):
    first = cli("run", runbook_without_settle, "--mode", "live", "--user", "raxx-vault-operator", "--json")  # no --yes: stops before step 2
    assert first.exit_code == 3, first.output
    holder = json.loads(first.stdout)["session"]

    second = cli("run", runbook_without_settle, "--mode", "live", "--user", "raxx-vault-operator", "--yes", "--json")
    assert second.exit_code == 3
    assert second.stdout == ""
    assert holder in second.stderr and "locked" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert len(live_world.aws.iam.users["raxx-vault-operator"].access_keys) == 1

    abandoned = cli("abandon", holder, "--reason", "test: start over")
    assert abandoned.exit_code == 0, abandoned.output
    third = cli("run", runbook_without_settle, "--mode", "live", "--user", "raxx-vault-operator", "--json")
    assert third.exit_code == 3
    assert "locked" not in third.output and json.loads(third.stdout)["session"] != holder


# -- files --------------------------------------------------------------------------------------


def test_handrail_home_holds_the_journal_and_the_audit_log(handrail_home, cli, lean):
    assert paths.journal_path() == handrail_home / "journal.sqlite3"
    assert paths.audit_path() == handrail_home / "audit.jsonl"
    result = cli("run", "--scenario", lean, "--yes", "--fast-forward", "--confirm-irreversible", "--json")
    assert result.exit_code == 0, result.output
    assert (handrail_home / "journal.sqlite3").is_file()
    assert (handrail_home / "audit.jsonl").is_file()
    assert json.loads(cli("sessions", "--all", "--json").stdout)[0]["session"] == json.loads(result.stdout)["session"]


def test_another_handrail_home_sees_other_sessions(handrail_home, tmp_path, cli, monkeypatch, lean):
    assert cli("run", "--scenario", lean, "--yes", "--json").exit_code == 3
    assert len(json.loads(cli("sessions", "--json").stdout)) == 1

    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("HANDRAIL_HOME", str(elsewhere))
    assert json.loads(cli("sessions", "--json").stdout) == []
    assert (elsewhere / "journal.sqlite3").is_file()


def test_journal_and_audit_files_are_private_even_with_a_permissive_umask(tmp_path):
    from steps.audit import AuditLog

    home = tmp_path / "fresh"
    old = os.umask(0)
    try:
        journal = Journal(home / "journal.sqlite3")
        audit = AuditLog(home / "audit.jsonl")
        audit.append("test.event", context={"x": 1})
        journal.create_session(runbook_id="r", runbook_path="p", runbook_sha="s", mode="training")
    finally:
        os.umask(old)
    assert mode_of(home / "journal.sqlite3") == 0o600
    assert mode_of(home / "audit.jsonl") == 0o600
    assert mode_of(home) == 0o700
    journal.close()


def test_the_journal_mode_is_repaired_when_reopened(tmp_path):
    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    os.chmod(path, 0o644)
    Journal(path).close()
    assert mode_of(path) == 0o600


def test_the_cli_journal_is_0600(handrail_home, cli, lean):
    assert cli("run", "--scenario", lean, "--yes", "--fast-forward", "--confirm-irreversible").exit_code == 0
    assert mode_of(handrail_home / "journal.sqlite3") == 0o600
    assert mode_of(handrail_home / "audit.jsonl") == 0o600


# -- what the journal records -------------------------------------------------------------------


def test_the_journal_records_sessions_events_and_key_id_facts(backend, rig, lean):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    assert rig.drive(session).code == 0

    journal = Journal(os.environ.get("HANDRAIL_DATABASE_URL") or paths.journal_path())
    row = journal.session(session.id)
    assert (row.runbook_id, row.mode, row.target, row.account, row.status) == (
        "aws-iam-access-key",
        "training",
        "raxx-vault-operator",
        world.aws.account_id,
        "done",
    )
    facts = journal.facts(session.id)
    assert facts["old_key_id"] == old_id and facts["new_key_id"] == session.facts["new_key_id"]
    events = journal.events(session.id)
    done_steps = [e.step_id for e in events if e.kind == "step"]
    assert done_steps == [s.step.id for s in session.step_states()]
    assert all(e.ts_sim for e in events if e.kind == "step")  # training records simulated time
    journal.close()


def test_find_session_by_prefix_suffix_and_last(backend, rig, lean):
    world = rig.world(lean)
    session = rig.start(world)
    journal = rig.engine.journal
    assert journal.find_session(session.id[:12]).id == session.id
    assert journal.find_session(session.id[-4:]).id == session.id
    assert journal.find_session("last").id == session.id
    with pytest.raises(SessionNotFound):
        journal.find_session("19990101-000000-dead")


def test_last_is_the_session_touched_most_recently(backend, tmp_path: Path):
    """A resumed older session is `last`, not a newer one left alone since."""
    clock = ["2026-01-01T10:00:00Z"]
    journal = Journal(os.environ.get("HANDRAIL_DATABASE_URL") or tmp_path / "journal.db", now=lambda: clock[0])
    fields = {"runbook_id": "r", "runbook_path": "r.yaml", "runbook_sha": "0", "mode": "training"}
    older = journal.create_session(id="20260101-100000-aaaa", **fields)
    clock[0] = "2026-01-01T11:00:00Z"
    newer = journal.create_session(id="20260101-110000-bbbb", **fields)
    assert journal.find_session("last").id == newer.id
    clock[0] = "2026-01-01T12:00:00Z"
    journal.add_event(older.id, "started", step_id="pre-checks")  # the older one is resumed
    assert journal.find_session("last").id == older.id
    journal.add_event(newer.id, "started", step_id="pre-checks")  # the same second: the latest event decides
    assert journal.find_session("last").id == newer.id
    journal.close()
