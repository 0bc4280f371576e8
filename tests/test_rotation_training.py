"""The whole rotation on the simulated AWS: the SOP's steps 1-8, the gate, the two-key
cases and self-rotation, through the engine in-process and through the CLI."""

from __future__ import annotations

import copy
import json

import pytest

from steps.audit import AuditLog
from steps.engine import EngineError
from steps.paths import audit_path
from steps.status import Needs

COMPLETED = "secret.rotate.completed"
VAULT_CONSUMER_STEPS = ("store-in-vault", "propagate", "verify-downstream")


def audit_records(session_id: str | None = None) -> list[dict]:
    records = list(AuditLog(audit_path()).records())
    return [r for r in records if session_id is None or r.get("session") == session_id]


def statuses(session) -> dict[str, str]:
    return {sid: state.status for sid, state in session.states.items()}


# -- the whole rotation, in-process --------------------------------------------------------------


def test_a_training_rotation_ends_done_with_the_old_key_deleted_and_one_new_active_key(rig):
    world = rig.world()
    (old_id,) = rig.keys(world)

    session = rig.start(world)
    drove = rig.drive(session)

    assert drove.code == 0, drove.text
    assert session.status == "done"
    new_id = session.facts["new_key_id"]
    assert session.facts["old_key_id"] == old_id
    assert new_id != old_id
    assert rig.keys(world) == {new_id: "Active"}
    assert all(s in ("done", "skipped") for s in statuses(session).values()), statuses(session)
    assert rig.engine.journal.session(session.id).status == "done"
    assert rig.engine.journal.lock_of(session.id) is None


def test_the_rotation_writes_the_sops_audit_record(rig, lean):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    assert rig.drive(session).code == 0

    completed = [r for r in audit_records(session.id) if r["action"] == COMPLETED]
    assert len(completed) == 1
    record = completed[0]
    assert record["actor"] == session.facts["operator_arn"] == world.aws.client("sts").get_caller_identity()["Arn"]
    assert record["context"] == {
        "secret_name": "AWS_ACCESS_KEY_ID",
        "iam_user": "raxx-vault-operator",
        "old_key_id": old_id,
        "new_key_id": session.facts["new_key_id"],
        "method": "programmatic",
    }
    records = audit_records(session.id)
    actions = [r["action"] for r in records]
    assert actions[0] == "session.started"
    assert {r["context"]["step"] for r in records if r["action"] == "step.result"} == set(session.states)
    assert actions.index(COMPLETED) < actions.index("session.done")


def test_without_an_inventory_the_vault_and_consumer_steps_are_skipped_visibly_never_done(rig, scenario_file):
    world = rig.world(scenario_file("no-inventory"))
    session = rig.start(world)
    drove = rig.drive(session)

    assert drove.code == 0, drove.text
    for step_id in VAULT_CONSUMER_STEPS:
        state = session.states[step_id]
        assert state.status == "skipped", (step_id, state.status)
        assert state.summary.startswith("headless run:"), state.summary
        assert f"-> skipped: {state.summary}" in drove.text


def test_step_3_validates_the_new_key_with_the_users_representative_call(rig):
    session = rig.start()
    rig.run_steps(session, 5)
    evidence = "\n".join(session.states["validate-new-key"].evidence)
    assert f"sts get-caller-identity with {session.facts['new_key_id']} -> {session.facts['target_arn']}" in evidence
    assert "aws s3api list-objects-v2 --bucket raxx-backups with the new key ->" in evidence


def test_slow_propagation_is_polled_through_and_the_time_it_took_is_shown(rig):
    session = rig.start(rig.world("slow-propagation"))
    rig.run_steps(session, 5)
    state = session.states["validate-new-key"]
    assert state.status == "done"
    took = float(session.facts["new_key_valid_after"])
    assert 20.0 <= took < 60.0
    assert any("attempts" in line for line in state.evidence)


def test_a_new_key_that_never_becomes_valid_fails_step_3_after_the_deadline(rig, scenario_file):
    world = rig.world(scenario_file("glacial", propagation_delay="10m"))
    session = rig.start(world)
    drove = rig.drive(session)

    assert drove.code == 1
    assert session.status == "failed"
    state = session.states["validate-new-key"]
    assert state.status == "failed" and "still refused" in state.summary
    # The old key was never touched.
    assert rig.keys(world)[session.facts["old_key_id"]] == "Active"


