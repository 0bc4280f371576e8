"""No secret value ever leaves memory: not into the journal, the audit log, the terminal,
--world-out, or `show` / `sessions` exports.

In-process runs capture the values to look for (the new secret right after step 2, every
key's secret from the simulated AWS, the operator's own); CLI runs learn them by hooking
the redactor, with which every `Secret` registers itself, and the simulated AWS.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from pathlib import Path

import pytest

import steps.actions as actions_module
from steps.actions import registry
from steps.secrets import MASK, REDACTOR, RedactingFilter, Secret, fingerprint, redact


def needles(values: set[str]) -> set[bytes]:
    """Each value, and a 16-character prefix of it (a truncated echo is still a leak)."""
    out: set[bytes] = set()
    for value in values:
        assert len(value) >= 16, "a test secret too short to scan for"
        out.add(value.encode())
        out.add(value[:16].encode())
    return out


def assert_clean(where: str, data: bytes | str, values: set[str]) -> None:
    blob = data.encode() if isinstance(data, str) else data
    for needle in needles(values):
        assert needle not in blob, f"a secret ({needle[:4].decode()}...) leaked into {where}"


def home_files(home: Path) -> dict[str, bytes]:
    """Every file handrail wrote under HANDRAIL_HOME (journal, its side files, audit log),
    and with a shared journal every row of every table of its database."""
    files = {str(p.relative_to(home)): p.read_bytes() for p in home.rglob("*") if p.is_file()}
    url = os.environ.get("HANDRAIL_DATABASE_URL")
    if url:
        files.update(database_dump(url))
        assert "table audit" in files and "table sessions" in files, sorted(files)
        return files
    assert "journal.sqlite3" in files and "audit.jsonl" in files, sorted(files)
    return files


def database_dump(url: str) -> dict[str, bytes]:
    """Every table of the shared journal's schema, every row, as text (the tables other
    features add are found, not listed)."""
    import psycopg

    out: dict[str, bytes] = {}
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        assert tables, "no tables in the journal database"
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            out[f"table {table}"] = json.dumps([list(map(str, row)) for row in rows]).encode()
    return out


def world_secrets(world) -> set[str]:
    """Every key's secret, the operator's, what the vault and consumers hold, and the
    sandbox's own credentials."""
    values = {s.reveal() for s in world.aws.secrets_by_key().values()} | {world.aws.operator.secret.reveal()}
    holdings = getattr(world, "holdings", None)
    if holdings is not None:
        values |= {secret.reveal() for _, secret in holdings().values() if secret is not None}
    creds = getattr(world, "creds", None)
    for name in ("heroku_token", "github_token"):
        token = getattr(creds, name, None)
        if isinstance(token, Secret):
            values.add(token.reveal())
    return values


# -- in-process: the values are known --------------------------------------------------------------


def test_a_full_rotation_leaks_no_secret_anywhere(backend, rig, cli, handrail_home):
    world = rig.world()
    secrets = world_secrets(world)  # the old key's and the operator's
    session = rig.start(world)
    rig.run_steps(session, 4)  # through create-key
    new_secret = session.secrets["new_secret"].reveal()
    secrets |= {new_secret} | world_secrets(world)

    drove = rig.drive(session)
    assert drove.code == 0, drove.text
    secrets |= world_secrets(world)
    assert len(secrets) >= 3

    # The canary: the new secret authenticates, so it really is the value to look for.
    assert world.aws.probe(session.facts["new_key_id"], Secret(new_secret))[0]

    for name, data in home_files(handrail_home).items():
        assert_clean(name, data, secrets)
    assert_clean("the driver's output", drove.text, secrets)
    assert_clean("--world-out", json.dumps(world.export()), secrets)
    assert_clean("the session summary", json.dumps(session.summary()), secrets)
    for args in (("show", session.id, "--json"), ("show", session.id), ("sessions", "--all", "--json"), ("audit", "show")):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert_clean(f"handrail {' '.join(args)}", result.stdout + result.stderr, secrets)


def test_a_rollback_leaks_no_secret(backend, rig, cli, handrail_home):
    world = rig.world()
    secrets = world_secrets(world)
    session = rig.start(world)
    rig.run_steps(session, 9)  # through deactivate-old-key
    secrets |= {session.secrets["new_secret"].reveal()} | world_secrets(world)

    ok, results = session.rollback()
    assert ok, results

    for name, data in home_files(handrail_home).items():
        assert_clean(name, data, secrets)
    assert_clean("the rollback outcomes", "\n".join(o.summary + "\n".join(o.evidence) for _, o in results), secrets)
    assert_clean("show --json", cli("show", session.id, "--json").stdout, secrets)


def test_a_failing_action_that_echoes_a_secret_is_scrubbed_before_it_is_written(rig, lean, handrail_home, monkeypatch):
    world = rig.world(lean)
    session = rig.start(world)
    rig.run_steps(session, 4)
    new_secret = session.secrets["new_secret"].reveal()
    spec = registry()["iam.validate_new_key"]

    def careless(ctx):
        raise RuntimeError(f"signature mismatch for secret {ctx.secrets['new_secret'].reveal()} (debug)")

    monkeypatch.setitem(actions_module._ACTIONS, spec.name, dataclasses.replace(spec, fn=careless))
    drove = rig.drive(session)

    assert drove.code == 1
    state = session.states["validate-new-key"]
    assert state.status == "failed"
    assert MASK in state.summary and new_secret not in state.summary
    assert_clean("the driver's output", drove.text, {new_secret})
    for name, data in home_files(handrail_home).items():
        assert_clean(name, data, {new_secret})


# -- the CLI in-process: learn the values by hooking the redactor and the simulated AWS ------------


