"""The headless driver: walks a session to its end, or to the first thing it may not answer.

`--yes` answers yes-confirmations only. Typed confirmations, gates and evidence blocks
each need their own explicit answer (a flag, or a human at a terminal), and a manual
step is recorded as skipped, never as done, when nobody is there to do it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from steps.clock import human_duration
from steps.engine import NOT_READY, EngineError, Event, Prompt, Session, UndoItem
from steps.secrets import redact
from steps.status import Needs, SessionStatus, StepStatus

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 3


@dataclass
class DriveOptions:
    yes: bool = False
    fast_forward: bool = False
    override_gate: str | None = None
    override_block: str | None = None
    retire_key: str | None = None
    confirm_keys: list[str] = field(default_factory=list)
    confirm_irreversible: bool = False  # answer an irreversible step's typed key id (audited)


class Asker:
    """A human at a terminal. The default one is nobody."""

    available = False

    def confirm(self, text: str) -> bool:
        return False

    def typed(self, text: str) -> str:
        return ""

    def manual(self, text: str) -> str:
        """'done', 'skip' or 'stop'."""
        return "stop"


_MARKS = {
    StepStatus.DONE: "ok",
    StepStatus.FAILED: "FAILED",
    StepStatus.BLOCKED: "BLOCKED",
    StepStatus.REFUSED: "REFUSED",
    StepStatus.SKIPPED: "skipped",
    StepStatus.WOULD_RUN: "would run",
}


class Printer:
    def __init__(self, echo: Callable[[str], None], progress: bool = False) -> None:
        # Every line is scrubbed here too: evidence can quote a vendor's error verbatim.
        self.echo = lambda line: echo(redact(line))
        self.progress = progress
        self._last_progress: dict[str, int] = {}
        self._shown: set[str] = set()

    def event(self, event: Event) -> None:
        if event.kind == "output":
            self.echo(f"      {event.data}")
        elif event.kind == "progress" and self.progress:
            what, done, total = event.data
            bucket = int(done // 10)
            if self._last_progress.get(event.step_id or "") != bucket:
                self._last_progress[event.step_id or ""] = bucket
                self.echo(f"      ... {what}: {human_duration(done)} of {human_duration(total)}")

    def header(self, session: Session) -> None:
        self.echo(
            f"handrail · {session.runbook.id} · {session.mode.upper()} · user {session.target or '-'} · "
            f"account {session.row.account} · session {session.id}"
        )

    def step(self, index: int, total: int, prompt: Prompt) -> None:
        self.echo(f"[{index}/{total}] step {prompt.step.number}: {prompt.step.title}")
        for line in prompt.command.splitlines():
            self.echo(f"    $ {line}")
        for line in prompt.preview:
            self.echo(f"    {line}")
        # A dry run's evidence restates the commands and preview just printed: said once.
        self._shown = {*prompt.preview, *(f"would run: {line}" for line in prompt.command.splitlines())}

    def outcome(self, session: Session, step_id: str) -> None:
        state = session.states[step_id]
        mark = _MARKS.get(state.status, state.status)
        summary = state.summary.removeprefix(f"{mark}: ")
        self.echo(f"    -> {mark}: {summary}")
        for line in state.evidence:
            if line not in self._shown:
                self.echo(f"       {line}")
        self._shown = set()

    def stop(self, text: str) -> None:
        self.echo(text)


class _Stop(Exception):
    """The drive ends here: (exit code, one-line reason)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _Skipped(Exception):
    """The step was recorded as skipped: go on to the next one."""


def drive(session: Session, opts: DriveOptions, printer: Printer, asker: Asker | None = None) -> tuple[int, str]:
    """Run steps until done, or stop. Returns (exit code, one-line reason)."""
    asker = asker or Asker()
    session.listen(printer.event)
    total = len(session.runbook.steps)
    while True:
        state = session.current()
        if state is None:
            if session.status is SessionStatus.DONE:
                not_ready = session.values().get(NOT_READY)
                if not_ready:  # a dry run is a rehearsal: a place it would write fails it
                    return EXIT_FAILED, f"session {session.id}: dry run done, but NOT READY: {not_ready}"
                return EXIT_DONE, f"session {session.id}: done"
            return EXIT_FAILED, f"session {session.id}: {session.status}"
        prompt = session.prompt(state.step.id)
        printer.step(session.runbook.index(state.step.id) + 1, total, prompt)
        try:
            if prompt.needs is Needs.GATE:
                _pass_gate(session, prompt, opts, printer)
            _wait_for_approval(session, prompt)
            _drive_step(session, prompt, opts, printer, asker)
        except _Skipped:
            continue
        except _Stop as stop:
            return stop.code, stop.message