def test_yes_answers_only_yes_confirmations(rig):
    world = rig.world()
    session = rig.start(world)
    drove = rig.drive(session, yes=False)
    assert drove.code == 3
    assert "needs a yes" in drove.message
    assert session.states["create-key"].status == "pending"
    assert len(rig.keys(world)) == 1


def test_an_irreversible_step_needs_the_key_id_typed_even_with_yes(rig, lean):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)

    session = rig.start(world)
    stopped = rig.drive(session, confirm_irreversible=False)
    assert stopped.code == 3, stopped.text
    assert "irreversible" in stopped.message and "--confirm-irreversible" in stopped.message
    assert f"--confirm-key {old_id}" in stopped.message
    assert rig.keys(world)[old_id] == "Inactive"
    prompt = session.prompt("delete-old-key")
    assert prompt.irreversible and prompt.confirm is Needs.TYPED and prompt.expect == old_id
    for wrong in (None, "", "yes", "AKIA-NOT-THE-KEY"):  # the engine holds the line, not the screen
        with pytest.raises(EngineError, match="does not match"):
            session.run("delete-old-key", answer=wrong)
    assert old_id in rig.keys(world)

    done = rig.drive(session, confirm_keys=[old_id])
    assert done.code == 0, done.text
    assert old_id not in rig.keys(world)
    confirmed = [r for r in session.audit.records() if r["action"] == "step.irreversible_confirmed"]
    assert [(r["context"]["confirmed"], r["context"]["how"]) for r in confirmed] == [(old_id, "--confirm-key")]


# -- the observation gate -----------------------------------------------------------------------


def test_without_a_gate_flag_the_rotation_stops_at_step_7b_with_the_old_key_inactive(rig, lean):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)

    drove = rig.drive(session, fast_forward=False)

    assert drove.code == 3
    assert "step 7b" in drove.message and "--override-gate" in drove.message
    assert session.status == "waiting"
    new_id = session.facts["new_key_id"]
    assert rig.keys(world) == {old_id: "Inactive", new_id: "Active"}
    assert session.states["delete-old-key"].status == "pending"
    gate = session.gate_state(session.states["delete-old-key"].step)
    assert not gate.open and gate.remaining > 23 * 3600


def test_override_gate_passes_it_early_and_the_reason_is_audited(rig, lean):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    reason = "change window CHG-4711 approved by the on-call lead"

    drove = rig.drive(session, fast_forward=False, override_gate=reason)

    assert drove.code == 0, drove.text
    assert old_id not in rig.keys(world)
    overrides = [r for r in audit_records(session.id) if r["action"] == "gate.override"]
    assert len(overrides) == 1
    assert overrides[0]["context"]["step"] == "delete-old-key"
    assert overrides[0]["context"]["reason"] == reason


def test_a_gate_override_needs_a_reason(rig, lean):
    session = rig.start(rig.world(lean))
    rig.drive(session, fast_forward=False)
    with pytest.raises(EngineError, match="reason"):
        session.override_gate("delete-old-key", "  ")
    assert session.status == "waiting"


def test_fast_forward_moves_the_simulated_clock_to_the_gate_in_training(rig, lean):
    world = rig.world(lean)
    session = rig.start(world)
    rig.drive(session, fast_forward=False)
    gate = session.gate_state(session.states["delete-old-key"].step)
    skipped = session.fast_forward("delete-old-key")
    assert skipped == pytest.approx(gate.remaining, abs=5)
    assert session.gate_state(session.states["delete-old-key"].step).open
    assert any(r["action"] == "clock.fast_forward" for r in audit_records(session.id))


def test_the_old_key_used_after_deactivation_blocks_the_delete(rig, scenario_file):
    # status_delay: a deactivation takes 5 simulated minutes to reach every endpoint, so a
    # forgotten consumer still gets through just after it, and its last use shows.
    world = rig.world(scenario_file("straggler", status_delay="5m"))
    (old_id,) = rig.keys(world)
    old_secret = world.aws.secrets_by_key()[old_id]
    session = rig.start(world)
    rig.run_steps(session, 9)
    assert rig.keys(world)[old_id] == "Inactive"

    ok, _ = world.aws.probe(old_id, old_secret)  # the consumer nobody listed
    assert ok

    drove = rig.drive(session)
    assert drove.code == 1
    assert session.status == "blocked"
    assert "after it was deactivated" in session.states["delete-old-key"].summary
    assert old_id in rig.keys(world)

    drove = rig.drive(session, override_block="consumer found and fixed: CHG-1")
    assert drove.code == 0, drove.text
    assert old_id not in rig.keys(world)
    assert any(r["action"] == "block.override" for r in audit_records(session.id))


