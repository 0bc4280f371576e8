"""The new secret, masked; an explicit, audited reveal that hides itself again."""

from __future__ import annotations

from textual.content import Content
from textual.timer import Timer
from textual.widgets import Static

SECRET = "new_secret"
MASK = "●" * 12


class SecretReveal(Static):
    """Shows that the new secret exists, never its value, until the operator asks.

    `reveal(step_id)` writes `secret.revealed` to the audit log, shows the value for
    `seconds`, then masks it again.
    """

    def __init__(self, session, seconds: float = 10.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.seconds = seconds
        self.revealed = False
        self.pinned = True  # shown while masked too (else only while revealed)
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        self.refresh_secret()

    @property
    def available(self) -> bool:
        return SECRET in self.session.secrets

    def refresh_secret(self) -> None:
        self.display = self.available and (self.pinned or self.revealed)
        if not self.display:
            return
        if self.revealed:
            self.update(
                Content.from_markup(
                    "New secret access key: [b reverse]$value[/]  [dim](hides in $seconds s)[/dim]",
                    value=self.session.secrets[SECRET].reveal(),
                    seconds=f"{self.seconds:g}",
                )
            )
        else:
            self.update(
                Content.from_markup(
                    "New secret access key: $mask  [dim](v reveals it for $seconds s; audited)[/dim]",
                    mask=MASK,
                    seconds=f"{self.seconds:g}",
                )
            )

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
        self.add_class("-revealed")
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(self.seconds, self.hide)
        self.refresh_secret()
        return True

    def hide(self) -> None:
        self.revealed = False
        self.remove_class("-revealed")
        self._timer = None
        self.refresh_secret()
