"""How a step's state looks: one glyph, one word, one theme colour.

The engine knows pending, running, done, failed, blocked, skipped, undone and
would-run; the app adds `waiting`: the next step, held by a closed observation gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from steps.status import Needs, StepStatus

if TYPE_CHECKING:
    from steps.engine import Session, StepState


@dataclass(frozen=True)
class Look:
    glyph: str
    word: str
    color: str  # a theme variable


class Shown(StrEnum):
    """What the app shows beside the engine's step statuses, for the current step."""

    NEXT = "next"
    WAITING = "waiting"  # held by a closed gate


LOOKS: dict[str, Look] = {
    StepStatus.PENDING: Look("○", "pending", "$text-muted"),
    Shown.NEXT: Look("▸", "next", "$accent"),
    StepStatus.RUNNING: Look("◐", "running", "$warning"),
    Shown.WAITING: Look("◷", "waiting at the gate", "$warning"),
    StepStatus.DONE: Look("✓", "done", "$success"),
    StepStatus.FAILED: Look("✗", "failed", "$error"),
    StepStatus.BLOCKED: Look("■", "blocked", "$error"),
    StepStatus.REFUSED: Look("⊘", "refused", "$error"),
    StepStatus.SKIPPED: Look("↷", "skipped", "$text-muted"),
    StepStatus.UNDONE: Look("↶", "undone", "$secondary"),
    StepStatus.WOULD_RUN: Look("≈", "would run (dry run)", "$primary"),
}

# The current step's states: shown strong, with what it needs before it runs.
AHEAD = (Shown.NEXT, Shown.WAITING, StepStatus.PENDING)


def look(status: str) -> Look:
    return LOOKS.get(status, Look("?", status, "$text"))


def step_status(session: Session, state: StepState, current_id: str | None) -> StepStatus | Shown:
    """The state to show for one step: the engine's, or `next` / `waiting` for the current one."""
    if state.status is not StepStatus.PENDING or state.step.id != current_id:
        return state.status
    return Shown.WAITING if session.obstacle(state) is Needs.GATE else Shown.NEXT


def elapsed_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
