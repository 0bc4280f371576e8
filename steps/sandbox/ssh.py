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
"""

from __future__ import annotations

import errno
import io
import logging
import os
import posixpath
import shlex
import socket
import stat as stat_mod
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paramiko.sftp import SFTP_FAILURE, SFTP_NO_SUCH_FILE, SFTP_OK, SFTP_OP_UNSUPPORTED, SFTP_PERMISSION_DENIED

from steps.consumers.base import AwsProbe
from steps.secrets import Secret, redact

_LOG_CHANNEL = "handrail.sandbox.ssh"
logging.getLogger(_LOG_CHANNEL).addHandler(logging.NullHandler())

KEY_ID_VAR = "AWS_ACCESS_KEY_ID"
SECRET_VAR = "AWS_SECRET_ACCESS_KEY"


# -- keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _KeyMaterial:
    pkey: paramiko.PKey
    private_text: str  # OpenSSH/PEM private key text, for write_client_key


def _generate_key(key_type: str = "ed25519") -> _KeyMaterial:
    """A fresh key pair. paramiko cannot generate Ed25519 keys, so cryptography does."""
    if key_type == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        text = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode()
        return _KeyMaterial(paramiko.Ed25519Key(file_obj=io.StringIO(text)), text)
    if key_type == "rsa":
        key = paramiko.RSAKey.generate(2048)
        buf = io.StringIO()
        key.write_private_key(buf)
        return _KeyMaterial(key, buf.getvalue())
    raise ValueError(f"unsupported key type {key_type!r} (ed25519 or rsa)")


# -- in-memory filesystem ---------------------------------------------------------------


@dataclass(frozen=True)
class Cred:
    """Who is asking: the sandbox checks permissions against it when enforcing them."""

    uid: int
    gid: int


@dataclass(eq=False)
class Node:
    """A file or directory (an inode: handles keep pointing at it across renames)."""

    is_dir: bool
    mode: int  # permission bits only
    uid: int
    gid: int
    mtime: float
    content: bytes = field(default=b"", repr=False)  # may hold a secret: never in a repr
    path: str | None = None  # where it lives now; None once removed

    def attributes(self, filename: str | None = None) -> paramiko.SFTPAttributes:
        attr = paramiko.SFTPAttributes()
        attr.st_mode = (stat_mod.S_IFDIR if self.is_dir else stat_mod.S_IFREG) | self.mode
        attr.st_size = 0 if self.is_dir else len(self.content)
        attr.st_uid, attr.st_gid = self.uid, self.gid
        attr.st_atime = attr.st_mtime = int(self.mtime)
        if filename is not None:
            attr.filename = filename
        return attr


class MemFS:
    """A tiny POSIX-ish filesystem in memory.

    It keeps an event log (operation and paths, never contents) and, per path, every
    content that path has held, in order: a writer that truncates and rewrites in place
    shows up as an empty or partial version; temp file + rename shows only whole files.
    """

    def __init__(self, enforce_permissions: bool = False) -> None:
        self.enforce_permissions = enforce_permissions
        self._lock = threading.RLock()
        self._nodes: dict[str, Node] = {"/": Node(True, 0o755, 0, 0, time.time(), path="/")}
        self.events: list[tuple[Any, ...]] = []
        self._versions: dict[str, list[bytes]] = {}

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def norm(path: str, cwd: str = "/") -> str:
        if not path.startswith("/"):
            path = posixpath.join(cwd, path)
        path = posixpath.normpath(path)
        return "/" + path.lstrip("/")  # normpath keeps a leading "//"

    def _get(self, path: str) -> Node:
        node = self._nodes.get(path)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return node

    def _parent(self, path: str) -> Node:
        parent = self._nodes.get(posixpath.dirname(path))
        if parent is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if not parent.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        return parent

    def _allowed(self, node: Node, cred: Cred | None, bit: int) -> bool:
        if not self.enforce_permissions or cred is None or cred.uid == 0:
            return True
        if node.uid == cred.uid:
            return bool((node.mode >> 6) & bit)
        if node.gid == cred.gid:
            return bool((node.mode >> 3) & bit)
        return bool(node.mode & bit)

    def _require(self, node: Node, cred: Cred | None, bit: int, path: str) -> None:
        if not self._allowed(node, cred, bit):
            raise PermissionError(errno.EACCES, "Permission denied", path)

    def _record_version(self, node: Node) -> None:
        if node.path is not None and not node.is_dir:
            self._versions.setdefault(node.path, []).append(node.content)

    # -- queries ------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        with self._lock:
            return self.norm(path) in self._nodes

    def stat(self, path: str) -> Node:
        """The node at `path` (a live object: read it, don't keep it)."""
        with self._lock:
            return self._get(self.norm(path))

    def read(self, path: str, cred: Cred | None = None) -> bytes:
        with self._lock:
            path = self.norm(path)
            node = self._get(path)
            if node.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            self._require(node, cred, 4, path)
            return node.content

    def listdir(self, path: str, cred: Cred | None = None) -> list[tuple[str, Node]]:
        with self._lock:
            path = self.norm(path)
            node = self._get(path)
            if not node.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
            self._require(node, cred, 4, path)
            prefix = path.rstrip("/") + "/"
            return sorted(
                (p[len(prefix) :], n) for p, n in self._nodes.items() if p != path and p.startswith(prefix) and "/" not in p[len(prefix) :]
            )

    def versions(self, path: str) -> list[bytes]:
        """Every content `path` has held, in order (in memory only: may hold secrets)."""
        with self._lock:
            return list(self._versions.get(self.norm(path), []))

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._nodes)

    # -- changes ------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0, cred: Cred | None = None) -> Node:
        with self._lock:
            path = self.norm(path)
            if path in self._nodes:
                raise FileExistsError(errno.EEXIST, "File exists", path)
            parent = self._parent(path)
            self._require(parent, cred, 2, path)
            if cred is not None:
                uid, gid = cred.uid, cred.gid
            node = Node(True, mode & 0o7777, uid, gid, time.time(), path=path)
            self._nodes[path] = node
            self.events.append(("mkdir", path))
            return node

    def makedirs(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        with self._lock:
            path = self.norm(path)
            missing = []
            while path not in self._nodes:
                missing.append(path)
                path = posixpath.dirname(path)
            for p in reversed(missing):
                self.mkdir(p, mode, uid, gid)

    def put(self, path: str, content: bytes, mode: int = 0o600, uid: int = 0, gid: int = 0) -> Node:
        """Create or replace a file directly (seeding; no permission checks)."""
        with self._lock:
            path = self.norm(path)
            self.makedirs(posixpath.dirname(path))
            node = self._nodes.get(path)
            if node is None or node.is_dir:
                node = Node(False, mode & 0o7777, uid, gid, time.time(), path=path)
                self._nodes[path] = node
            node.mode, node.uid, node.gid = mode & 0o7777, uid, gid
            node.content, node.mtime = bytes(content), time.time()
            self.events.append(("put", path))
            self._record_version(node)
            return node

    def open(self, path: str, flags: int, mode: int | None, cred: Cred | None) -> Node:
        """Open (and maybe create/truncate) a file with os.O_* flags; return its node."""
        with self._lock:
            path = self.norm(path)
            node = self._nodes.get(path)
            writing = bool(flags & (os.O_WRONLY | os.O_RDWR))
            if node is None:
                if not flags & os.O_CREAT:
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
                parent = self._parent(path)
                self._require(parent, cred, 2, path)
                uid, gid = (cred.uid, cred.gid) if cred is not None else (0, 0)
                # Like open(2) with the OpenSSH server's default umask 022.
                perm = (mode if mode is not None else 0o666) & ~0o022 & 0o7777
                node = Node(False, perm, uid, gid, time.time(), path=path)
                self._nodes[path] = node
                self.events.append(("create", path))
                self._record_version(node)
            elif flags & os.O_CREAT and flags & os.O_EXCL:
                raise FileExistsError(errno.EEXIST, "File exists", path)
            else:
                if node.is_dir:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
                if flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR):
                    self._require(node, cred, 4, path)
                if writing:
                    self._require(node, cred, 2, path)
            self.events.append(("open", path, "w" if writing else "r"))
            if writing and flags & os.O_TRUNC and node.content:
                node.content, node.mtime = b"", time.time()
                self.events.append(("truncate", path))
                self._record_version(node)
            return node

    def write_at(self, node: Node, offset: int, data: bytes) -> None:
        with self._lock:
            content = node.content
            if offset > len(content):
                content += b"\0" * (offset - len(content))
            node.content = content[:offset] + bytes(data) + content[offset + len(data) :]
            node.mtime = time.time()
            self.events.append(("write", node.path, len(data)))
            self._record_version(node)

    def setattr(
        self,
        path: str,
        node: Node | None = None,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        mtime: float | None = None,
        cred: Cred | None = None,
    ) -> None:
        """chmod/chown/truncate/utime with the usual rules: only root gives files away."""
        with self._lock:
            if node is None:
                path = self.norm(path)
                node = self._get(path)
            privileged = not self.enforce_permissions or cred is None or cred.uid == 0
            if uid is not None or gid is not None:
                new_uid = node.uid if uid is None else uid
                new_gid = node.gid if gid is None else gid
                if not privileged and (node.uid != cred.uid or new_uid != node.uid or new_gid not in (node.gid, cred.gid)):
                    raise PermissionError(errno.EPERM, "Operation not permitted", path)
                node.uid, node.gid = new_uid, new_gid
                self.events.append(("chown", node.path, new_uid, new_gid))
            if mode is not None:
                if not privileged and node.uid != cred.uid:
                    raise PermissionError(errno.EPERM, "Operation not permitted", path)
                node.mode = mode & 0o7777
                self.events.append(("chmod", node.path, node.mode))
            if size is not None and not node.is_dir:
                self._require(node, cred, 2, path)
                node.content = node.content[:size] + b"\0" * max(0, size - len(node.content))
                self.events.append(("truncate", node.path))
                self._record_version(node)
            if mtime is not None:
                node.mtime = mtime

    def remove(self, path: str, cred: Cred | None = None) -> None:
        with self._lock:
            path = self.norm(path)
            node = self._get(path)
            if node.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            self._require(self._parent(path), cred, 2, path)
            del self._nodes[path]
            node.path = None
            self.events.append(("remove", path))

    def rmdir(self, path: str, cred: Cred | None = None) -> None:
        with self._lock:
            path = self.norm(path)
            node = self._get(path)
            if not node.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
            if self.listdir(path):
                raise OSError(errno.ENOTEMPTY, "Directory not empty", path)
            self._require(self._parent(path), cred, 2, path)
            del self._nodes[path]
            node.path = None
            self.events.append(("rmdir", path))

    def rename(self, old: str, new: str, *, overwrite: bool, cred: Cred | None = None) -> None:
        """rename(2) when `overwrite` (posix-rename), else SFTP v3 rename: the target
        must not exist (what OpenSSH's server does)."""
        with self._lock:
            old, new = self.norm(old), self.norm(new)
            node = self._get(old)
            self._require(self._parent(old), cred, 2, old)
            self._require(self._parent(new), cred, 2, new)
            target = self._nodes.get(new)
            if target is not None and target is not node:
                if not overwrite:
                    raise FileExistsError(errno.EEXIST, "File exists", new)
                if target.is_dir != node.is_dir:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", new)
                target.path = None
            if node.is_dir:
                prefix = old.rstrip("/") + "/"
                for p in [p for p in self._nodes if p.startswith(prefix)]:
                    child = self._nodes.pop(p)
                    child.path = new + p[len(old) :]
                    self._nodes[child.path] = child
            del self._nodes[old]
            node.path = new
            self._nodes[new] = node
            self.events.append(("posix_rename" if overwrite else "rename", old, new))
            self._record_version(node)


