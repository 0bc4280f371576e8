"""Undo and resume: rollback at every boundary before the point of no return, refusal
after it, and a process that dies at any step boundary (or inside a step) coming back
from the journal to finish the job."""

from __future__ import annotations

import dataclasses
import json

import pytest

import steps.actions as actions_module
from steps.actions import registry
from steps.audit import AuditLog
from steps.engine import EngineError, Session
from steps.paths import audit_path
from steps.wiring import TrainingWiring

STEP_IDS = [
    "pre-checks",
    "claim-user",
    "free-key-slot",
    "create-key",
    "validate-new-key",
    "store-in-vault",
    "propagate",
    "verify-downstream",
    "deactivate-old-key",
    "delete-old-key",
    "audit-record",
]


def steps_through(step_id: str) -> int:
    """How many steps run up to and including `step_id`."""
    return STEP_IDS.index(step_id) + 1


def audit_actions(session_id: str) -> list[str]:
    return [r["action"] for r in AuditLog(audit_path()).records() if r.get("session") == session_id]


class ProcessDied(BaseException):
    """Raised inside an action: the process is gone before the engine records anything."""


def kill_inside(rig, session: Session, monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    """Run the session's next step; its action does its work, then the process 'dies'."""
    spec = registry()[action]

    def dying(ctx):
        spec.fn(ctx)
        raise ProcessDied(action)

    with monkeypatch.context() as patch:
        patch.setitem(actions_module._ACTIONS, action, dataclasses.replace(spec, fn=dying))
        with pytest.raises(ProcessDied):
            rig.step(session)


def test_the_step_ids_these_tests_walk_are_the_runbooks():
    from steps.loader import load

    assert [s.id for s in load("aws-iam-access-key").steps] == STEP_IDS


# -- rollback ---------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", ["create-key", "validate-new-key", "store-in-vault", "verify-downstream", "deactivate-old-key"])
def test_rollback_after_a_step_leaves_the_old_key_active_and_the_new_one_inactive(rig, lean, boundary):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    rig.run_steps(session, steps_through(boundary))
    new_id = session.facts["new_key_id"]

    ok, results = session.rollback()

    assert ok, results
    assert rig.keys(world) == {old_id: "Active", new_id: "Inactive"}
    assert session.status == "rolled-back"
    assert rig.engine.journal.session(session.id).status == "rolled-back"
    assert rig.engine.journal.lock_of(session.id) is None
    actions = audit_actions(session.id)
    assert actions.index("rollback.started") < actions.index("rollback.completed") < actions.index("session.rolled_back")
    assert session.current() is None


@pytest.mark.parametrize("boundary", ["pre-checks", "free-key-slot"])
def test_rollback_before_anything_was_created_changes_nothing_and_releases_the_lock(rig, lean, boundary):
    world = rig.world(lean)
    before = rig.keys(world)
    session = rig.start(world)
    rig.run_steps(session, steps_through(boundary))

    plan = session.rollback_plan()
    # Nothing to undo but the mark on the user, once step 1a put it there.
    claimed = steps_through(boundary) > steps_through("claim-user") - 1
    assert plan.possible and [i.step.id for i in plan.items] == (["claim-user"] if claimed else [])
    ok, results = session.rollback()

    assert ok and len(results) == len(plan.items)
    assert rig.keys(world) == before
    assert world.aws.client("iam").list_user_tags(UserName=session.target)["Tags"] == []
    assert session.status == "rolled-back"
    assert rig.engine.journal.lock_of(session.id) is None


def test_the_rollback_plan_lists_undos_in_reverse_order_with_their_commands(rig):
    world = rig.world()
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    rig.run_steps(session, steps_through("deactivate-old-key"))
    new_id = session.facts["new_key_id"]

    plan = session.rollback_plan()

    assert plan.possible
    order = [item.step.id for item in plan.items]
    assert order == sorted(order, key=STEP_IDS.index, reverse=True), "undos must run in reverse step order"
    assert order[0] == "deactivate-old-key" and order[-2:] == ["create-key", "claim-user"]
    commands = {item.step.id: item.command for item in plan.items}
    assert (
        commands["deactivate-old-key"]
        == f"aws iam update-access-key --user-name raxx-vault-operator --access-key-id {old_id} --status Active"
    )
    assert commands["create-key"] == f"aws iam update-access-key --user-name raxx-vault-operator --access-key-id {new_id} --status Inactive"
    assert commands["claim-user"] == "aws iam untag-user --user-name raxx-vault-operator --tag-keys handrail-rotation"
    assert all(item.command.strip() for item in plan.items)
    # Showing the plan runs nothing.
    assert rig.keys(world) == {old_id: "Inactive", new_id: "Active"}


def test_rollback_after_the_point_of_no_return_is_refused_with_the_runbooks_message(rig, lean):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    rig.run_steps(session, steps_through("delete-old-key"))
    keys_after_delete = rig.keys(world)
    status = session.status
    audit_before = audit_actions(session.id)

    plan = session.rollback_plan()
    assert not plan.possible
    assert plan.reason.startswith(f"The old key {old_id} was deleted in step 7b and cannot be recovered")
    with pytest.raises(EngineError, match=f"cannot roll back: The old key {old_id} was deleted"):
        session.rollback()

    assert rig.keys(world) == keys_after_delete
    assert session.status == status
    assert audit_actions(session.id) == audit_before


def test_rollback_after_retiring_a_key_notes_what_cannot_be_undone(rig):
    world = rig.world("two-active-keys")
    keys = sorted(world.aws.iam.users["raxx-vault-operator"].access_keys, key=lambda k: k.last_used.timestamp)
    unused = keys[0].access_key_id
    session = rig.start(world)
    rig.run_steps(session, steps_through("create-key"), retire_key=unused)

    plan = session.rollback_plan()
    assert [item.step.id for item in plan.items] == ["create-key", "claim-user"]
    assert any(note.startswith("step 1b") and "cannot be undone" in note for note in plan.notes)


def test_cli_rollback_shows_the_plan_and_needs_yes(cli, tmp_path):
    out = tmp_path / "w.json"
    stopped = cli("run", "--yes", "--json", "--world-out", out)
    assert stopped.exit_code == 3, stopped.output
    summary = json.loads(stopped.stdout)
    old_id, new_id = summary["old_key_id"], summary["new_key_id"]

    shown = cli("rollback", summary["session"])  # no --yes, no terminal: the plan, then one line
    assert shown.exit_code == 3, shown.output
    assert shown.stderr.splitlines() == [
        f"handrail: rollback of session {summary['session']} not confirmed, nothing undone: pass --yes, or run it at a terminal"
    ]
    assert "debrief" not in shown.stdout
    text = shown.stdout
    assert text.index("undo step 7 ") < text.index("undo step 2 ")
    assert f"--access-key-id {old_id} --status Active" in text
    assert f"--access-key-id {new_id} --status Inactive" in text

    rolled = cli("rollback", summary["session"], "--yes", "--json", "--world-out", out)
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["status"] == "rolled-back"
    keys = {k["id"]: k["status"] for k in json.loads(out.read_text())["iam_users"]["raxx-vault-operator"]["keys"]}
    assert keys == {old_id: "Active", new_id: "Inactive"}


def test_cli_rollback_of_a_finished_rotation_is_refused_and_changes_nothing(cli, tmp_path):
    out = tmp_path / "w.json"
    done = cli("run", "--yes", "--fast-forward", "--confirm-irreversible", "--json", "--world-out", out)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)

    def keys() -> dict[str, list[tuple[str, str]]]:
        # Ids and statuses: a world restored from the journal gets fresh secrets by design.
        users = json.loads(out.read_text())["iam_users"]
        return {name: [(k["id"], k["status"]) for k in user["keys"]] for name, user in users.items()}

    before = keys()
    refused = cli("rollback", summary["session"], "--yes", "--world-out", out)
    assert refused.exit_code == 1
    assert f"The old key {summary['old_key_id']} was deleted in step 7b" in refused.output
    assert keys() == before


