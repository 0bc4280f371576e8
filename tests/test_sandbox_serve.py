"""`handrail sandbox serve` in a subprocess, and live mode pointed at it end to end.

The served sandbox runs on REAL time (a new key takes the happy path's 4 s to become
valid), so a live `handrail run` can be killed in the middle of step 3 and resumed by
a new process. The end state is read back with the real clients (boto3, infisicalsdk,
requests, PyGithub, paramiko) through the inventory the sandbox wrote.
"""

from __future__ import annotations

import json
import re
import signal
import stat
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from world_helpers import (
    TARGET,
    Handrail,
    Served,
    handrail,
    home,
    read_lines_until,
    rest_of_output,
    served,
)

from steps.driver import EXIT_DONE

pytestmark = pytest.mark.slow

LIVE = ("run", "--mode", "live", "--user", TARGET, "--yes", "--override-gate", "rehearsal", "--confirm-irreversible")
ENV_NAMES = {
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "HANDRAIL_INVENTORY",
    "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID",
    "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET",
    "HEROKU_API_KEY",
    "GH_TOKEN",
}


def _live(handrail: Handrail, served: Served) -> Handrail:
    return Handrail(handrail.home, handrail.cwd, dict(served.env))


def _state(served: Served, monkeypatch: pytest.MonkeyPatch, written_since: datetime) -> dict[str, Any]:
    """The sandbox as the real clients see it: IAM keys, what the vault holds, and for
    every consumer the key id it holds and whether it works on the vault's pair."""
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
    vault = build_vault(entry.vault, Credentials())
    consumers = [build_consumer(c, Credentials()) for c in entry.consumers]
    try:
        pair, _ = vault.read_pair()
        held: dict[str, Any] = {}
        for consumer in consumers:
            if consumer.kind == "github":
                # Write-only secrets: verify() checks both were rewritten since the run began,
                # then dispatches the smoke workflow, which uses what GitHub holds against AWS.
                consumer.written_at, consumer.written_key_id = written_since, pair.key_id
            result = consumer.verify(pair)
            held[consumer.name] = {"key_id": consumer.read_key_id(), "works": result.ok, "summary": result.summary}
        return {"keys": keys, "vault": pair.key_id, "consumers": held}
    finally:
        for adapter in [vault, *consumers]:
            close = getattr(adapter, "close", None)
            if close:
                close()


def _assert_rotated(state: dict[str, Any], new: str) -> None:
    assert state["keys"] == {new: "Active"}, f"expected only {new} Active: {state['keys']}"
    assert state["vault"] == new
    assert set(state["consumers"]) == {"heroku:raxx-api-prod", "github:raxx/infra", "ssh:vault-host"}
    for name, c in state["consumers"].items():
        assert c["works"], f"{name}: {c['summary']}"
        if name != "github:raxx/infra":  # GitHub secrets cannot be read back
            assert c["key_id"] == new, f"{name} holds {c['key_id']}"


def test_serve_prints_ready_and_writes_a_private_env_file_and_a_valid_inventory(served: Served, handrail: Handrail) -> None:
    assert served.banner[-1].strip() == "ready"
    env_file = served.directory / "env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert set(served.env) >= ENV_NAMES, sorted(ENV_NAMES - set(served.env))
    assert served.env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert "unset AWS_PROFILE" in env_file.read_text()
    assert stat.S_IMODE((served.directory / "ssh_client_key").stat().st_mode) == 0o600

    check = handrail("inventory", "check", served.inventory)

    assert check.returncode == 0, check.stderr
    assert f"{TARGET}: infisical; 3 consumer(s): heroku:raxx-api-prod, github:raxx/infra, ssh:vault-host" in check.stdout


def test_live_run_against_the_served_sandbox_rotates_every_consumer_onto_the_new_key(
    served: Served, handrail: Handrail, monkeypatch
) -> None:
    live = _live(handrail, served)
    before = _state(served, monkeypatch, datetime.now(UTC))
    (old,) = before["keys"]
    assert before["vault"] == old

    began = datetime.now(UTC)
    started = time.perf_counter()
    result = live(*LIVE, "--json")
    seconds = time.perf_counter() - started

    assert result.returncode == EXIT_DONE, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["mode"] == "live" and summary["status"] == "done" and summary["old_key_id"] == old
    new = summary["new_key_id"]
    assert [s["status"] for s in summary["steps"]] == ["done"] * len(summary["steps"])
    _assert_rotated(_state(served, monkeypatch, began), new)
    print(f"\n[figures] live `handrail run` against `handrail sandbox serve` (real time, 4 s propagation): {seconds:.2f} s wall")


def test_a_live_run_killed_in_step_3_is_finished_by_resume_in_a_new_process(served: Served, handrail: Handrail, monkeypatch) -> None:
    live = _live(handrail, served)
    began = datetime.now(UTC)
    proc = live.popen(*LIVE)
    try:
        lines = read_lines_until(proc, lambda line: line.startswith("[5/11] step 3:"), timeout=120)
        time.sleep(1.5)  # step 3 polls for 4 s of real time: kill it in the middle
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        rest = rest_of_output(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert "new key" not in rest and "[6/11]" not in rest, f"step 3 finished before the kill:\n{rest}"
    session = re.search(r"session (\S+)$", lines[0]).group(1)
    first_new = re.search(r"-> ok: created (AKIA\w+)", "\n".join(lines)).group(1)

    shown = json.loads(live("show", session, "--json").stdout)
    assert shown["status"] == "active" and shown["new_key_id"] == first_new
    assert shown["events"][-1]["kind"] == "started" and shown["events"][-1]["step_id"] == "validate-new-key"

    resumed = live("resume", session, "--yes", "--override-gate", "rehearsal", "--confirm-irreversible", "--json")

    assert resumed.returncode == EXIT_DONE, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "done"
    new = summary["new_key_id"]
    # The secret of the key created before the kill died with that process and no vault
    # held it: the resume replaced that key instead of leaving an unusable one behind.
    events = json.loads(live("show", session, "--json").stdout)["events"]
    assert any(e["kind"] == "reopened" and e["step_id"] == "create-key" for e in events)
    assert new != first_new
    _assert_rotated(_state(served, monkeypatch, began), new)


@pytest.mark.parametrize("no_proxy", [None, "corp.example"])
@pytest.mark.parametrize("spelling", ["NO_PROXY", "no_proxy"])
def test_where_a_proxy_is_set_the_handed_out_environment_keeps_loopback_off_it(
    make_world, tmp_path, monkeypatch, no_proxy, spelling
) -> None:
    from steps.sandbox.serve import environment

    world = make_world("happy-path")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert "NO_PROXY" not in environment(world, tmp_path / "inventory.yaml")  # no proxy: nothing to add

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    if no_proxy:
        monkeypatch.setenv(spelling, no_proxy)
    env = environment(world, tmp_path / "inventory.yaml")
    kept = [no_proxy] if no_proxy else []  # the hosts already exempted stay exempted, in both spellings
    assert env["NO_PROXY"].split(",") == env["no_proxy"].split(",") == [*kept, "127.0.0.1", "localhost"]
