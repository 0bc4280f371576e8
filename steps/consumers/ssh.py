"""The SSH host consumer: a service on a host that reads the key pair from an env file.

`SshHostConsumer` rewrites the two variables in the env file over SFTP and restarts the
service. The rules it keeps:

- the host key is checked against known_hosts with a RejectPolicy: an unknown or
  changed key stops everything before a byte is written;
- the secret travels only inside the SFTP file content: never in a command line, an
  exec argument or an environment request; commands are checked for known secrets
  before they are sent;
- the file is replaced atomically: a temp file in the same directory is written with
  0600, given the original's owner and mode, then renamed over the original with
  posix-rename (a reader sees the old file or the new one, never half of either);
- only the two lines change: comments, order, other variables, `export`, quoting
  style and line endings are kept;
- every error is an AdapterError of one line naming user@host:port and what failed;
  evidence and errors are scrubbed with the redactor.
"""

from __future__ import annotations

import errno
import getpass
import os
import posixpath
import re
import secrets as pyrandom
import shlex
import socket
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

import paramiko

from steps.clock import Progress
from steps.consumers.base import ELIDED_PORT, LOOPBACK, AdapterError, Check, Pair, ProbeResult, Result
from steps.secrets import MASK, REDACTOR, Secret, redact

DEFAULT_ENV_FILE = "/etc/raxx/credentials.env"
DEFAULT_RESTART = "sudo systemctl restart raxx-vault"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"

PathLike = str | os.PathLike[str]
# What a dropped or failing connection raises from inside paramiko's SFTP and channels.
_WIRE_ERRORS = (OSError, EOFError, paramiko.SSHException)
# systemctl verbs that act on a unit the probe can look up with `systemctl cat`.
_UNIT_VERBS = ("restart", "try-restart", "reload-or-restart", "try-reload-or-restart", "reload", "start")
# sudo options that take a value (the probe skips them to find the program).
_SUDO_ARG_OPTS = ("-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-T", "-U")
_SHELL_OPS = (";", "&&", "||", "|", "&")


# -- env file editing (pure functions) ----------------------------------------------------

_ASSIGN = re.compile(r"^(?P<indent>[ \t]*)(?P<export>export[ \t]+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>[ \t]*=[ \t]*)(?P<value>.*)$")
_BARE_SAFE = re.compile(r"[A-Za-z0-9_+/=.,:@%-]+")
_DQ_ESCAPES = '"\\$`'


def _split_value(raw: str) -> tuple[str, str | None, str]:
    """(value, quote style, text after the closing quote) of an assignment's right side.

    Quoted values end at their closing quote and what follows (e.g. `# note`) is kept on
    rewrite; an unquoted value is the rest of the line, trimmed, as systemd reads it.
    """
    if raw[:1] == "'":
        end = raw.find("'", 1)
        if end != -1:
            return raw[1:end], "'", raw[end + 1 :]
    elif raw[:1] == '"':
        out, i = [], 1
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                nxt = raw[i + 1]
                out.append(nxt if nxt in _DQ_ESCAPES else ch + nxt)
                i += 2
                continue
            if ch == '"':
                return "".join(out), '"', raw[i + 1 :]
            out.append(ch)
            i += 1
    return raw.strip(), None, ""


def _format_value(value: str, quote: str | None) -> str:
    """`value` written in the original's quoting style where that can hold it."""
    if quote == "'" and "'" not in value:
        return f"'{value}'"
    if quote is None and _BARE_SAFE.fullmatch(value):
        return value
    escaped = "".join("\\" + ch if ch in _DQ_ESCAPES else ch for ch in value)
    return f'"{escaped}"'


