"""The start-up path and what keys cost: a light first frame that fills in, the help kept
once built, the heap frozen while a session is open (benchmarks/ time them)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Button, Select
from tui_helpers import frozen_app, open_session, pilot_test, screen_text, settle, wait_until

from tui.app import HandrailApp
from tui.frozen import Frozen
from tui.screens.start import StartScreen

REPO = Path(__file__).resolve().parent.parent


@pilot_test
async def test_the_first_frame_is_the_start_screens_chrome_then_the_form_fills_in():
    first: dict[str, object] = {}

    class Watched(HandrailApp):
        def on_ready(self) -> None:
            super().on_ready()
            screen = self.start_screen
            first.update(text=screen_text(self), forms=len(screen.query("#start-grid")), loaded=screen.loaded)

    app = Watched(mode="training", scenario="happy-path", frozen=Frozen())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.start_screen.catalog is not None, "the catalog")
        await settle(pilot)
        text = screen_text(app)
        assert app.screen.focused is app.start_screen.query_one("#start", Button)
    assert first["forms"] == 0 and first["loaded"] is False
    assert "New session" in first["text"] and "loading runbooks and scenarios" in first["text"]
    assert "loading runbooks" not in text and "The happy path" in text and "Start  ctrl+s" in text


@pilot_test
async def test_keys_before_the_form_is_there_do_nothing_and_a_catalog_that_came_first_is_shown(monkeypatch):
    async def later(self) -> None:
        pass

    real = StartScreen._mount_form
    monkeypatch.setattr(StartScreen, "_mount_form", later)
    app = frozen_app("happy-path")
    async with app.run_test(size=(80, 24)) as pilot:
        start = app.start_screen
        await wait_until(pilot, lambda: app.catalog is not None, "the app's catalog")
        await pilot.press("ctrl+s", "ctrl+r")
        await settle(pilot)
        assert app.screen is start and not start.opening and start.catalog is None
        assert "loading runbooks and scenarios" in screen_text(app)
        await real(start)
        await settle(pilot)
        assert start.catalog is app.catalog
        assert start.query_one("#scenario", Select).value == "happy-path"
        assert "The happy path" in screen_text(app)


@pilot_test
async def test_help_is_built_once_and_kept():
    app = frozen_app("happy-path")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.start_screen.catalog is not None, "the catalog")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: app.screen is not app.start_screen, "the help")
        help_screen = app.screen
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is app.start_screen, "the help to close")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: app.screen is help_screen, "the same help again")
        assert "escape closes" in screen_text(app)


@pilot_test
async def test_the_heap_is_frozen_while_a_session_is_open_and_let_go_after(monkeypatch):
    unfrozen = []
    real_unfreeze = gc.unfreeze
    monkeypatch.setattr(gc, "unfreeze", lambda: (unfrozen.append(True), real_unfreeze()))
    app = frozen_app("happy-path")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_session(pilot)
            assert gc.get_freeze_count() > 0
            # What survives a full collection is frozen right after it.
            real_unfreeze()
            gc.collect()
            await pilot.pause()
            assert gc.get_freeze_count() > 0
            await pilot.press("n")  # back to the start screen: the session is closed
            await wait_until(pilot, lambda: app.session is None and app.screen is app.start_screen, "the start screen")
            assert unfrozen, "closing the session lets its world be collected"
        assert app._after_collection not in gc.callbacks
    finally:
        real_unfreeze()


@pytest.mark.slow
def test_the_startup_benchmark_runs(operator_env):
    """A short run: it still drives the real app, and prints its figures."""
    startup = subprocess.run(
        [sys.executable, "benchmarks/startup.py", "-n", "1"], capture_output=True, text=True, cwd=REPO, timeout=300, env=operator_env
    )
    assert startup.returncode == 0, startup.stderr
    assert "ratio handrail / bare" in startup.stdout


@pytest.mark.slow
def test_the_keypress_benchmark_runs(operator_env):
    done = subprocess.run(
        [sys.executable, "benchmarks/keypress.py", "-n", "8"], capture_output=True, text=True, cwd=REPO, timeout=300, env=operator_env
    )
    assert done.returncode == 0, done.stderr
    assert "validate-new-key polling" in done.stdout