def _pass_gate(session: Session, prompt: Prompt, opts: DriveOptions, printer: Printer) -> None:
    step, gate = prompt.step, prompt.gate
    assert gate is not None
    if opts.fast_forward and prompt.fast_forward:
        skipped = session.fast_forward(step.id)
        printer.echo(f"    {gate.describe()}")
        printer.echo(f"    fast-forwarded the simulated clock by {human_duration(skipped)} to the gate's opening (training)")
    elif opts.override_gate:
        session.override_gate(step.id, opts.override_gate)
        printer.echo(f"    gate passed early (audited): {opts.override_gate}")
    else:
        hint = "--fast-forward (training) or " if session.wiring.clock.simulated else ""
        raise _Stop(
            EXIT_STOPPED,
            f"stopped at step {step.number} ({step.id}): {gate.describe()}. "
            f"Resume then with `handrail resume {session.id}`, or pass it early with {hint}--override-gate REASON",
        )


def _wait_for_approval(session: Session, prompt: Prompt) -> None:
    """A step that waits for a second operator stops the run: nobody here can give it."""
    if prompt.approval is None:
        return
    approval = session.approval_state(prompt.step)  # the gate may have just opened: asked afresh
    if approval is not None and not approval.open:
        step = prompt.step
        raise _Stop(
            EXIT_STOPPED,
            f"stopped before step {step.number} ({step.id}): {approval.describe()}; then `handrail resume {session.id}`",
        )


def _drive_step(session: Session, prompt: Prompt, opts: DriveOptions, printer: Printer, asker: Asker) -> None:
    step = prompt.step
    if prompt.needs is Needs.REFUSED:
        state = session.states[step.id]
        printer.echo(f"    refused before: {state.summary}; running the guard again")
    answer, how = _confirmation(session, prompt, opts, printer, asker)
    try:
        outcome = session.run(step.id, answer=answer, how=how)
    except EngineError as exc:  # GateClosed included
        raise _Stop(EXIT_STOPPED, f"stopped at step {step.number}: {exc}") from None
    if outcome.status == StepStatus.REFUSED:
        printer.outcome(session, step.id)
        raise _Stop(EXIT_STOPPED, f"step {step.number} ({step.id}) refused: {outcome.summary.rstrip('.')}. {session.remedy(step.id)}")
    if outcome.status == StepStatus.BLOCKED:
        printer.outcome(session, step.id)
        reason = opts.override_block
        if reason is None and asker.available:
            reason = asker.typed("blocked: type a reason to override (empty to stop)") or None
        if not reason:
            raise _Stop(
                EXIT_FAILED,
                f"step {step.number} ({step.id}) blocked: {outcome.summary.rstrip('.')}. Override with --override-block REASON, or roll back",
            )
        outcome = session.run(step.id, answer=answer, override=reason)
    printer.outcome(session, step.id)
    if StepStatus(outcome.status).stopped:
        raise _Stop(
            EXIT_FAILED,
            f"step {step.number} ({step.id}) failed: {outcome.summary.rstrip('.')}. The session is resumable: `handrail resume {session.id}` or `handrail rollback {session.id}`",
        )


def _confirmation(session: Session, prompt: Prompt, opts: DriveOptions, printer: Printer, asker: Asker) -> tuple[str | None, str]:
    """The operator's answer to what the step's run takes: (the typed value, how it was given)."""
    step = prompt.step
    for warning in prompt.warnings:
        printer.echo(f"    WARNING: {warning}")
    if prompt.confirm is Needs.MANUAL:
        _manual(session, prompt, opts, printer, asker)
    elif prompt.confirm is Needs.YES:
        if not opts.yes and not (asker.available and asker.confirm(f"run step {step.number} ({step.title})?")):
            raise _Stop(
                EXIT_STOPPED, f"stopped before step {step.number} ({step.id}): it needs a yes (pass --yes, or run it at a terminal)"
            )
    elif prompt.confirm is Needs.TYPED:
        answer, how = _typed_answer(prompt, opts, asker)
        if answer is None:
            flag = "--retire-key KEY_ID" if prompt.choices else "--confirm-key KEY_ID"
            what = prompt.prompt or f"type {prompt.expect}"
            if prompt.irreversible:
                flag = "--retire-key KEY_ID" if prompt.choices else f"--confirm-key {prompt.expect} or --confirm-irreversible (audited)"
                typed = (step.typed or "key id").replace("_", " ")
                raise _Stop(
                    EXIT_STOPPED,
                    f"stopped before step {step.number} ({step.id}): irreversible, no undo: it needs the {typed} typed ({what}); pass {flag}",
                )
            raise _Stop(EXIT_STOPPED, f"stopped before step {step.number} ({step.id}): it needs a typed confirmation ({what}); pass {flag}")
        return answer, how
    return None, ""


