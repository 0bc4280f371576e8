"""Helpers for the app's tests: a frozen app, the screen as text, and Pilot moves.

Only Pilot's own waiting primitives are used (pause, wait_for_scheduled_animations,
workers.wait_for_complete): `wait_until` polls a condition with `pilot.pause`.
"""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import Callable
from typing import Any

from rich.console import Console

from tui.app import HandrailApp
from tui.frozen import Frozen

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}


def pilot_test(fn):
    """Run an `async def` test in its own event loop (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


def frozen_app(scenario: str = "happy-path", mode: str = "training", **kwargs: Any) -> HandrailApp:
    """The app with time, ids and randomness held still: the same screen every run."""
    return HandrailApp(mode=mode, scenario=scenario, frozen=Frozen(), **kwargs)


def training_app(scenario: str | None = None, **kwargs: Any) -> HandrailApp:
    """`handrail train [SCENARIO]`, frozen: the scenario list (and the briefing)."""
    return HandrailApp(mode="training", scenario=scenario, training=True, frozen=Frozen(), **kwargs)


def screen_text(app: HandrailApp) -> str:
    """What the terminal shows now, as plain text (the modal and what is under it)."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, force_terminal=True, color_system=None, legacy_windows=False
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def wait_until(pilot, condition: Callable[[], Any], what: str = "condition", timeout: float = 30.0) -> None:
    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)
        waited += 0.05


async def settle(pilot) -> None:
    """Every worker done, every message handled, every animation over."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def checklist(app: HandrailApp):
    from tui.screens.checklist import ChecklistScreen

    return next((s for s in app.screen_stack if isinstance(s, ChecklistScreen)), None)


async def open_session(pilot) -> Any:
    """From the start screen: wait for the catalog, start, wait for the checklist."""
    from textual.widgets import Select

    app = pilot.app
    await wait_until(pilot, lambda: app.start_screen.catalog is not None, "the catalog")
    await settle(pilot)
    assert app.start_screen.query_one("#scenario", Select).value is not Select.BLANK
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: checklist(app) is not None, "the checklist")
    screen = checklist(app)
    await wait_until(pilot, lambda: screen.prompt is not None, "the first prompt")
    await settle(pilot)
    return screen


async def idle(pilot, screen) -> None:
    """Wait for the step worker, then for the next step's prompt."""
    await wait_until(pilot, lambda: screen.idle, "the step to end")
    if screen.session.current() is not None:
        await wait_until(pilot, lambda: screen.prompt is not None, "the next prompt")
    await settle(pilot)


async def take_step(pilot, screen, answer: str | None = None) -> str:
    """Run the next step with keys only, answering whatever it asks. Returns its id."""
    from tui.screens.modals import ConfirmRunScreen, ManualStepScreen, TypedConfirmScreen

    app = pilot.app
    state = screen.session.current()
    step_id = state.step.id
    gate = screen.session.gate_state(state.step)
    if gate is not None and not gate.open:  # the observation gate: fast-forward to its opening
        await pilot.press("f")
        await idle(pilot, screen)
    if screen.shown_step != step_id:  # the first r shows the next step, the second runs it
        await pilot.press("r")
        await wait_until(pilot, lambda: screen.shown_step == step_id, f"step {step_id} to show")
    await pilot.press("r")
    await pilot.pause()
    await wait_until(
        pilot,
        lambda: app.screen is not screen or not screen.idle or screen.session.states[step_id].status != "pending",
        f"step {step_id} to ask or start",
    )
    if isinstance(app.screen, ConfirmRunScreen):
        await pilot.press("y")
    elif isinstance(app.screen, TypedConfirmScreen):
        await pilot.press(*list(answer or app.screen.accepted[0]), "enter")
    elif isinstance(app.screen, ManualStepScreen):
        await pilot.press("d")
    return step_id


async def fast_forward_waits(pilot, screen) -> None:
    """While the step runs: press f at every wait until the step ends."""
    while not screen.idle:
        running = screen.running_step
        if running and screen.waits.get(running) and screen.waits[running].left > 0:
            await pilot.press("f")
        await pilot.pause(0.05)


