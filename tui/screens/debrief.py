"""The debrief of a training session, and the two questions around it.

`DebriefScreen` shows `steps.debrief.build(...)` for the current session: each gotcha
with its verdict (handled, missed, not reached) and what happened, the rollback line,
the end state of the world, and the timeline in simulated and real time. It is built
in a worker (the session is checkpointed first, so the world is the one on screen);
`m` writes it as Markdown, `c` copies it.

`QuitTrainingScreen` offers the debrief when a trainee quits; `ExportScreen` asks
where the Markdown goes (default `debrief-<session>.md` in the current directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from steps.status import SessionStatus
from tui.messages import DebriefReady, Exported
from tui.screens.modals import Dialog
from tui.widgets.training import TrainingHeader, end_state_table, timeline_table, verdicts_table

if TYPE_CHECKING:
    from steps.debrief import Debrief


def default_export_path(session_id: str) -> Path:
    return Path.cwd() / f"debrief-{session_id}.md"


class DebriefScreen(Screen):
    BINDINGS = [
        Binding("m", "export", "Markdown", tooltip="Write the debrief to a Markdown file (default debrief-<session>.md here)"),
        Binding("c", "copy", "Copy", tooltip="Copy the debrief, as Markdown, to the clipboard"),
        Binding("escape", "back", "Checklist", tooltip="Back to the checklist (the session as it stands)"),
        Binding("n", "new_session", "New session", tooltip="Leave this session for the screen it was started from"),
        Binding("q", "app.quit", "Quit", tooltip="Quit; an unfinished session can be resumed"),
    ]
    AUTO_FOCUS = "#debrief-body"

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self.debrief: Debrief | None = None
        self.markdown: str | None = None
        self.written: str | None = None  # the last file written

    def compose(self) -> ComposeResult:
        world = getattr(self.session.wiring, "world", None)
        title = world.scenario.title if world is not None else self.session.runbook.title
        where = f"scenario {world.scenario.id}" if world is not None else f"{self.session.mode} mode"
        yield TrainingHeader(*self._header(title, self.session.id, self.session.status, where), id="debrief-header")
        with VerticalScroll(id="debrief-body"):
            yield Static(Content.from_markup("[dim]building the debrief from the journal…[/dim]"), id="debrief-teaches")
            for part, title in (
                ("gotchas", "Gotchas · verdict and what happened"),
                ("rollback", "Rollback"),
                ("end", "End state of the world"),
                ("timeline", "Timeline · simulated and real time"),
            ):
                box = Static(id=f"debrief-{part}", classes="debrief-part")
                box.border_title = title
                box.display = False
                yield box
        yield Static(id="debrief-status")
        yield Footer()

    @staticmethod
    def _header(title: str, session_id: str, status: str, where: str) -> tuple[Content, ...]:
        """`where`: "scenario ID" in training, else the mode (no training-only words)."""
        return (
            Content.from_markup("[b]Debrief[/b] · $title", title=title),
            Content.from_markup("session $id · [b]$status[/b]", id=session_id, status=status),
            Content.from_markup("[dim]$where · m: Markdown file · c: copy[/dim]", where=where),
        )

    def on_mount(self) -> None:
        self.build()
        self.watch(self.app, "theme", self._recolour, init=False)

    def _recolour(self, theme: str) -> None:
        if self.debrief is not None:
            self.show(self.debrief)  # the verdicts take the theme's colours

    @work(thread=True, exclusive=True, group="debrief", exit_on_error=False)
    def build(self) -> None:
        from steps import debrief as debriefs
        from steps.secrets import redact

        try:
            self.session.checkpoint()  # the world as it is now, not as of the last step
            debrief = debriefs.build(self.session.journal, self.session.audit, self.session.id)
            self.markdown = redact(debriefs.to_markdown(debrief))
        except Exception as exc:
            self.post_message(DebriefReady(None, redact(f"{type(exc).__name__}: {exc}")))
            return
        self.post_message(DebriefReady(debrief))

    def on_debrief_ready(self, message: DebriefReady) -> None:
        if message.debrief is None:
            self.query_one("#debrief-teaches", Static).update(Content(f"No debrief: {message.error}"))
            self.query_one("#debrief-teaches").add_class("-error")
            return
        self.show(message.debrief)

    def show(self, d: Debrief) -> None:
        self.debrief = d
        colors = self.app.theme_variables
        self.query_one(TrainingHeader).set_lines(*self._header(d.title, d.session, d.status, d.where))
        teaches = self.query_one("#debrief-teaches", Static)
        teaches.update(Content.from_markup("[b]What it teaches[/b] $teaches", teaches=d.teaches) if d.teaches else Content(""))
        teaches.display = bool(d.teaches)
        numbers = {s.id: s.number for s in self.session.runbook.steps}
        self._part("gotchas", verdicts_table(d.gotchas, colors))
        self._part("rollback", Content(d.rollback))
        self._part("end", end_state_table(d.end_state, colors))
        self._part("timeline", timeline_table(d.timeline, numbers, colors))

    def _part(self, part: str, renderable: Any) -> None:
        box = self.query_one(f"#debrief-{part}", Static)
        box.update(renderable)
        box.display = True

    # -- actions --------------------------------------------------------------------------

    def _ready(self) -> bool:
        if self.markdown is None:
            self.notify("The debrief is still being built.", severity="warning")
            return False
        return True

    def action_export(self) -> None:
        if self._ready():
            self.app.push_screen(ExportScreen(str(default_export_path(self.session.id))), self._export_to)

    def _export_to(self, path: str | None) -> None:
        if path:
            self.write(path)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def write(self, path: str) -> None:
        target = Path(path).expanduser()
        try:
            target.write_text(self.markdown or "")
        except OSError as exc:
            self.post_message(Exported(str(target), f"{type(exc).__name__}: {exc.strerror or exc}"))
            return
        self.post_message(Exported(str(target.resolve())))

    def on_exported(self, message: Exported) -> None:
        status = self.query_one("#debrief-status", Static)
        status.display = True
        if message.error:
            status.update(Content(f"Could not write {message.path}: {message.error}"))
            status.add_class("-error")
            self.notify(message.error, title="Not written", severity="error")
            return
        self.written = message.path
        status.remove_class("-error")
        status.update(Content.from_markup("Debrief written to [b]$path[/b]", path=message.path))
        self.notify(message.path, title="Debrief written")

    def action_copy(self) -> None:
        if self._ready():
            self.app.copy_to_clipboard(self.markdown or "")
            self.notify("The debrief, as Markdown, is on the clipboard.", title="Copied")

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_new_session(self) -> None:
        from tui.screens.checklist import ChecklistScreen

        checklist = next((s for s in self.app.screen_stack if isinstance(s, ChecklistScreen)), None)
        if checklist is not None:
            checklist.action_new_session()
        else:
            self.app.pop_screen()


class QuitTrainingScreen(Dialog[str]):
    """Quitting a training session: the debrief first, or quit now, or stay."""

    BINDINGS = [
        Binding("d", "debrief", "Debrief first"),
        Binding("q", "quit_now", "Quit now"),
        Binding("escape", "cancel", "Stay"),
    ]

    def __init__(self, session_id: str, status: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.status = status

    def compose(self) -> ComposeResult:
        if SessionStatus(self.status).finished:
            where = f"Session {self.session_id} is {self.status}."
        else:
            where = (
                f"Session {self.session_id} stays resumable, with its simulated world: `handrail train` and the "
                f"start screen offer it, or `handrail resume {self.session_id}`."
            )
        with Vertical(id="dialog") as box:
            box.border_title = "Quit this training session?"
            yield Static(
                Content(
                    where
                    + "\n\nBefore you go, the debrief: each gotcha of the scenario and what you did about it, the world as you leave it, the timeline."
                ),
                classes="prose",
            )
            with Horizontal(classes="buttons"):
                yield self.button("d Debrief first", "screen.debrief", "primary")
                yield self.button("q Quit now", "screen.quit_now")
                yield self.button("esc Stay", "screen.cancel")

    def action_debrief(self) -> None:
        self.dismiss("debrief")

    def action_quit_now(self) -> None:
        self.dismiss("quit")


class ExportScreen(Dialog[str]):
    """Where the debrief's Markdown goes: a path, prefilled with the default."""

    BINDINGS = [Binding("enter", "submit", "Write the file"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: str) -> None:
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as box:
            box.border_title = "Export the debrief as Markdown"
            yield Static(Content("Write it to (an existing file is replaced):"), classes="prose")
            yield self.quiet_cursor(Input(value=self.default, id="export-path", compact=True))
            with Horizontal(classes="buttons"):
                yield self.button("enter Write", "screen.submit", "primary")
                yield self.button("esc Cancel", "screen.cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        if path:
            self.dismiss(path)
