"""The start screen: pick runbook, mode, scenario, user and reason, or resume a session."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Footer, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from tui.gotchas import stars
from tui.launcher import Catalog, Request, session_label
from tui.messages import LaunchFailed
from tui.widgets.footer import fit_palette_key

MODE_OPTIONS = [
    ("training (simulated AWS)", "training"),
    ("dry-run (reads live AWS)", "dry-run"),
    ("live (changes real AWS)", "live"),
]
MODE_HINTS = {
    "training": "Simulated AWS: no credentials needed, nothing real changes.",
    "dry-run": "Reads your real AWS account; changes nothing.",
    "live": "LIVE: changes real IAM keys.",
}
MODE_NOTES = {
    "training": "Training: a simulated AWS account seeded by the scenario. No credentials needed, nothing real changes.",
    "dry-run": "Dry run: reads your real AWS account with your credentials; every change is shown, none is made.",
    "live": "LIVE: changes real IAM keys in the AWS account your credentials point at.",
}


def reflow(text: str) -> str:
    """YAML block text to paragraphs: the terminal wraps them at its own width."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


class StartScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", priority=True),
        Binding("ctrl+r", "resume", "Resume selected"),
        Binding("ctrl+o", "scenarios", "Scenarios", tooltip="Training: the scenarios, each with its briefing"),
        Binding("ctrl+b", "campaigns", "Campaigns", tooltip="Many sessions on one board: offboard a person, rotate every due key"),
        Binding("q", "app.quit", "Quit"),
        # The arrows move the resume list's highlight wherever the focus is not using them.
        Binding("up", "resume_cursor('up')", "Previous session", show=False),
        Binding("down", "resume_cursor('down')", "Next session", show=False),
    ]
    AUTO_FOCUS = "#start"

    def __init__(
        self,
        runbook: str | None = None,
        user: str | None = None,
        mode: str | None = None,
        scenario: str | None = None,
        inventory: str | None = None,
    ) -> None:
        super().__init__()
        self.initial = Request(runbook or "aws-iam-access-key", mode or "training", user, scenario, None)
        self.inventory = inventory
        self.catalog: Catalog | None = None  # set once shown in the form
        self.opening = False
        self.loaded = False  # the form is mounted (after the first frame)

    def compose(self) -> ComposeResult:
        # The first frame shows only this chrome: styling and laying out the form's widgets
        # costs more than the rest of the start-up, so they come right after it (`_mount_form`).
        self.set_class(self.app.size.height < 30, "-compact", update=False)  # no restyle on the first resize
        yield Static(
            Content.from_markup("[b]handrail[/b] · runbooks as live checklists: confirm each step, roll back any time"), id="start-title"
        )
        with Horizontal(id="start-body"):
            with Vertical(id="start-form") as form:
                form.border_title = "New session"
                yield Static(Content.from_markup("[dim]loading runbooks and scenarios…[/dim]"), id="start-loading")
            with Vertical(id="start-side"):
                briefing = Static(id="briefing")
                briefing.border_title = "Scenario"
                yield briefing
        yield Footer()

    def _form(self) -> tuple[list[Widget], list[Widget]]:
        """The form's widgets, and the side's below the briefing."""
        grid = Grid(
            Label("Runbook"),
            Select([], prompt="loading…", id="runbook", compact=True),
            Label("Mode"),
            Select(MODE_OPTIONS, value=self.initial.mode, allow_blank=False, id="mode", compact=True),
            Label("Scenario", id="scenario-label"),
            Select([], prompt="loading…", id="scenario", compact=True),
            Label("IAM user"),
            Input(value=self.initial.user or "", placeholder="the IAM user to rotate", id="user", compact=True),
            Label("Reason"),
            Select([], prompt="loading…", id="reason", compact=True),
            id="start-grid",
        )
        form = [
            grid,
            Static(id="mode-note"),
            Static(id="validated"),
            Button("Start  ctrl+s", id="start", variant="primary", compact=True),
            Static(id="start-status"),
        ]
        unfinished = OptionList(id="unfinished")
        unfinished.border_title = "Resume a session"
        return form, [unfinished]

    def on_mount(self) -> None:
        self.call_after_refresh(self._mount_form)

    async def _mount_form(self) -> None:
        form, side = self._form()
        await self.query_one("#start-form").mount_all(form)
        await self.query_one("#start-side").mount_all(side)
        await self.query_one("#start-loading").remove()
        self.loaded = True
        self.query_one("#user", Input).cursor_blink = getattr(self.app, "cursor_blink", True)
        if self.focused is None:  # what AUTO_FOCUS does for widgets there at compose time
            self.set_focus(self.query_one("#start", Button))
        self._show_mode(self.initial.mode)
        # The app loads the catalog after the first frame; it comes back through here.
        self.watch(self.app, "catalog", self.show_catalog)

    def on_resize(self) -> None:
        self.set_class(self.size.height < 30, "-compact")
        fit_palette_key(self.query_one(Footer), self.size.width)

    # -- the catalog (runbooks, scenarios, unfinished sessions) -------------------------

    def show_catalog(self, catalog: Catalog | None) -> None:
        if catalog is None or not self.loaded:
            return
        first = self.catalog is None
        self.catalog = catalog
        if not first:  # back from a session: only the unfinished sessions have changed
            self._fill_unfinished()
            self._show_validated()
            return
        runbook = self.query_one("#runbook", Select)
        runbook.set_options([(r.title, r.ref) for r in catalog.runbooks])
        chosen = catalog.runbook(self.initial.runbook)
        if chosen is not None:
            runbook.value = chosen.ref
        scenario = self.query_one("#scenario", Select)
        scenario.set_options([(s.title, s.id) for s in catalog.scenarios])
        wanted = (
            catalog.scenario(self.initial.scenario)
            or catalog.scenario("happy-path")
            or (catalog.scenarios[0] if catalog.scenarios else None)
        )
        if wanted is not None:
            scenario.value = wanted.id
        self._fill_reasons()
        self._fill_unfinished()
        self._show_validated()
        if catalog.inventory_users:
            self.query_one("#user", Input).suggester = SuggestFromList(catalog.inventory_users, case_sensitive=True)
        self._show_mode(self.query_one("#mode", Select).value)
        if catalog.problems:
            self.set_status("; ".join(catalog.problems), error=True)

    def refresh_catalog(self) -> None:
        self.app.refresh_catalog()

    def _show_validated(self) -> None:
        line = self.catalog.validated.get(str(self.query_one("#runbook", Select).value)) if self.catalog else None
        validated = self.query_one("#validated", Static)
        validated.display = bool(line)
        if line:
            validated.update(Content.from_markup("[b]Last validated[/b] $line", line=line))

    def _fill_reasons(self) -> None:
        if self.catalog is None:
            return
        book = self.catalog.runbook(self.query_one("#runbook", Select).value)
        reason = self.query_one("#reason", Select)
        if book is None:
            return
        reason.set_options([(r, r) for r in book.reasons])
        default = book.default_reason
        if self.query_one("#mode", Select).value == "training":
            sc = self.catalog.scenario(self.query_one("#scenario", Select).value)
            default = (sc.reason if sc else None) or default
        if default in book.reasons:
            reason.value = default

    def _fill_unfinished(self) -> None:
        listing = self.query_one("#unfinished", OptionList)
        listing.clear_options()
        rows = self.catalog.unfinished if self.catalog else []
        if not rows:
            listing.add_option(Option(Content.from_markup("[dim]none: every session in the journal is finished[/dim]"), disabled=True))
            return
        for row in rows:
            listing.add_option(Option(session_label(row, self.catalog.where.get(row.id, "")), id=row.id))
        listing.highlighted = 0

    # -- the form -----------------------------------------------------------------------

    @on(Select.Changed, "#mode")
    def _mode_changed(self, event: Select.Changed) -> None:
        self._show_mode(event.value)
        self._fill_reasons()

    @on(Select.Changed, "#scenario")
    def _scenario_changed(self, event: Select.Changed) -> None:
        self._show_mode(self.query_one("#mode", Select).value)
        self._fill_reasons()

    @on(Select.Changed, "#runbook")
    def _runbook_changed(self, event: Select.Changed) -> None:
        self._fill_reasons()
        self._show_validated()

    def _show_mode(self, mode) -> None:
        training = mode == "training"
        self.set_class(mode == "live", "-live")
        scenario = self.query_one("#scenario", Select)
        scenario.display = self.query_one("#scenario-label").display = training
        user = self.query_one("#user", Input)
        user.disabled = training
        sc = self.catalog.scenario(scenario.value) if self.catalog and training else None
        if training and sc is not None:
            user.value = sc.target_user
        elif training:
            user.value = ""
        briefing = self.query_one("#briefing", Static)
        briefing.border_title = "Scenario" if training else {"live": "LIVE", "dry-run": "Dry run"}.get(str(mode), "")
        if sc is not None:
            briefing.update(
                Content.from_markup(
                    "[b]$title[/b] · difficulty [$warning]$difficulty[/]\n$teaches\n\n$briefing\n\n[b]Goal:[/b] $goal",
                    title=sc.title,
                    difficulty=stars(sc.difficulty),
                    teaches=sc.teaches,
                    briefing=reflow(sc.briefing),
                    goal=sc.goal,
                )
            )
        else:
            briefing.update(self._live_notes(str(mode)))
        note = self.query_one("#mode-note", Static)
        note.update(Content(MODE_HINTS.get(str(mode), "")))
        note.set_class(mode == "live", "-live")

    def _live_notes(self, mode: str) -> Content:
        notes = Content(MODE_NOTES.get(mode, ""))
        catalog = self.catalog
        if catalog is None:
            return notes
        if catalog.inventory:
            users = ", ".join(catalog.inventory_users) or "none"
            return notes + Content.from_markup("\n\n[b]Inventory[/b] $path\nusers: $users", path=catalog.inventory, users=users)
        return notes + Content("\n\nNo inventory: the vault and consumer steps will be manual (handrail asks you to do them and confirm).")

    def request(self) -> Request | None:
        runbook = self.query_one("#runbook", Select).value
        if runbook is Select.BLANK:
            self.set_status("no runbook to run (still loading?)", error=True)
            return None
        mode = str(self.query_one("#mode", Select).value)
        scenario = self.query_one("#scenario", Select).value
        reason = self.query_one("#reason", Select).value
        user = self.query_one("#user", Input).value.strip() or None
        if mode != "training" and not user:
            self.set_status("name the IAM user to rotate", error=True)
            self.query_one("#user", Input).focus()
            return None
        return Request(
            runbook=str(runbook),
            mode=mode,
            user=user,
            scenario=str(scenario) if mode == "training" and scenario is not Select.BLANK else None,
            reason=str(reason) if reason is not Select.BLANK else None,
        )

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        if self.opening or not self.loaded:
            return
        request = self.request()
        if request is None:
            return
        if request.mode == "live":
            from tui.screens.modals import AskScreen

            text = (
                f"This session changes real IAM access keys of {request.user} in the AWS account your "
                "credentials point at. Every step still waits for your confirmation."
            )
            self.app.push_screen(
                AskScreen("Start a LIVE session?", text, yes="Start live", no="Back", variant="error"),
                lambda ok: ok and self._open(request),
            )
            return
        self._open(request)

    def _open(self, request: Request) -> None:
        self.opening = True
        what = "building the simulated AWS account…" if request.mode == "training" else "asking AWS who you are…"
        self.set_status(f"opening a {request.mode} session: {what}")
        self.app.launch(request, self)

    @on(OptionList.OptionSelected, "#unfinished")
    def _resume_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self._resume(event.option.id)

    def action_resume_cursor(self, direction: str) -> None:
        listing = self.query_one("#unfinished", OptionList)
        listing.action_cursor_up() if direction == "up" else listing.action_cursor_down()

    def action_resume(self) -> None:
        if not self.loaded:
            return
        listing = self.query_one("#unfinished", OptionList)
        if listing.highlighted is not None:
            option = listing.get_option_at_index(listing.highlighted)
            if option.id:
                self._resume(option.id)
                return
        self.set_status("highlight a session in the list first", error=True)

    def _resume(self, session_id: str) -> None:
        if self.opening:
            return
        self.opening = True
        self.set_status(f"resuming session {session_id}…")
        self.app.resume(session_id, self)

    def action_scenarios(self) -> None:
        from tui.screens.training import TrainingScreen

        if not self.opening:
            self.app.push_screen(TrainingScreen())

    def action_campaigns(self) -> None:
        from tui.screens.board import CampaignsScreen

        if not self.opening:
            self.app.push_screen(CampaignsScreen())

    def on_launch_failed(self, message: LaunchFailed) -> None:
        self.opening = False
        self.set_status(message.error, error=True)

    def set_status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#start-status", Static)
        status.update(Content(text))
        status.set_class(error, "-error")