# -- systemd-ish services ---------------------------------------------------------------


def parse_environment_file(text: str) -> dict[str, str]:
    """Parse a systemd EnvironmentFile: KEY=VALUE lines, # and ; comments, quotes.

    Deliberately written apart from the adapter's parser, so a bug in one shows up
    against the other. `export ` is tolerated (systemd would not be; the sandbox is
    lenient so a shell-style file still "works" in training).
    """
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        value = value.strip()
        if value[:1] == "'" and "'" in value[1:]:
            value = value[1 : value.index("'", 1)]
        elif value[:1] == '"':
            out, i = [], 1
            while i < len(value) and value[i] != '"':
                if value[i] == "\\" and i + 1 < len(value):
                    i += 1
                out.append(value[i])
                i += 1
            value = "".join(out)
        env[key] = value
    return env


@dataclass
class Service:
    name: str
    env_file: str
    health_command: str
    label: str
    state: str = "inactive"  # active | inactive | failed
    loaded: dict[str, str] = field(default_factory=dict, repr=False)  # env at last start
    restarts: int = 0
    fail_next: int = 0
    active_since: float | None = None


@dataclass
class ExecResult:
    status: int
    stdout: str = field(default="", repr=False)  # `cat` of an env file would show a secret
    stderr: str = field(default="", repr=False)


