"""`SshSandbox`: the sandbox's "vault host", put together from its parts.

It owns what the host is (a user, an in-memory filesystem, services, a shell, host and
client keys) and what tests and training scenarios ask of it (seeding, inspection,
faults); `server.SshServer` does the listening.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import paramiko

from steps.consumers.base import AwsProbe
from steps.sandbox.ssh.commands import ExecResult, Shell
from steps.sandbox.ssh.fs import Cred, MemFS
from steps.sandbox.ssh.keys import generate_key
from steps.sandbox.ssh.server import SshServer
from steps.sandbox.ssh.services import Service, ServiceManager
from steps.secrets import Secret


class SshSandbox:
    """A loopback SSH "vault host": SFTP over an in-memory FS, a few commands, services.

    Use as `with SshSandbox(probe) as host:` or `start()`/`stop()`.
    """

    def __init__(
        self,
        aws_probe: AwsProbe | None = None,
        *,
        user: str = "raxx",
        uid: int = 0,
        gid: int = 0,
        label: str = "vault-host",
        host_key_type: str = "ed25519",
        enforce_permissions: bool = False,
    ) -> None:
        """`uid`/`gid` are the logged-in user's ids on the simulated host. They default
        to 0 so the SSH user may keep a root-owned env file's owner; with
        `enforce_permissions=True` and a non-zero uid the FS applies Unix rules (a
        training scenario: "permission denied" on the env file)."""
        self.user, self.uid, self.gid, self.label = user, uid, gid, label
        self.home = "/root" if uid == 0 else f"/home/{user}"
        self.fs = MemFS(enforce_permissions)
        self.fs.makedirs(self.home, 0o700, uid, gid)
        self._host_key = generate_key(host_key_type)
        self._client_key = generate_key("ed25519")
        self.authorized_keys: list[paramiko.PKey] = [self._client_key.pkey]
        self.calls: Counter[str] = Counter()
        self.commands: list[str] = []  # every exec command received, verbatim
        self.env_requests: list[tuple[str, str]] = []  # every env request (refused)
        self._lock = threading.RLock()
        self._services = ServiceManager(self.fs, self._lock)
        self.services: dict[str, Service] = self._services.units
        self.shell = Shell(self.fs, self._services, Cred(uid, gid), self.home, self._count, aws_probe)
        self._server = SshServer(self)

    def __repr__(self) -> str:
        port = self._server.port
        where = f"127.0.0.1:{port}" if port else "not started"
        return f"SshSandbox({self.label}, {self.user}@{where}, services={sorted(self.services)})"

    @property
    def aws_probe(self) -> AwsProbe | None:
        return self.shell.aws_probe

    @aws_probe.setter
    def aws_probe(self, probe: AwsProbe | None) -> None:
        self.shell.aws_probe = probe

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> SshSandbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> SshSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        port = self._server.port
        assert port is not None, "start() first"
        return port

    # -- faults -------------------------------------------------------------------------

    @property
    def refuse_connections(self) -> bool:
        return self._server.refusing

    @refuse_connections.setter
    def refuse_connections(self, refuse: bool) -> None:
        """True: stop listening (clients get ECONNREFUSED). False: listen again, same port."""
        self._server.refuse(refuse)

    def fail_restart(self, service: str, times: int = 1) -> None:
        """Make the next `times` restarts of `service` fail (the service ends up failed)."""
        self._services.fail_restart(service, times)

    def swap_host_key(self, key_type: str | None = None) -> paramiko.PKey:
        """Serve a new host key from the next connection on (a "wrong host key")."""
        kind = key_type or ("rsa" if isinstance(self._host_key.pkey, paramiko.RSAKey) else "ed25519")
        with self._lock:
            self._host_key = generate_key(kind)
        return self._host_key.pkey

    # -- keys ---------------------------------------------------------------------------

    @property
    def host_key(self) -> paramiko.PKey:
        return self._host_key.pkey

    @property
    def client_key(self) -> paramiko.PKey:
        return self._client_key.pkey

    def known_hosts_line(self) -> str:
        key = self._host_key.pkey
        return f"[{self.host}]:{self.port} {key.get_name()} {key.get_base64()}"

    def write_known_hosts(self, path: str | os.PathLike[str]) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(self.known_hosts_line() + "\n")

    def write_client_key(self, path: str | os.PathLike[str]) -> None:
        """Write the client private key (OpenSSH format) 0600, for another process."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self._client_key.private_text)
        os.chmod(path, 0o600)

    def authorize_key(self, key: paramiko.PKey) -> None:
        self.authorized_keys.append(key)

    # -- seeding and inspection ---------------------------------------------------------

    def seed_file(self, path: str, content: str | bytes, mode: int = 0o600, uid: int = 0, gid: int = 0) -> None:
        data = content.encode() if isinstance(content, str) else content
        self.fs.put(path, data, mode, uid, gid)

    def read_file(self, path: str) -> bytes:
        return self.fs.read(path)

    def add_service(self, name: str, env_file: str, health_command: str | None = None, label: str | None = None) -> Service:
        """Register a service reading `env_file`; it starts now if the file exists."""
        return self._services.add(name, env_file, health_command, label or self.label)

    def holdings(self) -> dict[str, tuple[str | None, Secret | None]]:
        """{"ssh:<label>": (key id, secret)} as each service's env file holds them now."""
        return self._services.holdings()

    def loaded(self) -> dict[str, tuple[str | None, Secret | None]]:
        """{"ssh:<label>": (key id, secret)} as each running service loaded them."""
        return self._services.loaded()

    def service_state(self, name: str) -> str:
        return self._services.get(name).state

    def run_command(self, command: str, as_root: bool = False) -> ExecResult:
        """Interpret `command` as the sandbox's shell would (see commands.py)."""
        return self.shell.run(command, as_root)

    # -- bookkeeping (the server and the shell report here) -----------------------------

    def _count(self, what: str) -> None:
        with self._lock:
            self.calls[what] += 1

    def _record_command(self, command: str) -> None:
        with self._lock:
            self.commands.append(command)
            self.calls["exec"] += 1

    def _record_env(self, name: str, value: str) -> None:
        with self._lock:
            self.env_requests.append((name, value))
            self.calls["env_request"] += 1
