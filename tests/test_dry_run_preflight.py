"""`handrail run --mode dry-run` is a real pre-flight (issue 9, item 6).

Live wiring is pointed at a sandbox world the way `handrail sandbox serve` does it (its
inventory, its environment), with every real client. The dry run reads AWS, probes the
vault and every consumer read-only and reports each, shows the inventory's real names in
its commands, and changes nothing anywhere: the world's export (fingerprints, IAM keys,
holders) is the same after, and no system's call counter shows a write.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from world_helpers import TARGET, Handrail, files_under, handrail, home, leaks, secret_values, served

from steps.sandbox.serve import environment, write_files

VAULT = "infisical:raxx-prod/prod/aws/raxx-vault-operator"
CONSUMERS = ("heroku:raxx-api-prod", "github:raxx/infra", "ssh:vault-host")
# Routes and commands that change something, per system.
WRITES = {
    "aws": re.compile(r":(Create|Update|Delete|Put|Tag|Untag|Attach)"),
    "infisical": re.compile(r"^(create|update)_secret$"),
    "heroku": re.compile(r"^(patch_config|restart)$"),
    "github": re.compile(r"^(put_.*|dispatch)$"),
    "ssh": re.compile(r"^(sftp:(write|rename|posix_rename|remove|mkdir|rmdir|setstat|fsetstat)|health:.*)$"),
}
READ_ONLY_SSH = re.compile(r"^(command -v \S+|systemctl cat \S+|sudo -n -l .*)$")


@pytest.fixture
def served_world(make_world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The happy path's world, and the environment `handrail sandbox serve` prints for it."""
    world = make_world("happy-path")
    inventory, _ = write_files(world, tmp_path / "sandbox")
    for name, value in environment(world, inventory).items():
        monkeypatch.setenv(name, value)
    return world


def dry_run(cli, *extra: str):
    return cli("run", "--mode", "dry-run", "--user", TARGET, "--yes", *extra)


def stable(export: dict[str, Any]) -> dict[str, Any]:
    """The world as --world-out shows it, without what reading it changes: call counts,
    the simulated clock, and the last use AWS records of a key that signed a read (the
    operator's; the old key's, which step 1 proves with sts get-caller-identity)."""
    out = copy.deepcopy({k: v for k, v in export.items() if k not in ("calls", "simulated_now")})
    for user in out["iam_users"].values():
        for key in user["keys"]:
            key.pop("last_used", None)
            key.pop("last_used_service", None)
    return out


def writes(export: dict[str, Any]) -> dict[str, list[str]]:
    found = {system: [c for c in export["calls"].get(system, {}) if WRITES[system].search(c)] for system in WRITES}
    return {system: calls for system, calls in found.items() if calls}


def section(out: str, number: str) -> str:
    """The printed lines of one step, from its header to the next."""
    match = re.search(rf"^\[\d+/\d+\] step {re.escape(number)}: .*?(?=^\[\d+/\d+\] step |\Z)", out, re.S | re.M)
    assert match, f"no step {number} in:\n{out}"
    return match.group(0)


def test_dry_run_probes_the_vault_and_every_consumer_and_changes_nothing(served_world, cli, handrail_home):
    world = served_world
    before = world.export()
    file_versions = len(world.ssh.fs.versions("/etc/raxx/credentials.env"))

    result = dry_run(cli)

    assert result.exit_code == 0, result.output
    out = result.stdout
    store, propagate, verify = section(out, "4"), section(out, "5"), section(out, "6")
    assert "pre-flight (read-only): the vault is ready" in store
    assert f"{VAULT}: ready (login, secrets checked)" in store
    assert "pre-flight (read-only): 3 of 3 consumer(s) ready" in propagate
    for name in CONSUMERS:
        assert re.search(rf"^\s+{re.escape(name)}: ready \(", propagate, re.M), name
        assert re.search(rf"^\s+{re.escape(name)}: ready \(", verify, re.M), name
    assert "NOT READY" not in out and "FAILED" not in out
    # What each probe looked at, in its own words.
    assert "ok: secrets: AWS_ACCESS_KEY_ID (v1) and AWS_SECRET_ACCESS_KEY (v1) exist" in store
    assert "ok: token and app: token (HEROKU_API_KEY) accepted; app raxx-api-prod exists" in propagate
    assert "ok: public key: token (GH_TOKEN) reads the repository raxx/infra public key" in propagate
    assert "is in known_hosts; logged in" in propagate and "unit raxx-vault exists, sudo -n allows it (not run)" in propagate

    # Nothing changed anywhere, and no system saw a write.
    after = world.export()
    assert stable(after) == stable(before)
    assert writes(after) == {}, writes(after)
    assert after["calls"]["infisical"].get("list_secrets", 0) >= 1 and after["calls"]["heroku"].get("get_config", 0) >= 1
    assert len(world.ssh.fs.versions("/etc/raxx/credentials.env")) == file_versions
    assert world.ssh.commands and all(READ_ONLY_SSH.match(c) for c in world.ssh.commands), world.ssh.commands
    assert world.ssh.service_state("raxx-vault") == "active"
    # No secret in what it printed, nor in the journal, the audit log or any other file it wrote.
    assert leaks(secret_values(world), {"stdout": out, "stderr": result.stderr, **files_under(handrail_home)}) == []


