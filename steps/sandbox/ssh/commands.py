"""The sandbox host's shell: the few commands an SSH exec request may run.

`;`, `&&` and `||` chains of: an optional `sudo`, `systemctl restart|start|stop|
is-active|status|cat <svc>`, `cat <file>`, `true`, `false`, and each service's health
command, which runs the AWS probe with the key pair the service loaded at its last
restart. No pipes or redirections. For a read-only look (a dry run's probe):
`command -v <program>` and `sudo -l <command>` (which lists, never runs).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from steps.consumers.base import AwsProbe
from steps.sandbox.ssh.fs import Cred, MemFS
from steps.sandbox.ssh.services import Service, ServiceManager, pair_of
from steps.secrets import redact

_OPERATORS = ";&|<>"
_SYSTEMCTL_USAGE = "sandbox systemctl: usage: systemctl restart|start|stop|is-active|status|cat <unit>\n"
_PROGRAMS = {name: f"/usr/bin/{name}" for name in ("systemctl", "cat", "true", "false", "sudo")}


@dataclass
class ExecResult:
    status: int
    stdout: str = field(default="", repr=False)  # `cat` of an env file would show a secret
    stderr: str = field(default="", repr=False)


class Shell:
    """Runs commands as the logged-in user (`cred`, `home`); `sudo` runs them as root."""

    def __init__(
        self,
        fs: MemFS,
        services: ServiceManager,
        cred: Cred,
        home: str,
        count: Callable[[str], None],
        aws_probe: AwsProbe | None = None,
    ) -> None:
        self.fs, self.services, self.cred, self.home = fs, services, cred, home
        self.count = count
        self.aws_probe = aws_probe

    def run(self, command: str, as_root: bool = False) -> ExecResult:
        """Interpret `command` as the sandbox's shell would: `;`, `&&`, `||` chains of
        the supported commands. No pipes or redirections."""
        try:
            lex = shlex.shlex(command, posix=True, punctuation_chars=_OPERATORS)
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
            elif token and set(token) <= set(_OPERATORS):
                return ExecResult(2, "", f"sandbox shell: {token!r} is not supported\n")
            else:
                segment.append(token)
        return ExecResult(status, "".join(out), "".join(err))

    def _run_simple(self, argv: list[str], as_root: bool) -> ExecResult:
        elevated = as_root or self.cred.uid == 0
        if argv[0] == "sudo":
            argv = argv[1:]
            listing = False
            while argv and argv[0].startswith("-"):  # sudo -n, -E ...: accepted, ignored
                listing = listing or (not argv[0].startswith("--") and "l" in argv[0])
                argv = argv[1:]
            if listing:
                return self._sudo_list(argv)
            elevated = True
            if not argv:
                return ExecResult(1, "", "usage: sudo command\n")
        self.count(f"exec:{argv[0]}")
        name = argv[0]
        if name == "command":
            if len(argv) != 3 or argv[1] != "-v":
                return ExecResult(2, "", "sandbox shell: only `command -v <program>` is supported\n")
            path = self._which(argv[2])
            return ExecResult(0, path + "\n") if path else ExecResult(1)
        if name == "systemctl":
            return self._systemctl(argv[1:], elevated)
        if name == "cat":
            return self._cat(argv[1:], elevated)
        if name in ("true", "false"):
            return ExecResult(0 if name == "true" else 1)
        svc = self._health_command_of(argv)
        if svc is not None:
            return self._health(svc)
        return ExecResult(127, "", f"bash: {name}: command not found\n")

    def _which(self, program: str) -> str | None:
        """Where `command -v` finds a program: the shell's own, or a service's health tool."""
        name = program.rsplit("/", 1)[-1]
        if name in _PROGRAMS:
            return _PROGRAMS[name]
        tools = {shlex.split(s.health_command)[0] for s in list(self.services.units.values()) if s.health_command}
        return f"/usr/local/bin/{name}" if name in tools or program in tools else None

    def _sudo_list(self, argv: list[str]) -> ExecResult:
        """`sudo -l [command]`: the sandbox user may run anything as root without a
        password; like sudo, print the command's full path and run nothing."""
        self.count("exec:sudo-l")
        if not argv:
            return ExecResult(0, "User may run the following commands on this host:\n    (ALL) NOPASSWD: ALL\n")
        path = self._which(argv[0])
        if path is None:
            return ExecResult(1, "", f"sudo: {argv[0]}: command not found\n")
        return ExecResult(0, shlex.join([path, *argv[1:]]) + "\n")

    def _health_command_of(self, argv: list[str]) -> Service | None:
        joined = shlex.join(argv)
        return next((s for s in list(self.services.units.values()) if joined == shlex.join(shlex.split(s.health_command))), None)

    # -- cat ----------------------------------------------------------------------------

    def _cat(self, files: list[str], elevated: bool) -> ExecResult:
        out, err, status = [], [], 0
        for f in files:
            try:
                data = self.fs.read(self.fs.norm(f, self.home), None if elevated else self.cred)
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

    # -- systemctl ----------------------------------------------------------------------

    def _systemctl(self, args: list[str], elevated: bool) -> ExecResult:
        if len(args) != 2:
            return ExecResult(1, "", _SYSTEMCTL_USAGE)
        verb, unit = args[0], args[1].removesuffix(".service")
        svc = self.services.units.get(unit)
        if verb == "is-active":
            state = svc.state if svc else "inactive"
            return ExecResult(0 if state == "active" else 3, state + "\n")
        if verb == "status":
            return _status(unit, svc)
        if verb == "cat":
            if svc is None:
                return ExecResult(1, "", f"No files found for {unit}.service.\n")
            return ExecResult(0, f"# /etc/systemd/system/{unit}.service\n[Service]\nEnvironmentFile={svc.env_file}\n")
        if verb in ("restart", "start", "stop"):
            return self._control(verb, unit, svc, elevated)
        return ExecResult(1, "", f"Unknown command verb {verb}.\n")

    def _control(self, verb: str, unit: str, svc: Service | None, elevated: bool) -> ExecResult:
        if not elevated:
            return ExecResult(1, "", f"Failed to {verb} {unit}.service: Interactive authentication required.\n")
        if svc is None:
            return ExecResult(5, "", f"Failed to {verb} {unit}.service: Unit {unit}.service not found.\n")
        if verb == "stop":
            self.services.stop(svc)
            return ExecResult(0)
        if not self.services.restart(svc):
            return ExecResult(1, "", _job_failed(unit))
        return ExecResult(0)

    # -- health -------------------------------------------------------------------------

    def _health(self, svc: Service) -> ExecResult:
        self.count(f"health:{svc.name}")
        if svc.state != "active":
            return ExecResult(1, "", f"{svc.name}: service is not running ({svc.state})\n")
        key_id, secret = pair_of(svc.loaded)
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


def _status(unit: str, svc: Service | None) -> ExecResult:
    if svc is None:
        return ExecResult(4, "", f"Unit {unit}.service could not be found.\n")
    since = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(svc.active_since)) if svc.active_since else ""
    active = {
        "active": f"active (running) since {since}",
        "failed": "failed (Result: exit-code)",
        "inactive": "inactive (dead)",
    }[svc.state]
    text = (
        f"● {unit}.service - {unit} (sandbox)\n     Loaded: loaded (/etc/systemd/system/{unit}.service; enabled)\n     Active: {active}\n"
    )
    return ExecResult(0 if svc.state == "active" else 3, text)


def _job_failed(unit: str) -> str:
    return (
        f"Job for {unit}.service failed because the control process exited with error code.\n"
        f'See "systemctl status {unit}.service" and "journalctl -xeu {unit}.service" for details.\n'
    )
