"""Roles and a second operator, with real boto3 against the simulated AWS.

- the runbook's required_role and elevated_role are enforced before anything is written;
- a target is elevated by the inventory or by an admin-equivalent policy (own, or its groups');
- a step that waits for a second operator waits; its operator's own approval is refused;
  another identity's approval lets it run; an expired approval does not.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

OPS_ROLES = {
    "roles": {
        "ops": {"iam_groups": ["ops"]},
        "superadmin": {"iam_groups": ["superadmins"], "includes": ["ops"]},
    }
}


def _keys(world, user: str) -> list[str]:
    return [k.access_key_id for k in world.aws.iam.users[user].access_keys]


# -- roles: the done criterion and its refusal line ---------------------------------------------


def test_an_ops_operator_is_refused_an_elevated_user_before_any_key_is_created(cli, make_engine):
    result = cli("run", "--mode", "training", "--scenario", "elevated-user", "--yes", "--json")
    assert result.exit_code == 3, result.output
    line = result.output.strip().splitlines()[-1]
    assert "user/handrail-operator has role(s) ops" in line
    assert "raxx-deploy-admin is elevated (policy AdministratorAccess attached)" in line
    assert "needs role superadmin" in line and "nothing changed" in line
    assert "Traceback" not in result.output
    engine = make_engine()
    assert engine.journal.sessions() == []  # no session, no lock, no key
    refused = [r for r in engine.audit.records() if r["action"] == "session.refused"]
    assert len(refused) == 1 and refused[0]["context"]["iam_user"] == "raxx-deploy-admin"


def test_the_elevated_user_keeps_its_one_key_when_refused(make_world, make_engine):
    from steps import compose, roles

    world = make_world("elevated-user")
    assert len(_keys(world, "raxx-deploy-admin")) == 1
    prepared = compose.prepare(compose.Request(mode="training", scenario="elevated-user"))
    with pytest.raises(roles.RoleRefused):
        compose.start(make_engine(), prepared, world_factory=lambda sc: world)
    # Only reads were made (the world is closed with the refused session's wiring).
    assert world.aws.calls.get("iam:ListAttachedUserPolicies") == 1
    writes = {"iam:CreateAccessKey", "iam:TagUser", "iam:UpdateAccessKey", "iam:DeleteAccessKey"}
    assert not writes & set(world.aws.calls), world.aws.calls


def test_a_superadmin_rotates_the_elevated_user(make_world, make_engine, rig):
    from steps import compose

    world = make_world("elevated-user")
    world.aws.join_groups("handrail-operator", ["superadmins"])
    prepared = compose.prepare(compose.Request(mode="training", scenario="elevated-user"))
    session = compose.start(make_engine(), prepared, world_factory=lambda sc: world)
    governance = session.row.options["governance"]
    assert governance["roles"] == ["ops", "superadmin"]
    assert governance["needed"] == "ops"
    assert governance["elevated"].startswith("not looked at")
    session.close()


def _write_roles(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("attach", "why"),
    [
        (
            {"inline_policies": {"all": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}},
            "inline policy all",
        ),
        ({"attached_policies": ["IAMFullAccess"]}, "policy IAMFullAccess attached"),
        ({"groups": ["admins"]}, "via group admins"),
    ],
)
def test_admin_equivalent_policies_make_a_user_elevated(make_world, scenario_file, attach, why):
    from steps.roles import elevation
    from steps.wiring import TrainingWiring

    path = scenario_file("elevation")
    data = yaml.safe_load(path.read_text())
    data["aws"]["users"]["raxx-vault-operator"].update(attach)
    path.write_text(yaml.safe_dump(data))
    world = make_world(path)
    if "groups" in attach:  # the group's own policy says Action *
        world.aws.iam.put_group_policy(
            "admins",
            "everything",
            json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": "*"}]}),
        )
    assert why in (elevation(TrainingWiring(world), "raxx-vault-operator") or "")


def test_a_plain_user_is_not_elevated_and_the_inventory_can_say_otherwise(make_world):
    from steps.inventory import Inventory, UserEntry
    from steps.roles import elevation
    from steps.wiring import TrainingWiring

    world = make_world("offboarding")  # dana: an inline s3 policy, a managed read policy, two groups
    assert elevation(TrainingWiring(world), "dana") is None
    inventory = Inventory(users={"dana": UserEntry(elevated=True)})
    assert elevation(TrainingWiring(world), "dana", inventory) == "the inventory marks it elevated"


def test_principals_assumed_roles_and_sso_permission_sets_match():
    from steps.roles import Principal, RolesFile, roles_of

    roles = RolesFile.model_validate(
        {
            "roles": {
                "ops": {"assumed_roles": ["ops-*"], "sso_permission_sets": ["OpsAccess"]},
                "superadmin": {"principals": ["arn:aws:iam::111122223333:user/root-admin", "arn:aws:iam::*:role/BreakGlass"]},
            }
        }
    )

    def held(arn: str) -> set[str]:
        return roles_of(Principal.parse(arn), roles)[0]

    assert held("arn:aws:sts::111122223333:assumed-role/ops-oncall/alice") == {"ops"}
    assert held("arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_OpsAccess_0123456789abcdef/bob@raxx.io") == {"ops"}
    assert held("arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_ReadOnly_0123456789abcdef/bob@raxx.io") == set()
    assert held("arn:aws:sts::111122223333:assumed-role/BreakGlass/carol") == {"superadmin"}
    assert held("arn:aws:iam::111122223333:user/root-admin") == {"superadmin"}
    assert held("arn:aws:iam::111122223333:user/someone") == set()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("roles: {ops: {iam_group: [ops]}}", "roles.ops.iam_group"),
        ("roles: {ops: {includes: [superadmin]}}", "roles.ops.includes[0]"),
        ("roles: {ops: {principals: [alice]}}", "roles.ops.principals"),
        ("roles: {ops: {}}\napprovals: {expire_after: soon}", "approvals.expire_after"),
    ],
)
def test_a_bad_roles_file_is_one_line_naming_the_field(cli, tmp_path, text, said):
    path = tmp_path / "roles.yaml"
    path.write_text(text)
    result = cli("run", "--mode", "live", "--user", "someone", "--roles", str(path), "--yes")
    assert result.exit_code == 2
    assert said in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_live_without_a_roles_file_refuses_an_elevated_user_and_goes_on_with_others(live_world, cli, make_engine):
    live_world.aws.iam.put_user_policy(
        "raxx-vault-operator",
        "all",
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )
    result = cli("run", "--mode", "dry-run", "--user", "raxx-vault-operator", "--yes")
    assert result.exit_code == 3
    assert "has no role" in result.output and "there is no roles file" in result.output
    live_world.aws.iam.delete_user_policy("raxx-vault-operator", "all")
    result = cli("run", "--mode", "dry-run", "--user", "raxx-vault-operator", "--yes", "--json")
    assert result.exit_code == 0, result.output
    row = make_engine().journal.find_session("last")
    assert "no roles file" in row.options["governance"]["notes"][0]


def test_a_live_operator_without_the_required_role_is_refused(live_world, cli, tmp_path):
    roles = _write_roles(tmp_path, OPS_ROLES)
    result = cli("run", "--mode", "live", "--user", "raxx-vault-operator", "--roles", str(roles), "--yes")
    assert result.exit_code == 3
    assert "has no role" in result.output and "needs role ops" in result.output
    assert len(_keys(live_world, "raxx-vault-operator")) == 1


def test_a_campaign_refuses_the_elevated_target_and_rotates_the_others(cli, make_engine, scenario_file):
    path = scenario_file("mixed-fleet", other_users={"raxx-admin": [{"status": "Active", "age": "40d", "last_used": "1h"}]})
    data = yaml.safe_load(path.read_text())
    data["aws"]["users"]["raxx-admin"]["attached_policies"] = ["AdministratorAccess"]
    data["operator"] = {"groups": ["ops"]}
    data["roles"] = OPS_ROLES
    path.write_text(yaml.safe_dump(data))
    result = cli(
        "campaign", "start", "--user", "raxx-vault-operator", "--user", "raxx-admin", "--scenario", str(path),
        "--yes", "--fast-forward", "--confirm-irreversible", "--json",
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    out = json.loads(result.output[result.output.index("{") :])
    states = {t["user"]: t for t in out["targets"]}
    assert states["raxx-vault-operator"]["state"] == "done"
    assert states["raxx-admin"]["state"] == "refused" and "needs role superadmin" in states["raxx-admin"]["detail"]
    assert states["raxx-admin"]["session"] is None


# -- two people -----------------------------------------------------------------------------------


def _approvals_live(live_world, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A roles file that asks a second operator for every irreversible step, and the
    environment of a second IAM user (another STS principal) in the same account."""
    roles = _write_roles(
        tmp_path,
        {
            "roles": {"ops": {"principals": ["arn:aws:iam::*:user/handrail-operator", "arn:aws:iam::*:user/second"]}},
            "approvals": {"irreversible": True},
        },
    )
    pair = live_world.aws.create_user_with_key("second", [])
    return roles, {"AWS_ACCESS_KEY_ID": pair.key_id, "AWS_SECRET_ACCESS_KEY": pair.secret.reveal()}


