"""An in-process SSH server for the training sandbox: the "vault host".

`SshSandbox` is a paramiko server on 127.0.0.1 (free port, daemon threads) that looks,
to an SSH client, like a small Linux host running one or more systemd services that
read an AWS key pair from an EnvironmentFile:

- a fresh host key per instance, published as a known_hosts line (clients verify it;
  nothing here helps a client auto-accept), and public-key auth for one user with a
  client key the sandbox generates;
- an in-memory filesystem served over SFTP (open/read/write/stat/lstat/setstat/fsetstat,
  rename, posix-rename@openssh.com, remove, listdir, mkdir, rmdir), which records every
  operation and every content each path has held, so tests can prove a write was atomic;
- an exec handler that interprets a handful of commands (optional `sudo`):
  `systemctl restart|start|stop|is-active|status <svc>`, `cat <file>`, `true`, `false`,
  and each service's health command, which runs the injected AwsProbe with the key pair
  the service loaded at its last restart;
- faults for training scenarios: refuse connections, fail the next N restarts of a
  service, swap the host key.

Secret values live in this process's memory only: they are never printed or logged, and
`holdings()` hands them out as `Secret`s.

The parts, one concern each: `fs` (the in-memory filesystem), `sftp` (paramiko's SFTP
server interface over it), `services` (EnvironmentFile services), `commands` (the
shell), `keys`, `server` (paramiko's ServerInterface and the listener) and `host`
(`SshSandbox`, which puts them together).
"""

from steps.sandbox.ssh.commands import ExecResult
from steps.sandbox.ssh.fs import Cred, MemFS, Node
from steps.sandbox.ssh.host import SshSandbox
from steps.sandbox.ssh.services import KEY_ID_VAR, SECRET_VAR, Service, parse_environment_file

__all__ = [
    "KEY_ID_VAR",
    "SECRET_VAR",
    "Cred",
    "ExecResult",
    "MemFS",
    "Node",
    "Service",
    "SshSandbox",
    "parse_environment_file",
]
