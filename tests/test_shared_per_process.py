"""What a process parses once and shares: botocore's models (one loader for every world's
clients and every live session), the sandbox's client classes and the fake APIs' routing
tables. Shared data, never
shared state: each client signs with its own pair, each live session reads its own
credentials, each fake API answers with its own handlers."""

from __future__ import annotations

import requests

from steps.sandbox.http import LoopbackServer, Reply
from steps.wiring import LiveWiring


def test_two_worlds_clients_share_botocore_models_and_sign_for_their_own_account(make_world, scenario_file):
    one = make_world(scenario_file("one"))
    two = make_world(scenario_file("two"))
    sts_one, sts_two = one.aws.client("sts"), two.aws.client("sts")
    assert sts_one._loader is sts_two._loader, "one loader: botocore's JSON models parsed once per process"
    assert sts_one.get_caller_identity()["Account"] == one.aws.account_id
    assert sts_two.get_caller_identity()["Account"] == two.aws.account_id


def test_the_sandboxs_clients_of_a_service_share_one_class_and_each_signs_with_its_own_pair(make_world, live_world):
    world = make_world("happy-path")
    second = world.aws.create_user_with_key("second", [])
    operator, other = world.aws.client("sts"), world.aws.client("sts", second, region="eu-west-1")
    assert type(operator) is type(other), "botocore's class for STS built once for the sandbox"
    assert operator.get_caller_identity()["Arn"].endswith("user/handrail-operator")
    assert other.get_caller_identity()["Arn"].endswith("user/second") and other.meta.region_name == "eu-west-1"
    assert type(world.aws.client("ec2")) is type(live_world.aws.client("ec2", region="ap-south-1"))

    # Any other session (a live wiring's, in the same process) gets botocore's own classes.
    live = [LiveWiring(region=live_world.aws.region).aws_client("sts") for _ in range(2)]
    assert type(live[0]) is not type(live[1]) and type(live[0]) is not type(operator)
    assert {c.get_caller_identity()["Account"] for c in live} == {live_world.aws.account_id}


def test_live_sessions_share_botocore_models_and_each_reads_its_own_credentials(live_world, make_world, scenario_file, monkeypatch):
    first = LiveWiring(region=live_world.aws.region).aws_client("sts")
    assert first.get_caller_identity()["Account"] == live_world.aws.account_id

    other = make_world(scenario_file("other-account"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", other.aws.operator.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", other.aws.operator.secret.reveal())
    wirings = [LiveWiring(region=other.aws.region) for _ in range(3)]
    clients = [w.aws_client("sts") for w in wirings]
    assert all(c._loader is first._loader for c in clients)
    assert {c.get_caller_identity()["Account"] for c in clients} == {other.aws.account_id}
    paths = first._loader.search_paths
    assert len(paths) == len(set(paths)), f"each session added boto3's data folder again: {paths}"


def test_fake_apis_with_the_same_routes_share_one_routing_table_and_answer_with_their_own_handlers():
    def server(who: str, *extra: str) -> LoopbackServer:
        made = LoopbackServer(who)
        made.add("thing", "GET", "/things/<name>", lambda request, name: Reply(200, {"who": who, "name": name}))
        for route in extra:
            made.add(route, "GET", f"/{route}", lambda request: Reply(200, {"who": who}))
        return made.start()

    one, two, three = server("one"), server("two"), server("three", "more")
    try:
        assert one._routing() is two._routing() and three._routing() is not one._routing()
        assert requests.get(f"{one.url}/things/a", timeout=10).json() == {"who": "one", "name": "a"}
        assert requests.get(f"{two.url}/things/b", timeout=10).json() == {"who": "two", "name": "b"}
        assert requests.get(f"{two.url}/more", timeout=10).status_code == 404
        assert requests.get(f"{three.url}/more", timeout=10).json() == {"who": "three"}
        assert (one.calls["thing"], two.calls["thing"], two.calls["unmatched"]) == (1, 1, 1)
    finally:
        for made in (one, two, three):
            made.stop()
