"""Each key on the checklist is drawn in one frame, and that frame shows all of its effect.

A second frame costs at least 1/60 s more before the operator sees the key's effect
(benchmarks/keypress.py measures it). The terminal's picture is rebuilt here from the
frames the app sends, as a terminal would, and compared with a full render of the screen:
a frame that skipped a repaint (tui/widgets/repaint.py's WholeFrames) would show.
"""

from __future__ import annotations

import pytest
from rich.cells import cell_len
from rich.segment import ControlType
from tui_helpers import idle, open_session, pilot_test, settle, take_step

from tui.app import HandrailApp
from tui.frozen import Frozen
from tui.screens.help import HelpScreen

Picture = list[list[tuple[str, str]]]


class Terminal:
    """The cells of an 80x24 terminal, written by the app's frames."""

    def __init__(self, width: int = 80, height: int = 24) -> None:
        self.width, self.height = width, height
        self.cells: Picture = self.blank()
        self.frames = 0

    def blank(self) -> Picture:
        return [[(" ", "")] * self.width for _ in range(self.height)]

    def draw(self, app: HandrailApp, renderable, cells: Picture | None = None) -> Picture:
        cells = self.cells if cells is None else cells
        x = y = 0
        for segment in renderable.__rich_console__(app.console, app.console.options):
            if segment.control:
                for code in segment.control:
                    if code[0] == ControlType.CURSOR_MOVE_TO:
                        x, y = code[1], code[2]
                continue
            if segment.text == "\n":
                x, y = 0, y + 1
                continue
            for char in segment.text:
                if 0 <= x < self.width and 0 <= y < self.height:
                    cells[y][x] = (char, str(segment.style))
                x += max(1, cell_len(char))
        return cells

    def full(self, app: HandrailApp) -> Picture:
        """The screen rendered whole, now."""
        update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
        return self.draw(app, update, self.blank())


class Watched(HandrailApp):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.terminal = Terminal()

    def _display(self, screen, renderable) -> None:
        if renderable is not None and not self._batch_count:
            self.terminal.frames += 1
            self.terminal.draw(self, renderable)
        super()._display(screen, renderable)


@pytest.mark.slow
@pilot_test
async def test_each_checklist_key_is_drawn_in_one_frame_that_shows_all_of_it():
    app = Watched(mode="training", scenario="happy-path", frozen=Frozen())  # as tui_helpers.frozen_app
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_session(pilot)
        await take_step(pilot, screen)  # a done step, the next one and pending ones: the detail changes shape
        await idle(pilot, screen)
        await pilot.press("question_mark", "escape")  # the help is built the first time (then kept)
        steps = screen.query_one("#steps")
        drawn = []
        for key in ("up", "down", "down", "down", "up", "question_mark", "escape", "down", "question_mark", "escape", "up", "up"):
            await settle(pilot)
            before, highlighted = app.terminal.frames, steps.highlighted
            await pilot.press(key)
            await settle(pilot)
            if key in ("up", "down"):
                assert steps.highlighted != highlighted, key
                assert screen.shown_step == screen.session.runbook.steps[steps.highlighted].id
            elif key == "question_mark":
                assert isinstance(app.screen, HelpScreen)
            else:
                assert app.screen is screen
            drawn.append((key, app.terminal.frames - before))
            assert app.terminal.cells == app.terminal.full(app), f"after {key}, the terminal does not show the whole screen"
        assert all(frames == 1 for _, frames in drawn), drawn