async def run_steps(pilot, screen, count: int | None = None, until: Callable[[], bool] | None = None) -> None:
    """Take `count` steps (or every step left, or until `until()`) with keys only,
    fast-forwarding every wait."""
    taken = 0
    while screen.session.current() is not None and (count is None or taken < count) and not (until and until()):
        await take_step(pilot, screen)
        await fast_forward_waits(pilot, screen)
        await idle(pilot, screen)
        taken += 1


# -- training: the scenario list, the briefing, the debrief ----------------------------------


async def scenario_list(pilot):
    """Wait for the training screen (the scenario list) and its catalog."""
    from tui.screens.training import TrainingScreen

    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, TrainingScreen) and app.screen.catalog is not None, "the scenario list")
    await settle(pilot)
    return app.screen


async def pick_scenario(pilot, scenario_id: str):
    """From the scenario list, with keys only: down to `scenario_id`, enter: its briefing."""
    from textual.widgets import OptionList

    from tui.screens.briefing import BriefingScreen

    listing = await scenario_list(pilot)
    options = listing.query_one("#scenarios", OptionList)
    wanted = [s.id for s in listing.catalog.scenarios].index(scenario_id)
    await pilot.press(*(["down"] * (wanted - (options.highlighted or 0))))
    assert options.get_option_at_index(options.highlighted).id == scenario_id
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, BriefingScreen), "the briefing")
    await settle(pilot)
    return pilot.app.screen


async def start_from_briefing(pilot):
    """ctrl+s on the briefing: wait for the checklist and its first prompt."""
    app = pilot.app
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: checklist(app) is not None and app.screen is checklist(app), "the checklist")
    screen = checklist(app)
    await wait_until(pilot, lambda: screen.prompt is not None, "the first prompt")
    await settle(pilot)
    return screen


async def debrief_on_quit(pilot):
    """q on a training checklist: the debrief is offered; d shows it, built."""
    from tui.screens.debrief import DebriefScreen, QuitTrainingScreen

    app = pilot.app
    await pilot.press("q")
    await wait_until(pilot, lambda: isinstance(app.screen, QuitTrainingScreen), "the offer of the debrief")
    await pilot.press("d")
    await wait_until(pilot, lambda: isinstance(app.screen, DebriefScreen) and app.screen.debrief is not None, "the debrief")
    await settle(pilot)
    return app.screen


# -- campaigns: the board --------------------------------------------------------------------------


def board_screen(app: HandrailApp):
    from tui.screens.board import BoardScreen

    return next((s for s in app.screen_stack if isinstance(s, BoardScreen)), None)


async def open_board(pilot, choice: int = 0):
    """From the start screen, keys only: ctrl+b, the `choice`-th training campaign, its plan on the board."""
    from tui.screens.board import CampaignsScreen

    app = pilot.app
    await wait_until(pilot, lambda: app.start_screen.loaded, "the start screen's form")
    await pilot.press("ctrl+b")
    await wait_until(pilot, lambda: isinstance(app.screen, CampaignsScreen), "the campaigns")
    await pilot.press(*(["down"] * choice), "enter")
    await wait_until(pilot, lambda: board_screen(app) is not None and board_screen(app).board is not None, "the plan", timeout=60)
    await settle(pilot)
    return board_screen(app)


async def board_idle(pilot, board) -> None:
    await wait_until(pilot, lambda: board.busy is None, "the board's worker", timeout=120)
    await settle(pilot)


async def start_board(pilot, board) -> None:
    """ctrl+s, y: the campaign starts and every target drives to its first stop."""
    from tui.screens.modals import AskScreen

    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, AskScreen), "the plan's confirmation")
    await pilot.press("y")
    await wait_until(pilot, lambda: board.board.started, "the campaign to start")
    await board_idle(pilot, board)


async def open_target(pilot, board, position: int):
    """Highlight target `position` (0-based) on the board, enter: its checklist, its prompt ready."""
    from tui.screens.board import TargetChecklist

    app = pilot.app
    table = board.query_one("#board-table")
    await pilot.press(
        *(["down"] * (position - table.cursor_row)) if position >= table.cursor_row else ["up"] * (table.cursor_row - position)
    )
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, TargetChecklist) and app.screen.position == position, "the target's checklist")
    screen = app.screen
    if screen.session.current() is not None:
        await wait_until(pilot, lambda: screen.prompt is not None, "the target's prompt")
    await settle(pilot)
    return screen
