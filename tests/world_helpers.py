"""Shared fixtures and helpers for the vault/consumer tests (issue 3, item 10).

The tests import what they use from here (`from world_helpers import ...`); pytest
finds the fixtures in the importing module.

- `home`: this test's HANDRAIL_HOME (conftest's, with every credential cleared);
- `lab`: builds training worlds (World + TrainingWiring + Engine, as `tui/cli.py`
  does), starts sessions, makes "new process" engines on the same journal, and closes
  every world newest first when the test ends (moto state is per process: two worlds
  must not leak into each other);
- helpers that read a World the way `--world-out` shows it: IAM keys, holders, calls;
- `Handrail`: runs the `handrail` CLI in a new Python process;
- `Served`: `handrail sandbox serve` in a subprocess, parsed until it says `ready`.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from isolation import CREDENTIAL_ENV

from steps import paths
from steps.audit import AuditLog
from steps.driver import Asker, DriveOptions, Printer, drive
from steps.engine import Engine, Session
from steps.journal import Journal
from steps.status import Needs

RUNBOOK = "aws-iam-access-key"
SCENARIO = "happy-path"
TARGET = "raxx-vault-operator"
VAULT_PLACE = "infisical:raxx-prod/prod/aws/raxx-vault-operator"
HEROKU_PLACE = "heroku:raxx-api-prod"
GITHUB_PLACE = "github:raxx/infra"
SSH_PLACE = "ssh:vault-host"
SSH_RUNNING = "ssh:vault-host (running service)"
# Every place outside IAM that holds the pair in the default scenario, as --world-out names them.
HOLDER_PLACES = (VAULT_PLACE, HEROKU_PLACE, GITHUB_PLACE, SSH_PLACE, SSH_RUNNING)
KEY_ID, SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"

# -- isolation ----------------------------------------------------------------------------------


@pytest.fixture
def home(handrail_home: Path) -> Path:
    """This test's private HANDRAIL_HOME (conftest clears every credential for each test)."""
    return handrail_home


# -- the lab: worlds, engines, sessions -----------------------------------------------------------


@dataclass
class Drove:
    code: int
    message: str
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(self.lines + [self.message])


class Lab:
    def __init__(self, home: Path) -> None:
        self.home = home
        self._worlds: list[Any] = []
        self._closed: set[int] = set()
        self._journals: list[Journal] = []
        self.engine = self.new_engine()

    # worlds

    def world(self, scenario: str = SCENARIO):
        from steps.sandbox import scenario as scenarios
        from steps.sandbox.world import World
        from steps.wiring import training_clock

        world = World.create(scenarios.load(scenario), training_clock(True))
        self._worlds.append(world)
        return world

    def restore(self, row):
        """What `handrail resume` does in a new process: the world from the journal's snapshot."""
        from steps.sandbox.world import World
        from steps.wiring import TrainingWiring, training_clock

        assert row.world, f"session {row.id} saved no world"
        world = World.restore(json.loads(row.world), training_clock(True, offset=row.sim_offset or 0.0))
        self._worlds.append(world)
        return TrainingWiring(world)

    def kill(self, world) -> None:
        """The process that held `world` died: its simulated account is gone."""
        if id(world) not in self._closed:
            self._closed.add(id(world))
            world.close()

    # engines and sessions

    def new_engine(self) -> Engine:
        """An Engine on this home's journal and audit log: what a new process would open."""
        journal = Journal(paths.journal_path())
        self._journals.append(journal)
        return Engine(journal, AuditLog(paths.audit_path()), os_user="tester")

    def start(self, world, engine: Engine | None = None, runbook: str | Path = RUNBOOK, **inputs: Any) -> Session:
        from steps.wiring import TrainingWiring

        sc = world.scenario
        values: dict[str, Any] = {**sc.inputs, "target_user": sc.target_user}
        call = sc.aws.users[sc.target_user].check_call
        if call:
            values["check_call"] = call
        values.update(inputs)
        return (engine or self.engine).start(runbook, values, TrainingWiring(world))

    def resume_on(self, world, session_id: str) -> Session:
        """A new process resumes `session_id` while the external world lives on (as a
        live run against real endpoints, or `handrail sandbox serve`, would see it)."""
        from steps.wiring import TrainingWiring

        return self.new_engine().resume(session_id, lambda row: TrainingWiring(world))

    def close(self) -> None:
        for world in reversed(self._worlds):  # newest first: a restored world reuses its account id
            self.kill(world)
        for journal in self._journals:
            try:
                journal.close()
            except Exception:
                pass


@pytest.fixture
def lab(home: Path) -> Iterator[Lab]:
    made = Lab(home)
    yield made
    made.close()