# -- two keys in the slot -----------------------------------------------------------------------


def test_an_inactive_key_in_the_slot_is_deleted_after_its_last_use_is_shown(rig):
    world = rig.world("inactive-key-in-slot")
    before = rig.keys(world)
    (inactive_id,) = [k for k, s in before.items() if s == "Inactive"]
    (active_id,) = [k for k, s in before.items() if s == "Active"]

    session = rig.start(world)
    drove = rig.drive(session)

    assert drove.code == 0, drove.text
    slot = session.states["free-key-slot"]
    shown = next(i for i, line in enumerate(slot.evidence) if inactive_id in line and "last used" in line)
    deleted = next(i for i, line in enumerate(slot.evidence) if line.startswith(f"deleted Inactive key {inactive_id}"))
    assert shown < deleted
    assert session.facts["retired_key_id"] == inactive_id
    assert session.facts["old_key_id"] == active_id
    assert rig.keys(world) == {session.facts["new_key_id"]: "Active"}


def test_an_inactive_key_used_within_the_runbooks_window_blocks_and_the_window_is_the_runbooks(
    rig, scenario_file, shipped_runbook, write_yaml
):
    # The previous rotation deactivated this key 3 h ago: it may still be under observation.
    keys = [{"status": "Inactive", "age": "10d", "last_used": "3h"}, {"status": "Active", "age": "92d", "last_used": "1h"}]
    rule = next(s for s in shipped_runbook["steps"] if s["id"] == "free-key-slot")["with"]
    assert rule["block_if_used_within"] == "24h"

    world = rig.world(scenario_file("recent-inactive", keys=keys))
    (inactive_id,) = [k for k, s in rig.keys(world).items() if s == "Inactive"]
    session = rig.start(world)
    rig.run_steps(session, 2)
    blocked = rig.step(session)
    assert blocked.status == "blocked", blocked.summary
    assert f"Inactive key {inactive_id} was used" in blocked.summary
    assert inactive_id in rig.keys(world)

    # A runbook copy with a 2 h window: the same key is old enough to go.
    data = copy.deepcopy(shipped_runbook)
    next(s for s in data["steps"] if s["id"] == "free-key-slot")["with"]["block_if_used_within"] = "2h"
    world = rig.world(scenario_file("recent-inactive-2h", keys=keys))
    (inactive_id,) = [k for k, s in rig.keys(world).items() if s == "Inactive"]
    session = rig.start(world, runbook=write_yaml("two-hour-window.yaml", data))
    rig.run_steps(session, 3)
    assert session.facts["retired_key_id"] == inactive_id
    assert inactive_id not in rig.keys(world)


def test_two_active_keys_stop_the_rotation_until_the_operator_chooses(rig):
    world = rig.world("two-active-keys")
    before = rig.keys(world)
    session = rig.start(world)

    drove = rig.drive(session)

    assert drove.code == 3
    assert "--retire-key" in drove.message
    assert rig.keys(world) == before
    for key_id in before:
        assert key_id in drove.text  # both keys and their last use are shown to choose from


def unused_key(world, user: str = "raxx-vault-operator") -> tuple[str, str]:
    """(the key unused for longest, the other one) by their last use."""
    keys = sorted(world.aws.iam.users[user].access_keys, key=lambda k: k.last_used.timestamp)
    return keys[0].access_key_id, keys[1].access_key_id


def test_retire_key_retires_the_chosen_key_and_rotates_the_other(rig):
    world = rig.world("two-active-keys")
    unused, in_use = unused_key(world)
    session = rig.start(world)

    drove = rig.drive(session, retire_key=unused)

    assert drove.code == 0, drove.text
    assert session.facts["retired_key_id"] == unused
    assert session.facts["old_key_id"] == in_use
    assert rig.keys(world) == {session.facts["new_key_id"]: "Active"}


@pytest.mark.parametrize("wrong", ["AKIAWRONGWRONGWRONG0", "operator-key"])
def test_a_wrong_retire_key_deletes_nothing(rig, wrong):
    world = rig.world("two-active-keys")
    before = rig.keys(world)
    if wrong == "operator-key":
        wrong = world.aws.operator.key_id
    session = rig.start(world)

    drove = rig.drive(session, retire_key=wrong)

    assert drove.code == 3
    assert rig.keys(world) == before
    assert world.aws.backend_key(world.aws.operator.key_id) is not None

    # Asked directly (past the driver's check), the action refuses too.
    outcome = session.run("free-key-slot", answer=wrong)
    assert outcome.status == "failed"
    assert rig.keys(world) == before