# -- the paramiko server side -----------------------------------------------------------


class _Connection(paramiko.ServerInterface):
    """One SSH connection's view: who logged in; answers auth and channel requests."""

    def __init__(self, sandbox: SshSandbox) -> None:
        self.sandbox = sandbox
        self.username: str | None = None

    @property
    def cred(self) -> Cred:
        return Cred(self.sandbox.uid, self.sandbox.gid)

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        sb = self.sandbox
        if username == sb.user and any(key.get_name() == k.get_name() and key.get_base64() == k.get_base64() for k in sb.authorized_keys):
            self.username = username
            sb._count("auth_ok")
            return paramiko.AUTH_SUCCESSFUL
        sb._count("auth_failed")
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes, value: bytes) -> bool:
        # Recorded so tests can prove nothing secret travels in the environment;
        # refused, like OpenSSH without AcceptEnv.
        self.sandbox._record_env(_text(name), _text(value))
        return False

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = _text(command)
        self.sandbox._record_command(text)
        # The reply to this request is sent after we return: the work runs in its own
        # thread and must not close the channel before the client has seen the reply.
        threading.Thread(target=self.sandbox._serve_exec, args=(channel, text), name="sandbox-ssh-exec", daemon=True).start()
        return True


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class _Handle(paramiko.SFTPHandle):
    def __init__(self, sftp: _MemSftp, node: Node, flags: int) -> None:
        super().__init__(flags)
        self.sftp, self.node = sftp, node
        self.readable = flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR)
        self.writable = flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
        self.append = bool(flags & os.O_APPEND)

    def read(self, offset: int, length: int) -> bytes | int:
        self.sftp.sandbox._count("sftp:read")  # per request, not per handle
        if not self.readable:
            return SFTP_PERMISSION_DENIED
        return self.node.content[offset : offset + length]

    def write(self, offset: int, data: bytes) -> int:
        self.sftp.sandbox._count("sftp:write")
        if not self.writable:
            return SFTP_PERMISSION_DENIED
        if self.append:
            offset = len(self.node.content)
        self.sftp.fs.write_at(self.node, offset, data)
        return SFTP_OK

    def stat(self) -> paramiko.SFTPAttributes:
        self.sftp.sandbox._count("sftp:fstat")
        return self.node.attributes()

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        return self.sftp._setattr(self.node.path or "", attr, node=self.node)


