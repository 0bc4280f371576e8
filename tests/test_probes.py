"""Each adapter's read-only `probe()` against its sandbox server (real clients: the
infisicalsdk, requests, PyGithub, paramiko): what it checks, the one line a broken
place gives, and proof from the servers' own call counters and state that it wrote
nothing and read no secret value into what it reports."""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.consumers.base import Pair, ProbeResult
from steps.consumers.github import GitHubSecretsConsumer
from steps.consumers.heroku import HerokuConsumer
from steps.consumers.infisical import InfisicalAuth, InfisicalVault
from steps.consumers.ssh import SshHostConsumer
from steps.sandbox.github import GitHubSandbox, SandboxWorkflow
from steps.sandbox.heroku import HerokuSandbox
from steps.sandbox.infisical import InfisicalSandbox
from steps.sandbox.ssh import SshSandbox
from steps.secrets import Secret

try:  # tests/ is on sys.path while it has no __init__.py
    from sshd import real_sshd  # a fixture
except ImportError:  # pragma: no cover
    from tests.sshd import real_sshd

KEY, SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
CREDENTIAL_VARS = (
    "INFISICAL_TOKEN",
    "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID",
    "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET",
    "HEROKU_API_KEY",
    "GH_TOKEN",
    "GITHUB_TOKEN",
)


def new_pair() -> Pair:
    return Pair("AKIA" + secrets.token_hex(8).upper(), Secret(secrets.token_urlsafe(30), SECRET))


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no ~/.ssh


def text_of(result: ProbeResult) -> str:
    return "\n".join([result.summary(), *result.lines()])


def failed_check(result: ProbeResult) -> tuple[str, str]:
    (bad,) = [c for c in result.checks if not c.ok]
    return bad.what, bad.line


# -- Infisical ------------------------------------------------------------------------------------

PROJECT, ENV, PATH = "raxx-prod", "prod", "/aws/raxx-vault-operator"


@pytest.fixture
def infisical() -> Iterator[InfisicalSandbox]:
    sb = InfisicalSandbox().start()
    yield sb
    sb.stop()


def vault(sb: InfisicalSandbox, auth: InfisicalAuth | None = None) -> InfisicalVault:
    return InfisicalVault(sb.url, PROJECT, ENV, PATH, auth=auth or InfisicalAuth.universal(*sb.add_identity()), timeout=2)


def test_infisical_probe_logs_in_and_lists_names_without_reading_a_value(infisical):
    pair = new_pair()
    infisical.seed(PROJECT, ENV, PATH, {KEY: pair.key_id, SECRET: pair.secret.reveal()})
    v = vault(infisical)

    result = v.probe()

    assert result.ok, text_of(result)
    assert [c.what for c in result.checks] == ["login", "secrets"]
    assert f"{KEY} (v1) and {SECRET} (v1) exist at project {PROJECT} env {ENV} path {PATH}" in result.checks[1].line
    # One login and one listing that asks for no values: no secret was read, nothing written.
    assert dict(infisical.calls) == {"login": 1, "list_secrets": 1}
    assert infisical.versions(PROJECT, ENV, PATH, KEY) == [1] and infisical.versions(PROJECT, ENV, PATH, SECRET) == [1]
    assert pair.secret.reveal() not in text_of(result)
    v.close()


def test_infisical_probe_names_a_missing_secret(infisical):
    infisical.seed(PROJECT, ENV, PATH, {KEY: new_pair().key_id})

    result = vault(infisical).probe()

    assert not result.ok
    assert failed_check(result) == ("secrets", f"{SECRET} not found at project {PROJECT} env {ENV} path {PATH}")
    assert result.summary().startswith(f"infisical:{PROJECT}/{ENV}{PATH}: NOT READY: {SECRET} not found")


def test_infisical_probe_reports_a_rejected_login_in_one_line(infisical):
    client_id, _ = infisical.add_identity()

    result = vault(infisical, InfisicalAuth.universal(client_id, "not-the-secret-0123456789")).probe()

    what, line = failed_check(result)
    assert what == "login" and "login as client id" in line and "HTTP 401" in line and "\n" not in line
    assert [c.what for c in result.checks] == ["login"]  # nothing after a failed login
    assert "list_secrets" not in infisical.calls


def test_infisical_probe_without_credentials_says_what_to_set(infisical):
    result = InfisicalVault(infisical.url, PROJECT, ENV, PATH).probe()

    what, line = failed_check(result)
    assert what == "login" and "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID" in line
    assert sum(infisical.calls.values()) == 0