def run_through(session: Session, last_step: str) -> None:
    """Run every step up to and including `last_step`, as `run --yes --fast-forward --confirm-irreversible` would."""
    while True:
        state = session.current()
        assert state is not None, f"session {session.id} ended ({session.status}) before {last_step}"
        step_id = state.step.id
        prompt = session.prompt(step_id)
        if prompt.needs is Needs.GATE:
            session.fast_forward(step_id)
        outcome = session.run(step_id)
        assert outcome.status == "done", f"{step_id}: {outcome.status}: {outcome.summary}\n" + "\n".join(outcome.evidence)
        if step_id == last_step:
            return


def run_until(session: Session, next_step: str) -> None:
    """Run every step before `next_step`, leaving it next."""
    ids = [s.id for s in session.runbook.steps]
    index = ids.index(next_step)
    if index > 0:
        run_through(session, ids[index - 1])
    assert session.current() is not None and session.current().step.id == next_step


def headless(session: Session, **opts: Any) -> Drove:
    """The headless driver in-process (`--yes --fast-forward --confirm-irreversible` unless told otherwise)."""
    lines: list[str] = []
    options = DriveOptions(**{"yes": True, "fast_forward": True, "confirm_irreversible": True, **opts})
    started = time.perf_counter()
    code, message = drive(session, options, Printer(lines.append), Asker())
    return Drove(code, message, lines, time.perf_counter() - started)


def scenario_file(directory: Path, name: str, *, faults: list[dict[str, Any]] | None = None, base: str = SCENARIO, **changes: Any) -> str:
    """A copy of a shipped scenario with `faults` (and other top-level fields) replaced,
    written to `directory/<name>.yaml`; returns the path for `lab.world(...)`."""
    import yaml

    from steps.sandbox import scenario as scenarios

    data = yaml.safe_load(scenarios.resolve(base).read_text(encoding="utf-8"))
    data["id"] = name
    if faults is not None:
        data["faults"] = faults
    data.update(changes)
    path = Path(directory) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


# -- reading a world ----------------------------------------------------------------------------


def iam_keys(world_or_export: Any, user: str = TARGET) -> dict[str, dict[str, Any]]:
    """{key id: {"status", "fingerprint", ...}} of one IAM user, from World.export()."""
    data = world_or_export if isinstance(world_or_export, dict) else world_or_export.export()
    return {k["id"]: k for k in data["iam_users"][user]["keys"]}


def holders(world_or_export: Any) -> dict[str, dict[str, Any]]:
    """{place: {"key_id", "fingerprint"}} for every place outside IAM that holds a pair."""
    data = world_or_export if isinstance(world_or_export, dict) else world_or_export.export()
    return {place: h for place, h in data["holders"].items() if not place.startswith("aws:")}


def assert_everyone_holds(world_or_export: Any, key_id: str, user: str = TARGET) -> None:
    """Every holder of the default scenario holds `key_id` with the secret IAM has for it."""
    data = world_or_export if isinstance(world_or_export, dict) else world_or_export.export()
    keys = iam_keys(data, user)
    assert key_id in keys, f"IAM has no key {key_id}: {sorted(keys)}"
    expected = keys[key_id]["fingerprint"]
    held = holders(data)
    assert set(HOLDER_PLACES) <= set(held), f"holders missing: {sorted(set(HOLDER_PLACES) - set(held))}"
    wrong = {place: (h["key_id"], h["fingerprint"]) for place, h in held.items() if (h["key_id"], h["fingerprint"]) != (key_id, expected)}
    assert not wrong, f"expected every holder on {key_id} ({expected}); these are not: {wrong}"


def assert_pairs_work(world, key_id: str) -> None:
    """Every place that holds a pair holds one AWS accepts as `key_id` (the simulated
    consumers really use what they hold)."""
    for place, (held_id, secret) in world.holdings().items():
        assert held_id == key_id and secret is not None, f"{place} holds {held_id}"
        ok, message = world.aws.probe(held_id, secret)
        assert ok, f"{place}: AWS refuses what it holds: {message}"
    for place, (held_id, secret) in world.ssh.loaded().items():
        assert held_id == key_id and secret is not None, f"{place} (running) has {held_id}"
        ok, message = world.aws.probe(held_id, secret)
        assert ok, f"{place} (running): AWS refuses what it loaded: {message}"


def vault_history(world) -> tuple[list[int], list[str], list[Any]]:
    """(versions, key ids, secrets as Secret) of the scenario's vault folder, oldest first."""
    from steps.secrets import Secret

    v = world.scenario.vault
    versions = world.infisical.versions(v.project_id, v.environment, v.path, KEY_ID)
    ids = world.infisical.history(v.project_id, v.environment, v.path, KEY_ID)
    secrets = [Secret(value, "history") for value in world.infisical.history(v.project_id, v.environment, v.path, SECRET)]
    return versions, ids, secrets