def _run_to_the_delete(cli, runbook: Path, roles: Path):
    return cli(
        "run", str(runbook), "--mode", "live", "--user", "raxx-vault-operator", "--roles", str(roles), "--yes",
        "--override-gate", "observed in staging", "--confirm-irreversible", "--json",
    )  # fmt: skip


def test_the_delete_waits_for_a_second_operator_and_not_for_the_first(live_world, cli, tmp_path, runbook_without_settle, make_engine):
    roles, second = _approvals_live(live_world, tmp_path)
    result = _run_to_the_delete(cli, runbook_without_settle, roles)
    assert result.exit_code == 3, result.output
    out = json.loads(result.output[result.output.index("{\n") :])
    session = out["session"]
    command = f'handrail approve {session} --step delete-old-key --reason "WHY"'
    assert "waiting for a second operator" in out["message"] and command in out["message"]
    old = out["old_key_id"]
    assert old in _keys(live_world, "raxx-vault-operator")  # not deleted

    own = cli("approve", session, "--step", "delete-old-key", "--reason", "it is fine")
    assert own.exit_code == 3 and "the approval must come from another identity" in own.output
    assert len(own.output.strip().splitlines()) == 1
    assert make_engine().journal.approvals(session) == []

    other = cli("approve", session, "--step", "delete-old-key", "--reason", "dashboards are quiet", env=second)
    assert other.exit_code == 0, other.output
    assert "approved by arn:aws:iam::" in other.output and "user/second" in other.output

    done = cli("resume", session, "--yes", "--confirm-irreversible", "--json")
    assert done.exit_code == 0, done.output
    assert old not in _keys(live_world, "raxx-vault-operator")
    engine = make_engine()
    actions = [r["action"] for r in engine.audit.for_session(session)]
    assert "approval.refused" in actions and "approval.granted" in actions and "approval.used" in actions
    granted = next(r for r in engine.audit.for_session(session) if r["action"] == "approval.granted")
    assert granted["actor"].endswith(":user/second")