def parse_env(text: str) -> dict[str, str]:
    """Variables of an env file (systemd EnvironmentFile or shell `export` style).
    The last assignment of a name wins, as in both."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        m = _ASSIGN.match(line)
        if m:
            env[m["name"]] = _split_value(m["value"])[0]
    return env


@dataclass(frozen=True)
class Rewrite:
    text: str
    replaced: int  # assignment lines rewritten in place
    appended: list[str]  # names that were missing and added at the end
    kept: int  # lines left exactly as they were


def rewrite_env(text: str, updates: dict[str, str]) -> Rewrite:
    """Set each name in `updates`, touching only those names' lines.

    Every assignment of a managed name is rewritten (a stale duplicate would leave the
    old secret on disk, and the last one wins anyway); missing names are appended,
    with `export ` if the file uses it.
    """
    for name, value in updates.items():
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"{name}: a value with a newline or NUL cannot go in an env file")
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    out: list[str] = []
    seen: set[str] = set()
    managed_export = False
    file_export = False
    replaced = kept = 0
    for line in lines:
        body = line.rstrip("\r\n")
        eol = line[len(body) :]
        m = _ASSIGN.match(body)
        if m and m["export"]:
            file_export = True
        if m and m["name"] in updates:
            _, quote, rest = _split_value(m["value"])
            value = _format_value(updates[m["name"]], quote)
            out.append(f"{m['indent']}{m['export'] or ''}{m['name']}{m['eq']}{value}{rest}{eol}")
            seen.add(m["name"])
            managed_export = managed_export or bool(m["export"])
            replaced += 1
        else:
            out.append(line)
            kept += 1
    missing = [name for name in updates if name not in seen]
    if missing:
        if out and not out[-1].endswith("\n"):
            out[-1] += newline
        prefix = "export " if (managed_export if seen else file_export) else ""
        out.extend(f"{prefix}{name}={_format_value(updates[name], None)}{newline}" for name in missing)
    return Rewrite("".join(out), replaced, missing, kept)


# -- host key policy ----------------------------------------------------------------------


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"Server {hostname!r} not found in known_hosts")
        self.key = key


class _RejectUnknown(paramiko.RejectPolicy):
    """RejectPolicy that keeps the offered key, so the error can show its fingerprint."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
        raise _UnknownHostKey(hostname, key)


# -- the adapter --------------------------------------------------------------------------


def _expand(path: PathLike) -> str:
    return os.path.expanduser(os.fspath(path))


def _one_line(text: str, limit: int = 300) -> str:
    text = " | ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sftp_reason(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return "no such file"
    if code == errno.EACCES:
        return "permission denied"
    return str(exc) or type(exc).__name__


