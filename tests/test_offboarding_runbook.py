"""The offboarding runbook (issue 10): snapshot, contain, observe, tear down in
DeleteUser's order, delete the user, audit; and the sandbox that makes DeleteUser as
strict as AWS's."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

RUNBOOK = "aws-iam-user-offboarding"
SCENARIO = "offboarding"
TEARDOWN = [
    "delete-access-keys",
    "delete-signing-certificates",
    "delete-ssh-public-keys",
    "delete-service-credentials",
    "remove-mfa-devices",
    "delete-inline-policies",
    "detach-policies",
    "leave-remaining-groups",
    "delete-remaining-login-profile",
]


def dana(world_out: Path) -> dict:
    return json.loads(world_out.read_text())["iam_users"]["dana"]


def run_until(rig, session, step_id: str, **kw) -> None:
    while session.current() is not None and session.current().step.id != step_id:
        outcome = rig.step(session, **kw)
        assert outcome is None or outcome.status == "done", outcome


def start(rig, world=None, **inputs):
    return rig.start(world if world is not None else rig.world(SCENARIO), runbook=RUNBOOK, **inputs)


# -- the file ---------------------------------------------------------------------------------


def test_the_runbook_checks_and_its_plan_reads_as_the_order_aws_documents(cli) -> None:
    assert cli("check", f"runbooks/{RUNBOOK}.yaml").exit_code == 0
    result = cli("plan", RUNBOOK)
    assert result.exit_code == 0, result.output
    text = result.stdout
    titles = ["Record everything", "deactivate every access key", "console password", "deny every session", "from its groups"]
    titles += ["Observe", "access keys", "signing certificates", "SSH public keys", "service-specific", "MFA devices"]
    titles += ["inline policies", "managed policies", "group membership", "login profile set since", "Delete the IAM user", "Audit"]
    at = text.index("Steps:")
    for title in titles:  # each one after the one before
        at = text.index(title, at + 1)
    assert "gate: at least 24h (input observe_for) after leave-groups" in text
    assert "IRREVERSIBLE, point of no return" in text and "type {target_user}" in text
    assert "a person, after a rollback: The console password cannot be restored" in text
    assert "{{" not in text and "aws:TokenIssueTime" in text


def test_every_step_says_why_and_each_contain_step_has_an_undo() -> None:
    from steps.loader import load

    book = load(RUNBOOK)
    assert all(s.why and s.command for s in book.steps)
    for step_id in ("deactivate-keys", "deny-old-sessions", "leave-groups"):
        assert book.step(step_id).undo is not None and book.step(step_id).undo.run
    assert book.step("delete-login-profile").undo.later
    assert [s.id for s in book.steps if s.point_of_no_return] == ["delete-user"]
    order = [s.id for s in book.steps]
    assert [order.index(s) for s in TEARDOWN] == sorted(order.index(s) for s in TEARDOWN) < [order.index("delete-user")] * 9
    assert book.step("observe").gate.at_least_input == "observe_for"


# -- the sandbox ------------------------------------------------------------------------------


def test_delete_user_is_refused_in_awss_words_while_anything_is_attached(make_world) -> None:
    from botocore.exceptions import ClientError

    world = make_world(SCENARIO)
    iam = world.aws.client("iam")

    def refusal() -> str | None:
        try:
            iam.delete_user(UserName="dana")
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "DeleteConflict"
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 409
            return exc.response["Error"]["Message"]
        return None

    assert refusal() == "Cannot delete entity, must delete login profile first."
    iam.delete_login_profile(UserName="dana")
    assert refusal() == "Cannot delete entity, must delete access keys first."
    for key in iam.list_access_keys(UserName="dana")["AccessKeyMetadata"]:
        iam.delete_access_key(UserName="dana", AccessKeyId=key["AccessKeyId"])
    assert refusal() == "Cannot delete entity, must delete signing certificates first."
    for cert in iam.list_signing_certificates(UserName="dana")["Certificates"]:
        iam.delete_signing_certificate(UserName="dana", CertificateId=cert["CertificateId"])
    assert refusal() == "Cannot delete entity, must delete SSH public keys first."
    for key in iam.list_ssh_public_keys(UserName="dana")["SSHPublicKeys"]:
        iam.delete_ssh_public_key(UserName="dana", SSHPublicKeyId=key["SSHPublicKeyId"])
    assert refusal() == "Cannot delete entity, must delete service specific credentials first."
    for cred in iam.list_service_specific_credentials(UserName="dana")["ServiceSpecificCredentials"]:
        assert cred["ServiceName"] == "codecommit.amazonaws.com"
        iam.delete_service_specific_credential(UserName="dana", ServiceSpecificCredentialId=cred["ServiceSpecificCredentialId"])
    assert refusal() == "Cannot delete entity, must delete MFA device first."
    for device in iam.list_mfa_devices(UserName="dana")["MFADevices"]:
        iam.deactivate_mfa_device(UserName="dana", SerialNumber=device["SerialNumber"])
    assert refusal() == "Cannot delete entity, must delete policies first."
    for name in iam.list_user_policies(UserName="dana")["PolicyNames"]:
        iam.delete_user_policy(UserName="dana", PolicyName=name)
    assert refusal() == "Cannot delete entity, must detach all policies first."
    for policy in iam.list_attached_user_policies(UserName="dana")["AttachedPolicies"]:
        iam.detach_user_policy(UserName="dana", PolicyArn=policy["PolicyArn"])
    assert refusal() == "Cannot delete entity, must remove users from group first."
    for group in iam.list_groups_for_user(UserName="dana")["Groups"]:
        iam.remove_user_from_group(UserName="dana", GroupName=group["GroupName"])
    assert refusal() is None
    assert "dana" not in world.aws.iam.users


def test_the_world_export_and_its_snapshot_carry_every_attachment_and_no_secret(make_world, worlds) -> None:
    from steps.clock import SimClock

    world = make_world(SCENARIO)
    exported = world.export()["iam_users"]["dana"]
    assert exported["login_profile"] is True
    assert exported["groups"] == ["developers", "oncall"]
    assert exported["inline_policies"] == ["dana-scratch-bucket"]
    assert [a.rsplit("/", 1)[1] for a in exported["attached_policies"]] == ["raxx-read-backups"]
    assert len(exported["keys"]) == 2 and len(exported["mfa_devices"]) == 1
    assert len(exported["ssh_public_keys"]) == 1 and len(exported["signing_certificates"]) == 1
    assert exported["service_specific_credentials"][0]["service"] == "codecommit.amazonaws.com"
    snapshot = world.snapshot()
    text = json.dumps(snapshot)
    password = world.aws.iam.users["dana"].password
    assert password and password not in text
    assert not any(c.password in text for c in world.aws.service_credentials.of("dana"))
    worlds.kill(world)  # the process died; the journal's snapshot brings the world back
    from steps.sandbox.world import World

    again = World.restore(snapshot, SimClock())
    try:
        back = again.export()["iam_users"]["dana"]
        for field in ("login_profile", "groups", "inline_policies", "attached_policies", "mfa_devices", "ssh_public_keys"):
            assert back[field] == exported[field], field
        assert back["signing_certificates"] == exported["signing_certificates"]
        assert back["service_specific_credentials"] == exported["service_specific_credentials"]
    finally:
        again.close()


# -- the done command -------------------------------------------------------------------------


def test_headless_offboarding_deletes_dana_and_audits_what_was_removed(cli, tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    result = cli(
        "run", RUNBOOK, "--mode", "training", "--scenario", SCENARIO, "--user", "dana", "--yes",
        "--confirm-irreversible", "--fast-forward", "--json", "--world-out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "done" and all(s["status"] == "done" for s in summary["steps"])
    assert "dana" not in json.loads(out.read_text())["iam_users"]
    assert {g["verdict"] for g in summary["debrief"]["gotchas"]} == {"handled"}
    assert summary["debrief"]["end_state"] == ["dana: deleted"]

    from steps.audit import AuditLog
    from steps.paths import audit_path

    records = [r for r in AuditLog(audit_path()).records() if r.get("action") == "user.offboard.completed"]
    assert len(records) == 1
    context = records[0]["context"]
    assert (context["person"], context["iam_user"], context["reason"]) == ("dana", "dana", "offboarding")
    assert records[0]["actor"].endswith(":user/handrail-operator")
    removed = context["removed"]
    assert len(removed["access_keys"]) == 2 and removed["login_profile"] is True
    assert removed["groups"] == ["developers", "oncall"]
    assert sorted(removed["inline_policies"]) == ["dana-scratch-bucket", "handrail-offboard-deny-old-sessions"]
    for kind in ("signing_certificates", "ssh_public_keys", "service_specific_credentials", "mfa_devices", "attached_policies"):
        assert len(removed[kind]) == 1, kind
    confirmed = [r for r in AuditLog(audit_path()).records() if r.get("action") == "step.irreversible_confirmed"]
    assert {r["context"]["how"] for r in confirmed} == {"--confirm-irreversible"}
    assert {r["context"]["confirmed"] for r in confirmed} == {"dana"}


def test_without_confirm_irreversible_it_stops_before_the_teardown_and_a_rollback_undoes_containment(cli, tmp_path: Path) -> None:
    contained = tmp_path / "contained.json"
    result = cli(
        "run", RUNBOOK, "--mode", "training", "--scenario", SCENARIO, "--yes", "--fast-forward",
        "--input", "person=Dana Scully", "--world-out", contained,
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "stopped before step 5 (delete-access-keys): irreversible" in result.output
    assert "--confirm-irreversible" in result.output
    user = dana(contained)
    assert {k["status"] for k in user["keys"]} == {"Inactive"} and len(user["keys"]) == 2
    assert user["login_profile"] is False and user["groups"] == []
    assert "handrail-offboard-deny-old-sessions" in user["inline_policies"]
    assert len(user["ssh_public_keys"]) == 1 and len(user["mfa_devices"]) == 1  # the teardown has not begun

    session = json.loads(cli("sessions", "--json").stdout)[0]["session"]
    after = tmp_path / "after.json"
    result = cli("rollback", session, "--yes", "--world-out", after)
    assert result.exit_code == 0, result.output
    assert "a person must: The console password cannot be restored" in result.output
    assert "rolled back, except what only a person can do: step 3a" in result.output
    user = dana(after)
    assert {k["status"] for k in user["keys"]} == {"Active"}
    assert user["groups"] == ["developers", "oncall"]
    assert user["inline_policies"] == ["dana-scratch-bucket"]
    assert user["login_profile"] is False  # a person's job, said above
    assert "handrail-rotation" not in user["tags"]

    from steps.audit import AuditLog
    from steps.paths import audit_path

    done = next(r for r in AuditLog(audit_path()).records() if r.get("action") == "rollback.completed")
    assert list(done["context"]["left_to_a_person"]) == ["delete-login-profile"]


# -- safety -----------------------------------------------------------------------------------


def test_a_key_used_after_its_deactivation_blocks_the_teardown_until_an_audited_override(rig) -> None:
    from moto.iam.models import AccessKeyLastUsed

    world = rig.world(SCENARIO)
    session = start(rig, world)
    run_until(rig, session, "observe")
    session.fast_forward("observe")
    # Something nobody listed used a key just after the deactivation (before it reached every endpoint).
    key_id = session.facts["deactivated_keys"].split(",")[0]
    used = world.clock.now() - timedelta(hours=1)
    world.aws.iam.access_keys[key_id].last_used = AccessKeyLastUsed(used.replace(tzinfo=None), "s3", "us-east-1")
    assert any("this step will block" in line for line in session.prompt("observe").preview)
    outcome = session.run("observe")
    assert outcome.status == "blocked" and key_id in outcome.summary
    assert any(key_id in line for line in outcome.evidence)
    outcome = session.run("observe", override="the laptop was wiped; checked with security")
    assert outcome.status == "done"
    overrides = [r for r in rig.engine.audit.records() if r.get("action") == "block.override"]
    assert overrides and overrides[-1]["context"]["step"] == "observe"


def test_a_skipped_teardown_step_makes_delete_user_fail_with_the_delete_conflict_then_it_is_run_and_the_user_goes(rig) -> None:
    world = rig.world(SCENARIO)
    session = start(rig, world)
    run_until(rig, session, "delete-signing-certificates")
    session.skip("delete-signing-certificates", "test: a trainee skips it")
    run_until(rig, session, "delete-user")
    outcome = rig.step(session)
    assert outcome.status == "failed"
    assert outcome.summary == "iam delete-user dana: DeleteConflict: Cannot delete entity, must delete signing certificates first."
    assert any("1 signing certificate(s)" in line for line in outcome.evidence)
    later = session.run("delete-signing-certificates", answer="dana")
    assert later.status == "done"
    assert session.run("delete-user", answer="dana").status == "done"
    assert "dana" not in world.aws.iam.users


def test_offboarding_the_identity_signed_in_is_refused(rig, scenario_file) -> None:
    world = rig.world(scenario_file("self-offboard", user="dana", as_target=True))
    session = start(rig, world, reason="offboarding", check_call=None)
    outcome = rig.step(session)
    assert outcome.status == "refused" and "cut this session off" in outcome.summary
    assert session.skip_refusal(session.states["pre-checks"])


def test_each_action_looks_first_so_a_resumed_session_finishes_what_a_dead_process_began(rig, worlds) -> None:
    world = rig.world(SCENARIO)
    session = start(rig, world)
    run_until(rig, session, "delete-access-keys")
    iam = world.aws.client("iam")
    # The process died inside step 5 after deleting one of the two keys.
    first = iam.list_access_keys(UserName="dana")["AccessKeyMetadata"][0]["AccessKeyId"]
    iam.delete_access_key(UserName="dana", AccessKeyId=first)
    session.checkpoint()
    row = rig.engine.journal.find_session(session.id)
    worlds.kill(world)
    resumed = rig.new_engine().resume(session.id, lambda r: worlds.restore(r))
    assert resumed.current().step.id == "delete-access-keys"
    outcome = rig.step(resumed)
    assert outcome.status == "done" and outcome.summary == "deleted 1 access key(s)"
    run_until(rig, resumed, "audit-record")
    assert resumed.facts["target_deleted_at"] and row.target == "dana"
    # The user is gone, and this session is what deleted it: a resume is not refused for that.
    resumed.checkpoint()
    worlds.kill(resumed.wiring.world)
    again = rig.new_engine().resume(session.id, lambda r: worlds.restore(r))
    assert again.current().step.id == "audit-record"
    assert rig.step(again).status == "done" and again.status == "done"


def test_the_observation_lasts_what_the_observe_for_input_says(rig) -> None:
    from steps.engine import InputError

    world = rig.world(SCENARIO)
    session = start(rig, world, observe_for="3d")
    run_until(rig, session, "observe")
    gate = session.gate_state(session.runbook.step("observe"))
    assert gate.at_least == 3 * 86400 and not gate.open
    with pytest.raises(InputError, match="observe_for"):
        start(rig, rig.world(SCENARIO), observe_for="soon")


def test_service_specific_credentials_on_an_endpoint_without_them_are_said_not_supported(rig) -> None:
    world = rig.world(SCENARIO)
    world.aws.service_credentials.by_user.clear()
    real = world.aws.answer_iam

    def without(service: str, body: bytes):  # moto itself has no such API
        return None if b"ServiceSpecificCredential" in body else real(service, body)

    world.aws.answer_iam = without
    session = start(rig, world)
    run_until(rig, session, "deactivate-keys")
    snapshot = session.states["snapshot"]
    assert any(line.startswith("service-specific credentials: not supported by this endpoint") for line in snapshot.evidence)
    run_until(rig, session, "remove-mfa-devices")
    assert session.states["delete-service-credentials"].summary == "service-specific credentials: not supported by this endpoint"
