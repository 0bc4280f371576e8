"""Snapshots of the app (pytest-textual-snapshot), most at 80x24 and 120x40 from one run.

The app runs frozen (`tui.frozen.Frozen`): simulated time stands still, the session id
and the operator are fixed, and the simulated account's random ids are seeded, so the
same screen comes out on every run. Regenerate with `pytest --snapshot-update` and look
at the report before committing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from tui_helpers import (
    SIZES,
    checklist,
    debrief_on_quit,
    fast_forward_waits,
    frozen_app,
    idle,
    open_session,
    pick_scenario,
    run_steps,
    scenario_list,
    settle,
    start_from_briefing,
    take_step,
    training_app,
    wait_until,
)

pytestmark = pytest.mark.slow


def compare(snap_compare, app, size, before: Callable[..., Awaitable[None]] | None = None, *, workers_done: bool = True) -> bool:
    """One snapshot at one size (pytest-textual-snapshot's own run)."""
    return snap_compare(app, terminal_size=size, run_before=lambda pilot: prepare(pilot, before, workers_done))


async def prepare(pilot, before: Callable[..., Awaitable[None]] | None, workers_done: bool) -> None:
    """Run `before`, then drop notifications (their timeout is wall-clock) and let the
    screen settle before the screenshot."""
    if before is not None:
        await before(pilot)
    pilot.app.clear_notifications()
    await still(pilot, workers_done)


async def still(pilot, workers_done: bool) -> None:
    if workers_done:
        await settle(pilot)
    else:
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()


@pytest.fixture
def snap_sizes(snapshot):
    """Snapshots at 80x24 and at 120x40 from one run of the app: the screen is reached
    at 80x24, shot, the terminal resized, shot again (what a resize shows is what a
    start at that size shows; the run to get there is most of a snapshot test's cost).
    Stored as `test_name[80x24].svg` and `test_name[120x40].svg`."""
    from pytest_textual_snapshot import SVGImageExtension

    stored = snapshot.use_extension(SVGImageExtension)

    def compare(app, before: Callable[..., Awaitable[None]] | None = None, *, workers_done: bool = True) -> list[str]:
        shots: dict[str, str] = {}

        async def auto_pilot(pilot) -> None:
            await prepare(pilot, before, workers_done)
            for name, size in SIZES.items():
                if tuple(pilot.app.size) != size:
                    await pilot.resize_terminal(*size)
                    await pilot.pause()
                    await still(pilot, workers_done)
                await pilot.pause()
                await pilot.wait_for_scheduled_animations()
                await pilot.pause()
                shots[name] = pilot.app.export_screenshot(title=pilot.app.title, simplify=True)
            pilot.app.exit()

        first = next(iter(SIZES.values()))
        app.run(headless=True, auto_pilot=auto_pilot, size=first)
        assert set(shots) == set(SIZES), f"the app stopped before every screenshot: {sorted(shots)}"
        # Every size is compared (and, with --snapshot-update, written) before any fails.
        return [name for name in SIZES if not (stored(name=name) == shots[name])]  # noqa: SIM201  # syrupy asserts in __eq__

    return compare


async def steps(pilot, count: int):
    screen = await open_session(pilot)
    for _ in range(count):
        await take_step(pilot, screen)
        await fast_forward_waits(pilot, screen)
        await idle(pilot, screen)
    # Toasts are drawn by the screen that was current when they came: clear them
    # before a modal opens on top, or they stay in the background of the snapshot.
    pilot.app.clear_notifications()
    await settle(pilot)
    return screen


def test_start_screen(snap_sizes):
    """The start screen: runbook, mode (training), scenario, user, reason; no session to resume."""

    async def loaded(pilot):
        await wait_until(pilot, lambda: pilot.app.start_screen.catalog is not None, "the catalog")

    assert not snap_sizes(frozen_app("happy-path"), loaded)


def test_checklist_before_a_step(snap_sizes):
    """A training session just opened: step 1 is next, nothing has run."""
    assert not snap_sizes(frozen_app("happy-path"), open_session)


def test_checklist_while_a_step_waits(snap_sizes):
    """Step 3 polls for the new key (slow propagation: 20 s); 8 simulated seconds in,
    the progress bar shows what is polled and the time left."""

    async def waiting(pilot):
        screen = await steps(pilot, 4)
        await take_step(pilot, screen)  # validate-new-key: auto, so r runs it
        await wait_until(pilot, lambda: screen.waits.get("validate-new-key") is not None, "the first poll")
        screen.session.wiring.clock.advance(8)
        await wait_until(pilot, lambda: screen.waits["validate-new-key"].done >= 8, "the poll at 8 s")

    assert not snap_sizes(frozen_app("slow-propagation"), waiting, workers_done=False)


def test_checklist_after_a_step(snap_sizes):
    """Step 1 done: its evidence (operator, target, keys) and the way to the next step."""
    assert not snap_sizes(frozen_app("happy-path"), lambda pilot: steps(pilot, 1))


def test_typed_confirmation(snap_sizes):
    """Two Active keys: step 1b asks to type the id of the key to retire; irreversible
    says so first, and the field has the keyboard."""

    async def typed(pilot):
        screen = await steps(pilot, 2)
        await pilot.press("r")  # show step 1b
        await pilot.press("r")  # run it: the typed confirmation opens
        from tui.screens.modals import TypedConfirmScreen

        await wait_until(pilot, lambda: isinstance(pilot.app.screen, TypedConfirmScreen), "the typed confirmation")
        assert screen.session.states["free-key-slot"].status == "pending"

    assert not snap_sizes(frozen_app("two-active-keys"), typed)


async def until_step(pilot, step_id: str):
    """Open a session and take every step before `step_id` (its gate fast-forwarded)."""
    screen = await open_session(pilot)
    await run_steps(pilot, screen, until=lambda: screen.current_id == step_id)
    gate = screen.session.gate_state(screen.session.states[step_id].step)
    if gate is not None and not gate.open:
        await pilot.press("f")
        await idle(pilot, screen)
    pilot.app.clear_notifications()
    await settle(pilot)
    return screen


async def confirmation(pilot, screen, kind):
    """r (twice if the next step is not shown): the step's confirmation, settled."""
    if screen.shown_step != screen.current_id:
        await pilot.press("r")
    await pilot.press("r")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, kind), kind.__name__)
    await settle(pilot)


