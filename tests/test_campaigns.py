"""Campaigns: a confirmed plan of rotations, each its own session (lock, gates, rollback),
run a few at a time on one simulated world; one failing target never stops the others.

The small fleets here are generated scenarios (a few users, some in the inventory with a
vault and a Heroku app); the shipped `fleet` scenario is played once, end to end, the way
the issue's done-criterion says.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest

from steps.status import TargetState

DONE_CRITERION = ["--due", "--mode", "training", "--scenario", "fleet", "--yes", "--confirm-irreversible", "--fast-forward", "--json"]


def small_fleet(directory: Path, *, due: int = 4, fresh: int = 2, name: str = "small-fleet") -> Path:
    """`due` users past 30 days (every other one in the inventory with a vault and a Heroku
    app, one with an Inactive key left over) and `fresh` users that are not due."""
    lines = [
        f"id: {name}",
        "title: t",
        "teaches: t",
        "difficulty: 2",
        "briefing: b",
        "goal: g",
        "target_user: fresh-0",
        "campaign: true",
        "aws:",
        "  propagation_delay: 2s",
        "  users:",
    ]
    for i in range(fresh):
        lines += [f"    fresh-{i}:", f"      keys: [{{status: Active, age: {3 + i}d, last_used: 1h}}]"]
    for i in range(due):
        keys = [f"{{status: Active, age: {40 + 10 * i}d, last_used: 2h}}"]
        if i == 1:
            keys.insert(0, "{status: Inactive, age: 90d, last_used: 40d}")
        lines += [f"    old-{i}:", f"      keys: [{', '.join(keys)}]"]
        if i % 2 == 0:
            lines += [
                '      check_call: "s3:ListObjectsV2 Bucket=fleet-bucket"',
                f"      vault: {{path: /aws/old-{i}}}",
                f"      consumers: [{{type: heroku, app: app-old-{i}}}]",
            ]
        else:
            lines += [f"      vault: {{path: /aws/old-{i}}}", "      consumers: []"]
    lines += ["  buckets:", "    fleet-bucket: {a: 1}"]
    path = directory / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def keys_of(export: dict, user: str) -> list[dict]:
    return export["iam_users"][user]["keys"]


@pytest.fixture
def fleet_run(make_engine):
    """Plan and run a training campaign in-process: (summary, fleet, engine, campaign id).
    `before` hooks may change the world before the campaign runs."""
    from steps import campaign, compose, due
    from steps.driver import DriveOptions

    opened = []

    def run(scenario: Path | str, *, concurrency: int = 4, before=None, **opts):
        engine = make_engine()
        fleet = compose.open_fleet("training", scenario=str(scenario))
        opened.append(fleet)
        reader = fleet.wiring()
        rows = due.report(reader, every=True)
        targets = campaign.due_targets(rows, 30)
        account, arn = reader.identity()
        if before is not None:
            before(fleet, engine)
        cid = campaign.create(
            engine, targets, name="t", kind="due", mode="training", account=account, operator_arn=arn, options=fleet.options()
        )
        runner = campaign.Runner(engine.journal, cid, compose.CampaignOpener(engine, fleet, cid), concurrency=concurrency)
        options = {"yes": True, "fast_forward": True, "confirm_irreversible": True} | opts
        return runner.run(DriveOptions(**options)), fleet, engine, cid

    yield run
    for fleet in opened:
        fleet.close()


# -- the done-criterion, through the command line -----------------------------------------------------


@pytest.mark.slow
def test_a_due_campaign_on_the_fleet_rotates_every_due_user_once_and_touches_no_other(cli, tmp_path) -> None:
    out = tmp_path / "w.json"
    listed = cli("due", "--mode", "training", "--scenario", "fleet", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert len(rows) >= 20 and all({"user", "age_days", "due"} <= set(r) for r in rows)

    result = cli("campaign", "start", *DONE_CRITERION, "--world-out", out)

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    world = json.loads(out.read_text())
    due = {r["user"] for r in rows if r["due"]}
    assert {t["user"] for t in summary["targets"]} == due
    for target in summary["targets"]:
        keys = keys_of(world, target["user"])
        assert target["state"] == "done"
        assert [(k["id"], k["status"]) for k in keys] == [(target["new_key_id"], "Active")], target["user"]
        assert target["old_key_id"] != target["new_key_id"]
    # Users that were not due keep the keys they had (each world is new: compare shapes and ages).
    from steps.sandbox import scenario as scenarios

    seed = scenarios.load("fleet").aws.users
    for user in {r["user"] for r in rows} - due:
        keys = keys_of(world, user)
        assert [k["status"] for k in keys] == [k.status for k in seed[user].keys], user
        assert all(k["created"] < summary["created_at"] for k in keys), user  # none made by the campaign


def test_without_yes_off_a_terminal_the_plan_is_shown_and_nothing_starts(cli, tmp_path) -> None:
    scenario = small_fleet(tmp_path)
    result = cli("campaign", "start", "--due", "--scenario", scenario, "--fast-forward", "--confirm-irreversible")

    assert result.exit_code == 3
    assert "campaign plan: 4 target(s)" in result.stdout and "old-3 (aws-iam-access-key)" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == ["handrail: campaign not started: the plan needs a yes (pass --yes, or answer at a terminal); nothing changed"]
    assert cli("campaign", "list").stdout.strip() == "no campaigns"
    assert json.loads(cli("sessions", "--json", "--all").stdout) == []


def test_a_campaign_needs_a_plan_source_and_training_only_flags_stay_training(cli) -> None:
    assert cli("campaign", "start", "--yes").exit_code == 2
    assert cli("campaign", "start", "--due", "--user", "x", "--yes").exit_code == 2
    live = cli("campaign", "start", "--due", "--mode", "live", "--fast-forward", "--yes")
    assert live.exit_code == 2 and "--fast-forward is for training only" in live.stderr
    bad = cli("campaign", "start", "--due", "--cadence", "soon", "--yes")
    assert bad.exit_code == 2 and "--cadence" in bad.stderr and "Traceback" not in bad.output


def test_nothing_due_starts_nothing_and_exits_0(cli, tmp_path) -> None:
    result = cli("campaign", "start", "--due", "--scenario", small_fleet(tmp_path, due=0), "--yes", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["campaign"] is None
    assert cli("campaign", "list").stdout.strip() == "no campaigns"


# -- one target never stops the others ---------------------------------------------------------------


def test_a_failing_target_fails_alone_and_the_campaign_exits_1(fleet_run, tmp_path) -> None:
    from steps.sandbox.world import KEY_ID, SECRET

    def break_old_2(fleet, engine):
        # Its vault holds a pair that is no key of the user: pre-checks fail for it alone.
        fleet.world.infisical.seed("raxx-prod", "prod", "/aws/old-2", {KEY_ID: "AKIAXXXXXXXXXXXXXXXX", SECRET: "x" * 40})

    summary, fleet, engine, cid = fleet_run(small_fleet(tmp_path), before=break_old_2)

    states = {r.user: r.state for r in summary.results}
    assert states == {"old-0": "done", "old-1": "done", "old-2": "failed", "old-3": "done"}
    assert summary.code == 1
    failed = next(r for r in summary.results if r.user == "old-2")
    assert "vault holds AKIAXXXXXXXXXXXXXXXX" in failed.detail and f"handrail campaign rollback {cid}" in failed.detail


def test_a_target_another_session_holds_waits_and_the_others_finish(fleet_run, tmp_path) -> None:
    from steps.wiring import SharedTrainingWiring

    held = []

    def hold_old_1(fleet, engine):
        inputs = {"target_user": "old-1", "reason": "operator-initiated"}
        held.append(engine.start("aws-iam-access-key", inputs, SharedTrainingWiring(fleet.world)))

    summary, *_ = fleet_run(small_fleet(tmp_path), before=hold_old_1)

    states = {r.user: r.state for r in summary.results}
    assert states["old-1"] == "stopped" and "is locked by session" in next(r.detail for r in summary.results if r.user == "old-1")
    assert [s for u, s in states.items() if u != "old-1"] == ["done"] * 3
    assert summary.code == 3
    held[0].close()


def test_a_user_gone_before_its_turn_is_refused_alone(fleet_run, tmp_path) -> None:
    def delete_old_3(fleet, engine):
        iam = fleet.world.aws.client("iam")
        for key in iam.list_access_keys(UserName="old-3")["AccessKeyMetadata"]:
            iam.delete_access_key(UserName="old-3", AccessKeyId=key["AccessKeyId"])
        iam.delete_user(UserName="old-3")

    summary, *_ = fleet_run(small_fleet(tmp_path), before=delete_old_3)

    states = {r.user: r.state for r in summary.results}
    assert states["old-3"] == "refused" and summary.code == 3
    assert sorted(s for u, s in states.items() if u != "old-3") == ["done"] * 3


# -- gates, resume, rollback ----------------------------------------------------------------------------


def test_without_fast_forward_every_target_waits_at_its_gate_and_resume_finishes_them(cli, tmp_path) -> None:
    scenario = small_fleet(tmp_path)
    started = cli("campaign", "start", "--due", "--scenario", scenario, "--yes", "--confirm-irreversible", "--json")
    assert started.exit_code == 3, started.output
    data = json.loads(started.stdout)
    assert data["counts"] == {"waiting": 4}
    cid = data["campaign"]
    assert "stopped at step 7b (delete-old-key): observation gate" in data["targets"][0]["detail"]

    shown = cli("campaign", "show", cid)
    assert shown.exit_code == 3 and f"`handrail campaign resume {cid}`" in shown.stdout
    one = data["targets"][0]["session"]
    alone = cli("resume", one, "--yes")
    assert alone.exit_code == 2 and f"handrail campaign resume {cid}" in alone.stderr  # its world is the campaign's

    resumed = cli("campaign", "resume", cid[:10], "--fast-forward", "--yes", "--confirm-irreversible", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["counts"] == {"done": 4}
    listed = cli("campaign", "list", "--json")
    assert [(c["campaign"], c["ended"], c["exit_code"]) for c in json.loads(listed.stdout)] == [(cid, True, 0)]


def test_a_campaign_rolls_back_every_session_before_the_point_of_no_return(cli, tmp_path) -> None:
    scenario = small_fleet(tmp_path)
    out = tmp_path / "w.json"
    started = json.loads(cli("campaign", "start", "--due", "--scenario", scenario, "--yes", "--confirm-irreversible", "--json").stdout)
    cid = started["campaign"]

    refused = cli("campaign", "rollback", cid)
    assert refused.exit_code == 3 and "rollback not confirmed" in refused.stderr
    assert refused.stdout.count("undo step 2 (Generate the new credential)") == 4  # every plan shown first
    rolled = cli("campaign", "rollback", cid, "--yes", "--json", "--world-out", out)

    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["counts"] == {"rolled-back": 4}
    world = json.loads(out.read_text())
    for target in started["targets"]:
        statuses = {k["id"]: k["status"] for k in keys_of(world, target["user"])}
        assert statuses[target["old_key_id"]] == "Active" and statuses[target["new_key_id"]] == "Inactive"


def test_rolling_back_after_the_deletes_says_there_is_no_way_back_and_exits_1(cli, tmp_path) -> None:
    scenario = small_fleet(tmp_path, due=2)
    done = json.loads(
        cli("campaign", "start", "--due", "--scenario", scenario, "--yes", "--fast-forward", "--confirm-irreversible", "--json").stdout
    )
    result = cli("campaign", "rollback", done["campaign"], "--yes")
    assert result.exit_code == 1
    assert "no way back for 2 target(s)" in result.stdout and "cannot be recovered" in result.stdout


# -- the journal and the audit log ----------------------------------------------------------------------


def test_sessions_carry_the_campaign_and_the_audit_chain_holds_under_concurrency(fleet_run, tmp_path, cli) -> None:
    summary, fleet, engine, cid = fleet_run(small_fleet(tmp_path, due=6), concurrency=3)

    assert summary.code == 0 and len(summary.results) == 6
    sessions = engine.journal.campaign_sessions(cid)
    assert len(sessions) == 6 and {s.campaign_id for s in sessions.values()} == {cid}
    assert {s.target for s in sessions.values()} == {r.user for r in summary.results}
    # One session per target, each with its own lock released at the end.
    assert all(engine.journal.lock_of(sid) is None for sid in sessions)
    verdict = cli("audit", "verify")
    assert verdict.exit_code == 0, verdict.output
    records = [json.loads(line) for line in engine.audit.path.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    started = [r for r in records if r["action"] == "campaign.started"]
    assert len(started) == 1 and len(started[0]["context"]["targets"]) == 6
    completed = [r for r in records if r["action"] == "secret.rotate.completed"]
    assert sorted(r["context"]["iam_user"] for r in completed) == sorted(r.user for r in summary.results)


def test_the_world_is_saved_on_the_campaign_not_on_each_session(fleet_run, tmp_path) -> None:
    summary, fleet, engine, cid = fleet_run(small_fleet(tmp_path), fast_forward=False)

    row = engine.journal.campaign(cid)
    assert row.world and json.loads(row.world)["aws"]["users"]
    assert all(s.world is None for s in engine.journal.campaign_sessions(cid).values())


def test_an_old_journal_gets_the_campaign_column_and_keeps_its_sessions(tmp_path) -> None:
    from steps.journal import SCHEMA, Journal

    path = tmp_path / "journal.sqlite3"
    old = SCHEMA.split("CREATE TABLE IF NOT EXISTS campaigns")[0]
    db = sqlite3.connect(path)
    db.executescript(old)
    db.execute(
        "INSERT INTO sessions (id, runbook_id, runbook_path, runbook_sha, mode, status, created_at, updated_at) "
        "VALUES ('s-old', 'aws-iam-access-key', 'x', 'y', 'training', 'done', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
    )
    db.commit()
    db.close()

    journal = Journal(path)

    assert journal.session("s-old").campaign_id is None
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(sessions)")}
    assert "campaign_id" in columns
    row = journal.create_campaign(name="n", kind="due", mode="training", targets=[{"runbook": "r", "target": "u", "why": "w"}])
    assert [t.target for t in journal.targets(row.id)] == ["u"] and journal.find_campaign("n").id == row.id
    Journal(path).close()  # opening it again migrates nothing twice


# -- the plan ---------------------------------------------------------------------------------------------


def test_a_plan_names_each_user_once_and_can_mix_runbooks(fleet_run, tmp_path, shipped_runbook, write_yaml, monkeypatch) -> None:
    from steps import campaign

    with pytest.raises(campaign.PlanError, match="old-1 is in the plan twice"):
        campaign.check_plan([campaign.Target("a", "old-1", "x"), campaign.Target("b", "old-1", "y")])

    # A second runbook (a copy under another id) on one of the targets: the engine is generic.
    other = write_yaml("other-rotation.yaml", {**shipped_runbook, "id": "other-rotation"})
    original = campaign.due_targets

    def mixed(rows, days, runbook=campaign.ROTATION):
        targets = original(rows, days, runbook=runbook)
        return [campaign.Target(str(other), t.user, t.why, t.inputs) if t.user == "old-0" else t for t in targets]

    monkeypatch.setattr(campaign, "due_targets", mixed)
    summary, fleet, engine, cid = fleet_run(small_fleet(tmp_path))
    assert summary.code == 0
    runbooks = {s.target: s.runbook_id for s in engine.journal.campaign_sessions(cid).values()}
    assert runbooks["old-0"] == "other-rotation" and runbooks["old-1"] == "aws-iam-access-key"


def test_exit_codes_follow_the_worst_target() -> None:
    from steps.campaign import exit_code

    assert exit_code([TargetState.DONE, TargetState.ROLLED_BACK]) == 0
    assert exit_code([TargetState.DONE, TargetState.WAITING]) == 3
    assert exit_code([TargetState.DONE, TargetState.REFUSED]) == 3
    assert exit_code([TargetState.WAITING, TargetState.BLOCKED]) == 1
    assert exit_code([TargetState.STOPPED, TargetState.FAILED]) == 1


def test_step_faults_are_refused_for_a_campaign(tmp_path) -> None:
    from steps import compose

    faulty = tmp_path / "faulty.yaml"
    text = small_fleet(tmp_path).read_text().replace("campaign: true\n", "")
    faulty.write_text(text.replace("id: small-fleet", "id: faulty") + "faults:\n  - {at: propagate, system: heroku, down: true}\n")
    with pytest.raises(compose.ComposeError, match="schedules faults at steps"):
        compose.open_fleet("training", scenario=str(faulty))


# -- what many sessions in one process rely on ----------------------------------------------------------


def test_audit_appends_from_many_threads_form_one_chain(tmp_path) -> None:
    from steps.audit import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl")
    seqs: list[int] = []

    def write(n: int) -> None:
        for i in range(25):
            seqs.append(log.append("t", session=f"s{n}", context={"i": i}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(seqs) == list(range(1, 151))
    assert log.verify().ok
    assert log.find("s3", "t") is not None and log.find("s9", "t") is None


def test_the_redactor_scrubs_among_thousands_of_known_secrets(tmp_path) -> None:
    import secrets as random

    from steps.secrets import Secret, redact

    values = [random.token_urlsafe(30) for _ in range(300)]
    held = [Secret(v) for v in values]
    text = f"a {values[3]} b {values[-1]}{values[7]} c {values[9][:12]}"
    assert redact(text) == f"a **** b ******** c {values[9][:12]}"
    assert held


def test_a_poll_whose_check_straddles_the_deadline_checks_once_more() -> None:
    from steps.clock import SimClock

    clock = SimClock(auto_advance=True)
    answers = iter([False, True])

    def slow_check() -> bool:
        clock.advance(90)  # another session's wait moved the shared clock past the deadline
        return next(answers)

    polled = clock.poll(slow_check, deadline=60, interval=2)
    assert polled.ok and polled.attempts == 2


# -- live and dry-run: boto3's own chain, pointed at a simulated account ----------------------------------


def test_due_in_live_mode_without_an_inventory_lists_every_user_with_keys(live_world, cli) -> None:
    result = cli("due", "--mode", "live", "--json")

    assert result.exit_code == 0, result.output
    rows = {r["user"]: r for r in json.loads(result.stdout)}
    assert rows["raxx-vault-operator"]["due"] and rows["raxx-vault-operator"]["age_days"] == 92
    assert rows["handrail-operator"]["operator"] and not rows["raxx-vault-operator"]["in_inventory"]


def test_a_dry_run_campaign_reads_and_changes_nothing(live_world, cli) -> None:
    before = live_world.export()["iam_users"]["raxx-vault-operator"]["keys"]

    result = cli("campaign", "start", "--due", "--mode", "dry-run", "--all-users", "--yes", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["user"] for t in data["targets"]] == ["raxx-vault-operator"] and data["mode"] == "dry-run"
    after = live_world.export()["iam_users"]["raxx-vault-operator"]["keys"]
    assert [(k["id"], k["status"]) for k in after] == [(k["id"], k["status"]) for k in before]


def test_a_live_campaign_rotates_with_the_gate_passed_by_an_audited_reason(live_world, cli, runbook_without_settle) -> None:
    result = cli(
        "campaign", "start", "--due", "--mode", "live", "--all-users", "--runbook", runbook_without_settle,
        "--yes", "--confirm-irreversible", "--override-gate", "test: observed elsewhere", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    target = json.loads(result.stdout)["targets"][0]
    keys = live_world.export()["iam_users"]["raxx-vault-operator"]["keys"]
    assert [(k["id"], k["status"]) for k in keys] == [(target["new_key_id"], "Active")]
    records = [json.loads(line) for line in cli("audit", "show").stdout.splitlines()]
    overrides = [r["context"]["reason"] for r in records if r["action"] == "gate.override"]
    assert overrides == ["test: observed elsewhere"]


# -- progress on stderr, and the campaign's debrief ---------------------------------------------------


def _stderr_on_a_terminal(args: list[str], tmp_path: Path) -> tuple[int, str, str]:
    """Run `handrail ARGS` with stderr on a pseudo-terminal (80 columns): (exit, stdout, stderr)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "COLUMNS")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tui.cli import main; main(prog_name='handrail')", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    out = proc.stdout.read().decode() if proc.stdout else ""
    code = proc.wait(timeout=120)
    os.close(master)
    return code, out, b"".join(chunks).decode()


