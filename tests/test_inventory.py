"""Inventory files: where each IAM user's pair lives in the vault and who consumes it.

`handrail inventory check FILE` exits 0 on a good file and 2 with ONE line naming the
file and the field on a bad one; `handrail run --mode live --inventory FILE` refuses a
missing or bad file before anything starts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from world_helpers import home, lab

USER = "raxx-vault-operator"

GOOD: dict[str, Any] = {
    "version": 1,
    "users": {
        USER: {
            "check_call": "s3:ListObjectsV2 Bucket=raxx-backups",
            "vault": {
                "site_url": "https://infisical.example.com",
                "project_id": "raxx-prod",
                "environment": "prod",
                "path": "/aws/raxx-vault-operator",
            },
            "consumers": [
                {"type": "heroku", "app": "raxx-api-prod"},
                {"type": "github", "repository": "raxx/infra", "environment": "production"},
                {"type": "github", "organization": "raxx", "visibility": "selected", "selected_repositories": ["infra"]},
                {
                    "type": "ssh",
                    "label": "vault-host",
                    "host": "vault.internal",
                    "port": 2222,
                    "user": "raxx",
                    "known_hosts": "~/.ssh/known_hosts",
                    "env_file": "/etc/raxx/credentials.env",
                    "service": "raxx-vault",
                    "verify": "raxx-vault healthcheck",
                },
            ],
        },
        "raxx-backup-writer": {"vault": {"project_id": "raxx-prod", "environment": "prod"}},
    },
}


def handrail(*args: Any, env: dict[str, str] | None = None) -> Result:
    from tui.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"handrail {' '.join(map(str, args))} crashed:\n{result.output}") from result.exception
    return result


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, Any], Path]:
    def write(name: str, data: Any) -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


def _bad(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    change(data["users"][USER])
    return data


C = f"users.{USER}.consumers"
BAD_ENTRIES = {
    # kind: (how to break the good file, the field the line must name, what it must say)
    "unknown consumer type": (lambda u: u["consumers"].append({"type": "vercel", "app": "x"}), f"{C}[4]", "'vercel'"),
    "consumer without a type": (lambda u: u["consumers"].append({"app": "x"}), f"{C}[4]", "'type'"),
    "github with both repository and organization": (
        lambda u: u["consumers"][1].update(organization="raxx"),
        f"{C}[1].github",
        "either 'repository'",
    ),
    "github with neither repository nor organization": (
        lambda u: u["consumers"][1].pop("repository"),
        f"{C}[1].github",
        "either 'repository'",
    ),
    "environment without repository": (
        lambda u: u["consumers"][2].update(environment="prod"),
        f"{C}[2].github",
        "'environment' belongs to a repository",
    ),
    "selected repositories without visibility selected": (
        lambda u: u["consumers"][2].update(visibility="all"),
        f"{C}[2].github",
        "selected_repositories",
    ),
    "bad heroku app name": (lambda u: u["consumers"][0].update(app="Raxx_API"), f"{C}[0].heroku.app", "'Raxx_API'"),
    "port out of range": (lambda u: u["consumers"][3].update(port=70000), f"{C}[3].ssh.port", "70000"),
    "port zero": (lambda u: u["consumers"][3].update(port=0), f"{C}[3].ssh.port", "0"),
    "relative env file": (lambda u: u["consumers"][3].update(env_file="etc/raxx/credentials.env"), f"{C}[3].ssh.env_file", "etc/raxx"),
    "duplicate consumer": (
        lambda u: u["consumers"].append({"type": "heroku", "app": "raxx-api-prod"}),
        f"users.{USER}",
        "heroku:raxx-api-prod is listed twice",
    ),
    "unknown field in a consumer": (lambda u: u["consumers"][0].update(aap="x"), f"{C}[0].heroku.aap", "unknown field"),
    "unknown field in a user": (lambda u: u.update(consumer=[]), f"users.{USER}.consumer", "unknown field"),
    "write call as check_call": (lambda u: u.update(check_call="s3:PutObject Bucket=x"), f"users.{USER}.check_call", "read-only"),
    "malformed check_call": (lambda u: u.update(check_call="listbuckets"), f"users.{USER}.check_call", "service:Operation"),
    "vault without project": (lambda u: u["vault"].pop("project_id"), f"users.{USER}.vault.project_id", "missing"),
    "vault site url without scheme": (
        lambda u: u["vault"].update(site_url="infisical.example.com"),
        f"users.{USER}.vault.site_url",
        "infisical.example.com",
    ),
}


def test_inventory_check_accepts_a_good_file_and_lists_each_user(write) -> None:
    path = write("inventory.yaml", GOOD)

    result = handrail("inventory", "check", path)

    assert result.exit_code == 0, result.output
    assert (
        f"{USER}: infisical; 4 consumer(s): heroku:raxx-api-prod, github:raxx/infra@production, github-org:raxx, ssh:vault-host"
        in result.stdout
    )
    assert "raxx-backup-writer: infisical; 0 consumer(s)" in result.stdout
    assert result.stdout.rstrip().endswith(f"{path}: ok (2 user(s))")


@pytest.mark.parametrize("kind", list(BAD_ENTRIES))
def test_inventory_check_refuses_a_bad_entry_in_one_line_naming_file_and_field(write, kind: str) -> None:
    change, field, says = BAD_ENTRIES[kind]
    path = write("inventory.yaml", _bad(change))

    result = handrail("inventory", "check", path)

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"handrail: {path}: {field}: "), lines[0]
    assert says in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "validation error" not in lines[0]


@pytest.mark.parametrize(
    "text, says",
    [
        ("users: [\n", "invalid YAML"),
        ("users:\n  'bad user!': {}\n", "users.bad user!"),
        ("version: 2\nusers: {}\n", "version: "),
        ("- just a list\n", "expected a mapping"),
        ("", "empty"),
    ],
    ids=["broken yaml", "bad user name", "unknown version", "not a mapping", "empty"],
)
def test_inventory_check_refuses_a_malformed_file_in_one_line(write, text: str, says: str) -> None:
    path = write("inventory.yaml", text)

    result = handrail("inventory", "check", path)

    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"handrail: {path}: ") and says in lines[0], result.stderr


def test_inventory_check_names_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = handrail("inventory", "check", missing)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"handrail: {missing}: no such file"]


def test_live_run_with_a_missing_inventory_exits_2_naming_the_file_and_starts_nothing(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"

    result = handrail("run", "--mode", "live", "--user", USER, "--inventory", missing)

    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"handrail: {missing}: no such file (--inventory)"]
    assert not (home / "journal.sqlite3").exists() or "no unfinished sessions" in handrail("sessions").stdout


def test_live_run_with_a_missing_inventory_from_the_environment_exits_2_naming_the_file(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "from-env.yaml"

    result = handrail("run", "--mode", "live", "--user", USER, env={"HANDRAIL_INVENTORY": str(missing)})

    assert result.exit_code == 2, result.output
    assert str(missing) in result.stderr and len(result.stderr.splitlines()) == 1


def test_live_run_with_a_bad_inventory_exits_2_with_the_same_one_line(home: Path, write) -> None:
    path = write("inventory.yaml", _bad(BAD_ENTRIES["port out of range"][0]))

    result = handrail("run", "--mode", "live", "--user", USER, "--inventory", path)

    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"handrail: {path}: {C}[3].ssh.port: ")


def test_inventory_is_refused_in_training_mode(home: Path, write) -> None:
    path = write("inventory.yaml", GOOD)
    result = handrail("run", "--inventory", path)
    assert result.exit_code == 2 and "--inventory is for live and dry-run" in result.stderr


def test_the_training_worlds_inventory_dumps_to_a_file_the_checker_accepts(lab, write) -> None:
    from steps import inventory

    world = lab.world()
    path = write("world-inventory.yaml", inventory.dump(world.inventory))

    result = handrail("inventory", "check", path)

    assert result.exit_code == 0, result.output
    assert inventory.load(path) == world.inventory
    assert f"{USER}: infisical; 3 consumer(s): heroku:raxx-api-prod, github:raxx/infra, ssh:vault-host" in result.stdout