# -- Heroku ---------------------------------------------------------------------------------------

APP = "raxx-api-prod"


@pytest.fixture
def heroku() -> Iterator[HerokuSandbox]:
    sb = HerokuSandbox().start()
    yield sb
    sb.stop()


def heroku_consumer(sb: HerokuSandbox, **kw) -> HerokuConsumer:
    kw.setdefault("token", sb.token)
    return HerokuConsumer(APP, api_url=sb.url, verify_url=sb.health_url(APP), timeout=2, **kw)


def test_heroku_probe_reads_the_app_and_config_var_names_and_changes_nothing(heroku):
    pair = new_pair()
    heroku.seed_app(APP, {KEY: pair.key_id, SECRET: pair.secret.reveal(), "DATABASE_URL": "postgres://u:pw-0123456@db/app"})
    releases, restarts = heroku.releases(APP), heroku.restarts(APP)

    result = heroku_consumer(heroku).probe()

    assert result.ok, text_of(result)
    assert [c.what for c in result.checks] == ["token and app", "config vars"]
    assert result.checks[1].line == f"{KEY} ({pair.key_id}) and {SECRET} are set on {APP}"
    # GETs only: no PATCH, no restart, and the app's own health URL is not called.
    assert dict(heroku.calls) == {"get_app": 1, "get_config": 1}
    assert heroku.releases(APP) == releases and heroku.restarts(APP) == restarts
    text = text_of(result)
    assert pair.secret.reveal() not in text and "pw-0123456" not in text and "DATABASE_URL" not in text


def test_heroku_probe_with_a_wrong_token_says_so_in_one_line(heroku):
    heroku.seed_app(APP, {KEY: "AKIAEXAMPLE", SECRET: "s3cr3t-value-0123456789"})

    result = heroku_consumer(heroku, token="HRKU-not-a-real-token").probe()

    what, line = failed_check(result)
    assert what == "token and app" and "HTTP 401" in line and "(token from given)" in line
    assert result.summary().startswith(f"heroku:{APP}: NOT READY:") and "\n" not in result.summary()


def test_heroku_probe_names_a_missing_app_and_a_missing_config_var(heroku):
    no_app = heroku_consumer(heroku).probe()
    assert failed_check(no_app)[0] == "token and app" and "HTTP 404" in failed_check(no_app)[1]

    heroku.seed_app(APP, {KEY: "AKIAEXAMPLE"})
    no_secret = heroku_consumer(heroku).probe()
    assert failed_check(no_secret) == ("config vars", f"{SECRET} not set on {APP}")


# -- GitHub ---------------------------------------------------------------------------------------

OLD = {KEY: "AKIAOLDOLDOLDOLD0001", SECRET: Secret("old/Secret+Value/aaaaaaaaaaaaaaaaaaaaaaaa", "aws secret")}


@pytest.fixture
def github() -> Iterator[GitHubSandbox]:
    sb = GitHubSandbox()
    sb.seed_repo("acme/infra", secrets=OLD, environments={"prod": OLD}, workflows=["aws-smoke.yml"])
    sb.seed_repo("acme/bare", workflows=[SandboxWorkflow("aws-smoke.yml")])
    sb.seed_org("acme", secrets=OLD, visibility="private")
    with sb:
        yield sb


def github_consumer(sb: GitHubSandbox, target: str = "acme/infra", **kw) -> GitHubSecretsConsumer:
    kw.setdefault("token", sb.token)
    return GitHubSecretsConsumer(target, base_url=sb.url, **kw)


def writes(sb: GitHubSandbox) -> dict[str, int]:
    return {k: n for k, n in sb.calls.items() if k.startswith("put_") or k == "dispatch"}


@pytest.mark.parametrize(
    "target, scope, key_route",
    [
        ("acme/infra", "repository acme/infra", "repo_public_key"),
        ("acme/infra@prod", "environment prod of acme/infra", "env_public_key"),
        ("org:acme", "organisation acme", "org_public_key"),
    ],
)
def test_github_probe_reads_the_public_key_and_secret_metadata_only(github, target, scope, key_route):
    workflow = "aws-smoke.yml" if "org" not in target else "acme/infra:aws-smoke.yml"

    result = github_consumer(github, target, verify_workflow=workflow).probe()

    assert result.ok, text_of(result)
    assert [c.what for c in result.checks] == ["public key", "secrets", "verify workflow"]
    assert f"reads the {scope} public key" in result.checks[0].line
    assert f"exist in {scope} (metadata only)" in result.checks[1].line
    assert "workflow acme/infra:aws-smoke.yml exists (active)" in result.checks[2].line
    assert github.calls[key_route] == 1 and writes(github) == {}
    assert OLD[SECRET].reveal() not in text_of(result)