@pytest.mark.slow
def test_progress_on_a_terminal_is_a_bar_with_counts_redrawn_in_place(tmp_path) -> None:
    scenario = small_fleet(tmp_path, due=4, fresh=1)
    args = ["campaign", "start", "--due", "--all-users", "--mode", "training", "--scenario", str(scenario), "--yes"]
    code, out, err = _stderr_on_a_terminal([*args, "--fast-forward", "--confirm-irreversible", "--json"], tmp_path)
    assert code == 0, err
    assert json.loads(out)["counts"] == {"done": 4}
    # Each draw is "\r[bar] n/N  counts\x1b[K"; a line another part writes to stderr may stand
    # before one in the same segment, so draws are found where they start, not by segment.
    draws = [d for d in err.replace("\r\n", "\n").split("\r") if d.startswith("[")]
    assert draws, err
    last = re.findall(r"\[[#=.]{30}\] \d+/\d+[^\r\n\x1b]*", err)[-1]
    assert last.startswith("[" + "#" * 30 + "] 4/4") and "4 done" in last, last
    assert all(len(d.split("\x1b[K")[0]) < 80 for d in draws), "each draw fits the terminal's width"
    assert any("running" in d for d in draws), "the counts are shown as the targets move"
    assert "[1/4]" not in err.replace("\r", "\n").split("\n"), "no plain progress lines on a terminal"


