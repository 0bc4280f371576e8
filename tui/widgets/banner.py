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
from tui.widgets.repaint import update_static

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
            yield Static(id="banner-session")

    def on_mount(self) -> None:
        self.refresh_text(0.0)

    def refresh_text(self, elapsed: float) -> None:
        s = self.session
        row = s.row
        world = getattr(s.wiring, "world", None)
        scenario = f"scenario {world.scenario.id} · " if world is not None else ""
        update_static(
            self.query_one("#banner-where", Static),
            Content.from_markup(
                "user [b]$user[/b] · $status · elapsed [b]$elapsed[/b]",
                user=s.target or "-",
                status=s.status,
                elapsed=elapsed_text(elapsed),
            ),
        )
        update_static(
            self.query_one("#banner-who", Static),
            Content.from_markup("account [b]$account[/b] · $actor", account=row.account or "-", actor=short_actor(row.actor, row.account)),
        )
        update_static(
            self.query_one("#banner-session", Static),
            Content.from_markup(
                "session $session · [dim]$scenario$hint[/dim]", session=s.id, scenario=scenario, hint=HINTS.get(s.mode, "")
            ),
        )


def short_actor(actor: str, account: str) -> str:
    """'me as arn:aws:iam::123456789012:user/ops' -> 'me as user/ops' (the account is shown beside it)."""
    if not actor:
        return "-"
    return actor.replace(f"arn:aws:iam::{account}:", "") if account else actor
