"""`?`: every binding of the app, screen by screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.widgets.repaint import WholeFrames

Section = tuple[str, list[tuple[str, str]]]


class HelpScreen(WholeFrames, ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, sections: list[Section], intro: str = "") -> None:
        super().__init__()
        self.sections = sections
        self.intro = intro

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide") as box:
            box.border_title = "Keys · escape closes"
            with VerticalScroll(id="help-body"):
                if self.intro:
                    yield Static(Content(self.intro), classes="prose")
                for title, rows in self.sections:
                    width = max((len(key) for key, _ in rows), default=0) + 2
                    lines = [Content.from_markup("[b $accent]$key[/]$text", key=key.ljust(width), text=text) for key, text in rows]
                    section = Static(Content("\n").join(lines), classes="help-section")
                    section.border_title = title
                    yield section

    def action_close(self) -> None:
        self.dismiss(None)
