"""A real OpenSSH sshd on 127.0.0.1 for integration tests.

`RealSshd(workdir).start()` runs `/usr/sbin/sshd -D -e -f <config>` as the current
user on a free port, with everything it needs generated in `workdir`: an Ed25519 host
key, a client key authorised through `AuthorizedKeysFile`, a known_hosts file for
clients, the pid file and the log. `stop()` terminates it.

Notes for running it in a container:
- sshd started as root insists on its privilege-separation directory (/run/sshd on
  Debian, compiled in; no config option moves it). `start()` creates it (0755, root)
  when running as root and it is missing; that is the one thing written outside
  `workdir`. The `sshd` privsep user comes with the openssh-server package.
- UsePAM no: PAM in a container usually lacks a session stack and is not needed.
- StrictModes no: tmp directories fail sshd's ownership/permission checks.
- As a non-root user sshd runs without privilege separation and can only log that same
  user in, which is exactly what the tests do.

Fixtures: `real_sshd` (module scope) starts one per test module; the lead can import
it into conftest (`from sshd import real_sshd`), or tests import it directly.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
PRIVSEP_DIR = "/run/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SKIP_REASON = "OpenSSH sshd not installed: apt-get install openssh-server"


def sshd_missing_reason() -> str | None:
    """Why the real-sshd tests cannot run here, or None if they can."""
    if not os.path.exists(SSHD):
        return SKIP_REASON
    if not os.path.exists(SSH_KEYGEN):
        return "ssh-keygen not installed: apt-get install openssh-client"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshdError(RuntimeError):
    pass


class RealSshd:
    """One OpenSSH sshd process serving 127.0.0.1:<port> for the current user."""

    def __init__(self, workdir: str | os.PathLike[str], log_level: str = "VERBOSE", record_commands: bool = True) -> None:
        """`record_commands`: route every exec/subsystem request through a ForceCommand
        wrapper that appends the client's command line to `commands_log` and then runs
        it, so tests can see exactly what crossed the wire (sshd itself never logs
        command text, not even at DEBUG3)."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.log_level = log_level
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "id_ed25519"
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "sshd_config"
        self.pid_file = self.dir / "sshd.pid"
        self.log = self.dir / "sshd.log"
        self.commands_log = self.dir / "commands.log"
        self.record_commands = record_commands and os.path.exists(SFTP_SERVER)
        self._wrapper = self.dir / "record-command"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- setup --------------------------------------------------------------------------

    def _keygen(self, path: Path, comment: str) -> None:
        subprocess.run(
            [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )

    def _write_config(self) -> None:
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.host}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.pid_file}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "AcceptEnv NONE_ACCEPTED",
                    "X11Forwarding no",
                    f"LogLevel {self.log_level}",
                    # With ForceCommand the subsystem must be a real program the wrapper
                    # can exec; internal-sftp only exists inside sshd.
                    f"Subsystem sftp {SFTP_SERVER}" if self.record_commands else "Subsystem sftp internal-sftp",
                    f"ForceCommand {self._wrapper}" if self.record_commands else "",
                    "",
                ]
            )
        )

    def _prepare(self) -> None:
        if not self.host_key.exists():
            self._keygen(self.host_key, "handrail-test-host")
            self._keygen(self.client_key, "handrail-test-client")
            self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
            os.chmod(self.authorized_keys, 0o600)
        if self.record_commands:
            self._wrapper.write_text(
                "#!/bin/sh\n"
                f"printf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> {shlex.quote(str(self.commands_log))}\n"
                'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
            )
            os.chmod(self._wrapper, 0o755)
        if os.geteuid() == 0 and not os.path.isdir(PRIVSEP_DIR):
            os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)

    def known_hosts_line(self) -> str:
        kind, blob = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {kind} {blob}"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> RealSshd:
        reason = sshd_missing_reason()
        if reason:
            raise SshdError(reason)
        self._prepare()
        last_error = ""
        for _ in range(3):  # the free port can be taken between probe and bind
            self.port = _free_port()
            self._write_config()
            test = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True)
            if test.returncode != 0:
                raise SshdError(f"sshd rejected its config: {test.stderr.strip()}")
            with open(self.log, "ab") as log:
                # sshd must be run by absolute path (it re-executes itself).
                self._proc = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(self.config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            if self._wait_ready(timeout):
                self.known_hosts.write_text(self.known_hosts_line() + "\n")
                return self
            last_error = self.log_tail()
            self.stop()
            if "Address already in use" not in last_error:
                break
        raise SshdError(f"sshd did not start on {self.host}:{self.port}: {last_error}")

    def _wait_ready(self, timeout: float) -> bool:
        """True once the port answers with an SSH banner; False if sshd died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-2.0-"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def commands(self) -> list[str]:
        """Every command line clients sent (exec requests and subsystem programs)."""
        try:
            return self.commands_log.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # The listener's children (per-connection sshd) share its session: end them too.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> RealSshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def real_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealSshd]:
    """A running OpenSSH sshd for this test module (skips if sshd is not installed)."""
    reason = sshd_missing_reason()
    if reason:
        pytest.skip(reason)
    server = RealSshd(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
    except SshdError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