@pytest.mark.slow
def test_an_expired_approval_does_not_open_the_step(live_world, cli, tmp_path, runbook_without_settle):
    roles, second = _approvals_live(live_world, tmp_path)
    result = _run_to_the_delete(cli, runbook_without_settle, roles)
    session = json.loads(result.output[result.output.index("{\n") :])["session"]
    given = cli("approve", session, "--step", "delete-old-key", "--reason", "quick look", "--expires", "1s", env=second)
    assert given.exit_code == 0, given.output
    time.sleep(2.1)
    again = cli("resume", session, "--yes", "--confirm-irreversible", "--json")
    assert again.exit_code == 3
    message = json.loads(again.output[again.output.index("{\n") :])["message"]
    assert "waiting for a second operator" in message and "expired at" in message


def test_training_approves_as_the_worlds_second_operator(cli, make_engine):
    run = cli("run", "--mode", "training", "--scenario", "second-operator", "--yes", "--fast-forward", "--confirm-irreversible", "--json")
    assert run.exit_code == 3, run.output
    session = json.loads(run.output[run.output.index("{\n") :])["session"]
    bad = cli("approve", session, "--step", "create-key", "--reason", "why not")
    assert bad.exit_code == 2 and "does not wait for a second operator" in bad.output
    ok = cli("approve", session, "--step", "delete-old-key", "--reason", "the dashboards are quiet")
    assert ok.exit_code == 0 and "user/handrail-second-operator" in ok.output, ok.output
    done = cli("resume", session, "--yes", "--confirm-irreversible", "--json")
    assert done.exit_code == 0, done.output
    assert make_engine().journal.find_session(session).status == "done"


