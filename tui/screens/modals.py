"""The small questions the checklist asks: confirm, type, give a reason, done outside?

Each is a modal that dismisses with the answer (None when cancelled); the checklist
decides what to do with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from tui.widgets.secret import SecretReveal

if TYPE_CHECKING:
    from steps.engine import Prompt, Session, UndoItem

T = TypeVar("T")


def _block(text: str, prefix: str = "") -> Content:
    return Content("\n").join(Content(prefix + line) for line in text.splitlines())


def _head(prompt: Prompt, attempt: int | None = None) -> ComposeResult:
    """What every confirmation says first: irreversible (loud), the step, then the
    warnings (a safety step skipped just before, why the step runs again)."""
    step = prompt.step
    if prompt.irreversible:
        yield Static(
            Content.from_markup("[b]Irreversible: no undo.[/b] No rollback brings back what step $number deletes.", number=step.number),
            id="irreversible",
        )
    title = Content.from_markup("[b]$number · $title[/b]", number=step.number, title=step.title)
    if attempt:  # a retry: which one it is
        title += Content.from_markup(" · [b $warning]attempt $n[/]", n=str(attempt))
    yield Static(title, classes="dialog-title")
    for warning in prompt.warnings:
        yield Static(Content.from_markup("[b]Warning:[/b] $text", text=warning), classes="warning")


class Dialog(ModalScreen[T]):
    """A framed question. Escape always cancels (dismisses with None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)

    def button(self, label: str, action: str, variant: str = "default") -> Button:
        """A button that runs `action` (e.g. "screen.yes") when clicked."""
        return Button(label, variant=variant, compact=True, action=action)

    def quiet_cursor(self, widget: Input) -> Input:
        widget.cursor_blink = getattr(self.app, "cursor_blink", True)
        return widget