def test_an_inactive_key_used_within_24h_blocks_unless_overridden(rig, scenario_file):
    path = scenario_file(
        "recently-deactivated",
        keys=[
            {"status": "Inactive", "age": "30d", "last_used": "2h"},
            {"status": "Active", "age": "2d", "last_used": "5m"},
        ],
    )
    world = rig.world(path)
    before = rig.keys(world)
    session = rig.start(world)

    drove = rig.drive(session)
    assert drove.code == 1
    assert session.status == "blocked"
    assert session.states["free-key-slot"].status == "blocked"
    assert rig.keys(world) == before

    reason = "the previous rotation is abandoned; checked CloudTrail"
    drove = rig.drive(session, override_block=reason)
    assert drove.code == 0, drove.text
    assert any(reason in line for line in session.states["free-key-slot"].evidence)
    overrides = [r for r in audit_records(session.id) if r["action"] == "block.override"]
    assert overrides and overrides[0]["context"]["reason"] == reason
    assert rig.keys(world) == {session.facts["new_key_id"]: "Active"}


# -- self-rotation ------------------------------------------------------------------------------


def test_self_rotation_is_refused_at_step_1_and_nothing_changes(rig):
    world = rig.world("self-rotation")
    before = rig.keys(world)
    assert list(before.values()) == ["Active"]
    session = rig.start(world)

    drove = rig.drive(session)

    assert drove.code == 3
    assert session.states["pre-checks"].status == "refused"
    assert "--allow-self-rotation" in drove.message and "refused" in drove.message
    assert rig.keys(world) == before
    assert "new_key_id" not in session.facts
    # A refusal stays a refusal: no skip, no override, and running it again refuses again.
    with pytest.raises(EngineError, match="cannot be skipped"):
        session.skip("pre-checks", "try anyway")
    with pytest.raises(EngineError, match="cannot be overridden"):
        session.run("pre-checks", override="I know what I am doing")
    assert rig.drive(session).code == 3
    assert session.states["pre-checks"].status == "refused" and session.states["pre-checks"].attempts == 2
    assert rig.keys(world) == before
    assert not [r for r in session.audit.records() if r["action"] == "step.skipped"]


def test_self_rotation_with_the_flag_completes_and_warns(rig):
    world = rig.world("self-rotation")
    (old_id,) = rig.keys(world)
    session = rig.start(world, allow_self_rotation="yes")

    drove = rig.drive(session)

    assert drove.code == 0, drove.text
    assert any(line.startswith("WARNING: self-rotation") for line in session.states["pre-checks"].evidence)
    assert rig.keys(world) == {session.facts["new_key_id"]: "Active"}
    assert old_id != session.facts["new_key_id"]


# -- scenarios ------------------------------------------------------------------------------------


def test_every_shipped_scenario_loads_and_names_an_existing_target():
    from steps.sandbox import scenario as scenarios

    loaded = scenarios.load_all()
    assert {s.id for s in loaded} >= {"happy-path", "inactive-key-in-slot", "two-active-keys", "self-rotation", "slow-propagation"}
    for sc in loaded:
        assert sc.target_user in sc.aws.users


def test_the_default_world_is_the_sops_example_user_with_one_active_key_and_the_bucket(make_world):
    world = make_world()
    assert world.scenario.target_user == "raxx-vault-operator"
    statuses_ = [k.status for k in world.aws.iam.users["raxx-vault-operator"].access_keys]
    assert statuses_ == ["Active"]
    assert "raxx-backups" in world.aws.s3.buckets
    assert world.aws.operator is not None
    assert world.aws.iam.access_keys[world.aws.operator.key_id].user_name != "raxx-vault-operator"


def test_an_inactive_key_does_not_authenticate_in_the_sandbox(make_world, scenario_file):
    world = make_world(scenario_file("inactive", keys=[{"status": "Inactive", "age": "3d", "last_used": None}, {"status": "Active"}]))
    secrets = world.aws.secrets_by_key()
    results = {k: world.aws.probe(k, secrets[k])[0] for k in rig_keys(world)}
    assert sorted(results.values()) == [False, True]
    for key_id, ok in results.items():
        assert ok == (world.aws.backend_key(key_id).status == "Active")