def test_irreversible_delete(snap_sizes):
    """Step 7b: 'Irreversible: no undo' first, then the step, the commands, the key id to
    type and the field (focused), the buttons: all on screen at 80x24."""
    from tui.screens.modals import TypedConfirmScreen

    async def typed(pilot):
        screen = await until_step(pilot, "delete-old-key")
        await confirmation(pilot, screen, TypedConfirmScreen)
        assert pilot.app.focused is pilot.app.screen.query_one("#typed-answer")

    assert not snap_sizes(frozen_app("happy-path"), typed)


def test_propagate_confirmation_names_the_consumers(snap_compare):
    """Step 5 at 80x24: the consumers it writes to, the command, the whole undo, the buttons."""
    from tui.screens.modals import ConfirmRunScreen

    async def confirm(pilot):
        screen = await until_step(pilot, "propagate")
        await confirmation(pilot, screen, ConfirmRunScreen)

    assert compare(snap_compare, frozen_app("happy-path"), SIZES["80x24"], confirm)


def test_confirmation_after_a_skipped_safety_step(snap_compare):
    """Step 6 skipped: step 7's confirmation says so above everything but the step's name."""
    from tui.screens.modals import ConfirmRunScreen, ReasonScreen

    async def warned(pilot):
        screen = await until_step(pilot, "verify-downstream")
        await pilot.press("r", "s")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ReasonScreen), "the reason")
        await pilot.press(*"checked by hand", "enter")
        await idle(pilot, screen)
        pilot.app.clear_notifications()
        await confirmation(pilot, screen, ConfirmRunScreen)
        assert pilot.app.screen.prompt.warnings

    assert compare(snap_compare, frozen_app("happy-path"), SIZES["80x24"], warned)


