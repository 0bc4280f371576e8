"""The sandbox host's systemd, in short: services that load an EnvironmentFile.

A service reads its EnvironmentFile when it (re)starts and keeps using what it loaded
until the next restart, as a systemd unit does: writing the file is not enough, the
service must be restarted to pick up a new key.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from steps.sandbox.ssh.fs import MemFS
from steps.secrets import Secret

KEY_ID_VAR = "AWS_ACCESS_KEY_ID"
SECRET_VAR = "AWS_SECRET_ACCESS_KEY"


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
        env[key] = _unquote(value.strip())
    return env


def _unquote(value: str) -> str:
    """'single' is taken as it is; "double" honours backslash escapes."""
    if value[:1] == "'" and "'" in value[1:]:
        return value[1 : value.index("'", 1)]
    if value[:1] != '"':
        return value
    out, i = [], 1
    while i < len(value) and value[i] != '"':
        if value[i] == "\\" and i + 1 < len(value):
            i += 1
        out.append(value[i])
        i += 1
    return "".join(out)


def pair_of(env: dict[str, str]) -> tuple[str | None, Secret | None]:
    """The AWS key pair an environment holds (either half may be missing)."""
    secret = env.get(SECRET_VAR)
    return env.get(KEY_ID_VAR) or None, Secret(secret, SECRET_VAR) if secret else None


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

    def halt(self, state: str) -> None:
        """Stopped ("inactive") or crashed ("failed"): nothing loaded any more."""
        self.state, self.loaded, self.active_since = state, {}, None


class ServiceManager:
    """The host's services by name, started and stopped against its filesystem."""

    def __init__(self, fs: MemFS, lock: threading.RLock) -> None:
        self.fs = fs
        self.units: dict[str, Service] = {}
        self._lock = lock  # the host's lock: faults and commands change services too

    def add(self, name: str, env_file: str, health_command: str | None, label: str) -> Service:
        """Register a service reading `env_file`; it starts now if the file exists."""
        with self._lock:
            if any(s.label == label for s in self.units.values()):
                raise ValueError(f"sandbox ssh: label {label!r} is already used by another service")
            svc = Service(name, self.fs.norm(env_file), health_command or f"{name} healthcheck", label)
            self.units[name] = svc
            if self.fs.exists(svc.env_file):
                self.start(svc)
        return svc

    def get(self, name: str) -> Service:
        name = name.removesuffix(".service")
        try:
            return self.units[name]
        except KeyError:
            raise KeyError(f"sandbox ssh: no service named {name!r}") from None

    def start(self, svc: Service) -> bool:
        """(Re)start: read the EnvironmentFile as it is on disk now."""
        try:
            text = self.fs.read(svc.env_file).decode("utf-8", "replace")
        except OSError:
            svc.halt("failed")
            return False
        svc.loaded = parse_environment_file(text)
        svc.state, svc.active_since = "active", time.time()
        svc.restarts += 1
        return True

    def restart(self, svc: Service) -> bool:
        """Start or restart, unless a fault says this one fails (then it is failed)."""
        with self._lock:
            if svc.fail_next > 0:
                svc.fail_next -= 1
                svc.halt("failed")
                return False
            return self.start(svc)

    def stop(self, svc: Service) -> None:
        with self._lock:
            svc.halt("inactive")

    def fail_restart(self, name: str, times: int) -> None:
        with self._lock:
            self.get(name).fail_next = times

    def holdings(self) -> dict[str, tuple[str | None, Secret | None]]:
        """{"ssh:<label>": (key id, secret)} as each service's env file holds them now."""
        out = {}
        for svc in list(self.units.values()):
            try:
                env = parse_environment_file(self.fs.read(svc.env_file).decode("utf-8", "replace"))
            except OSError:
                env = {}
            out[f"ssh:{svc.label}"] = pair_of(env)
        return out

    def loaded(self) -> dict[str, tuple[str | None, Secret | None]]:
        """{"ssh:<label>": (key id, secret)} as each running service loaded them."""
        return {f"ssh:{svc.label}": pair_of(svc.loaded) for svc in list(self.units.values())}
