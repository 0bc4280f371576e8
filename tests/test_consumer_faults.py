"""Faults half-way through steps 4-5: a consumer or the vault fails, the session stays
resumable, resuming after the fault clears finishes, and rollback restores the old pair
everywhere (including the consumers that had already taken the new one).

Faults are injected into the training world's servers: an HTTP 500 from the fake
Heroku or GitHub API (steps/sandbox/http.py `fail`), the SSH host refusing connections,
failing the service restart, or presenting a different host key; the Infisical outage switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from world_helpers import (
    GITHUB_PLACE,
    HEROKU_PLACE,
    SSH_PLACE,
    SSH_RUNNING,
    VAULT_PLACE,
    assert_everyone_holds,
    assert_pairs_work,
    files_under,
    headless,
    holders,
    home,
    iam_keys,
    lab,
    leaks,
    run_until,
    scenario_file,
    secret_values,
    vault_history,
)

from steps.driver import EXIT_DONE, EXIT_FAILED

CONSUMERS = (HEROKU_PLACE, GITHUB_PLACE, SSH_PLACE)


def _fix_known_hosts(world) -> None:
    """What the operator does after checking the rebuilt host's new key out of band."""
    (entry,) = [c for c in world.inventory.user(world.scenario.target_user).consumers if c.type == "ssh"]
    Path(entry.known_hosts).write_text(world.ssh.known_hosts_line() + "\n")


@dataclass(frozen=True)
class Fault:
    name: str
    consumer: str  # the place that fails
    inject: Callable  # into the running world, just before propagate
    clear: Callable  # what makes it go away (nothing, for a fault that fires N times)
    says: str  # what the consumer's failure line must say
    failing_attempts: int = 1  # propagate attempts the fault spoils
    # Armed by the scenario instead (steps/sandbox/world.py `before_step`), for the
    # switches the world resets at every step start.
    scenario_faults: tuple = ()


def _nothing(world) -> None:
    pass


FAULTS = [
    Fault(
        "heroku-500",
        HEROKU_PLACE,
        lambda w: w.heroku.fail("patch_config", times=2),
        _nothing,
        "HTTP 500",
        failing_attempts=2,
    ),
    Fault(
        "ssh-refused",
        SSH_PLACE,
        _nothing,
        lambda w: setattr(w.ssh, "refuse_connections", False),
        "connection refused",
        # Armed the way a training scenario arms it: for propagate's first attempt only.
        scenario_faults=({"at": "propagate", "system": "ssh", "refuse_connections": True, "times": 1},),
    ),
    Fault(
        "ssh-restart-fails",
        SSH_PLACE,
        lambda w: w.ssh.fail_restart("raxx-vault", times=1),
        _nothing,
        "restart failed",
    ),
    Fault(
        "ssh-wrong-host-key",
        SSH_PLACE,
        lambda w: w.ssh.swap_host_key(),
        _fix_known_hosts,
        "HOST KEY MISMATCH",
    ),
    Fault(
        "github-500",
        GITHUB_PLACE,
        lambda w: w.github.fail("put_repo_secret", times=1),
        _nothing,
        "HTTP 500",
    ),
]
BY_NAME = {f.name: f for f in FAULTS}


def _fault_params():
    return [pytest.param(fault, id=fault.name) for fault in FAULTS]


def _fail_propagate(lab, fault: Fault):
    if fault.scenario_faults:
        world = lab.world(scenario_file(lab.home.parent, f"happy-path-{fault.name}", faults=list(fault.scenario_faults)))
    else:
        world = lab.world()
    (old,) = iam_keys(world)
    session = lab.start(world)
    run_until(session, "propagate")
    fault.inject(world)
    drove = headless(session)
    return world, session, old, drove


# -- a consumer fails half-way -------------------------------------------------------------------


