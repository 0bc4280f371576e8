"""Training in the app, with keys only: the scenario list, a briefing, the checklist in
training, the debrief (offered on quit, shown at the end), its Markdown export, and a
training session resumed without its briefing.

Every test runs frozen (`tui.frozen.Frozen`), as `handrail train [SCENARIO]` opens it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import OptionList, Static
from tui_helpers import (
    checklist,
    debrief_on_quit,
    pick_scenario,
    pilot_test,
    run_steps,
    scenario_list,
    screen_text,
    settle,
    start_from_briefing,
    training_app,
    wait_until,
)

from tui.screens.briefing import BriefingScreen
from tui.screens.debrief import DebriefScreen, ExportScreen, QuitTrainingScreen
from tui.screens.modals import ReasonScreen
from tui.screens.start import StartScreen
from tui.screens.training import TrainingScreen

pytestmark = pytest.mark.slow


@pilot_test
async def test_pick_a_scenario_read_its_briefing_and_start_it():
    app = training_app()
    async with app.run_test(size=(80, 24)) as pilot:
        listing = await scenario_list(pilot)
        ids = [s.id for s in listing.catalog.scenarios]
        difficulties = [s.difficulty for s in listing.catalog.scenarios]
        assert difficulties == sorted(difficulties) and ids[0] == "happy-path" and ids[-1] == "forgotten-consumer"
        text = screen_text(app)
        assert "TRAINING" in text and "★☆☆ The happy path  happy-path" in text

        briefing = await pick_scenario(pilot, "forgotten-consumer")
        text = screen_text(app)
        assert "The forgotten consumer" in text and "★★★" in text and "TRAINING" in text
        assert "What happened" in text and "raxx-api-prod Heroku app" in text
        assert "Your goal" in text and "delete the old one only once nothing depends on it" in text
        assert "Gotchas in play" in text and "Before deleting the old key" in text
        assert "get-access-key-last-used before the delete" not in text, "the briefing names the gotcha, not its answer"
        await pilot.press("end")  # the rest of the briefing, at 80x24
        await settle(pilot)
        text = screen_text(app)
        assert "Last validated 2026-04-24" in text and "never validated" in text, text

        await pilot.press("escape")  # back to the list, and in again
        assert isinstance(app.screen, TrainingScreen)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, BriefingScreen), "the briefing again")
        assert app.screen.scenario.id == briefing.scenario.id

        screen = await start_from_briefing(pilot)
        session = screen.session
        assert session.mode == "training" and session.wiring.world.scenario.id == "forgotten-consumer"
        assert session.target == "raxx-vault-operator" and session.inputs["reason"] == "scheduled"
        assert not any(isinstance(s, BriefingScreen) for s in app.screen_stack), "the checklist took the briefing's place"
        text = screen_text(app)
        assert "TRAINING" in text and "Goal Rotate the key, and delete the old one" in text

        await pilot.press("b")  # the briefing again, to read: nothing to start
        await wait_until(pilot, lambda: isinstance(app.screen, BriefingScreen), "the briefing, read again")
        assert app.screen.session is session and not app.screen.query("#briefing-start")
        await pilot.press("ctrl+s")
        await pilot.press("escape")
        assert app.screen is screen and checklist(app) is screen

        await pilot.press("d")  # the debrief, any time in training: nothing reached yet
        await wait_until(pilot, lambda: isinstance(app.screen, DebriefScreen) and app.screen.debrief is not None, "the debrief")
        assert [v.verdict for v in app.screen.debrief.gotchas] == ["not reached"]
        await pilot.press("n")  # leave the session: back to the scenario list, which offers it
        listing = await scenario_list(pilot)
        await wait_until(pilot, lambda: [r.id for r in listing.catalog.unfinished_training()] == [session.id], "the unfinished session")
        assert checklist(app) is None and [type(s) for s in app.screen_stack] == [StartScreen, TrainingScreen]


@pilot_test
async def test_train_scenario_opens_on_its_briefing_and_a_resume_skips_it():
    app = training_app("self-rotation")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, BriefingScreen), "the briefing")
        assert app.screen.scenario.id == "self-rotation"
        assert [type(s) for s in app.screen_stack] == [StartScreen, TrainingScreen, BriefingScreen]
        screen = await start_from_briefing(pilot)
        session_id = screen.session.id
        await run_steps(pilot, screen, 1)
        assert screen.session.states["pre-checks"].status == "refused"

        await pilot.press("n")  # leave it, half-way: back to the scenario list, which offers it
        listing = await scenario_list(pilot)
        await wait_until(pilot, lambda: [r.id for r in listing.catalog.unfinished_training()] == [session_id], "the unfinished session")
        await settle(pilot)
        assert "Unfinished training sessions" in screen_text(app) and session_id in screen_text(app)

        await pilot.press("ctrl+r")  # resume: straight to the checklist, no briefing
        await wait_until(pilot, lambda: checklist(app) is not None, "the resumed session")
        screen = checklist(app)
        await wait_until(pilot, lambda: screen.prompt is not None, "the prompt")
        assert screen.session.id == session_id and screen.session.wiring.world.scenario.id == "self-rotation"
        assert not any(isinstance(s, BriefingScreen) for s in app.screen_stack)
        assert "Goal Notice at step 1 whose credentials" in screen_text(app)


@pilot_test
async def test_self_rotation_quit_offers_the_debrief_with_its_verdict(tmp_path: Path, monkeypatch):
    """The quick intended end: step 1 refuses, the trainee quits, the debrief is offered."""
    monkeypatch.chdir(tmp_path)
    app = training_app("self-rotation")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, BriefingScreen), "the briefing")
        screen = await start_from_briefing(pilot)
        session = screen.session
        await run_steps(pilot, screen, 1)
        assert session.states["pre-checks"].status == "refused"

        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitTrainingScreen), "the offer")
        await pilot.press("escape")  # stay
        assert app.screen is screen and app.is_running

        debrief = await debrief_on_quit(pilot)
        assert [(v.id, v.verdict) for v in debrief.debrief.gotchas] == [("self-rotation", "handled")]
        text = screen_text(app)
        assert "✓ handled" in text and "Rotate as a different identity" in text
        assert "stopped at step 1: signed in as the user being rotated" in text
        assert "not needed: nothing was changed" in text

        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen), "the export question")
        await pilot.press("enter")  # the default: debrief-<session>.md, here
        written = tmp_path / f"debrief-{session.id}.md"
        await wait_until(pilot, lambda: debrief.written is not None, "the file")
        assert debrief.written == str(written)
        markdown = written.read_text()
        assert "| Rotate as a different identity | **handled** |" in markdown
        assert f"Session `{session.id}`" in markdown and "## Timeline" in markdown
        assert f"Debrief written to {written}" == str(debrief.query_one("#debrief-status", Static).content)

        await pilot.press("q")  # from the debrief: quit, no second offer
        await pilot.pause()
    assert f"resume {session.id}" in app.exit_note


@pilot_test
async def test_consumer_fails_pushed_past_is_missed_in_the_debrief(tmp_path: Path, monkeypatch):
    """The wrong way: the propagation fails (Heroku answers 500) and the trainee skips it."""
    monkeypatch.chdir(tmp_path)
    app = training_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pick_scenario(pilot, "consumer-fails")
        screen = await start_from_briefing(pilot)
        session = screen.session
        await run_steps(pilot, screen, until=lambda: session.states["propagate"].status == "failed")
        assert session.states["propagate"].status == "failed"

        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonScreen), "the reason")
        await pilot.press(*"Heroku can catch up later", "enter")
        await wait_until(pilot, lambda: screen.idle and session.states["propagate"].status == "skipped", "the skip")
        await settle(pilot)

        # The debrief from the command palette, for the current session.
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Debrief")
        await wait_until(pilot, lambda: "the end state, the timeline" in screen_text(app), "the palette hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DebriefScreen) and app.screen.debrief is not None, "the debrief")
        await settle(pilot)
        verdicts = {v.id: v.verdict for v in app.screen.debrief.gotchas}
        assert verdicts == {"consumer-fails": "missed", "deactivate-before-verified": "not reached"}
        text = screen_text(app)
        assert "✗ missed" in text and "propagation was skipped after a consumer failed" in text
        assert "○ not reached" in text

        await pilot.press("c")
        assert "| One failing consumer must not hide the others | **missed** |" in app.clipboard
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen), "the export question")
        path = tmp_path / "out" / "mine.md"
        path.parent.mkdir()
        field = app.screen.query_one("#export-path")
        field.value = ""
        await pilot.press(*"out/mine.md", "enter")  # from the working directory (tmp_path): each key is a frame
        await wait_until(pilot, lambda: path.exists(), "the file")
        assert "**missed**" in path.read_text() and "**not reached**" in path.read_text()

        await pilot.press("escape")  # back to the checklist: the session as it stands
        assert app.screen is screen
        assert screen.session.states["propagate"].status == "skipped"
        await pilot.press("q")  # the debrief was seen: q quits at once
        await pilot.pause()
    assert not app.is_running


@pilot_test
async def test_start_screen_shows_last_validated_and_opens_the_scenario_list():
    app = training_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await scenario_list(pilot)
        await pilot.press("escape")  # every mode and option: the start screen
        assert app.screen is app.start_screen
        await settle(pilot)
        text = screen_text(app)
        assert "Last validated 2026-04-24" in text
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, TrainingScreen), "the scenario list again")
        listing = await scenario_list(pilot)
        assert listing.query_one("#scenarios", OptionList).option_count == len(listing.catalog.scenarios)


@pilot_test
async def test_help_lists_every_training_binding():
    from tui.screens.help import HelpScreen
    from tui.screens.training import ScenarioList

    app = training_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await scenario_list(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        sections = dict(app.screen.sections)
        for title, screen in (
            ("Training scenarios (handrail train)", ScenarioList),
            ("Training scenarios (handrail train)", TrainingScreen),
            ("Briefing", BriefingScreen),
            ("Debrief (training)", DebriefScreen),
            ("Quitting a training session", QuitTrainingScreen),
            ("Exporting the debrief", ExportScreen),
        ):
            listed = {key for key, _ in sections[title]}
            for binding in screen.BINDINGS:
                assert app.get_key_display(binding) in listed, (title, binding)
