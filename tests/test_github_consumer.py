"""The GitHub Actions consumer adapter, with real PyGithub against the fake GitHub API.

Everything goes over HTTP on loopback; the sandbox opens every sealed value with its
own NaCl private key, so a passing test means the value really was sealed with the
right public key.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from github import Auth, Github
from nacl.public import PrivateKey, PublicKey, SealedBox

from steps.consumers.base import AdapterError, Pair
from steps.consumers.github import (
    EnvironmentTarget,
    GitHubSecretsConsumer,
    OrgTarget,
    RepoTarget,
    parse_target,
)
from steps.sandbox.github import GitHubSandbox, SandboxWorkflow
from steps.secrets import Secret

OLD = Pair("AKIAOLDOLDOLDOLD0001", Secret("old/Secret+Value/aaaaaaaaaaaaaaaaaaaaaaaa", "aws secret"))
NEW = Pair("AKIANEWNEWNEWNEW0002", Secret("new/Secret+Value/bbbbbbbbbbbbbbbbbbbbbbbb", "aws secret"))
AWS_OLD = {"AWS_ACCESS_KEY_ID": OLD.key_id, "AWS_SECRET_ACCESS_KEY": OLD.secret}


class FakeProbe:
    """Stands in for the simulated AWS: accepts only the pairs it is told are live."""

    def __init__(self, *live: Pair) -> None:
        self.live = {p.key_id: p.secret for p in live}
        self.seen: list[str] = []

    def __call__(self, key_id: str, secret: Secret) -> tuple[bool, str]:
        self.seen.append(key_id)
        if self.live.get(key_id) == secret:
            return True, f"sts:GetCallerIdentity ok for {key_id}"
        return False, f"InvalidClientTokenId: {key_id} is not valid"


@pytest.fixture
def probe() -> FakeProbe:
    return FakeProbe(NEW)


@pytest.fixture
def sandbox(probe: FakeProbe) -> Iterator[GitHubSandbox]:
    sb = GitHubSandbox(aws_probe=probe, run_delay=0.05)
    sb.seed_repo(
        "acme/infra",
        secrets=AWS_OLD,
        environments={"prod": AWS_OLD},
        workflows=["aws-smoke.yml", SandboxWorkflow("aws-smoke-prod.yml", environment="prod")],
    )
    sb.seed_repo("acme/web", private=False)
    sb.seed_org("acme", secrets=AWS_OLD, visibility="private")
    with sb:
        yield sb


@pytest.fixture(autouse=True)
def no_ambient_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own GH_TOKEN must never reach the sandbox (or GitHub) from a test.
    monkeypatch.delenv("GH_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)


def consumer(sb: GitHubSandbox, target: str | RepoTarget | EnvironmentTarget | OrgTarget = "acme/infra", **kw) -> GitHubSecretsConsumer:
    kw.setdefault("token", sb.token)
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("run_timeout", 10)
    return GitHubSecretsConsumer(target, base_url=sb.url, **kw)


# -- writing: sealed with the right key, opened by the server ------------------------


def test_repository_secret_is_sealed_with_repo_key_and_decrypts_on_server(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox)
    result = c.write_pair(NEW)

    assert result.ok, result.summary
    assert sandbox.holdings()["github:acme/infra"] == (NEW.key_id, NEW.secret)
    # Only the repository's secrets moved: the environment and the org keep the old pair.
    assert sandbox.holdings()["github:acme/infra@prod"] == (OLD.key_id, OLD.secret)
    assert sandbox.holdings()["github-org:acme"] == (OLD.key_id, OLD.secret)
    assert NEW.key_id in result.summary and NEW.fingerprint() in result.summary
    assert any("updated_at" in line for line in result.evidence)
    assert {k: v for k, v in sandbox.calls.items() if v} == {
        "repo_public_key": 2,
        "put_repo_secret": 2,
        "get_repo_secret": 2,
    }


def test_environment_secret_is_sealed_with_environment_key_and_decrypts_on_server(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox, EnvironmentTarget("acme/infra", "prod"))
    assert c.name == "github:acme/infra@prod"

    result = c.write_pair(NEW)

    assert result.ok, result.summary
    assert sandbox.holdings()["github:acme/infra@prod"] == (NEW.key_id, NEW.secret)
    assert sandbox.holdings()["github:acme/infra"] == (OLD.key_id, OLD.secret)
    assert sandbox.calls["env_public_key"] == 2 and sandbox.calls["put_env_secret"] == 2
    assert sandbox.calls["repo_public_key"] == 0


def test_organisation_secret_is_written_with_its_visibility_and_selected_repositories(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox, OrgTarget("acme", visibility="selected", selected_repositories=("infra",)))
    assert c.name == "github-org:acme"

    result = c.write_pair(NEW)

    assert result.ok, result.summary
    assert sandbox.holdings()["github-org:acme"] == (NEW.key_id, NEW.secret)
    info = sandbox.secret_info("github-org:acme", "AWS_SECRET_ACCESS_KEY")
    assert info is not None
    assert info["visibility"] == "selected" and info["selected_repositories"] == ["acme/infra"]
    assert any("visibility selected" in line for line in result.evidence)
    # One extra GET to learn the selected repository's id.
    assert {k: v for k, v in sandbox.calls.items() if v} == {
        "get_repo": 1,
        "org_public_key": 2,
        "put_org_secret": 2,
        "get_org_secret": 2,
    }


def test_server_rejects_a_value_not_sealed_with_its_public_key(sandbox: GitHubSandbox) -> None:
    url = f"{sandbox.url}/repos/acme/infra/actions/secrets/AWS_SECRET_ACCESS_KEY"
    headers = {"Authorization": f"token {sandbox.token.reveal()}"}
    key = requests.get(f"{sandbox.url}/repos/acme/infra/actions/secrets/public-key", headers=headers, timeout=5).json()

    stranger = SealedBox(PrivateKey.generate().public_key).encrypt(b"sealed-for-someone-else")
    wrong = requests.put(
        url, headers=headers, timeout=5, json={"key_id": key["key_id"], "encrypted_value": base64.b64encode(stranger).decode()}
    )
    plain = requests.put(
        url, headers=headers, timeout=5, json={"key_id": key["key_id"], "encrypted_value": base64.b64encode(b"not sealed at all").decode()}
    )
    right_box = SealedBox(PublicKey(base64.b64decode(key["key"])))
    stale_key = requests.put(
        url, headers=headers, timeout=5, json={"key_id": "1", "encrypted_value": base64.b64encode(right_box.encrypt(b"x" * 12)).decode()}
    )

    assert (wrong.status_code, plain.status_code, stale_key.status_code) == (422, 422, 422)
    assert "decrypted" in wrong.json()["message"]
    assert sandbox.holdings()["github:acme/infra"] == (OLD.key_id, OLD.secret)

    # The same request sealed with the served key is accepted (204: it replaced a secret).
    good = requests.put(
        url,
        headers=headers,
        timeout=5,
        json={"key_id": key["key_id"], "encrypted_value": base64.b64encode(right_box.encrypt(b"sealed-properly-123")).decode()},
    )
    assert good.status_code == 204
    assert sandbox.holdings()["github:acme/infra"][1] == Secret("sealed-properly-123")


def test_server_requires_a_token_it_issued(sandbox: GitHubSandbox) -> None:
    url = f"{sandbox.url}/repos/acme/infra"
    assert requests.get(url, timeout=5).status_code == 401
    bad = requests.get(url, headers={"Authorization": "token ghp_madeup"}, timeout=5)
    assert (bad.status_code, bad.json()["message"]) == (401, "Bad credentials")
    good = requests.get(url, headers={"Authorization": f"Bearer {sandbox.token.reveal()}"}, timeout=5)
    assert good.status_code == 200 and good.json()["full_name"] == "acme/infra"


def test_server_serves_objects_pygithub_reads_eagerly(sandbox: GitHubSandbox) -> None:
    # A non-lazy client fetches every object it is handed: the shapes must parse.
    gh = Github(
        base_url=sandbox.url,
        auth=Auth.Token(sandbox.token.reveal()),
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    repo = gh.get_repo("acme/infra")
    assert repo.full_name == "acme/infra" and repo.private
    env = repo.get_environment("prod")
    assert env.name == "prod" and env.get_secret("AWS_ACCESS_KEY_ID").name == "AWS_ACCESS_KEY_ID"
    assert gh.get_organization("acme").get_secret("AWS_ACCESS_KEY_ID").visibility == "private"
    assert repo.get_workflow("aws-smoke.yml").path == ".github/workflows/aws-smoke.yml"
    gh.close()


# -- verifying by updated_at ----------------------------------------------------------


def test_verify_passes_when_both_secrets_were_updated_by_the_write(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox)
    c.write_pair(NEW)
    before = sum(sandbox.calls.values())

    result = c.verify(NEW)

    assert result.ok, result.summary
    assert "not exercised" in result.summary  # no workflow configured
    assert sum(sandbox.calls.values()) - before == 2
    assert sum("at or after" in line for line in result.evidence) == 2


def test_verify_fails_when_the_secrets_were_not_rewritten(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox)
    sandbox.fail("put_repo_secret", times=1)
    with pytest.raises(AdapterError):
        c.write_pair(NEW)

    result = c.verify(NEW)

    assert not result.ok
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not rewritten" in result.summary
    assert sum("BEFORE" in line for line in result.evidence) == 2


def test_verify_fails_when_only_the_first_half_was_written(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox)
    # The second public-key fetch fails: the key id is written, the secret is not.
    sandbox.calls.clear()
    original = c._writer

    def writer_failing_second():
        write = original()
        count = {"n": 0}

        def wrapped(name: str, value: str):
            count["n"] += 1
            if count["n"] == 2:
                sandbox.fail("repo_public_key", times=1)
            return write(name, value)

        return wrapped

    c._writer = writer_failing_second  # type: ignore[method-assign]
    with pytest.raises(AdapterError, match="writing AWS_SECRET_ACCESS_KEY failed: HTTP 500"):
        c.write_pair(NEW)
    assert sandbox.holdings()["github:acme/infra"] == (NEW.key_id, OLD.secret)

    result = c.verify(NEW)
    assert not result.ok and "AWS_SECRET_ACCESS_KEY not rewritten" in result.summary
    assert "AWS_ACCESS_KEY_ID and" not in result.summary


def test_verify_without_a_recorded_write_fails_and_a_restored_write_time_passes(sandbox: GitHubSandbox) -> None:
    consumer(sandbox).write_pair(NEW)

    fresh = consumer(sandbox)  # a new process: the write is not known
    assert not fresh.verify(NEW).ok

    restored = consumer(sandbox, written_at=datetime.now(UTC) - timedelta(minutes=1), written_key_id=NEW.key_id)
    assert restored.verify(NEW).ok
    restored_too_late = consumer(sandbox, written_at=datetime.now(UTC) + timedelta(minutes=5))
    assert not restored_too_late.verify(NEW).ok


def test_verify_reports_secrets_that_do_not_exist(sandbox: GitHubSandbox) -> None:
    # Written under other names (say a typo in the wiring): the expected ones are missing.
    c = consumer(sandbox, "acme/web", written_at=datetime.now(UTC))
    result = c.verify(NEW)
    assert not result.ok
    assert result.summary == "github:acme/web: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY missing"


def test_sandbox_and_adapter_share_a_simulated_clock(probe: FakeProbe) -> None:
    offset = {"s": 0.0}

    def now() -> datetime:  # a training clock: real time plus fast-forwards
        return datetime.now(UTC) + timedelta(seconds=offset["s"])

    with GitHubSandbox(aws_probe=probe, now=now) as sb:
        sb.seed_repo("acme/infra", secrets=AWS_OLD)
        offset["s"] = 3 * 86400  # three simulated days pass before the rotation
        c = consumer(sb, now=now)
        assert c.write_pair(NEW).ok
        info = sb.secret_info("github:acme/infra", "AWS_ACCESS_KEY_ID")
        assert info is not None and info["updated_at"] > (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert c.verify(NEW).ok


def test_verify_refuses_a_pair_other_than_the_one_written(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox)
    c.write_pair(NEW)
    result = c.verify(OLD)
    assert not result.ok and NEW.key_id in result.summary
    same_id_other_secret = Pair(NEW.key_id, OLD.secret)
    result = c.verify(same_id_other_secret)
    assert not result.ok and NEW.fingerprint() in result.summary


# -- verifying by a workflow run ------------------------------------------------------


def test_workflow_verification_passes_when_the_run_can_use_the_new_key(sandbox: GitHubSandbox, probe: FakeProbe) -> None:
    c = consumer(sandbox, verify_workflow="aws-smoke.yml")
    c.write_pair(NEW)

    result = c.verify(NEW)

    assert result.ok, result.summary
    run = sandbox.runs("acme/infra")[0]
    assert f"run {run['id']} concluded success" in result.summary
    assert f"/acme/infra/actions/runs/{run['id']}" in result.summary
    assert probe.seen == [NEW.key_id]


def test_workflow_verification_fails_when_the_probe_rejects_the_key(sandbox: GitHubSandbox, probe: FakeProbe) -> None:
    probe.live.clear()  # AWS no longer accepts the key
    c = consumer(sandbox, verify_workflow="aws-smoke.yml")
    c.write_pair(NEW)

    result = c.verify(NEW)

    assert not result.ok
    assert "concluded failure" in result.summary
    assert "InvalidClientTokenId" in sandbox.runs("acme/infra")[0]["message"]


def test_environment_workflow_uses_environment_secrets_over_repository_ones(sandbox: GitHubSandbox, probe: FakeProbe) -> None:
    c = consumer(sandbox, EnvironmentTarget("acme/infra", "prod"), verify_workflow="aws-smoke-prod.yml")
    c.write_pair(NEW)  # the repository's own secrets still hold the old pair

    assert c.verify(NEW).ok
    assert probe.seen == [NEW.key_id]


def test_org_secret_reaches_a_repository_workflow_only_where_visible(probe: FakeProbe) -> None:
    with GitHubSandbox(aws_probe=probe, run_delay=0) as sb:
        sb.seed_repo("acme/infra", workflows=["aws-smoke.yml"])  # private, no own secrets
        sb.seed_repo("acme/web", workflows=["aws-smoke.yml"], private=False)
        sb.seed_org("acme", secrets=AWS_OLD)
        c = consumer(sb, OrgTarget("acme", visibility="private"), verify_workflow="acme/infra:aws-smoke.yml")
        c.write_pair(NEW)
        assert c.verify(NEW).ok

        public = consumer(sb, OrgTarget("acme", visibility="private"), verify_workflow="acme/web:aws-smoke.yml")
        public.write_pair(NEW)
        result = public.verify(NEW)
        assert not result.ok and "concluded failure" in result.summary
        assert "not set" in sb.runs("acme/web")[0]["message"]


def test_workflow_run_is_found_by_listing_when_dispatch_returns_no_details(probe: FakeProbe) -> None:
    with GitHubSandbox(aws_probe=probe, run_delay=0.05, dispatch_run_details=False) as sb:
        sb.seed_repo("acme/infra", secrets=AWS_OLD, workflows=["aws-smoke.yml"])
        c = consumer(sb, verify_workflow="aws-smoke.yml")
        c.write_pair(NEW)

        result = c.verify(NEW)

        assert result.ok, result.summary
        assert sb.calls["list_runs"] >= 1 and sb.calls["dispatch"] == 1


def test_workflow_verification_gives_up_at_its_deadline(probe: FakeProbe) -> None:
    with GitHubSandbox(aws_probe=probe, run_delay=30) as sb:
        sb.seed_repo("acme/infra", secrets=AWS_OLD, workflows=["aws-smoke.yml"])
        c = consumer(sb, verify_workflow="aws-smoke.yml", run_timeout=0.3)
        c.write_pair(NEW)
        started = time.monotonic()

        result = c.verify(NEW)

        assert not result.ok and "still queued" in result.summary
        assert time.monotonic() - started < 3


def test_workflow_dispatch_on_an_unknown_ref_is_an_adapter_error(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox, verify_workflow="aws-smoke.yml", verify_ref="no-such-branch")
    c.write_pair(NEW)
    with pytest.raises(AdapterError, match="HTTP 422 No ref found for: no-such-branch"):
        c.verify(NEW)


# -- failures -------------------------------------------------------------------------


def test_bad_token_is_an_adapter_error_naming_target_and_status(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox, token="ghp_notissuedbythesandbox000000000000")
    with pytest.raises(AdapterError) as err:
        c.write_pair(NEW)
    message = str(err.value)
    assert "github:acme/infra" in message and "HTTP 401 Bad credentials" in message
    assert "\n" not in message
    assert sandbox.holdings()["github:acme/infra"] == (OLD.key_id, OLD.secret)


def test_revoked_token_is_an_adapter_error(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox)
    sandbox.revoke_tokens()
    with pytest.raises(AdapterError, match="HTTP 401"):
        c.write_pair(NEW)


def test_unknown_repository_is_an_adapter_error(sandbox: GitHubSandbox) -> None:
    with pytest.raises(AdapterError, match="github:acme/nope: writing AWS_ACCESS_KEY_ID failed: HTTP 404 Not Found"):
        consumer(sandbox, "acme/nope").write_pair(NEW)


@pytest.mark.parametrize("route", ["repo_public_key", "put_repo_secret", "get_repo_secret"])
def test_server_error_fails_fast_without_retries(sandbox: GitHubSandbox, route: str) -> None:
    c = consumer(sandbox)
    before = sandbox.holdings()
    sandbox.fail(route, times=5)
    started = time.monotonic()

    with pytest.raises(AdapterError) as err:
        c.write_pair(NEW)

    assert time.monotonic() - started < 2
    assert "HTTP 500" in str(err.value) and "github:acme/infra" in str(err.value)
    assert sandbox.calls[route] == 1  # no retry
    if route != "get_repo_secret":  # a read-back failure comes after the writes
        assert sandbox.holdings() == before


def test_unreachable_server_is_an_adapter_error(sandbox: GitHubSandbox) -> None:
    c = consumer(sandbox)
    sandbox.stop()
    started = time.monotonic()
    with pytest.raises(AdapterError, match="cannot reach"):
        c.write_pair(NEW)
    assert time.monotonic() - started < 5


def test_missing_token_is_a_clear_adapter_error(sandbox: GitHubSandbox) -> None:
    c = GitHubSecretsConsumer("acme/infra", base_url=sandbox.url)
    assert c.token_source is None
    with pytest.raises(AdapterError, match="no GitHub token: set GH_TOKEN or GITHUB_TOKEN") as err:
        c.write_pair(NEW)
    assert "\n" not in str(err.value)
    assert sum(sandbox.calls.values()) == 0
    # Display needs no token.
    assert c.command(NEW.key_id).startswith("gh secret set")


@pytest.mark.parametrize("var", ["GITHUB_TOKEN", "GH_TOKEN"])
def test_token_is_taken_from_the_environment(sandbox: GitHubSandbox, monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, sandbox.token.reveal())
    c = GitHubSecretsConsumer("acme/infra", base_url=sandbox.url)
    assert c.token_source == var
    assert c.write_pair(NEW).ok


def test_gh_token_takes_precedence_over_github_token_as_in_gh(sandbox: GitHubSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_ambientactionstoken000000000000000")
    monkeypatch.setenv("GH_TOKEN", sandbox.token.reveal())
    c = GitHubSecretsConsumer("acme/infra", base_url=sandbox.url)
    assert c.token_source == "GH_TOKEN" and c.write_pair(NEW).ok
    # An explicit token beats both.
    monkeypatch.setenv("GH_TOKEN", "")
    assert GitHubSecretsConsumer("acme/infra", base_url=sandbox.url).token_source == "GITHUB_TOKEN"
    assert GitHubSecretsConsumer("acme/infra", token="x" * 20, base_url=sandbox.url).token_source == "explicit token"


def test_secret_value_and_token_never_appear_in_evidence_errors_or_reprs(sandbox: GitHubSandbox, probe: FakeProbe) -> None:
    secret, token = NEW.secret.reveal(), sandbox.token.reveal()
    texts: list[str] = []
    c = consumer(sandbox, verify_workflow="aws-smoke.yml")
    texts += [repr(c), str(c), c.command(NEW.key_id), repr(NEW)]
    for result in (c.write_pair(NEW), c.verify(NEW)):
        texts += [result.summary, *result.evidence, repr(result)]
    probe.live.clear()
    failed = c.verify(NEW)
    texts += [failed.summary, *failed.evidence, *(r["message"] for r in sandbox.runs("acme/infra"))]
    for route in ("put_repo_secret", "dispatch"):
        sandbox.fail(route, times=1, status=500, body={"message": f"boom {secret} {token}"})
        with pytest.raises(AdapterError) as err:
            c.write_pair(NEW) if route.startswith("put") else c.verify(NEW)
        texts.append(str(err.value))
    texts += [repr(sandbox.holdings()), repr(sandbox._repos)]

    assert NEW.key_id in texts[2]  # the key id is shown on purpose
    for text in texts:
        assert secret not in text and token not in text, text


# -- targets and display --------------------------------------------------------------


def test_command_shows_gh_equivalents_with_the_secret_masked(sandbox: GitHubSandbox) -> None:
    repo = consumer(sandbox).command("AKIAEXAMPLE")
    assert repo == (
        "gh secret set AWS_ACCESS_KEY_ID --body AKIAEXAMPLE --repo acme/infra && "
        "gh secret set AWS_SECRET_ACCESS_KEY --body **** --repo acme/infra"
    )
    env = consumer(sandbox, "acme/infra@prod").command("AKIAEXAMPLE")
    assert "--env prod --repo acme/infra" in env
    org = consumer(sandbox, OrgTarget("acme", "selected", ("infra", "web"))).command("AKIAEXAMPLE")
    assert "--org acme --visibility selected --repos infra,web" in org
    ghes = GitHubSecretsConsumer("acme/infra", token="t" * 10, base_url="https://github.example.com/api/v3")
    assert ghes.command("AKIAEXAMPLE").startswith("GH_HOST=github.example.com gh secret set")
    assert consumer(sandbox).read_key_id() is None


def test_targets_parse_from_text_and_round_trip_through_names() -> None:
    assert parse_target("acme/infra") == RepoTarget("acme/infra")
    assert parse_target("acme/infra@prod") == EnvironmentTarget("acme/infra", "prod")
    assert parse_target("org:acme", visibility="all") == OrgTarget("acme", "all")
    for target in (RepoTarget("a/b"), EnvironmentTarget("a/b", "prod"), OrgTarget("acme")):
        assert parse_target(target.name) == target
    with pytest.raises(ValueError):
        RepoTarget("no-slash")
    with pytest.raises(ValueError):
        OrgTarget("acme", visibility="selected")
    with pytest.raises(ValueError):
        GitHubSecretsConsumer(OrgTarget("acme"), token="t" * 10, verify_workflow="aws-smoke.yml")
