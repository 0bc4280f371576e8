"""The keys that apply now, said in words under the step's status.

A pure function of the session and what the checklist is doing, so the screen shows
the operator's choices (retry, skip, override, roll back, quit) without guessing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steps.status import Needs, SessionStatus, StepStatus
from tui.states import Shown

if TYPE_CHECKING:
    from steps.engine import Prompt, Session

Hint = tuple[str, str]  # (key, what it does); an empty key is a plain statement

FINISHED = {SessionStatus.DONE: "Rotation complete", SessionStatus.ROLLED_BACK: "Rolled back", SessionStatus.ABANDONED: "Abandoned"}


def hints(
    session: Session, step_id: str, status: str, *, busy: str | None, rolling_back: bool, waiting: bool, prompt: Prompt | None
) -> list[Hint]:
    simulated = session.wiring.clock.simulated
    if session.status in FINISHED:
        debrief = [("d", "debrief")] if session.mode == "training" else []
        return [("", f"{FINISHED[session.status]}."), *debrief, ("n", "new session"), ("q", "quit")]
    if rolling_back:
        return [("", "rolling back…")]
    if busy:
        now = [("", f"{busy}…")]
        if simulated and waiting:
            now.append(("f", "fast-forward the wait"))
        return now + [("u", "roll back (after this step)")]
    current = session.current()
    if current is None:  # a rollback stopped half-way
        return [("", f"Session {session.status}."), ("u", "roll back the rest"), ("q", "quit, resume later")]
    if step_id != current.step.id:
        return [("r", f"go to the next step ({current.step.number} {current.step.title})"), ("u", "roll back")]
    again = f"(attempt {current.attempts + 1})"
    if status is StepStatus.REFUSED:
        return [("", "Refused: no skip, no override."), ("r", f"check again {again}"), ("u", "roll back"), ("q", "quit, resume later")]
    if status is StepStatus.FAILED:
        return [("r", f"retry {again}"), ("s", "skip…"), ("u", "roll back"), ("q", "quit, resume later")]
    if status is StepStatus.BLOCKED:
        return [("o", "override…"), ("r", f"retry {again}"), ("s", "skip…"), ("u", "roll back"), ("q", "quit, resume later")]
    if prompt is not None and prompt.needs is Needs.APPROVAL and prompt.step.id == step_id:
        return [("", "Waiting for a second operator."), ("r", "check again"), ("u", "roll back"), ("q", "quit, resume later")]
    if status is Shown.WAITING:
        ff = [("f", "fast-forward to the opening")] if simulated else []
        return ff + [("o", "pass early…"), ("u", "roll back"), ("q", "quit, resume later")]
    return [("r", run_hint(prompt)), ("s", "skip…"), ("u", "roll back")]


RUN_HINTS = {
    Needs.RUN: "run",
    Needs.MANUAL: "do it (then: done outside?)",
    Needs.TYPED: "run (type to confirm)",
    Needs.YES: "run (y confirms)",
}


def run_hint(prompt: Prompt | None) -> str:
    return "run" if prompt is None else RUN_HINTS[prompt.confirm]