def rig_keys(world) -> list[str]:
    return [k.access_key_id for k in world.aws.iam.users[world.scenario.target_user].access_keys]


def test_two_training_worlds_of_the_same_scenario_coexist_in_one_process(make_world):
    first = make_world("happy-path")
    second = make_world("happy-path")
    assert first.aws.account_id != second.aws.account_id


# -- the same through the CLI ---------------------------------------------------------------------


def test_cli_training_rotation_exits_0_with_one_new_active_key_in_world_out(cli, tmp_path):
    out = tmp_path / "w.json"
    result = cli(
        "run",
        "aws-iam-access-key",
        "--mode",
        "training",
        "--user",
        "raxx-vault-operator",
        "--yes",
        "--fast-forward",
        "--confirm-irreversible",
        "--json",
        "--world-out",
        out,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "done"
    world = json.loads(out.read_text())
    keys = world["iam_users"]["raxx-vault-operator"]["keys"]
    assert [(k["id"], k["status"]) for k in keys] == [(summary["new_key_id"], "Active")]
    assert summary["old_key_id"] not in out.read_text()
    records = [r for r in audit_records(summary["session"]) if r["action"] == COMPLETED]
    assert records and records[0]["context"]["new_key_id"] == summary["new_key_id"]


def test_cli_without_a_gate_flag_exits_3_with_the_old_key_inactive(cli, tmp_path):
    out = tmp_path / "w.json"
    result = cli("run", "--user", "raxx-vault-operator", "--yes", "--json", "--world-out", out)
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "waiting"
    keys = {k["id"]: k["status"] for k in json.loads(out.read_text())["iam_users"]["raxx-vault-operator"]["keys"]}
    assert keys == {summary["old_key_id"]: "Inactive", summary["new_key_id"]: "Active"}
    assert "--override-gate" in result.stdout and "--fast-forward" in result.stdout


def test_cli_override_gate_reason_lands_in_the_audit_log(cli, lean):
    reason = "emergency: leaked key, CHG-9"
    result = cli("run", "--scenario", lean, "--yes", "--override-gate", reason, "--confirm-irreversible", "--json")
    assert result.exit_code == 0, result.output
    session = json.loads(result.stdout)["session"]
    overrides = [r for r in audit_records(session) if r["action"] == "gate.override"]
    assert [o["context"]["reason"] for o in overrides] == [reason]


def test_cli_two_active_keys_stop_then_resume_with_retire_key(cli, tmp_path):
    out = tmp_path / "w.json"
    stopped = cli("run", "--scenario", "two-active-keys", "--yes", "--fast-forward", "--confirm-irreversible", "--json", "--world-out", out)
    assert stopped.exit_code == 3, stopped.output
    session = json.loads(stopped.stdout)["session"]
    keys = json.loads(out.read_text())["iam_users"]["raxx-vault-operator"]["keys"]
    assert [k["status"] for k in keys] == ["Active", "Active"]
    unused, in_use = (k["id"] for k in sorted(keys, key=lambda k: k["last_used"]))

    wrong = cli(
        "resume", session, "--yes", "--fast-forward", "--confirm-irreversible", "--retire-key", "AKIANOTAKEYOFTHISUSR", "--world-out", out
    )
    assert wrong.exit_code == 3, wrong.output
    assert sorted(k["id"] for k in json.loads(out.read_text())["iam_users"]["raxx-vault-operator"]["keys"]) == sorted([unused, in_use])

    done = cli("resume", session, "--yes", "--fast-forward", "--confirm-irreversible", "--retire-key", unused, "--json", "--world-out", out)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["old_key_id"] == in_use
    final = json.loads(out.read_text())["iam_users"]["raxx-vault-operator"]["keys"]
    assert [(k["id"], k["status"]) for k in final] == [(summary["new_key_id"], "Active")]


def test_cli_recently_used_inactive_key_blocks_with_exit_1_unless_override_block(cli, scenario_file, tmp_path):
    path = scenario_file(
        "recent", keys=[{"status": "Inactive", "age": "30d", "last_used": "1h"}, {"status": "Active", "age": "2d", "last_used": "5m"}]
    )
    out = tmp_path / "w.json"
    blocked = cli("run", "--scenario", path, "--yes", "--fast-forward", "--confirm-irreversible", "--json", "--world-out", out)
    assert blocked.exit_code == 1, blocked.output
    summary = json.loads(blocked.stdout)
    assert summary["status"] == "blocked"
    assert len(json.loads(out.read_text())["iam_users"]["raxx-vault-operator"]["keys"]) == 2
    assert "--override-block" in summary["message"]

    passed = cli(
        "run", "--scenario", path, "--yes", "--fast-forward", "--confirm-irreversible", "--override-block", "checked: stale key", "--json"
    )
    assert passed.exit_code == 0, passed.output


def test_cli_self_rotation_refused_cannot_be_skipped_and_resume_still_refuses(cli, tmp_path):
    out = tmp_path / "w.json"
    refused = cli("run", "--scenario", "self-rotation", "--yes", "--json")
    assert refused.exit_code == 3, refused.output
    assert json.loads(refused.stdout)["steps"][0]["status"] == "refused"

    skipped = cli("skip", "last", "--reason", "try anyway")
    assert skipped.exit_code != 0 and "cannot be skipped" in skipped.stderr
    assert len(skipped.stderr.strip().splitlines()) == 1

    again = cli("resume", "last", "--yes", "--fast-forward", "--world-out", out)
    assert again.exit_code == 3, again.output
    keys = json.loads(out.read_text())["iam_users"]["raxx-vault-operator"]["keys"]
    assert [k["status"] for k in keys] == ["Active"] and len(keys) == 1
    shown = json.loads(cli("show", "last", "--json").stdout)
    assert [e["status"] for e in shown["events"] if e["kind"] == "step"] == ["refused", "refused"]

    allowed = cli(
        "run", "--scenario", "self-rotation", "--yes", "--fast-forward", "--confirm-irreversible", "--allow-self-rotation", "--json"
    )
    assert allowed.exit_code == 0, allowed.output
    assert "WARNING: self-rotation" in allowed.stderr


# -- live-like: the real clock cannot be fast-forwarded ----------------------------------------------


def test_live_mode_gate_cannot_be_fast_forwarded_only_overridden_with_a_reason(live_world, runbook_without_settle, cli):
    world = live_world
    (old_id,) = rig_keys(world)

    refused = cli(
        "run",
        runbook_without_settle,
        "--mode",
        "live",
        "--user",
        "raxx-vault-operator",
        "--yes",
        "--fast-forward",
        "--confirm-irreversible",
    )
    assert refused.exit_code == 2
    assert "training only" in refused.stderr
    assert world.aws.backend_key(old_id).status == "Active"

    stopped = cli("run", runbook_without_settle, "--mode", "live", "--user", "raxx-vault-operator", "--yes", "--json")
    assert stopped.exit_code == 3, stopped.output
    summary = json.loads(stopped.stdout)
    assert summary["mode"] == "live" and summary["status"] == "waiting"
    assert "--override-gate" in summary["message"] and "--fast-forward" not in summary["message"]
    assert world.aws.backend_key(old_id).status == "Inactive"

    again = cli("resume", summary["session"], "--yes", "--fast-forward", "--confirm-irreversible")
    assert again.exit_code == 2
    assert world.aws.backend_key(old_id) is not None

    reason = "observed for 3 days in the staging account"
    done = cli("resume", summary["session"], "--yes", "--override-gate", reason, "--confirm-irreversible", "--json")
    assert done.exit_code == 0, done.output
    assert world.aws.backend_key(old_id) is None
    assert [r["context"]["reason"] for r in audit_records(summary["session"]) if r["action"] == "gate.override"] == [reason]


def test_fast_forward_is_refused_by_the_engine_on_a_real_clock(live_world, make_engine, runbook_without_settle):
    from steps.driver import Asker, DriveOptions, Printer, drive
    from steps.wiring import LiveWiring

    engine = make_engine()
    session = engine.start(
        runbook_without_settle, {"target_user": "raxx-vault-operator", "reason": "scheduled"}, LiveWiring(region=live_world.aws.region)
    )
    lines: list[str] = []
    code, message = drive(session, DriveOptions(yes=True, fast_forward=True, confirm_irreversible=True), Printer(lines.append), Asker())
    assert code == 3 and "7b" in message
    with pytest.raises(EngineError, match="training only"):
        session.fast_forward("delete-old-key")
    assert not session.gate_state(session.states["delete-old-key"].step).open
    session.close()


def test_a_training_rotation_runs_where_the_environment_sets_a_proxy(cli, monkeypatch):
    """The world is on loopback, which no proxy reaches: boto3 and requests (under PyGithub
    and infisicalsdk) must not send it there."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing answers
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    result = cli("run", "--scenario", "happy-path", "--yes", "--fast-forward", "--confirm-irreversible", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "done"