def secret_values(world) -> dict[str, str]:
    """{label: value} of every secret the world holds now: IAM secrets by key id, every
    holder's secret, and the sandbox's own credentials. In memory only, for leak checks."""
    out: dict[str, str] = {}
    for key_id, secret in world.aws.secrets_by_key().items():
        out[f"iam {key_id}"] = secret.reveal()
    for place, (_, secret) in world.holdings().items():
        if secret is not None:
            out[f"held by {place}"] = secret.reveal()
    creds = world.creds
    if creds.heroku_token is not None:
        out["heroku token"] = creds.heroku_token.reveal()
    if creds.github_token is not None:
        out["github token"] = creds.github_token.reveal()
    if creds.infisical is not None and creds.infisical.client_secret is not None:
        out["infisical client secret"] = creds.infisical.client_secret.reveal()
    return out


def leaks(secrets: dict[str, str], texts: dict[str, bytes | str]) -> list[str]:
    """['<secret label> in <where>', ...] for every secret value found in any text."""
    found = []
    for where, text in texts.items():
        blob = text if isinstance(text, bytes) else text.encode()
        for label, value in secrets.items():
            if value.encode() in blob:
                found.append(f"{label} in {where}")
    return found


def files_under(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def audit_records(home: Path) -> list[dict[str, Any]]:
    return list(AuditLog(paths.audit_path()).records())


def format_calls(calls: dict[str, dict[str, int]]) -> str:
    lines = []
    for system, counts in calls.items():
        total = sum(counts.values())
        lines.append(f"  {system:<10} {total:>4} call(s): " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return "\n".join(lines)


# -- the CLI in a new process --------------------------------------------------------------------


def clean_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV and k != "PYTEST_CURRENT_TEST"}
    env.update(
        HANDRAIL_HOME=str(home),
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


HANDRAIL = [sys.executable, "-c", "from tui.cli import main; main(prog_name='handrail')"]


@dataclass
class Handrail:
    """`handrail ARGS` in a new Python process with its own HANDRAIL_HOME."""

    home: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: Any, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*HANDRAIL, *map(str, args)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd,
            env=clean_env(self.home, self.env),
            timeout=timeout,
        )

    def popen(self, *args: Any) -> subprocess.Popen:
        return subprocess.Popen(
            [*HANDRAIL, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            bufsize=0,
            cwd=self.cwd,
            env=clean_env(self.home, self.env),
        )


@pytest.fixture
def handrail(home: Path, tmp_path: Path) -> Handrail:
    cwd = tmp_path / "cwd"  # not the repository: `python -c` puts the cwd first on sys.path
    cwd.mkdir()
    return Handrail(home, cwd)


def read_lines_until(proc: subprocess.Popen, done: Callable[[str], bool], timeout: float) -> list[str]:
    """Lines of `proc`'s stdout until one satisfies `done` (returned last); fails on
    timeout or if the process ends first. Reads the pipe's fd directly (no buffered
    file object behind select's back); bytes after the matching line stay readable
    through `rest_of_output(proc)`."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending: bytes = getattr(proc, "_pending_output", b"")
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" in pending:
            raw, pending = pending.split(b"\n", 1)
            lines.append(raw.decode("utf-8", "replace"))
            if done(lines[-1]):
                proc._pending_output = pending  # type: ignore[attr-defined]
                return lines
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching line within {timeout}s; got:\n" + "\n".join(lines))
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"process exited ({proc.wait()}) first; got:\n" + "\n".join(lines + [pending.decode()]))
        pending += chunk


def rest_of_output(proc: subprocess.Popen) -> str:
    """Everything `proc` wrote after the last line `read_lines_until` returned (the
    process must have ended)."""
    assert proc.stdout is not None
    data = getattr(proc, "_pending_output", b"")
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, 65536):
        data += chunk
    return data.decode("utf-8", "replace")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def parse_env_file(path: Path) -> dict[str, str]:
    """`export K=V` lines (shell-quoted) of the env file `sandbox serve` writes."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            env[name] = value
    return env


@dataclass
class Served:
    proc: subprocess.Popen
    directory: Path
    banner: list[str]
    env: dict[str, str]

    @property
    def inventory(self) -> Path:
        return Path(self.env["HANDRAIL_INVENTORY"])


@pytest.fixture
def served(handrail: Handrail, tmp_path: Path) -> Iterator[Served]:
    """`handrail sandbox serve --dir D` in a subprocess, read until it prints `ready`."""
    directory = tmp_path / "sandbox"
    proc = handrail.popen("sandbox", "serve", "--dir", directory)
    try:
        banner = read_lines_until(proc, lambda line: line.strip() == "ready", timeout=90)
        yield Served(proc, directory, banner, parse_env_file(directory / "env"))
    finally:
        stop(proc)
