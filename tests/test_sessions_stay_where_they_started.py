"""A session acts in its own account on its own user, and one rotation per IAM user even
across machines: two `handrail sandbox serve` worlds (two AWS accounts) and processes
with their own HANDRAIL_HOME (two laptops), with the real clients, in real time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from world_helpers import TARGET, Handrail, Served, home, parse_env_file, read_lines_until, stop

pytestmark = pytest.mark.slow


@contextmanager
def serving(runner: Handrail, directory: Path) -> Iterator[Served]:
    proc = runner.popen("sandbox", "serve", "--dir", directory)
    try:
        banner = read_lines_until(proc, lambda line: line.strip() == "ready", timeout=90)
        yield Served(proc, directory, banner, parse_env_file(directory / "env"))
    finally:
        stop(proc)


def client(served: Served, service: str):
    env = served.env
    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def iam_keys(served: Served) -> dict[str, str]:
    return {k["AccessKeyId"]: k["Status"] for k in client(served, "iam").list_access_keys(UserName=TARGET)["AccessKeyMetadata"]}


@pytest.fixture
def laptop(tmp_path: Path, home: Path):
    """`handrail` runners, each with its own HANDRAIL_HOME (another laptop) and environment."""

    def make(name: str, env: dict[str, str] | None = None) -> Handrail:
        where = tmp_path / name
        (where / "cwd").mkdir(parents=True, exist_ok=True)
        return Handrail(where / "home", where / "cwd", dict(env or {}))

    return make


def test_a_session_resumed_with_another_accounts_credentials_is_refused_and_changes_nothing(laptop, tmp_path):
    host = laptop("host")
    with serving(host, tmp_path / "one") as one, serving(host, tmp_path / "two") as two:
        ops = laptop("ops", one.env)
        stopped = ops("run", "--mode", "live", "--user", TARGET, "--yes", "--json")
        assert stopped.returncode == 3, stopped.stdout[-2000:] + stopped.stderr[-2000:]
        session = json.loads(stopped.stdout)["session"]
        in_one, in_two = iam_keys(one), iam_keys(two)

        elsewhere = Handrail(ops.home, ops.cwd, dict(two.env))  # same journal, the other account's environment
        for args in (
            ("resume", session, "--yes", "--override-gate", "rehearsal", "--confirm-irreversible"),
            ("rollback", session, "--yes"),
            ("skip", session, "--reason", "other account"),
            ("abandon", session, "--reason", "other account"),
        ):
            refused = elsewhere(*args)
            assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and "refused" in lines[0], refused.stderr
            accounts = [client(world, "sts").get_caller_identity()["Account"] for world in (one, two)]
            assert all(a in lines[0] for a in accounts), lines[0]
            assert iam_keys(one) == in_one and iam_keys(two) == in_two

        shown = json.loads(ops("show", session, "--json").stdout)
        assert shown["status"] == "waiting"


def test_two_laptops_rotating_one_user_at_once_one_stops_and_one_active_key_remains(laptop, tmp_path):
    host = laptop("host")
    with serving(host, tmp_path / "world") as world:
        args = ("run", "--mode", "live", "--user", TARGET, "--yes", "--override-gate", "rehearsal", "--confirm-irreversible", "--json")
        first, second = laptop("alice", world.env), laptop("bob", world.env)
        procs = [runner.popen(*args) for runner in (first, second)]
        outputs = []
        for proc in procs:
            out, _ = proc.communicate(timeout=240)
            outputs.append((proc.returncode, out.decode()))

        codes = sorted(code for code, _ in outputs)
        assert codes == [0, 3], outputs
        loser = next(text for code, text in outputs if code == 3)
        assert "another rotation" in loser and "session" in loser and "host" in loser
        keys = iam_keys(world)
        assert list(keys.values()) == ["Active"], keys