@pytest.mark.parametrize("fault", _fault_params())
def test_a_consumer_failing_half_way_fails_propagate_listing_every_consumer(lab, fault: Fault) -> None:
    world, session, old, drove = _fail_propagate(lab, fault)
    new = session.facts["new_key_id"]

    assert drove.code == EXIT_FAILED, drove.text
    assert f"handrail resume {session.id}" in drove.message and f"handrail rollback {session.id}" in drove.message
    assert session.status == "failed"
    state = session.states["propagate"]
    assert state.status == "failed"
    assert state.summary == f"1 of 3 consumer(s) failed: {fault.consumer}"
    # One result line per consumer, the failing one saying why, the others ok.
    for name in CONSUMERS:
        lines = [line for line in state.evidence if line.startswith(f"{name}: ")]
        assert len(lines) == 1, f"{name}: {lines}\n" + "\n".join(state.evidence)
        if name == fault.consumer:
            assert lines[0].startswith(f"{name}: FAILED: ") and fault.says in lines[0], lines[0]
        else:
            assert lines[0].startswith(f"{name}: ok: "), lines[0]

    held = holders(world)
    for name in CONSUMERS:
        if name != fault.consumer:
            assert held[name]["key_id"] == new, f"{name} should have taken the new pair"
    if fault.name == "ssh-restart-fails":
        assert held[SSH_PLACE]["key_id"] == new  # the file was rewritten ...
        assert held[SSH_RUNNING]["key_id"] is None and world.ssh.service_state("raxx-vault") == "failed"  # ... the service is down
    else:
        assert held[fault.consumer]["key_id"] == old
    # Nothing past step 5 happened: the old key still works, the vault has the new pair.
    assert {k: v["status"] for k, v in iam_keys(world).items()} == {old: "Active", new: "Active"}
    assert held[VAULT_PLACE]["key_id"] == new


@pytest.mark.parametrize("fault", _fault_params())
def test_resuming_in_a_new_process_after_the_fault_clears_finishes_the_rotation(lab, fault: Fault) -> None:
    world, session, old, drove = _fail_propagate(lab, fault)
    assert drove.code == EXIT_FAILED
    new, sid = session.facts["new_key_id"], session.id
    del session
    fault.clear(world)

    for attempt in range(1, fault.failing_attempts + 1):
        resumed = lab.resume_on(world, sid)
        drove = headless(resumed)
        if attempt < fault.failing_attempts:  # the fault is still firing: still failed, still resumable
            assert drove.code == EXIT_FAILED and resumed.status == "failed", drove.text

    assert drove.code == EXIT_DONE, drove.text
    assert resumed.status == "done"
    assert resumed.facts["new_key_id"] == new
    assert list(iam_keys(world)) == [new]
    assert_everyone_holds(world, new)
    assert_pairs_work(world, new)


def test_a_heroku_500_is_not_retried_behind_the_operators_back(lab) -> None:
    world, session, _, drove = _fail_propagate(lab, BY_NAME["heroku-500"])
    assert drove.code == EXIT_FAILED
    assert world.export()["calls"]["heroku"]["patch_config"] == 1, "a failed PATCH must fail the step, not be replayed"


@pytest.mark.parametrize("fault", _fault_params())
def test_rollback_after_the_fault_restores_the_old_pair_on_every_consumer(lab, home: Path, fault: Fault) -> None:
    world, session, old, drove = _fail_propagate(lab, fault)
    assert drove.code == EXIT_FAILED
    new = session.facts["new_key_id"]
    took_new = [name for name in CONSUMERS if holders(world)[name]["key_id"] == new]
    assert len(took_new) >= 2, "the consumers that did not fail had taken the new pair"
    fault.clear(world)
    # Every secret this test has seen, for the leak check at the end.
    seen = secret_values(world)

    ok, results = session.rollback()

    assert ok, [(item.step.id, o.summary) for item, o in results]
    assert session.status == "rolled-back"
    assert {k: v["status"] for k, v in iam_keys(world).items()} == {old: "Active", new: "Inactive"}
    assert_everyone_holds(world, old)
    assert_pairs_work(world, old)
    assert world.ssh.service_state("raxx-vault") == "active"
    versions, ids, _ = vault_history(world)
    assert ids == [old, new, old]
    # Failure messages and rollback evidence went to the journal and audit log: no secret did.
    assert not leaks(seen, files_under(home))


def test_rollback_while_the_host_key_is_still_wrong_stops_naming_the_host_then_completes_once_fixed(lab) -> None:
    world, session, old, drove = _fail_propagate(lab, BY_NAME["ssh-wrong-host-key"])
    new = session.facts["new_key_id"]

    ok, results = session.rollback()

    assert not ok
    assert session.status == "rollback-failed"
    ((item, outcome),) = results
    assert item.step.id == "propagate" and SSH_PLACE in outcome.summary
    assert any("HOST KEY MISMATCH" in line for line in outcome.evidence)
    # It stopped there: the vault and IAM undo did not run behind a failed step.
    assert holders(world)[VAULT_PLACE]["key_id"] == new
    assert iam_keys(world)[new]["status"] == "Active"

    _fix_known_hosts(world)
    ok, results = session.rollback()

    assert ok, [(i.step.id, o.summary) for i, o in results]
    assert {k: v["status"] for k, v in iam_keys(world).items()} == {old: "Active", new: "Inactive"}
    assert_everyone_holds(world, old)


