"""The checklist's right side: one step, in full.

Why it exists, the command it stands for, its undo, what it will do (the preview),
the gate or manual instructions, the wait in progress, the live output, and the
evidence it validated, then the keys that apply now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import ProgressBar, Static

from steps.clock import human_duration
from steps.status import Needs
from tui.states import AHEAD, Shown, look
from tui.widgets.secret import SecretReveal

if TYPE_CHECKING:
    from steps.engine import GateState, Prompt, StepState


@dataclass
class Wait:
    """A wait in progress: the engine's `progress` event (what, done, total)."""

    what: str
    done: float
    total: float

    @property
    def left(self) -> float:
        return max(0.0, self.total - self.done)


@dataclass
class StepView:
    state: StepState
    status: str  # as shown: the engine's, or next / waiting
    command: str
    undo: str
    prompt: Prompt | None = None  # for the current step
    gate: GateState | None = None
    output: list[str] = field(default_factory=list)
    wait: Wait | None = None
    hints: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""
    secret_here: bool = False  # the new secret belongs on this step (made here, or copied by hand here)


def _lines(text: str, prefix: str = "") -> Content:
    return Content("\n").join(Content(prefix + line) for line in text.splitlines())


class StepDetail(VerticalScroll):
    def __init__(self, session, reveal_seconds: float = 10.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.reveal_seconds = reveal_seconds

    def compose(self) -> ComposeResult:
        yield Static(id="d-title")
        yield Static(id="d-status")
        yield Static(id="d-hints")
        yield Static(id="d-why", classes="prose")
        yield Static(id="d-command", classes="block")
        yield Static(id="d-undo", classes="prose")
        yield Static(id="d-gate", classes="callout")
        yield Static(id="d-preview", classes="block")
        yield Static(id="d-manual", classes="callout")
        with Vertical(id="d-wait"):
            yield Static(id="d-wait-what")
            yield ProgressBar(id="d-wait-bar", show_eta=False)
        yield SecretReveal(self.session, self.reveal_seconds, id="d-secret")
        yield Static(id="d-output", classes="block")
        yield Static(id="d-evidence", classes="block")
        yield Static(id="d-note", classes="callout")

    BEFORE = ("d-title", "d-status", "d-hints", "d-note", "d-why", "d-gate", "d-manual", "d-command", "d-preview", "d-undo")
    AFTER = ("d-title", "d-status", "d-hints", "d-note", "d-wait", "d-secret", "d-output", "d-evidence", "d-why", "d-command", "d-undo")

    def _arrange(self, before: bool) -> None:
        """Before a step runs: why it exists and what it will do come first.
        Once it runs: the wait, the output and the evidence come first."""
        order = self.BEFORE if before else self.AFTER
        if getattr(self, "_order", None) == order:
            return
        self._order = order
        previous = None
        for widget_id in order:
            widget = self.query_one(f"#{widget_id}")
            if previous is None:
                self.move_child(widget, before=0)
            else:
                self.move_child(widget, after=previous)
            previous = widget

    def _set(self, widget_id: str, content: Content | str | None, title: str | None = None) -> None:
        widget = self.query_one(f"#{widget_id}", Static)
        widget.display = bool(content)
        if content:
            widget.update(content)
        if title is not None:
            widget.border_title = title

    def on_resize(self) -> None:
        view = getattr(self, "_view", None)
        if view is not None:  # the width decides whether the title needs its own line
            self.show(view)

    def show(self, view: StepView) -> None:
        self._view = view
        state, step = view.state, view.state.step
        style = look(view.status)
        self._arrange(view.status in AHEAD)
        self.border_title = f"Step {step.number} · {step.title}"
        # A narrow terminal cuts the frame's title: then the whole title heads the detail.
        cut = self.size.width and len(self.border_title) + 6 > self.size.width
        self._set("d-title", Content.from_markup("[b]$title[/b]", title=step.title) if cut else None)
        status = Content.from_markup(f"[{style.color} b]$glyph $word[/]", glyph=style.glyph, word=style.word)
        if state.attempts > 1 and view.status not in AHEAD:  # a retry says which one it is
            status = status + Content(f" (attempt {state.attempts})")
        if state.summary and view.status not in AHEAD:
            summary = state.summary
            if summary.lower().startswith(style.word + ":"):
                summary = summary[len(style.word) + 1 :].strip()
            status = status + Content(": ") + Content(summary)
        self._set("d-status", status)
        self._set("d-why", Content(step.why))
        self._set("d-command", _lines(view.command, "$ "), "Command · c copies it")
        self._set("d-undo", Content.from_markup("[b]Undo:[/b] $undo", undo=view.undo))
        self._show_gate(view)
        self._show_preview(view)
        self._show_manual(view)
        self._show_wait(view.wait)
        secret = self.query_one(SecretReveal)
        secret.pinned = view.secret_here
        secret.refresh_secret()
        self._set("d-output", _lines("\n".join(view.output)) if view.output else None, "Output")
        evidence = state.evidence if view.status not in AHEAD else []
        self._set("d-evidence", _lines("\n".join(evidence)) if evidence else None, "Evidence")
        self._set("d-note", Content(view.note) if view.note else None)
        hints = Content("  ").join(
            Content.from_markup("[b $accent]$key[/] $text", key=key, text=text) if key else Content.from_markup("[b]$text[/b]", text=text)
            for key, text in view.hints
        )
        self._set("d-hints", hints if view.hints else None)

    def _show_gate(self, view: StepView) -> None:
        gate = view.gate
        approval = view.prompt.approval if view.prompt is not None else None
        if approval is not None and (gate is None or gate.open) and view.status in (Shown.NEXT, Shown.WAITING):
            if approval.open:
                self._set("d-gate", Content(approval.describe()), "Second operator")
            else:
                text = f"Waiting for a second operator ({approval.why}).\nAnother identity than {approval.operator} runs:\n  {approval.command}"
                self._set("d-gate", Content(text), "Waiting for a second operator")
            return
        if gate is None or view.status not in (Shown.NEXT, Shown.WAITING):
            self._set("d-gate", None)
            return
        text = Content(gate.describe())
        if gate.why:
            text = text + Content("\n" + gate.why)
        self._set("d-gate", text, "Observation gate")

    def _show_preview(self, view: StepView) -> None:
        prompt = view.prompt
        if prompt is None or view.status not in (Shown.NEXT, Shown.WAITING) or prompt.manual is not None:
            self._set("d-preview", None)
            return
        lines = list(prompt.preview)
        if prompt.would_run:
            lines.insert(0, "dry run: this step changes things, so it will only be shown, not run")
        if prompt.confirm is Needs.TYPED:
            lines.append(prompt.prompt or f"to run it, type {prompt.expect}")
        self._set("d-preview", _lines("\n".join(lines)) if lines else None, "What it will do")

    def _show_manual(self, view: StepView) -> None:
        prompt = view.prompt
        if prompt is None or prompt.manual is None or view.status not in (Shown.NEXT, Shown.WAITING):
            self._set("d-manual", None)
            return
        self._set("d-manual", _lines(prompt.manual or ""), "Manual step: you do this outside handrail")

    def _show_wait(self, wait: Wait | None) -> None:
        box = self.query_one("#d-wait")
        box.display = wait is not None
        if wait is None:
            return
        box.border_title = "Waiting"
        self.query_one("#d-wait-what", Static).update(
            Content.from_markup(
                "$what · [b]$left left[/b] of $total", what=wait.what, left=human_duration(wait.left), total=human_duration(wait.total)
            )
        )
        self.query_one("#d-wait-bar", ProgressBar).update(total=max(wait.total, 0.001), progress=min(wait.done, wait.total))
