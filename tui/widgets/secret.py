"""The new secret, masked; an explicit, audited reveal that hides itself again."""

from __future__ import annotations

import math

from textual.content import Content
from textual.timer import Timer

from steps.status import StepStatus
from tui.widgets.repaint import Part, update_static

SECRET = "new_secret"
MASK = "●" * 12


def secret_in_use(session) -> bool:
    """The new secret is in memory and its key still counts: not once a rollback undid
    the step that made it (the key is deactivated; nothing should copy its secret)."""
    if SECRET not in session.secrets:
        return False
    from steps.actions import registry

    actions = registry()
    for state in session.step_states():
        spec = actions.get(state.step.run or "")
        if state.status is StepStatus.UNDONE and spec is not None and SECRET in spec.produces_secrets:
            return False
    return True


class SecretReveal(Part):
    """Shows that the new secret exists, never its value, until the operator asks.

    `ask(step_id)` asks first; yes writes `secret.revealed` to the audit log and shows
    the value for `seconds`, counting down, then masks it again.
    """

    def __init__(self, session, seconds: float = 10.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.seconds = seconds
        self.revealed = False
        self.left = 0.0  # seconds until it hides again, while revealed
        self.pinned = True  # shown while masked too (else only while revealed)
        self._timer: Timer | None = None
        self._countdown: Timer | None = None

    def on_mount(self) -> None:
        self.refresh_secret()

    @property
    def available(self) -> bool:
        return secret_in_use(self.session)

    def refresh_secret(self) -> None:
        if self.revealed and not self.available:
            self.hide()  # rolled back meanwhile
            return
        self.display = self.available and (self.pinned or self.revealed)
        if not self.display:
            return
        if self.revealed:
            update_static(
                self,
                Content.from_markup(
                    "New secret access key: [b reverse]$value[/]  [b]hides in $left s[/b]",
                    value=self.session.secrets[SECRET].reveal(),
                    left=str(max(1, math.ceil(self.left))),
                ),
            )
        else:
            update_static(
                self,
                Content.from_markup(
                    "New secret access key: $mask  [dim](v reveals it for $seconds s; audited)[/dim]",
                    mask=MASK,
                    seconds=f"{self.seconds:g}",
                ),
            )

    def ask(self, step_id: str | None) -> bool:
        """Ask before showing it (someone may see the screen); False when there is nothing to show."""
        if not self.available:
            return False
        from tui.screens.modals import AskScreen

        text = (
            f"The new secret access key shows on screen for {self.seconds:g} s, then hides again. "
            "Anyone who can see your screen sees it. The reveal is recorded in the audit log."
        )
        self.app.push_screen(
            AskScreen("Show the new secret?", text, yes="Show it", no="Keep it hidden"), lambda ok: ok and self.reveal(step_id)
        )
        return True

    def reveal(self, step_id: str | None) -> bool:
        if not self.available:
            return False
        session = self.session
        session.audit.append(
            "secret.revealed",
            session=session.id,
            actor=session.row.actor,
            context={"step": step_id, "secret": SECRET},
        )
        self.revealed = True
        self.left = self.seconds
        self.add_class("-revealed")
        for timer in (self._timer, self._countdown):
            if timer is not None:
                timer.stop()
        self._timer = self.set_timer(self.seconds, self.hide)
        self._countdown = self.set_interval(1.0, self._tick)
        self.refresh_secret()
        return True

    def _tick(self) -> None:
        self.left = max(0.0, self.left - 1.0)
        if self.revealed:
            self.refresh_secret()

    def hide(self) -> None:
        self.revealed = False
        self.left = 0.0
        self.remove_class("-revealed")
        for timer in (self._timer, self._countdown):
            if timer is not None:
                timer.stop()
        self._timer = self._countdown = None
        self.refresh_secret()
