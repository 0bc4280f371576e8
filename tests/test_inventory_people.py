"""The inventory's people: each person's own IAM users and the pairs they could read;
`blast_radius(person)` is every pair they could read; `handrail offboard PERSON` plans a
campaign that offboards the first and rotates the second."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

INVENTORY = {
    "version": 1,
    "users": {"raxx-a": {}, "raxx-b": {}, "raxx-c": {}},
    "people": {
        "alice": {"iam_users": ["alice.cli"], "could_read": ["raxx-a", "raxx-c"]},
        "bob": {"could_read": ["raxx-b"]},
    },
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_blast_radius_is_every_pair_the_person_could_read(tmp_path) -> None:
    from steps import inventory

    inv = inventory.load(write(tmp_path, INVENTORY))

    assert inv.blast_radius("alice") == ["raxx-a", "raxx-c"]
    assert inv.blast_radius("bob") == ["raxx-b"]
    assert inv.person("alice").iam_users == ["alice.cli"]
    with pytest.raises(inventory.UnknownPerson, match=r"no person 'carol' in the inventory's people \(known: alice, bob\)"):
        inv.blast_radius("carol")


@pytest.mark.parametrize(
    ("person", "message"),
    [
        ({"could_read": ["raxx-a", "raxx-z"]}, "people.alice.could_read[1]: 'raxx-z' is not one of the inventory's users"),
        ({"could_read": ["raxx-a", "raxx-a"]}, "people.alice.could_read: 'raxx-a' is listed twice"),
        ({"iam_users": ["not a user name!"]}, "people.alice.iam_users[0]"),
        ({"could_read": ["raxx-a"], "owns": ["x"]}, "people.alice.owns: unknown field"),
    ],
)
def test_a_bad_person_is_one_line_naming_the_field(tmp_path, cli, person, message) -> None:
    path = write(tmp_path, {**INVENTORY, "people": {"alice": person}})

    result = cli("inventory", "check", path)

    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]


def test_an_offboarding_plan_offboards_own_users_and_rotates_the_rest(tmp_path) -> None:
    from steps import campaign, inventory

    inv = inventory.load(
        write(tmp_path, {**INVENTORY, "people": {"alice": {"iam_users": ["raxx-c", "alice.cli"], "could_read": ["raxx-a", "raxx-c"]}}})
    )

    plan = campaign.offboard_targets(inv, "alice")

    assert [(t.runbook, t.user) for t in plan] == [
        (campaign.OFFBOARDING, "raxx-c"),
        (campaign.OFFBOARDING, "alice.cli"),
        (campaign.ROTATION, "raxx-a"),  # raxx-c is hers: offboarded, not rotated
    ]
    assert plan[2].inputs == {"reason": "offboarding"} and "blast radius" in plan[2].why
    campaign.check_plan(plan)


@pytest.mark.slow
def test_offboard_dana_removes_her_user_and_rotates_every_pair_she_could_read(cli, tmp_path) -> None:
    """The issue's done criterion, end to end on the shipped scenario."""
    world_out = tmp_path / "w.json"
    result = cli(
        "offboard", "dana", "--mode", "training", "--scenario", "offboarding", "--yes", "--confirm-irreversible",
        "--fast-forward", "--json", "--world-out", str(world_out),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    radius = {"raxx-reports", "raxx-deploy", "raxx-vault-operator"}
    assert {t["user"]: t["state"] for t in data["targets"]} == {"dana": "done", **dict.fromkeys(radius, "done")}
    world = json.loads(world_out.read_text())
    assert "dana" not in world["iam_users"]
    for target in data["targets"]:
        if target["user"] not in radius:
            continue
        keys = world["iam_users"][target["user"]]["keys"]
        assert [(k["id"], k["status"]) for k in keys] == [(target["new_key_id"], "Active")]  # the old key deleted
        assert target["old_key_id"] != target["new_key_id"]
        holders = [
            v["key_id"]
            for k, v in world["holders"].items()
            if not k.startswith("aws:") and v["key_id"] in (target["old_key_id"], target["new_key_id"])
        ]
        assert holders and set(holders) == {target["new_key_id"]}  # vault and every consumer
    held_by_place = {
        k.split(":")[0] for k, v in world["holders"].items() if v["key_id"] == by_user(data, "raxx-vault-operator")["new_key_id"]
    }
    assert held_by_place >= {"infisical", "heroku", "ssh", "aws"}


def by_user(data: dict, user: str) -> dict:
    return next(t for t in data["targets"] if t["user"] == user)


@pytest.mark.slow
def test_offboard_runs_one_campaign_over_two_runbooks(cli, tmp_path, shipped_runbook, write_yaml, monkeypatch) -> None:
    """With a stand-in for the offboarding runbook (the rotation under that id), the
    campaign runs her own user and her blast radius side by side."""
    from steps import campaign

    stand_in = write_yaml("aws-iam-user-offboarding.yaml", {**shipped_runbook, "id": "aws-iam-user-offboarding"})
    monkeypatch.setattr(campaign, "OFFBOARDING", str(stand_in))

    result = cli("offboard", "alice", "--scenario", "fleet", "--yes", "--fast-forward", "--confirm-irreversible", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "offboard" and data["counts"] == {"done": 4}
    by_user = {t["user"]: t for t in data["targets"]}
    assert by_user["dev-alice-cli"]["runbook"] == str(stand_in)
    assert {u for u, t in by_user.items() if t["runbook"] == campaign.ROTATION} == {"raxx-billing-export", "raxx-reports", "raxx-mailer"}
    assert "could read" in by_user["raxx-reports"]["why"]