def test_github_probe_names_missing_secrets_and_a_rejected_token(github):
    missing = github_consumer(github, "acme/bare").probe()
    assert failed_check(missing) == ("secrets", f"{KEY} and {SECRET} not found in repository acme/bare")

    github.revoke_tokens()
    rejected = github_consumer(github).probe()
    what, line = failed_check(rejected)
    assert what == "public key" and "HTTP 401" in line and "token was rejected" in line
    assert writes(github) == {}


def test_github_probe_names_a_missing_repository_and_workflow(github):
    no_repo = github_consumer(github, "acme/nosuch").probe()
    assert failed_check(no_repo)[0] == "public key" and "HTTP 404" in failed_check(no_repo)[1]

    no_workflow = github_consumer(github, verify_workflow="nosuch.yml").probe()
    what, line = failed_check(no_workflow)
    assert what == "verify workflow" and "acme/infra:nosuch.yml" in line and "HTTP 404" in line


# -- SSH ------------------------------------------------------------------------------------------

ENV_FILE = "/etc/raxx/credentials.env"
ORIGINAL = "# raxx\nVAULT_ADDR=https://vault.internal:8200\nexport AWS_ACCESS_KEY_ID=AKIAOLDOLDOLDOLD0001\nAWS_SECRET_ACCESS_KEY='oldSecret/Value+0123456789abcdefghij'\n"


@pytest.fixture
def host() -> Iterator[SshSandbox]:
    with SshSandbox() as sandbox:
        sandbox.seed_file(ENV_FILE, ORIGINAL, mode=0o640, uid=0, gid=1001)
        sandbox.add_service("raxx-vault", ENV_FILE, "raxx-vault healthcheck")
        yield sandbox


@pytest.fixture
def known_hosts(host: SshSandbox, tmp_path: Path) -> Path:
    path = tmp_path / "known_hosts"
    host.write_known_hosts(path)
    return path


def ssh_consumer(host: SshSandbox, known_hosts: Path, tmp_path: Path, **kw) -> SshHostConsumer:
    config = tmp_path / "ssh_config"
    config.write_text("")
    args: dict = dict(
        label="vault-host",
        host=host.host,
        port=host.port,
        user=host.user,
        pkey=host.client_key,
        use_agent=False,
        known_hosts=known_hosts,
        ssh_config=config,
        restart_command="sudo systemctl restart raxx-vault",
        verify_command="raxx-vault healthcheck",
        timeout=5.0,
    )
    args.update(kw)
    return SshHostConsumer(**args)


def test_ssh_probe_checks_host_key_env_file_and_commands_and_writes_nothing(host, known_hosts, tmp_path):
    restarts = host.services["raxx-vault"].restarts
    seeded = len(host.fs.events)

    result = ssh_consumer(host, known_hosts, tmp_path).probe()

    assert result.ok, text_of(result)
    assert [c.what for c in result.checks] == ["host key and login", "env file", "restart command", "verify command"]
    assert host.host_key.fingerprint in result.checks[0].line
    assert result.checks[1].line == (
        f"env file {ENV_FILE} (mode 0640, uid:gid 0:1001) readable; AWS_ACCESS_KEY_ID (AKIAOLDOLDOLDOLD0001) and AWS_SECRET_ACCESS_KEY set"
    )
    assert "unit raxx-vault exists, sudo -n allows it (not run)" in result.checks[2].line
    assert "raxx-vault found" in result.checks[3].line
    # Read-only, by the host's own records: the file has had one content, was only
    # opened for reading, no temp file, no restart, no health check run.
    assert [v.decode() for v in host.fs.versions(ENV_FILE)] == [ORIGINAL]
    assert host.fs.events[seeded:] == [("open", ENV_FILE, "r")]
    sftp = Counter({k: n for k, n in host.calls.items() if k.startswith("sftp:")})
    assert set(sftp) <= {"sftp:lstat", "sftp:stat", "sftp:open", "sftp:read", "sftp:fstat", "sftp:close"}, sftp
    assert host.commands == [
        "command -v systemctl",
        "systemctl cat raxx-vault",
        "sudo -n -l systemctl restart raxx-vault",
        "command -v raxx-vault",
    ]
    assert not [k for k in host.calls if k.startswith("health:")]
    assert host.service_state("raxx-vault") == "active" and host.services["raxx-vault"].restarts == restarts
    assert "oldSecret" not in text_of(result)


