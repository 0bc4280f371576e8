"""CloudTrail evidence (issue 11): who used the old key before the rotation, every use after
its deactivation before the delete, the session's own writes after it; partial evidence
when CloudTrail is denied or unreachable. Real boto3 against the sandbox's gate, which
records every call and serves LookupEvents with a delivery delay."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from test_secrets_never_leak import home_files, world_secrets

from steps import cloudtrail as ct
from steps.clock import SimClock, parse_iso
from steps.sandbox import trail
from steps.status import Needs
from steps.wiring import TrainingWiring

FORGOTTEN_IP = "192.0.2.99"


def run_until(rig, session, step_id: str) -> None:
    while session.current().step.id != step_id:
        outcome = rig.step(session)
        assert outcome is None or outcome.status == "done", f"{session.current().step.id}: {outcome}"


def findings(session) -> dict:
    return ct.session_findings(session.journal.facts(session.id))


# -- step 1: who used the old key ----------------------------------------------------------------


@pytest.mark.all_regions  # the 18 an account has by default, each asked
def test_step_1_names_the_caller_that_matches_no_consumer_and_the_next_change_waits_for_a_yes(rig):
    world = rig.world("forgotten-consumer")
    session = rig.start(world)
    tags_before = world.aws.iam.users["raxx-vault-operator"].tags
    assert rig.step(session).status == "done"

    found = findings(session)["callers"]
    by_ip = {c["source_ip"]: c for c in found["callers"]}
    assert by_ip[FORGOTTEN_IP]["consumer"] is None and "nightly-report" in by_ip[FORGOTTEN_IP]["user_agent"]
    assert by_ip[FORGOTTEN_IP]["events"] == {"GetCallerIdentity": 7} and by_ip[FORGOTTEN_IP]["regions"] == ["us-east-1"]
    assert {by_ip[ip]["consumer"] for ip in by_ip if ip != FORGOTTEN_IP} == {"heroku:raxx-api-prod", "github:raxx/infra", "ssh:vault-host"}
    assert found["unmatched"] == 1 and found["regions"][0] == "us-east-1" and len(found["regions"]) == 18
    assert FORGOTTEN_IP in session.states["pre-checks"].summary

    # Step 1a (auto, it tags the user) now takes a yes over the warning; headless without --yes stops.
    prompt = session.prompt()
    assert prompt.step.id == "claim-user" and prompt.confirm is Needs.YES
    assert any(FORGOTTEN_IP in w and "match no consumer" in w for w in prompt.warnings)
    stopped = rig.drive(session, yes=False)
    assert stopped.code == 3 and "before step 1a" in stopped.message and "warning above acknowledged" in stopped.message
    assert f"WARNING: CloudTrail shows 1 caller(s) of the old key {session.facts['old_key_id']}" in stopped.text
    assert world.aws.iam.users["raxx-vault-operator"].tags == tags_before  # nothing changed

    drove = rig.drive(session, confirm_irreversible=True)
    assert drove.code == 1 and "blocked" in drove.message
    assert session.facts["ack:forgotten-consumer"].startswith("--yes by ")
    acknowledged = [json.loads(line) for line in rig.engine.audit.path.read_text().splitlines() if '"warning.acknowledged"' in line]
    assert [a["context"]["how"] for a in acknowledged] == ["--yes"] and acknowledged[0]["context"]["step"] == "claim-user"
    later = session.prompt("create-key")
    assert later.confirm is Needs.RUN and not later.warnings  # acknowledged once, not at every step


def test_a_rotation_whose_callers_are_all_listed_consumers_asks_nothing_more(rig):
    world = rig.world("happy-path")
    session = rig.start(world)
    rig.step(session)
    found = findings(session)["callers"]
    assert found["unmatched"] == 0 and len(found["callers"]) == 3
    prompt = session.prompt()
    assert prompt.step.id == "claim-user" and prompt.confirm is Needs.RUN and not prompt.warnings


def test_a_consumer_that_declares_neither_address_nor_agent_matches_no_caller():
    blank, listed = ct.Matcher("heroku:a"), ct.Matcher("ssh:h", ("198.51.100.0/24",), ("*raxx-vault/*",))
    assert not blank.matches("203.0.113.10", "anything")
    assert listed.matches("198.51.100.25", "Boto3/1 raxx-vault/2.3")
    assert not listed.matches("198.51.100.25", "curl/8")  # both kinds it declares must match
    assert not listed.matches("AWS Internal", "Boto3/1 raxx-vault/2.3")


# -- step 7b: uses after the deactivation ----------------------------------------------------------


def test_done_criterion_run_blocks_before_the_delete_and_evidence_lists_the_forgotten_callers_uses(cli):
    run = cli(
        "run", "--mode", "training", "--scenario", "forgotten-consumer", "--yes", "--confirm-irreversible", "--fast-forward", "--json"
    )
    assert run.exit_code == 1, run.output
    out = json.loads(run.stdout)
    steps = {s["id"]: s for s in out["steps"]}
    assert FORGOTTEN_IP in steps["pre-checks"]["summary"] and "matching no consumer" in steps["pre-checks"]["summary"]
    assert steps["delete-old-key"]["status"] == "blocked" and steps["audit-record"]["status"] == "pending"
    assert "WARNING: CloudTrail shows 1 caller(s)" in run.stderr  # printed before step 1a, then acknowledged by --yes

    shown = cli("evidence", "last", "--json")
    assert shown.exit_code == 0, shown.output
    after = json.loads(shown.output)["after_deactivation"]
    deactivated = parse_iso(after["deactivated_at"])
    assert after["uses"] and after["inconclusive_until"] is None
    for use in after["uses"]:
        assert use["source_ip"] == FORGOTTEN_IP and "nightly-report" in use["user_agent"]
        assert parse_iso(use["time"]) > deactivated and use["event"] == "GetCallerIdentity" and use["region"] == "us-east-1"
    text = cli("evidence", "last")
    assert "USED " in text.output and "matches NO consumer" in text.output


def test_the_7b_block_shows_each_use_with_time_event_region_address_and_agent(rig):
    world = rig.world("forgotten-consumer")
    session = rig.start(world)
    run_until(rig, session, "delete-old-key")
    outcome = rig.step(session)
    assert outcome.status == "blocked"
    assert f"from {FORGOTTEN_IP} (aws-sdk-go/1.50.0" in outcome.summary
    used = [line for line in outcome.evidence if line.lstrip().startswith("USED ")]
    assert used and all("GetCallerIdentity  us-east-1  from 192.0.2.99  (aws-sdk-go" in line for line in used)
    # handrail's own checks with the old key in step 7 are not uses.
    assert any("by handrail itself" in line for line in outcome.evidence)


def test_a_use_seen_only_by_cloudtrail_blocks_the_delete(rig):
    """The last use can hide a caller (AWS keeps one per key); CloudTrail keeps them all."""
    world = rig.world("happy-path")
    session = rig.start(world)
    run_until(rig, session, "delete-old-key")
    old_id = session.facts["old_key_id"]
    deactivated = parse_iso(session.facts["deactivated_at"])
    world.aws.trail.seed(old_id, "raxx-vault-operator", world.aws.account_id, trail.FORGOTTEN, [deactivated + timedelta(seconds=5)])
    outcome = rig.step(session)
    assert outcome.status == "blocked" and "CloudTrail: 1 use(s) by 1 caller(s)" in outcome.summary
    assert old_id in rig.keys(world)


def test_within_15_minutes_of_the_deactivation_the_evidence_says_it_is_not_yet_conclusive(rig):
    world = rig.world("happy-path")
    session = rig.start(world)
    run_until(rig, session, "delete-old-key")
    session.override_gate("delete-old-key", "test: delete at once")
    outcome = rig.step(session)
    assert outcome.status == "done"  # the last use decides meanwhile: none
    assert any("not yet conclusive" in line for line in outcome.evidence)
    found = findings(session)
    assert found["after_deactivation"]["inconclusive_until"]
    assert any(line.startswith("step 7b: not yet conclusive") for line in found["partial"])


# -- CloudTrail denied or unreachable -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["denied", "unreachable"])
def test_cloudtrail_denied_or_unreachable_is_one_line_and_the_last_use_alone_decides(rig, mode):
    world = rig.world("forgotten-consumer")
    world.aws.set_cloudtrail(mode)
    session = rig.start(world)
    first = rig.step(session)
    lines = [line for line in first.evidence if line.startswith("CloudTrail:")]
    assert len(lines) == 1 and "the last use alone" in lines[0]
    assert ("was denied (AccessDeniedException" if mode == "denied" else "could not be reached (EndpointConnectionError") in lines[0]
    assert session.prompt().confirm is Needs.RUN  # no caller known, no warning
    run_until(rig, session, "delete-old-key")
    outcome = rig.step(session)
    assert outcome.status == "blocked" and "CloudTrail" not in outcome.summary  # the last use blocked it
    partial = findings(session)["partial"]
    assert [p.split(":")[0] for p in partial] == ["step 1", "step 7b"]
    calls = world.aws.evidence_calls.get("cloudtrail:LookupEvents", 0)
    assert calls == (2 if mode == "denied" else 0)  # a denial stops at the first region


def test_a_region_an_scp_closes_makes_the_evidence_partial_not_absent(rig):
    world = rig.world("forgotten-consumer")
    world.aws.trail.denied_regions = {"eu-west-3"}
    session = rig.start(world)
    rig.step(session)
    found = findings(session)
    assert found["callers"]["unmatched"] == 1  # the other regions still answered
    assert found["partial"] and found["partial"][0].startswith("step 1: not looked up in eu-west-3 (AccessDeniedException")
    assert session.prompt().confirm is Needs.YES


# -- after the rotation: the session's writes -------------------------------------------------------


def test_step_8_keeps_cloudtrails_event_id_of_each_write_and_flags_one_missing_after_the_delay(rig):
    world = rig.world("happy-path")
    session = rig.start(world)
    run_until(rig, session, "delete-old-key")
    # CloudTrail lost the deactivation (a trail misconfigured, a log tampered with).
    world.aws.trail.events = [e for e in world.aws.trail.events if e["name"] != "UpdateAccessKey"]
    drove = rig.drive(session)
    assert drove.code == 0, drove.text
    cor = findings(session)["corroboration"]
    state = {w["event"]: w for w in cor["writes"]}
    assert state["CreateAccessKey"]["state"] == "found" and state["CreateAccessKey"]["key_id"] == session.facts["new_key_id"]
    assert state["TagUser"]["state"] == "found" and state["CreateAccessKey"]["event_id"]
    assert state["UpdateAccessKey"]["state"] == "missing" and cor["missing"] == 1
    assert state["DeleteAccessKey"]["state"] == "pending"  # seconds old: within the delivery delay
    assert "WARNING: 1 write(s) missing from CloudTrail" in session.states["audit-record"].summary
    # Steps 1 and 7b ask every enabled region; step 8 one by the user's name, one more by
    # the missing write's event name before it is called missing.
    enabled = sum(1 for status in trail.REGIONS.values() if status != "not-opted-in")
    assert world.aws.evidence_calls["cloudtrail:LookupEvents"] == enabled + enabled + 1 + 1
    assert cor["attribute"] == "ResourceName" and cor["value"] == world.scenario.target_user
    assert cor["by_event_name"] == ["UpdateAccessKey"] and cor["calls"] == 2


def test_step_8_asks_cloudtrail_once_however_many_other_users_were_rotated_meanwhile(rig):
    world = rig.world("happy-path")
    session = rig.start(world)
    run_until(rig, session, "audit-record")
    # A fleet's writes, logged in the same minutes as this session's: 300 other users' keys
    # created, deactivated, deleted.
    now, account = world.clock.now(), world.aws.account_id
    operator = world.aws.operator.key_id
    names = ("CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey")
    for i in range(300):
        at = now - timedelta(minutes=10, seconds=i)
        request = {"userName": f"fleet-user-{i:03d}", "accessKeyId": f"AKIAFLEET{i:011d}"}
        world.aws.trail.add(
            {"id": f"fleet-{i}", "name": names[i % 3], "source": "iam.amazonaws.com", "at": at, "region": "us-east-1",
             "ip": "198.51.100.10", "ua": "handrail/test", "key": operator, "user": "handrail-operator", "account": account,
             "request": request, "created": "", "error": ""}
        )  # fmt: skip
    before = world.aws.evidence_calls.get("cloudtrail:LookupEvents", 0)
    assert rig.step(session).status == "done"
    cor = findings(session)["corroboration"]
    assert world.aws.evidence_calls["cloudtrail:LookupEvents"] - before == 1 == cor["calls"]
    assert cor["partial"] is None and cor["missing"] == 0 and not cor["by_event_name"]
    found = [w for w in cor["writes"] if w["state"] == "found"]
    assert {w["event"] for w in found} >= {"TagUser", "CreateAccessKey", "UpdateAccessKey"}
    assert all(w["user"] == world.scenario.target_user and not w["event_id"].startswith("fleet-") for w in found)


def test_the_rotations_own_aws_calls_stay_apart_from_the_evidence_lookups(rig):
    world = rig.world("happy-path")
    session = rig.start(world)
    assert rig.drive(session).code == 0
    assert not any(name.startswith(("cloudtrail:", "ec2:")) for name in world.aws.calls)
    assert world.aws.evidence_calls["ec2:DescribeRegions"] == 1  # once per wiring


# -- the lookup itself ---------------------------------------------------------------------------


def test_lookup_pages_through_every_event_at_most_two_requests_a_second_per_region(make_world):
    world = make_world("happy-path")
    clock = world.clock
    assert isinstance(clock, SimClock) and clock.auto_advance
    key = next(iter(world.aws.iam.users["raxx-vault-operator"].access_keys)).access_key_id
    now = clock.now()
    world.aws.trail.seed(
        key, "raxx-vault-operator", world.aws.account_id, trail.FORGOTTEN, [now - timedelta(hours=1, seconds=i) for i in range(120)]
    )
    world.aws.trail.seed(key, "raxx-vault-operator", world.aws.account_id, trail.FORGOTTEN, [now - timedelta(hours=2)], region="eu-west-1")
    wiring = TrainingWiring(world)
    regions = ["us-east-1", "eu-west-1", "ap-south-1"]
    sent: dict[str, list[float]] = {r: [] for r in regions}

    def client(region: str):
        made = wiring.aws_client("cloudtrail", region=region)
        made.meta.events.register("before-send", lambda **_: sent[region].append(clock.monotonic()))
        return made

    before = clock.monotonic()
    found = ct.lookup(client, regions, "AccessKeyId", key, now - timedelta(days=7), now, clock)
    assert found.partial is None and found.calls == 3 + 1 + 1  # 120 events: pages of 50, 50, 20
    assert sum(1 for e in found.events if e.region == "us-east-1" and e.source_ip == FORGOTTEN_IP) == 120
    assert [e.region for e in found.events if e.region != "us-east-1"] == ["eu-west-1"]
    assert found.events == sorted(found.events, key=lambda e: e.at, reverse=True)
    # As sent, on the simulated clock: never a third request of one region within a second.
    assert [len(sent[r]) for r in regions] == [3, 1, 1]
    for region, times in sent.items():
        assert all(third - first >= 1.0 for first, third in zip(times, times[2:], strict=False)), (region, times)
    assert clock.monotonic() - before >= 1.0  # three pages in us-east-1 waited two half-seconds


def test_an_event_shows_only_after_cloudtrails_delivery_delay(make_world):
    world = make_world("happy-path")
    world.aws.set_cloudtrail("on", delay=300)
    key = next(iter(world.aws.iam.users["raxx-vault-operator"].access_keys)).access_key_id
    ok, _ = world.aws.probe(key, world.aws.secrets_by_key()[key], caller=trail.FORGOTTEN)
    assert ok
    wiring = TrainingWiring(world)

    def fresh() -> list[ct.TrailEvent]:
        now = world.clock.now()
        found = ct.lookup(
            lambda r: wiring.aws_client("cloudtrail", region=r),
            ["us-east-1"],
            "AccessKeyId",
            key,
            now - timedelta(hours=1),
            now,
            world.clock,
        )
        return [e for e in found.events if e.source_ip == FORGOTTEN_IP]

    assert fresh() == []
    world.clock.advance(301)
    assert len(fresh()) == 1


# -- secrets and bad input -----------------------------------------------------------------------


def test_no_secret_reaches_the_evidence_the_journal_or_the_saved_trail(rig, cli, handrail_home):
    world = rig.world("forgotten-consumer")
    secrets = world_secrets(world)
    session = rig.start(world)
    rig.drive(session)
    secrets |= world_secrets(world) | {s.reveal() for s in session.secrets.values()}
    shown = cli("evidence", session.id, "--json").output + cli("evidence", session.id).output
    saved = json.dumps(world.aws.snapshot()["trail"])
    assert json.loads(shown.split("\nCloudTrail evidence")[0])["callers"]
    for secret in secrets:
        assert secret not in shown and secret not in saved
        for name, data in home_files(handrail_home).items():
            assert secret.encode() not in data, name


def test_evidence_of_an_unknown_session_is_one_line(cli):
    result = cli("evidence", "no-such-session")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "no session 'no-such-session'" in result.output


def test_an_inventory_consumer_with_a_bad_source_ip_is_one_line_naming_the_field(tmp_path):
    from steps import inventory
    from steps.yamlfile import RunbookError

    path = tmp_path / "inventory.yaml"
    path.write_text("users:\n  bob:\n    consumers:\n      - {type: heroku, app: bob-app, source_ips: [not-an-ip]}\n")
    with pytest.raises(RunbookError) as err:
        inventory.load(path)
    text = str(err.value)
    assert "source_ips" in text and "'not-an-ip' is not an IP address or a CIDR block" in text and "\n" not in text
