"""`handrail due`: which users are due for rotation, read from the account (list-access-keys
and get-access-key-last-used), on the simulated clock in training; and the fleet scenario
that seeds many users with ages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from steps.aws import KeyInfo


def key(key_id: str, status: str, days: float, used_hours: float | None = 2.0, now: datetime | None = None) -> KeyInfo:
    now = now or datetime(2026, 11, 29, tzinfo=UTC)
    used = now - timedelta(hours=used_hours) if used_hours is not None else None
    return KeyInfo(key_id, status, now - timedelta(days=days), used, "s3" if used else None, "us-east-1" if used else None)


NOW = datetime(2026, 11, 29, tzinfo=UTC)


# -- one row ---------------------------------------------------------------------------------------------


def test_age_is_the_oldest_active_keys_and_due_is_at_the_cadence() -> None:
    from steps.due import row_for

    row = row_for(
        "u",
        [key("AKIAOLDINACTIVE00001", "Inactive", 200), key("AKIAACTIVE0000000001", "Active", 45)],
        NOW,
        30 * 86400,
        in_inventory=True,
        operator=False,
    )

    assert row.age_days == 45 and row.due and not row.overdue
    assert row.inactive_left == ["AKIAOLDINACTIVE00001"]
    assert "AKIAACTIVE0000000001 is 45 days old" in row.why(30) and "left over" in row.why(30)
    assert row.rotatable


def test_past_ninety_days_is_overdue_and_a_fresh_key_is_not_due() -> None:
    from steps.due import row_for

    old = row_for("u", [key("AKIA1", "Active", 91)], NOW, 30 * 86400, in_inventory=True, operator=False)
    fresh = row_for("u", [key("AKIA2", "Active", 29.9)], NOW, 30 * 86400, in_inventory=True, operator=False)
    exactly = row_for("u", [key("AKIA3", "Active", 90)], NOW, 30 * 86400, in_inventory=True, operator=False)

    assert old.overdue and old.due and "90-day ceiling" in old.why(30)
    assert not fresh.due and fresh.age_days == 29 and "not due until 30 days" in fresh.why(30)
    assert exactly.due and not exactly.overdue  # AWS Config: older than maxAccessKeyAge (90)


def test_no_active_key_is_nothing_to_rotate_and_the_operator_is_never_in_a_campaign() -> None:
    from steps.due import row_for

    none = row_for("u", [key("AKIA1", "Inactive", 100)], NOW, 30 * 86400, in_inventory=False, operator=False)
    me = row_for("me", [key("AKIA2", "Active", 100)], NOW, 30 * 86400, in_inventory=False, operator=True)

    assert none.age_days is None and not none.due and "nothing to rotate" in none.why(30)
    assert me.due and not me.rotatable and "operator's own user" in me.why(30)


# -- against the simulated account -----------------------------------------------------------------------


def test_due_on_the_fleet_lists_the_inventorys_users_with_ages_from_the_account(cli) -> None:
    result = cli("due", "--mode", "training", "--scenario", "fleet", "--json")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) >= 20
    assert all({"user", "age_days", "due"} <= set(r) for r in rows)
    assert all(r["in_inventory"] for r in rows)
    ages = [r["age_days"] for r in rows]
    assert min(ages) <= 1 and max(ages) >= 120 and ages == sorted(ages, reverse=True)
    for r in rows:
        assert r["due"] == (r["age_days"] >= 30) and r["overdue"] == (r["age_days"] > 90), r
    assert any(r["inactive_left"] for r in rows)
    assert all(k["last_used"] for r in rows for k in r["keys"] if k["status"] == "Active")


def test_all_users_adds_the_users_nobody_wrote_down_and_the_operator(cli) -> None:
    rows = json.loads(cli("due", "--scenario", "fleet", "--all-users", "--json").stdout)

    outside = {r["user"] for r in rows if not r["in_inventory"]}
    assert {"ci-release-bot", "dev-alice-cli", "old-analytics-etl"} <= outside
    operator = [r for r in rows if r["operator"]]
    assert [r["user"] for r in operator] == ["handrail-operator"]
    never = next(r for r in rows if r["user"] == "old-analytics-etl")
    assert never["due"] and next(k for k in never["keys"] if k["status"] == "Active")["last_used"] is None


def test_the_cadence_moves_the_line_and_the_text_table_says_why(cli) -> None:
    rows = json.loads(cli("due", "--scenario", "fleet", "--cadence", "100d", "--json").stdout)
    assert {r["user"] for r in rows if r["due"]} == {r["user"] for r in rows if r["age_days"] >= 100}

    text = cli("due", "--scenario", "fleet").stdout
    assert "OVERDUE" in text and "left over" in text
    assert text.strip().splitlines()[-1].startswith("17 of 24 due at 30d")


def test_a_bad_cadence_or_mode_is_one_line(cli) -> None:
    for args in (["--cadence", "monthly"], ["--cadence", "0d"], ["--mode", "live", "--scenario", "fleet"]):
        result = cli("due", *args)
        assert result.exit_code == 2, args
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1 and "Traceback" not in result.output


def test_due_reads_nothing_but_keys(make_world) -> None:
    from steps import due
    from steps.wiring import TrainingWiring

    world = make_world("fleet")
    before = world.export()["iam_users"]
    rows = due.report(TrainingWiring(world), every=True)
    calls = world.aws.calls
    assert set(calls) <= {"iam:ListUsers", "iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "sts:GetCallerIdentity"}
    after = world.export()["iam_users"]
    after.pop("handrail-operator"), before.pop("handrail-operator")  # its key signed the reads: its last use moved
    assert after == before
    assert len(rows) == len(before) + 1


# -- the scenario model: many users -----------------------------------------------------------------------


def test_the_fleet_world_gives_every_inventory_user_its_own_vault_path_and_consumer(make_world) -> None:
    world = make_world("fleet")
    inventory = world.inventory
    assert len(inventory.users) == 24
    holdings = world.holdings()
    for name, entry in inventory.users.items():
        assert entry.vault is not None and entry.consumers, name
        vault_place = f"infisical:raxx-prod/prod{entry.vault.path}"
        active = [k["id"] for k in world.export()["iam_users"][name]["keys"] if k["status"] == "Active"]
        assert holdings[vault_place][0] == active[0], name
        for consumer in entry.consumers:
            assert holdings[consumer.name][0] == active[0], (name, consumer.name)
    assert "dev-alice-cli" not in inventory.users and "dev-alice-cli" in world.export()["iam_users"]


def test_a_fleet_world_comes_back_from_its_snapshot_with_every_vaults_history(make_world) -> None:
    from steps.sandbox.world import World
    from steps.wiring import training_clock

    world = make_world("fleet")
    snapshot = world.snapshot()
    assert len(snapshot["vault_histories"]) == 24
    world.close()
    back = World.restore(snapshot, training_clock(True))
    try:
        assert len(back.inventory.users) == 24
        assert back.holdings().keys() == snapshot["places"].keys()
        assert back.snapshot()["vault_histories"] == snapshot["vault_histories"]
    finally:
        back.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"aws.users.u2.consumers": [{"type": "heroku", "app": "shared-app"}]}, "heroku app shared-app holds the pairs of both"),
        ({"aws.users.u1.vault": {"path": "/aws/u1"}}, "the target's vault and consumers are the scenario's top-level ones"),
        ({"aws.users.u2.vault": {"path": "/aws/u2", "holds": "3"}}, "is not 'active', 'none' or the index of one of u2's keys"),
    ],
)
def test_a_fleet_scenario_is_checked_as_one_file(tmp_path, change, message) -> None:
    import yaml

    from steps.sandbox import scenario as scenarios
    from steps.yamlfile import RunbookError

    data = {
        "id": "bad",
        "title": "t",
        "teaches": "t",
        "difficulty": 1,
        "briefing": "b",
        "goal": "g",
        "target_user": "u1",
        "consumers": [{"type": "heroku", "app": "shared-app"}],
        "aws": {"users": {"u1": {"keys": [{"age": "40d"}]}, "u2": {"keys": [{"age": "50d"}]}}},
    }
    for dotted, value in change.items():
        where = data
        *parents, last = dotted.split(".")
        for part in parents:
            where = where[part]
        where[last] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RunbookError, match=message) as caught:
        scenarios.load(str(path))
    assert "\n" not in str(caught.value)