def test_dry_run_commands_show_the_inventory_names(served_world, cli):
    world = served_world

    out = dry_run(cli).stdout

    ssh = f"raxx@{world.ssh.host}"
    for number, names in {
        "4": ["--projectId=raxx-prod --env=prod --path=/aws/raxx-vault-operator", "--domain=http://127.0.0.1:…/api"],
        "5": [
            "-a raxx-api-prod",
            "--repo raxx/infra",
            f"{ssh} 'sudoedit /etc/raxx/credentials.env'",
            "'sudo systemctl restart raxx-vault'",
        ],
        "6": [
            "heroku config:get AWS_ACCESS_KEY_ID -a raxx-api-prod",
            "gh workflow run aws-smoke.yml --repo raxx/infra",
            "'raxx-vault healthcheck'",
        ],
    }.items():
        text = section(out, number)
        for name in names:
            assert re.search(rf"^\s+\$ .*{re.escape(name)}", text, re.M), f"step {number} does not show {name!r}:\n{text}"
        # The commands are shown once, as `$` lines; the outcome says "would run" once, not again per line.
        assert len(re.findall(r"^\s+-> would run: ", text, re.M)) == 1, text
        assert "would run: would run" not in text and not re.search(r"^\s+would run: ", text, re.M), text
    for placeholder in ("<app>", "<vault host>", "<service>", "<vault_command>", "<consumer_commands>", "$INFISICAL_PROJECT_ID"):
        assert placeholder not in out, placeholder
    # Key ids not known in a dry run show as placeholders, as everywhere else.
    assert "AWS_ACCESS_KEY_ID=<new_key_id>" in section(out, "5")


def test_a_broken_consumer_is_reported_in_one_line_and_the_dry_run_goes_on(served_world, cli, tmp_path, monkeypatch):
    world = served_world
    inventory = tmp_path / "sandbox" / "inventory.yaml"
    data = yaml.safe_load(inventory.read_text())
    consumers = data["users"][TARGET]["consumers"]
    # GitHub: a secret name that does not exist there; SSH: a known_hosts without the
    # host's key; Heroku: a token it does not know.
    next(c for c in consumers if c["type"] == "github")["secret_name"] = "AWS_SECRET_KEY"
    other = tmp_path / "other_known_hosts"
    other.write_text("")
    next(c for c in consumers if c["type"] == "ssh")["known_hosts"] = str(other)
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("HEROKU_API_KEY", "HRKU-00000000-0000-4000-8000-000000000000")
    before = world.export()

    result = dry_run(cli, "--inventory", str(inventory))

    # A rehearsal that finds a place it would write not ready fails, and its last line names them.
    assert result.exit_code == 1, result.output
    assert "dry run done, but NOT READY: heroku:raxx-api-prod, github:raxx/infra, ssh:vault-host" in result.output.strip().splitlines()[-1]
    propagate = section(result.stdout, "5")
    assert (
        "pre-flight (read-only): 0 of 3 consumer(s) ready; NOT READY: heroku:raxx-api-prod, github:raxx/infra, ssh:vault-host" in propagate
    )
    lines = {
        name: [line.strip() for line in propagate.splitlines() if line.strip().startswith(f"{name}: NOT READY: ")] for name in CONSUMERS
    }
    assert all(len(found) == 1 for found in lines.values()), lines
    (heroku,), (github,), (ssh,) = lines.values()
    assert "read the app failed: HTTP 401" in heroku and "(token from HEROKU_API_KEY)" in heroku
    assert "AWS_SECRET_KEY not found in repository raxx/infra" in github
    assert "is not in known_hosts" in ssh and str(other) in ssh
    # Step 6 says the same, one line each; the vault is still fine.
    verify = section(result.stdout, "6")
    assert all(f"{name}: NOT READY: " in verify for name in CONSUMERS)
    assert "the vault is ready" in section(result.stdout, "4")
    after = world.export()
    assert stable(after) == stable(before) and writes(after) == {}
    assert world.ssh.commands == []  # the host key was refused before any command
    assert leaks(secret_values(world), {"stdout": result.stdout, "stderr": result.stderr}) == []


