"""The campaign board, driven with keys only (Pilot) at 80x24, checked against the one
simulated world the campaign's sessions share.

The app runs frozen: the campaign's id is fixed and its targets run one at a time, so the
shared clock moves the same way every run.
"""

from __future__ import annotations

import pytest
from tui_helpers import (
    board_idle,
    board_screen,
    frozen_app,
    idle,
    open_board,
    open_target,
    pilot_test,
    run_steps,
    screen_text,
    settle,
    start_board,
    wait_until,
)

from steps.status import TargetState
from tui.screens.board import CampaignDebriefScreen, TargetChecklist
from tui.screens.modals import TypedConfirmScreen

pytestmark = pytest.mark.slow


def states(board) -> dict[str, str]:
    return {r.user: str(r.state) for r in board.board.rows()}


@pilot_test
async def test_an_offboarding_campaign_runs_through_the_board_target_by_target():
    app = frozen_app("happy-path")
    async with app.run_test(size=(80, 24)) as pilot:
        board = await open_board(pilot, 0)  # Offboard dana
        text = screen_text(app)
        assert "nothing has changed yet: ctrl+s starts it" in text and "4 target(s) planned" in text
        assert board.board.campaign_id is None and app.launcher.journal().campaigns() == [], "a plan writes nothing"

        await start_board(pilot, board)
        assert set(states(board).values()) == {"waiting"}, screen_text(app)
        assert "0 of 4 ended · 4 at its gate" in screen_text(app)
        await pilot.press("f")  # training: every gate opens on the simulated clock, then the targets go on
        await pilot.pause()
        await board_idle(pilot, board)
        assert set(states(board).values()) == {"stopped"}, "each stops at its typed confirmation"
        assert "needs you" in screen_text(app) and "irreversible" in screen_text(app)

        # raxx-reports: its irreversible delete, typed in the checklist's own dialog.
        checklist = await open_target(pilot, board, 1)
        assert checklist.session.target == "raxx-reports" and checklist.current_id == "delete-old-key"
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, TypedConfirmScreen), "the typed confirmation")
        assert "Irreversible" in screen_text(app)
        old = checklist.session.facts["old_key_id"]
        await pilot.press(*old, "enter")
        await idle(pilot, checklist)
        await run_steps(pilot, checklist)
        assert checklist.session.status == "done"
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is board and states(board)["raxx-reports"] == "done", "the board")
        await settle(pilot)
        assert "1 of 4 ended · 1 done, 3 needs you" in screen_text(app)
        assert board.board.summary().counts["done"] == 1, "the journal has the target done"

        # The others, each in its own checklist; dana's teardown asks for her name at each irreversible step.
        for position in (0, 2, 3):
            checklist = await open_target(pilot, board, position)
            assert isinstance(checklist, TargetChecklist)
            await run_steps(pilot, checklist)
            assert checklist.session.status == "done", screen_text(app)
            await pilot.press("escape")
            await wait_until(pilot, lambda: board_screen(app) is not None and board.board is not None, "the board")

        # The board's end: the campaign's debrief, every target's verdicts and the end state.
        await wait_until(pilot, lambda: isinstance(app.screen, CampaignDebriefScreen) and app.screen.debrief is not None, "the debrief")
        d = app.screen.debrief
        assert d.ended and d.exit_code == 0 and d.counts == {"done": 4}
        dana = next(t for t in d.targets if t.user == "dana")
        assert {v.verdict for v in dana.debrief.gotchas} == {"handled"} and dana.debrief.end_state == ["dana: deleted"]
        assert "4 target(s): 4 done; ended" in screen_text(app)
        await pilot.press("escape")
        assert app.screen is board
        world = board.board.fleet.export()
        assert "dana" not in world["iam_users"]
        for user in ("raxx-reports", "raxx-deploy", "raxx-vault-operator"):
            assert [k["status"] for k in world["iam_users"][user]["keys"]] == ["Active"], user
        await pilot.press("q")
        await pilot.pause()
    assert "campaign c-20261127-140000-demo ended: 4 of 4 ended · 4 done" in app.exit_note


@pilot_test
async def test_a_refused_target_shows_its_reason_and_the_others_go_on():
    app = frozen_app("happy-path")
    async with app.run_test(size=(80, 24)) as pilot:
        board = await open_board(pilot, 0)
        iam = board.board.fleet.wiring().aws_client("iam")
        for key in iam.list_access_keys(UserName="raxx-deploy")["AccessKeyMetadata"]:
            iam.delete_access_key(UserName="raxx-deploy", AccessKeyId=key["AccessKeyId"])
        iam.delete_user(UserName="raxx-deploy")  # gone between the plan and the start
        await start_board(pilot, board)
        rows = {r.user: r for r in board.board.rows()}
        assert rows["raxx-deploy"].state is TargetState.REFUSED
        assert "raxx-deploy" in rows["raxx-deploy"].detail
        assert {rows[u].state for u in ("dana", "raxx-reports", "raxx-vault-operator")} == {TargetState.WAITING}
        await pilot.press("down", "down")
        await settle(pilot)
        text = screen_text(app)
        assert "⊘ refused" in text and rows["raxx-deploy"].detail[:30] in text
        await pilot.press("enter")  # nothing to open: the refusal, in one line
        await pilot.pause()
        assert app.screen is board
        await pilot.press("q")
        await pilot.pause()
