"""How a step's state looks: one glyph, one word, one theme colour.

The engine knows pending, running, done, failed, blocked, skipped, undone and
would-run; the app adds `waiting`: the next step, held by a closed observation gate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Look:
    glyph: str
    word: str
    color: str  # a theme variable


LOOKS = {
    "pending": Look("○", "pending", "$text-muted"),
    "next": Look("▸", "next", "$accent"),
    "running": Look("◐", "running", "$warning"),
    "waiting": Look("◷", "waiting at the gate", "$warning"),
    "done": Look("✓", "done", "$success"),
    "failed": Look("✗", "failed", "$error"),
    "blocked": Look("■", "blocked", "$error"),
    "skipped": Look("↷", "skipped", "$text-muted"),
    "undone": Look("↶", "undone", "$secondary"),
    "would-run": Look("≈", "would run (dry run)", "$primary"),
}


def look(status: str) -> Look:
    return LOOKS.get(status, Look("?", status, "$text"))


def step_status(session, state, current_id: str | None) -> str:
    """The state to show for one step: the engine's, or `next` / `waiting` for the current one."""
    if state.status != "pending" or state.step.id != current_id:
        return state.status
    gate = session.gate_state(state.step)
    if gate is not None and not gate.open and not session.wiring.dry_run:
        return "waiting"
    return "next"


def elapsed_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
