"""The Heroku consumer adapter, through requests, against the fake Platform API."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from steps.consumers.base import AdapterError, Pair
from steps.consumers.heroku import HerokuConsumer, heroku_token
from steps.sandbox.heroku import HerokuSandbox
from steps.secrets import Secret

APP = "raxx-api-prod"
KEY, SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"


def new_pair() -> Pair:
    return Pair("AKIA" + secrets.token_hex(8).upper(), Secret(secrets.token_urlsafe(30), SECRET))


class FakeAws:
    """A stand-in AwsProbe: accepts exactly the pairs marked active."""

    def __init__(self) -> None:
        self.active: dict[str, Secret] = {}
        self.seen: list[str] = []

    def __call__(self, key_id: str, secret: Secret) -> tuple[bool, str]:
        self.seen.append(key_id)
        if self.active.get(key_id) == secret:
            return True, f"sts:GetCallerIdentity ok as {key_id}"
        return False, f"InvalidClientTokenId: The security token included in the request is invalid ({key_id})"


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Never pick up the developer's real token or ~/.netrc.
    monkeypatch.delenv("HEROKU_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def aws() -> FakeAws:
    return FakeAws()


@pytest.fixture
def sandbox(aws: FakeAws) -> Iterator[HerokuSandbox]:
    sb = HerokuSandbox(aws_probe=aws).start()
    yield sb
    sb.stop()


@pytest.fixture
def old_pair(sandbox: HerokuSandbox, aws: FakeAws) -> Pair:
    pair = new_pair()
    aws.active[pair.key_id] = pair.secret
    sandbox.seed_app(APP, {KEY: pair.key_id, SECRET: pair.secret.reveal(), "DATABASE_URL": "postgres://app:pw-1234567@db/app"})
    return pair


@pytest.fixture
def consumer(sandbox: HerokuSandbox, old_pair: Pair) -> Iterator[HerokuConsumer]:
    c = HerokuConsumer(APP, api_url=sandbox.url, token=sandbox.token, verify_url=sandbox.health_url(APP), timeout=2)
    yield c
    c.close()


def write_netrc(path: Path, token: str) -> Path:
    path.write_text(
        f"machine api.heroku.com\n  login ops@example.com\n  password {token}\nmachine git.heroku.com\n  login ops@example.com\n  password {token}\n"
    )
    path.chmod(0o600)
    return path


# -- reading and writing ---------------------------------------------------------------


def test_read_key_id_returns_the_config_var(consumer: HerokuConsumer, old_pair: Pair) -> None:
    assert consumer.kind == "heroku" and consumer.name == f"heroku:{APP}"
    assert consumer.read_key_id() == old_pair.key_id
    assert consumer.read_pair() == old_pair


def test_write_pair_updates_both_vars_in_one_patch(sandbox: HerokuSandbox, consumer: HerokuConsumer) -> None:
    pair = new_pair()

    result = consumer.write_pair(pair)

    assert result.ok, result
    assert sandbox.calls["patch_config"] == 1
    assert sandbox.holdings()[consumer.name] == (pair.key_id, pair.secret)
    assert "DATABASE_URL" in sandbox.config_names(APP)  # PATCH merges
    assert any(f"{SECRET} {pair.fingerprint()} (matches)" in line for line in result.evidence)
    assert any(f"{KEY}={pair.key_id} (matches)" in line for line in result.evidence)


def test_write_pair_makes_one_release_and_restarts_the_app(sandbox: HerokuSandbox, consumer: HerokuConsumer) -> None:
    restarts = sandbox.restarts(APP)

    result = consumer.write_pair(new_pair())

    assert sandbox.releases(APP)[-1] == (3, f"Set {KEY}, {SECRET} config vars")
    assert sandbox.restarts(APP) == restarts + 1
    assert f"heroku:{APP}: release v3 (succeeded): Set {KEY}, {SECRET} config vars" in result.evidence


def test_release_listing_failure_does_not_fail_the_write(sandbox: HerokuSandbox, consumer: HerokuConsumer) -> None:
    sandbox.fail("list_releases", status=503)

    result = consumer.write_pair(new_pair())

    assert result.ok
    assert any("release not confirmed" in line and "HTTP 503" in line for line in result.evidence)


def test_injected_500_on_patch_raises_and_leaves_config_unchanged(sandbox: HerokuSandbox, consumer: HerokuConsumer) -> None:
    before, releases = sandbox.holdings(), sandbox.releases(APP)
    sandbox.fail("patch_config", status=500, body={"id": "internal_server_error", "message": "Please try again later."})

    with pytest.raises(AdapterError) as err:
        consumer.write_pair(new_pair())

    assert str(err.value) == (
        f"heroku:{APP}: PATCH /apps/{APP}/config-vars failed: HTTP 500 internal_server_error: Please try again later."
    )
    assert sandbox.holdings() == before and sandbox.releases(APP) == releases


# -- verification ----------------------------------------------------------------------


def test_verify_passes_when_the_app_works_on_the_new_key(sandbox: HerokuSandbox, consumer: HerokuConsumer, aws: FakeAws) -> None:
    pair = new_pair()
    aws.active[pair.key_id] = pair.secret
    consumer.write_pair(pair)

    result = consumer.verify(pair)

    assert result.ok, result
    assert aws.seen[-1] == pair.key_id  # the restarted app really used the new key
    assert any("HTTP 200" in line and "GetCallerIdentity ok" in line for line in result.evidence)


def test_verify_fails_when_aws_rejects_the_key(sandbox: HerokuSandbox, consumer: HerokuConsumer, aws: FakeAws) -> None:
    pair = new_pair()  # never activated: the probe rejects it
    consumer.write_pair(pair)

    result = consumer.verify(pair)

    assert not result.ok
    assert any("HTTP 500" in line and "InvalidClientTokenId" in line for line in result.evidence)


def test_verify_fails_without_calling_the_app_when_the_config_holds_another_pair(sandbox: HerokuSandbox, consumer: HerokuConsumer) -> None:
    result = consumer.verify(new_pair())

    assert not result.ok
    assert sandbox.calls["healthz"] == 0


def test_verify_tries_again_while_the_app_restarts(sandbox: HerokuSandbox, old_pair: Pair) -> None:
    consumer = HerokuConsumer(
        APP, api_url=sandbox.url, token=sandbox.token, verify_url=sandbox.health_url(APP), verify_attempts=2, verify_interval=0
    )
    sandbox.fail("healthz", status=503, body={"message": "H20 App boot timeout"})

    result = consumer.verify(old_pair)

    assert result.ok and sandbox.calls["healthz"] == 2
    assert "H20 App boot timeout" in result.evidence[1]


def test_health_url_without_aws_wired_answers_200_with_a_note() -> None:
    with HerokuSandbox() as sb:
        pair = new_pair()
        sb.seed_app("plain", {KEY: pair.key_id, SECRET: pair.secret.reveal()})
        answer = requests.get(sb.health_url("plain"), timeout=2)
    assert answer.status_code == 200 and "no AWS wired" in answer.json()["message"]


# -- the token -------------------------------------------------------------------------


def test_token_from_heroku_api_key(sandbox: HerokuSandbox, old_pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEROKU_API_KEY", sandbox.token.reveal())
    assert HerokuConsumer(APP, api_url=sandbox.url).read_key_id() == old_pair.key_id


def test_token_from_the_netrc_file_named_by_netrc(
    sandbox: HerokuSandbox, old_pair: Pair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NETRC", str(write_netrc(tmp_path / "custom-netrc", sandbox.token.reveal())))
    assert HerokuConsumer(APP, api_url=sandbox.url).read_key_id() == old_pair.key_id
    assert heroku_token()[1] == str(tmp_path / "custom-netrc")


def test_token_from_netrc_in_home(sandbox: HerokuSandbox, old_pair: Pair, tmp_path: Path) -> None:
    write_netrc(tmp_path / ".netrc", sandbox.token.reveal())  # HOME is tmp_path
    assert HerokuConsumer(APP, api_url=sandbox.url).read_key_id() == old_pair.key_id


def test_missing_token_raises_a_one_line_error(sandbox: HerokuSandbox, old_pair: Pair) -> None:
    with pytest.raises(AdapterError) as err:
        HerokuConsumer(APP, api_url=sandbox.url).read_key_id()
    message = str(err.value)
    assert "HEROKU_API_KEY" in message and "heroku login" in message and "\n" not in message
    assert sandbox.calls.total() == 0


def test_unparsable_netrc_is_reported_without_its_contents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "broken"
    # Python's parser quotes the bad token in its message; that token may be a password.
    path.write_text("HRKU-pasted-tok-9f8e7d6c\nmachine api.heroku.com password x\n")
    monkeypatch.setenv("NETRC", str(path))
    with pytest.raises(AdapterError) as err:
        heroku_token()
    assert str(path) in str(err.value) and "9f8e7d6c" not in str(err.value)


def test_rejected_token_raises_unauthorized_and_names_the_source(
    sandbox: HerokuSandbox, old_pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEROKU_API_KEY", "HRKU-" + secrets.token_hex(16))
    with pytest.raises(AdapterError, match=r"HTTP 401 unauthorized: Invalid credentials provided\. \(token from HEROKU_API_KEY\)"):
        HerokuConsumer(APP, api_url=sandbox.url).read_key_id()


# -- failures --------------------------------------------------------------------------


def test_unknown_app_raises_not_found(sandbox: HerokuSandbox) -> None:
    with pytest.raises(AdapterError, match=r"heroku:ghost: read config vars failed: HTTP 404 not_found: Couldn't find that app\."):
        HerokuConsumer("ghost", api_url=sandbox.url, token=sandbox.token).read_key_id()


def test_api_without_the_v3_accept_header_is_refused(sandbox: HerokuSandbox, old_pair: Pair) -> None:
    answer = requests.get(f"{sandbox.url}/apps/{APP}", headers={"Authorization": f"Bearer {sandbox.token.reveal()}"}, timeout=2)
    assert answer.status_code == 400 and answer.json()["id"] == "missing_version"


def test_unreachable_api_raises_connection_refused(sandbox: HerokuSandbox, consumer: HerokuConsumer) -> None:
    sandbox.stop()
    with pytest.raises(AdapterError, match=rf"heroku:{APP}: read config vars failed: cannot reach .* \(connection refused\)"):
        consumer.read_key_id()


def test_silent_api_times_out() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        consumer = HerokuConsumer(APP, api_url=f"http://127.0.0.1:{port}", token="HRKU-test-token", timeout=0.2)
        with pytest.raises(AdapterError, match=r"no answer from .* within 0.2s"):
            consumer.read_key_id()


# -- display and secrecy ---------------------------------------------------------------


def test_command_shows_the_cli_equivalent_without_the_secret(consumer: HerokuConsumer) -> None:
    assert consumer.command("AKIAEXAMPLE") == f"heroku config:set {KEY}=AKIAEXAMPLE {SECRET}=**** -a {APP}"


def test_secret_value_never_appears_in_evidence_errors_or_reprs(sandbox: HerokuSandbox, consumer: HerokuConsumer, aws: FakeAws) -> None:
    pair = new_pair()
    value = pair.secret.reveal()
    aws.active[pair.key_id] = pair.secret
    written = consumer.write_pair(pair)
    verified = consumer.verify(pair)
    # An error body that echoes the request must not carry the value into the message.
    sandbox.fail("patch_config", status=422, body={"id": "invalid_params", "message": f"bad value {value}"})
    with pytest.raises(AdapterError) as err:
        consumer.write_pair(pair)

    token = sandbox.token.reveal()
    texts = [
        *written.evidence,
        *verified.evidence,
        repr(written),
        repr(verified),
        str(err.value),
        repr(err.value),
        repr(consumer),
        repr(consumer.read_pair()),
        repr(sandbox.holdings()),
    ]
    for text in texts:
        assert value not in text and token not in text
    assert "invalid_params: bad value ****" in str(err.value)
    assert pair.key_id in written.summary  # the key id is shown, not masked
