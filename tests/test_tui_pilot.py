"""The app driven with keys only (Pilot), checked against the simulated world.

Every test runs frozen: the simulated clock moves only when the operator fast-forwards,
so waits last exactly as long as the test says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input
from tui_helpers import checklist, frozen_app, idle, open_session, pilot_test, run_steps, screen_text, settle, take_step, wait_until

from tui.screens.debrief import DebriefScreen, QuitTrainingScreen
from tui.screens.modals import AskScreen, ManualStepScreen, ManualUndoScreen, ReasonScreen
from tui.screens.rollback import RollbackScreen

pytestmark = pytest.mark.slow


def keys(session) -> dict[str, str]:
    world = session.wiring.world
    return {k.access_key_id: k.status for k in world.aws.iam.users[world.scenario.target_user].access_keys}


@pilot_test
async def test_complete_rotation_with_keys_only():
    app = frozen_app("happy-path")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        old = session.facts.get("old_key_id")
        await run_steps(pilot, screen)
        assert session.status == "done", screen_text(app)
        old, new = session.facts["old_key_id"], session.facts["new_key_id"]
        assert keys(session) == {new: "Active"}, "the old key is gone and one new Active key remains"
        assert old != new
        # A training session that finishes opens its debrief; escape goes back to the checklist.
        await wait_until(pilot, lambda: isinstance(app.screen, DebriefScreen) and app.screen.debrief is not None, "the debrief")
        assert {v.verdict for v in app.screen.debrief.gotchas} == {"handled"}
        await pilot.press("escape")
        assert checklist(app) is app.screen
        assert "Rotation complete." in screen_text(app) and "d debrief" in screen_text(app)
        assert "user raxx-vault-operator · done" in screen_text(app)
        gates = [r for r in session.audit.for_session(session.id) if r["action"] == "clock.fast_forward"]
        assert gates, "fast-forwarding the gate and the waits is audited"

        # Past the point of no return, the rollback plan says so and offers nothing to run.
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, RollbackScreen), "the rollback plan")
        assert not app.screen.plan.possible
        text = screen_text(app)
        assert "Past the point of no return." in text and "cannot be recovered" in text
        await pilot.press("y")  # nothing to run: y does nothing
        assert isinstance(app.screen, RollbackScreen)
        await pilot.press("escape")
        assert checklist(app) is app.screen


@pilot_test
async def test_rollback_half_way_restores_the_old_key():
    app = frozen_app("happy-path")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        while session.states["deactivate-old-key"].status != "done":
            await run_steps(pilot, screen, 1)
        old, new = session.facts["old_key_id"], session.facts["new_key_id"]
        assert keys(session) == {old: "Inactive", new: "Active"}

        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, RollbackScreen), "the rollback plan")
        plan = app.screen.plan
        assert plan.possible and plan.items[0].step.id == "deactivate-old-key"
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.idle and session.status == "rolled-back", "the rollback")
        await wait_until(pilot, lambda: isinstance(app.screen, DebriefScreen) and app.screen.debrief is not None, "the debrief")
        assert app.screen.debrief.rollback.startswith("rolled back")
        await pilot.press("escape")
        await settle(pilot)
        assert keys(session) == {old: "Active", new: "Inactive"}
        assert session.states["deactivate-old-key"].status == "undone"
        assert "Rolled back." in screen_text(app)
        # The new key is deactivated: its secret is not offered any more.
        assert "new_secret" in session.secrets and "Reveal" not in screen_text(app)
        await pilot.press("v")
        await pilot.pause()
        assert not isinstance(app.screen, AskScreen)


@pilot_test
async def test_no_secret_is_rendered_until_revealed_then_hidden_again():
    # The reveal lasts wall-clock seconds: long enough to outlast the key press and the
    # pause before the check on a loaded machine (0.5 s did not, with tests in parallel).
    app = frozen_app("happy-path", reveal_seconds=5)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        await run_steps(pilot, screen, until=lambda: session.states["create-key"].status == "done")
        secret = session.secrets["new_secret"].reveal()
        shown = screen.shown_step
        assert shown == "create-key"

        for step_id in [s.step.id for s in session.step_states()]:  # every step's detail
            screen.query_one("#steps").highlighted = session.runbook.index(step_id)
            await pilot.pause()
            assert secret[:12] not in screen_text(app)
            assert secret[:12] not in app.export_screenshot()
        screen.query_one("#steps").highlighted = session.runbook.index("create-key")
        await pilot.pause()

        await pilot.press("v")  # asks first: nothing shown, nothing audited yet
        await wait_until(pilot, lambda: isinstance(app.screen, AskScreen), "the question before the reveal")
        assert secret[:12] not in screen_text(app)
        assert not [r for r in session.audit.for_session(session.id) if r["action"] == "secret.revealed"]
        await pilot.press("y")
        await wait_until(pilot, lambda: secret in screen_text(app), "the secret, shown", timeout=5)
        revealed = [r for r in session.audit.for_session(session.id) if r["action"] == "secret.revealed"]
        assert revealed and revealed[-1]["context"] == {"step": "create-key", "secret": "new_secret"}
        await wait_until(pilot, lambda: secret[:12] not in screen_text(app), "the secret to hide again", timeout=10)
        assert "●" in screen_text(app)


@pilot_test
async def test_a_refusal_is_a_state_retry_but_never_skip(tmp_path: Path):
    app = frozen_app("self-rotation")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        await run_steps(pilot, screen, 1)
        assert session.states["pre-checks"].status == "refused"
        text = screen_text(app)
        assert "you are signed in as raxx-vault-operator" in text
        assert "r check again" in text and "u roll back" in text and "s skip…" not in text

        await take_step(pilot, screen)  # the guard runs again: still refused, the app stays up
        await idle(pilot, screen)
        assert session.states["pre-checks"].status == "refused"
        assert session.states["pre-checks"].attempts == 2

        await pilot.press("s")  # refused in one line, with what to do instead; nothing asked, nothing recorded
        await pilot.pause()
        assert not isinstance(app.screen, ReasonScreen)
        assert session.states["pre-checks"].status == "refused"
        assert not [r for r in session.audit.for_session(session.id) if r["action"] == "step.skipped"]

        await pilot.press("q")  # training: the debrief is offered first
        await wait_until(pilot, lambda: isinstance(app.screen, QuitTrainingScreen), "the offer of the debrief")
        await pilot.press("q")  # quit now
        await pilot.pause()
    assert session.status == "refused"
    assert f"resume {session.id}" in app.exit_note


@pilot_test
async def test_quit_mid_rotation_then_resume():
    app = frozen_app("happy-path")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_session(pilot)
        await run_steps(pilot, screen, until=lambda: screen.session.states["create-key"].status == "done")
        session_id = screen.session.id
        await pilot.press("q", "q")  # quit, then "quit now" rather than the debrief
        await pilot.pause()
    assert "resume" in app.exit_note

    again = frozen_app("happy-path")
    async with again.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: again.start_screen.catalog is not None, "the catalog")
        assert [r.id for r in again.start_screen.catalog.unfinished] == [session_id]
        assert session_id in screen_text(again)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: checklist(again) is not None, "the resumed session")
        screen = checklist(again)
        await wait_until(pilot, lambda: screen.prompt is not None, "the prompt")
        session = screen.session
        assert session.id == session_id
        # The new secret lived in the previous process's memory: its step runs again.
        assert session.current().step.id == "create-key"
        await run_steps(pilot, screen)
        assert session.status == "done"
        # A resumed training session gets its debrief at its end too.
        await wait_until(pilot, lambda: isinstance(again.screen, DebriefScreen) and again.screen.debrief is not None, "the debrief")
        assert again.screen.debrief.session == session_id


@pilot_test
async def test_a_worker_exception_is_shown_not_raised(monkeypatch):
    app = frozen_app("happy-path")
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        screen = await open_session(pilot)

        def boom(*args, **kwargs):
            raise RuntimeError("the disk is on fire")

        monkeypatch.setattr(screen.session, "run", boom)
        await pilot.press("r")  # step 1 is auto: it runs at once, and raises
        await wait_until(pilot, lambda: "pre-checks" in screen.notes, "the error")
        await idle(pilot, screen)
        assert app.is_running
        assert "RuntimeError: the disk is on fire" in screen.notes["pre-checks"]
        assert "the disk is on fire" in screen_text(app)


@pilot_test
async def test_manual_step_reveals_the_secret_and_records_done(tmp_path: Path):
    """A scenario with no vault and no consumers: steps 4 to 6 are done by hand."""
    import yaml

    from steps.sandbox import scenario as scenarios

    data = yaml.safe_load((scenarios.scenarios_dir() / "happy-path.yaml").read_text())
    for name in ("vault", "consumers", "forgotten", "faults"):
        data.pop(name, None)
    data["id"] = "no-inventory"
    path = tmp_path / "no-inventory.yaml"
    path.write_text(yaml.safe_dump(data))

    app = frozen_app(str(path), reveal_seconds=30)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        assert session.wiring.world.scenario.id == "no-inventory"
        await run_steps(pilot, screen, until=lambda: screen.current_id == "store-in-vault")
        await pilot.press("r")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ManualStepScreen), "the manual step")
        secret = session.secrets["new_secret"].reveal()
        assert secret not in screen_text(app)
        await pilot.press("v", "y")  # reveal, yes: shown, counting down
        await wait_until(pilot, lambda: secret in screen_text(app), "the secret, shown")
        assert "hides" in screen_text(app)
        await pilot.press("d")
        await idle(pilot, screen)
        assert session.states["store-in-vault"].status == "done"
        assert session.states["store-in-vault"].summary.startswith("done by the operator outside handrail")

        # Rolling back: whatever the engine makes of a vault step done by hand, the
        # outcome is a state on screen (a failed undo leaves "u roll back the rest").
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, RollbackScreen), "the rollback plan")
        await pilot.press("y")
        while not (screen.idle and session.status in ("rolled-back", "rollback-failed")):
            if isinstance(app.screen, ManualUndoScreen):
                await pilot.press("d")
            await pilot.pause(0.05)
        await settle(pilot)
        if isinstance(app.screen, DebriefScreen):  # rolled back: the debrief came up
            await pilot.press("escape")
        assert app.is_running
        text = screen_text(app)
        assert "Rolled back." in text if session.status == "rolled-back" else "u roll back the rest" in text


@pilot_test
async def test_a_manual_undo_is_asked_while_the_rollback_waits(monkeypatch):
    from steps.actions.base import Outcome
    from steps.engine import UndoItem

    app = frozen_app("happy-path")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        await run_steps(pilot, screen, 3)  # something to undo: the plan can run
        step = session.runbook.step("propagate")
        answers: list[bool] = []

        def rollback(manual_done):
            item = UndoItem(step, "manual", "Put the old pair back on every consumer", "manual undo")
            answers.append(manual_done(item))  # blocks this worker until the operator answers
            return True, [(item, Outcome.done("undone by the operator outside handrail"))]

        monkeypatch.setattr(session, "rollback", rollback)
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, RollbackScreen), "the rollback plan")
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, ManualUndoScreen), "the manual undo")
        assert screen.rolling_back
        assert "Put the old pair back on every consumer" in screen_text(app)
        await pilot.press("d")
        await wait_until(pilot, lambda: screen.idle, "the rollback to end")
        assert answers == [True]


@pilot_test
async def test_gate_override_needs_a_typed_reason():
    app = frozen_app("happy-path")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        while session.states["deactivate-old-key"].status != "done":
            await run_steps(pilot, screen, 1)
        await pilot.press("r")  # show step 7b: waiting at the gate
        await pilot.pause()
        assert "waiting at the gate" in screen_text(app)
        await pilot.press("r")  # the gate is closed: nothing runs
        await pilot.pause()
        assert session.states["delete-old-key"].status == "pending"
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonScreen), "the reason")
        await pilot.press(*"change window closes tonight", "enter")
        await idle(pilot, screen)
        assert session.gate_state(session.states["delete-old-key"].step).open
        overrides = [r for r in session.audit.for_session(session.id) if r["action"] == "gate.override"]
        assert overrides[-1]["context"]["reason"] == "change window closes tonight"


@pilot_test
async def test_live_mode_without_credentials_is_an_error_not_a_crash(monkeypatch, tmp_path: Path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    app = frozen_app(mode="live")
    async with app.run_test(size=(80, 24)) as pilot:
        start = app.start_screen
        await wait_until(pilot, lambda: start.catalog is not None, "the catalog")
        assert start.has_class("-live")
        start.query_one("#user", Input).value = "raxx-vault-operator"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, AskScreen), "the live confirmation")
        await pilot.press("y")
        await wait_until(pilot, lambda: not start.opening, "the attempt to open")
        assert "cannot tell who you are" in screen_text(app)
        assert checklist(app) is None and app.is_running


@pilot_test
async def test_help_lists_every_binding_and_the_palette_runs_actions():
    from tui.screens.checklist import ChecklistScreen
    from tui.screens.help import HelpScreen

    app = frozen_app("happy-path")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_session(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        listed = {key for _, rows in app.screen.sections for key, _ in rows}
        for binding in ChecklistScreen.BINDINGS:
            assert app.get_key_display(binding) in listed, binding
        await pilot.press("escape")
        assert app.screen is screen

        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Roll back")
        await wait_until(pilot, lambda: "Shows the rollback plan" in screen_text(app), "the palette hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RollbackScreen), "the rollback plan, from the palette")
        await pilot.press("escape")

        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-dark"
        assert app.startup_seconds is not None and app.startup_seconds > 0


async def open_typed_dialog(pilot, screen):
    """r on the shown next step (r once more to show it first): its typed confirmation."""
    from tui.screens.modals import TypedConfirmScreen

    if screen.shown_step != screen.current_id:
        await pilot.press("r")
    await pilot.press("r")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, TypedConfirmScreen), "the typed confirmation")
    await settle(pilot)
    return pilot.app.screen


@pilot_test
async def test_irreversible_delete_takes_the_typed_key_id_at_once_and_refuses_a_wrong_one():
    """Step 7b at 80x24: 'Irreversible: no undo' first; the field has the keyboard
    without tab; a wrong id runs nothing; the right one, pasted, deletes the key."""
    from textual import events

    from tui.screens.modals import TypedConfirmScreen

    app = frozen_app("happy-path")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        await run_steps(pilot, screen, until=lambda: screen.current_id == "delete-old-key")
        await pilot.press("f")  # the observation gate, on the simulated clock
        await idle(pilot, screen)
        dialog = await open_typed_dialog(pilot, screen)
        old = session.facts["old_key_id"]
        assert dialog.prompt.irreversible and dialog.accepted == [old]
        field = dialog.query_one("#typed-answer", Input)
        assert app.focused is field
        text = screen_text(app)
        # The first line inside the dialog's frame says it; the field and the buttons
        # are on screen too: nothing essential below the fold.
        rows = text.splitlines()
        top = next(i for i, row in enumerate(rows) if "Step 7b: type to confirm" in row)
        assert "Irreversible: no undo." in rows[top + 1]
        assert "type it here" in text and "enter Delete" in text and "esc Cancel" in text

        await pilot.press(*"AKIAWRONGWRONGWRONG0", "enter")  # typed at once: no tab
        await pilot.pause()
        assert isinstance(app.screen, TypedConfirmScreen)
        assert "is not 'AKIA" in screen_text(app) and "nothing was run" in screen_text(app)
        assert session.states["delete-old-key"].status == "pending"

        field.value = ""
        app.post_message(events.Paste(f" {old}\n"))  # a paste from the clipboard, with its newline
        await pilot.pause()
        assert field.value.strip() == old
        await pilot.press("enter")
        await idle(pilot, screen)
        assert session.states["delete-old-key"].status == "done"
        assert old not in keys(session)
        typed = [r for r in session.audit.for_session(session.id) if r["action"] == "step.irreversible_confirmed"]
        assert typed[-1]["context"] == {"step": "delete-old-key", "confirmed": old, "how": "typed"}


@pilot_test
async def test_every_confirmation_shows_its_warnings_and_fits_at_80x24():
    """Step 6 skipped: step 7's confirmation says so above the question, and its undo and
    buttons are on screen at 80x24; step 5's names the consumers it writes to."""
    from tui.screens.modals import ConfirmRunScreen

    app = frozen_app("happy-path")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        await run_steps(pilot, screen, until=lambda: screen.current_id == "propagate")
        await pilot.press("r", "r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmRunScreen), "step 5's confirmation")
        await settle(pilot)
        text = screen_text(app)
        for consumer in ("heroku:raxx-api-prod", "github:raxx/infra", "ssh:vault-host"):
            assert consumer in text, text
        assert "Undo: heroku config:set" in text and "-a raxx-api-prod" in text and "y Run it" in text
        await pilot.press("y")
        await idle(pilot, screen)

        await pilot.press("r", "s")  # step 6 shown, then skipped with a reason
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonScreen), "the reason")
        await pilot.press(*"checked by hand", "enter")
        await idle(pilot, screen)
        assert session.states["verify-downstream"].status == "skipped"
        await pilot.press("r", "r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmRunScreen), "step 7's confirmation")
        await settle(pilot)
        text = " ".join(screen_text(app).split())
        assert app.screen.prompt.warnings
        assert "Warning: step 6 (Verify downstream) was skipped" in text
        assert "Undo: aws iam update-access-key" in text and "y Run it" in text
        await pilot.press("n")
        assert session.states["deactivate-old-key"].status == "pending"


@pilot_test
async def test_the_resume_list_tells_sessions_apart_and_the_arrows_move_it():
    """Two unfinished sessions: each says when it started, its mode and scenario, where
    it stands and who ran it; up and down move the highlight without tabbing to the list."""
    from textual.widgets import OptionList

    from tui.app import HandrailApp
    from tui.frozen import Frozen

    for scenario, session_id in (("happy-path", "20261127-140000-demo"), ("inactive-key-in-slot", "20261127-140000-demo2")):
        app = HandrailApp(mode="training", scenario=scenario, frozen=Frozen(session_id=session_id))
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_session(pilot)
            await run_steps(pilot, screen, 1)
            await pilot.press("q", "q")  # quit now, resumable
            await pilot.pause()

    app = frozen_app("happy-path")
    async with app.run_test(size=(80, 24)) as pilot:
        start = app.start_screen
        await wait_until(pilot, lambda: start.catalog is not None, "the catalog")
        await settle(pilot)
        listing = start.query_one("#unfinished", OptionList)
        assert [r.id for r in start.catalog.unfinished] == ["20261127-140000-demo2", "20261127-140000-demo"]
        first = str(listing.get_option_at_index(0).prompt)
        assert "started 2026-11-27 14:00 UTC · training" in first
        assert "inactive-key-in-slot · at step 1a · Mark the user as being rotated" in first
        assert "operator " in first and "happy-path" in str(listing.get_option_at_index(1).prompt)
        assert listing.highlighted == 0 and app.focused is not listing
        await pilot.press("down")
        assert listing.highlighted == 1
        await pilot.press("up")
        assert listing.highlighted == 0
        await pilot.press("down", "ctrl+r")  # resume the highlighted one
        await wait_until(pilot, lambda: checklist(app) is not None, "the resumed session")
        assert checklist(app).session.id == "20261127-140000-demo"


@pilot_test
async def test_the_app_waits_for_a_second_operator_and_names_the_command():
    from steps import approval
    from steps.sandbox.aws import SECOND_OPERATOR
    from steps.status import Needs
    from tui.screens.modals import TypedConfirmScreen

    app = frozen_app("second-operator")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_session(pilot)
        session = screen.session
        await run_steps(pilot, screen, until=lambda: session.current().step.id == "delete-old-key")
        await pilot.press("f")  # the observation gate
        await idle(pilot, screen)
        if screen.shown_step != "delete-old-key":
            await pilot.press("r")
            await wait_until(pilot, lambda: screen.shown_step == "delete-old-key", "step 7b to show")
        await wait_until(pilot, lambda: screen.prompt is not None and screen.prompt.needs is Needs.APPROVAL, "the approval prompt")
        await pilot.press("r")  # asks afresh, then says it still waits
        await settle(pilot)
        text = screen_text(app)
        assert "Waiting for a second operator" in text, text
        callout = str(screen.query_one("#d-gate").render())
        assert f'handrail approve {session.id} --step delete-old-key --reason "WHY"' in callout, callout
        assert session.states["delete-old-key"].status == "pending"
        # From another terminal: the world's second operator approves.
        world = session.wiring.world
        second = world.aws.client("sts", world.aws.pair_of(SECOND_OPERATOR)).get_caller_identity()["Arn"]
        grant = approval.Grant(session.row, "delete-old-key", second, world.aws.account_id, "dashboards are quiet")
        iam = world.aws.client("iam")
        groups = lambda user: [g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"]]  # noqa: E731
        approval.grant(session.journal, session.audit, grant, world.scenario.governance(), groups, "tester")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, TypedConfirmScreen), "the typed confirmation")
        await pilot.press(*list(app.screen.accepted[0]), "enter")
        await idle(pilot, screen)
        assert session.states["delete-old-key"].status == "done", screen_text(app)
        assert any("approved by" in line and SECOND_OPERATOR in line for line in session.states["delete-old-key"].evidence)
