"""`handrail train`: the training scenarios, easiest first; enter opens a briefing.

Unfinished training sessions are offered below the list (enter or ctrl+r resumes
one, straight to its checklist: a briefing is for starting, not for coming back).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from tui.launcher import Catalog, ScenarioChoice, session_label
from tui.messages import LaunchFailed
from tui.widgets.training import TrainingHeader, scenario_row


class ScenarioList(OptionList):
    """The scenarios; enter (shown in the footer) opens the highlighted one's briefing."""

    BINDINGS = [Binding("enter", "select", "Briefing", tooltip="Open the highlighted scenario's briefing (resume, in the sessions list)")]


class SessionList(OptionList):
    BINDINGS = [Binding("enter", "select", "Resume", tooltip="Resume the highlighted session, with its simulated world")]


class TrainingScreen(Screen):
    BINDINGS = [
        Binding("ctrl+r", "resume", "Resume", tooltip="Resume the highlighted unfinished training session"),
        Binding("escape", "all_options", "All options", tooltip="The start screen: every mode (live, dry run) and option"),
        Binding("q", "app.quit", "Quit"),
    ]
    AUTO_FOCUS = "#scenarios"

    def __init__(self, scenario: str | None = None) -> None:
        super().__init__()
        self.initial = scenario  # open its briefing as soon as the catalog is in
        self.catalog: Catalog | None = None
        self.opening = False

    def compose(self) -> ComposeResult:
        yield TrainingHeader(
            Content.from_markup("[b]Training[/b] · practise the SOP's gotchas on a simulated AWS account"),
            "No credentials needed, nothing real changes.",
            Content.from_markup("[dim]enter opens the briefing · escape: all modes and options[/dim]"),
            id="training-header",
        )
        scenarios = ScenarioList(Option(Content.from_markup("[dim]loading the scenarios…[/dim]"), disabled=True), id="scenarios")
        scenarios.border_title = "Scenarios · easiest first"
        yield scenarios
        unfinished = SessionList(id="training-unfinished")
        unfinished.border_title = "Unfinished training sessions · enter resumes"
        unfinished.display = False
        yield unfinished
        yield Static(id="training-status")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "catalog", self.show_catalog)
        self.watch(self.app, "theme", self._recolour, init=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resume":  # in the footer only when there is a session to resume
            return bool(self.catalog and self.catalog.unfinished_training())
        return True

    def _recolour(self, theme: str) -> None:
        if self.catalog is not None:
            self._fill()  # the stars take the theme's colours

    def show_catalog(self, catalog: Catalog | None) -> None:
        if catalog is None:
            return
        first = self.catalog is None
        self.catalog = catalog
        self._fill()
        self.refresh_bindings()
        if catalog.problems:
            self.set_status("; ".join(catalog.problems), error=True)
        if first and self.initial:
            wanted = catalog.scenario(self.initial)
            if wanted is not None:
                self.query_one("#scenarios", OptionList).highlighted = catalog.scenarios.index(wanted)
                self.open_briefing(wanted)

    def _fill(self) -> None:
        catalog = self.catalog
        assert catalog is not None
        colors = self.app.theme_variables
        scenarios = self.query_one("#scenarios", OptionList)
        highlighted = scenarios.highlighted
        scenarios.set_options(Option(scenario_row(s, colors), id=s.id) for s in catalog.scenarios)
        if catalog.scenarios:
            scenarios.highlighted = min(highlighted or 0, len(catalog.scenarios) - 1)
        unfinished = self.query_one("#training-unfinished", OptionList)
        rows = catalog.unfinished_training()
        unfinished.display = bool(rows)
        unfinished.set_options(Option(session_label(row, catalog.where.get(row.id, "")), id=row.id) for row in rows)
        if rows:
            unfinished.highlighted = 0

    # -- choosing -----------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#scenarios")
    def _scenario_selected(self, event: OptionList.OptionSelected) -> None:
        choice = self.catalog.scenario(event.option.id) if self.catalog else None
        if choice is not None:
            self.open_briefing(choice)

    @on(OptionList.OptionSelected, "#training-unfinished")
    def _session_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self._resume(event.option.id)

    def open_briefing(self, choice: ScenarioChoice) -> None:
        from tui.screens.briefing import BriefingScreen

        if not self.opening and self.catalog is not None:
            self.app.push_screen(BriefingScreen(choice, self.catalog))

    def action_open(self) -> None:
        """The palette's "Open the briefing": the highlighted scenario."""
        scenarios = self.query_one("#scenarios", OptionList)
        if scenarios.highlighted is not None:
            scenarios.action_select()

    def action_resume(self) -> None:
        listing = self.query_one("#training-unfinished", OptionList)
        if listing.display and listing.highlighted is not None:
            option = listing.get_option_at_index(listing.highlighted)
            if option.id:
                self._resume(option.id)
                return
        self.set_status("no unfinished training session to resume", error=True)

    def _resume(self, session_id: str) -> None:
        if self.opening:
            return
        self.opening = True
        self.set_status(f"resuming session {session_id} with its simulated world…")
        self.app.resume(session_id, self)

    def action_all_options(self) -> None:
        if not self.opening:
            self.app.pop_screen()

    def on_launch_failed(self, message: LaunchFailed) -> None:
        self.opening = False
        self.set_status(message.error, error=True)

    def set_status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#training-status", Static)
        status.display = bool(text)
        status.update(Content(text))
        status.set_class(error, "-error")
