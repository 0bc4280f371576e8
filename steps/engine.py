"""The engine: sessions that walk a runbook one confirmed step at a time.

The TUI and the headless driver only send intents (run this step, skip it with a
reason, pass a gate, roll back) and listen to events; everything else lives here:
confirmation rules, gates, facts between steps, the journal, the audit log, the lock,
rollback in reverse, and resume from the journal.
"""

from __future__ import annotations

import getpass
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.actions import registry
from steps.actions.base import ActionFailed, ActionSpec, Choice, Outcome, Preflight, Preview, StepContext
from steps.audit import Audit
from steps.clock import SimClock, human_duration, iso, parse_iso
from steps.journal import ApprovalRow, Journal, SessionRow
from steps.loader import load, render
from steps.model import Runbook, Step, parse_duration
from steps.secrets import Secret, redact
from steps.status import Mode, Needs, SessionStatus, StepStatus
from steps.text import shown

if TYPE_CHECKING:
    from steps.wiring import Wiring


class EngineError(Exception):
    """An intent the engine refuses (not the next step, wrong typed value, ...)."""


class InputError(EngineError):
    """A bad runbook input: the CLI exits 2."""


class Refused(EngineError):
    """A guard said no: no skip and no override; roll back, abandon, or start again."""


class AwaitingApproval(EngineError):
    """The step waits for a second operator (exit 3): the message has the command to give them."""

    def __init__(self, approval: ApprovalState) -> None:
        self.approval = approval
        super().__init__(approval.describe())


class GateClosed(EngineError):
    def __init__(self, gate: GateState) -> None:
        self.gate = gate
        super().__init__(gate.describe())


@dataclass
class StepState:
    step: Step
    status: StepStatus = StepStatus.PENDING
    summary: str = ""
    evidence: list[str] = field(default_factory=list)
    started_at: str | None = None
    ended_at: str | None = None
    attempts: int = 0
    # Re-opened after a restart: it ran once, so its effects (and its undo) still count.
    reopened: bool = False
    # When a run started that the process never finished (no outcome recorded): the step
    # runs again, and its confirmation says why.
    interrupted_at: str | None = None


@dataclass
class GateState:
    step_id: str
    after: str
    at_least: float
    why: str
    since: datetime | None
    opens_at: datetime | None
    now: datetime
    passed_by: str | None = None

    @property
    def open(self) -> bool:
        return self.passed_by is not None or (self.opens_at is not None and self.now >= self.opens_at)

    @property
    def remaining(self) -> float:
        if self.open or self.opens_at is None:
            return 0.0
        return (self.opens_at - self.now).total_seconds()

    def describe(self) -> str:
        if self.passed_by:
            return f"gate passed: {self.passed_by}"
        if self.opens_at is None:
            return f"gate: waits {human_duration(self.at_least)} after step {self.after!r}, which has not run"
        if self.open:
            return f"gate open since {iso(self.opens_at)}"
        return (
            f"observation gate: {human_duration(self.at_least)} after {self.after!r} "
            f"(done {iso(self.since) if self.since else '?'}); opens {iso(self.opens_at)}, in {human_duration(self.remaining)}"
        )


@dataclass
class ApprovalState:
    """A step that waits for a second operator: who must not approve it, and what they run."""

    step_id: str
    why: str
    operator: str  # the session's operator: their own approval does not count
    command: str
    granted: ApprovalRow | None = None
    expired: ApprovalRow | None = None  # the latest approval, when it has run out

    @property
    def open(self) -> bool:
        return self.granted is not None

    def describe(self) -> str:
        if self.granted is not None:
            return f"approved by {self.granted.approver} ({self.granted.reason}), valid until {self.granted.expires_at}"
        lapsed = f"; the approval by {self.expired.approver} expired at {self.expired.expires_at}" if self.expired else ""
        return f"waiting for a second operator ({self.why}){lapsed}: another identity than {self.operator} runs `{self.command}`"


@dataclass
class Prompt:
    """What the operator must see and answer before a step runs.

    `needs` is the one answer to "what does this step need now": an obstacle (a closed
    gate, a block, a refusal) or else `confirm`, the confirmation its run takes (dry
    runs, steps with nothing to do and `auto` steps need none). The driver, the
    checklist, the hints and the glyphs read these; none recombines them.
    """

    step: Step
    command: str
    needs: Needs
    confirm: Needs  # RUN | YES | TYPED | MANUAL: what running it takes once no obstacle stands
    expect: str | None
    choices: list[Choice]
    prompt: str | None
    preview: list[str]
    gate: GateState | None
    manual: str | None  # the instructions of a manual step (also shown in a dry run)
    would_run: bool
    undo_command: str | None
    mutates: bool
    fast_forward: bool  # the wait before it can pass on the simulated clock (training)
    irreversible: bool = False  # it deletes what no undo brings back: the key id is typed, always
    approval: ApprovalState | None = None  # a second operator's approval this step needs (granted or not)
    warnings: list[str] = field(default_factory=list)  # said before the confirmation (skipped safety steps, re-opened steps)


_CONFIRM = {"auto": Needs.RUN, "yes": Needs.YES, "typed": Needs.TYPED}
_PROMPT_FRESH = 5.0  # seconds a computed prompt stands for the typed check of the run that follows


@dataclass
class _Shape:
    spec: ActionSpec | None
    unavailable: str | None  # why the action cannot run here (then the step is manual)
    manual: bool
    missing: list[str]
    would_run: bool


@dataclass
class UndoItem:
    step: Step
    kind: str  # run | manual
    command: str
    summary: str


@dataclass
class RollbackPlan:
    possible: bool
    reason: str
    items: list[UndoItem]
    notes: list[str]
    # Manual undos a person does after the rollback (`undo: {manual, later: true}`): said
    # in the notes and recorded, never waited for.
    later: list[UndoItem] = field(default_factory=list)


@dataclass
class Event:
    kind: str  # status | step | output | progress | rollback
    step_id: str | None = None
    data: Any = None


Listener = Callable[[Event], None]


def runbook_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


MIN_REASON = 3
# A step's warning that the next change must be confirmed over (fact ACK_NEEDED + name),
# and its acknowledgement (ACK + name: how, by whom, before which step).
ACK_NEEDED, ACK = "ack_needed:", "ack:"
# The fact an action sets when it deleted the session's own IAM user: a resume, rollback
# or abandon then accepts that the user is gone.
TARGET_DELETED = "target_deleted_at"
NOT_READY = "dry_run_not_ready"  # fact: the places a dry run's pre-flight found not ready