class _MemSftp(paramiko.SFTPServerInterface):
    """SFTP requests mapped onto the sandbox's MemFS, as the logged-in user."""

    def __init__(self, server: _Connection, sandbox: SshSandbox, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.sandbox, self.fs, self.cred = sandbox, sandbox.fs, server.cred

    def _path(self, path: str) -> str:
        return self.fs.norm(path, self.sandbox.home)

    def _do(self, op: str, fn: Any) -> Any:
        self.sandbox._count(f"sftp:{op}")
        try:
            return fn()
        except PermissionError:
            return SFTP_PERMISSION_DENIED
        except FileNotFoundError:
            return SFTP_NO_SUCH_FILE
        except OSError:
            return SFTP_FAILURE

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> Any:
        def do() -> _Handle:
            node = self.fs.open(self._path(path), flags, attr.st_mode, self.cred)
            handle = _Handle(self, node, flags)
            handle.filename = node.path
            return handle

        return self._do("open", do)

    def list_folder(self, path: str) -> Any:
        return self._do("listdir", lambda: [n.attributes(name) for name, n in self.fs.listdir(self._path(path), self.cred)])

    def stat(self, path: str) -> Any:
        return self._do("stat", lambda: self.fs.stat(self._path(path)).attributes())

    def lstat(self, path: str) -> Any:
        # No symlinks in the sandbox: lstat is stat.
        return self._do("lstat", lambda: self.fs.stat(self._path(path)).attributes())

    def remove(self, path: str) -> int:
        return self._do("remove", lambda: self.fs.remove(self._path(path), self.cred) or SFTP_OK)

    def rename(self, oldpath: str, newpath: str) -> int:
        return self._do(
            "rename", lambda: self.fs.rename(self._path(oldpath), self._path(newpath), overwrite=False, cred=self.cred) or SFTP_OK
        )

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        return self._do(
            "posix_rename",
            lambda: self.fs.rename(self._path(oldpath), self._path(newpath), overwrite=True, cred=self.cred) or SFTP_OK,
        )

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        mode = attr.st_mode if attr.st_mode is not None else 0o777
        return self._do("mkdir", lambda: self.fs.mkdir(self._path(path), mode & ~0o022, cred=self.cred) and SFTP_OK)

    def rmdir(self, path: str) -> int:
        return self._do("rmdir", lambda: self.fs.rmdir(self._path(path), self.cred) or SFTP_OK)

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        return self._setattr(path, attr)

    def _setattr(self, path: str, attr: paramiko.SFTPAttributes, node: Node | None = None) -> int:
        def do() -> int:
            self.fs.setattr(
                self._path(path) if node is None else path,
                node,
                mode=attr.st_mode & 0o7777 if attr.st_mode is not None else None,
                uid=attr.st_uid,
                gid=attr.st_gid,
                size=attr.st_size,
                mtime=attr.st_mtime,
                cred=self.cred,
            )
            return SFTP_OK

        return self._do("setstat", do) if node is None else self._do("fsetstat", do)

    def canonicalize(self, path: str) -> str:
        return self._path(path)

    def readlink(self, path: str) -> int:
        return SFTP_OP_UNSUPPORTED

    def symlink(self, target_path: str, path: str) -> int:
        return SFTP_OP_UNSUPPORTED


# -- the sandbox ------------------------------------------------------------------------


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
        self.aws_probe = aws_probe
        self.user, self.uid, self.gid, self.label = user, uid, gid, label
        self.home = "/root" if uid == 0 else f"/home/{user}"
        self.fs = MemFS(enforce_permissions)
        self.fs.makedirs(self.home, 0o700, uid, gid)
        self._host_key = _generate_key(host_key_type)
        self._client_key = _generate_key("ed25519")
        self.authorized_keys: list[paramiko.PKey] = [self._client_key.pkey]
        self.services: dict[str, Service] = {}
        self.calls: Counter[str] = Counter()
        self.commands: list[str] = []  # every exec command received, verbatim
        self.env_requests: list[tuple[str, str]] = []  # every env request (refused)
        self._lock = threading.RLock()
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._refusing = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._transports: list[paramiko.Transport] = []

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._port}" if self._port else "not started"
        return f"SshSandbox({self.label}, {self.user}@{where}, services={sorted(self.services)})"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> SshSandbox:
        self._listen(0)
        self._thread = threading.Thread(target=self._accept_loop, name=f"sandbox-ssh-{self.label}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._close_listener()
        with self._lock:
            transports, self._transports = self._transports, []
        for t in transports:
            t.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SshSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        assert self._port is not None, "start() first"
        return self._port

    def _listen(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.settimeout(0.2)
        with self._lock:
            self._listener, self._port = sock, sock.getsockname()[1]

    def _close_listener(self) -> None:
        with self._lock:
            sock, self._listener = self._listener, None
        if sock is not None:
            try:
                # shutdown wakes a thread blocked in accept() and stops the backlog at
                # once, so a refused connection is refused from the moment we return.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                sock = self._listener
            if sock is None:
                time.sleep(0.05)
                continue
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            self._count("connections")
            threading.Thread(target=self._serve_connection, args=(conn,), name="sandbox-ssh-conn", daemon=True).start()

    def _serve_connection(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        # Small request/response exchanges otherwise stall on Nagle + delayed ACK (~40 ms).
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(conn)
        # Quiet by default (a client hanging up is not news); visible if the app
        # configures logging, since records still propagate.
        transport.set_log_channel(_LOG_CHANNEL)
        with self._lock:
            transport.add_server_key(self._host_key.pkey)
            self._transports.append(transport)
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _MemSftp, self)
        try:
            transport.start_server(server=_Connection(self))
            # Channels are served by the exec/subsystem callbacks. The transport holds
            # channels weakly and a collected Channel closes itself, so keep each one
            # referenced here until it is closed.
            open_channels: list[paramiko.Channel] = []
            while transport.is_active() and not self._stopping.is_set():
                channel = transport.accept(timeout=0.5)
                open_channels = [c for c in open_channels if not c.closed]
                if channel is not None:
                    open_channels.append(channel)
        except (paramiko.SSHException, EOFError, OSError):
            self._count("handshake_failed")
        finally:
            transport.close()
            with self._lock:
                if transport in self._transports:
                    self._transports.remove(transport)

    # -- faults -------------------------------------------------------------------------

    @property
    def refuse_connections(self) -> bool:
        return self._refusing

    @refuse_connections.setter
    def refuse_connections(self, refuse: bool) -> None:
        """True: stop listening (clients get ECONNREFUSED). False: listen again, same port."""
        with self._lock:
            if refuse == self._refusing:
                return
            self._refusing = refuse
        if refuse:
            self._close_listener()
        elif self._port is not None:
            self._listen(self._port)

    def fail_restart(self, service: str, times: int = 1) -> None:
        """Make the next `times` restarts of `service` fail (the service ends up failed)."""
        with self._lock:
            self._service(service).fail_next = times

    def swap_host_key(self, key_type: str | None = None) -> paramiko.PKey:
        """Serve a new host key from the next connection on (a "wrong host key")."""
        kind = key_type or ("rsa" if isinstance(self._host_key.pkey, paramiko.RSAKey) else "ed25519")
        with self._lock:
            self._host_key = _generate_key(kind)
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
        label = label or self.label
        with self._lock:
            if any(s.label == label for s in self.services.values()):
                raise ValueError(f"sandbox ssh: label {label!r} is already used by another service")
            svc = Service(name, self.fs.norm(env_file), health_command or f"{name} healthcheck", label)
            self.services[name] = svc
            if self.fs.exists(svc.env_file):
                self._start(svc)
        return svc

    def holdings(self) -> dict[str, tuple[str | None, Secret | None]]:
        """{"ssh:<label>": (key id, secret)} as each service's env file holds them now."""
        out = {}
        for svc in list(self.services.values()):
            try:
                env = parse_environment_file(self.fs.read(svc.env_file).decode("utf-8", "replace"))
            except OSError:
                env = {}
            out[f"ssh:{svc.label}"] = _pair_of(env)
        return out

    def loaded(self) -> dict[str, tuple[str | None, Secret | None]]:
        """{"ssh:<label>": (key id, secret)} as each running service loaded them."""
        return {f"ssh:{svc.label}": _pair_of(svc.loaded) for svc in list(self.services.values())}

    def service_state(self, name: str) -> str:
        return self._service(name).state

    # -- bookkeeping --------------------------------------------------------------------

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

    def _service(self, name: str) -> Service:
        name = name.removesuffix(".service")
        try:
            return self.services[name]
        except KeyError:
            raise KeyError(f"sandbox ssh: no service named {name!r}") from None

    # -- exec ---------------------------------------------------------------------------

    def _serve_exec(self, channel: paramiko.Channel, command: str) -> None:
        try:
            result = self.run_command(command)
        except Exception as exc:  # a sandbox bug must show as a failed command, not a hang
            result = ExecResult(255, "", redact(f"sandbox ssh: internal error: {type(exc).__name__}: {exc}\n"))
        try:
            if result.stdout:
                channel.sendall(result.stdout.encode())
            if result.stderr:
                channel.sendall_stderr(result.stderr.encode())
            channel.send_exit_status(result.status)
            channel.shutdown_write()
            # Wait for the client to close (or a short while): closing first could beat
            # the server's reply to the exec request, which the client reads as failure.
            channel.settimeout(2.0)
            while channel.recv(4096):
                pass
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            try:
                channel.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the client hung up first: nothing left to close politely

    def run_command(self, command: str, as_root: bool = False) -> ExecResult:
        """Interpret `command` as the sandbox's shell would: `;`, `&&`, `||` chains of
        the supported commands. No pipes or redirections."""
        try:
            lex = shlex.shlex(command, posix=True, punctuation_chars=";&|<>")
            lex.whitespace_split = True
            tokens = list(lex)
        except ValueError as exc:
            return ExecResult(2, "", f"bash: syntax error: {exc}\n")
        out, err, status = [], [], 0
        segment: list[str] = []
        run_next = True
        for token in tokens + [";"]:
            if token in (";", "&&", "||"):
                if segment and run_next:
                    r = self._run_simple(segment, as_root)
                    out.append(r.stdout)
                    err.append(r.stderr)
                    status = r.status
                segment = []
                run_next = token == ";" or (token == "&&") == (status == 0)
            elif token and set(token) <= set(";&|<>"):
                return ExecResult(2, "", f"sandbox shell: {token!r} is not supported\n")
            else:
                segment.append(token)
        return ExecResult(status, "".join(out), "".join(err))

    def _run_simple(self, argv: list[str], as_root: bool) -> ExecResult:
        elevated = as_root or self.uid == 0
        if argv[0] == "sudo":
            argv = argv[1:]
            while argv and argv[0].startswith("-"):  # sudo -n, -E ...: accepted, ignored
                argv = argv[1:]
            elevated = True
            if not argv:
                return ExecResult(1, "", "usage: sudo command\n")
        self._count(f"exec:{argv[0]}")
        name = argv[0]
        if name == "systemctl":
            return self._systemctl(argv[1:], elevated)
        if name == "cat":
            return self._cat(argv[1:], elevated)
        if name == "true":
            return ExecResult(0)
        if name == "false":
            return ExecResult(1)
        joined = shlex.join(argv)
        for svc in list(self.services.values()):
            if joined == shlex.join(shlex.split(svc.health_command)):
                return self._health(svc)
        return ExecResult(127, "", f"bash: {name}: command not found\n")

    def _cat(self, files: list[str], elevated: bool) -> ExecResult:
        out, err, status = [], [], 0
        for f in files:
            try:
                data = self.fs.read(self.fs.norm(f, self.home), None if elevated else Cred(self.uid, self.gid))
                out.append(data.decode("utf-8", "replace"))
            except FileNotFoundError:
                err.append(f"cat: {f}: No such file or directory\n")
                status = 1
            except PermissionError:
                err.append(f"cat: {f}: Permission denied\n")
                status = 1
            except IsADirectoryError:
                err.append(f"cat: {f}: Is a directory\n")
                status = 1
        return ExecResult(status, "".join(out), "".join(err))

    def _systemctl(self, args: list[str], elevated: bool) -> ExecResult:
        if len(args) != 2:
            return ExecResult(1, "", "sandbox systemctl: usage: systemctl restart|start|stop|is-active|status <unit>\n")
        verb, unit = args[0], args[1].removesuffix(".service")
        svc = self.services.get(unit)
        if verb == "is-active":
            state = svc.state if svc else "inactive"
            return ExecResult(0 if state == "active" else 3, state + "\n")
        if verb == "status":
            if svc is None:
                return ExecResult(4, "", f"Unit {unit}.service could not be found.\n")
            since = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(svc.active_since)) if svc.active_since else ""
            active = {
                "active": f"active (running) since {since}",
                "failed": "failed (Result: exit-code)",
                "inactive": "inactive (dead)",
            }[svc.state]
            text = (
                f"● {unit}.service - {unit} (sandbox)\n"
                f"     Loaded: loaded (/etc/systemd/system/{unit}.service; enabled)\n"
                f"     Active: {active}\n"
            )
            return ExecResult(0 if svc.state == "active" else 3, text)
        if verb in ("restart", "start", "stop"):
            if not elevated:
                return ExecResult(1, "", f"Failed to {verb} {unit}.service: Interactive authentication required.\n")
            if svc is None:
                return ExecResult(5, "", f"Failed to {verb} {unit}.service: Unit {unit}.service not found.\n")
            with self._lock:
                if verb == "stop":
                    svc.state, svc.loaded, svc.active_since = "inactive", {}, None
                    return ExecResult(0)
                if svc.fail_next > 0:
                    svc.fail_next -= 1
                    svc.state, svc.loaded, svc.active_since = "failed", {}, None
                    return ExecResult(1, "", _job_failed(unit))
                if not self._start(svc):
                    return ExecResult(1, "", _job_failed(unit))
            return ExecResult(0)
        return ExecResult(1, "", f"Unknown command verb {verb}.\n")

    def _start(self, svc: Service) -> bool:
        """(Re)start: read the EnvironmentFile as it is on disk now."""
        try:
            text = self.fs.read(svc.env_file).decode("utf-8", "replace")
        except OSError:
            svc.state, svc.loaded, svc.active_since = "failed", {}, None
            return False
        svc.loaded = parse_environment_file(text)
        svc.state, svc.active_since = "active", time.time()
        svc.restarts += 1
        return True

    def _health(self, svc: Service) -> ExecResult:
        self._count(f"health:{svc.name}")
        if svc.state != "active":
            return ExecResult(1, "", f"{svc.name}: service is not running ({svc.state})\n")
        key_id, secret = _pair_of(svc.loaded)
        if not key_id or secret is None:
            return ExecResult(1, "", f"{svc.name}: no AWS credentials in its environment ({svc.env_file})\n")
        if self.aws_probe is None:
            return ExecResult(0, f"{svc.name}: healthy ({key_id}; no AWS probe configured)\n")
        try:
            ok, message = self.aws_probe(key_id, secret)
        except Exception as exc:  # a probe failure is an unhealthy service, not a crash
            ok, message = False, f"{type(exc).__name__}: {exc}"
        message = redact(message)
        if ok:
            return ExecResult(0, f"{svc.name}: healthy ({key_id}): {message}\n")
        return ExecResult(1, "", f"{svc.name}: unhealthy ({key_id}): {message}\n")


def _job_failed(unit: str) -> str:
    return (
        f"Job for {unit}.service failed because the control process exited with error code.\n"
        f'See "systemctl status {unit}.service" and "journalctl -xeu {unit}.service" for details.\n'
    )


def _pair_of(env: dict[str, str]) -> tuple[str | None, Secret | None]:
    secret = env.get(SECRET_VAR)
    return env.get(KEY_ID_VAR) or None, Secret(secret, SECRET_VAR) if secret else None
