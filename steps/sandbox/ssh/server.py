"""The SSH side of the sandbox host: paramiko's ServerInterface and the listener.

`SshServer` listens on 127.0.0.1 (free port) and runs one daemon thread to accept and
one per connection; each connection gets a paramiko Transport with the host's current
host key, public-key auth through `Connection`, SFTP through `MemSftp` and exec
requests through the host's shell. It can stop listening and listen again on the same
port (the "host refuses connections" fault).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Protocol

import paramiko
from paramiko.common import AUTH_FAILED, AUTH_SUCCESSFUL, OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_SUCCEEDED

from steps.sandbox.ssh.commands import ExecResult
from steps.sandbox.ssh.fs import Cred, MemFS
from steps.sandbox.ssh.sftp import MemSftp
from steps.secrets import redact


class SshSandbox(Protocol):
    """What the listener needs of its host (steps.sandbox.ssh.host.SshSandbox), named
    here so the host can import the server without an import cycle."""

    user: str
    uid: int
    gid: int
    label: str
    home: str
    fs: MemFS
    authorized_keys: list[paramiko.PKey]

    @property
    def host_key(self) -> paramiko.PKey: ...

    def run_command(self, command: str, as_root: bool = False) -> ExecResult: ...

    def _count(self, what: str) -> None: ...

    def _record_command(self, command: str) -> None: ...

    def _record_env(self, name: str, value: str) -> None: ...


_LOG_CHANNEL = "handrail.sandbox.ssh"
logging.getLogger(_LOG_CHANNEL).addHandler(logging.NullHandler())

_HANGUP = (OSError, EOFError, paramiko.SSHException)  # a client that went away


class Connection(paramiko.ServerInterface):
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
            return AUTH_SUCCESSFUL
        sb._count("auth_failed")
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

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
        threading.Thread(target=self._exec, args=(channel, text), name="sandbox-ssh-exec", daemon=True).start()
        return True

    def _exec(self, channel: paramiko.Channel, command: str) -> None:
        try:
            result = self.sandbox.run_command(command)
        except Exception as exc:  # a sandbox bug must show as a failed command, not a hang
            result = ExecResult(255, "", redact(f"sandbox ssh: internal error: {type(exc).__name__}: {exc}\n"))
        send_result(channel, result)


def send_result(channel: paramiko.Channel, result: ExecResult) -> None:
    """Send output and exit status, then let the client close first."""
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
    except _HANGUP:
        pass
    finally:
        try:
            channel.close()
        except _HANGUP:
            pass  # the client hung up first: nothing left to close politely


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class SshServer:
    """The sandbox host's listener and its connections."""

    def __init__(self, sandbox: SshSandbox) -> None:
        self.sandbox = sandbox
        self._lock = threading.RLock()
        self._listener: socket.socket | None = None
        self.port: int | None = None  # kept while refusing: listening again reuses it
        self._refusing = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._transports: list[paramiko.Transport] = []

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._listen(0)
        self._thread = threading.Thread(target=self._accept_loop, name=f"sandbox-ssh-{self.sandbox.label}", daemon=True)
        self._thread.start()

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

    @property
    def refusing(self) -> bool:
        return self._refusing

    def refuse(self, refuse: bool) -> None:
        """True: stop listening (clients get ECONNREFUSED). False: listen again, same port."""
        with self._lock:
            if refuse == self._refusing:
                return
            self._refusing = refuse
        if refuse:
            self._close_listener()
        elif self.port is not None:
            self._listen(self.port)

    # -- the listening socket -----------------------------------------------------------

    def _listen(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.settimeout(0.2)
        with self._lock:
            self._listener, self.port = sock, sock.getsockname()[1]

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
            self.sandbox._count("connections")
            threading.Thread(target=self._serve_connection, args=(conn,), name="sandbox-ssh-conn", daemon=True).start()

    # -- one connection -----------------------------------------------------------------

    def _serve_connection(self, conn: socket.socket) -> None:
        transport = self._transport(conn)
        try:
            transport.start_server(server=Connection(self.sandbox))
            self._hold_channels(transport)
        except (paramiko.SSHException, EOFError, OSError):
            self.sandbox._count("handshake_failed")
        finally:
            transport.close()
            with self._lock:
                if transport in self._transports:
                    self._transports.remove(transport)

    def _transport(self, conn: socket.socket) -> paramiko.Transport:
        conn.settimeout(None)
        # Small request/response exchanges otherwise stall on Nagle + delayed ACK (~40 ms).
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(conn)
        # Quiet by default (a client hanging up is not news); visible if the app
        # configures logging, since records still propagate.
        transport.set_log_channel(_LOG_CHANNEL)
        sb = self.sandbox
        with self._lock:
            transport.add_server_key(sb.host_key)  # the current one: swap_host_key changes it
            self._transports.append(transport)
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, MemSftp, sb.fs, sb.home, sb._count)
        return transport

    def _hold_channels(self, transport: paramiko.Transport) -> None:
        # Channels are served by the exec/subsystem callbacks. The transport holds
        # channels weakly and a collected Channel closes itself, so keep each one
        # referenced here until it is closed.
        open_channels: list[paramiko.Channel] = []
        while transport.is_active() and not self._stopping.is_set():
            channel = transport.accept(timeout=0.5)
            open_channels = [c for c in open_channels if not c.closed]
            if channel is not None:
                open_channels.append(channel)
