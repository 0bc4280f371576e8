"""Shared fixtures for the handrail tests.

- every test gets its own HANDRAIL_HOME (journal and audit log live there);
- `make_engine()` builds an Engine on that home's journal and audit log (call it again to
  get a second Engine on the same files: that is what a new process would see);
- `make_world(scenario)` builds a training world (simulated AWS) and closes it after the
  test; `rig` puts the two together with the moves the headless driver makes;
- `cli(...)` runs the `handrail` command in-process (click's CliRunner), `cli_subprocess(...)`
  runs it in a new Python process.

Nothing here talks to a real AWS account: the AWS_* variables of the environment are
removed for every test, and the tests that want boto3's environment chain point it at a
simulated world themselves.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pgserver
import pytest
import yaml
from click.testing import CliRunner, Result
from isolation import CREDENTIAL_ENV

# The product is imported inside the fixtures, so a broken module fails the tests that
# use it, not the collection of every test in the folder.
if TYPE_CHECKING:
    from steps.actions.base import Outcome
    from steps.engine import Engine, Session
    from steps.journal import SessionRow

RUNBOOK = "aws-iam-access-key"

# -- speed --------------------------------------------------------------------------------------

RAM_TMP = "/dev/shm"


def pytest_configure(config: pytest.Config) -> None:
    _bytecode()
    _ram_tmp(config)
    _fewer_collections(config)
    _fewer_frames()


def _fewer_collections(config: pytest.Config) -> None:
    """Python's cycle collector, less often. A test process holds large, long-lived heaps
    (moto's backends, botocore's models, the app's widgets) that every full collection
    walks again; at the default thresholds that was about 14% of a rotation test's CPU.
    The product is the same; only the test process collects less eagerly.

    At its end each worker also collected five times over, every worker at once and with
    the run's whole heap, before reporting finalizers that raised (pytest's
    unraisableexception plugin). Once is kept: it reaches every cycle left at the end;
    the other four only catch garbage that a finalizer made during the first."""
    gc.set_threshold(50_000, 20, 20)
    from _pytest import unraisableexception

    key = getattr(unraisableexception, "gc_collect_iterations_key", None)
    if key is not None:
        config.stash[key] = 1


TEST_FPS = "15"


def _fewer_frames() -> None:
    """The app draws at most 15 frames a second in the tests, not Textual's 60 for operators
    (TEXTUAL_FPS, read when textual is imported; the workers inherit it). Changes come
    together in fewer frames: about 15% of the app tests' CPU. The tests read what is
    drawn, not how often; the frames test still finds each key drawn in one frame. The
    benchmarks, run as subprocesses, are given Textual's own rate (the `operator_env` fixture). A
    TEXTUAL_FPS already set is kept."""
    os.environ.setdefault("TEXTUAL_FPS", TEST_FPS)


@pytest.fixture
def operator_env() -> dict[str, str]:
    """This environment with the frame rate an operator's app has (for the benchmarks)."""
    env = dict(os.environ)
    if env.get("TEXTUAL_FPS") == TEST_FPS:
        del env["TEXTUAL_FPS"]
    return env


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each worker's share of the tests starts with its share of the slow ones.

    pytest-xdist's worksteal gives each of N workers a contiguous 1/N of the tests, and an
    idle worker steals from the end of the longest queue. So the order here is N blocks of
    xdist's sizes, each block the slow tests dealt to it round robin spread over its first
    half, the quick ones in their usual order around and after them: the long tests (whole app runs, subprocesses, live-mode waits in real
    time) start at once on every worker and overlap, and the run ends on quick ones, not on
    one worker's last app test while the others wait. Every worker computes the same order
    (xdist requires it); without xdist, it is slow tests first."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    slow = [item for item in items if item.get_closest_marker("slow")]
    quick = [item for item in items if not item.get_closest_marker("slow")]
    ordered: list[pytest.Item] = []
    left = len(items)
    for block in range(workers):
        size = left // (workers - block)  # as WorkStealingScheduling.check_schedule deals them
        mine = slow[block::workers]
        turn = len(mine) * block // workers  # each block starts elsewhere in the files' order:
        mine = mine[turn:] + mine[:turn]  # the subprocess tests, which wait, do not all run at once
        take = max(0, size - len(mine))
        ordered += _spread(mine, quick[:take])
        quick = quick[take:]
        left -= size
    ordered += quick  # only if the slow tests outnumber a block
    assert sorted(map(id, ordered)) == sorted(map(id, items))
    items[:] = ordered