def check_reason(reason: str | None, what: str) -> str:
    """A reason for an audited decision: at least MIN_REASON characters, said in words."""
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise EngineError(f"{what} needs a typed reason of at least {MIN_REASON} characters")
    return text


def validate_inputs(runbook: Runbook, given: dict[str, str | None]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in given:
        if name not in runbook.inputs and given[name] not in (None, ""):
            raise InputError(f"input {name!r} is not defined by runbook {runbook.id!r} (it takes: {', '.join(runbook.inputs)})")
    for name, spec in runbook.inputs.items():
        value = given.get(name)
        if value in (None, ""):
            value = spec.default
        if value in (None, ""):
            if spec.required:
                raise InputError(f"input {name!r} is required: {spec.prompt}")
            continue
        value = str(value)
        if spec.choices and value not in spec.choices:
            raise InputError(f"input {name!r}: {shown(value)} is not one of {', '.join(spec.choices)}")
        if spec.pattern and not re.fullmatch(spec.pattern, value):
            # Plain words, never the regex: the runbook's hint, else its prompt.
            raise InputError(f"input {name!r}: {shown(value)} is not {spec.hint or 'a valid value for: ' + spec.prompt}")
        values[name] = value
    for step in runbook.steps:
        gate_input = step.gate.at_least_input if step.gate else None
        if gate_input and gate_input in values:
            try:
                parse_duration(values[gate_input])
            except ValueError:
                raise InputError(
                    f"input {gate_input!r}: {shown(values[gate_input])} is not a duration (write it as 60s, 15m, 24h or 3d)"
                ) from None
    return values


# The composer's role check of an operator opening a session again: raises to refuse.
Authorise = Callable[["SessionRow", "Runbook", "Wiring"], None]


class Engine:
    def __init__(self, journal: Journal, audit: Audit, os_user: str | None = None) -> None:
        self.journal = journal
        self.audit = audit
        self.os_user = os_user or _os_user()

    def start(
        self,
        runbook_ref: str | Path,
        inputs: dict[str, str | None],
        wiring: Wiring,
        *,
        options: dict[str, Any] | None = None,
        session_id: str | None = None,
        campaign_id: str | None = None,
    ) -> Session:
        runbook = load(runbook_ref)
        from steps.loader import resolve

        path = resolve(str(runbook_ref)).resolve()
        values = validate_inputs(runbook, inputs)
        account, operator_arn = wiring.identity()
        target = values.get("target_user", "")
        binding = Binding(account, operator_arn, *(wiring.target_identity(target) if target else ("", "")))
        locks = not wiring.dry_run and bool(target)
        if locks:
            self.journal.check_lock(account, target)  # refuse before writing anything
        # The session and its lease in one transaction: two processes racing for the same
        # user leave one session, and the other nothing but its refusal (LockHeld).
        row = self.journal.create_session(
            lock=(account, target) if locks else None,
            operator=f"{self.os_user} as {operator_arn}",
            **({"id": session_id} if session_id else {}),
            runbook_id=runbook.id,
            runbook_path=str(path),
            runbook_sha=runbook_sha(path),
            mode=wiring.mode,
            target=target,
            account=account,
            actor=f"{self.os_user} as {operator_arn}",
            reason=values.get("reason", ""),
            inputs=values,
            options={**(options or {}), "binding": binding.as_dict(), "runbook_version": runbook.version},
            sim_offset=getattr(wiring.clock, "offset", None),
            campaign_id=campaign_id,
        )
        session = Session(self, row, runbook, wiring)
        self.audit.append(
            "session.started",
            session=row.id,
            actor=operator_arn,
            context={
                "runbook": runbook.id,
                "mode": wiring.mode,
                "iam_user": target,
                "account": account,
                "reason": values.get("reason", ""),
                "os_user": self.os_user,
                **({"campaign": campaign_id} if campaign_id else {}),
                **(
                    {"roles": session.governance.get("roles"), "role_needed": session.governance.get("needed")}
                    if session.governance
                    else {}
                ),
            },
        )
        session.checkpoint()
        return session

    def resume(
        self, ref: str, make_wiring: Callable[[SessionRow], Wiring], recover: bool = True, authorise: Authorise | None = None
    ) -> Session:
        """Rebuild a session from the journal. `recover=False` (for a rollback) leaves
        lost secrets lost instead of re-opening the steps that produced them. `authorise`
        (the composer's role check) runs before anything is written, like the binding's."""
        row = self.journal.find_session(ref)
        if row.finished:
            raise EngineError(f"session {row.id} is {row.status}: nothing to resume")
        path = Path(row.runbook_path)
        if not path.exists():
            raise EngineError(f"session {row.id}: its runbook {path} is gone")
        runbook = load(path)
        sha = runbook_sha(path)
        session = self.open_bound(row, runbook, make_wiring(row), authorise=authorise)
        wiring = session.wiring
        if sha != row.runbook_sha:
            self.journal.add_event(row.id, "note", summary=f"runbook file changed since the session started ({path})")
        if not wiring.dry_run and row.target:
            self.journal.acquire_lock(row.account, row.target, row.id, operator=f"{self.os_user} resuming for {row.actor}")
        if recover:
            session.recover_secrets()
        self.audit.append("session.resumed", session=row.id, actor=row.actor, context={"status": row.status})
        return session

    def open_bound(self, row: SessionRow, runbook: Runbook, wiring: Wiring, authorise: Authorise | None = None) -> Session:
        """The session on `wiring`, once its binding holds and (given `authorise`) the
        operator now holds the roles it needs (the wiring is closed if not); another
        operator of the account taking it over is audited."""
        try:
            taken_over = self.check_binding(row, wiring)
            if authorise is not None:
                authorise(row, runbook, wiring)
        except BaseException:
            wiring.close()
            raise
        session = Session(self, row, runbook, wiring)
        if taken_over:
            session.take_over(*taken_over)
        return session

    def check_binding(self, row: SessionRow, wiring: Wiring) -> tuple[str, str] | None:
        """Refuse a session opened with another account's credentials, or on a user that
        was deleted and re-created. Returns (first operator, operator now) when another
        operator of the same account takes the session over (allowed; audited by the caller)."""
        binding = Binding.of(row)
        if binding is None:  # a session from before bindings were recorded
            return None
        account, operator = wiring.identity()
        if account != binding.account:
            raise BindingRefused(
                f"session {row.id} belongs to AWS account {binding.account}, but these credentials are account {account} "
                f"({operator}): refused, nothing changed. Use that account's credentials, or start a new session"
            )
        if row.target and binding.target_id:
            from steps.wiring import NoSuchUser

            try:
                _, user_id = wiring.target_identity(row.target)
            except NoSuchUser:
                if self.journal.facts(row.id).get(TARGET_DELETED):
                    # This session deleted the user itself (offboarding): where it stands.
                    return (binding.operator_arn, operator) if operator != binding.operator_arn else None
                raise BindingRefused(
                    f"session {row.id}: IAM user {row.target!r} (user id {binding.target_id}) no longer exists in account {account}: "
                    "refused, nothing changed. Abandon the session"
                ) from None
            if user_id != binding.target_id:
                raise BindingRefused(
                    f"session {row.id}: IAM user {row.target!r} was deleted and re-created (user id {binding.target_id} then, "
                    f"{user_id} now): refused, nothing changed. Abandon the session and start a new one"
                )
        return (binding.operator_arn, operator) if operator != binding.operator_arn else None


@dataclass(frozen=True)
class Binding:
    """Where a session started: it acts there and nowhere else."""

    account: str
    operator_arn: str
    target_arn: str
    target_id: str  # the IAM user id: a user deleted and re-created under its name gets a new one

    def as_dict(self) -> dict[str, str]:
        return {"account": self.account, "operator_arn": self.operator_arn, "target_arn": self.target_arn, "target_id": self.target_id}

    @classmethod
    def of(cls, row: SessionRow) -> Binding | None:
        data = row.options.get("binding")
        return cls(**data) if isinstance(data, dict) else None


class BindingRefused(EngineError):
    """The credentials or the user are not the ones the session started with (exit 2)."""


class Session:
    def __init__(self, engine: Engine, row: SessionRow, runbook: Runbook, wiring: Wiring) -> None:
        self.engine = engine
        self.journal = engine.journal
        self.audit = engine.audit
        self.row = row
        self.id = row.id
        self.runbook = runbook
        self.wiring = wiring
        self.inputs: dict[str, str] = dict(row.inputs)
        self.facts: dict[str, str] = self.journal.facts(row.id)
        self.secrets: dict[str, Secret] = {}
        self.states: dict[str, StepState] = {s.id: StepState(s) for s in runbook.steps}
        self.status = row.status
        self._listeners: list[Listener] = []
        self._waits_skipped = False  # training: the running step's waits pass on the simulated clock
        self._lock = threading.RLock()
        # The last prompt computed, to check a typed answer against what was shown:
        # (step id, facts generation, when, prompt).
        self._prompted: tuple[str, int, float, Prompt] | None = None
        self._generation = 0
        binding = Binding.of(row)
        # Whose approval does not count as a second operator's: whoever drives the session.
        self.operator_arn = binding.operator_arn if binding else row.actor.rpartition(" as ")[2]
        self._replay()

    def take_over(self, started_by: str, operator: str) -> None:
        """Another operator of the same account goes on with this session (audited)."""
        self.row.actor = f"{self.engine.os_user} as {operator}"
        self.operator_arn = operator
        self.journal.add_event(self.id, "note", summary=f"resumed by {operator}, started by {started_by}")
        self.audit.append("session.taken_over", session=self.id, actor=operator, context={"started_by": started_by, "resumed_by": operator})

    # -- listening ----------------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unlisten(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    # -- state --------------------------------------------------------------------------

    def _replay(self) -> None:
        for event in self.journal.events(self.id):
            state = self.states.get(event.step_id or "")
            if state is None:
                continue
            when = event.ts_sim or event.ts_real
            if event.kind == "started":
                if state.status is not StepStatus.RUNNING:  # else the run before never ended
                    state.interrupted_at = when
                state.status, state.started_at = StepStatus.RUNNING, when
                state.attempts += 1
            elif event.kind in ("step", "undone", "reopened"):
                state.status = StepStatus(event.status) if event.status else state.status
                state.summary, state.evidence, state.ended_at = event.summary, event.evidence, when
                state.reopened = event.kind == "reopened" or (state.reopened and event.kind != "undone")
                state.interrupted_at = None
        for state in self.states.values():
            if state.status is StepStatus.RUNNING:  # the process died inside it: run it again
                state.status = StepStatus.PENDING

    @property
    def mode(self) -> Mode:
        return self.wiring.mode

    @property
    def target(self) -> str:
        return self.inputs.get("target_user", "")

    def values(self) -> dict[str, str]:
        own = {**self.facts, **self.inputs, "session": self.id}
        # The inventory's names for displayed commands; the session's own values win.
        return {**self.wiring.display_values(own), **own}

    def current(self) -> StepState | None:
        if self.status.finished or self.status.rolling:
            return None
        for state in self.states.values():
            if not state.status.passed:
                return state
        return None

    def step_states(self) -> list[StepState]:
        return list(self.states.values())

    def prerequisites(self) -> list[tuple[str, bool]]:
        return [(p.text, bool(p.checked_by and self.states[p.checked_by].status is StepStatus.DONE)) for p in self.runbook.prerequisites]

    def _now(self) -> datetime:
        return self.wiring.clock.now()

    def _ts_sim(self) -> str | None:
        return iso(self._now()) if self.wiring.clock.simulated else None

    def _set_status(self, status: SessionStatus) -> None:
        if status != self.status:
            self.status = status
            self.journal.update_session(self.id, status=status)
            self._emit(Event("status", data=status))

    def _recompute_status(self) -> None:
        if self.status.rolling or self.status.finished:
            return
        current = self.current()
        if current is None:
            self._finish(SessionStatus.DONE)
        elif current.status.stopped:
            self._set_status(SessionStatus(current.status.value))
        else:
            gate = self.gate_state(current.step)
            self._set_status(SessionStatus.WAITING if gate is not None and not gate.open else SessionStatus.ACTIVE)

    def _finish(self, status: SessionStatus) -> None:
        self._set_status(status)
        self._run_on_end()
        self.journal.release_lock(self.id)
        self.audit.append(f"session.{status.replace('-', '_')}", session=self.id, actor=self.row.actor, context={"iam_user": self.target})

    def _run_on_end(self) -> None:
        """The runbook's end actions (releasing the user's mark): best effort, each result
        in the journal; a failure is reported, never raised (the session has ended)."""
        if self.wiring.dry_run:
            return
        for name in self.runbook.on_end:
            spec = registry()[name]
            step = self.runbook.steps[0]
            params = spec.params.model_validate({}) if spec.params else None
            try:
                outcome = spec.fn(self._context(step, spec, params=params))
            except ActionFailed as exc:
                outcome = exc.outcome()
            except Exception as exc:
                outcome = Outcome.failed(f"{type(exc).__name__}: {exc}")
            self.journal.add_event(self.id, "end", status=outcome.status, summary=f"{name}: {outcome.summary}", ts_sim=self._ts_sim())
            if outcome.status != StepStatus.DONE:
                self.audit.append(
                    "session.end_action_failed", session=self.id, actor=self.row.actor, context={"action": name, "summary": outcome.summary}
                )

    def checkpoint(self) -> None:
        """Save what the wiring needs to come back (the training world, the clock)."""
        snapshot = self.wiring.checkpoint()
        fields: dict[str, Any] = {}
        if snapshot is not None:
            fields["world"] = snapshot
        if isinstance(self.wiring.clock, SimClock):
            fields["sim_offset"] = self.wiring.clock.offset
        if fields:
            self.journal.update_session(self.id, **fields)

    # -- gates --------------------------------------------------------------------------

    def gate_state(self, step: Step) -> GateState | None:
        if step.gate is None:
            return None
        after = self.states[step.gate.after]
        now = self._now()
        since = parse_iso(after.ended_at) if after.ended_at and after.status is StepStatus.DONE else None
        at_least = self.gate_seconds(step)
        opens = since + timedelta(seconds=at_least) if since else None
        passed = self.facts.get(f"gate_passed:{step.id}")
        return GateState(step.id, step.gate.after, at_least, step.gate.why, since, opens, now, passed)

    def gate_seconds(self, step: Step) -> float:
        """How long a gate holds: its duration, or the runbook input that sets it."""
        assert step.gate is not None
        name = step.gate.at_least_input
        if name:
            value = self.inputs.get(name) or self.runbook.inputs[name].default
            return parse_duration(value or 0)
        return step.gate.at_least

    def override_gate(self, step_id: str, reason: str) -> None:
        reason = check_reason(reason, "passing a gate early")
        with self._lock:
            step = self.runbook.step(step_id)
            gate = self.gate_state(step)
            if gate is None:
                raise EngineError(f"step {step_id} has no gate")
            if gate.open:
                return
            passed = f"overridden by {self.engine.os_user}: {reason}"
            self._set_facts({f"gate_passed:{step_id}": passed}, step_id)
            self.journal.add_event(self.id, "gate", step_id=step_id, status="overridden", summary=redact(passed), ts_sim=self._ts_sim())
            self.audit.append(
                "gate.override",
                session=self.id,
                actor=self.row.actor,
                context={
                    "step": step_id,
                    "reason": reason,
                    "opens_at": iso(gate.opens_at) if gate.opens_at else None,
                    "early_by": human_duration(gate.remaining),
                },
            )
            self._recompute_status()

    def fast_forward(self, step_id: str | None = None, seconds: float | None = None) -> float:
        """Training only: move the simulated clock to the gate's opening (or by `seconds`)."""
        clock = self.wiring.clock
        if not isinstance(clock, SimClock):
            raise EngineError("fast-forward is for training only: live time cannot be skipped (override the gate with a reason)")
        with self._lock:
            if seconds is None:
                current = self.current()
                step = self.runbook.step(step_id) if step_id else (current.step if current else None)
                gate = self.gate_state(step) if step else None
                if gate is None or gate.opens_at is None:
                    raise EngineError("nothing to fast-forward to")
                skipped = clock.advance_to(gate.opens_at)
            else:
                clock.advance(seconds)
                skipped = seconds
            self.journal.add_event(
                self.id,
                "clock",
                step_id=step_id,
                status="fast-forward",
                summary=f"simulated clock +{human_duration(skipped)}",
                ts_sim=self._ts_sim(),
            )
            self.audit.append(
                "clock.fast_forward",
                session=self.id,
                actor=self.row.actor,
                context={"step": step_id, "seconds": round(skipped, 1), "simulated_now": iso(clock.now())},
            )
            self.checkpoint()
            self._recompute_status()
            return skipped

    def skip_waits(self, step_id: str, what: str = "", at_most: float = 0.0) -> None:
        """Training only: the rest of the running step's waits pass on the simulated clock,
        as in a headless run (a poll still polls, so evidence says when the key really
        worked). Does not take the session lock: the step is running."""
        clock = self.wiring.clock
        if not isinstance(clock, SimClock):
            raise EngineError("fast-forward is for training only: live time cannot be skipped")
        if clock.auto_advance:
            return
        clock.auto_advance = True
        self._waits_skipped = True
        clock.wake()  # cut the sleep in progress short
        self.journal.add_event(
            self.id,
            "clock",
            step_id=step_id,
            status="fast-forward",
            summary=f"waits pass on the simulated clock: {what}".rstrip(": "),
            ts_sim=self._ts_sim(),
        )
        self.audit.append(
            "clock.fast_forward",
            session=self.id,
            actor=self.row.actor,
            context={"step": step_id, "during": what, "at_most": round(at_most, 1), "how": "waits pass in simulated time"},
        )

    def _end_skipped_waits(self) -> None:
        if self._waits_skipped and isinstance(self.wiring.clock, SimClock):
            self._waits_skipped = False
            self.wiring.clock.auto_advance = False

    # -- prompting ----------------------------------------------------------------------

    def _spec(self, step: Step) -> ActionSpec | None:
        return registry()[step.run] if step.run else None

    def _unavailable(self, step: Step, spec: ActionSpec | None) -> str | None:
        if spec is None or spec.available is None:
            return None
        return spec.available(self.wiring, self.values())

    def _missing(self, spec: ActionSpec | None) -> list[str]:
        if spec is None:
            return []
        values = self.values()
        return sorted(n for n in spec.needs if values.get(n) in (None, ""))

    def _shape(self, step: Step) -> _Shape:
        """How this step would run now: by its action, by the operator (manual), or, in a
        dry run, not at all (`would_run`: it changes something, or lacks an input)."""
        spec = self._spec(step)
        unavailable = self._unavailable(step, spec)
        manual = step.is_manual or unavailable is not None
        missing = self._missing(spec) if not manual else []
        would_run = self.wiring.dry_run and (manual or bool(spec and spec.mutates) or bool(missing))
        return _Shape(spec, unavailable, manual, missing, would_run)

    def obstacle(self, state: StepState) -> Needs | None:
        """What stops this step whatever the operator confirms: a refusal, a block, or a
        closed gate (a dry run changes nothing, so there is nothing for a gate to protect)."""
        if state.status is StepStatus.REFUSED:
            return Needs.REFUSED
        if state.status is StepStatus.BLOCKED:
            return Needs.BLOCKED
        return Needs.GATE if self._closed_gate(state.step) else None

    # -- a second operator ----------------------------------------------------------------

    @property
    def governance(self) -> dict[str, Any]:
        """What the roles decided at start (steps.roles.Authority), or {} (older sessions)."""
        found = self.row.options.get("governance")
        return found if isinstance(found, dict) else {}

    def approval_reason(self, step: Step) -> str | None:
        """Why this step waits for a second operator, or None (never in a dry run)."""
        if self.wiring.dry_run:
            return None
        if step.approval == "second-operator":
            return "the runbook asks it for this step"
        if step.irreversible and self.governance.get("approvals_irreversible"):
            return f"the roles file asks it for every irreversible step ({self.governance.get('roles_source')})"
        return None

    def approval_state(self, step: Step) -> ApprovalState | None:
        why = self.approval_reason(step)
        if why is None:
            return None
        now = self.journal.now()
        state = ApprovalState(step.id, why, self.operator_arn, f'handrail approve {self.id} --step {step.id} --reason "WHY"')
        for approval in reversed(self.journal.approvals(self.id, step.id)):
            if approval.approver == self.operator_arn:
                continue  # recorded before a take-over by that approver: not a second person now
            if approval.valid_at(now):
                state.granted = approval
                break
            state.expired = state.expired or approval
        return state

    def _closed_gate(self, step: Step) -> GateState | None:
        gate = self.gate_state(step)
        return gate if gate is not None and not gate.open and not self.wiring.dry_run else None

    def prompt(self, step_id: str | None = None) -> Prompt:
        with self._lock:
            state = self.states[step_id] if step_id else self.current()
            if state is None:
                raise EngineError("no step left to run")
            step = state.step
            shape = self._shape(step)
            spec = shape.spec
            values = self.values()
            preview = Preview()
            if not shape.manual and spec and spec.preview and not shape.missing:
                try:
                    preview = spec.preview(self._context(step, spec))
                except ActionFailed as exc:
                    preview = Preview([f"could not look ahead: {exc.summary}"])
                except Exception as exc:  # a look-ahead must never take the session down
                    preview = Preview([f"could not look ahead: {type(exc).__name__}: {redact(str(exc))}"])
            manual_text = None
            if shape.manual:
                manual_text = render(step.manual.instructions, values) if step.manual else ""
                if shape.unavailable:
                    manual_text = f"({shape.unavailable})\n{manual_text}"
            expect = values.get(step.typed) if step.typed else preview.expect
            irreversible = False
            if shape.would_run or preview.nothing_to_do:
                confirm = Needs.RUN
            elif shape.manual:
                confirm = Needs.MANUAL
            elif step.irreversible and (expect or preview.choices):
                # No undo: never one stray key away, whatever the step's own confirm says.
                confirm, irreversible = Needs.TYPED, True
            else:
                confirm = _CONFIRM[preview.confirm or step.confirm]
            if confirm is Needs.RUN and self._acknowledging(shape):
                # A warning stands that must be acknowledged before anything changes.
                confirm = Needs.YES
            gate = self.gate_state(step)
            undo_command = None
            if step.undo:
                undo_spec = registry().get(step.undo.run) if step.undo.run else None
                undo_command = render(step.undo.command or (undo_spec.command if undo_spec else None) or step.undo.manual, values)
            obstacle = self.obstacle(state)
            # Nothing to do (no key in the way): nothing for a second operator to approve.
            approval = self.approval_state(step) if obstacle is not Needs.REFUSED and not preview.nothing_to_do else None
            needs = obstacle or (Needs.APPROVAL if approval is not None and not approval.open else None) or confirm
            prompt = Prompt(
                step=step,
                command=render(step.command, values),
                needs=needs,
                confirm=confirm,
                expect=expect,
                choices=preview.choices,
                prompt=preview.prompt,
                preview=preview.lines,
                gate=gate,
                manual=manual_text,
                would_run=shape.would_run,
                undo_command=undo_command,
                mutates=bool(spec and spec.mutates) or shape.manual,
                fast_forward=needs is Needs.GATE and self.wiring.clock.simulated,
                irreversible=irreversible,
                approval=approval,
                warnings=self._warnings(state, shape),
            )
            self._prompted = (step.id, self._generation, time.monotonic(), prompt)
            return prompt

    def _warnings(self, state: StepState, shape: _Shape) -> list[str]:
        """What the operator must read before confirming this step: a safety step skipped
        just before it, or why this step runs again after a restart."""
        # A warning to acknowledge is said where a change would acknowledge it (a dry run:
        # at each step that would change something, as nothing acknowledges it there).
        changes = shape.manual or bool(shape.spec and shape.spec.mutates)
        warnings = [text for _, text in self._pending_acks()] if changes else []
        if state.reopened and state.summary.startswith("re-opened"):
            warnings.append(f"step {state.step.number} runs again: {state.summary.removeprefix('re-opened: ')}")
        if state.interrupted_at:
            warnings.append(
                f"step {state.step.number} runs again: the previous process ended while it was running (started "
                f"{state.interrupted_at}); what it did before then is in the world, and the step looks before it acts"
            )
        for earlier in reversed(list(self.states.values())[: self.runbook.index(state.step.id)]):
            if earlier.status is not StepStatus.SKIPPED:
                break
            if earlier.step.if_skipped:
                warnings.append(f"step {earlier.step.number} ({earlier.step.title}) was skipped: {earlier.step.if_skipped}")
        return warnings

    def _pending_acks(self) -> list[tuple[str, str]]:
        """Warnings a step recorded (fact `ack_needed:NAME`, e.g. a caller of the old key
        that matches no consumer) that no confirmation has acknowledged yet (`ack:NAME`)."""
        return sorted(
            (k.removeprefix(ACK_NEEDED), v)
            for k, v in self.facts.items()
            if k.startswith(ACK_NEEDED) and f"{ACK}{k.removeprefix(ACK_NEEDED)}" not in self.facts
        )

    def _acknowledging(self, shape: _Shape) -> bool:
        """Whether running this step acknowledges the pending warnings: it changes
        something (a dry run's "would run" changes nothing, so it acknowledges nothing)."""
        return bool(self._pending_acks()) and not shape.would_run and (shape.manual or bool(shape.spec and shape.spec.mutates))

    def _acknowledge(self, step: Step, how: str) -> None:
        """The confirmation of a changing step was given with the pending warnings shown:
        recorded as their acknowledgement (journal and audit), with how it was given."""
        for name, text in self._pending_acks():
            self._set_facts({f"{ACK}{name}": f"{how} by {self.engine.os_user}, before step {step.number}"}, step.id)
            self.journal.add_event(
                self.id, "note", step_id=step.id, summary=redact(f"warning acknowledged ({how}): {text}"), ts_sim=self._ts_sim()
            )
            self.audit.append(
                "warning.acknowledged",
                session=self.id,
                actor=self.row.actor,
                context={"warning": name, "text": text, "step": step.id, "how": how},
            )

    # -- running ------------------------------------------------------------------------

    def _context(
        self, step: Step, spec: ActionSpec, answer: str | None = None, override: str | None = None, params: Any = None
    ) -> StepContext:
        if params is None:
            params = spec.params.model_validate(step.with_ if step.run == spec.name else {}) if spec.params else None
        return StepContext(
            session_id=self.id,
            runbook_id=self.runbook.id,
            method=self.runbook.header.mode,
            step_id=step.id,
            inputs=self.inputs,
            facts=self.values(),
            secrets=self.secrets,
            params=params,
            wiring=self.wiring,
            answer=answer,
            override=override,
            actor=self.row.actor,
            audit=self.audit,
            emit=lambda line: self._emit(Event("output", step.id, redact(line))),
            progress=lambda what, done, total: self._emit(Event("progress", step.id, (what, done, total))),
            record=lambda facts: self._set_facts(facts, step.id),
        )

    def run(self, step_id: str, answer: str | None = None, override: str | None = None, how: str = "typed") -> Outcome:
        """Run one step: the next one, or one skipped earlier. The caller has had the
        operator confirm (see `prompt`); `how` says how an irreversible step's key id was
        given (typed, --confirm-key, --confirm-irreversible), for the audit log."""
        with self._lock:
            current = self.current()
            if current is None:
                raise EngineError(f"session {self.id} is {self.status}: no step left to run")
            if current.step.id != step_id:
                later = self.states.get(step_id)
                if later is None or later.status is not StepStatus.SKIPPED:
                    raise EngineError(f"step {step_id!r} is not next: step {current.step.number} ({current.step.id}) is")
                current = later  # a skipped step, run later
            step = current.step
            gate = self._closed_gate(step)
            if gate is not None:
                self._set_status(SessionStatus.WAITING)
                raise GateClosed(gate)
            approval = None
            if self.approval_reason(step) is not None:
                if (self._shown(step.id) or self.prompt(step.id)).approval is not None:
                    approval = self.approval_state(step)  # afresh: it may have come in since the prompt
                if approval is not None and not approval.open:
                    raise AwaitingApproval(approval)
            if override is not None:
                if current.status is StepStatus.REFUSED:
                    raise Refused(f"step {step.number} ({step.id}) refused: it cannot be overridden. {self.remedy(step.id)}")
                check_reason(override, "an override")
            self._check_typed(current, answer, how)

            shape = self._shape(step)
            spec, manual = shape.spec, shape.manual
            if self._acknowledging(shape):
                self._acknowledge(step, how)
            current.status, current.started_at = StepStatus.RUNNING, iso(self._now())
            current.attempts += 1
            self.journal.add_event(self.id, "started", step_id=step.id, ts_sim=self._ts_sim())
            self._emit(Event("step", step.id, current))

            if shape.would_run:
                prompt = self.prompt(step.id)
                commands = [line for line in prompt.command.splitlines() if not line.lstrip().startswith("#")]
                lines = [f"would run: {line}" for line in commands] + prompt.preview
                not_ready: list[str] = []
                if manual:
                    lines.append("manual step: the operator would do this outside handrail")
                elif spec is not None and spec.preflight is not None:
                    found = self._preflight(step, spec)
                    not_ready, lines = found.not_ready, lines + found.lines
                what = prompt.command.splitlines()[0] if prompt.command else step.title
                if not_ready:
                    # Recorded as a fact so the dry run's end (and a resumed one) says it.
                    earlier = [n for n in self.values().get(NOT_READY, "").split(", ") if n]
                    outcome = Outcome(
                        StepStatus.WOULD_RUN,
                        f"would run, but NOT READY: {', '.join(not_ready)}",
                        lines,
                        {NOT_READY: ", ".join(dict.fromkeys([*earlier, *not_ready]))},
                    )
                else:
                    outcome = Outcome(StepStatus.WOULD_RUN, f"would run: {what}", lines)
            elif manual:
                outcome = Outcome.done(
                    "done by the operator outside handrail (confirmed)",
                    [render(step.manual.instructions, self.values()).splitlines()[0]] if step.manual else [],
                )
            else:
                assert spec is not None
                self.wiring.before_step(step.id, current.attempts)
                try:
                    outcome = spec.fn(self._context(step, spec, answer, override))
                except ActionFailed as exc:
                    outcome = exc.outcome()
                except Exception as exc:  # an unexpected failure is a state, not a crash
                    outcome = Outcome.failed(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}")
                finally:
                    self.wiring.after_step(step.id)
                    self._end_skipped_waits()
            if approval is not None and approval.granted is not None:
                granted = approval.granted
                outcome.evidence.append(f"approved by {granted.approver} at {granted.created_at}: {granted.reason}")
                self.audit.append(
                    "approval.used",
                    session=self.id,
                    actor=self.row.actor,
                    context={"step": step.id, "approver": granted.approver, "approval": granted.id, "outcome": outcome.status},
                )
            if override:
                # The decision is audited whatever came of it.
                outcome.evidence.append(f"override by {self.engine.os_user}: {override}")
                self.audit.append(
                    "block.override",
                    session=self.id,
                    actor=self.row.actor,
                    context={"step": step.id, "reason": override, "outcome": outcome.status},
                )
            self._apply(current, outcome)
            return outcome

    def _preflight(self, step: Step, spec: ActionSpec) -> Preflight:
        """A dry run's read-only look at what the step would change; a probe that fails
        outright makes the step's places not ready, and the dry run says so at its end."""
        assert spec.preflight is not None
        try:
            return spec.preflight(self._context(step, spec))
        except ActionFailed as exc:
            return Preflight([f"step {step.number}"], [f"pre-flight failed: {exc.summary}", *exc.evidence])
        except Exception as exc:
            return Preflight([f"step {step.number}"], [f"pre-flight failed: {type(exc).__name__}: {redact(str(exc))}"])

    def _check_typed(self, state: StepState, answer: str | None, how: str) -> None:
        """The engine, not the screen, holds the line: a typed step runs only on its value."""
        step = state.step
        if self.wiring.dry_run or (step.confirm != "typed" and not step.irreversible):
            return
        prompt = self._shown(step.id) or self.prompt(step.id)
        if prompt.confirm is not Needs.TYPED:
            return
        given = (answer or "").strip()
        valid = {c.value for c in prompt.choices} if prompt.choices else {prompt.expect}
        if given not in valid:
            if prompt.choices:
                return  # the action says which choice it refuses, and why
            what = (step.typed or "key id").replace("_", " ")
            raise EngineError(f"typed confirmation does not match: type the {what} ({prompt.expect}) to run step {step.number}")
        if prompt.irreversible:
            self.audit.append(
                "step.irreversible_confirmed",
                session=self.id,
                actor=self.row.actor,
                context={"step": step.id, "confirmed": given, "how": how},
            )

    def _shown(self, step_id: str) -> Prompt | None:
        """The prompt the caller computed for this step just before running it, if nothing
        changed since: its look-ahead is not asked of AWS a second time (a campaign runs
        thousands of steps). An answer typed after a longer pause is checked afresh."""
        cached = self._prompted
        if cached is None or cached[0] != step_id or cached[1] != self._generation:
            return None
        return cached[3] if time.monotonic() - cached[2] < _PROMPT_FRESH else None

    def remedy(self, step_id: str) -> str:
        """What an operator can do instead of skipping or overriding a refusal."""
        specific = self.facts.get(f"remedy:{step_id}")
        ways = f"roll back (`handrail rollback {self.id}`), abandon (`handrail abandon {self.id} --reason …`), or start a new session"
        return f"Instead: {specific}; or {ways}" if specific else f"Instead: {ways}"

    def _set_facts(self, facts: dict[str, str], step_id: str | None) -> None:
        self._generation += 1
        facts = {k: v for k, v in facts.items() if v not in (None, "")}
        self.facts.update(facts)
        self.journal.set_facts(self.id, facts, step_id)

    def _apply(self, state: StepState, outcome: Outcome, kind: str = "step", status: StepStatus | None = None) -> None:
        # The training world is saved before the journal records what the step did, as a
        # real account is changed before: a kill -9 in between finds the world ahead of the
        # journal, and the step, idempotent, runs again on resume. (The other way round, a
        # resume would trust a change the saved world never got.)
        self.checkpoint()
        if kind == "step":
            outcome.facts[f"changed:{state.step.id}"] = "yes" if outcome.changed else "no"
            state.interrupted_at = None  # this run ended with an outcome
        if "remedy" in outcome.facts:  # what a refusal offers instead, kept per step
            outcome.facts[f"remedy:{state.step.id}"] = outcome.facts.pop("remedy")
        self._set_facts(outcome.facts, state.step.id)
        self.secrets.update(outcome.secrets)
        state.status = StepStatus(status or outcome.status)
        state.summary, state.evidence, state.ended_at = outcome.summary, outcome.evidence, iso(self._now())
        self.journal.add_event(
            self.id,
            kind,
            step_id=state.step.id,
            status=state.status,
            summary=outcome.summary,
            evidence=outcome.evidence,
            ts_sim=self._ts_sim(),
        )
        self.audit.append(
            "step.undone" if kind == "undone" else "step.result",
            session=self.id,
            actor=self.row.actor,
            context={
                "step": state.step.id,
                "number": state.step.number,
                "status": state.status,
                "summary": outcome.summary,
                "evidence": outcome.evidence,
            },
            simulated_at=self._ts_sim(),
        )
        self._emit(Event("step", state.step.id, state))
        self._recompute_status()

    def skip(self, step_id: str, reason: str) -> None:
        reason = (reason or "").strip()
        if not reason:
            raise EngineError("skipping a step needs a reason")
        with self._lock:
            current = self.current()
            if current is None or current.step.id != step_id:
                raise EngineError(f"step {step_id!r} is not next")
            refusal = self.skip_refusal(current)
            if refusal:
                raise Refused(refusal)
            self.audit.append("step.skipped", session=self.id, actor=self.row.actor, context={"step": step_id, "reason": reason})
            self._apply(current, Outcome(StepStatus.SKIPPED, reason))

    def skip_refusal(self, state: StepState) -> str | None:
        """Why this step may not be skipped, or None: a refusal stays a refusal, and a
        guard the runbook marks `skippable: false` is never passed by."""
        step = state.step
        if state.status is StepStatus.REFUSED:
            return f"step {step.number} ({step.id}) refused: {state.summary.rstrip('.')}; it cannot be skipped. {self.remedy(step.id)}"
        if not step.skippable:
            return f"step {step.number} ({step.title}) cannot be skipped: the runbook makes it a guard. {self.remedy(step.id)}"
        return None

    def recover_secrets(self) -> None:
        """After a restart, secrets held in memory are gone. Ask the wiring (the vault)
        for them; where it cannot help, re-open the step that produced a secret a
        pending step needs, and every done step after it."""
        needed: dict[str, str] = {}
        reg = registry()
        for state in self.states.values():
            if state.status.passed:
                continue
            spec = reg.get(state.step.run or "")
            for name in spec.needs_secrets if spec else ():
                needed.setdefault(name, state.step.id)
        for name, first_needing in needed.items():
            if name in self.secrets:
                continue
            recovered = self.wiring.recover_secret(name, self.values())
            if recovered is not None:
                self.secrets[name] = recovered
                self.journal.add_event(self.id, "note", summary=f"{name} recovered from the vault after restart")
                continue
            producer = next(
                (
                    s
                    for s in self.states.values()
                    if s.step.run and name in reg[s.step.run].produces_secrets and s.status is StepStatus.DONE
                ),
                None,
            )
            if producer is None:
                continue
            reopen = False
            for state in self.states.values():
                if state is producer:
                    reopen = True
                if reopen and state.status.passed:
                    state.status = StepStatus.PENDING
                    state.reopened = True
                    # As a replay would: the confirmation says why it runs again (`_warnings`).
                    state.summary = f"re-opened: {name} was held in memory by the previous process and is gone"
                    state.evidence = []
                    self.journal.add_event(
                        self.id,
                        "reopened",
                        step_id=state.step.id,
                        status=StepStatus.PENDING,
                        summary=state.summary,
                        ts_sim=self._ts_sim(),
                    )
                if state.step.id == first_needing:
                    break
        self._recompute_status()

    # -- rollback -----------------------------------------------------------------------

    def rollback_plan(self) -> RollbackPlan:
        values = self.values()
        ponr = next((s for s in self.states.values() if s.step.point_of_no_return and s.status is StepStatus.DONE), None)
        if ponr is not None:
            return RollbackPlan(False, render(self.runbook.rollback.after_point_of_no_return, values), [], [])
        items: list[UndoItem] = []
        notes: list[str] = []
        later: list[UndoItem] = []
        for state in reversed(list(self.states.values())):
            step = state.step
            if not state.status.undoable and not (state.reopened and state.status is StepStatus.PENDING):
                continue
            if step.undo is None:
                if step.irreversible and state.status is StepStatus.DONE and values.get(f"changed:{step.id}") != "no":
                    notes.append(f"step {step.number} ({step.title}) cannot be undone: {state.summary}")
                continue
            if step.undo.later:
                if state.status is StepStatus.DONE and values.get(f"changed:{step.id}") != "no":
                    text = render(step.undo.manual, values)
                    later.append(UndoItem(step, "later", text, step.undo.summary or "left to a person"))
                    notes.append(f"step {step.number} ({step.title}) is not undone here; a person must: {text}")
                continue
            undo_spec = registry()[step.undo.run] if step.undo.run else None
            unavailable = self._unavailable(step, undo_spec) if undo_spec else None
            if undo_spec is not None and unavailable is None:
                spec = undo_spec
                missing = sorted(n for n in spec.needs if values.get(n) in (None, ""))
                if missing:
                    notes.append(f"step {step.number}: nothing to undo ({missing[0]} was never set)")
                    continue
                command = render(step.undo.command or spec.command, values)
                items.append(UndoItem(step, "run", command, step.undo.summary or spec.title))
            elif state.status is StepStatus.DONE and step.undo.manual:
                items.append(UndoItem(step, "manual", render(step.undo.manual, values), step.undo.summary or "manual undo"))
            elif state.status is StepStatus.DONE:
                notes.append(f"step {step.number}: its undo cannot run ({unavailable}) and has no manual instructions")
        reason = "" if items else "nothing to undo"
        return RollbackPlan(True, reason, items, notes, later)

    def rollback(self, manual_done: Callable[[UndoItem], bool] | None = None) -> tuple[bool, list[tuple[UndoItem, Outcome]]]:
        """Run the undo of every completed step in reverse; stop at the first failure."""
        with self._lock:
            plan = self.rollback_plan()
            if not plan.possible:
                raise EngineError(f"cannot roll back: {plan.reason}")
            self.audit.append(
                "rollback.started",
                session=self.id,
                actor=self.row.actor,
                context={"plan": [f"{i.step.number} {i.command}" for i in plan.items], "notes": plan.notes},
            )
            self._set_status(SessionStatus.ROLLING_BACK)
            results: list[tuple[UndoItem, Outcome]] = []
            for item in plan.items:
                state = self.states[item.step.id]
                self._emit(Event("rollback", item.step.id, "started"))
                if item.kind == "manual":
                    confirmed = manual_done(item) if manual_done else False
                    outcome = (
                        Outcome.done("undone by the operator outside handrail")
                        if confirmed
                        else Outcome.failed("manual undo not confirmed: an operator must do it")
                    )
                else:
                    assert item.step.undo is not None and item.step.undo.run  # a "run" undo item
                    spec = registry()[item.step.undo.run]
                    params = spec.params.model_validate(item.step.undo.with_) if spec.params else None
                    try:
                        outcome = spec.fn(self._context(item.step, spec, params=params))
                    except ActionFailed as exc:
                        outcome = exc.outcome()
                    except Exception as exc:
                        outcome = Outcome.failed(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}")
                results.append((item, outcome))
                if outcome.status == StepStatus.DONE:
                    self._apply(
                        state,
                        Outcome(StepStatus.DONE, f"undone: {outcome.summary}", outcome.evidence, outcome.facts),
                        kind="undone",
                        status=StepStatus.UNDONE,
                    )
                else:
                    self.journal.add_event(
                        self.id,
                        "undo-failed",
                        step_id=item.step.id,
                        status=state.status,
                        summary=outcome.summary,
                        evidence=outcome.evidence,
                        ts_sim=self._ts_sim(),
                    )
                    self.audit.append(
                        "rollback.failed", session=self.id, actor=self.row.actor, context={"step": item.step.id, "summary": outcome.summary}
                    )
                    self._set_status(SessionStatus.ROLLBACK_FAILED)
                    self.checkpoint()
                    self._emit(Event("rollback", item.step.id, outcome))
                    return False, results
                self._emit(Event("rollback", item.step.id, outcome))
            for item in plan.later:
                self.journal.add_event(
                    self.id,
                    "undo-later",
                    step_id=item.step.id,
                    status=StepStatus.DONE,
                    summary=f"left to a person: {item.command}",
                    ts_sim=self._ts_sim(),
                )
            self.audit.append(
                "rollback.completed",
                session=self.id,
                actor=self.row.actor,
                context={"undone": [i.step.id for i, _ in results], "left_to_a_person": {i.step.id: i.command for i in plan.later}},
            )
            self.checkpoint()
            self._finish(SessionStatus.ROLLED_BACK)
            return True, results

    def abandon(self, reason: str) -> None:
        if not reason or not reason.strip():
            raise EngineError("abandoning a session needs a reason")
        with self._lock:
            self.audit.append("session.abandon", session=self.id, actor=self.row.actor, context={"reason": reason, "status": self.status})
            self._finish(SessionStatus.ABANDONED)

    # -- reporting ----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "runbook": self.runbook.id,
            "mode": self.mode,
            "status": self.status,
            "user": self.target,
            "account": self.row.account,
            "old_key_id": self.facts.get("old_key_id"),
            "new_key_id": self.facts.get("new_key_id"),
            "steps": [
                {"id": s.step.id, "number": s.step.number, "title": s.step.title, "status": s.status, "summary": s.summary}
                for s in self.states.values()
            ],
        }

    def close(self) -> None:
        self.checkpoint()
        self.journal.release_holder(self.id)
        self.wiring.close()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return "unknown"