def test_a_missing_config_var_is_named(served_world, cli):
    world = served_world
    world.heroku.seed_app("raxx-api-prod", {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE01"})  # the secret half is gone

    result = dry_run(cli)
    propagate = section(result.stdout, "5")

    assert result.exit_code == 1 and "NOT READY: heroku:raxx-api-prod" in result.output.strip().splitlines()[-1]
    assert "heroku:raxx-api-prod: NOT READY: AWS_SECRET_ACCESS_KEY not set on raxx-api-prod" in propagate
    assert "2 of 3 consumer(s) ready; NOT READY: heroku:raxx-api-prod" in propagate


# -- the inventory's names in displayed commands -----------------------------------------------------


def test_display_values_name_real_places_and_elide_only_a_sandbox_port(tmp_path):
    from steps.consumers.display import NO_CONSUMERS, NO_VAULT, display_values
    from steps.consumers.github import GitHubSecretsConsumer
    from steps.consumers.heroku import HerokuConsumer
    from steps.consumers.infisical import InfisicalAuth, InfisicalVault
    from steps.consumers.ssh import SshHostConsumer

    config = tmp_path / "ssh_config"
    config.write_text("")
    auth = InfisicalAuth.from_token("t-0123456789")
    vault = InfisicalVault("https://vault.raxx.example", "raxx-prod", "prod", "/aws/u", auth=auth)
    consumers = [
        HerokuConsumer("raxx-api-prod", token="t", verify_url="https://raxx-api-prod.herokuapp.com/healthz"),
        GitHubSecretsConsumer("raxx/infra@prod", token="t", verify_workflow="aws-smoke.yml"),
        SshHostConsumer(
            "vault-host", "vault.raxx.example", port=2222, user="raxx", ssh_config=config, verify_command="raxx-vault healthcheck"
        ),
    ]

    shown = display_values(vault, consumers, {"new_key_id": "AKIANEW", "old_key_id": "AKIAOLD"})

    assert shown["vault"] == "infisical:raxx-prod/prod/aws/u"
    assert shown["vault_command"].endswith("--projectId=raxx-prod --env=prod --path=/aws/u --domain=https://vault.raxx.example/api")
    assert "AWS_ACCESS_KEY_ID=AKIANEW" in shown["vault_command"] and "AWS_ACCESS_KEY_ID=AKIAOLD" in shown["vault_restore_command"]
    assert shown["consumers"] == "heroku:raxx-api-prod, github:raxx/infra@prod, ssh:vault-host"
    heroku, github, ssh = shown["consumer_commands"].splitlines()
    assert heroku == "heroku config:set AWS_ACCESS_KEY_ID=AKIANEW AWS_SECRET_ACCESS_KEY=**** -a raxx-api-prod"
    assert "--env prod --repo raxx/infra" in github
    assert ssh.startswith("ssh -p 2222 raxx@vault.raxx.example 'sudoedit /etc/raxx/credentials.env'")
    assert shown["verify_commands"].splitlines() == [
        "heroku config:get AWS_ACCESS_KEY_ID -a raxx-api-prod && curl -fsS https://raxx-api-prod.herokuapp.com/healthz",
        "gh secret list --env prod --repo raxx/infra && gh workflow run aws-smoke.yml --repo raxx/infra --ref main && gh run watch",
        "ssh -p 2222 raxx@vault.raxx.example 'raxx-vault healthcheck'",
    ]
    # Before the key exists (a dry run), and without an inventory entry.
    assert "AWS_ACCESS_KEY_ID=<new_key_id>" in display_values(vault, consumers, {})["consumer_commands"]
    empty = display_values(None, [], {})
    assert empty["vault_command"] == NO_VAULT and empty["consumer_commands"] == empty["verify_commands"] == NO_CONSUMERS


def test_the_loader_knows_the_inventory_placeholders_and_still_refuses_others(shipped_runbook, write_yaml):
    from steps.loader import RunbookError, load

    assert load(write_yaml("ok.yaml", shipped_runbook)).step("propagate").command == "{consumer_commands}"
    shipped_runbook["steps"][6]["command"] = "heroku config:set -a {heroku_app}"
    with pytest.raises(RunbookError) as bad:
        load(write_yaml("bad.yaml", shipped_runbook))
    assert str(bad.value).endswith("bad.yaml: steps[6].command: undefined placeholder {heroku_app}")


# -- `handrail sandbox serve` in its own process, the dry run in another ------------------------------


def _as_seen_from_outside(served, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The served world through the real clients: the IAM keys, and every place's probe
    lines (versions, held key ids, secrets' updated_at); probes are read-only (test_probes)."""
    import boto3

    from steps import inventory
    from steps.consumers.factory import Credentials, build_consumer, build_vault

    for name, value in served.env.items():
        monkeypatch.setenv(name, value)
    env = served.env
    iam = boto3.client(
        "iam",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    keys = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=TARGET)["AccessKeyMetadata"]}
    entry = inventory.load(served.inventory).user(TARGET)
    places = [build_vault(entry.vault, Credentials()), *(build_consumer(c, Credentials()) for c in entry.consumers)]
    try:
        return {"keys": keys, **{p.name: p.probe().lines() for p in places}}
    finally:
        for place in places:
            place.close()


@pytest.mark.slow
def test_dry_run_in_its_own_process_against_sandbox_serve(served, handrail, monkeypatch):
    before = _as_seen_from_outside(served, monkeypatch)
    live = Handrail(handrail.home, handrail.cwd, dict(served.env))

    result = live("run", "--mode", "dry-run", "--user", TARGET, "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"{VAULT}: ready" in section(out, "4")
    assert "pre-flight (read-only): 3 of 3 consumer(s) ready" in section(out, "5")
    for name in CONSUMERS:
        assert f"{name}: ready" in section(out, "5") and f"{name}: ready" in section(out, "6")
    assert "<app>" not in out and "-a raxx-api-prod" in out and "--repo raxx/infra" in out
    assert _as_seen_from_outside(served, monkeypatch) == before


def test_a_consumer_that_cannot_be_set_up_is_reported_not_a_traceback(served_world, cli, tmp_path):
    inventory = tmp_path / "sandbox" / "inventory.yaml"
    data = yaml.safe_load(inventory.read_text())
    next(c for c in data["users"][TARGET]["consumers"] if c["type"] == "ssh")["key_file"] = str(tmp_path / "no-such-key")
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))

    result = dry_run(cli, "--inventory", str(inventory))

    assert result.exit_code == 1, result.output
    propagate = section(result.stdout, "5")
    assert f"ssh:vault-host: NOT READY: cannot set up ssh:vault-host: key file {tmp_path / 'no-such-key'} not found" in propagate
    assert "2 of 3 consumer(s) ready; NOT READY: ssh:vault-host" in propagate
    assert "$ # ssh:vault-host: cannot be set up: key file" in propagate


def test_a_vault_that_refuses_the_login_is_one_line_and_changes_nothing(served_world, cli, monkeypatch):
    # Step 1 reads the old pair from the vault, so the dry run stops there, in one line.
    world = served_world
    monkeypatch.setenv("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", "not-the-secret-0123456789")
    before = world.export()

    result = dry_run(cli)

    assert result.exit_code != 0 and "Traceback" not in result.output
    failed = [line for line in result.stdout.splitlines() if line.strip().startswith("-> FAILED:")]
    assert len(failed) == 1 and "universal-auth login as client id" in failed[0] and "HTTP 401" in failed[0], result.stdout
    after = world.export()
    assert stable(after) == stable(before) and writes(after) == {}
