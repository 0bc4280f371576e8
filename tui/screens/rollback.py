"""The rollback plan: what will be undone, in what order, with which commands.

After the point of no return it says so plainly and offers nothing to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from tui.screens.modals import Dialog

if TYPE_CHECKING:
    from steps.engine import RollbackPlan, Session, UndoItem


class RollbackScreen(Dialog[bool]):
    BINDINGS = [Binding("y", "yes", "Roll back"), Binding("n,escape", "cancel", "Cancel")]

    def __init__(self, session: Session, plan: RollbackPlan, note: str = "") -> None:
        super().__init__()
        self.session = session
        self.plan = plan
        self.note = note

    @property
    def runnable(self) -> bool:
        return bool(self.plan.possible and self.plan.items)

    def compose(self) -> ComposeResult:
        plan = self.plan
        with Vertical(id="dialog", classes="wide") as box:
            box.border_title = f"Roll back session {self.session.id}"
            with VerticalScroll(classes="dialog-body tall"):
                if not plan.possible:
                    yield Static(
                        Content.from_markup("[b $error]Past the point of no return.[/] Nothing can be rolled back."), id="rollback-verdict"
                    )
                    yield Static(Content(plan.reason), classes="prose")
                else:
                    yield Static(Content(self.session.runbook.rollback.summary), classes="prose")
                    if not plan.items:
                        yield Static(
                            Content.from_markup("[b]Nothing to undo:[/b] no step has changed anything yet."), id="rollback-verdict"
                        )
                    for n, item in enumerate(plan.items, 1):
                        yield Static(self._item(n, item), classes="plan-item")
                    for note in plan.notes:
                        yield Static(Content.from_markup("[b]note:[/b] $note", note=note), classes="prose")
                if self.note:
                    yield Static(Content(self.note), classes="callout")
            with Horizontal(classes="buttons"):
                if self.runnable:
                    yield self.button("y Roll back", "screen.yes", "error")
                yield self.button("esc Cancel" if self.runnable else "esc Close", "screen.cancel")

    @staticmethod
    def _item(n: int, item: UndoItem) -> Content:
        head = Content.from_markup(
            "[b]$n. undo step $number[/b] ($title): $summary",
            n=str(n),
            number=item.step.number,
            title=item.step.title,
            summary=item.summary,
        )
        if item.kind == "manual":
            body = Content.from_markup("[i]by hand, outside handrail (you confirm when done):[/i] $text", text=item.command)
        else:
            body = Content("\n").join(Content("$ " + line) for line in item.command.splitlines())
        return head + Content("\n") + body

    def action_yes(self) -> None:
        if self.runnable:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
