"""Evidence that handrail does not contaminate, and resumes that explain before they act
(issue 9, items 7 and 8).

- AWS keeps one last use per key: handrail reads it before it signs with a key, labels
  its own calls, and judges a consumer's real use (step 1b's choice, step 7b's check).
- The deactivation instant is kept at full precision, across a restart: a use in the
  same second before it does not block the delete; a use after it does.
- A step that runs again after a restart says why before it runs; create-key tells its
  own orphan from someone else's key; waits are the same in a fresh and a resumed session.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from moto.iam.models import AccessKeyLastUsed

import steps.actions as actions_module
from steps.actions import registry
from steps.clock import parse_iso, utc
from steps.status import Needs
from steps.wiring import TrainingWiring

TARGET = "raxx-vault-operator"


class ProcessDied(BaseException):
    """Raised inside an action: the process is gone before the engine records anything."""


def kill_inside(rig, session, monkeypatch, action: str, *, before: bool = False) -> None:
    """Run the session's next step; its action does its work (or none, `before`), then the process 'dies'."""
    spec = registry()[action]

    def dying(ctx):
        if not before:
            spec.fn(ctx)
        raise ProcessDied(action)

    with monkeypatch.context() as patch:
        patch.setitem(actions_module._ACTIONS, action, dataclasses.replace(spec, fn=dying))
        with pytest.raises(ProcessDied):
            rig.step(session)


def run_until(rig, session, step_id: str, **kw) -> None:
    """Run every step before `step_id`, leaving it next."""
    while session.current().step.id != step_id:
        outcome = rig.step(session, **kw)
        assert outcome is None or outcome.status == "done", f"{session.current().step.id}: {outcome}"


def resume(rig, session, world):
    """The process dies (its Session, secrets and lock handle go); a new one resumes while
    the simulated AWS lives on, as the real one does."""
    session_id = session.id
    return rig.new_engine().resume(session_id, lambda row: TrainingWiring(world))


def key(world, key_id: str):
    return world.aws.iam.access_keys[key_id]


def last_used(world, key_id: str):
    return utc(key(world, key_id).last_used.timestamp)


def start_of_next_second(clock) -> None:
    """Move the simulated clock to just after a second begins, so what follows within a
    few hundred milliseconds shares that second."""
    clock.advance(1.0 - clock.now().microsecond / 1e6 + 0.002)


# -- item 7: handrail's own calls are labelled, a consumer's use is what counts ----------------


