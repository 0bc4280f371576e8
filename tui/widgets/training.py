"""Training's small pieces: the TRAINING header, a scenario as a list row, and the
debrief's verdicts, end state and timeline as aligned tables.

The tables are Rich renderables (a grid with a hanging indent) coloured from the
app's theme variables, so they follow dark and light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Static

from steps.status import StepStatus
from tui.gotchas import stars

# verdict -> (glyph, theme variable)
VERDICTS = {"handled": ("✓", "success"), "missed": ("✗", "error"), "not reached": ("○", "warning")}


class TrainingHeader(Horizontal):
    """The TRAINING badge, as on the checklist's banner, and three lines beside it."""

    def __init__(self, *lines: Content | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lines = lines

    def compose(self) -> ComposeResult:
        yield Static(" TRAINING ", classes="badge")
        yield Static(self._text(self.lines), classes="header-text")

    def set_lines(self, *lines: Content | str) -> None:
        self.lines = lines
        if self.is_mounted:
            self.query_one(".header-text", Static).update(self._text(lines))

    @staticmethod
    def _text(lines: tuple[Content | str, ...]) -> Content:
        return Content("\n").join(line if isinstance(line, Content) else Content(line) for line in lines)


def _grid(*widths: int | None) -> Table:
    table = Table.grid(padding=(0, 1), expand=True)
    for width in widths:
        if width is None:
            table.add_column(ratio=1, overflow="fold")
        else:
            table.add_column(width=width, no_wrap=True)
    return table


def scenario_row(choice: Any, colors: Mapping[str, str]) -> Table:
    """★★☆ Title  id / what it teaches (indented under the title)."""
    table = _grid(3, None)
    body = Text.assemble((choice.title, "bold"), "  ", (choice.id, colors.get("text-muted", "dim")), "\n", choice.teaches)
    table.add_row(Text(stars(choice.difficulty), style=colors.get("warning", "yellow")), body)
    return table


def verdicts_table(gotchas: list[Any], colors: Mapping[str, str]) -> Table | Text:
    """Each gotcha: its verdict, coloured, then its title and what happened."""
    if not gotchas:
        return Text("This scenario names no gotcha.")
    table = _grid(13, None)
    for n, v in enumerate(gotchas):
        glyph, var = VERDICTS.get(v.verdict, ("?", "text"))
        label = Text(f"{glyph} {v.verdict}", style=f"bold {colors.get(var, '')}".strip())
        body = Text.assemble((v.title, "bold"), "\n", v.detail)
        if n:
            table.add_row("", "")
        table.add_row(label, body)
    return table


def end_state_table(lines: list[str], colors: Mapping[str, str]) -> Table:
    """The world at the end: the target's keys, then each holder of a pair; a broken
    holder stands out."""
    table = _grid(1, None)
    for n, line in enumerate(lines):
        name, sep, state = line.partition(": ")
        broken = "broken" in state or "does not match" in state
        text = Text.assemble((name + sep, "bold" if n == 0 else ""), (state, f"bold {colors.get('error', 'red')}" if broken else ""))
        table.add_row("•", text)
    return table


def _clock(stamp: str | None, with_date: bool) -> str:
    """'2026-11-27T14:00:05Z' -> '11-27 14:00:05' (or '14:00:05')."""
    if not stamp:
        return "-"
    date, _, time = stamp.rstrip("Z").partition("T")
    return f"{date[5:]} {time}" if with_date else time


_STEP_GLYPHS = {
    StepStatus.DONE: ("✓", "success"),
    StepStatus.FAILED: ("✗", "error"),
    StepStatus.BLOCKED: ("■", "error"),
    StepStatus.REFUSED: ("⊘", "error"),
    StepStatus.SKIPPED: ("↷", "warning"),
}


def timeline_table(timeline: list[dict[str, Any]], numbers: Mapping[str, str], colors: Mapping[str, str]) -> Table:
    """simulated | real | step | what happened: one row per journal event."""
    muted = colors.get("text-muted", "dim")
    table = _grid(14, 8, 3, None)
    table.add_row(*(Text(h, style=f"bold {muted}") for h in ("simulated", "real", "", "what happened")))
    for event in timeline:
        kind, status, summary = event["kind"], event.get("status") or "", event.get("summary") or ""
        what = Text()
        if kind == "step":
            glyph, var = _STEP_GLYPHS.get(status, ("·", "text"))
            what.append(f"{glyph} {status}", style=f"bold {colors.get(var, '')}".strip())
        else:
            what.append(" ".join(part for part in (kind, status) if part), style=muted if kind == "started" else "bold")
        if summary:
            what.append(": " + summary)
        step = numbers.get(event.get("step") or "", event.get("step") or "")
        table.add_row(_clock(event.get("simulated"), True), _clock(event.get("real"), False), step, what)
    return table
