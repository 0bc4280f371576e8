"""A training rotation with the vault and every consumer (issue 3, "Done when").

The default scenario (happy-path) has the pair in Infisical, one Heroku app, one GitHub
repository and the SSH vault host. These tests drive the real engine in-process against
the training world (moto behind its gate, the fake vendor APIs, the paramiko host) and
read the world back the way `--world-out` shows it: key ids and fingerprints.

Run with `-s` to see the figures (wall time, calls per system).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from world_helpers import (
    GITHUB_PLACE,
    HOLDER_PLACES,
    SSH_PLACE,
    SSH_RUNNING,
    VAULT_PLACE,
    assert_everyone_holds,
    assert_pairs_work,
    audit_records,
    files_under,
    format_calls,
    handrail,
    headless,
    holders,
    home,
    iam_keys,
    lab,
    leaks,
    run_through,
    run_until,
    secret_values,
    vault_history,
)

from steps.driver import EXIT_DONE, EXIT_STOPPED

STEPS_BEFORE_DELETE = ["create-key", "validate-new-key", "store-in-vault", "propagate", "verify-downstream", "deactivate-old-key"]


def _old_key(world) -> str:
    (old,) = iam_keys(world)
    return old


# -- the rotation --------------------------------------------------------------------------------


def test_training_rotation_ends_with_iam_vault_and_every_consumer_on_the_same_new_pair(lab) -> None:
    world = lab.world()
    old = _old_key(world)
    assert_everyone_holds(world, old)  # the scenario starts consistent: everyone on the old key

    session = lab.start(world)
    drove = headless(session)

    assert drove.code == EXIT_DONE, drove.text
    assert session.status == "done"
    new = session.facts["new_key_id"]
    assert new != old and session.facts["old_key_id"] == old
    exported = world.export()
    keys = iam_keys(exported)
    assert list(keys) == [new], f"the old key {old} should be gone and only {new} left: {keys}"
    assert keys[new]["status"] == "Active"
    assert_everyone_holds(exported, new)
    # The running service reloaded the env file, and what each place holds really works.
    assert exported["holders"][SSH_RUNNING]["key_id"] == new
    assert_pairs_work(world, new)
    print(f"\n[figures] default training rotation, in-process engine (10 steps, gate fast-forwarded): {drove.seconds:.2f} s wall")


def test_training_rotation_makes_a_plausible_number_of_calls_to_each_system(lab) -> None:
    world = lab.world()
    session = lab.start(world)
    drove = headless(session)
    assert drove.code == EXIT_DONE, drove.text

    calls = world.export()["calls"]
    print("\n[figures] calls each external system received during the default training rotation:")
    print(format_calls(calls))
    aws, vault, heroku, github, ssh = (calls[k] for k in ("aws", "infisical", "heroku", "github", "ssh"))

    # IAM: one create, one deactivation, one delete; nothing else mutates.
    assert aws["iam:CreateAccessKey"] == 1
    assert aws["iam:UpdateAccessKey"] == 1
    assert aws["iam:DeleteAccessKey"] == 1
    # Infisical: one login (the token is reused), both halves written once each, as updates.
    assert vault["login"] == 1
    assert vault["update_secret"] == 2
    assert "create_secret" not in vault
    # Heroku: both keys in ONE PATCH (one release), read back, never a manual dyno restart.
    assert heroku["patch_config"] == 1
    assert heroku.get("get_config", 0) >= 1
    assert "restart" not in heroku
    # GitHub: two sealed PUTs (key id and secret) with the repository public key;
    # the smoke workflow dispatched once per verification (step 6, and step 7's re-check).
    assert github["put_repo_secret"] == 2
    assert github["repo_public_key"] >= 1
    assert github["dispatch"] == 2
    # SSH host: the env file replaced by exactly one atomic rename after one write,
    # one service restart, every connection authenticated, no env request, no failed handshake.
    assert ssh["sftp:posix_rename"] == 1
    assert ssh["sftp:write"] == 1
    assert ssh["exec:systemctl"] == 1
    assert ssh["connections"] == ssh["auth_ok"]
    assert 2 <= ssh["connections"] <= 6
    assert "handshake_failed" not in ssh and "env_request" not in ssh
    # No client ever called a route the fake APIs do not serve.
    for name in ("infisical", "heroku", "github"):
        assert "unmatched" not in calls[name], f"{name} got calls to routes it does not serve: {calls[name]}"


def test_world_out_from_the_cli_shows_every_holder_with_the_new_key_fingerprint(home: Path, tmp_path: Path) -> None:
    from tui.cli import main

    out = tmp_path / "world.json"
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["run", "--yes", "--fast-forward", "--confirm-irreversible", "--world-out", str(out)])
    seconds = time.perf_counter() - started
    assert result.exit_code == EXIT_DONE, result.output
    data = json.loads(out.read_text())
    (new,) = iam_keys(data)
    assert iam_keys(data)[new]["status"] == "Active"
    assert_everyone_holds(data, new)
    assert set(holders(data)) == set(HOLDER_PLACES)
    print(f"\n[figures] `handrail run --yes --fast-forward --world-out` in-process (CliRunner): {seconds:.2f} s wall")


@pytest.mark.slow
def test_cli_training_rotation_in_a_new_process_ends_on_the_new_key(handrail, tmp_path: Path) -> None:
    out = tmp_path / "world.json"
    started = time.perf_counter()
    result = handrail("run", "--yes", "--fast-forward", "--confirm-irreversible", "--world-out", out)
    seconds = time.perf_counter() - started
    assert result.returncode == EXIT_DONE, result.stdout + result.stderr
    data = json.loads(out.read_text())
    (new,) = iam_keys(data)
    assert_everyone_holds(data, new)
    print(f"\n[figures] `handrail run --yes --fast-forward --world-out` as a new process: {seconds:.2f} s wall (incl. interpreter start)")


# -- rollback at every boundary before the delete ------------------------------------------------


@pytest.mark.parametrize("stopped_after", STEPS_BEFORE_DELETE)
def test_rollback_after_each_step_before_the_delete_puts_everyone_back_on_the_old_pair(lab, stopped_after: str) -> None:
    world = lab.world()
    old = _old_key(world)
    old_secret = world.aws.secrets_by_key()[old]
    session = lab.start(world)
    run_through(session, stopped_after)
    new = session.facts["new_key_id"]

    ok, results = session.rollback()

    assert ok, [(item.step.id, outcome.summary) for item, outcome in results]
    assert session.status == "rolled-back"
    keys = iam_keys(world)
    assert {k: v["status"] for k, v in keys.items()} == {old: "Active", new: "Inactive"}
    assert_everyone_holds(world, old)
    assert_pairs_work(world, old)
    ok_new, _ = world.aws.probe(new, world.aws.secrets_by_key()[new])
    assert not ok_new, "the new key must no longer authenticate after the rollback"
    # The vault's history: untouched before step 4; after it, one more version that
    # restores the old values (the new pair stays in the history, as it should).
    versions, ids, secrets = vault_history(world)
    if STEPS_BEFORE_DELETE.index(stopped_after) < STEPS_BEFORE_DELETE.index("store-in-vault"):
        assert versions == [1] and ids == [old]
    else:
        assert versions == [1, 2, 3]
        assert ids == [old, new, old]
        assert secrets[0] == old_secret and secrets[2] == old_secret and secrets[1] != old_secret


def test_rollback_after_a_failed_propagate_puts_everyone_back_on_the_old_pair(lab) -> None:
    world = lab.world()
    old = _old_key(world)
    session = lab.start(world)
    run_until(session, "propagate")
    world.heroku.fail("patch_config", times=1)
    outcome = session.run("propagate")
    assert outcome.status == "failed"
    new = session.facts["new_key_id"]
    # GitHub and the host took the new pair before the rollback.
    assert holders(world)[GITHUB_PLACE]["key_id"] == new and holders(world)[SSH_PLACE]["key_id"] == new

    ok, results = session.rollback()

    assert ok, [(item.step.id, o.summary) for item, o in results]
    assert {k: v["status"] for k, v in iam_keys(world).items()} == {old: "Active", new: "Inactive"}
    assert_everyone_holds(world, old)
    versions, ids, _ = vault_history(world)
    assert versions == [1, 2, 3] and ids == [old, new, old]


@pytest.mark.slow
def test_rollback_in_a_new_cli_process_restores_the_old_pair_in_the_world_saved_by_the_journal(handrail, tmp_path: Path) -> None:
    run = handrail("run", "--yes", "--json")
    assert run.returncode == EXIT_STOPPED, run.stdout + run.stderr  # stopped at the 24 h gate before the delete
    summary = json.loads(run.stdout)
    assert summary["status"] == "waiting"
    assert [s["status"] for s in summary["steps"] if s["id"] == "deactivate-old-key"] == ["done"]
    session, old, new = summary["session"], summary["old_key_id"], summary["new_key_id"]

    out = tmp_path / "after-rollback.json"
    started = time.perf_counter()
    rollback = handrail("rollback", session, "--yes", "--world-out", out)
    seconds = time.perf_counter() - started

    assert rollback.returncode == EXIT_DONE, rollback.stdout + rollback.stderr
    data = json.loads(out.read_text())
    keys = iam_keys(data)
    assert {k: v["status"] for k, v in keys.items()} == {old: "Active", new: "Inactive"}
    # The restored world gave every key a fresh secret: compare within this world-out.
    assert_everyone_holds(data, old)
    shown = handrail("show", session, "--json")
    assert json.loads(shown.stdout)["status"] == "rolled-back"
    print(f"\n[figures] `handrail rollback --yes` in a new process (world restored from the journal): {seconds:.2f} s wall")


# -- the process dies: secrets from the vault ----------------------------------------------------


@pytest.mark.parametrize("world_after_restart", ["same-external-world", "training-world-from-the-journal"])
def test_resume_after_dying_after_store_recovers_the_new_secret_from_the_vault(lab, world_after_restart: str) -> None:
    world = lab.world()
    old = _old_key(world)
    session = lab.start(world)
    run_through(session, "store-in-vault")
    new, sid = session.facts["new_key_id"], session.id
    del session  # the process dies: the new secret was in its memory only

    if world_after_restart == "same-external-world":
        resumed = lab.resume_on(world, sid)
    else:  # `handrail resume` in training: the world comes back from the journal's snapshot
        lab.kill(world)
        engine = lab.new_engine()
        resumed = engine.resume(sid, lab.restore)
        world = resumed.wiring.world

    events = resumed.journal.events(sid)
    notes = [e.summary for e in events if e.kind == "note"]
    assert any("new_secret recovered from the vault" in n for n in notes), notes
    assert not [e for e in events if e.kind == "reopened"], "nothing should be re-opened: the vault had the secret"
    assert "new_secret" in resumed.secrets
    assert resumed.current().step.id == "propagate"

    drove = headless(resumed)
    assert drove.code == EXIT_DONE, drove.text
    assert resumed.facts["new_key_id"] == new, "the key must not be re-created"
    assert list(iam_keys(world)) == [new] and old not in iam_keys(world)
    assert_everyone_holds(world, new)
    if world_after_restart == "same-external-world":
        assert world.export()["calls"]["aws"]["iam:CreateAccessKey"] == 1


def test_rollback_in_a_new_process_after_propagate_reads_the_old_pair_from_the_vault_history_by_version(lab, monkeypatch) -> None:
    from steps.consumers.infisical import InfisicalVault

    read_at: list[dict] = []
    real = InfisicalVault.read_pair_at

    def spy(self, versions):
        read_at.append(dict(versions))
        return real(self, versions)

    monkeypatch.setattr(InfisicalVault, "read_pair_at", spy)

    world = lab.world()
    old = _old_key(world)
    old_secret = world.aws.secrets_by_key()[old]
    session = lab.start(world)
    run_through(session, "propagate")
    new, sid = session.facts["new_key_id"], session.id
    assert json.loads(session.facts["vault_versions_before"]) == {"AWS_ACCESS_KEY_ID": 1, "AWS_SECRET_ACCESS_KEY": 1}
    del session

    resumed = lab.resume_on(world, sid)
    assert "old_secret" not in resumed.secrets, "a new process has no old secret in memory"
    ok, results = resumed.rollback()

    assert ok, [(item.step.id, o.summary) for item, o in results]
    assert {"AWS_ACCESS_KEY_ID": 1, "AWS_SECRET_ACCESS_KEY": 1} in read_at, read_at
    assert resumed.secrets["old_secret"] == old_secret
    assert {k: v["status"] for k, v in iam_keys(world).items()} == {old: "Active", new: "Inactive"}
    assert_everyone_holds(world, old)
    for place, (_, secret) in world.holdings().items():
        assert secret == old_secret, f"{place} does not hold the original old secret"


# -- deactivation waits for step 6 --------------------------------------------------------------


def test_deactivation_is_blocked_until_every_consumer_verified_and_an_override_is_audited(lab, home: Path) -> None:
    world = lab.world()
    old = _old_key(world)
    session = lab.start(world)
    run_until(session, "verify-downstream")
    session.skip("verify-downstream", "the smoke workflow is down today")

    blocked = session.run("deactivate-old-key")

    assert blocked.status == "blocked", blocked.summary
    assert "step 6" in blocked.summary
    assert session.status == "blocked"
    assert iam_keys(world)[old]["status"] == "Active", "a blocked step must not deactivate anything"

    reason = "verified the host by hand: ticket OPS-42"
    done = session.run("deactivate-old-key", override=reason)

    assert done.status == "done", done.summary
    assert iam_keys(world)[old]["status"] == "Inactive"
    assert any(reason in line for line in done.evidence)
    records = [r for r in audit_records(home) if r.get("session") == session.id]
    overrides = [r for r in records if r["action"] == "block.override"]
    assert len(overrides) == 1 and overrides[0]["context"] == {"step": "deactivate-old-key", "reason": reason, "outcome": "done"}
    skipped = [r for r in records if r["action"] == "step.skipped"]
    assert skipped and skipped[0]["context"]["step"] == "verify-downstream"


def test_the_verification_rule_is_the_runbooks_and_a_copy_without_it_deactivates_unverified(lab, shipped_runbook, write_yaml) -> None:
    # The rule is written in the runbook, where an auditor reads it ...
    rule = next(s for s in shipped_runbook["steps"] if s["id"] == "deactivate-old-key")["with"]
    assert rule["block_until_consumers_verified"] is True
    # ... and the action obeys the runbook: a copy that turns it off lets step 7 run unverified.
    data = copy.deepcopy(shipped_runbook)
    next(s for s in data["steps"] if s["id"] == "deactivate-old-key")["with"]["block_until_consumers_verified"] = False
    world = lab.world()
    old = _old_key(world)
    session = lab.start(world, runbook=write_yaml("no-verification-rule.yaml", data))
    run_until(session, "verify-downstream")
    session.skip("verify-downstream", "the smoke workflow is down today")

    done = session.run("deactivate-old-key")

    assert done.status == "done", done.summary
    assert iam_keys(world)[old]["status"] == "Inactive"
    assert not any("overridden" in line for line in done.evidence)


def test_a_blocked_deactivation_stops_the_headless_driver_without_an_override(lab) -> None:
    world = lab.world()
    old = _old_key(world)
    session = lab.start(world)
    run_until(session, "verify-downstream")
    session.skip("verify-downstream", "skipped for the test")

    drove = headless(session)

    assert drove.code == 1 and "blocked" in drove.message and "--override-block" in drove.message, drove.message
    assert iam_keys(world)[old]["status"] == "Active"


# -- secrets stay in memory ----------------------------------------------------------------------


def test_no_secret_value_reaches_the_journal_audit_output_world_out_or_ssh_commands(home: Path, tmp_path: Path, monkeypatch) -> None:
    from steps.sandbox.world import World
    from tui.cli import main

    seen: dict[str, str] = {}
    worlds: list[World] = []
    ssh_seen: dict[str, list] = {"commands": [], "env": []}
    real_create, real_close = World.create.__func__, World.close

    def create(cls, *args, **kwargs):
        world = real_create(cls, *args, **kwargs)
        worlds.append(world)
        seen.update(secret_values(world))  # the old pair, the operator's, the sandbox tokens
        return world

    def close(self):
        seen.update(secret_values(self))  # the new pair
        if self.ssh is not None:
            ssh_seen["commands"] += list(self.ssh.commands)
            ssh_seen["env"] += list(self.ssh.env_requests)
        real_close(self)

    monkeypatch.setattr(World, "create", classmethod(create))
    monkeypatch.setattr(World, "close", close)

    out = tmp_path / "world.json"
    result = CliRunner().invoke(main, ["run", "--yes", "--fast-forward", "--confirm-irreversible", "--world-out", str(out)])
    assert result.exit_code == EXIT_DONE, result.output
    assert len(worlds) == 1

    data = json.loads(out.read_text())
    (new,) = iam_keys(data)
    iam_labels = sorted(label for label in seen if label.startswith("iam "))
    # The operator's key, the old key (seen at creation) and the new key (seen at close).
    assert f"iam {new}" in seen and len(iam_labels) == 3, iam_labels
    assert f"held by {VAULT_PLACE}" in seen

    texts: dict[str, bytes | str] = {**files_under(home), "stdout": result.stdout, "stderr": result.stderr, "world-out": out.read_bytes()}
    assert any(name.endswith("journal.sqlite3") for name in texts) and any(name.endswith("audit.jsonl") for name in texts)
    assert not leaks(seen, texts)
    assert ssh_seen["commands"], "the host received no command at all?"
    assert not leaks(seen, {f"ssh exec {i}: {c!r}": c for i, c in enumerate(ssh_seen["commands"])})
    assert not ssh_seen["env"], f"env requests carry values to the host: {[n for n, _ in ssh_seen['env']]}"


def test_a_secret_that_slips_into_step_evidence_is_scrubbed_from_cli_output_journal_and_audit(
    home: Path, tmp_path: Path, monkeypatch
) -> None:
    import dataclasses

    from steps.actions import registry
    from tui.cli import main

    spec = registry()["iam.create_key"]
    captured: dict[str, str] = {}

    def careless(ctx):
        outcome = spec.fn(ctx)
        secret = outcome.secrets["new_secret"].reveal()
        captured["new secret"] = secret
        outcome.evidence.append(f"vendor said: bad request for {secret}")  # an over-sharing error body
        return outcome

    monkeypatch.setitem(registry(), "iam.create_key", dataclasses.replace(spec, fn=careless))
    out = tmp_path / "world.json"

    result = CliRunner().invoke(main, ["run", "--yes", "--fast-forward", "--confirm-irreversible", "--world-out", str(out)])

    assert result.exit_code == EXIT_DONE, result.output
    assert captured
    found = leaks(captured, {**files_under(home), "world-out": out.read_bytes()})
    assert not found, found  # the journal and audit log do scrub it
    assert not leaks(captured, {"stdout": result.stdout, "stderr": result.stderr})
