"""Hostile input to the commands and files added with campaigns, roles, reports and the
shared journal: each is refused with one plain line naming the file, flag or value, a
non-zero exit (2 bad input, 3 refused), no traceback on stdout or stderr, and nothing
recorded: no session, no campaign, no file written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

UNKNOWN_CAMPAIGN = "c-19990101-000000-dead"


def assert_one_plain_line(result, code: int, says: str) -> str:
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, result.output
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, result.output
    last = lines[-1]
    # Ours, or click's usage error (its last line names the flag): never a traceback.
    assert last.startswith(("handrail: ", "Error: ")), result.output
    assert says in last, last
    return last


def assert_nothing_recorded(cli) -> None:
    assert json.loads(cli("sessions", "--all", "--json").stdout) == []
    assert json.loads(cli("campaign", "list", "--json").stdout) == []


# -- files: the roles file, the inventory, a scenario ---------------------------------------------


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.yaml"
    if kind == "empty":
        path.write_text("")
    elif kind == "binary":
        path.write_bytes(b"\x00\xff\xfe\x89PNG\r\n\x1a\n\x00\x01")
    elif kind == "a-list":
        path.write_text("- a\n- b\n")
    elif kind == "a-string":
        path.write_text("just words\n")
    elif kind == "deeply-nested":
        path.write_text("roles: " + "[" * 5000 + "]" * 5000 + "\n")
    elif kind == "alias-bomb":
        rows = ["a: &a [x, x, x, x, x, x, x, x, x]"]
        for prev, name in zip("abcdef", "bcdefg", strict=True):
            rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        path.write_text("\n".join(rows) + "\n")
    elif kind == "not-utf8":
        path.write_bytes(b"roles: {\xff\xfe: {}}\n")
    elif kind == "a-directory":
        path.mkdir()
    elif kind == "wrong-types":
        path.write_text("roles: 7\nusers: [1, 2]\npeople: {dana: 3}\n")
    # "missing": not created
    return path


FILE_KINDS = ["empty", "binary", "a-list", "a-string", "deeply-nested", "alias-bomb", "not-utf8", "a-directory", "wrong-types", "missing"]

FILE_COMMANDS = {
    "run --roles": ["run", "--mode", "live", "--user", "u", "--yes", "--roles", "{f}"],
    "run --inventory": ["run", "--mode", "live", "--user", "u", "--yes", "--inventory", "{f}"],
    "campaign start --roles": ["campaign", "start", "--due", "--mode", "live", "--yes", "--roles", "{f}"],
    "campaign start --inventory": ["campaign", "start", "--due", "--mode", "live", "--yes", "--inventory", "{f}"],
    "campaign start --scenario": ["campaign", "start", "--due", "--yes", "--scenario", "{f}"],
    "offboard --inventory": ["offboard", "dana", "--mode", "live", "--yes", "--inventory", "{f}"],
    "offboard --roles": ["offboard", "dana", "--mode", "live", "--yes", "--roles", "{f}"],
    "due --inventory": ["due", "--mode", "live", "--inventory", "{f}"],
    "inventory check": ["inventory", "check", "{f}"],
    "approve --roles": None,  # needs a session: below
}


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("command", [c for c, args in FILE_COMMANDS.items() if args])
def test_a_bad_file_is_one_line_naming_it_and_nothing_is_recorded(cli, tmp_path, monkeypatch, command, kind):
    monkeypatch.chdir(tmp_path)
    path = _bad_file(tmp_path, kind)
    args = [str(path) if a == "{f}" else a for a in FILE_COMMANDS[command]]
    result = cli(*args)
    assert_one_plain_line(result, 2, path.name)
    assert_nothing_recorded(cli)


# -- names and references ---------------------------------------------------------------------------

HOSTILE_NAMES = {
    "ansi-escape": "dana\x1b[31mred",
    "newline": "a\nb",
    "empty": "",
    "blank": "   ",
    "very-long": "x" * 5000,
    "path": "../../etc/passwd",
    "nul-like": "a\x01b",
}


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
@pytest.mark.parametrize(
    "command",
    [
        ["campaign", "show", "{n}"],
        ["campaign", "resume", "{n}", "--yes"],
        ["campaign", "rollback", "{n}", "--yes"],
        ["campaign", "debrief", "{n}"],
        ["board", "{n}"],
        ["report", "{n}"],
        ["evidence", "{n}"],
        ["approve", "{n}", "--step", "delete-old-key", "--reason", "r"],
        ["campaign", "start", "--user", "{n}", "--yes", "--fast-forward", "--confirm-irreversible"],
        ["offboard", "{n}", "--yes", "--scenario", "offboarding"],
    ],
    ids=lambda c: " ".join(a for a in c if a != "{n}" and not a.startswith("--")),
)
def test_a_hostile_name_or_unknown_reference_is_refused_in_one_line(cli, tmp_path, monkeypatch, command, name):
    monkeypatch.chdir(tmp_path)
    result = cli(*(name if a == "{n}" else a for a in command))
    line = assert_one_plain_line(result, 2, "")
    assert "\x1b" not in line and "\x01" not in line  # a control character is never echoed raw
    assert len(line) < 400
    assert_nothing_recorded(cli)


@pytest.mark.parametrize(
    "args, says",
    [
        pytest.param(["campaign", "show", UNKNOWN_CAMPAIGN], "no campaign", id="show"),
        pytest.param(["campaign", "resume", UNKNOWN_CAMPAIGN, "--yes"], "no campaign", id="resume"),
        pytest.param(["campaign", "rollback", UNKNOWN_CAMPAIGN, "--yes"], "no campaign", id="rollback"),
        pytest.param(["campaign", "debrief", UNKNOWN_CAMPAIGN], "no campaign", id="debrief"),
        pytest.param(["board", UNKNOWN_CAMPAIGN], "no campaign", id="board"),
        pytest.param(["campaign", "start", "--user", "nobody-here", "--yes"], "does not exist", id="start-unknown-user"),
        pytest.param(["campaign", "start", "--user", "has spaces!", "--yes"], "is not an IAM user name", id="start-bad-user-name"),
        pytest.param(["campaign", "start", "--due", "--reason", "incident", "--yes"], "--reason is for --user", id="reason-with-due"),
        pytest.param(["campaign", "start", "--due", "--name", "a\x1b[2Jb", "--yes"], "--name", id="control-chars-in-name"),
        pytest.param(["campaign", "start", "--due", "--name", "", "--yes"], "--name", id="empty-name"),
        pytest.param(["offboard", "nobody", "--yes", "--scenario", "offboarding"], "nobody", id="offboard-unknown-person"),
        pytest.param(["campaign", "start", "--due", "--yes", "--roles", "roles.yaml"], "--roles is for live", id="roles-in-training"),
    ],
)
def test_campaign_commands_refuse_bad_references_before_recording_anything(cli, tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    assert_one_plain_line(cli(*args), 2, says)
    assert_nothing_recorded(cli)


# -- numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "100000", "abc", "1.5", ""])
@pytest.mark.parametrize("command", [["due"], ["campaign", "start", "--due", "--yes"], ["campaign", "resume", "last", "--yes"]])
def test_concurrency_out_of_range_is_a_usage_error(cli, command, value):
    result = cli(*command, "--concurrency", value)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--concurrency" in result.output
    assert_nothing_recorded(cli)


@pytest.mark.parametrize("value", ["-1d", "0s", "abc", "", "1e400d", "nan", "inf", "30 days"])
@pytest.mark.parametrize("command", [["due"], ["campaign", "start", "--due", "--yes"]])
def test_a_bad_cadence_is_one_line(cli, command, value):
    assert_one_plain_line(cli(*command, "--cadence", value), 2, "--cadence")
    assert_nothing_recorded(cli)


@pytest.mark.parametrize("value", ["99y", "-1h", "0s", "abc", "25h", "1e400d", ""])
def test_a_bad_approval_expiry_is_one_line_and_records_no_approval(cli, lean, make_engine, value):
    run = cli("run", "--scenario", lean, "--yes", "--json")
    assert run.exit_code == 3, run.output
    session = json.loads(run.stdout)["session"]
    result = cli("approve", session, "--step", "delete-old-key", "--reason", "looked", "--expires", value)
    assert_one_plain_line(result, 2, "")
    assert make_engine().journal.approvals(session) == []


# -- the database URL -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, says",
    [
        pytest.param("sqlite:///x", "sqlite://… is not a PostgreSQL URL", id="sqlite-url"),
        pytest.param("mysql://u@h/db", "mysql://… is not a PostgreSQL URL", id="mysql-url"),
        pytest.param("garbage", "is not a PostgreSQL URL", id="garbage"),
        pytest.param("", "--database is empty", id="empty"),
        pytest.param("postgresql://u:pw@h:notaport/db", "does not parse", id="bad-port"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["sessions"],
        ["campaign", "list"],
        ["db", "upgrade"],
        ["report"],
        ["evidence", "last"],
        ["audit", "verify"],
        ["due"],
        ["run", "--yes"],
    ],
    ids=lambda c: " ".join(c),
)
def test_a_bad_database_url_is_one_line_and_makes_no_file(cli, tmp_path, monkeypatch, handrail_home, url, says, command):
    monkeypatch.chdir(tmp_path)
    result = cli("--database", url, *command)
    line = assert_one_plain_line(result, 2, says)
    assert "pw" not in line  # never the password
    assert list(tmp_path.iterdir()) == []  # "garbage" never becomes a SQLite file here
    assert not (handrail_home / "journal.sqlite3").exists()


def test_a_bad_database_url_in_the_environment_is_named_as_such(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("sessions", env={"HANDRAIL_DATABASE_URL": "sqlite:///x"})
    assert_one_plain_line(result, 2, "$HANDRAIL_DATABASE_URL")


def test_an_unreachable_database_is_exit_1_in_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("--database", "postgresql://handrail:secretpw@127.0.0.1:1/x", "sessions", env={"HANDRAIL_DATABASE_TIMEOUT": "1"})
    assert_one_plain_line(result, 1, "cannot be reached")
    assert "secretpw" not in result.output


@pytest.mark.parametrize("name, value", [("HANDRAIL_DATABASE_TIMEOUT", "abc"), ("HANDRAIL_DATABASE_POOL", "-3")])
def test_a_bad_database_setting_is_one_line(cli, name, value):
    result = cli("--database", "postgresql://h:1/x", "sessions", env={name: value})
    assert_one_plain_line(result, 2, f"${name}")


# -- files written at the end: --out and --world-out ------------------------------------------------


def _out(tmp_path: Path, kind: str) -> str:
    return {
        "missing-folder": str(tmp_path / "no-such-folder" / "x.md"),
        "a-directory": str(tmp_path),
        "empty": "",
        "under-proc": "/proc/handrail-cannot-write-here",
    }[kind]


OUT_KINDS = ["missing-folder", "a-directory", "empty", "under-proc"]


@pytest.mark.parametrize("kind", OUT_KINDS)
@pytest.mark.parametrize(
    "command",
    [
        ["report", "--out"],
        ["debrief", "--out"],
        ["campaign", "debrief", "--out"],
        ["campaign", "start", "--due", "--yes", "--fast-forward", "--world-out"],
        ["run", "--yes", "--world-out"],
        ["rollback", "last", "--yes", "--world-out"],
        ["campaign", "rollback", "last", "--yes", "--world-out"],
    ],
    ids=lambda c: " ".join(a for a in c if a not in ("--yes", "--fast-forward")),
)
def test_an_output_file_that_cannot_be_written_is_refused_before_anything_runs(cli, tmp_path, monkeypatch, command, kind):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    result = cli(*command, _out(tmp_path, kind))
    assert_one_plain_line(result, 2, "")
    assert_nothing_recorded(cli)
    assert sorted(tmp_path.iterdir()) == before


def test_campaign_start_with_a_bad_out_or_roles_records_no_campaign_in_live_mode(live_world, cli, tmp_path):
    roles = tmp_path / "roles.yaml"
    roles.write_text("roles: {ops: {iam_group: [ops]}}\n")
    bad_roles = cli("campaign", "start", "--user", "raxx-vault-operator", "--mode", "live", "--roles", str(roles), "--yes")
    assert_one_plain_line(bad_roles, 2, "roles.ops.iam_group")
    assert_nothing_recorded(cli)
    keys_before = [k.access_key_id for k in live_world.aws.iam.users["raxx-vault-operator"].access_keys]
    missing = cli("campaign", "start", "--user", "nobody-at-all", "--mode", "live", "--yes")
    assert_one_plain_line(missing, 2, "'nobody-at-all' does not exist")
    assert_nothing_recorded(cli)
    assert [k.access_key_id for k in live_world.aws.iam.users["raxx-vault-operator"].access_keys] == keys_before


@pytest.mark.parametrize("ref", ["%", "_", "", " ", "2%", "%-%"])
@pytest.mark.parametrize("command", [["abandon", "{r}", "--reason", "x"], ["resume", "{r}", "--yes"], ["rollback", "{r}", "--yes"]])
def test_a_wildcard_or_empty_reference_never_matches_a_session(cli, lean, make_engine, command, ref):
    """A LIKE wildcard in a reference would pick whichever session is there."""
    run = cli("run", "--scenario", lean, "--yes", "--json")
    session = json.loads(run.stdout)["session"]
    result = cli(*(ref if a == "{r}" else a for a in command))
    assert_one_plain_line(result, 2, "no session")
    assert make_engine().journal.find_session(session).status == "waiting"


@pytest.mark.parametrize("ref", ["%", "_", "c-%"])
def test_a_wildcard_never_matches_a_campaign(cli, ref):
    cli("campaign", "start", "--user", "raxx-s3-backup", "--scenario", "fleet", "--yes")
    assert len(json.loads(cli("campaign", "list", "--json").stdout)) == 1
    assert_one_plain_line(cli("campaign", "show", ref), 2, "no campaign")