class ConfirmRunScreen(Dialog[bool]):
    """A `yes` step: the command and what it will do, then y to run it.

    The title, the warnings, the undo and the buttons stay on screen at 80x24; only
    the command and the preview scroll.
    """

    BINDINGS = [Binding("y", "yes", "Run it"), Binding("n,escape", "cancel", "Cancel")]

    def __init__(self, prompt: Prompt, attempt: int | None = None) -> None:
        super().__init__()
        self.prompt = prompt
        self.attempt = attempt

    def compose(self) -> ComposeResult:
        step, prompt = self.prompt.step, self.prompt
        with Vertical(id="dialog") as box:
            box.border_title = f"Run step {step.number} again?" if self.attempt else f"Run step {step.number}?"
            with Vertical(classes="dialog-head"):
                yield from _head(prompt, self.attempt)
            with VerticalScroll(classes="dialog-body"):  # what it will do, then how
                if prompt.preview:
                    yield Static(_block("\n".join(prompt.preview)), classes="block", id="confirm-preview")
                yield Static(_block(prompt.command, "$ "), classes="block", id="confirm-command")
            with Vertical(classes="dialog-foot"):
                if prompt.undo_command:
                    yield Static(Content.from_markup("[b]Undo:[/b] $undo", undo=prompt.undo_command), id="confirm-undo")
                elif step.irreversible:
                    yield Static(Content.from_markup("[b $error]Irreversible:[/] no undo once it has run"), id="confirm-undo")
                with Horizontal(classes="buttons"):
                    yield self.button("y Run it", "screen.yes", "primary")
                    yield self.button("n Cancel", "screen.cancel")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class TypedConfirmScreen(Dialog[str]):
    """A `typed` step: type the value shown (or one of the key ids offered) to run it.

    The field has the keyboard from the start (typing or pasting the id needs no tab).
    An irreversible step says so first, before anything else in the dialog.
    """

    AUTO_FOCUS = "#typed-answer"

    def __init__(self, prompt: Prompt, attempt: int | None = None) -> None:
        super().__init__()
        self.prompt = prompt
        self.attempt = attempt

    @property
    def accepted(self) -> list[str]:
        if self.prompt.choices:
            return [c.value for c in self.prompt.choices]
        return [self.prompt.expect] if self.prompt.expect else []

    def compose(self) -> ComposeResult:
        step, prompt = self.prompt.step, self.prompt
        with Vertical(id="dialog", classes="-irreversible" if prompt.irreversible else "") as box:
            box.border_title = f"Step {step.number}: type to confirm"
            with Vertical(classes="dialog-head"):
                yield from _head(prompt, self.attempt)
            with VerticalScroll(classes="dialog-body"):
                preview = [line for line in prompt.preview if not any(c.value in line for c in prompt.choices)]
                if preview:
                    yield Static(_block("\n".join(preview)), classes="prose")
                yield Static(_block(prompt.command, "$ "), classes="block")
            with Vertical(classes="dialog-foot"):
                if prompt.choices:
                    lines = [
                        Content.from_markup("[b $accent]$value[/]  $label", value=c.value, label=c.label.replace(c.value, "", 1).strip())
                        for c in prompt.choices
                    ]
                    yield Static(Content("\n").join(lines), id="typed-choices")
                ask = prompt.prompt or f"type {prompt.expect} to {'delete it' if prompt.irreversible else 'run this step'}"
                yield Static(Content.from_markup("[b]$ask:[/b]", ask=ask[0].upper() + ask[1:]), id="typed-ask")
                # Not the value itself as placeholder: it would look typed already.
                yield self.quiet_cursor(Input(placeholder="type it here (paste works)", id="typed-answer", compact=True))
                yield Static(id="typed-error", classes="error-line")
                with Horizontal(classes="buttons"):
                    yield self.button(
                        "enter Delete" if prompt.irreversible else "enter Run it",
                        "screen.submit",
                        "error" if prompt.irreversible else "primary",
                    )
                    yield self.button("esc Cancel", "screen.cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        answer = self.query_one("#typed-answer", Input).value.strip()
        if answer in self.accepted:
            self.dismiss(answer)
            return
        error = self.query_one("#typed-error", Static)
        error.display = True
        if not answer:
            expected = "type " + (" or ".join(self.accepted) if self.accepted else "the value") + " to run it"
        else:
            expected = f"{answer!r} is not " + (
                f"one of {', '.join(self.accepted)}" if len(self.accepted) > 1 else repr(self.accepted[0]) if self.accepted else "expected"
            )
        error.update(Content(expected + ": nothing was run"))
        error.add_class("-error")


class ReasonScreen(Dialog[str]):
    """Ask for a reason (skip, override): at least three characters; it is audited."""

    AUTO_FOCUS = "#reason"

    def __init__(self, title: str, explanation: str, placeholder: str = "the reason, for the audit log") -> None:
        super().__init__()
        self.title_text = title
        self.explanation = explanation
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as box:
            box.border_title = self.title_text
            yield Static(Content(self.explanation), classes="prose")
            yield self.quiet_cursor(Input(placeholder=self.placeholder, id="reason", compact=True))
            yield Static(id="reason-error", classes="error-line")
            with Horizontal(classes="buttons"):
                yield self.button("enter OK", "screen.submit", "primary")
                yield self.button("esc Cancel", "screen.cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if len(reason) >= 3:
            self.dismiss(reason)
            return
        error = self.query_one("#reason-error", Static)
        error.display = True
        error.update("a reason of at least three characters, please: it goes to the audit log")
        error.add_class("-error")


class ManualStepScreen(Dialog[str]):
    """A manual step: the instructions, then 'done outside handrail?' (or skip with a reason)."""

    BINDINGS = [
        Binding("d", "done", "Done outside"),
        Binding("s", "skip", "Skip…"),
        Binding("v", "reveal", "Reveal secret"),
        Binding("escape", "cancel", "Not yet"),
    ]

    def __init__(self, prompt: Prompt, session: Session, reveal_seconds: float = 10.0, attempt: int | None = None) -> None:
        super().__init__()
        self.prompt = prompt
        self.attempt = attempt
        self.session = session
        self.reveal_seconds = reveal_seconds

    def compose(self) -> ComposeResult:
        step = self.prompt.step
        with Vertical(id="dialog") as box:
            box.border_title = f"Step {step.number} is manual: you do it outside handrail"
            with Vertical(classes="dialog-head"):
                yield from _head(self.prompt, self.attempt)
            with VerticalScroll(classes="dialog-body"):
                yield Static(_block(self.prompt.manual or ""), classes="prose", id="manual-instructions")
                yield Static(_block(self.prompt.command, "$ "), classes="block")
            with Vertical(classes="dialog-foot"):
                yield SecretReveal(self.session, self.reveal_seconds, id="manual-secret")
                yield Static(Content.from_markup("[b]Done outside handrail?[/b]"), id="manual-ask")
                with Horizontal(classes="buttons"):
                    yield self.button("d Done", "screen.done", "primary")
                    yield self.button("s Skip…", "screen.skip")
                    yield self.button("esc Not yet", "screen.cancel")

    def action_done(self) -> None:
        self.dismiss("done")

    def action_skip(self) -> None:
        self.dismiss("skip")

    def action_reveal(self) -> None:
        if not self.query_one(SecretReveal).ask(self.prompt.step.id):
            self.notify("There is no new secret to reveal (none in memory, or its key was rolled back).", severity="warning")


class ManualUndoScreen(Dialog[bool]):
    """During a rollback: a manual undo the operator must do, then confirm."""

    BINDINGS = [Binding("d", "done", "Done"), Binding("n,escape", "cancel", "Not done")]

    def __init__(self, item: UndoItem) -> None:
        super().__init__()
        self.item = item

    def compose(self) -> ComposeResult:
        step = self.item.step
        with Vertical(id="dialog") as box:
            box.border_title = f"Undo step {step.number} by hand"
            yield Static(Content.from_markup("[b]$title[/b]", title=step.title))
            yield Static(_block(self.item.command), classes="prose")
            yield Static(Content("Not done stops the rollback here; it can be run again later."), classes="prose")
            with Horizontal(classes="buttons"):
                yield self.button("d Done", "screen.done", "primary")
                yield self.button("n Not done", "screen.cancel")

    def action_done(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class AskScreen(Dialog[bool]):
    """A yes/no question with consequences spelled out (quit mid-step, start live)."""

    BINDINGS = [Binding("y", "yes", "Yes"), Binding("n,escape", "cancel", "No")]

    def __init__(self, title: str, text: str, yes: str = "Yes", no: str = "No", variant: str = "warning") -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.yes_label = yes
        self.no_label = no
        self.variant = variant

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as box:
            box.border_title = self.title_text
            yield Static(Content(self.text), classes="prose")
            with Horizontal(classes="buttons"):
                yield self.button(f"y {self.yes_label}", "screen.yes", self.variant)
                yield self.button(f"n {self.no_label}", "screen.cancel")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
