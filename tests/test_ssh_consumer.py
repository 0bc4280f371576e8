"""SshHostConsumer against the in-process sandbox SSH host (steps.sandbox.ssh)."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest

from steps.consumers.base import AdapterError, Pair
from steps.consumers.ssh import SshHostConsumer, parse_env, rewrite_env
from steps.sandbox.ssh import SshSandbox
from steps.secrets import Secret

ENV = "/etc/raxx/credentials.env"
OLD_ID = "AKIAOLDOLDOLDOLD0001"
OLD_SECRET = "oldSecretValue/with+chars1234567890abcd"
NEW_ID = "AKIANEWNEWNEWNEW0002"
NEW_SECRET = "newSecret/Value+For/Tests0123456789abcdEF"

ORIGINAL = (
    "# raxx vault credentials (managed by handrail)\n"
    "VAULT_ADDR=https://vault.internal:8200\n"
    f"export AWS_ACCESS_KEY_ID={OLD_ID}\n"
    "\n"
    "; a systemd-style comment\n"
    f'AWS_SECRET_ACCESS_KEY="{OLD_SECRET}"\n'
    "AWS_REGION=eu-west-1\n"
)
EXPECTED = ORIGINAL.replace(OLD_ID, NEW_ID).replace(OLD_SECRET, NEW_SECRET)


class FakeAws:
    """The simulated AWS side of the probe: accepts only pairs it was told are active."""

    def __init__(self) -> None:
        self.active: dict[str, str] = {}  # key id -> secret fingerprint
        self.probes: list[str] = []

    def activate(self, pair: Pair) -> None:
        self.active[pair.key_id] = pair.fingerprint()

    def __call__(self, key_id: str, secret: Secret) -> tuple[bool, str]:
        self.probes.append(key_id)
        if self.active.get(key_id) == secret.fingerprint():
            return True, f"GetCallerIdentity ok for {key_id}"
        return False, "InvalidClientTokenId: The security token included in the request is invalid."


@pytest.fixture
def new_pair() -> Pair:
    return Pair(NEW_ID, Secret(NEW_SECRET, "AWS_SECRET_ACCESS_KEY"))


@pytest.fixture
def aws() -> FakeAws:
    return FakeAws()


@pytest.fixture
def host(aws: FakeAws) -> Iterator[SshSandbox]:
    with SshSandbox(aws) as sandbox:
        sandbox.seed_file(ENV, ORIGINAL, mode=0o640, uid=0, gid=1001)
        sandbox.add_service("raxx-vault", ENV, "raxx-vault healthcheck")
        yield sandbox


@pytest.fixture
def make_consumer(host: SshSandbox, tmp_path: Path) -> Callable[..., SshHostConsumer]:
    known_hosts = tmp_path / "known_hosts"
    host.write_known_hosts(known_hosts)
    empty_config = tmp_path / "ssh_config"
    empty_config.write_text("")

    def make(**overrides: object) -> SshHostConsumer:
        args: dict[str, object] = dict(
            label="vault-host",
            host=host.host,
            port=host.port,
            user=host.user,
            pkey=host.client_key,
            use_agent=False,
            known_hosts=known_hosts,
            ssh_config=empty_config,
            verify_command="sudo raxx-vault healthcheck",
            timeout=5.0,
        )
        args.update(overrides)
        return SshHostConsumer(**args)  # type: ignore[arg-type]

    return make


def _sftp_calls(host: SshSandbox) -> int:
    return sum(n for k, n in host.calls.items() if k.startswith("sftp:"))


# -- write_pair ---------------------------------------------------------------------------


def test_write_pair_changes_only_the_two_variables_and_keeps_mode_owner_and_other_lines(host, make_consumer, new_pair):
    result = make_consumer().write_pair(new_pair)

    assert result.ok
    assert host.read_file(ENV).decode() == EXPECTED  # export, quotes, comments, order kept
    node = host.fs.stat(ENV)
    assert (node.mode, node.uid, node.gid) == (0o640, 0, 1001)
    key_id, secret = host.holdings()["ssh:vault-host"]
    assert key_id == NEW_ID and secret == new_pair.secret
    assert any("kept mode 0640 and owner uid:gid 0:1001" in line for line in result.evidence)
    assert any(new_pair.fingerprint() in line for line in result.evidence)


def test_write_pair_replaces_the_file_atomically_through_a_temp_file_and_posix_rename(host, make_consumer, new_pair):
    make_consumer().write_pair(new_pair)

    renames = [e for e in host.fs.events if e[0] == "posix_rename"]
    assert len(renames) == 1
    _, tmp, target = renames[0]
    assert target == ENV and posixpath.dirname(tmp) == posixpath.dirname(ENV) and tmp != ENV
    # The env file itself was never opened for writing or truncated ...
    assert not [e for e in host.fs.events if e[1] == ENV and e[0] in ("truncate", "write", "create")]
    assert ("open", ENV, "w") not in host.fs.events
    # ... so anyone reading it saw the whole old file, then the whole new one.
    versions = [v.decode() for v in host.fs.versions(ENV)]
    assert versions == [ORIGINAL, EXPECTED]
    # The temp file was made private before any content went in, and is gone.
    tmp_events = [e for e in host.fs.events if e[1] == tmp]
    assert tmp_events.index(("chmod", tmp, 0o600)) < next(i for i, e in enumerate(tmp_events) if e[0] == "write")
    assert [name for name, _ in host.fs.listdir("/etc/raxx")] == ["credentials.env"]


def test_write_pair_appends_missing_variables_and_keeps_a_file_without_them(host, make_consumer, new_pair):
    host.seed_file(ENV, "VAULT_ADDR=https://vault.internal:8200", mode=0o600)

    make_consumer().write_pair(new_pair)

    assert host.read_file(ENV).decode() == (
        f"VAULT_ADDR=https://vault.internal:8200\nAWS_ACCESS_KEY_ID={NEW_ID}\nAWS_SECRET_ACCESS_KEY={NEW_SECRET}\n"
    )


def test_the_secret_never_leaves_in_a_command_env_request_evidence_error_or_repr(host, make_consumer, new_pair, aws):
    aws.activate(new_pair)
    consumer = make_consumer()
    written = consumer.write_pair(new_pair)
    verified = consumer.verify(new_pair)
    host.fail_restart("raxx-vault")
    with pytest.raises(AdapterError) as failed:
        consumer.write_pair(new_pair)

    secret = new_pair.secret.reveal()
    assert host.commands == [
        "sudo systemctl restart raxx-vault",
        "sudo raxx-vault healthcheck",
        "sudo systemctl restart raxx-vault",
    ]
    assert host.env_requests == []
    texts = [
        *host.commands,
        written.summary,
        *written.evidence,
        verified.summary,
        *verified.evidence,
        str(failed.value),
        repr(failed.value),
        repr(consumer),
        consumer.command(NEW_ID),
        repr(new_pair),
        repr(written),
    ]
    assert not [t for t in texts if secret in t]
    assert not [t for t in texts if OLD_SECRET in t]


def test_a_command_holding_a_secret_is_refused_before_it_is_sent(host, make_consumer, new_pair):
    consumer = make_consumer(restart_command=f"echo {new_pair.secret.reveal()}")

    with pytest.raises(AdapterError, match="contains a secret"):
        consumer.write_pair(new_pair)

    assert host.commands == []


# -- restart and verify -----------------------------------------------------------------


def test_restart_loads_the_new_pair_and_the_health_check_passes_when_aws_accepts_it(host, make_consumer, new_pair, aws):
    aws.activate(new_pair)
    consumer = make_consumer()
    restarts = host.services["raxx-vault"].restarts

    consumer.write_pair(new_pair)
    result = consumer.verify(new_pair)

    assert host.services["raxx-vault"].restarts == restarts + 1
    assert host.loaded()["ssh:vault-host"] == (NEW_ID, new_pair.secret)
    assert result.ok, result.summary
    assert aws.probes == [NEW_ID]
    assert any("healthy" in line and NEW_ID in line for line in result.evidence)


def test_the_health_check_fails_when_aws_rejects_the_key(host, make_consumer, new_pair):
    consumer = make_consumer()
    consumer.write_pair(new_pair)  # AWS was never told the key is active

    result = consumer.verify(new_pair)

    assert not result.ok
    assert "InvalidClientTokenId" in result.summary
    assert "exited 1" in result.summary


def test_verify_reports_a_different_secret_in_the_env_file_without_running_the_check(host, make_consumer, new_pair):
    consumer = make_consumer()
    consumer.write_pair(new_pair)
    other = Pair(NEW_ID, Secret("anotherSecretValue0123456789abcdefghijkl"))

    result = consumer.verify(other)

    assert not result.ok
    assert "wrong secret" in result.summary
    assert host.commands == ["sudo systemctl restart raxx-vault"]


def test_failing_restart_is_an_adapter_error_naming_the_service_and_host(host, make_consumer, new_pair):
    host.fail_restart("raxx-vault", times=1)

    with pytest.raises(AdapterError) as err:
        make_consumer().write_pair(new_pair)

    message = str(err.value)
    assert f"127.0.0.1:{host.port}" in message
    assert "Job for raxx-vault.service failed" in message and "exited 1" in message
    assert "\n" not in message
    # The file was already replaced; the error says so, and the service is down.
    assert f"already holds {NEW_ID}" in message
    assert host.service_state("raxx-vault") == "failed"


# -- connection failures ------------------------------------------------------------------


def test_unknown_host_key_is_rejected_before_anything_is_written(host, make_consumer, new_pair, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")

    with pytest.raises(AdapterError) as err:
        make_consumer(known_hosts=empty).write_pair(new_pair)

    message = str(err.value)
    assert f"127.0.0.1:{host.port}" in message
    assert host.host_key.fingerprint in message and "not in known_hosts" in message
    assert host.calls["auth_ok"] == 0 and _sftp_calls(host) == 0 and host.commands == []
    assert host.fs.versions(ENV) == [ORIGINAL.encode()]


def test_a_changed_host_key_is_rejected_as_a_mismatch(host, make_consumer, new_pair):
    consumer = make_consumer()
    new_key = host.swap_host_key()

    with pytest.raises(AdapterError) as err:
        consumer.write_pair(new_pair)

    message = str(err.value)
    assert "HOST KEY MISMATCH" in message and new_key.fingerprint in message
    assert f"127.0.0.1:{host.port}" in message
    assert _sftp_calls(host) == 0 and host.commands == []
    assert host.fs.versions(ENV) == [ORIGINAL.encode()]


def test_refused_connection_is_an_adapter_error_naming_host_and_port(host, make_consumer, new_pair):
    host.refuse_connections = True

    with pytest.raises(AdapterError, match=rf"127\.0\.0\.1:{host.port}: connection refused"):
        make_consumer().write_pair(new_pair)

    host.refuse_connections = False  # and the host comes back on the same port
    assert make_consumer().read_key_id() == OLD_ID


def test_wrong_client_key_is_an_authentication_error(host, make_consumer):
    stranger = paramiko.RSAKey.generate(2048)

    with pytest.raises(AdapterError, match=rf"raxx@127\.0\.0\.1:{host.port}: authentication failed"):
        make_consumer(pkey=stranger).read_key_id()

    assert host.calls["auth_failed"] >= 1 and _sftp_calls(host) == 0


def test_missing_env_file_is_an_error_and_nothing_is_created(host, make_consumer, new_pair):
    with pytest.raises(AdapterError, match="env file /etc/raxx/missing.env: no such file"):
        make_consumer(env_file="/etc/raxx/missing.env").write_pair(new_pair)

    assert not host.fs.exists("/etc/raxx/missing.env")
    assert [name for name, _ in host.fs.listdir("/etc/raxx")] == ["credentials.env"]


def test_a_failed_chown_leaves_the_original_and_no_temp_file(aws, tmp_path, new_pair):
    # A non-root login that cannot give the temp file the original's owner.
    with SshSandbox(aws, uid=1000, gid=1000, enforce_permissions=True) as host:
        host.fs.makedirs("/srv/raxx", 0o755, uid=1000, gid=1000)
        host.seed_file("/srv/raxx/credentials.env", ORIGINAL, mode=0o644, uid=0, gid=0)
        known, config = tmp_path / "kh", tmp_path / "cfg"
        host.write_known_hosts(known)
        config.write_text("")
        consumer = SshHostConsumer(
            "vault-host",
            host.host,
            port=host.port,
            user=host.user,
            pkey=host.client_key,
            use_agent=False,
            known_hosts=known,
            ssh_config=config,
            env_file="/srv/raxx/credentials.env",
        )

        with pytest.raises(AdapterError, match="chown 0:0.*permission denied.*is unchanged"):
            consumer.write_pair(new_pair)

        assert host.read_file("/srv/raxx/credentials.env").decode() == ORIGINAL
        assert [name for name, _ in host.fs.listdir("/srv/raxx")] == ["credentials.env"]
        assert host.commands == []


# -- configuration ------------------------------------------------------------------------


def test_ssh_config_host_alias_is_honoured_from_the_home_directory(host, new_pair, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    host.write_client_key(home / ".ssh" / "id_vault")
    host.write_known_hosts(home / ".ssh" / "known_hosts")
    (home / ".ssh" / "config").write_text(
        "Host vault-host\n"
        "    HostName 127.0.0.1\n"
        f"    Port {host.port}\n"
        f"    User {host.user}\n"
        "    IdentityFile ~/.ssh/id_vault\n"
        "    IdentitiesOnly yes\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    consumer = SshHostConsumer("vault-host", "vault-host")

    assert (consumer.hostname, consumer.port, consumer.user) == ("127.0.0.1", host.port, host.user)
    assert consumer.read_key_id() == OLD_ID
    assert consumer.write_pair(new_pair).ok
    assert host.holdings()["ssh:vault-host"][0] == NEW_ID
    assert consumer.command(NEW_ID).startswith(f"ssh {host.user}@vault-host 'sudoedit {ENV}'")


def test_explicit_ssh_config_path_and_its_user_known_hosts_file_are_used(host, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))  # nothing in the default places
    key = tmp_path / "client_key"
    host.write_client_key(key)
    known = tmp_path / "vault_known_hosts"
    host.write_known_hosts(known)
    config = tmp_path / "config"
    config.write_text(
        f"Host vault\n  HostName 127.0.0.1\n  Port {host.port}\n  User {host.user}\n  IdentityFile {key}\n  UserKnownHostsFile {known}\n"
    )

    consumer = SshHostConsumer("vault", "vault", ssh_config=config, use_agent=False)

    assert consumer.read_key_id() == OLD_ID


def test_read_key_id_is_none_when_the_file_lacks_the_variable(host, make_consumer):
    host.seed_file(ENV, "# nothing yet\n")

    assert make_consumer().read_key_id() is None
    assert make_consumer().read_pair() is None


def test_read_pair_returns_what_the_env_file_holds_as_a_secret(make_consumer):
    pair = make_consumer().read_pair()

    assert pair is not None and pair.key_id == OLD_ID
    assert pair.secret == Secret(OLD_SECRET) and OLD_SECRET not in repr(pair)


def test_command_is_a_readable_equivalent_with_the_secret_masked(make_consumer, host):
    text = make_consumer().command(NEW_ID)

    # The sandbox's loopback port changes every run: shown elided.
    assert text == (
        f"ssh -p … raxx@127.0.0.1 'sudoedit {ENV}' (AWS_ACCESS_KEY_ID={NEW_ID}, AWS_SECRET_ACCESS_KEY=****)"
        " && ssh -p … raxx@127.0.0.1 'sudo systemctl restart raxx-vault'"
    )


def test_an_rsa_host_key_is_verified_too(aws, tmp_path, new_pair):
    with SshSandbox(aws, host_key_type="rsa") as host:
        host.seed_file(ENV, ORIGINAL)
        host.add_service("raxx-vault", ENV)
        known = tmp_path / "kh"
        host.write_known_hosts(known)
        (tmp_path / "cfg").write_text("")
        consumer = SshHostConsumer(
            "vault-host",
            host.host,
            port=host.port,
            user=host.user,
            pkey=host.client_key,
            use_agent=False,
            known_hosts=known,
            ssh_config=tmp_path / "cfg",
        )
        assert host.known_hosts_line().split()[1] == "ssh-rsa"
        assert consumer.write_pair(new_pair).ok


# -- the env file rewrite on its own ------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(
            "A=1\nAWS_ACCESS_KEY_ID=old\nB=2\nAWS_SECRET_ACCESS_KEY=old\n",
            "A=1\nAWS_ACCESS_KEY_ID=KID\nB=2\nAWS_SECRET_ACCESS_KEY=s/e+c\n",
            id="plain",
        ),
        pytest.param(
            "export AWS_ACCESS_KEY_ID='old'\nexport AWS_SECRET_ACCESS_KEY=\"old\" # rotated\n",
            "export AWS_ACCESS_KEY_ID='KID'\nexport AWS_SECRET_ACCESS_KEY=\"s/e+c\" # rotated\n",
            id="export-and-quotes-and-trailing-comment",
        ),
        pytest.param(
            "export A=1\n",
            "export A=1\nexport AWS_ACCESS_KEY_ID=KID\nexport AWS_SECRET_ACCESS_KEY=s/e+c\n",
            id="missing-appended-in-export-style",
        ),
        pytest.param("A=1", "A=1\nAWS_ACCESS_KEY_ID=KID\nAWS_SECRET_ACCESS_KEY=s/e+c\n", id="no-final-newline"),
        pytest.param("", "AWS_ACCESS_KEY_ID=KID\nAWS_SECRET_ACCESS_KEY=s/e+c\n", id="empty"),
        pytest.param("A=1\r\nAWS_ACCESS_KEY_ID=old\r\n", "A=1\r\nAWS_ACCESS_KEY_ID=KID\r\nAWS_SECRET_ACCESS_KEY=s/e+c\r\n", id="crlf"),
        pytest.param(
            "# AWS_ACCESS_KEY_ID=commented\nAWS_ACCESS_KEY_ID=a\nAWS_ACCESS_KEY_ID=b\nAWS_SECRET_ACCESS_KEY = x\n",
            "# AWS_ACCESS_KEY_ID=commented\nAWS_ACCESS_KEY_ID=KID\nAWS_ACCESS_KEY_ID=KID\nAWS_SECRET_ACCESS_KEY = s/e+c\n",
            id="comments-untouched-duplicates-all-replaced-spacing-kept",
        ),
        pytest.param("  AWS_ACCESS_KEY_ID=old\n", "  AWS_ACCESS_KEY_ID=KID\nAWS_SECRET_ACCESS_KEY=s/e+c\n", id="indent-kept"),
        pytest.param(
            "AWS_ACCESS_KEY_ID_OLD=x\n",
            "AWS_ACCESS_KEY_ID_OLD=x\nAWS_ACCESS_KEY_ID=KID\nAWS_SECRET_ACCESS_KEY=s/e+c\n",
            id="similar-names-untouched",
        ),
    ],
)
def test_rewrite_env_touches_only_the_two_variables(before, after):
    rewritten = rewrite_env(before, {"AWS_ACCESS_KEY_ID": "KID", "AWS_SECRET_ACCESS_KEY": "s/e+c"})

    assert rewritten.text == after
    assert parse_env(rewritten.text)["AWS_SECRET_ACCESS_KEY"] == "s/e+c"


def test_rewrite_env_quotes_values_that_need_it_and_parse_env_reads_them_back():
    awkward = 'with space "and" $dollar `tick` \\slash'

    text = rewrite_env("AWS_SECRET_ACCESS_KEY=old\n", {"AWS_SECRET_ACCESS_KEY": awkward}).text

    assert text.startswith('AWS_SECRET_ACCESS_KEY="')
    assert parse_env(text)["AWS_SECRET_ACCESS_KEY"] == awkward
    with pytest.raises(ValueError):
        rewrite_env("", {"AWS_SECRET_ACCESS_KEY": "two\nlines"})