def _spread(slow: list[pytest.Item], quick: list[pytest.Item]) -> list[pytest.Item]:
    """The slow tests over the first half of a block, a few quick ones between them: many
    slow tests wait in real time (live-mode waits, subprocesses), and a worker running
    them back to back can find every other worker waiting too, the cores idle."""
    if not slow:
        return quick
    between = len(quick) // 2 // len(slow)
    out: list[pytest.Item] = []
    for i, item in enumerate(slow):
        out.append(item)
        out += quick[i * between : (i + 1) * between]
    return out + quick[len(slow) * between :]


def _bytecode() -> None:
    """Compiled modules are kept between processes even where PYTHONDONTWRITEBYTECODE is
    set: else every worker compiles and assert-rewrites the test files again (about 2 s
    each) and every subprocess a test starts compiles handrail's modules again. They go
    to __pycache__ folders, which git ignores. Workers and subprocesses inherit it."""
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        sys.dont_write_bytecode = False


def _ram_tmp(config: pytest.Config) -> None:
    """Temporary files in RAM when the machine has a tmpfs for them.

    Every test writes its journal (sqlite) and audit log (fsync per record) under
    tmp_path: on a disk each commit waits for the device (about 5 ms here, hundreds
    per test), on tmpfs it does not. The product's behaviour is the same; only the
    wait for the disk is gone. Runs in the controller before xdist starts its workers,
    which inherit TMPDIR (as do the tests' subprocesses). An explicit TMPDIR or
    --basetemp wins."""
    if os.environ.get("TMPDIR") or config.option.basetemp:
        return
    try:
        flags = os.statvfs(RAM_TMP).f_flag
    except OSError:
        return
    # Scripts and sshd's command wrapper run from tmp_path: the tmpfs must allow exec.
    if flags & (os.ST_RDONLY | os.ST_NOEXEC) or not os.access(RAM_TMP, os.W_OK | os.X_OK):
        return
    os.environ["TMPDIR"] = RAM_TMP
    tempfile.tempdir = None  # tempfile caches its choice: ask again


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: five workers on two cores (2.5 per core). Many tests spend part of their
    time waiting (Pilot's waits for the app to go idle, subprocesses, live-mode waits in
    real time): a further worker runs while others wait. Measured on 2 cores, the whole
    run: 4 workers 197 s, 5 workers 185 s, 6 workers 194 s (more CPU spent switching).
    PYTEST_XDIST_AUTO_NUM_WORKERS wins."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(2, (5 * cores) // 2)


# -- isolation ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def handrail_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HANDRAIL_HOME for every test, and no credentials or inventory from the environment."""
    home = tmp_path_factory.mktemp("handrail-home")
    monkeypatch.setenv("HANDRAIL_HOME", str(home))
    for name in CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    # boto3 must never find a real profile on the machine running the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # The journal is the home's SQLite file unless a test asks for PostgreSQL (`backend`).
    monkeypatch.delenv("HANDRAIL_DATABASE_URL", raising=False)
    if "steps.compose" in sys.modules:
        sys.modules["steps.compose"].use_database(None)
    return home


# A simulated account with 5 regions enabled instead of AWS's 18. CloudTrail's event
# history is regional, so every lookup asks each enabled region with its own client: at 18
# regions that was about half of a training rotation's CPU in these tests. The lookup's
# code is the same for 5; tests marked `all_regions` (and every subprocess) keep the 18.
FEW_REGIONS = ("us-east-1", "eu-west-1", "eu-west-3", "ap-south-1", "eu-south-1")