def test_a_step_the_roles_do_not_mark_never_waits(rig):
    """The happy path: no roles file in the scenario, nothing waits for anybody."""
    session = rig.start(rig.world("happy-path"))
    for state in session.step_states():
        assert session.approval_reason(state.step) is None
    session.close()


def test_the_operators_own_approval_is_refused_in_the_domain(make_world, make_engine):
    from steps import approval, compose
    from steps.roles import Governance

    world = make_world("second-operator")
    prepared = compose.prepare(compose.Request(mode="training", scenario="second-operator"))
    engine = make_engine()
    session = compose.start(engine, prepared, world_factory=lambda sc: world)
    operator = session.operator_arn
    with pytest.raises(approval.ApprovalRefused, match="another identity"):
        approval.grant(
            engine.journal, engine.audit, approval.Grant(session.row, "delete-old-key", operator, "1", "mine"), Governance.open(), None, "t"
        )
    assert engine.journal.approvals(session.id) == []
    session.close()


# -- the report -----------------------------------------------------------------------------------


def test_report_last_names_the_session_the_operator_and_both_keys(cli, make_engine):
    run = cli("run", "--mode", "training", "--scenario", "happy-path", "--yes", "--fast-forward", "--confirm-irreversible", "--json")
    assert run.exit_code == 0, run.output
    data = json.loads(run.output[run.output.index("{\n") :])
    result = cli("report", "last", "--format", "markdown")
    assert result.exit_code == 0, result.output
    text = result.output
    row = make_engine().journal.find_session(data["session"])
    operator = row.options["binding"]["operator_arn"]
    assert f"Session {data['session']}" in text
    assert operator in text and ":user/handrail-operator" in operator
    assert data["old_key_id"] in text and data["new_key_id"] in text
    assert f"sha256 `{row.runbook_sha}`" in text and "version 1" in text
    cloudtrail = text[text.index("## CloudTrail") : text.index("## End state")]
    assert "Before the rotation (step 1)" in cloudtrail and "After the rotation (step 8)" in cloudtrail
    assert re.search(rf"CreateAccessKey {data['new_key_id']} at \S+: CloudTrail event \S+", cloudtrail)
    assert "chain intact" in text
    assert "irreversible step confirmed (step delete-old-key)" in text  # how the delete was confirmed
    as_json = json.loads(cli("report", data["session"], "--format", "json").output)
    assert as_json["who"]["operator_arn"] == operator
    assert as_json["end_state"]["old_key_id"] == data["old_key_id"] and as_json["what"]["version"] == 1


def test_a_report_never_holds_a_secret(rig, cli, tmp_path):
    world = rig.world("happy-path")
    session = rig.start(world)
    rig.run_steps(session, 5)  # through create-key and validate: the new secret is in memory
    secrets = [session.secrets["new_secret"].reveal(), world.aws.operator.secret.reveal()]
    secrets += [s.reveal() for s in world.aws.secrets_by_key().values()]
    assert all(len(s) >= 16 for s in secrets)
    session.close()
    out = tmp_path / "report.json"
    assert cli("report", session.id, "--format", "json", "--out", str(out)).exit_code == 0
    assert cli("report", session.id, "--out", str(tmp_path / "report.md")).exit_code == 0
    for path in (out, tmp_path / "report.md"):
        text = path.read_text()
        assert session.facts["new_key_id"] in text
        assert not [s for s in secrets if s in text]


