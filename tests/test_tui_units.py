"""The app's plain parts: the frozen clock, the launcher, states, startup timing, imports."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tui.frozen import Frozen, FrozenClock
from tui.launcher import Launcher, LaunchError, Request, load_catalog
from tui.startup import process_age
from tui.states import elapsed_text, look
from tui.widgets.banner import short_actor

REPO = Path(__file__).resolve().parent.parent
# This process is at least this old: collection imports this module, after the start.
IMPORTED = time.monotonic()


def test_frozen_clock_stands_still_until_advanced():
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
    woke = threading.Event()
    sleeper = threading.Thread(target=lambda: (clock.sleep(5), woke.set()))
    sleeper.start()
    assert not woke.wait(0.3), "a frozen clock's sleep waits for an advance"
    clock.advance(5)
    assert woke.wait(5)
    assert clock.now() == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert clock.monotonic() == 5


def test_a_released_frozen_clock_lets_every_wait_pass():
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    done = threading.Event()
    sleeper = threading.Thread(target=lambda: (clock.sleep(60), clock.sleep(60), done.set()))
    sleeper.start()
    clock.release()
    assert done.wait(5)
    assert clock.monotonic() >= 60


def test_frozen_journal_stamps_frozen_real_time(tmp_path: Path):
    from steps.journal import Journal

    path = tmp_path / "j.sqlite3"
    journal = Frozen(now=datetime(2026, 1, 1, 9, 30, tzinfo=UTC)).journal(path)
    row = journal.create_session(runbook_id="r", runbook_path="p", runbook_sha="s", mode="training")
    journal.add_event(row.id, "step", step_id="a", status="done")
    journal.update_session(row.id, status="done")
    row = journal.session(row.id)
    assert row.created_at == row.updated_at == "2026-01-01T09:30:00Z"
    assert [e.ts_real for e in journal.events(row.id)] == ["2026-01-01T09:30:00Z"]
    journal.close()
    # The stamps are this connection's: another process's journal writes real time.
    plain = Journal(path)
    plain.add_event(row.id, "note")
    assert plain.events(row.id)[-1].ts_real != "2026-01-01T09:30:00Z"
    plain.close()


def test_catalog_offers_the_shipped_runbook_and_scenarios(tmp_path: Path):
    catalog = load_catalog()
    assert [r.ref for r in catalog.runbooks] == ["aws-iam-access-key", "aws-iam-user-offboarding"]
    book = catalog.runbook(None)
    assert "scheduled" in book.reasons and book.default_reason in book.reasons
    assert catalog.scenarios[0].id == "happy-path"
    assert {"self-rotation", "two-active-keys", "slow-propagation"} <= {s.id for s in catalog.scenarios}
    assert catalog.unfinished == [] and catalog.problems == []


def test_catalog_takes_a_scenario_file_and_reports_a_bad_one(tmp_path: Path):
    from steps.sandbox import scenario as scenarios

    path = tmp_path / "mine.yaml"
    path.write_text((scenarios.scenarios_dir() / "happy-path.yaml").read_text().replace("id: happy-path", "id: mine"))
    catalog = load_catalog(scenario_file=str(path))
    assert catalog.scenarios[0].id == str(path)
    assert load_catalog(scenario_file="no-such-scenario").problems


def test_launcher_refuses_bad_requests_in_one_line():
    launcher = Launcher()
    with pytest.raises(LaunchError, match="unknown mode"):
        launcher.start(Request("aws-iam-access-key", mode="chaos"))
    with pytest.raises(LaunchError, match="name the IAM user"):
        launcher.start(Request("aws-iam-access-key", mode="live"))
    with pytest.raises(LaunchError, match="no such scenario"):
        launcher.start(Request("aws-iam-access-key", mode="training", scenario="nope"))
    with pytest.raises(LaunchError, match="no session"):
        launcher.resume("nope")
    launcher.close()


def test_looks_and_texts():
    assert look("done").glyph == "✓" and look("failed").word == "failed"
    assert look("something-new").word == "something-new"
    assert elapsed_text(3725.9) == "1:02:05"
    assert short_actor("me as arn:aws:iam::123456789012:user/ops", "123456789012") == "me as user/ops"


def test_process_age_counts_from_process_start():
    assert process_age() > 0
    # A fresh process (this one may be an xdist worker many minutes old): its interpreter's
    # start-up counts, so the age is more than nothing, and far less than a minute.
    done = subprocess.run(
        [sys.executable, "-c", "from tui.startup import process_age; print(process_age())"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert 0 < float(done.stdout) < 60


def test_the_app_imports_no_sdk_before_its_first_frame():
    code = (
        "import sys, tui.app\n"
        "heavy = ('boto3', 'botocore', 'moto', 'paramiko', 'github', 'pydantic', 'steps.engine')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_catalog_lists_the_inventory_users_and_reports_a_bad_inventory(tmp_path: Path):
    good = tmp_path / "inventory.yaml"
    good.write_text(
        "version: 1\nusers:\n  raxx-s3-backup: {check_call: 's3:ListObjectsV2 Bucket=raxx-backups'}\n  raxx-vault-operator: {}\n"
    )
    catalog = load_catalog(inventory=str(good))
    assert catalog.inventory == str(good)
    assert catalog.inventory_users == ["raxx-s3-backup", "raxx-vault-operator"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nusers:\n  raxx-s3-backup: {vault: 3}\n")
    catalog = load_catalog(inventory=str(bad))
    assert catalog.inventory is None and any("bad.yaml" in p for p in catalog.problems)


def test_frozen_world_has_the_fixed_account_and_seeded_key_ids():
    from steps.sandbox import scenario as scenarios

    frozen = Frozen()
    made = []
    for _ in range(2):
        world = frozen.world(scenarios.load("happy-path"))
        try:
            assert world.aws.account_id == frozen.account_id
            made.append([k.access_key_id for k in world.aws.iam.users["raxx-vault-operator"].access_keys])
        finally:
            world.close()
    assert made[0] == made[1]


def test_training_catalog_requests_sessions_as_the_start_screen_does():
    catalog = load_catalog()
    assert [s.difficulty for s in catalog.scenarios] == sorted(s.difficulty for s in catalog.scenarios)
    forgotten = catalog.scenario("forgotten-consumer")
    assert forgotten.gotchas == ("last-used-before-delete",) and forgotten.runbook == "aws-iam-access-key"
    request = catalog.request(forgotten)
    assert request == Request("aws-iam-access-key", "training", "raxx-vault-operator", "forgotten-consumer", "scheduled")
    happy = catalog.request(catalog.scenario("happy-path"))
    assert happy.reason == (catalog.scenario("happy-path").reason or catalog.runbook(None).default_reason)
    assert "never validated with handrail validate" in catalog.validated["aws-iam-access-key"]
    assert catalog.validated["aws-iam-access-key"].startswith("2026-04-24 (SOP header")


def test_gotcha_names_give_no_answer_away():
    from steps.debrief import CHECKS, gotcha_name
    from tui.gotchas import stars

    # The debrief's titles carry the lesson; the briefing's names do not.
    assert "last-used" in CHECKS["last-used-before-delete"].title and "last" not in gotcha_name("last-used-before-delete")
    assert "verified" in CHECKS["deactivate-before-verified"].title and "verified" not in gotcha_name("deactivate-before-verified")
    assert gotcha_name("a-trainers-own") == "A trainers own"
    assert stars(1) == "★☆☆" and stars(3) == "★★★"
