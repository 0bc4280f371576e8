"""What a training campaign's sessions ask once, not once per call: the operator's identity
(per wiring and operator), the account's enabled regions (per shared world), and the
sandbox's LookupEvents, which reads the events of one key, not the whole history."""

from __future__ import annotations

from datetime import timedelta

from steps.clock import SimClock
from steps.sandbox import trail
from steps.wiring import SharedTrainingWiring, TrainingWiring


def test_a_wiring_asks_who_the_operator_is_once_until_the_operator_changes(make_world):
    world = make_world("happy-path")
    wiring = TrainingWiring(world)
    calls = world.aws.calls
    before = calls.get("sts:GetCallerIdentity", 0)
    first = wiring.identity()
    assert wiring.identity() == first
    assert calls["sts:GetCallerIdentity"] == before + 1
    operator = world.aws.operator
    assert operator is not None
    wiring.switch_operator(operator)  # self-rotation: the next question goes to AWS again
    assert wiring.identity() == first
    assert calls["sts:GetCallerIdentity"] == before + 2


def test_the_sessions_of_one_world_ask_its_enabled_regions_once(make_world):
    world = make_world("happy-path")
    regions = [SharedTrainingWiring(world).enabled_regions() for _ in range(3)]
    assert regions[0] == regions[1] == regions[2] and "us-east-1" in regions[0] and "af-south-1" not in regions[0]
    assert world.aws.evidence_calls["ec2:DescribeRegions"] == 1


def _event(i: int, key: str, at, region: str = "us-east-1") -> dict:
    return {
        "id": f"ev-{i}",
        "name": "GetCallerIdentity",
        "source": "sts.amazonaws.com",
        "at": at,
        "region": region,
        "ip": "192.0.2.1",
        "ua": "test",
        "key": key,
        "user": "u",
        "account": "123456789012",
        "request": {},
        "created": "",
        "error": "",
    }


def _ids(t: trail.Trail, key: str, region: str = "us-east-1") -> list[str]:
    status, answer = t.lookup(region, {"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": key}], "MaxResults": 50})
    assert status == 200
    return [e["EventId"] for e in answer["Events"]]


def test_lookup_events_answers_by_key_and_region_from_the_kept_events_only(monkeypatch):
    monkeypatch.setattr(trail, "MAX_KEPT", 10)
    clock = SimClock()
    t = trail.Trail(clock)
    t.delay = 0
    at = clock.now() - timedelta(hours=1)
    for i in range(14):  # the first 4 go past MAX_KEPT
        t.add(_event(i, "AKIA-A" if i % 2 == 0 else "AKIA-B", at + timedelta(seconds=i)))
    t.add(_event(99, "AKIA-A", at, region="eu-west-1"))  # drops one more: 5 gone
    assert len(t.events) == 10
    assert _ids(t, "AKIA-A") == ["ev-12", "ev-10", "ev-8", "ev-6"]
    assert _ids(t, "AKIA-B") == ["ev-13", "ev-11", "ev-9", "ev-7", "ev-5"]
    assert _ids(t, "AKIA-A", "eu-west-1") == ["ev-99"]
    assert _ids(t, "AKIA-C") == []
    # Replacing the history (a restore, a test removing events) is what LookupEvents reads next.
    t.events = [e for e in t.events if e["id"] != "ev-10"]
    assert _ids(t, "AKIA-A") == ["ev-12", "ev-8", "ev-6"]
    t.restore(t.snapshot())
    assert _ids(t, "AKIA-B") == ["ev-13", "ev-11", "ev-9", "ev-7", "ev-5"]