@pytest.fixture
def seen_secrets(monkeypatch) -> set[str]:
    """Every secret value created in this process from now on (every Secret registers itself
    with the redactor) plus every simulated key's secret when its world closes."""
    from steps.sandbox.aws import AwsWorld

    seen: set[str] = set()
    register = REDACTOR.register

    def spy(value: str, label: str = "secret") -> None:
        seen.add(value)
        register(value, label)

    monkeypatch.setattr(REDACTOR, "register", spy)
    close = AwsWorld.close

    def close_and_remember(self) -> None:
        try:
            seen.update(s.reveal() for s in self.secrets_by_key().values())
        except Exception:
            pass
        close(self)

    monkeypatch.setattr(AwsWorld, "close", close_and_remember)
    return seen


@pytest.mark.slow
def test_cli_runs_resume_and_rollback_leak_no_secret(cli, seen_secrets, handrail_home, tmp_path):
    outputs: dict[str, str] = {}

    def run(*args) -> dict:
        result = cli(*args)
        outputs[" ".join(map(str, args))] = result.stdout + "\n" + result.stderr
        return json.loads(result.stdout) if "--json" in args and result.stdout.strip().startswith("{") else {}

    done = run("run", "--yes", "--fast-forward", "--confirm-irreversible", "--json", "--world-out", tmp_path / "done.json")
    assert done["status"] == "done"
    stopped = run("run", "--yes", "--json", "--world-out", tmp_path / "stopped.json")
    assert stopped["status"] == "waiting"
    rolled = run("rollback", stopped["session"], "--yes", "--json", "--world-out", tmp_path / "rolled.json")
    assert rolled["status"] == "rolled-back"
    waiting = run("run", "--scenario", "two-active-keys", "--yes", "--json")
    assert waiting["status"] in ("active", "waiting")
    run("resume", waiting["session"], "--yes", "--fast-forward", "--confirm-irreversible", "--retire-key", "AKIANOTHERE00000000X", "--json")
    run(
        "run",
        "--scenario",
        "self-rotation",
        "--yes",
        "--fast-forward",
        "--confirm-irreversible",
        "--allow-self-rotation",
        "--json",
        "--world-out",
        tmp_path / "self.json",
    )
    for args in (("sessions", "--all", "--json"), ("show", done["session"], "--json"), ("show", rolled["session"]), ("audit", "show")):
        run(*args)

    # Every simulated key that ever existed in these runs, the operators', the new ones.
    assert len(seen_secrets) >= 8, "the hook saw too few secrets to prove anything"
    for where, text in outputs.items():
        assert_clean(f"`handrail {where}`", text, seen_secrets)
    for name in ("done.json", "stopped.json", "rolled.json", "self.json"):
        assert_clean(f"--world-out {name}", (tmp_path / name).read_bytes(), seen_secrets)
    for name, data in home_files(handrail_home).items():
        assert_clean(name, data, seen_secrets)


def test_world_out_holds_fingerprints_where_the_values_would_be(cli, seen_secrets, tmp_path):
    out = tmp_path / "w.json"
    assert cli("run", "--yes", "--fast-forward", "--confirm-irreversible", "--world-out", out).exit_code == 0
    world = json.loads(out.read_text())
    key = world["iam_users"]["raxx-vault-operator"]["keys"][0]
    assert key["fingerprint"].startswith("sha256:") and len(key["fingerprint"]) == len("sha256:") + 12
    assert key["fingerprint"] in {fingerprint(v) for v in seen_secrets}
    holder = world["holders"][f"aws:raxx-vault-operator:{key['id']}"]
    assert holder["fingerprint"] == key["fingerprint"]


# -- the Secret type ------------------------------------------------------------------------------


VALUE = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_a_secret_never_renders_its_value():
    secret = Secret(VALUE, "new_secret")
    renderings = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>60}",
        "%s %r" % (secret, secret),  # noqa: UP031 -- the old formatting path must be masked too
        f"{secret}",
        repr([secret]),
        repr({"k": secret}),
        json.dumps({"k": secret}, default=str),
    ]
    for text in renderings:
        assert VALUE not in text and VALUE[:8] not in text, text
    assert str(secret) == MASK
    assert secret.reveal() == VALUE


def test_a_secret_cannot_be_pickled():
    with pytest.raises(TypeError):
        pickle.dumps(Secret(VALUE))
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [Secret(VALUE)]})


def test_a_secret_is_immutable_and_compares_by_value():
    secret = Secret(VALUE)
    with pytest.raises(AttributeError):
        secret._value = "other"  # type: ignore[misc]
    assert secret == Secret(VALUE)
    assert secret != Secret(VALUE[::-1])
    assert secret.fingerprint() == fingerprint(VALUE) != fingerprint(VALUE[::-1])
    assert VALUE not in secret.fingerprint()


def test_an_empty_secret_is_refused():
    with pytest.raises(ValueError):
        Secret("")


def test_a_pair_and_an_outcome_show_no_secret():
    from steps.actions.base import Outcome
    from steps.consumers.base import Pair

    secret = Secret(VALUE)
    assert VALUE not in repr(Pair("AKIAEXAMPLE", secret))
    outcome = Outcome.done(f"created with {VALUE}", [f"echo {VALUE}"], note=VALUE)
    outcome.secrets["new_secret"] = secret
    assert VALUE not in repr(outcome)


def test_the_redactor_scrubs_every_known_secret_from_text_and_logs(caplog):
    Secret(VALUE)
    assert redact(f"error: bad key {VALUE}!") == f"error: bad key {MASK}!"
    logger = logging.getLogger("handrail-test-redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("leaking %s on purpose", VALUE)
    assert VALUE not in caplog.text and MASK in caplog.text