@pytest.fixture(autouse=True)
def few_regions(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("all_regions"):
        return
    from steps.sandbox import trail

    monkeypatch.setattr(
        trail, "REGIONS", {name: ("not-opted-in" if name not in FEW_REGIONS else status) for name, status in trail.REGIONS.items()}
    )


# -- PostgreSQL ---------------------------------------------------------------------------------
#
# A real server: $HANDRAIL_TEST_DATABASE_URL (.ci/run starts one and exports it), else one
# this worker starts for itself (tests/pgserver.py). Skipped only where
# HANDRAIL_TEST_NO_POSTGRES=1 says PostgreSQL is deliberately absent; CI never sets it, so a
# missing server fails the PostgreSQL tests there. Each test gets its own database, made
# from a template this worker upgraded once.


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    url = os.environ.get("HANDRAIL_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if os.environ.get("HANDRAIL_TEST_NO_POSTGRES") == "1":
        pytest.skip("HANDRAIL_TEST_NO_POSTGRES=1: PostgreSQL deliberately absent")

    try:
        server = pgserver.start()
    except pgserver.NoPostgres as exc:
        pytest.fail(f"PostgreSQL is needed for this test and none could be started: {exc} (HANDRAIL_TEST_NO_POSTGRES=1 skips)")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: str, worker_id: str) -> Iterator[str]:
    from steps.db_postgres import PostgresBackend

    name = f"handrail_tpl_{worker_id}_{os.getpid()}"
    pgserver.admin(pg_server, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    backend = PostgresBackend(pgserver.with_database(pg_server, name), check_schema=False)
    backend.upgrade()
    backend.close()
    yield name
    pgserver.admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_pg_count = [0]


@pytest.fixture
def pg_url(pg_server: str, pg_template: str, worker_id: str) -> Iterator[str]:
    """A fresh, upgraded database for this test (dropped after it)."""
    _pg_count[0] += 1
    name = f"handrail_t_{worker_id}_{os.getpid()}_{_pg_count[0]}"
    pgserver.admin(pg_server, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield pgserver.with_database(pg_server, name)
    pgserver.admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on each journal backend: the home's SQLite file, then a PostgreSQL
    database ($HANDRAIL_DATABASE_URL, as a team sets it)."""
    if request.param == "postgresql":
        monkeypatch.setenv("HANDRAIL_DATABASE_URL", request.getfixturevalue("pg_url"))
    return str(request.param)


# -- engine and worlds --------------------------------------------------------------------------


@pytest.fixture
def make_engine(handrail_home: Path) -> Iterator[Callable[..., Engine]]:
    """Engine(Journal, AuditLog) on HANDRAIL_HOME's files; each call is a new 'process'."""
    from steps import paths
    from steps.audit import open_audit
    from steps.engine import Engine
    from steps.journal import Journal

    journals: list[Journal] = []

    def make(home: Path | None = None) -> Engine:
        """On the home's files, or the shared database when HANDRAIL_DATABASE_URL is set."""
        base = home or paths.state_dir()
        journal = Journal(os.environ.get("HANDRAIL_DATABASE_URL") or base / paths.journal_path().name)
        journals.append(journal)
        return Engine(journal, open_audit(journal, base / paths.audit_path().name), os_user="tester")

    yield make
    for journal in journals:
        try:
            journal.close()
        except Exception:
            pass


class Worlds:
    """Training worlds made for one test, closed (newest first) when it ends."""

    def __init__(self) -> None:
        self._made: list[Any] = []
        self._closed: set[int] = set()

    def create(self, scenario: str | Path = "happy-path", headless: bool = True):
        from steps.sandbox import scenario as scenarios
        from steps.sandbox.world import World
        from steps.wiring import training_clock

        world = World.create(scenarios.load(str(scenario)), training_clock(headless))
        self._made.append(world)
        return world

    def restore(self, row: SessionRow, headless: bool = True):
        """What `tui.cli.wiring_for_session` does for a training session, tracked here."""
        from steps.sandbox.world import World
        from steps.wiring import TrainingWiring, training_clock

        assert row.world, f"session {row.id} saved no world"
        world = World.restore(json.loads(row.world), training_clock(headless, offset=row.sim_offset or 0.0))
        self._made.append(world)
        return TrainingWiring(world)

    def kill(self, world) -> None:
        """The process holding `world` died: its simulated account is gone."""
        if id(world) not in self._closed:
            self._closed.add(id(world))
            world.close()

    def close_all(self) -> None:
        # Newest first: a restored world reuses the account id of the one it replaced.
        for world in reversed(self._made):
            self.kill(world)


@pytest.fixture
def worlds() -> Iterator[Worlds]:
    made = Worlds()
    yield made
    made.close_all()


@pytest.fixture
def make_world(worlds: Worlds) -> Callable[..., Any]:
    """make_world('happy-path' | a scenario path) -> a seeded training World, closed after the test."""
    return worlds.create


# -- the rig: an engine, a world, and the driver's moves -----------------------------------------


@dataclass
class Drove:
    code: int
    message: str
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines + [self.message])


class Rig:
    def __init__(self, worlds: Worlds, make_engine: Callable[..., Engine]) -> None:
        self.worlds = worlds
        self.make_engine = make_engine
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """Made at first use: after every fixture (a journal backend among them) is set up."""
        if self._engine is None:
            self._engine = self.make_engine()
        return self._engine

    @staticmethod
    def keys(world, user: str | None = None) -> dict[str, str]:
        """{key id: 'Active' | 'Inactive'} of one IAM user (default: the scenario's target)."""
        user = user or world.scenario.target_user
        return {k.access_key_id: k.status for k in world.aws.iam.users[user].access_keys}

    def world(self, scenario: str | Path = "happy-path"):
        return self.worlds.create(scenario)

    def inputs(self, world, **inputs: Any) -> dict[str, Any]:
        sc = world.scenario
        user = inputs.get("target_user") or sc.target_user
        base: dict[str, Any] = {**sc.inputs, "target_user": user}
        if user in sc.aws.users and sc.aws.users[user].check_call:
            base["check_call"] = sc.aws.users[user].check_call
        base.update(inputs)
        return base

    def start(self, world=None, *, engine: Engine | None = None, runbook: str | Path = RUNBOOK, **inputs: Any) -> Session:
        from steps.wiring import TrainingWiring

        world = world if world is not None else self.world()
        return (engine or self.engine).start(runbook, self.inputs(world, **inputs), TrainingWiring(world))

    def step(self, session: Session, *, retire_key: str | None = None, override_block: str | None = None) -> Outcome | None:
        """One step as `handrail run --yes --fast-forward` takes it (manual steps are skipped)."""
        from steps.status import Needs

        state = session.current()
        assert state is not None, f"session {session.id} has no step left ({session.status})"
        step = state.step
        prompt = session.prompt(step.id)
        if prompt.needs is Needs.GATE:
            session.fast_forward(step.id)
        if prompt.confirm is Needs.MANUAL:
            session.skip(step.id, "test: nobody is at the keyboard to do it")
            return None
        answer = None
        if prompt.confirm is Needs.TYPED:
            answer = retire_key if prompt.choices else prompt.expect
        outcome = session.run(step.id, answer=answer)
        if outcome.status == "blocked" and override_block:
            outcome = session.run(step.id, answer=answer, override=override_block)
        return outcome

    def run_steps(self, session: Session, count: int, **kw: Any) -> None:
        for _ in range(count):
            outcome = self.step(session, **kw)
            assert outcome is None or outcome.status == "done", f"{session.current()}: {outcome}"

    def drive(self, session: Session, **opts: Any) -> Drove:
        """The headless driver, in-process; its printed lines are kept."""
        from steps.driver import Asker, DriveOptions, Printer, drive

        lines: list[str] = []
        options = DriveOptions(**{"yes": True, "fast_forward": True, "confirm_irreversible": True, **opts})
        code, message = drive(session, options, Printer(lines.append), Asker())
        return Drove(code, message, lines)

    def new_engine(self) -> Engine:
        """A second Engine on the same journal and audit files: a new process."""
        return self.make_engine()


@pytest.fixture
def rig(worlds: Worlds, make_engine: Callable[..., Engine]) -> Rig:
    return Rig(worlds, make_engine)


# -- runbook files ------------------------------------------------------------------------------


@pytest.fixture
def shipped_runbook() -> dict[str, Any]:
    """The shipped runbook as a plain dict, to mutate and dump."""
    from steps.loader import runbooks_dir

    return yaml.safe_load((runbooks_dir() / f"{RUNBOOK}.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str, Any], Path]:
    def write(name: str, data: Any) -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture
def scenario_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a training scenario YAML (scenarios load from a path too)."""

    def make(
        scenario_id: str = "custom",
        *,
        user: str = "raxx-vault-operator",
        keys: list[dict[str, Any]] | None = None,
        propagation_delay: str = "0s",
        status_delay: str = "0s",
        bucket: str | None = None,
        other_users: dict[str, list[dict[str, Any]]] | None = None,
        as_target: bool = False,
    ) -> Path:
        # Bucket names are global in moto: each scenario gets its own, so a test's world
        # never collides with one a CLI run makes from a shipped scenario.
        bucket = bucket or f"{scenario_id}-backups"
        users: dict[str, Any] = {user: {"keys": keys if keys is not None else [{"status": "Active", "age": "92d", "last_used": "3h"}]}}
        users[user]["check_call"] = f"s3:ListObjectsV2 Bucket={bucket}"
        for name, seeded in (other_users or {}).items():
            users[name] = {"keys": seeded}
        data: dict[str, Any] = {
            "id": scenario_id,
            "title": f"test scenario {scenario_id}",
            "teaches": "whatever the test proves",
            "difficulty": 1,
            "target_user": user,
            "briefing": "written by a test",
            "goal": "rotate the key",
            "inputs": {"reason": "scheduled"},
            "aws": {
                "propagation_delay": propagation_delay,
                "status_delay": status_delay,
                "users": users,
                "buckets": {bucket: {"daily/backup.tar.gz": 16}},
            },
        }
        if as_target:
            data["operator"] = {"as_target": True}
        path = tmp_path / f"{scenario_id}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return make


@pytest.fixture
def lean(scenario_file) -> Path:
    """The happy path on AWS alone: one Active key, no vault, no consumers (so steps 4-6
    are skipped headless). For tests about the engine rather than the consumers; it is
    several times faster than the shipped scenarios, which start four sandbox servers.
    (A session started from a scenario *file* cannot be restored from the journal yet:
    tests that restart the world use the shipped scenarios.)"""
    return scenario_file("lean", propagation_delay="4s")


@pytest.fixture
def live_world(make_world, scenario_file, monkeypatch: pytest.MonkeyPatch):
    """A simulated world that boto3's own environment chain points at, as in live mode:
    AWS_ENDPOINT_URL, the operator's key pair and the region (LiveWiring reads them)."""
    world = make_world(scenario_file("live-like"))
    operator = world.aws.operator
    monkeypatch.setenv("AWS_ENDPOINT_URL", world.aws.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", operator.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", operator.secret.reveal())
    monkeypatch.setenv("AWS_DEFAULT_REGION", world.aws.region)
    return world


@pytest.fixture
def runbook_without_settle(shipped_runbook, write_yaml) -> Path:
    """The shipped runbook with its settle waits taken out (step 1a reads its mark back
    after 5 s, step 7 waits a minute): live mode sleeps on the wall clock. For live tests
    about something else; the waits themselves are tested in training and against
    `sandbox serve`."""
    data = copy.deepcopy(shipped_runbook)
    steps = {s["id"]: s for s in data["steps"]}
    steps["deactivate-old-key"]["with"] = {"settle": "0s"}
    steps["claim-user"]["with"] = {**steps["claim-user"]["with"], "settle": "0s"}
    return write_yaml("runbook-no-settle.yaml", data)


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `handrail ARGS` in-process. An exception other than the CLI's own exit fails the test."""
    from tui.cli import main

    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        result = CliRunner().invoke(main, [str(a) for a in args], env=env, input=input, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"handrail {' '.join(map(str, args))} crashed with a traceback:\n{result.output}") from result.exception
        return result

    return invoke


@pytest.fixture
def cli_subprocess(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess]:
    """Run `handrail ARGS` in a new Python process (same HANDRAIL_HOME, no terminal)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        full_env.pop("PYTEST_CURRENT_TEST", None)
        return subprocess.run(
            [sys.executable, "-c", "from tui.cli import main; main(prog_name='handrail')", *map(str, args)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            # Not the repository: `python -c` puts the working directory first on sys.path.
            cwd=tmp_path_factory.mktemp("cwd"),
            env=full_env,
            timeout=timeout,
        )

    return run