def test_two_active_keys_the_choice_names_the_consumers_last_use_not_handrails_sts_call(rig):
    world = rig.world("two-active-keys")
    in_use, unused = [k.access_key_id for k in world.aws.iam.users[TARGET].access_keys]
    consumer_use = key(world, in_use).last_used  # the vault host's s3 call, 5 minutes ago
    session = rig.start(world)
    run_until(rig, session, "free-key-slot")

    # Step 1 authenticated the vault's pair: AWS now shows handrail's sts call as its last use.
    now_shown = key(world, in_use).last_used
    assert now_shown.service == "sts" and now_shown.timestamp > consumer_use.timestamp

    prompt = session.prompt("free-key-slot")
    assert prompt.confirm is Needs.TYPED
    label = {c.value: c.label for c in prompt.choices}[in_use]
    shown = utc(consumer_use.timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"last used {shown}" in label and "s3" in label, label
    assert "handrail's own sts call at" in label and "not a consumer's use" in label
    assert any(line.strip() == label for line in prompt.preview)
    assert "handrail's own" not in {c.value: c.label for c in prompt.choices}[unused]
    # The facts behind it: the consumer's use read before handrail signed, and handrail's own call.
    assert parse_iso(session.facts[f"own_use:{in_use}"].split("/")[0]) <= utc(now_shown.timestamp)
    assert '"service": "s3"' in session.facts[f"use_seen:{in_use}"]

    outcome = session.run("free-key-slot", answer=unused)
    assert outcome.status == "done" and session.facts["old_key_id"] == in_use


def test_handrails_own_checks_of_the_old_key_after_deactivation_do_not_block_the_delete(rig, scenario_file):
    # IAM applies the deactivation 30 s late: step 7's own checks with the old key are
    # accepted meanwhile, and each one is the key's last use in AWS. No consumer uses it.
    world = rig.world("happy-path")
    world.aws.status_delay = 30.0
    session = rig.start(world)
    run_until(rig, session, "delete-old-key")
    old_id = session.facts["old_key_id"]
    deactivated = parse_iso(session.facts["deactivated_at"])
    assert last_used(world, old_id) > deactivated, "the scenario must make handrail's own check the last use"
    assert key(world, old_id).last_used.service == "sts"

    drove = rig.drive(session)

    assert drove.code == 0, drove.text
    assert old_id not in rig.keys(world)
    evidence = "\n".join(session.states["delete-old-key"].evidence)
    assert "handrail's own sts call at" in evidence and "no use since it was deactivated" in evidence


def test_a_forgotten_consumer_hidden_behind_handrails_own_checks_still_blocks_the_delete(rig):
    world = rig.world("forgotten-consumer")
    session = rig.start(world)
    run_until(rig, session, "delete-old-key")
    old_id = session.facts["old_key_id"]
    deactivated = parse_iso(session.facts["deactivated_at"])
    cron = world.forgotten[0]
    after = [parse_iso(at) for at, ok, _ in cron.runs if ok and parse_iso(at) > deactivated]
    assert after, "the forgotten cron must get through during IAM's status delay"

    outcome = rig.step(session)

    assert outcome.status == "blocked", outcome
    # The use it names is the cron's (read before handrail's own call could hide it), not handrail's.
    used_at = outcome.summary.split("was used at ")[1].split(",")[0]
    assert "s3" in session.facts[f"use_seen:{old_id}"]
    assert abs((parse_iso(used_at) - after[-1]).total_seconds()) < 1.0


# -- item 7: full precision across a restart ---------------------------------------------------


@pytest.mark.parametrize("dies", ["after-step-7", "inside-step-7"])
def test_a_use_in_the_deactivations_second_but_before_it_does_not_block_after_a_restart(rig, lean, monkeypatch, dies):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    run_until(rig, session, "deactivate-old-key")
    old_secret = world.aws.secrets_by_key()[old_id]

    start_of_next_second(world.clock)
    ok, message = world.aws.probe(old_id, old_secret)  # a consumer's last call, just before
    assert ok, message
    if dies == "after-step-7":
        assert rig.step(session).status == "done"
        deactivated = parse_iso(session.facts["deactivated_at"])
    else:
        kill_inside(rig, session, monkeypatch, "iam.deactivate_old_key")
        deactivated = parse_iso(rig.engine.journal.facts(session.id)["deactivation_requested"])
    used = last_used(world, old_id)
    assert used < deactivated and used.replace(microsecond=0) == deactivated.replace(microsecond=0), (used, deactivated)

    resumed = resume(rig, session, world)
    drove = rig.drive(resumed)

    assert drove.code == 0, drove.text
    assert old_id not in rig.keys(world)
    assert parse_iso(resumed.facts["deactivated_at"]) == deactivated


@pytest.mark.parametrize("dies", ["after-step-7", "inside-step-7"])
def test_a_use_after_the_deactivation_still_blocks_after_a_restart(rig, scenario_file, monkeypatch, dies):
    # IAM applies the deactivation late (10 min): a consumer still on the old key gets through.
    world = rig.world(scenario_file("late-status", propagation_delay="4s", status_delay="10m"))
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    run_until(rig, session, "deactivate-old-key")
    old_secret = world.aws.secrets_by_key()[old_id]
    if dies == "after-step-7":
        assert rig.step(session).status == "done"
    else:
        kill_inside(rig, session, monkeypatch, "iam.deactivate_old_key")
    resumed = resume(rig, session, world)
    if dies == "inside-step-7":
        assert any("runs again" in w for w in resumed.prompt("deactivate-old-key").warnings)
        assert rig.step(resumed).status == "done"
        assert resumed.facts["deactivated_at"] == resumed.facts["deactivation_requested"]

    ok, message = world.aws.probe(old_id, old_secret)
    assert ok, message
    outcome = rig.step(resumed)

    assert outcome.status == "blocked", outcome
    assert "after it was deactivated" in outcome.summary
    assert old_id in rig.keys(world)


def test_the_delete_compares_the_deactivation_at_full_precision(rig, lean):
    """The rule itself, on AWS's own record of the use: a use 1 ms before the deactivation
    passes, 1 ms after blocks, both in the deactivation's second."""
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    run_until(rig, session, "delete-old-key")
    deactivated = parse_iso(session.facts["deactivated_at"])
    if deactivated.microsecond < 1000 or deactivated.microsecond > 998_000:
        pytest.skip("the deactivation fell on a second's edge")
    session.fast_forward("delete-old-key")

    def used_at(at) -> None:
        key(world, old_id).last_used = AccessKeyLastUsed(at.replace(tzinfo=None), "s3", world.aws.region)

    used_at(deactivated + timedelta(milliseconds=1))
    assert session.run("delete-old-key", answer=old_id).status == "blocked"
    used_at(deactivated - timedelta(milliseconds=1))
    assert session.run("delete-old-key", answer=old_id).status == "done"


# -- item 8: a step that runs again says why before it runs ------------------------------------


def test_dying_inside_create_key_is_explained_before_create_key_runs_again(rig, lean, monkeypatch):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    run_until(rig, session, "create-key")
    kill_inside(rig, session, monkeypatch, "iam.create_key")
    (orphan,) = set(rig.keys(world)) - {old_id}

    resumed = resume(rig, session, world)
    prompt = resumed.prompt("create-key")

    assert any("step 2 runs again" in w and "ended while it was running" in w for w in prompt.warnings), prompt.warnings
    assert any(line.startswith(f"will delete {orphan}") for line in prompt.preview), prompt.preview
    assert set(rig.keys(world)) == {old_id, orphan}  # the preview changed nothing
    drove = rig.drive(resumed)
    assert drove.code == 0, drove.text
    assert orphan not in rig.keys(world)


def test_a_lost_secret_is_explained_before_create_key_replaces_the_key(rig, lean):
    world = rig.world(lean)
    session = rig.start(world)
    run_until(rig, session, "validate-new-key")
    lost = session.facts["new_key_id"]

    resumed = resume(rig, session, world)
    prompt = resumed.prompt("create-key")

    assert any("step 2 runs again" in w and "new_secret" in w for w in prompt.warnings), prompt.warnings
    assert any(line.startswith(f"will delete {lost}") and "secret ended" in line for line in prompt.preview), prompt.preview
    assert rig.drive(resumed).code == 0


def someone_else_creates_a_key(world) -> str:
    """Another operator (not handrail) creates a key for the target user through the API."""
    return world.aws.client("iam").create_access_key(UserName=TARGET)["AccessKey"]["AccessKeyId"]


def test_a_key_nobody_in_this_session_made_stops_create_key(rig, lean):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    run_until(rig, session, "create-key")
    theirs = someone_else_creates_a_key(world)

    prompt = session.prompt("create-key")
    assert any(theirs in line and "refuses" in line for line in prompt.preview), prompt.preview
    outcome = session.run("create-key")

    assert outcome.status == "refused", outcome
    assert theirs in outcome.summary and "someone else" in outcome.summary.lower()
    assert set(rig.keys(world)) == {old_id, theirs}  # their key is untouched, none was made
    assert session.skip_refusal(session.states["create-key"])  # a refusal cannot be skipped


@pytest.mark.parametrize("dies", ["before-asking-aws", "after-aws-made-the-key"])
def test_after_a_crash_a_key_that_is_not_the_requests_is_someone_elses(rig, lean, monkeypatch, dies):
    world = rig.world(lean)
    (old_id,) = rig.keys(world)
    session = rig.start(world)
    run_until(rig, session, "create-key")
    kill_inside(rig, session, monkeypatch, "iam.create_key", before=dies == "before-asking-aws")
    world.clock.advance(3600)
    if dies == "after-aws-made-the-key":
        # An hour later a colleague deletes the orphan and starts rotating by hand.
        (orphan,) = set(rig.keys(world)) - {old_id}
        world.aws.client("iam").delete_access_key(UserName=TARGET, AccessKeyId=orphan)
    theirs = someone_else_creates_a_key(world)

    resumed = resume(rig, session, world)
    assert any(theirs in line and "refuses" in line for line in resumed.prompt("create-key").preview)
    outcome = resumed.run("create-key")

    assert outcome.status == "refused", outcome
    assert set(rig.keys(world)) == {old_id, theirs}


# -- item 8: waits are the same in a fresh and a resumed session ------------------------------


def test_step_7_waits_and_checks_the_same_in_a_fresh_and_a_resumed_session(rig):
    """A resumed session has no secret in memory: it reads them where step 1 and step 4 put
    them (the vault), so it polls until AWS refuses the old key as a fresh one does,
    instead of a blind sleep, and checks the new key and the consumers after."""

    def step_7(resumed: bool) -> tuple[list[str], float]:
        world = rig.world("happy-path")
        world.aws.status_delay = 10.0
        session = rig.start(world)
        run_until(rig, session, "deactivate-old-key")
        if resumed:
            session = resume(rig, session, world)
            assert "old_secret" not in session.secrets and "new_secret" not in session.secrets
        assert rig.step(session).status == "done"
        evidence = session.states["deactivate-old-key"].evidence
        said = ("AWS refuses", "AWS still accepted", "waited", "handrail's own checks", "new key still works", "the new secret")
        kinds = [line.split(" after ")[0].split(" until ")[0] for line in evidence if line.startswith(said)]
        refused = next(line for line in evidence if line.startswith("AWS refuses the old key after"))
        return kinds, float(refused.rsplit(" after ", 1)[1].removesuffix(" s"))

    (fresh, fresh_wait), (resumed, resumed_wait) = step_7(False), step_7(True)

    assert fresh == resumed
    assert "AWS refuses the old key" in fresh and "new key still works" in fresh
    assert 10.0 <= fresh_wait <= 12.5 and 10.0 <= resumed_wait <= 12.5


# -- a step skipped earlier runs later ---------------------------------------------------------


def test_a_skipped_slot_is_freed_later_and_the_rotation_goes_on(rig):
    world = rig.world("inactive-key-in-slot")
    inactive, active = [k.access_key_id for k in world.aws.iam.users[world.scenario.target_user].access_keys]
    session = rig.start(world)
    run_until(rig, session, "free-key-slot")
    session.skip("free-key-slot", "trainee thinks the Inactive key does not count")
    assert session.run("create-key").status == "failed"  # 2 keys: no slot

    prompt = session.prompt("free-key-slot")
    assert prompt.confirm is Needs.TYPED and prompt.expect == inactive
    assert session.run("free-key-slot", answer=inactive).status == "done"
    assert session.current().step.id == "create-key"
    assert rig.drive(session).code == 0
    assert set(rig.keys(world)) == {session.facts["new_key_id"]} and active not in rig.keys(world)


def test_a_skipped_validation_runs_later(rig, lean):
    world = rig.world(lean)
    session = rig.start(world)
    run_until(rig, session, "validate-new-key")
    session.skip("validate-new-key", "will check after the consumers")
    run_until(rig, session, "deactivate-old-key")
    assert any("was skipped" in w for w in session.prompt("deactivate-old-key").warnings)

    outcome = session.run("validate-new-key")

    assert outcome.status == "done", outcome
    assert session.current().step.id == "deactivate-old-key"
    assert rig.drive(session).code == 0