def test_ssh_probe_refuses_a_host_key_not_in_known_hosts_before_anything_else(host, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")

    result = ssh_consumer(host, empty, tmp_path).probe()

    what, line = failed_check(result)
    assert what == "host key and login" and "is not in known_hosts" in line and "never accepts an unknown host key" in line
    assert [c.what for c in result.checks] == ["host key and login"]
    assert host.commands == [] and not [k for k in host.calls if k.startswith("sftp:")]


def test_ssh_probe_names_a_missing_variable_a_missing_unit_and_a_missing_program(host, known_hosts, tmp_path):
    host.seed_file(ENV_FILE, "AWS_ACCESS_KEY_ID=AKIAOLDOLDOLDOLD0001\n", mode=0o600)
    missing_var = ssh_consumer(host, known_hosts, tmp_path).probe()
    assert failed_check(missing_var)[0] == "env file"
    assert failed_check(missing_var)[1].endswith("readable, but AWS_SECRET_ACCESS_KEY not set in it")

    host.seed_file(ENV_FILE, ORIGINAL, mode=0o600)
    no_unit = ssh_consumer(host, known_hosts, tmp_path, restart_command="sudo systemctl restart raxx-vualt").probe()
    assert failed_check(no_unit) == (
        "restart command",
        "`sudo systemctl restart raxx-vualt`: unit raxx-vualt not found on the host (No files found for raxx-vualt.service.)",
    )

    no_tool = ssh_consumer(host, known_hosts, tmp_path, verify_command="raxx-vualt healthcheck").probe()
    assert failed_check(no_tool) == (
        "verify command",
        "`raxx-vualt healthcheck`: raxx-vualt not found on the host (command -v raxx-vualt exited 1)",
    )
    assert host.service_state("raxx-vault") == "active"
    assert [v.decode() for v in host.fs.versions(ENV_FILE)][-1] == ORIGINAL


def test_ssh_probe_without_commands_says_what_will_not_happen(host, known_hosts, tmp_path):
    result = ssh_consumer(host, known_hosts, tmp_path, restart_command=None, verify_command=None).probe()

    assert result.ok
    assert result.checks[2].line == "none configured: the service will not be restarted"
    assert result.checks[3].line == "none configured: verify checks the env file only"
    assert host.commands == []


# -- SSH, against a real OpenSSH sshd: a real shell answers `command -v` --------------------------


@pytest.mark.sshd
@pytest.mark.slow
def test_ssh_probe_on_a_real_sshd_runs_nothing_and_names_a_missing_program(real_sshd, tmp_path):
    env_file = tmp_path / "credentials.env"
    env_file.write_text(ORIGINAL)
    env_file.chmod(0o640)
    stamp = env_file.stat().st_mtime_ns
    marker = tmp_path / "restarted"
    config = tmp_path / "ssh_config"
    config.write_text("")

    def probe(verify: str) -> ProbeResult:
        return SshHostConsumer(
            "real-vault",
            real_sshd.host,
            port=real_sshd.port,
            user=real_sshd.user,
            key_filename=str(real_sshd.client_key),
            use_agent=False,
            known_hosts=real_sshd.known_hosts,
            ssh_config=config,
            env_file=str(env_file),
            restart_command=f"touch {marker}",
            verify_command=verify,
            timeout=10.0,
        ).probe()

    good = probe(f"grep -q AKIA {env_file}")
    assert good.ok, text_of(good)
    assert "`touch " in good.checks[2].line and "touch found (/" in good.checks[2].line
    missing = probe("raxx-no-such-tool --check")
    what, line = failed_check(missing)
    # bash answers 1, dash 127: either way, not found.
    assert what == "verify command" and re.fullmatch(
        r"`raxx-no-such-tool --check`: raxx-no-such-tool not found on the host \(command -v raxx-no-such-tool exited (1|127)\)", line
    ), line
    # Looked up, never run: no restart happened, the env file is as it was.
    assert not marker.exists()
    assert env_file.read_text() == ORIGINAL and env_file.stat().st_mtime_ns == stamp
    ran = [c for c in real_sshd.commands() if not c.startswith("command -v ") and ("touch" in c or "grep" in c)]
    assert ran == [], ran
