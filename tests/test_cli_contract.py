"""The `handrail` command line as a contract: version and help, exit codes 0/1/2/3,
one JSON object with --json, bad input as one line, and dry-run against a simulated AWS."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest

import steps
import tui.cli
from steps.paths import audit_path

STEP_IDS = [
    "pre-checks",
    "claim-user",
    "free-key-slot",
    "create-key",
    "validate-new-key",
    "store-in-vault",
    "propagate",
    "verify-downstream",
    "deactivate-old-key",
    "delete-old-key",
    "audit-record",
]


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]


# -- version and help -------------------------------------------------------------------------------


def test_version_prints_the_package_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"handrail, version {steps.__version__}"
    assert steps.__version__ == version("handrail")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_command(cli, flag):
    result = cli(flag)
    assert result.exit_code == 0
    for command in ("check", "plan", "run", "resume", "rollback", "sessions", "show", "audit", "abandon"):
        assert f"  {command} " in result.stdout, f"{command} missing from --help"


def test_run_help_names_the_explicit_flags_for_what_yes_does_not_answer(cli):
    out = cli("run", "--help").stdout
    for flag in (
        "--user",
        "--mode",
        "--reason",
        "--yes",
        "--fast-forward",
        "--confirm-irreversible",
        "--override-gate",
        "--override-block",
        "--retire-key",
        "--json",
        "--world-out",
        "--check-call",
        "--allow-self-rotation",
    ):
        assert flag in out, flag
    assert "training" in out and "dry-run" in out and "live" in out


def test_the_exit_codes_are_documented_in_the_cli_module():
    doc = " ".join(tui.cli.__doc__.split())
    assert "0 done" in doc and "1 a step failed" in doc and "2 bad input" in doc and "3 stopped" in doc
    assert (tui.cli.EXIT_DONE, tui.cli.EXIT_FAILED, tui.cli.EXIT_BAD_INPUT, tui.cli.EXIT_STOPPED) == (0, 1, 2, 3)


# -- exit codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, code",
    [
        pytest.param(["run", "--yes", "--fast-forward", "--confirm-irreversible"], 0, id="0-done"),
        pytest.param(["run", "--scenario", "consumer-fails", "--yes", "--fast-forward", "--confirm-irreversible"], 1, id="1-a-step-failed"),
        pytest.param(["run", "--user", "nobody-here", "--yes", "--fast-forward", "--confirm-irreversible"], 2, id="2-no-such-iam-user"),
        pytest.param(["run", "--scenario", "{lean}", "--yes"], 3, id="3-stopped-at-the-gate"),
        pytest.param(["run", "--fast-forward", "--confirm-irreversible"], 3, id="3-a-yes-it-may-not-answer"),
        pytest.param(
            ["run", "--scenario", "two-active-keys", "--yes", "--fast-forward", "--confirm-irreversible"],
            3,
            id="3-a-typed-choice-it-may-not-answer",
        ),
    ],
)
def test_exit_codes_of_run(cli, lean, args, code):
    result = cli(*(lean if a == "{lean}" else a for a in args))
    assert result.exit_code == code, result.output


@pytest.mark.parametrize(
    "args, says",
    [
        pytest.param(["run", "--check-call", "s3:PutObject Bucket=x"], "only read-only calls", id="write-as-check-call"),
        pytest.param(["run", "--check-call", "list buckets"], "service:Operation", id="check-call-without-service"),
        pytest.param(["run", "--check-call", "s3:ListObjectsV2 Bucket"], "not Key=Value", id="check-call-bad-param"),
        pytest.param(["run", "--scenario", "no-such-scenario"], "no such scenario", id="unknown-scenario"),
        pytest.param(["run", "--mode", "live"], "--user is required outside training", id="user-required-live"),
        pytest.param(["run", "--mode", "dry-run"], "--user is required outside training", id="user-required-dry-run"),
        pytest.param(
            ["run", "--mode", "live", "--user", "u", "--fast-forward", "--confirm-irreversible"], "training only", id="fast-forward-live"
        ),
        pytest.param(
            ["run", "--mode", "dry-run", "--user", "u", "--fast-forward", "--confirm-irreversible"],
            "training only",
            id="fast-forward-dry-run",
        ),
        pytest.param(["run", "--mode", "live", "--user", "u", "--world-out", "w.json"], "training only", id="world-out-live"),
        pytest.param(["run", "--mode", "live", "--user", "u", "--scenario", "happy-path"], "training only", id="scenario-live"),
        pytest.param(["run", "no-such-runbook"], "no such runbook", id="unknown-runbook"),
        pytest.param(["run", "--user", "has spaces!"], "is not an IAM user name", id="user-fails-the-runbook-pattern"),
        pytest.param(["resume", "19990101-000000-dead"], "no session", id="resume-unknown-session"),
        pytest.param(["rollback", "19990101-000000-dead"], "no session", id="rollback-unknown-session"),
        pytest.param(["show", "19990101-000000-dead"], "no session", id="show-unknown-session"),
        pytest.param(["abandon", "19990101-000000-dead", "--reason", "x"], "no session", id="abandon-unknown-session"),
    ],
)
def test_bad_input_is_exit_2_with_one_line_and_changes_nothing(cli, args, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    line = one_line(result.stderr)
    assert line.startswith("handrail: ") and says in line
    assert json.loads(cli("sessions", "--all", "--json").stdout) == []
    assert not (tmp_path / "w.json").exists()


@pytest.mark.parametrize(
    "args", [["run", "--mode", "production"], ["run", "--reason", "boredom"], ["no-such-command"], ["run", "--no-such-flag"]]
)
def test_usage_errors_are_exit_2(cli, args):
    result = cli(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_a_session_whose_runbook_input_fails_is_not_left_unfinished(cli):
    assert cli("run", "--user", "has spaces!").exit_code == 2
    assert json.loads(cli("sessions", "--json").stdout) == []


# -- --json -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, code, status", [(["--fast-forward", "--confirm-irreversible"], 0, "done"), ([], 3, "waiting")])
def test_json_prints_exactly_one_object_on_stdout(cli, lean, args, code, status):
    result = cli("run", "--scenario", lean, "--yes", "--json", *args)
    assert result.exit_code == code, result.output

    summary = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert isinstance(summary, dict)
    assert summary["status"] == status and summary["exit_code"] == code
    assert summary["session"] and summary["old_key_id"].startswith("AKIA") and summary["new_key_id"].startswith("AKIA")
    assert [s["id"] for s in summary["steps"]] == STEP_IDS
    assert all(s["status"] in ("done", "skipped", "pending", "would-run", "failed", "blocked") for s in summary["steps"])
    assert summary["steps"][STEP_IDS.index("create-key")]["status"] == "done"
    assert summary["steps"][STEP_IDS.index("delete-old-key")]["status"] == ("done" if code == 0 else "pending")
    # The progress goes to stderr.
    assert "[1/11] step 1:" in result.stderr


def test_json_on_a_failure_is_still_one_object(cli):
    result = cli("run", "--scenario", "consumer-fails", "--yes", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and summary["exit_code"] == 1
    assert [s["status"] for s in summary["steps"] if s["id"] == "propagate"] == ["failed"]


def test_json_on_a_refusal_is_still_one_object(cli):
    result = cli("run", "--scenario", "self-rotation", "--yes", "--json")
    assert result.exit_code == 3
    summary = json.loads(result.stdout)
    assert summary["status"] == "refused" and summary["exit_code"] == 3
    assert summary["new_key_id"] is None
    assert summary["steps"][0] == {**summary["steps"][0], "id": "pre-checks", "status": "refused"}


def test_sessions_json_lists_unfinished_sessions_and_all_with_all(cli, lean):
    done = json.loads(cli("run", "--scenario", lean, "--yes", "--fast-forward", "--confirm-irreversible", "--json").stdout)
    stopped = json.loads(cli("run", "--scenario", lean, "--yes", "--json").stdout)

    unfinished = json.loads(cli("sessions", "--json").stdout)
    assert [s["session"] for s in unfinished] == [stopped["session"]]
    row = unfinished[0]
    assert {"session", "runbook", "mode", "status", "user", "account", "old_key_id", "new_key_id"} <= set(row)
    assert (row["status"], row["mode"], row["user"]) == ("waiting", "training", "raxx-vault-operator")
    assert row["new_key_id"] == stopped["new_key_id"]

    everything = json.loads(cli("sessions", "--all", "--json").stdout)
    assert {s["session"] for s in everything} == {done["session"], stopped["session"]}


def test_sessions_text_lists_session_status_and_keys(cli, lean):
    stopped = json.loads(cli("run", "--scenario", lean, "--yes", "--json").stdout)
    out = cli("sessions").stdout
    assert stopped["session"] in out and "waiting" in out and stopped["new_key_id"] in out


def test_show_json_has_the_timeline_and_the_facts(cli, lean):
    summary = json.loads(cli("run", "--scenario", lean, "--yes", "--fast-forward", "--confirm-irreversible", "--json").stdout)
    shown = json.loads(cli("show", summary["session"], "--json").stdout)
    assert shown["session"] == summary["session"] and shown["status"] == "done"
    assert shown["facts"]["new_key_id"] == summary["new_key_id"]
    assert [e["step_id"] for e in shown["events"] if e["kind"] == "step"] == STEP_IDS


def test_plain_output_without_json_prints_the_steps_and_the_outcome_line(cli, lean):
    result = cli("run", "--scenario", lean, "--yes", "--fast-forward", "--confirm-irreversible")
    assert result.exit_code == 0
    session = json.loads(cli("sessions", "--all", "--json").stdout)[0]["session"]
    assert f"session {session}: done" in result.stdout.splitlines()
    assert "$ aws iam create-access-key --user-name raxx-vault-operator" in result.stdout


def test_a_stop_says_how_to_resume(cli, lean):
    result = cli("run", "--scenario", lean, "--yes")
    assert result.exit_code == 3
    session = json.loads(cli("sessions", "--json").stdout)[0]["session"]
    assert f"handrail resume {session}" in result.stderr


# -- dry-run: reads the (simulated) live AWS, changes nothing ---------------------------------------


def test_dry_run_reads_the_account_and_mutates_nothing(live_world, cli):
    world = live_world
    before = {k.access_key_id: k.status for k in world.aws.iam.users["raxx-vault-operator"].access_keys}

    result = cli("run", "--mode", "dry-run", "--user", "raxx-vault-operator", "--yes")

    assert result.exit_code == 0, result.output
    after = {k.access_key_id: k.status for k in world.aws.iam.users["raxx-vault-operator"].access_keys}
    assert after == before
    mutations = {
        c for c in world.aws.calls if c.split(":")[1].startswith(("Create", "Update", "Delete", "Put", "Attach", "PUT", "POST", "DELETE"))
    }
    assert mutations == set(), mutations
    assert world.aws.calls.get("iam:ListAccessKeys", 0) >= 1  # it did read
    out = result.stdout
    (old_id,) = before
    assert old_id in out  # step 1's inventory, read from the account
    assert "would run: aws iam create-access-key --user-name raxx-vault-operator" in out
    assert f"would run: aws iam update-access-key --user-name raxx-vault-operator --access-key-id {old_id} --status Inactive" in out


def test_dry_run_json_marks_every_changing_step_would_run(live_world, cli):
    result = cli("run", "--mode", "dry-run", "--user", "raxx-vault-operator", "--yes", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mode"] == "dry-run"
    by_id = {s["id"]: s for s in summary["steps"]}
    assert by_id["pre-checks"]["status"] == "done"
    for step_id in ("create-key", "deactivate-old-key", "delete-old-key", "audit-record"):
        assert by_id[step_id]["status"] == "would-run", step_id
        assert by_id[step_id]["summary"].startswith("would run: ")
    assert summary["new_key_id"] is None


def test_dry_run_takes_no_lock_and_writes_no_rotation_record(live_world, cli, runbook_without_settle):
    from steps.audit import AuditLog
    from steps.paths import audit_path

    summary = json.loads(cli("run", "--mode", "dry-run", "--user", "raxx-vault-operator", "--yes", "--json").stdout)
    actions = [r["action"] for r in AuditLog(audit_path()).records() if r.get("session") == summary["session"]]
    assert "secret.rotate.completed" not in actions
    # A real run on the same user right after is not locked out by the dry run.
    live = cli("run", runbook_without_settle, "--mode", "live", "--user", "raxx-vault-operator", "--json")
    assert live.exit_code == 3 and "locked" not in live.output


# -- no traceback, ever ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["resume", "rollback"])
def test_a_session_whose_world_cannot_be_rebuilt_is_one_line_not_a_traceback(cli, scenario_file, command):
    path = scenario_file("vanishing")
    stopped = cli("run", "--scenario", path, "--yes", "--json")
    assert stopped.exit_code == 3, stopped.output
    path.unlink()

    result = cli(command, json.loads(stopped.stdout)["session"], "--yes")

    assert result.exit_code == 2
    assert "vanishing" in one_line(result.stderr)


@pytest.mark.parametrize(
    "args, says",
    [
        pytest.param(["--user", "nosuchuser"], "'nosuchuser' does not exist", id="no-such-user"),
        pytest.param(["--user", ""], "--user is empty", id="empty-user"),
        pytest.param(["--user", "x" * 500], "…", id="a-long-value-is-cut"),
        pytest.param(["--override-block", "ok"], "at least 3 characters", id="short-override-reason"),
        pytest.param(["--override-gate", " "], "at least 3 characters", id="blank-gate-reason"),
        pytest.param(["--world-out", "/nonexistent-dir/w.json"], "does not exist", id="world-out-folder-missing"),
        pytest.param(
            ["--scenario", "two-active-keys", "--retire-key", "AKIANOTAKEYOFTHISUSR"], "is not one of", id="retire-key-not-the-users"
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_before_any_session_lock_or_audit_line(cli, handrail_home, args, says):
    result = cli("run", "--yes", "--fast-forward", "--confirm-irreversible", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert len(lines[0]) < 300 and "[\\w" not in lines[0]  # cut, and no regex
    assert json.loads(cli("sessions", "--all", "--json").stdout) == []
    assert not audit_path().exists() or audit_path().read_text() == ""
