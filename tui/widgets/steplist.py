"""The checklist's left side: the steps with their state, and the prerequisites."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from steps.status import StepStatus
from tui.states import Shown, look, step_status
from tui.widgets.repaint import update_static


def step_prompt(number: str, title: str, status: str) -> Content:
    style = look(status)
    strong = status in (Shown.NEXT, Shown.WAITING, StepStatus.RUNNING)
    markup = f"[{style.color}]$glyph[/] " + ("[b]$number $title[/b]" if strong else "$number $title")
    return Content.from_markup(markup, glyph=style.glyph, number=number.ljust(3), title=title)


class StepList(OptionList):
    """One option per step, its id the step id. Highlight a step to read it on the right."""

    def __init__(self, session, **kwargs) -> None:
        self.session = session
        self._shown = self._statuses()  # each step's status as its option shows it
        options = [Option(step_prompt(s.step.number, s.step.title, self._shown[s.step.id]), id=s.step.id) for s in session.step_states()]
        super().__init__(*options, **kwargs)

    def _statuses(self) -> dict[str, str]:
        current = self.session.current()
        current_id = current.step.id if current else None
        return {s.step.id: step_status(self.session, s, current_id) for s in self.session.step_states()}

    def refresh_states(self) -> None:
        """Re-render only the steps whose status changed: replacing a prompt drops the
        list's whole render cache, and this runs on every engine event."""
        statuses = self._statuses()
        for state in self.session.step_states():
            status = statuses[state.step.id]
            if self._shown.get(state.step.id) != status:
                self.replace_option_prompt(state.step.id, step_prompt(state.step.number, state.step.title, status))
        self._shown = statuses

    @property
    def highlighted_step(self) -> str | None:
        if self.highlighted is None:
            return None
        return self.get_option_at_index(self.highlighted).id

    def select_step(self, step_id: str) -> None:
        self.highlighted = self.get_option_index(step_id)


class Prerequisites(Static):
    """The runbook's prerequisites, ticked when the step that checks one is done."""

    def __init__(self, session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.border_title = "Prerequisites"

    def on_mount(self) -> None:
        self.refresh_ticks()

    def refresh_ticks(self) -> None:
        lines = [
            Content.from_markup("[$success]☑[/] $text" if ok else "[$text-muted]☐[/] $text", text=text)
            for text, ok in self.session.prerequisites()
        ]
        update_static(self, Content("\n").join(lines) if lines else "none")
