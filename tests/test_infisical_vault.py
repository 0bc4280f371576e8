"""The Infisical vault adapter, through the real infisicalsdk client, against the fake server."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from steps.consumers.base import AdapterError, Pair
from steps.consumers.infisical import InfisicalAuth, InfisicalVault, VaultWriteIncomplete
from steps.sandbox.infisical import InfisicalSandbox
from steps.secrets import Secret, redact

PROJECT, ENV, PATH = "proj-raxx", "prod", "/aws"
KEY, SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
ENV_VARS = ("INFISICAL_TOKEN", "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")


def new_pair() -> Pair:
    return Pair("AKIA" + secrets.token_hex(8).upper(), Secret(secrets.token_urlsafe(30), SECRET))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sandbox() -> Iterator[InfisicalSandbox]:
    sb = InfisicalSandbox().start()
    yield sb
    sb.stop()


@pytest.fixture
def old_pair(sandbox: InfisicalSandbox) -> Pair:
    pair = new_pair()
    sandbox.seed(PROJECT, ENV, PATH, {KEY: pair.key_id, SECRET: pair.secret.reveal(), "OTHER": "unrelated"})
    return pair


@pytest.fixture
def identity(sandbox: InfisicalSandbox) -> tuple[str, Secret]:
    return sandbox.add_identity()


@pytest.fixture
def vault(sandbox: InfisicalSandbox, identity: tuple[str, Secret]) -> Iterator[InfisicalVault]:
    v = InfisicalVault(sandbox.url, PROJECT, ENV, PATH, auth=InfisicalAuth.universal(*identity), timeout=2)
    yield v
    v.close()


# -- authentication --------------------------------------------------------------------


def test_universal_auth_from_environment_logs_in_and_reads_the_pair(
    sandbox: InfisicalSandbox, old_pair: Pair, identity: tuple[str, Secret], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", identity[0])
    monkeypatch.setenv("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", identity[1].reveal())
    vault = InfisicalVault(sandbox.url, PROJECT, ENV, PATH)

    pair, versions = vault.read_pair()

    assert pair == old_pair
    assert versions == {KEY: 1, SECRET: 1}
    assert sandbox.calls["login"] == 1


def test_access_token_from_infisical_token_reads_without_login(
    sandbox: InfisicalSandbox, old_pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFISICAL_TOKEN", sandbox.issue_token().reveal())
    vault = InfisicalVault(sandbox.url, PROJECT, ENV, PATH)

    pair, _ = vault.read_pair()

    assert pair == old_pair
    assert sandbox.calls["login"] == 0


def test_auth_from_env_prefers_the_token_like_the_cli() -> None:
    auth = InfisicalAuth.from_env(
        {
            "INFISICAL_TOKEN": "tok-123456789",
            "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID": "cid",
            "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET": "csec-123456789",
        }
    )
    assert auth.method == "token" and auth.source == "INFISICAL_TOKEN"


def test_missing_credentials_raise_a_one_line_error_naming_the_variables(sandbox: InfisicalSandbox) -> None:
    vault = InfisicalVault(sandbox.url, PROJECT, ENV, PATH)
    with pytest.raises(AdapterError) as err:
        vault.read_pair()
    message = str(err.value)
    assert "INFISICAL_TOKEN" in message and "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID" in message
    assert "\n" not in message
    assert sandbox.calls.total() == 0


def test_half_of_universal_auth_names_the_missing_variable() -> None:
    with pytest.raises(AdapterError, match="INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET is not set"):
        InfisicalAuth.from_env({"INFISICAL_UNIVERSAL_AUTH_CLIENT_ID": "cid"})


def test_wrong_client_secret_fails_login_with_a_clear_message(
    sandbox: InfisicalSandbox, old_pair: Pair, identity: tuple[str, Secret]
) -> None:
    wrong = Secret("wrong-" + secrets.token_hex(16))
    vault = InfisicalVault(sandbox.url, PROJECT, ENV, PATH, auth=InfisicalAuth.universal(identity[0], wrong))
    with pytest.raises(AdapterError) as err:
        vault.read_pair()
    message = str(err.value)
    assert f"universal-auth login as client id {identity[0]} failed: HTTP 401" in message
    assert "Invalid credentials" in message and sandbox.url in message
    assert wrong.reveal() not in message and "\n" not in message


def test_rejected_token_says_where_the_token_came_from(sandbox: InfisicalSandbox, old_pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFISICAL_TOKEN", "st." + secrets.token_hex(24))
    with pytest.raises(AdapterError, match=r"HTTP 401 .*INFISICAL_TOKEN"):
        InfisicalVault(sandbox.url, PROJECT, ENV, PATH).read_pair()


def test_expired_access_token_is_renewed_by_logging_in_again(sandbox: InfisicalSandbox, old_pair: Pair, vault: InfisicalVault) -> None:
    vault.read_pair()
    sandbox.revoke_tokens()

    pair, _ = vault.read_pair()

    assert pair == old_pair
    assert sandbox.calls["login"] == 2


# -- reading and writing ---------------------------------------------------------------


def test_write_pair_updates_both_secrets_and_reads_back_the_fingerprint(
    sandbox: InfisicalSandbox, old_pair: Pair, vault: InfisicalVault
) -> None:
    pair = replace(new_pair(), role="new")

    versions, evidence = vault.write_pair(pair)

    assert versions == {KEY: 2, SECRET: 2}
    assert sandbox.calls["update_secret"] == 2 and sandbox.calls["create_secret"] == 0
    assert sandbox.holdings()[vault.name] == (pair.key_id, pair.secret)
    assert any(f"updated {KEY} v1 → v2 = {pair.key_id}" in line for line in evidence)
    assert any(f"updated {SECRET} v1 → v2 = {pair.fingerprint()}" in line for line in evidence)
    assert "matches the new pair" in evidence[-1] and pair.fingerprint() in evidence[-1]
    assert vault.read_pair() == (pair, {KEY: 2, SECRET: 2})
    _, evidence = vault.write_pair(replace(old_pair, role="old"))  # a rollback's write says so
    assert "matches the old pair" in evidence[-1]


def test_read_pair_at_old_versions_gives_back_the_previous_pair_from_a_fresh_client(
    sandbox: InfisicalSandbox, old_pair: Pair, vault: InfisicalVault, identity: tuple[str, Secret]
) -> None:
    _, before = vault.read_pair()
    vault.write_pair(new_pair())
    # Undo happens in a new process: a new adapter with nothing but the recorded versions.
    fresh = InfisicalVault(sandbox.url, PROJECT, ENV, PATH, auth=InfisicalAuth.universal(*identity))

    assert fresh.read_pair_at(before) == old_pair
    assert sandbox.calls["get_secret"] > 0


def test_reads_are_fresh_because_the_sdk_cache_is_off(sandbox: InfisicalSandbox, old_pair: Pair, vault: InfisicalVault) -> None:
    vault.read_pair()
    changed = new_pair()
    sandbox.seed(PROJECT, ENV, PATH, {KEY: changed.key_id, SECRET: changed.secret.reveal()})  # someone else writes

    assert vault.read_pair() == (changed, {KEY: 2, SECRET: 2})


def test_write_pair_creates_the_secrets_when_the_folder_has_none(sandbox: InfisicalSandbox, vault: InfisicalVault) -> None:
    sandbox.seed(PROJECT, ENV, PATH, {})
    assert vault.read_pair() == (None, {})
    pair = new_pair()

    versions, evidence = vault.write_pair(pair)

    assert versions == {KEY: 1, SECRET: 1}
    assert sandbox.calls["create_secret"] == 2 and sandbox.calls["update_secret"] == 0
    assert any(f"created {KEY} = {pair.key_id} (v1)" in line for line in evidence)
    assert vault.read_pair() == (pair, versions)


def test_write_pair_creates_only_the_missing_half(sandbox: InfisicalSandbox, vault: InfisicalVault) -> None:
    sandbox.seed(PROJECT, ENV, PATH, {KEY: "AKIA" + secrets.token_hex(8).upper()})
    assert vault.read_pair() == (None, {KEY: 1})

    versions, _ = vault.write_pair(new_pair())

    assert versions == {KEY: 2, SECRET: 1}
    assert sandbox.calls["update_secret"] == 1 and sandbox.calls["create_secret"] == 1


def test_injected_500_raises_naming_the_place_and_leaves_the_vault_unchanged(
    sandbox: InfisicalSandbox, old_pair: Pair, vault: InfisicalVault
) -> None:
    sandbox.fail("update_secret", status=500)
    before = sandbox.holdings()

    with pytest.raises(AdapterError) as err:
        vault.write_pair(new_pair())

    message = str(err.value)
    for part in (sandbox.url, f"project {PROJECT}", f"env {ENV}", f"path {PATH}", f"secret {KEY}", "HTTP 500"):
        assert part in message
    assert not isinstance(err.value, VaultWriteIncomplete)
    assert sandbox.holdings() == before
    assert sandbox.versions(PROJECT, ENV, PATH, KEY) == [1] and sandbox.versions(PROJECT, ENV, PATH, SECRET) == [1]


def test_failure_after_the_first_half_reports_a_mismatched_pair_and_a_retry_completes_it(
    sandbox: InfisicalSandbox, vault: InfisicalVault
) -> None:
    # The key id is created first, then the secret's update fails.
    sandbox.seed(PROJECT, ENV, PATH, {SECRET: secrets.token_urlsafe(30)})
    sandbox.fail("update_secret", status=500)
    pair = new_pair()

    with pytest.raises(VaultWriteIncomplete) as err:
        vault.write_pair(pair)
    assert err.value.written == {KEY: 1} and err.value.previous == {SECRET: 1}
    assert "mismatched pair" in str(err.value)

    versions, evidence = vault.write_pair(pair)
    assert versions == {KEY: 1, SECRET: 2}  # the half already written is not written again
    assert any("already holds" in line for line in evidence)


def test_unknown_project_is_an_adapter_error_with_infisicals_message(sandbox: InfisicalSandbox, identity: tuple[str, Secret]) -> None:
    vault = InfisicalVault(sandbox.url, "no-such-project", ENV, PATH, auth=InfisicalAuth.universal(*identity))
    with pytest.raises(AdapterError, match=r"HTTP 404 NotFound: Project with ID 'no-such-project' not found"):
        vault.read_pair()


def test_outage_and_unreachable_server_fail_fast_without_sdk_retries(
    sandbox: InfisicalSandbox, old_pair: Pair, vault: InfisicalVault
) -> None:
    sandbox.down = True
    with pytest.raises(AdapterError, match="HTTP 503"):
        vault.read_pair()
    sandbox.down = False
    vault.read_pair()
    sandbox.stop()

    started = time.monotonic()
    with pytest.raises(AdapterError, match="cannot reach the server: connection refused"):
        vault.read_pair()
    assert time.monotonic() - started < 1  # the SDK alone would back off for ~15 s


# -- display and secrecy ---------------------------------------------------------------


def test_name_command_and_holdings_use_the_same_place_name(sandbox: InfisicalSandbox, old_pair: Pair, vault: InfisicalVault) -> None:
    assert vault.name == "infisical:proj-raxx/prod/aws"
    assert vault.name in sandbox.holdings()
    command = vault.command("AKIAEXAMPLE")
    assert command.startswith("infisical secrets set AWS_ACCESS_KEY_ID=AKIAEXAMPLE AWS_SECRET_ACCESS_KEY=****")
    assert "--projectId=proj-raxx --env=prod --path=/aws" in command
    default_site = InfisicalVault("https://app.infisical.com/api", "p", "dev", "/", auth=InfisicalAuth.from_token("t-123456789"))
    assert default_site.command("AKIAX").endswith("--projectId=p --env=dev --path=/")


def test_secret_value_never_appears_in_evidence_errors_or_reprs(sandbox: InfisicalSandbox, old_pair: Pair, vault: InfisicalVault) -> None:
    pair = new_pair()
    value = pair.secret.reveal()
    versions, evidence = vault.write_pair(pair)
    read, read_versions = vault.read_pair()
    # A server whose error echoes the request must not get the value into the message.
    sandbox.fail("update_secret", status=400, body={"statusCode": 400, "error": "BadRequest", "message": f"bad value {value}"})
    with pytest.raises(AdapterError) as err:
        vault.write_pair(Pair(pair.key_id, Secret(value + "x")))

    texts = [
        *evidence,
        str(err.value),
        repr(err.value),
        repr(vault),
        repr(read),
        repr(versions),
        repr(read_versions),
        repr(sandbox.holdings()),
    ]
    for text in texts:
        assert value not in text
    assert "****" in str(err.value)
    # The key id is no secret: it stays readable in the evidence.
    assert redact(pair.key_id) == pair.key_id