class SshHostConsumer:
    """A host reached over SSH whose service reads the pair from an env file.

    Connection settings not given here come from the OpenSSH client config
    (`ssh_config`, default ~/.ssh/config): HostName, Port, User, IdentityFile,
    UserKnownHostsFile, IdentitiesOnly, ProxyCommand. `port=None` and
    `user=None` mean "from the config, else 22 / the local user name".
    StrictHostKeyChecking in the config is ignored: unknown keys are always refused.
    """

    kind = "ssh"

    def __init__(
        self,
        label: str,
        host: str,
        port: int | None = None,
        user: str | None = None,
        key_filename: PathLike | Sequence[PathLike] | None = None,
        pkey: paramiko.PKey | None = None,
        use_agent: bool = True,
        known_hosts: PathLike | Sequence[PathLike] | None = None,
        env_file: str = DEFAULT_ENV_FILE,
        restart_command: str | None = DEFAULT_RESTART,
        verify_command: str | None = None,
        ssh_config: PathLike | None = None,
        key_id_var: str = "AWS_ACCESS_KEY_ID",
        secret_var: str = "AWS_SECRET_ACCESS_KEY",
        timeout: float = 15.0,
        command_timeout: float = 120.0,
    ) -> None:
        self.label = label
        self.name = f"ssh:{label}"
        self.host = host  # as given (may be an ssh config alias)
        self.env_file = env_file
        self.restart_command = restart_command
        self.verify_command = verify_command
        self.key_id_var, self.secret_var = key_id_var, secret_var
        self.timeout, self.command_timeout = timeout, command_timeout
        self._pkey = pkey
        self._explicit_port = port

        opts = self._config_for(host, ssh_config)
        self.hostname: str = opts.get("hostname", host)
        self.port: int = int(port if port is not None else opts.get("port", 22))
        self.user: str = user or opts.get("user") or getpass.getuser()
        self._proxy_command: str | None = opts.get("proxycommand")
        if self._proxy_command and self._proxy_command.lower() == "none":
            self._proxy_command = None
        self._proxy_jump: str | None = opts.get("proxyjump")

        explicit_keys = [key_filename] if isinstance(key_filename, (str, os.PathLike)) else list(key_filename or [])
        self._key_filenames = [_expand(k) for k in explicit_keys]
        for path in self._key_filenames:
            if not os.path.exists(path):
                raise AdapterError(f"{self.name}: key file {path} not found")
        # Config IdentityFiles that do not exist are skipped, as ssh does.
        self._key_filenames += [
            p for p in (_expand(k) for k in opts.get("identityfile", [])) if os.path.exists(p) and p not in self._key_filenames
        ]
        identities_only = opts.get("identitiesonly", "no").lower() == "yes"
        self._allow_agent = use_agent and not (identities_only and (self._key_filenames or pkey))

        if known_hosts is not None:
            paths = [known_hosts] if isinstance(known_hosts, (str, os.PathLike)) else list(known_hosts)
            self._known_hosts = [_expand(p) for p in paths]
        elif "userknownhostsfile" in opts:
            self._known_hosts = [_expand(p) for p in opts["userknownhostsfile"].split()]
            self._known_hosts.append(GLOBAL_KNOWN_HOSTS)
        else:
            self._known_hosts = [_expand("~/.ssh/known_hosts"), GLOBAL_KNOWN_HOSTS]

    def __repr__(self) -> str:
        return f"SshHostConsumer({self.name}, {self.where}, env_file={self.env_file})"

    @property
    def where(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    def _fail(self, what: str) -> AdapterError:
        return AdapterError(redact(f"{self.name}: {self.where}: {what}"))

    def _config_for(self, host: str, ssh_config: PathLike | None) -> dict[str, Any]:
        """`host`'s options from the ssh config: strings, a list for "identityfile"."""
        path = _expand(ssh_config) if ssh_config is not None else _expand("~/.ssh/config")
        if not os.path.exists(path):
            if ssh_config is not None:
                raise AdapterError(f"ssh:{self.label}: ssh config {path} not found")
            return {"hostname": host}
        try:
            return dict(paramiko.SSHConfig.from_path(path).lookup(host))
        except Exception as exc:  # a broken config must name itself, not crash the runbook
            raise AdapterError(f"ssh:{self.label}: cannot read ssh config {path}: {exc}") from None

    # -- display ------------------------------------------------------------------------

    def _ssh(self) -> str:
        """`ssh` with the port it needs; a loopback (sandbox) port is elided, as it changes every run."""
        if self._explicit_port is None or self._explicit_port == 22:
            return "ssh"
        return f"ssh -p {ELIDED_PORT if self.hostname in LOOPBACK else self._explicit_port}"

    def command(self, pair_key_id: str) -> str:
        ssh = self._ssh()
        target = f"{self.user}@{self.host}"
        text = f"{ssh} {target} {shlex.quote('sudoedit ' + self.env_file)} ({self.key_id_var}={pair_key_id}, {self.secret_var}={MASK})"
        if self.restart_command:
            text += f" && {ssh} {target} {shlex.quote(self.restart_command)}"
        return redact(text)

    def verification(self) -> str:
        ssh = self._ssh()
        target = f"{self.user}@{self.host}"
        if self.verify_command:
            return f"{ssh} {target} {shlex.quote(self.verify_command)}"
        return f"{ssh} {target} {shlex.quote(f'grep -c {self.key_id_var} {self.env_file}')}"

    # -- probe --------------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        """Connect (the host key must be in known_hosts), stat and read the env file over
        SFTP (names only), and look up the restart and verify commands' programs with
        `command -v`, a systemctl unit with `systemctl cat`, sudo with `sudo -n -l`.
        Runs none of the commands and writes nothing."""
        result = ProbeResult(self.name)
        try:
            client = self._connect()
        except AdapterError as exc:
            result.failed("host key and login", str(exc))
            return result
        step = "env file"
        try:
            transport = client.get_transport()
            key = transport.get_remote_server_key() if transport is not None else None
            shown = f"host key {key.get_name()} {key.fingerprint}" if key is not None else "host key"
            result.passed("host key and login", f"{self.where}: {shown} is in known_hosts; logged in")
            result.checks.append(self._probe_env_file(client))
            for step, command in (("restart command", self.restart_command), ("verify command", self.verify_command)):
                if result.ok:
                    result.checks.append(self._probe_command(client, step, command))
        except AdapterError as exc:
            result.failed(step, str(exc))
        finally:
            client.close()
        return result

    def _probe_env_file(self, client: paramiko.SSHClient) -> Check:
        try:
            sftp = client.open_sftp()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._fail(f"cannot open the SFTP subsystem: {exc or type(exc).__name__}") from None
        try:
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(self.command_timeout)
            path, attrs = self._resolve_env_file(sftp)
            env = parse_env(self._read_text(sftp, path))
        finally:
            sftp.close()
        if env.get(self.secret_var):
            Secret(env[self.secret_var], self.secret_var)  # known to the redactor from here on
        mode = f"{stat.S_IMODE(attrs.st_mode):04o}" if attrs.st_mode is not None else "?"
        where = f"env file {path} (mode {mode}, uid:gid {attrs.st_uid}:{attrs.st_gid})"
        missing = [name for name in (self.key_id_var, self.secret_var) if not env.get(name)]
        if missing:
            return Check("env file", False, f"{where} readable, but {' and '.join(missing)} not set in it")
        return Check("env file", True, f"{where} readable; {self.key_id_var} ({env[self.key_id_var]}) and {self.secret_var} set")

    def _probe_command(self, client: paramiko.SSHClient, what: str, command: str | None) -> Check:
        """Whether `command` could run: its program exists, its systemctl unit exists,
        sudo allows it without a password. Only its first simple command is looked at."""
        if not command:
            note = "the service will not be restarted" if what == "restart command" else "verify checks the env file only"
            return Check(what, True, f"none configured: {note}")
        try:
            words = shlex.split(command)
        except ValueError as exc:
            return Check(what, False, f"`{command}` does not parse: {exc}")
        words = words[: next((i for i, w in enumerate(words) if w in _SHELL_OPS), len(words))]
        sudo = words[:1] == ["sudo"]
        argv = words[1:] if sudo else words
        sudo_opts: list[str] = []
        while sudo and argv and argv[0].startswith("-"):
            sudo_opts.append(argv.pop(0))
            if sudo_opts[-1] in _SUDO_ARG_OPTS and argv:
                sudo_opts.append(argv.pop(0))
        while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
            argv.pop(0)
        if not argv:
            return Check(what, False, f"`{command}` names no program")
        program = argv[0]
        status, out, err = self._exec(client, f"command -v {shlex.quote(program)}")
        if status != 0:
            return Check(what, False, f"`{command}`: {program} not found on the host (command -v {program} exited {status})")
        found = [f"{program} found" + (f" ({_one_line(out, 80)})" if out.strip() and out.strip() != program else "")]
        if posixpath.basename(program) == "systemctl" and len(argv) >= 3 and argv[1] in _UNIT_VERBS:
            for unit in (a for a in argv[2:] if not a.startswith("-")):
                status, out, err = self._exec(client, f"systemctl cat {shlex.quote(unit)}")
                if status != 0:
                    detail = _one_line(err or out, 120) or f"exited {status}"
                    return Check(what, False, f"`{command}`: unit {unit} not found on the host ({detail})")
                found.append(f"unit {unit} exists")
        if sudo:
            status, out, err = self._exec(client, shlex.join(["sudo", "-n", "-l", *sudo_opts, *argv]))
            if status != 0:
                detail = _one_line(err or out, 120) or f"exited {status}"
                return Check(what, False, f"`{command}`: sudo would not run it without a password ({detail})")
            found.append("sudo -n allows it")
        return Check(what, True, f"`{command}`: " + ", ".join(found) + " (not run)")

    # -- connection ---------------------------------------------------------------------

    def _open_socket(self) -> socket.socket | paramiko.ProxyCommand:
        if self._proxy_jump and self._proxy_jump.lower() != "none":
            raise self._fail(f"ProxyJump {self._proxy_jump} is not supported; use ProxyCommand ssh -W %h:%p {self._proxy_jump}")
        if self._proxy_command:
            try:
                return paramiko.ProxyCommand(self._proxy_command)
            except Exception as exc:
                raise self._fail(f"ProxyCommand failed to start: {exc}") from None
        try:
            sock = socket.create_connection((self.hostname, self.port), timeout=self.timeout)
        except socket.gaierror as exc:
            raise self._fail(f"cannot resolve host name {self.hostname}: {exc.strerror or exc}") from None
        except ConnectionRefusedError:
            raise self._fail("connection refused (is sshd running and listening on that port?)") from None
        except TimeoutError:
            raise self._fail(f"connection timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise self._fail(f"cannot connect: {exc.strerror or exc}") from None
        # Small request/response exchanges otherwise stall on Nagle + delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        host_keys = client.get_host_keys()
        loaded = []
        for path in self._known_hosts:
            if os.path.exists(path):
                try:
                    host_keys.load(path)
                except OSError as exc:
                    raise self._fail(f"cannot read known_hosts {path}: {exc.strerror or exc}") from None
                loaded.append(path)
        # Never auto-accept: an unknown key is an error the operator resolves out of band.
        client.set_missing_host_key_policy(_RejectUnknown())
        sock = self._open_socket()
        try:
            client.connect(
                hostname=self.hostname,
                port=self.port,
                username=self.user,
                pkey=self._pkey,
                # paramiko takes a list of key files (as documented); its stub says one str.
                key_filename=self._key_filenames or None,  # type: ignore[arg-type]
                allow_agent=self._allow_agent,
                look_for_keys=not (self._pkey or self._key_filenames),
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                channel_timeout=self.timeout,
                sock=sock,
            )
        except _UnknownHostKey as exc:
            client.close()
            searched = ", ".join(self._known_hosts)
            raise self._fail(
                f"host key {exc.key.get_name()} {exc.key.fingerprint} is not in known_hosts ({searched}); "
                "check it out of band and add it — handrail never accepts an unknown host key"
            ) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise self._fail(
                f"HOST KEY MISMATCH: server offered {exc.key.get_name()} {exc.key.fingerprint}, known_hosts has "
                f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint} — possible man-in-the-middle or a "
                "rebuilt host; not connecting"
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            tried = []
            if self._pkey is not None:
                tried.append(f"{self._pkey.get_name()} key {self._pkey.fingerprint}")
            tried += [f"key file {k}" for k in self._key_filenames]
            if self._allow_agent:
                tried.append("ssh-agent")
            if not (self._pkey or self._key_filenames):
                tried.append("default keys in ~/.ssh")
            raise self._fail(f"authentication failed ({exc}); tried: {', '.join(tried) or 'nothing'}") from None
        except TimeoutError:
            client.close()
            raise self._fail(f"SSH handshake timed out after {self.timeout:g}s") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            client.close()
            raise self._fail(f"SSH handshake failed: {exc or type(exc).__name__}") from None
        return client

    @contextmanager
    def _session(self) -> Iterator[tuple[paramiko.SSHClient, paramiko.SFTPClient]]:
        """One connection (and its SFTP channel) for one operation, always closed."""
        client = self._connect()
        try:
            try:
                sftp = client.open_sftp()
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise self._fail(f"cannot open the SFTP subsystem: {exc or type(exc).__name__}") from None
            try:
                channel = sftp.get_channel()
                if channel is None:  # an SFTPClient from open_sftp() always has one
                    raise self._fail("the SFTP session has no channel")
                channel.settimeout(self.command_timeout)
                yield client, sftp
            finally:
                sftp.close()
        finally:
            client.close()

    def _exec(self, client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
        """Run `command`; (exit status, stdout, stderr), both outputs redacted."""
        if REDACTOR.contains_secret(command):
            # Belt and braces: a command line shows in `ps`, shell history and logs.
            raise self._fail("refusing to run a command whose text contains a secret value")
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise self._fail(f"connection lost before running `{command}`")
        try:
            channel = transport.open_session(timeout=self.timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._fail(f"cannot open a channel for `{command}`: {exc or type(exc).__name__}") from None
        try:
            channel.settimeout(self.command_timeout)
            channel.exec_command(command)
            # Outputs here are short (restart, health check): read stdout, then stderr.
            stdout = channel.makefile("rb").read()
            stderr = channel.makefile_stderr("rb").read()
            if not channel.status_event.wait(self.command_timeout):
                raise self._fail(f"`{command}` gave no exit status within {self.command_timeout:g}s")
            status = channel.exit_status
        except TimeoutError:
            raise self._fail(f"`{command}` timed out after {self.command_timeout:g}s") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._fail(f"running `{command}` failed: {exc or type(exc).__name__}") from None
        finally:
            channel.close()
        return status, redact(stdout.decode("utf-8", "replace")), redact(stderr.decode("utf-8", "replace"))

    # -- the env file over SFTP -----------------------------------------------------------

    def _resolve_env_file(self, sftp: paramiko.SFTPClient) -> tuple[str, paramiko.SFTPAttributes]:
        """The env file's real path (through a symlink: renaming over a link would
        replace the link, not the file the service reads) and its attributes."""
        path = self.env_file
        try:
            attrs = sftp.lstat(path)
            if attrs.st_mode is not None and stat.S_ISLNK(attrs.st_mode):
                path = sftp.normalize(path)
                attrs = sftp.stat(path)
        except _WIRE_ERRORS as exc:
            raise self._fail(f"env file {self.env_file}: {_sftp_reason(exc)}") from None
        if attrs.st_mode is not None and not stat.S_ISREG(attrs.st_mode):
            raise self._fail(f"env file {path} is not a regular file")
        return path, attrs

    def _read_text(self, sftp: paramiko.SFTPClient, path: str) -> str:
        try:
            with sftp.open(path, "rb") as f:
                data = f.read()
        except _WIRE_ERRORS as exc:
            raise self._fail(f"reading {path} over SFTP failed: {_sftp_reason(exc)}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(f"env file {path} is not UTF-8 text") from None

    def _held(self, text: str) -> tuple[str | None, Secret | None]:
        env = parse_env(text)
        secret = env.get(self.secret_var)
        return env.get(self.key_id_var) or None, Secret(secret, self.secret_var) if secret else None

    def read_key_id(self) -> str | None:
        with self._session() as (_, sftp):
            path, _ = self._resolve_env_file(sftp)
            return self._held(self._read_text(sftp, path))[0]

    def read_pair(self) -> Pair | None:
        """The pair the env file holds now, or None if either variable is unset or empty."""
        with self._session() as (_, sftp):
            path, _ = self._resolve_env_file(sftp)
            key_id, secret = self._held(self._read_text(sftp, path))
        return Pair(key_id, secret) if key_id and secret is not None else None

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its own connection."""

    def write_pair(self, pair: Pair) -> Result:
        with self._session() as (client, sftp):
            path, attrs = self._resolve_env_file(sftp)
            old_text = self._read_text(sftp, path)
            old_key_id = self._held(old_text)[0]
            try:
                rewrite = rewrite_env(old_text, {self.key_id_var: pair.key_id, self.secret_var: pair.secret.reveal()})
            except ValueError as exc:
                raise self._fail(str(exc)) from None
            mode = stat.S_IMODE(attrs.st_mode) if attrs.st_mode is not None else 0o600
            tmp = self._replace_atomically(sftp, path, rewrite.text.encode("utf-8"), mode, attrs.st_uid, attrs.st_gid)

            # Read back what the service will read.
            try:
                final = sftp.stat(path)
            except _WIRE_ERRORS as exc:
                raise self._fail(f"stat {path} after the rename failed: {_sftp_reason(exc)}") from None
            held_id, held_secret = self._held(self._read_text(sftp, path))
            if held_id != pair.key_id or held_secret is None or held_secret.fingerprint() != pair.fingerprint():
                raise self._fail(f"read-back of {path} after the rename does not show the new pair (concurrent edit?)")
            if final.st_mode is None:  # OpenSSH always reports it; without it nothing can be compared
                raise self._fail(f"stat {path} after the rename did not report its mode")
            was = (mode, attrs.st_uid, attrs.st_gid)
            now = (stat.S_IMODE(final.st_mode), final.st_uid, final.st_gid)
            if now != was:
                raise self._fail(
                    f"{path} now holds {pair.key_id} but its mode/owner changed: "
                    f"{now[0]:04o} {now[1]}:{now[2]}, was {was[0]:04o} {was[1]}:{was[2]}"
                )

            evidence = [
                f"{self.where}: rewrote {path} over SFTP (temp file {posixpath.basename(tmp)} + atomic posix-rename)",
                f"kept mode {stat.S_IMODE(final.st_mode):04o} and owner uid:gid {final.st_uid}:{final.st_gid}",
                f"{self.key_id_var} now {pair.key_id} (was {old_key_id or 'absent'})",
                f"{self.secret_var} fingerprint {pair.fingerprint()}",
                f"{rewrite.kept} other line(s) kept as they were"
                + (f"; appended {', '.join(rewrite.appended)}" if rewrite.appended else ""),
            ]
            if self.restart_command:
                status, out, err = self._exec(client, self.restart_command)
                if status != 0:
                    detail = _one_line(err or out) or "no output"
                    raise self._fail(
                        f"restart failed: `{self.restart_command}` exited {status}: {detail} "
                        f"({path} already holds {pair.key_id}; the service may not be running it)"
                    )
                evidence.append(f"restart: `{self.restart_command}` exited 0" + (f": {_one_line(out)}" if out.strip() else ""))
            else:
                evidence.append("no restart_command configured: the service was not restarted")
        summary = f"{self.name}: {path} holds {pair.key_id}" + ("; service restarted" if self.restart_command else "")
        return Result(True, redact(summary), [redact(e) for e in evidence])

    def _replace_atomically(self, sftp: paramiko.SFTPClient, path: str, data: bytes, mode: int, uid: int | None, gid: int | None) -> str:
        """Write `data` to a temp file beside `path`, give it `path`'s owner and mode,
        and posix-rename it over `path`. Returns the temp file's name."""
        directory, base = posixpath.split(path)
        tmp = posixpath.join(directory, f".{base}.handrail-{pyrandom.token_hex(4)}.tmp")
        created = False
        step = "create"
        try:
            # "x": fail rather than follow anything already at that name.
            with sftp.open(tmp, "wbx") as f:
                created = True
                # The server creates it 0644-ish: close that before any content goes in.
                step = "chmod 0600"
                f.chmod(0o600)
                step = "write"
                f.write(data)
                f.flush()
                tmp_attrs = f.stat()
                if uid is not None and gid is not None and (tmp_attrs.st_uid, tmp_attrs.st_gid) != (uid, gid):
                    step = f"chown {uid}:{gid} (keep the original owner; connect as root or as the owner)"
                    f.chown(uid, gid)
                # chmod after chown: chown may clear setuid/setgid bits.
                step = f"chmod {mode:04o}"
                f.chmod(mode)
            step = "posix-rename over the original"
            sftp.posix_rename(tmp, path)
            return tmp
        except _WIRE_ERRORS as exc:
            reason = _sftp_reason(exc)
            if step.startswith("posix-rename") and "unsupported" in reason.lower():
                reason += " (server lacks posix-rename@openssh.com; not falling back to a non-atomic replace)"
            cleanup = ""
            if created:
                try:
                    sftp.remove(tmp)
                except _WIRE_ERRORS as rm_exc:
                    cleanup = f"; could not remove temp file {tmp}: {_sftp_reason(rm_exc)}"
            raise self._fail(f"writing {path} failed at {step} of temp file {tmp}: {reason}; {path} is unchanged{cleanup}") from None

    # -- verify -------------------------------------------------------------------------

    def verify(self, pair: Pair, *, written_at: datetime | None = None, progress: Progress | None = None) -> Result:
        """The env file holds `pair` (read back, so `written_at` is not needed) and the
        verify command, if any, exits 0 (no wait here: `progress` is unused)."""
        with self._session() as (client, sftp):
            path, _ = self._resolve_env_file(sftp)
            held_id, held_secret = self._held(self._read_text(sftp, path))
            held_fp = held_secret.fingerprint() if held_secret is not None else None
            evidence = [
                f"{self.where}: {path} holds {self.key_id_var}={held_id or 'absent'}, {self.secret_var} fingerprint {held_fp or 'absent'}"
            ]
            if held_id != pair.key_id or held_fp != pair.fingerprint():
                wrong = "key id" if held_id != pair.key_id else "secret"
                evidence.append(f"expected {pair.key_id} with fingerprint {pair.fingerprint()}")
                return Result(False, redact(f"{self.name}: {path} holds the wrong {wrong}"), [redact(e) for e in evidence])
            if not self.verify_command:
                evidence.append("no verify_command configured: checked the env file only")
                return Result(True, f"{self.name}: {path} holds {pair.key_id}", [redact(e) for e in evidence])
            status, out, err = self._exec(client, self.verify_command)
        output = "\n".join(part for part in (out.strip(), err.strip()) if part)
        evidence.append(f"`{self.verify_command}` exited {status}")
        evidence += [line for line in output.splitlines()[-20:]]
        ok = status == 0
        summary = (
            f"{self.name}: {path} holds {pair.key_id} and `{self.verify_command}` passed"
            if ok
            else f"{self.name}: `{self.verify_command}` exited {status}: {_one_line(output) or 'no output'}"
        )
        return Result(ok, redact(summary), [redact(e) for e in evidence])
