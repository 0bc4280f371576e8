"""Every shipped training scenario played to its intended end, headless, and each gotcha
scenario played the wrong way too: the debrief must tell the two apart."""

from __future__ import annotations

import pytest

from steps import debrief as debriefs
from steps.sandbox import scenario as scenarios

ALL = sorted(p.stem for p in scenarios.shipped())


def verdicts(rig, session) -> dict[str, str]:
    d = debriefs.build(rig.engine.journal, rig.engine.audit, session.id)
    return {v.id: v.verdict for v in d.gotchas}


def debrief_of(rig, session) -> debriefs.Debrief:
    return debriefs.build(rig.engine.journal, rig.engine.audit, session.id)


def keys_in_order(world) -> list[str]:
    return [k.access_key_id for k in world.aws.iam.users[world.scenario.target_user].access_keys]


def run_to(rig, session, step_id: str) -> None:
    while session.current() is not None and session.current().step.id != step_id:
        outcome = rig.step(session)
        assert outcome is None or outcome.status == "done", outcome


def test_every_shipped_scenario_loads_names_its_gotchas_and_has_a_check_for_each() -> None:
    assert len(ALL) >= 8
    for name in ALL:
        scenario = scenarios.load(name)
        assert scenario.gotchas, name
        assert all(g in debriefs.CHECKS for g in scenario.gotchas), (name, scenario.gotchas)


# -- the intended ends ----------------------------------------------------------------------------


def test_happy_path_completes_and_every_gotcha_is_handled(rig) -> None:
    world = rig.world("happy-path")
    session = rig.start(world)
    assert rig.drive(session).code == 0
    assert set(verdicts(rig, session).values()) == {"handled"}
    d = debrief_of(rig, session)
    assert d.rollback.startswith("not needed")
    new = session.facts["new_key_id"]
    assert any(line.endswith(f"holds {new} (Active)") for line in d.end_state if line.startswith("heroku:"))


def test_inactive_key_in_slot_deletes_the_inactive_key_after_its_last_use(rig) -> None:
    world = rig.world("inactive-key-in-slot")
    inactive, active = keys_in_order(world)
    session = rig.start(world)
    assert rig.drive(session).code == 0
    assert inactive not in rig.keys(world) and active not in rig.keys(world)
    assert any("last used" in line for line in session.states["free-key-slot"].evidence)
    assert verdicts(rig, session) == {"inactive-is-not-deleted": "handled"}


def test_two_active_keys_retires_the_unused_key_and_rotates_the_one_in_use(rig) -> None:
    world = rig.world("two-active-keys")
    in_use, unused = keys_in_order(world)
    session = rig.start(world)
    assert rig.drive(session, retire_key=unused).code == 0
    assert session.facts["retired_key_id"] == unused and session.facts["old_key_id"] == in_use
    assert verdicts(rig, session) == {"two-keys": "handled"}


def test_slow_propagation_polls_until_the_new_key_works(rig) -> None:
    world = rig.world("slow-propagation")
    session = rig.start(world)
    assert rig.drive(session).code == 0
    assert float(session.facts["new_key_valid_after"]) >= 20.0
    assert verdicts(rig, session) == {"eventual-consistency": "handled"}


def test_consumer_fails_is_retried_until_every_consumer_holds_the_new_key(rig) -> None:
    world = rig.world("consumer-fails")
    session = rig.start(world)
    first = rig.drive(session)
    assert first.code == 1 and "heroku:raxx-api-prod" in first.message
    assert rig.drive(session).code == 1  # Heroku answers 500 twice
    assert rig.drive(session).code == 0
    assert verdicts(rig, session) == {"consumer-fails": "handled", "deactivate-before-verified": "handled"}


def test_forgotten_consumer_blocks_the_delete_and_a_rollback_restores_the_old_key(rig) -> None:
    world = rig.world("forgotten-consumer")
    (old,) = keys_in_order(world)
    session = rig.start(world)
    stopped = rig.drive(session)
    assert stopped.code == 1 and "blocked" in stopped.message and "after it was deactivated" in stopped.message
    ok, _ = session.rollback()
    assert ok and rig.keys(world)[old] == "Active"
    assert verdicts(rig, session) == {"last-used-before-delete": "handled"}
    assert debrief_of(rig, session).rollback.startswith("rolled back")


def test_self_rotation_is_refused_at_step_one_and_nothing_changes(rig) -> None:
    world = rig.world("self-rotation")
    before = rig.keys(world)
    session = rig.start(world)
    assert rig.drive(session).code == 3
    assert rig.keys(world) == before
    assert verdicts(rig, session) == {"self-rotation": "handled"}
    assert debrief_of(rig, session).rollback == "not needed: nothing was changed"


def test_vault_unreachable_is_retried_once_the_vault_is_back(rig) -> None:
    world = rig.world("vault-unreachable")
    session = rig.start(world)
    stopped = rig.drive(session)
    assert stopped.code == 1 and "store-in-vault" in stopped.message
    assert session.states["propagate"].status == "pending"  # nothing went past the vault
    assert rig.drive(session).code == 0
    assert verdicts(rig, session) == {"vault-unreachable": "handled"}


# -- the wrong ways -------------------------------------------------------------------------------