def test_the_bar_shows_ended_and_stopped_targets_and_fits_its_width() -> None:
    from tui.cli import _Bar

    line = _Bar.line(3, 1, 4, "1 done, 2 waiting, 1 running", columns=200)
    assert line == "[#######===============........] 3/4  1 done, 2 waiting, 1 running"
    cut = _Bar.line(3, 1, 4, "1 done, 2 waiting, 1 running", columns=40)
    assert len(cut) == 39 and cut.endswith("…")


def test_off_a_terminal_progress_stays_plain_lines(cli, tmp_path) -> None:
    scenario = small_fleet(tmp_path, due=2, fresh=1)
    result = cli("campaign", "start", "--due", "--all-users", "--mode", "training", "--scenario", scenario, "--yes", "--json")
    assert result.exit_code == 3, result.output
    lines = result.stderr.splitlines()
    assert lines[-1] == "[2/2] 1 stopped, 1 waiting", lines  # one waits at its gate, one at its typed choice
    assert "\r" not in result.stderr and "#" not in result.stderr


@pytest.mark.slow
def test_a_campaigns_debrief_has_each_targets_verdicts_and_where_it_ended(cli, tmp_path) -> None:
    started = cli("offboard", "dana", "--mode", "training", "--scenario", "offboarding", "--yes", "--json")
    assert started.exit_code == 3, started.output  # every target at its gate
    debrief = cli("campaign", "debrief", "last", "--format", "json")
    assert debrief.exit_code == 0, debrief.output
    d = json.loads(debrief.stdout)
    assert d["ended"] is False and d["exit_code"] == 3 and d["counts"] == {"waiting": 4}
    by_user = {t["user"]: t for t in d["targets"]}
    assert set(by_user) == {"dana", "raxx-reports", "raxx-deploy", "raxx-vault-operator"}
    dana = by_user["dana"]["debrief"]
    assert [v["id"] for v in dana["gotchas"]] == ["contain-before-delete", "delete-user-order"]
    assert {v["verdict"] for v in dana["gotchas"]} == {"not reached"}, "the teardown waits behind the gate"
    assert by_user["raxx-reports"]["debrief"]["gotchas"] == [], "a rotation is not judged on the offboarding's gotchas"
    # Each rotation's end state names only its own places, on the campaign's one world.
    reports = by_user["raxx-reports"]["debrief"]["end_state"]
    assert any(line.startswith("heroku:raxx-reports: holds") for line in reports)
    assert not any("raxx-deploy" in line or "raxx-api-prod" in line for line in reports)

    finished = cli("campaign", "resume", "last", "--yes", "--confirm-irreversible", "--fast-forward", "--json")
    assert finished.exit_code == 0, finished.output
    text = cli("campaign", "debrief", "last")
    assert "end: 4 target(s): 4 done; ended; exit 0" in text.stdout
    assert "[handled] Tear down in DeleteUser's order" in text.stdout and "end: dana: deleted" in text.stdout
    markdown = tmp_path / "d.md"
    assert cli("campaign", "debrief", "last", "--format", "markdown", "--out", markdown).exit_code == 0
    assert markdown.read_text().startswith("# Debrief: campaign offboard dana")


def test_a_campaign_that_is_not_there_has_no_board_and_no_debrief(cli) -> None:
    for args in (("board", "nope"), ("campaign", "debrief", "nope")):
        result = cli(*args)
        assert result.exit_code == 2
        assert result.stderr.strip() == "handrail: no campaign 'nope' (handrail campaign list lists them)"