def test_rollback_in_a_new_process_after_step_3_failed_deactivates_the_new_key(rig, scenario_file):
    world = rig.world(scenario_file("glacial", propagation_delay="10m"))
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    assert rig.drive(session).code == 1
    new_id = session.facts["new_key_id"]

    again = rig.new_engine().resume(session.id, lambda row: TrainingWiring(world))
    ok, _ = again.rollback()

    assert ok
    assert rig.keys(world) == {old_id: "Active", new_id: "Inactive"}


# -- resume after the process died at a step boundary ------------------------------------------
#
# Two ways to die. "same-world": the simulated AWS outlives the process (as the real one
# does), so the lean AWS-only scenario is enough. "world-from-journal": the world dies
# with the process and comes back from the journal's snapshot, vault and consumers
# included, as `handrail resume` does; that needs a shipped scenario (the snapshot names
# it by id) and is slower: those cases are marked slow.


def scenario_for(world_survives: bool, lean) -> str:
    return lean if world_survives else "happy-path"


def interruptions():
    for k in range(len(STEP_IDS)):
        for world_survives in (True, False):
            marks = [] if world_survives else [pytest.mark.slow]
            label = f"after-{k}-steps-{'same-world' if world_survives else 'world-from-journal'}"
            yield pytest.param(k, world_survives, id=label, marks=marks)


