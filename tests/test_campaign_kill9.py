"""kill -9 of a training campaign at step boundaries: after the plan is recorded, and
while its targets run. `campaign resume --fast-forward` then finishes every target, with
no target rotated twice (each ends with exactly one Active key, the one its session made)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_campaigns import small_fleet


def _journal_rows(home: Path, sql: str) -> list[tuple]:
    path = home / "journal.sqlite3"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def _start_and_kill(home: Path, scenario: Path, tmp_path: Path, ready) -> None:
    env = {**os.environ, "HANDRAIL_HOME": str(home)}
    env.pop("PYTEST_CURRENT_TEST", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tui.cli import main; main(prog_name='handrail')", "campaign", "start", "--due",
         "--scenario", str(scenario), "--yes", "--fast-forward", "--confirm-irreversible", "--concurrency", "2", "--json"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert proc.poll() is None, "the campaign ended before the kill point"
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the process and whatever it started
        proc.wait()


KILL_POINTS = {
    # The campaign row and its plan are in the journal; no session yet.
    "after-the-plan": "SELECT 1 FROM campaigns",
    # Some target's new key is created (its step 2 is done) while others run.
    "while-targets-run": "SELECT 1 FROM events WHERE step_id = 'create-key' AND kind = 'step' AND status = 'done'",
    # A target deactivated its old key (the step before the gate's wait).
    "after-a-deactivation": "SELECT 1 FROM events WHERE step_id = 'deactivate-old-key' AND kind = 'step' AND status = 'done'",
}


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_killed_campaign_resumes_to_the_end_without_rotating_a_target_twice(cli, handrail_home, tmp_path, point):
    scenario = small_fleet(tmp_path, due=4, fresh=1, name=f"kill-{point}")
    _start_and_kill(handrail_home, scenario, tmp_path, lambda: bool(_journal_rows(handrail_home, KILL_POINTS[point])))

    campaigns = json.loads(cli("campaign", "list", "--json").stdout)
    assert len(campaigns) == 1
    cid = campaigns[0]["campaign"]
    world_out = tmp_path / "world.json"
    result = cli("campaign", "resume", cid, "--yes", "--confirm-irreversible", "--fast-forward", "--json", "--world-out", world_out)
    assert "Traceback" not in result.output
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {t["state"] for t in out["targets"]} == {"done"}, out["targets"]
    world = json.loads(world_out.read_text())
    for target in out["targets"]:
        keys = world["iam_users"][target["user"]]["keys"]
        active = [k for k in keys if k["status"] == "Active"]
        # Rotated once: one key left, the new one its session recorded (never a third).
        assert [k["id"] for k in active] == [target["new_key_id"]], (target, keys)
        assert len(keys) == 1, (target, keys)
    # One session per target, every one done: nothing started twice.
    sessions = json.loads(cli("sessions", "--all", "--json").stdout)
    assert sorted(s["user"] for s in sessions) == sorted(t["user"] for t in out["targets"])
    assert all(s["status"] == "done" for s in sessions)


@pytest.mark.slow
def test_a_campaign_killed_between_steps_left_the_world_its_journal_describes(handrail_home, tmp_path):
    """Every key a target's journal says it created is in the world saved on the campaign,
    once that target has gone a step further (a small fleet's world is saved at every step
    boundary; the kill lands after the next step's record, so never inside one)."""
    scenario = small_fleet(tmp_path, due=4, fresh=1, name="kill-between")
    after = "SELECT 1 FROM events WHERE step_id = 'validate-new-key' AND kind = 'step' AND status = 'done'"
    _start_and_kill(handrail_home, scenario, tmp_path, lambda: bool(_journal_rows(handrail_home, after)))

    created = _journal_rows(
        handrail_home,
        "SELECT f.value FROM facts f JOIN events e ON e.session_id = f.session_id "
        "WHERE f.name = 'new_key_id' AND e.step_id = 'validate-new-key' AND e.kind = 'step' AND e.status = 'done'",
    )
    assert created, "no target had validated its new key at the kill"
    [(world,)] = _journal_rows(handrail_home, "SELECT world FROM campaigns")
    for (key_id,) in created:
        assert key_id in world, f"{key_id} is in the journal, not in the saved world"
