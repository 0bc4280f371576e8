"""SshHostConsumer against a real OpenSSH sshd on 127.0.0.1 (see tests/sshd.py)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from steps.consumers.base import AdapterError, Pair
from steps.consumers.ssh import SshHostConsumer
from steps.secrets import Secret

try:  # tests/ is on sys.path while it has no __init__.py; tests.sshd if it gets one
    from sshd import RealSshd, real_sshd
except ImportError:  # pragma: no cover
    from tests.sshd import RealSshd, real_sshd

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

OLD_ID = "AKIAOLDOLDOLDOLD0001"
OLD_SECRET = "oldSecretValue/with+chars1234567890abcd"
NEW_ID = "AKIAREALSSHDTEST0003"
NEW_SECRET = "realSshd/Secret+Value0123456789abcdefGHIJ"
ORIGINAL = (
    "# raxx vault credentials\n"
    "VAULT_ADDR=https://vault.internal:8200\n"
    f"AWS_ACCESS_KEY_ID={OLD_ID}\n"
    f"AWS_SECRET_ACCESS_KEY='{OLD_SECRET}'\n"
    "AWS_REGION=eu-west-1\n"
)
EXPECTED = ORIGINAL.replace(OLD_ID, NEW_ID).replace(OLD_SECRET, NEW_SECRET)
# Running as root, the file gets an owner the SSH user is not, to prove it is kept.
OWNER = (1234, 5678) if os.geteuid() == 0 else (os.getuid(), os.getgid())


@pytest.fixture
def new_pair() -> Pair:
    return Pair(NEW_ID, Secret(NEW_SECRET, "AWS_SECRET_ACCESS_KEY"))


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "credentials.env"
    path.parent.mkdir()
    path.write_text(ORIGINAL)
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, *OWNER)
    return path


@pytest.fixture
def make_consumer(real_sshd: RealSshd, env_file: Path, tmp_path: Path) -> Callable[..., SshHostConsumer]:
    config = tmp_path / "ssh_config"
    config.write_text("")

    def make(**overrides: object) -> SshHostConsumer:
        args: dict[str, object] = dict(
            label="real-vault",
            host=real_sshd.host,
            port=real_sshd.port,
            user=real_sshd.user,
            key_filename=str(real_sshd.client_key),
            use_agent=False,
            known_hosts=real_sshd.known_hosts,
            ssh_config=config,
            env_file=str(env_file),
            restart_command=f"touch {shlex.quote(str(tmp_path / 'restarted'))}",
            verify_command=f"grep -q {NEW_ID} {shlex.quote(str(env_file))}",
            timeout=10.0,
        )
        args.update(overrides)
        return SshHostConsumer(**args)  # type: ignore[arg-type]

    return make


def test_write_pair_on_real_sshd_keeps_mode_owner_and_other_lines_then_restarts(make_consumer, env_file, tmp_path, new_pair, real_sshd):
    inode_before = env_file.stat().st_ino
    consumer = make_consumer()

    result = consumer.write_pair(new_pair)

    assert result.ok, result.summary
    assert env_file.read_text() == EXPECTED
    st = env_file.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, *OWNER)
    assert st.st_ino != inode_before  # a new file renamed into place, not an in-place edit
    assert sorted(p.name for p in env_file.parent.iterdir()) == ["credentials.env"]  # no temp left
    assert (tmp_path / "restarted").exists()
    assert consumer.read_key_id() == NEW_ID
    assert consumer.verify(new_pair).ok


def test_the_secret_never_crosses_real_sshd_in_a_command_line(make_consumer, new_pair, real_sshd):
    consumer = make_consumer()
    seen_before = len(real_sshd.commands())

    consumer.write_pair(new_pair)
    consumer.verify(new_pair)

    commands = real_sshd.commands()[seen_before:]
    assert consumer.restart_command in commands and consumer.verify_command in commands
    assert not [c for c in commands if NEW_SECRET in c or OLD_SECRET in c]
    assert NEW_SECRET not in real_sshd.log_text()


def test_verify_fails_when_the_verify_command_fails(make_consumer, new_pair, env_file):
    consumer = make_consumer(verify_command=f"grep -q AKIANOTTHERE {shlex.quote(str(env_file))}")
    consumer.write_pair(new_pair)

    result = consumer.verify(new_pair)

    assert not result.ok
    assert "exited 1" in result.summary


def test_failing_restart_command_on_real_sshd_is_an_adapter_error(make_consumer, new_pair, real_sshd):
    failing = "echo 'Job for raxx-vault.service failed because the control process exited' >&2; exit 1"

    with pytest.raises(AdapterError) as err:
        make_consumer(restart_command=failing).write_pair(new_pair)

    message = str(err.value)
    assert f"127.0.0.1:{real_sshd.port}" in message
    assert "exited 1" in message and "raxx-vault.service failed" in message


@pytest.mark.parametrize("known_hosts_kind", ["other-key", "empty"])
def test_wrong_known_hosts_is_rejected_by_real_sshd_and_nothing_changes(
    make_consumer, new_pair, real_sshd, env_file, tmp_path, known_hosts_kind
):
    wrong = tmp_path / "wrong_known_hosts"
    if known_hosts_kind == "other-key":
        # A real key, but not this server's: what a replaced or spoofed host looks like.
        impostor = RealSshd(tmp_path / "impostor")
        impostor._keygen(impostor.host_key, "impostor")
        blob = Path(f"{impostor.host_key}.pub").read_text().split()[:2]
        wrong.write_text(f"[127.0.0.1]:{real_sshd.port} {blob[0]} {blob[1]}\n")
    else:
        wrong.write_text("")
    before = env_file.read_text(), env_file.stat().st_mtime_ns

    with pytest.raises(AdapterError) as err:
        make_consumer(known_hosts=wrong).write_pair(new_pair)

    message = str(err.value)
    assert f"127.0.0.1:{real_sshd.port}" in message
    assert ("HOST KEY MISMATCH" if known_hosts_kind == "other-key" else "not in known_hosts") in message
    assert "SHA256:" in message
    assert (env_file.read_text(), env_file.stat().st_mtime_ns) == before
    assert not (tmp_path / "restarted").exists()


def test_a_symlinked_env_file_is_replaced_at_its_target_and_the_link_kept(make_consumer, new_pair, env_file, tmp_path):
    link = tmp_path / "current.env"
    link.symlink_to(env_file)

    make_consumer(env_file=str(link)).write_pair(new_pair)

    assert link.is_symlink() and link.resolve() == env_file.resolve()
    assert env_file.read_text() == EXPECTED