@pytest.mark.parametrize("k, world_survives", list(interruptions()))
def test_a_session_interrupted_after_k_steps_resumes_to_done(rig, worlds, lean, k, world_survives):
    world = rig.world(scenario_for(world_survives, lean))
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    rig.run_steps(session, k)
    session_id = session.id
    del session  # the process dies: the Session, its secrets and its lock handle are gone

    if world_survives:
        make_wiring = lambda row: TrainingWiring(world)  # noqa: E731
    else:
        worlds.kill(world)  # the simulated account goes with the process; the journal keeps it
        make_wiring = worlds.restore

    resumed = rig.new_engine().resume(session_id, make_wiring)
    final_world = resumed.wiring.world
    drove = rig.drive(resumed)

    assert drove.code == 0, drove.text
    assert resumed.status == "done"
    keys = rig.keys(final_world)
    assert keys == {resumed.facts["new_key_id"]: "Active"}
    assert old_id not in keys and resumed.facts["old_key_id"] == old_id
    completed = [a for a in audit_actions(session_id) if a == "secret.rotate.completed"]
    assert len(completed) == 1


@pytest.mark.parametrize("world_survives", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["same-world", "world-from-journal"])
def test_dying_after_create_key_reopens_it_deletes_the_orphan_and_creates_a_fresh_key(rig, worlds, lean, world_survives):
    world = rig.world(scenario_for(world_survives, lean))
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    rig.run_steps(session, steps_through("create-key"))
    orphan = session.facts["new_key_id"]
    session_id = session.id
    del session

    if world_survives:
        make_wiring = lambda row: TrainingWiring(world)  # noqa: E731
    else:
        worlds.kill(world)
        make_wiring = worlds.restore
    engine = rig.new_engine()
    resumed = engine.resume(session_id, make_wiring)

    reopened = [e for e in engine.journal.events(session_id) if e.kind == "reopened"]
    assert [e.step_id for e in reopened] == ["create-key"]
    assert "new_secret" in reopened[0].summary
    assert resumed.current().step.id == "create-key"

    drove = rig.drive(resumed)
    assert drove.code == 0, drove.text
    fresh = resumed.facts["new_key_id"]
    assert fresh not in (orphan, old_id)
    assert rig.keys(resumed.wiring.world) == {fresh: "Active"}
    assert any(orphan in line and "deleted" in line for line in resumed.states["create-key"].evidence)


@pytest.mark.parametrize("world_survives", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["same-world", "world-from-journal"])
def test_a_step_running_when_the_process_died_runs_again(rig, worlds, lean, monkeypatch, world_survives):
    world = rig.world(scenario_for(world_survives, lean))
    session = rig.start(world)
    rig.run_steps(session, steps_through("verify-downstream"))
    kill_inside(rig, session, monkeypatch, "iam.deactivate_old_key")
    session_id = session.id
    del session

    if world_survives:
        make_wiring = lambda row: TrainingWiring(world)  # noqa: E731
    else:
        worlds.kill(world)
        make_wiring = worlds.restore
    engine = rig.new_engine()
    resumed = engine.resume(session_id, make_wiring)
    assert resumed.current().step.id == "deactivate-old-key"
    assert resumed.states["deactivate-old-key"].status == "pending"

    drove = rig.drive(resumed)

    assert drove.code == 0, drove.text
    started = [e for e in engine.journal.events(session_id) if e.kind == "started" and e.step_id == "deactivate-old-key"]
    assert len(started) == 2
    assert rig.keys(resumed.wiring.world) == {resumed.facts["new_key_id"]: "Active"}


