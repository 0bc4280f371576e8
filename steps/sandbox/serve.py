"""`handrail sandbox serve`: the whole sandbox as one long-running process.

It prints (and writes to a 0600 env file) what a `handrail run --mode live` in another
process needs to point every real client at it: the AWS endpoint and the operator's
sandbox key, the Infisical machine identity, the Heroku and GitHub tokens, and an
inventory whose SSH entry names a client key and a known_hosts file written here.
Those are sandbox credentials, made up at start and worthless elsewhere.
"""

from __future__ import annotations

import shlex
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import yaml

from steps.clock import SimClock
from steps.inventory import dump
from steps.paths import private_dir, private_file
from steps.sandbox import scenario as scenarios
from steps.sandbox.http import proxy_exemptions
from steps.sandbox.world import World


def environment(world: World, inventory_file: Path) -> dict[str, str]:
    op = world.aws.operator
    if op is None:
        raise RuntimeError("sandbox: the simulated account has no operator key to hand out")
    env = {
        "AWS_ENDPOINT_URL": world.aws.url,
        "AWS_ACCESS_KEY_ID": op.key_id,
        "AWS_SECRET_ACCESS_KEY": op.secret.reveal(),
        "AWS_DEFAULT_REGION": world.aws.region,
        "AWS_REGION": world.aws.region,
        "HANDRAIL_INVENTORY": str(inventory_file),
    }
    auth = world.creds.infisical
    if auth is not None:
        if auth.client_id is None or auth.client_secret is None:
            raise RuntimeError("sandbox: the Infisical credentials are not a universal-auth identity")
        env["INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"] = auth.client_id
        env["INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"] = auth.client_secret.reveal()
    if world.creds.heroku_token is not None:
        env["HEROKU_API_KEY"] = world.creds.heroku_token.reveal()
    if world.creds.github_token is not None:
        env["GH_TOKEN"] = world.creds.github_token.reveal()
    env.update(proxy_exemptions())  # a proxy from the shell cannot reach 127.0.0.1
    return env


def write_files(world: World, directory: Path) -> tuple[Path, Path]:
    """The inventory (SSH entries with a client key file) and the env file."""
    private_dir(directory)
    inventory = world.inventory
    if inventory is None:
        raise RuntimeError("sandbox: the world has no inventory (its places were never started)")
    if world.ssh is not None:
        key_file = directory / "ssh_client_key"
        world.ssh.write_client_key(key_file)
        known_hosts = directory / "known_hosts"
        world.ssh.write_known_hosts(known_hosts)
        users = {}
        for name, entry in inventory.users.items():
            consumers = [
                c.model_copy(update={"key_file": str(key_file), "known_hosts": str(known_hosts)}) if c.type == "ssh" else c
                for c in entry.consumers
            ]
            users[name] = entry.model_copy(update={"consumers": consumers})
        inventory = inventory.model_copy(update={"users": users})
    inventory_file = directory / "inventory.yaml"
    inventory_file.write_text(
        "# written by `handrail sandbox serve`: points at the sandbox on 127.0.0.1\n" + yaml.safe_dump(dump(inventory), sort_keys=False)
    )
    env_file = private_file(directory / "env")
    env = environment(world, inventory_file)
    env_file.write_text(
        "unset AWS_PROFILE AWS_SESSION_TOKEN INFISICAL_TOKEN GITHUB_TOKEN\n"
        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    )
    return inventory_file, env_file


def serve(scenario_ref: str | None, directory: str | None, echo: Callable[[str], None], stop: threading.Event | None = None) -> None:
    scenario = scenarios.load(scenario_ref)
    world = World.create(scenario, SimClock(auto_advance=False))  # real time: it runs beside a live run
    stop = stop or threading.Event()
    try:
        where = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="handrail-sandbox-"))
        inventory_file, env_file = write_files(world, where)
        echo(f"handrail sandbox: scenario {scenario.id}, simulated account {world.aws.account_id}, target user {scenario.target_user}")
        echo(f"  aws (moto behind the gate)  {world.aws.url}")
        for name in ("infisical", "heroku", "github"):
            sandbox = getattr(world, name)
            if sandbox is not None:
                echo(f"  {name:<27} {sandbox.url}")
        if world.ssh is not None:
            echo(f"  ssh (vault host)            {world.ssh.host}:{world.ssh.port}")
        echo(f"  inventory                   {inventory_file}")
        echo(f"environment for a live run (also in {env_file}, mode 0600; sandbox credentials only):")
        echo(env_file.read_text().rstrip())
        echo(f"then: handrail run aws-iam-access-key --mode live --user {scenario.target_user}")
        echo("ready")
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, lambda *_: stop.set())
            except ValueError:  # not the main thread (tests): the caller sets `stop`
                pass
        stop.wait()
    finally:
        world.close()
