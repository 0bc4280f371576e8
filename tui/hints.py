"""The keys that apply now, said in words under the step's status.

A pure function of the session and what the checklist is doing, so the screen shows
the operator's choices (retry, skip, override, roll back, quit) without guessing.
"""

from __future__ import annotations

from typing import Any

Hint = tuple[str, str]  # (key, what it does); an empty key is a plain statement

FINISHED = {"done": "Rotation complete", "rolled-back": "Rolled back", "abandoned": "Abandoned"}


def hints(session: Any, step_id: str, status: str, *, busy: str | None, rolling_back: bool, waiting: bool, prompt: Any) -> list[Hint]:
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
    if status == "failed":
        return [("r", "retry"), ("s", "skip…"), ("u", "roll back"), ("q", "quit, resume later")]
    if status == "blocked":
        return [("o", "override…"), ("r", "retry"), ("s", "skip…"), ("u", "roll back"), ("q", "quit, resume later")]
    if status == "waiting":
        ff = [("f", "fast-forward to the opening")] if simulated else []
        return ff + [("o", "pass early…"), ("u", "roll back"), ("q", "quit, resume later")]
    return [("r", run_hint(session, prompt)), ("s", "skip…"), ("u", "roll back")]


def run_hint(session: Any, prompt: Any) -> str:
    if prompt is None or session.wiring.dry_run:
        return "run"
    if prompt.kind == "manual":
        return "do it (then: done outside?)"
    if prompt.nothing_to_do or prompt.confirm == "auto":
        return "run"
    return "run (type to confirm)" if prompt.confirm == "typed" else "run (y confirms)"