def test_the_audit_step_interrupted_after_writing_writes_no_second_record(rig, lean, monkeypatch):
    world = rig.world(lean)
    session = rig.start(world)
    rig.run_steps(session, steps_through("delete-old-key"))
    kill_inside(rig, session, monkeypatch, "audit.rotation_completed")
    session_id = session.id
    del session

    resumed = rig.new_engine().resume(session_id, lambda row: TrainingWiring(world))
    drove = rig.drive(resumed)

    assert drove.code == 0, drove.text
    assert audit_actions(session_id).count("secret.rotate.completed") == 1
    assert "already recorded" in resumed.states["audit-record"].summary


def test_dying_inside_create_key_after_aws_made_the_key_still_resumes_to_done(rig, lean, monkeypatch):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    rig.run_steps(session, steps_through("free-key-slot"))
    kill_inside(rig, session, monkeypatch, "iam.create_key")
    assert len(rig.keys(world)) == 2  # AWS made the key; the journal never heard of it
    session_id = session.id
    del session

    resumed = rig.new_engine().resume(session_id, lambda row: TrainingWiring(world))
    drove = rig.drive(resumed)

    assert drove.code == 0, drove.text
    assert rig.keys(world) == {resumed.facts["new_key_id"]: "Active"}


def test_a_finished_session_cannot_be_resumed(rig, lean):
    session = rig.start(rig.world(lean))
    assert rig.drive(session).code == 0
    with pytest.raises(EngineError, match="nothing to resume"):
        rig.new_engine().resume(session.id, lambda row: pytest.fail("no wiring needed"))


def test_resume_accepts_a_unique_prefix_of_the_session_id(rig, lean):
    world = rig.world(lean)
    session = rig.start(world)
    rig.run_steps(session, 3)
    resumed = rig.new_engine().resume(session.id[:-2], lambda row: TrainingWiring(world))
    assert resumed.id == session.id


@pytest.mark.slow
def test_resume_in_a_new_process_finishes_a_session_stopped_at_the_gate(cli, cli_subprocess, tmp_path):
    stopped = cli("run", "--yes", "--json")
    assert stopped.exit_code == 3, stopped.output
    summary = json.loads(stopped.stdout)

    out = tmp_path / "w.json"
    proc = cli_subprocess("resume", summary["session"], "--yes", "--fast-forward", "--confirm-irreversible", "--json", "--world-out", out)

    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout)
    assert final["session"] == summary["session"] and final["status"] == "done"
    assert final["old_key_id"] == summary["old_key_id"] and final["new_key_id"] == summary["new_key_id"]
    keys = json.loads(out.read_text())["iam_users"]["raxx-vault-operator"]["keys"]
    assert [(k["id"], k["status"]) for k in keys] == [(summary["new_key_id"], "Active")]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_run_and_resume_both_in_new_processes(cli_subprocess):
    stopped = cli_subprocess("run", "--yes", "--json")
    assert stopped.returncode == 3, stopped.stderr
    session = json.loads(stopped.stdout)["session"]
    listed = json.loads(cli_subprocess("sessions", "--json").stdout)
    assert [s["session"] for s in listed] == [session]

    done = cli_subprocess("resume", session, "--yes", "--fast-forward", "--confirm-irreversible", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "done"
    assert json.loads(cli_subprocess("sessions", "--json").stdout) == []


def test_a_session_from_a_scenario_file_can_be_resumed(cli, scenario_file):
    path = scenario_file("from-a-file")
    stopped = cli("run", "--scenario", path, "--yes", "--json")
    assert stopped.exit_code == 3, stopped.output
    session = json.loads(stopped.stdout)["session"]

    done = cli("resume", session, "--yes", "--fast-forward", "--confirm-irreversible")
    assert done.exit_code == 0, done.output
