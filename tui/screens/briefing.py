"""A scenario's briefing: what happened, what to achieve, which gotchas are in play
(their names only), then Start. The session opens exactly as the start screen opens a
training session (the launcher, in a worker); the checklist then takes this screen's
place, so leaving the session comes back to the scenario list.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from steps.debrief import gotcha_name
from tui.gotchas import stars
from tui.launcher import Catalog, ScenarioChoice
from tui.messages import LaunchFailed
from tui.screens.start import reflow
from tui.widgets.training import TrainingHeader


class BriefingScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", priority=True, tooltip="Start this scenario's training session"),
        Binding("enter", "start", "Start", show=False, tooltip="Start (as ctrl+s)"),
        Binding("escape", "back", "Back", tooltip="Back to the list of scenarios"),
        Binding("q", "app.quit", "Quit"),
    ]
    AUTO_FOCUS = "#briefing-body"

    def __init__(self, scenario: ScenarioChoice, catalog: Catalog, session: Any = None) -> None:
        super().__init__()
        self.scenario = scenario
        self.catalog = catalog
        self.session = session  # read again from its checklist (b): nothing to start
        self.opening = False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return self.session is None
        return True

    def compose(self) -> ComposeResult:
        sc = self.scenario
        yield TrainingHeader(
            Content.from_markup("[b]$title[/b]", title=sc.title),
            Content.from_markup(
                "difficulty [b $warning]$stars[/] $n of 3 · scenario $id", stars=stars(sc.difficulty), n=str(sc.difficulty), id=sc.id
            ),
            Content.from_markup(
                "[dim]Briefing: read it, then ctrl+s (or enter) starts the session.[/dim]"
                if self.session is None
                else "[dim]The briefing of session $id · escape: back to the checklist[/dim]",
                id=self.session.id if self.session is not None else "",
            ),
            id="briefing-header",
        )
        with VerticalScroll(id="briefing-body"):
            happened = Static(Content(reflow(sc.briefing)), id="briefing-happened", classes="briefing-part")
            happened.border_title = "What happened"
            yield happened
            goal = Static(Content(sc.goal), id="briefing-goal", classes="briefing-part")
            goal.border_title = "Your goal"
            yield goal
            names = [gotcha_name(g) for g in sc.gotchas]
            gotchas = Static(
                Content("\n").join(Content.from_markup("[$warning]◆[/] $name", name=name) for name in names)
                if names
                else Content("none named"),
                id="briefing-gotchas",
                classes="briefing-part",
            )
            gotchas.border_title = "Gotchas in play"
            yield gotchas
            yield Static(self._facts(), id="briefing-facts")
        with Horizontal(classes="buttons", id="briefing-buttons"):
            yield Static(id="briefing-status")
            if self.session is None:
                yield Button("Start  ctrl+s", id="briefing-start", variant="primary", compact=True, action="screen.start")
            yield Button("Back  esc", id="briefing-back", compact=True, action="screen.back")
        yield Footer()

    def _facts(self) -> Content:
        sc, catalog = self.scenario, self.catalog
        request = catalog.request(sc)
        book = catalog.runbook(request.runbook)
        lines = [
            Content.from_markup(
                "[b]Runbook[/b] $runbook · IAM user [b]$user[/b] · reason $reason",
                runbook=book.title if book else request.runbook,
                user=sc.target_user,
                reason=request.reason or "-",
            )
        ]
        validated = catalog.validated.get(request.runbook)
        if validated:
            lines.append(Content.from_markup("[b]Last validated[/b] $line", line=validated))
        lines.append(Content.from_markup("[dim]Simulated AWS, vault and consumers: no credentials needed, nothing real changes.[/dim]"))
        return Content("\n").join(lines)

    def action_start(self) -> None:
        if self.opening or self.session is not None:
            return
        self.opening = True
        self.set_status("building the simulated AWS account…")
        self.app.launch(self.catalog.request(self.scenario), self)

    def action_back(self) -> None:
        if self.opening:
            self.notify("The session is opening: it is too late to go back.", severity="warning")
            return
        self.app.pop_screen()

    def on_launch_failed(self, message: LaunchFailed) -> None:
        self.opening = False
        self.set_status(message.error, error=True)

    def set_status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#briefing-status", Static)
        status.update(Content(text))
        status.set_class(error, "-error")