def test_report_out_refuses_to_replace_a_file_and_a_missing_folder(cli, tmp_path, rig):
    session = rig.start(rig.world("happy-path"))
    session.close()
    out = tmp_path / "r.md"
    out.write_text("keep me")
    refused = cli("report", session.id, "--out", str(out))
    assert refused.exit_code == 2 and "exists; pass --force" in refused.output
    assert out.read_text() == "keep me"
    assert cli("report", session.id, "--out", str(out), "--force").exit_code == 0
    assert session.id in out.read_text()
    missing = cli("report", session.id, "--out", str(tmp_path / "nowhere" / "r.md"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    unknown = cli("report", "no-such-session")
    assert unknown.exit_code == 2 and "Traceback" not in unknown.output


def test_a_report_names_the_forgotten_caller_and_its_uses_after_the_deactivation(cli):
    """The CloudTrail section in words, from what the rotation recorded (steps/cloudtrail.py)."""
    run = cli(
        "run", "--mode", "training", "--scenario", "forgotten-consumer", "--yes", "--confirm-irreversible", "--fast-forward", "--json"
    )
    assert run.exit_code == 1, run.output  # blocked before the delete
    data = json.loads(cli("report", "last", "--format", "json").output)
    assert data["cloudtrail"]["gathered"] and data["cloudtrail"]["findings"]["callers"]["unmatched"] == 1

    text = cli("report", "last", "--format", "markdown").output
    section = text[text.index("## CloudTrail") : text.index("## End state")]
    forgotten = [line for line in section.splitlines() if "matches NO consumer" in line]
    assert len(forgotten) == 1 and "192.0.2.99" in forgotten[0] and "nightly-report" in forgotten[0]
    used = [line.split() for line in section.splitlines() if line.strip().startswith("USED ")]
    assert used and all(u[2:6] == ["GetCallerIdentity", "us-east-1", "from", "192.0.2.99"] for u in used)


def test_a_report_without_cloudtrail_evidence_says_so(rig, cli):
    session = rig.start(rig.world("happy-path"))
    session.close()
    data = json.loads(cli("report", session.id, "--format", "json").output)
    assert not data["cloudtrail"]["gathered"]
    assert "- no CloudTrail evidence gathered" in cli("report", session.id).output


def test_a_campaign_report_aggregates_its_sessions(cli, tmp_path):
    from test_campaigns import small_fleet

    run = cli(
        "campaign",
        "start",
        "--due",
        "--scenario",
        small_fleet(tmp_path, due=3, fresh=1),
        "--yes",
        "--fast-forward",
        "--confirm-irreversible",
        "--concurrency",
        "4",
        "--json",
    )
    assert run.exit_code == 0, run.output[-2000:]
    campaign = json.loads(run.output[run.output.index("{\n") :])["campaign"]
    text = cli("report", campaign).output
    assert text.startswith(f"# Campaign {campaign}")
    data = json.loads(cli("report", campaign, "--format", "json").output)
    assert data["kind"] == "campaign" and len(data["targets"]) == 3
    for target in data["targets"]:
        assert target["report"]["session"] in text and target["new_key_id"] in text


def test_a_tampered_audit_line_shows_in_the_report(rig, cli, handrail_home):
    session = rig.start(rig.world("happy-path"))
    session.close()
    path = handrail_home / "audit.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace("session.started", "session.startex")
    path.write_text("".join(lines))
    assert "chain BROKEN at line" in cli("report", session.id).output


def test_the_debrief_of_a_live_session_has_no_training_words(live_world, cli):
    result = cli("run", "--mode", "dry-run", "--user", "raxx-vault-operator", "--yes")
    assert result.exit_code == 0, result.output
    for fmt in ("markdown", "text", "json"):
        text = cli("debrief", "last", "--format", fmt).output
        assert "scenario" not in text and "simulated world was not saved" not in text, text
    assert "dry-run mode" in cli("debrief", "last", "--format", "markdown").output