def test_failed_step(snap_sizes):
    """Self-rotation: step 1 refuses; the reason, the evidence and the choices are shown."""

    async def failed(pilot):
        screen = await steps(pilot, 1)
        assert screen.session.states["pre-checks"].status == "refused"

    assert not snap_sizes(frozen_app("self-rotation"), failed)


def test_rollback_plan(snap_sizes):
    """After step 5: the plan undoes 5, 4, 2 and 1a, in that order, with their commands."""

    async def plan(pilot):
        screen = await steps(pilot, 7)
        await pilot.press("home")  # a step whose evidence holds no loopback port
        await pilot.press("u")
        from tui.screens.rollback import RollbackScreen

        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RollbackScreen), "the rollback plan")
        assert [i.step.id for i in pilot.app.screen.plan.items] == ["propagate", "store-in-vault", "create-key", "claim-user"]
        assert checklist(pilot.app) is screen

    assert not snap_sizes(frozen_app("happy-path"), plan)


def test_help_screen(snap_sizes):
    """`?` on the checklist: every key, screen by screen."""

    async def helped(pilot):
        await open_session(pilot)
        await pilot.press("question_mark")

    assert not snap_sizes(frozen_app("happy-path"), helped)


# -- training: the scenario list, a briefing, a debrief ----------------------------------------


def test_scenario_list(snap_sizes):
    """`handrail train`: the scenarios, easiest first, each with its stars, what it teaches and its id."""
    assert not snap_sizes(training_app(), scenario_list)


def test_briefing(snap_sizes):
    """`handrail train forgotten-consumer`: what happened, the goal, the gotchas by name, last validated."""

    async def briefed(pilot):
        await pick_scenario(pilot, "forgotten-consumer")

    assert not snap_sizes(training_app(), briefed)


def test_debrief(snap_sizes):
    """Consumer-fails played the wrong way (the failed propagation skipped), then quit:
    the debrief offered and shown, one gotcha missed and one not reached."""

    async def debriefed(pilot):
        await pick_scenario(pilot, "consumer-fails")
        screen = await start_from_briefing(pilot)
        session = screen.session
        await run_steps(pilot, screen, until=lambda: session.states["propagate"].status == "failed")
        await pilot.press("s")
        await pilot.press(*"Heroku can catch up later", "enter")
        await wait_until(pilot, lambda: screen.idle and session.states["propagate"].status == "skipped", "the skip")
        await settle(pilot)
        pilot.app.clear_notifications()
        await debrief_on_quit(pilot)

    assert not snap_sizes(training_app(), debriefed)


# -- campaigns: the board ------------------------------------------------------------------------


def test_campaign_board(snap_sizes):
    """Offboarding dana on the board: started, the gates fast-forwarded, raxx-reports taken
    to the end in its checklist, escape back: one done, three waiting for their typed
    confirmation, the progress bar at one in four, dana's next step and why in the detail."""
    from tui_helpers import board_idle, open_board, open_target, start_board

    async def board(pilot):
        screen = await open_board(pilot, 0)
        await start_board(pilot, screen)
        await pilot.press("f")
        await pilot.pause()
        await board_idle(pilot, screen)
        checklist = await open_target(pilot, screen, 1)
        await run_steps(pilot, checklist)
        await pilot.press("escape")
        await wait_until(pilot, lambda: pilot.app.screen is screen and screen.board.rows()[1].state == "done", "the board")
        await pilot.press("up")  # dana: her next step, irreversible, in the detail
        pilot.app.clear_notifications()

    assert not snap_sizes(frozen_app("happy-path"), board)
