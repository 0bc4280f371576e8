"""Roles are checked again whenever a session is opened again: a resume, a rollback, an
abandon, and a take-over by another operator of the account. A second identity without
the elevated role cannot carry on (or undo) an elevated user's rotation: exit 3, one
line, nothing written; with the role, it takes the session over."""

from __future__ import annotations

import json

import pytest
import yaml

ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture
def two_operators(live_world, tmp_path):
    """handrail-operator holds ops and superadmin; `second` holds ops only. The target
    is elevated (an inline Action * policy)."""
    roles = tmp_path / "roles.yaml"
    roles.write_text(
        yaml.safe_dump(
            {
                "roles": {
                    "ops": {"principals": ["arn:aws:iam::*:user/handrail-operator", "arn:aws:iam::*:user/second"]},
                    "superadmin": {"principals": ["arn:aws:iam::*:user/handrail-operator"], "includes": ["ops"]},
                }
            }
        )
    )
    pair = live_world.aws.create_user_with_key("second", [])
    second = {"AWS_ACCESS_KEY_ID": pair.key_id, "AWS_SECRET_ACCESS_KEY": pair.secret.reveal()}
    return roles, second


def _start_to_the_gate(cli, runbook, roles) -> str:
    result = cli("run", str(runbook), "--mode", "live", "--user", "raxx-vault-operator", "--roles", str(roles), "--yes", "--json")
    assert result.exit_code == 3, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "waiting", out
    return str(out["session"])


def _state(engine, session: str):
    row = engine.journal.find_session(session)
    return row.status, row.actor, len(engine.journal.events(session)), engine.journal.facts(session)


@pytest.mark.parametrize(
    "command",
    [
        ["resume", "{s}", "--yes"],
        ["rollback", "{s}", "--yes"],
        ["abandon", "{s}", "--reason", "taking it"],
    ],
    ids=["resume", "rollback", "abandon"],
)
def test_a_second_operator_without_the_elevated_role_cannot_take_over(
    live_world, cli, make_engine, runbook_without_settle, two_operators, command
):
    roles, second = two_operators
    live_world.aws.iam.put_user_policy("raxx-vault-operator", "all", json.dumps(ADMIN))
    session = _start_to_the_gate(cli, runbook_without_settle, roles)
    keys = {k.access_key_id: k.status for k in live_world.aws.iam.users["raxx-vault-operator"].access_keys}
    before = _state(make_engine(), session)

    result = cli(*(session if a == "{s}" else a for a in command), env=second)

    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    line = [x for x in result.stderr.splitlines() if x.strip()][-1]
    assert line.startswith("handrail: refused: ") and "user/second has role(s) ops" in line
    assert "raxx-vault-operator is elevated" in line and "needs role superadmin" in line
    engine = make_engine()
    assert _state(engine, session) == before  # no event, no take-over, same actor and status
    assert {k.access_key_id: k.status for k in live_world.aws.iam.users["raxx-vault-operator"].access_keys} == keys
    refused = [r for r in engine.audit.for_session(session) if r["action"] == "session.refused"]
    assert len(refused) == 1 and refused[0]["actor"].endswith(":user/second")
    assert not [r for r in engine.audit.for_session(session) if r["action"] == "session.taken_over"]


def test_the_operator_who_lost_a_role_since_the_start_is_refused_on_resume(
    live_world, cli, make_engine, runbook_without_settle, two_operators
):
    roles, _ = two_operators
    session = _start_to_the_gate(cli, runbook_without_settle, roles)
    roles.write_text(yaml.safe_dump({"roles": {"ops": {"principals": ["arn:aws:iam::*:user/someone-else"]}}}))
    before = _state(make_engine(), session)
    result = cli("resume", session, "--yes", "--override-gate", "checked", "--confirm-irreversible")
    assert result.exit_code == 3, result.output
    assert "needs role ops" in result.output and "Traceback" not in result.output
    assert _state(make_engine(), session) == before


def test_a_second_operator_with_the_role_takes_over_a_plain_users_session(
    live_world, cli, make_engine, runbook_without_settle, two_operators
):
    roles, second = two_operators
    session = _start_to_the_gate(cli, runbook_without_settle, roles)
    result = cli("resume", session, "--yes", "--override-gate", "checked in staging", "--confirm-irreversible", "--json", env=second)
    assert result.exit_code == 0, result.output
    engine = make_engine()
    assert engine.journal.find_session(session).status == "done"
    taken = [r for r in engine.audit.for_session(session) if r["action"] == "session.taken_over"]
    assert len(taken) == 1 and taken[0]["actor"].endswith(":user/second")
