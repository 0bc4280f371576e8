"""The banner: where the operator is, always in view.

Mode (LIVE loud, TRAINING unmistakable), account and operator identity, target user,
session id, the session's status, and the elapsed time, ticking.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Static

from tui.states import elapsed_text

BADGES = {"training": " TRAINING ", "dry-run": " DRY RUN ", "live": " LIVE "}
HINTS = {
    "training": "simulated AWS, no real keys",
    "dry-run": "reads live, changes nothing",
    "live": "REAL AWS: every step changes production",
}


class SessionBanner(Horizontal):
    def __init__(self, session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.add_class(f"-{session.mode}")

    def compose(self) -> ComposeResult:
        yield Static(BADGES.get(self.session.mode, self.session.mode.upper()), id="mode-badge")
        with Vertical(id="banner-text"):
            yield Static(id="banner-where")
            yield Static(id="banner-who")

    def on_mount(self) -> None:
        self.refresh_text(0.0)

    def refresh_text(self, elapsed: float) -> None:
        s = self.session
        row = s.row
        scenario = ""
        world = getattr(s.wiring, "world", None)
        if world is not None:
            scenario = f" · scenario {world.scenario.id}"
        self.query_one("#banner-where", Static).update(
            Content.from_markup(
                "[b]$user[/b] · $status · elapsed $elapsed · [dim]$hint$scenario[/dim]",
                user=f"user {s.target or '-'}",
                status=s.status,
                elapsed=elapsed_text(elapsed),
                hint=HINTS.get(s.mode, ""),
                scenario=scenario,
            )
        )
        self.query_one("#banner-who", Static).update(
            Content.from_markup(
                "account [b]$account[/b] · $actor · session $session",
                account=row.account or "-",
                actor=row.actor or "-",
                session=s.id,
            )
        )