def test_a_lookup_entry_is_made_once_and_a_secret_in_any_of_its_fields_is_scrubbed_when_read():
    import json

    from steps.cloudtrail import TrailEvent
    from steps.secrets import MASK, Secret

    clock = SimClock()
    t = trail.Trail(clock)
    t.delay = 0
    leaked = Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETKEY", "test secret").reveal()
    event = _event(1, "AKIA-A", clock.now() - timedelta(minutes=1))
    event["ua"] = f"curl {leaked}"
    event["request"] = {"userName": f"u-{leaked}"}
    t.add(event)
    entries = [
        t.lookup("us-east-1", {"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": "AKIA-A"}]})[1]["Events"][0]
        for _ in range(2)
    ]
    assert entries[0] is entries[1]  # the second page read reuses the entry
    # As boto3 hands it over, less EventTime (a datetime there): the record's time is read.
    parsed = TrailEvent.parse({k: v for k, v in entries[0].items() if k != "EventTime"}, "us-east-1")
    assert leaked in json.loads(entries[0]["CloudTrailEvent"])["userAgent"]  # the raw record holds it...
    assert parsed.user_agent == f"curl {MASK}" and parsed.user == f"u-{MASK}"  # ...the parsed event never
    assert leaked not in repr(parsed.as_dict())


def test_lookup_events_by_resource_name_answers_the_events_naming_that_user_or_key():
    clock = SimClock()
    t = trail.Trail(clock)
    t.delay = 0
    at = clock.now() - timedelta(minutes=5)
    for i, (user, key, created) in enumerate([("alice", "AKIA-OLD", ""), ("bob", "", "AKIA-NEW"), ("alice", "", "")]):
        event = _event(i, "AKIA-OPERATOR", at + timedelta(seconds=i))
        event.update(name="UpdateAccessKey", source="iam.amazonaws.com", user="operator", created=created)
        event["request"] = {k: v for k, v in (("userName", user), ("accessKeyId", key)) if v}
        t.add(event)

    def by(name: str) -> list[str]:
        status, answer = t.lookup("us-east-1", {"LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": name}]})
        assert status == 200
        return [e["EventId"] for e in answer["Events"]]

    assert by("alice") == ["ev-2", "ev-0"] and by("bob") == ["ev-1"]
    assert by("AKIA-OLD") == ["ev-0"] and by("AKIA-NEW") == ["ev-1"]
    assert by("operator") == []  # the caller is `Username`, not a resource
    t.restore(t.snapshot())
    assert by("alice") == ["ev-2", "ev-0"]


def test_get_access_key_last_used_finds_a_key_by_its_id_and_still_refuses_a_deleted_one(make_world, monkeypatch):
    import pytest
    from botocore.exceptions import ClientError
    from moto.iam.models import IAMBackend

    world = make_world("happy-path")
    iam = world.aws.client("iam")
    user = world.scenario.target_user
    key = next(iter(world.aws.iam.users[user].access_keys))
    expected = iam.get_access_key_last_used(AccessKeyId=key.access_key_id)
    assert expected["UserName"] == user

    def scan(self):
        raise AssertionError("scanned every account's keys for a key of this account")

    monkeypatch.setattr(IAMBackend, "get_all_access_keys_for_all_users", scan)
    answer = iam.get_access_key_last_used(AccessKeyId=key.access_key_id)
    assert answer["UserName"] == user and answer["AccessKeyLastUsed"] == expected["AccessKeyLastUsed"]
    monkeypatch.undo()
    iam.delete_access_key(UserName=user, AccessKeyId=key.access_key_id)
    with pytest.raises(ClientError) as refused:
        iam.get_access_key_last_used(AccessKeyId=key.access_key_id)
    assert refused.value.response["Error"]["Code"] == "NoSuchEntity"


def test_a_sandbox_server_answers_from_a_pool_of_threads_made_once_one_request_per_connection():
    import http.client
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from steps.sandbox.http import PooledWSGIServer, serve

    threads: set[str] = set()

    def app(environ, start_response):
        threads.add(threading.current_thread().name)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    server = serve(app)
    runner = threading.Thread(target=server.serve_forever, daemon=True)
    runner.start()
    port = server.server_address[1]

    def get(_: int) -> tuple[int, str, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        answer = conn.getresponse()
        answer.read()
        conn.close()
        return answer.status, f"HTTP/{answer.version / 10:.1f}", answer.getheader("Connection")

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(get, range(3 * PooledWSGIServer.WORKERS)))  # more at once than the pool has threads
    finally:
        server.shutdown()
        server.server_close()
    assert {a[0] for a in answers} == {200} and {a[1] for a in answers} == {"HTTP/1.0"}
    assert threads and all(name.startswith("sandbox-http") for name in threads)  # not a thread per request
    assert len(threads) <= PooledWSGIServer.WORKERS