def test_happy_path_with_the_gate_overridden_is_caught(rig) -> None:
    session = rig.start(rig.world("happy-path"))
    assert rig.drive(session, fast_forward=False, override_gate="in a hurry").code == 0
    assert verdicts(rig, session)["observation-gate"] == "missed"


def test_a_secret_lost_before_the_vault_stored_it_is_caught(rig, worlds) -> None:
    world = rig.world("happy-path")
    session = rig.start(world)
    run_to(rig, session, "validate-new-key")
    row = rig.engine.journal.session(session.id)
    worlds.kill(world)  # the process dies holding the new secret
    resumed = rig.new_engine().resume(session.id, lambda r: worlds.restore(r))
    assert resumed.states["create-key"].status == "pending"
    assert rig.drive(resumed).code == 0
    assert row.id == resumed.id
    assert verdicts(rig, resumed)["secret-shown-once"] == "missed"


def test_skipping_the_slot_in_inactive_key_in_slot_is_caught(rig) -> None:
    session = rig.start(rig.world("inactive-key-in-slot"))
    rig.step(session)  # pre-checks
    rig.step(session)  # claim-user
    session.skip("free-key-slot", "trainee thinks the Inactive key does not count")
    assert rig.drive(session).code == 1
    assert "already has 2 keys" in session.states["create-key"].summary
    assert verdicts(rig, session) == {"inactive-is-not-deleted": "missed"}


def test_retiring_the_key_in_use_is_refused_and_caught(rig) -> None:
    world = rig.world("two-active-keys")
    in_use, unused = keys_in_order(world)
    session = rig.start(world)
    stopped = rig.drive(session, retire_key=in_use)
    assert stopped.code == 3 and "the key the vault holds" in stopped.message
    assert set(rig.keys(world)) == {in_use, unused}  # nothing was deleted
    assert verdicts(rig, session) == {"two-keys": "missed"}


def test_skipping_validation_in_slow_propagation_is_caught(rig) -> None:
    session = rig.start(rig.world("slow-propagation"))
    run_to(rig, session, "validate-new-key")
    session.skip("validate-new-key", "it usually works")
    rig.drive(session)
    assert verdicts(rig, session) == {"eventual-consistency": "missed"}


def test_pushing_past_a_failed_consumer_is_caught(rig) -> None:
    world = rig.world("consumer-fails")
    session = rig.start(world)
    assert rig.drive(session).code == 1
    session.skip("propagate", "Heroku can catch up later")
    session.skip("verify-downstream", "no time")
    pushed = rig.drive(session, override_block="deactivating anyway")
    # Heroku is still on the old key: the check after the deactivation catches it.
    assert pushed.code == 1 and "heroku:raxx-api-prod stopped working after the old key was deactivated" in pushed.message
    assert verdicts(rig, session) == {"consumer-fails": "missed", "deactivate-before-verified": "missed"}


def test_overriding_the_last_use_block_is_caught(rig) -> None:
    world = rig.world("forgotten-consumer")
    (old,) = keys_in_order(world)
    session = rig.start(world)
    assert rig.drive(session, override_block="looks fine to me").code == 0
    assert old not in rig.keys(world)
    d = debrief_of(rig, session)
    assert {v.id: v.verdict for v in d.gotchas} == {"last-used-before-delete": "missed"}
    assert any("forgotten:" in line and "it is broken" in line for line in d.end_state)


def test_forcing_a_self_rotation_is_caught(rig) -> None:
    session = rig.start(rig.world("self-rotation"), allow_self_rotation="yes")
    assert rig.drive(session).code == 0
    assert verdicts(rig, session) == {"self-rotation": "missed"}


def test_skipping_the_store_when_the_vault_is_down_is_caught(rig) -> None:
    session = rig.start(rig.world("vault-unreachable"))
    assert rig.drive(session).code == 1
    session.skip("store-in-vault", "the vault can wait")
    rig.drive(session)
    assert verdicts(rig, session) == {"vault-unreachable": "missed"}


# -- the debrief as a document --------------------------------------------------------------------


@pytest.mark.slow
def test_the_debrief_exports_as_markdown_from_the_command_line(cli, tmp_path) -> None:
    run = cli("run", "--scenario", "forgotten-consumer", "--yes", "--fast-forward", "--confirm-irreversible")
    assert run.exit_code == 1
    assert "debrief: The forgotten consumer" in run.output and "[handled]" in run.output
    out = tmp_path / "debrief.md"
    result = cli("debrief", "last", "--format", "markdown", "--out", out)
    assert result.exit_code == 0
    text = out.read_text()
    assert text.startswith("# Debrief: The forgotten consumer")
    assert "| get-access-key-last-used before the delete | **handled** |" in text
    assert "## Timeline" in text and "delete-old-key" in text

    # The file is evidence now: a second export does not replace it without --force.
    again = cli("debrief", "last", "--format", "json", "--out", out)
    assert again.exit_code == 2 and "exists; pass --force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert out.read_text() == text
    forced = cli("debrief", "last", "--format", "json", "--out", out, "--force")
    assert forced.exit_code == 0 and out.read_text().startswith("{")


def test_train_list_prints_every_scenario_without_the_app(cli) -> None:
    result = cli("train", "--list")
    assert result.exit_code == 0
    for name in ALL:
        assert name in result.output