def _manual(session: Session, prompt: Prompt, opts: DriveOptions, printer: Printer, asker: Asker) -> None:
    step = prompt.step
    printer.echo("    manual step:")
    for line in (prompt.manual or "").splitlines():
        printer.echo(f"      {line}")
    if asker.available:
        choice = asker.manual(f"step {step.number}: done outside handrail?")
        if choice == "skip":
            session.skip(step.id, "skipped by the operator at the terminal")
            printer.outcome(session, step.id)
            raise _Skipped
        if choice != "done":
            raise _Stop(EXIT_STOPPED, f"stopped at manual step {step.number} ({step.id}); resume with `handrail resume {session.id}`")
    elif opts.yes:
        reason = step.manual.headless if step.manual else "no inventory for this step"
        session.skip(step.id, f"headless run: {reason}")
        printer.outcome(session, step.id)
        raise _Skipped
    else:
        raise _Stop(
            EXIT_STOPPED, f"stopped at manual step {step.number} ({step.id}): it needs an operator (or --yes to record it as skipped)"
        )


def _typed_answer(prompt: Prompt, opts: DriveOptions, asker: Asker) -> tuple[str | None, str]:
    """(the answer, how it was given)."""
    if prompt.choices:
        ids = {c.value for c in prompt.choices}
        if opts.retire_key:
            return (opts.retire_key if opts.retire_key in ids else None), "--retire-key"
    elif prompt.expect and prompt.expect in opts.confirm_keys:
        return prompt.expect, "--confirm-key"
    elif prompt.expect and prompt.irreversible and opts.confirm_irreversible:
        return prompt.expect, "--confirm-irreversible"
    if asker.available:
        text = prompt.prompt or f"type {prompt.expect} to confirm"
        if prompt.irreversible:
            text = f"IRREVERSIBLE, no undo: {text}"
        return (asker.typed(text) or None), "typed at the terminal"
    return None, ""


def rollback(session: Session, yes: bool, printer: Printer, asker: Asker | None = None) -> tuple[int, str]:
    asker = asker or Asker()
    plan = session.rollback_plan()
    if not plan.possible:
        return EXIT_FAILED, f"cannot roll back session {session.id}: {plan.reason}"
    printer.echo(f"rollback plan for session {session.id} ({session.status}):")
    if not plan.items:
        printer.echo("  nothing to undo")
    for n, item in enumerate(plan.items, 1):
        printer.echo(f"  {n}. undo step {item.step.number} ({item.step.title}): {item.summary}")
        for line in item.command.splitlines():
            printer.echo(f"       $ {line}")
    for note in plan.notes:
        printer.echo(f"  note: {note}")
    if plan.items and not yes and not (asker.available and asker.confirm("run this rollback?")):
        return EXIT_STOPPED, f"rollback of session {session.id} not confirmed, nothing undone: pass --yes, or run it at a terminal"

    def manual(item: UndoItem) -> bool:
        printer.echo(f"  manual undo for step {item.step.number}: {item.command}")
        return asker.available and asker.confirm("done outside handrail?")

    session.listen(printer.event)
    ok, results = session.rollback(manual_done=manual)
    for item, outcome in results:
        printer.echo(f"  step {item.step.number}: {'undone' if outcome.status == StepStatus.DONE else 'FAILED'}: {outcome.summary}")
        for line in outcome.evidence:
            printer.echo(f"       {line}")
    if not ok:
        return EXIT_FAILED, f"rollback stopped at a failure; fix it and run `handrail rollback {session.id}` again"
    if plan.later:
        left = "; ".join(f"step {i.step.number} ({i.step.title}): {i.command}" for i in plan.later)
        return EXIT_DONE, f"session {session.id}: rolled back, except what only a person can do: {left}"
    return EXIT_DONE, f"session {session.id}: rolled back"