# -- the vault is unreachable --------------------------------------------------------------------


def _fail_store(lab):
    world = lab.world()
    (old,) = iam_keys(world)
    session = lab.start(world)
    run_until(session, "store-in-vault")
    before = world.export()
    world.infisical.down = True
    drove = headless(session)
    return world, session, old, before, drove


def test_vault_unreachable_at_store_fails_step_4_in_one_line_naming_the_vault_and_changes_nothing(lab) -> None:
    world, session, old, before, drove = _fail_store(lab)
    new = session.facts["new_key_id"]

    assert drove.code == EXIT_FAILED, drove.text
    assert session.status == "failed"
    state = session.states["store-in-vault"]
    assert state.status == "failed"
    summary = state.summary
    assert "\n" not in summary and len(summary) < 300, summary
    assert summary.startswith("infisical") and "raxx-prod" in summary and world.infisical.url in summary, summary
    assert "503" in summary or "unavailable" in summary.lower(), summary
    assert "Traceback" not in drove.text

    after = world.export()
    assert holders(after) == holders(before), "no holder may change when the vault is down"
    assert {k: v["status"] for k, v in iam_keys(after).items()} == {old: "Active", new: "Active"}
    for system in ("heroku", "github", "ssh"):
        assert after["calls"].get(system) == before["calls"].get(system), f"{system} was called while step 4 failed"
    assert "update_secret" not in after["calls"]["infisical"] and "create_secret" not in after["calls"]["infisical"]
    assert session.current().step.id == "store-in-vault"


@pytest.mark.parametrize("where", ["same-process", "new-process"])
def test_resume_after_the_vault_comes_back_finishes_the_rotation(lab, where: str) -> None:
    world, session, old, _, drove = _fail_store(lab)
    assert drove.code == EXIT_FAILED
    first_new = session.facts["new_key_id"]
    world.infisical.down = False

    if where == "same-process":
        resumed = session
    else:
        sid = session.id
        del session
        resumed = lab.resume_on(world, sid)
    drove = headless(resumed)

    assert drove.code == EXIT_DONE, drove.text
    new = resumed.facts["new_key_id"]
    assert list(iam_keys(world)) == [new]
    assert_everyone_holds(world, new)
    aws = world.export()["calls"]["aws"]
    if where == "same-process":
        assert new == first_new and aws["iam:CreateAccessKey"] == 1
    else:
        # The new secret died with the process before any vault held it: that key is
        # useless, so it is replaced (deleted, and a fresh one created) rather than kept.
        assert new != first_new and aws["iam:CreateAccessKey"] == 2
        reopened = [e for e in resumed.journal.events(resumed.id) if e.kind == "reopened"]
        assert reopened and reopened[0].step_id == "create-key"


def test_the_shipped_vault_unreachable_scenario_fails_the_store_then_a_retry_finishes(lab) -> None:
    world = lab.world("vault-unreachable")
    (old,) = iam_keys(world)
    session = lab.start(world)

    first = headless(session)

    assert first.code == EXIT_FAILED, first.text
    assert session.states["store-in-vault"].status == "failed"
    assert session.states["store-in-vault"].summary.startswith("infisical")
    assert holders(world)[VAULT_PLACE]["key_id"] == old and holders(world)[HEROKU_PLACE]["key_id"] == old

    second = headless(session)  # the outage was for the first attempt only

    assert second.code == EXIT_DONE, second.text
    (new,) = iam_keys(world)
    assert new != old
    assert_everyone_holds(world, new)


# -- the sandbox's own fault switches -------------------------------------------------------------


def test_a_refusal_switched_on_directly_on_the_ssh_host_lasts_until_switched_off(lab) -> None:
    world = lab.world()
    session = lab.start(world)
    run_until(session, "propagate")
    world.ssh.refuse_connections = True

    outcome = session.run("propagate")

    assert outcome.status == "failed" and SSH_PLACE in outcome.summary, outcome.summary


def test_rolling_back_after_the_shipped_vault_outage_restores_the_old_key_in_the_same_session(lab) -> None:
    world = lab.world("vault-unreachable")
    (old,) = iam_keys(world)
    session = lab.start(world)
    assert headless(session).code == EXIT_FAILED
    new = session.facts["new_key_id"]

    ok, results = session.rollback()

    assert ok, [(item.step.id, o.summary) for item, o in results]
    assert {k: v["status"] for k, v in iam_keys(world).items()} == {old: "Active", new: "Inactive"}
    assert_everyone_holds(world, old)
