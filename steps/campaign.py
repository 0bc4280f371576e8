"""Campaigns: many sessions, each with its own lock, gates and rollback, a few at a time.

A campaign is a journal row grouping sessions (a due fleet, an offboarding). Its plan is
a list of targets, each a runbook on an IAM user with its inputs and why it is there,
so one campaign can mix runbooks. The scheduler drives every target's session through
the headless driver with bounded concurrency (threads in one process); a target that
fails, blocks, is refused or waits stops only itself. A campaign ends when every target
has (done, rolled back or abandoned).

How a session is opened (its wiring; in training the one world all of them share) is
the `Opener`'s business: `steps.compose.CampaignOpener`. This module never builds one.

Thread safety: the journal serialises its writes (one connection behind a lock, WAL);
the audit log appends under an exclusive file lock, so the chain stays one chain; each
session has its own wiring and adapters; a training world's moto server is threaded and
its SimClock advances under a lock. Observation gates are not fast-forwarded by each
session on its own (each would add a day to the one shared clock): every target first
runs to its gate, then the clock moves once, to the last gate's opening.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from steps.journal import Journal, SessionRow, TargetRow
from steps.secrets import redact
from steps.status import SessionStatus, TargetState

if TYPE_CHECKING:
    from steps.driver import DriveOptions
    from steps.due import DueRow
    from steps.engine import Engine, RollbackPlan, Session
    from steps.inventory import Inventory

ROTATION = "aws-iam-access-key"
OFFBOARDING = "aws-iam-user-offboarding"
DEFAULT_CONCURRENCY = 4
EXIT_DONE, EXIT_FAILED, EXIT_STOPPED = 0, 1, 3

log = logging.getLogger("handrail.campaign")


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One line of a plan: run `runbook` on IAM user `user`, with `inputs`, because `why`."""

    runbook: str
    user: str
    why: str
    inputs: dict[str, str] = field(default_factory=dict)

    def as_plan(self) -> dict[str, Any]:
        return {"runbook": self.runbook, "target": self.user, "inputs": dict(self.inputs), "why": self.why}


class PlanError(ValueError):
    """A plan that cannot run (one line)."""


def check_plan(targets: list[Target]) -> None:
    """One session per IAM user (two would only meet at the user's lock), and each
    target's inputs as its runbook takes them: a name no session could start with is bad
    input before the campaign is recorded, not a failed target after."""
    from steps.loader import load
    from steps.text import shown

    seen: dict[str, Target] = {}
    for t in targets:
        if t.user in seen:
            raise PlanError(f"{t.user} is in the plan twice ({seen[t.user].runbook} and {t.runbook}): one session per IAM user")
        seen[t.user] = t
    for t in targets:
        runbook = load(t.runbook)
        for name, value in {"target_user": t.user, **t.inputs}.items():
            spec = runbook.inputs.get(name)
            if spec is None:
                continue
            if name == "target_user" and not value.strip():
                raise PlanError("an IAM user name is empty: name the user to rotate")
            if spec.choices and value not in spec.choices:
                raise PlanError(f"{shown(t.user)}: input {name!r}: {shown(value)} is not one of {', '.join(spec.choices)}")
            if spec.pattern and not re.fullmatch(spec.pattern, value):
                raise PlanError(
                    f"input {name!r}: {shown(value)} is not {spec.hint or 'a valid value for: ' + spec.prompt}; nothing started"
                )


def due_targets(rows: Iterable[DueRow], cadence_days: float, *, runbook: str = ROTATION) -> list[Target]:
    """The due users a campaign rotates: the operator's own user and unreadable ones are left out."""
    return [Target(runbook, r.user, r.why(cadence_days), {"reason": "scheduled"}) for r in rows if r.rotatable]


def offboard_targets(inventory: Inventory, person: str) -> list[Target]:
    """Someone leaves: their own IAM users are offboarded (contained, then removed), and
    every other pair they could read is rotated (their blast radius)."""
    own = inventory.person(person).iam_users
    return [Target(OFFBOARDING, u, f"{person}'s own IAM user: contain it, then remove it") for u in own] + [
        Target(ROTATION, u, f"{person} could read its pair (blast radius)", {"reason": "offboarding"})
        for u in inventory.blast_radius(person)
        if u not in own
    ]


def user_targets(users: Iterable[str], *, runbook: str = ROTATION, reason: str = "operator-initiated") -> list[Target]:
    return [Target(runbook, u, "named on the command line", {"reason": reason}) for u in users]


def create(
    engine: Engine,
    targets: list[Target],
    *,
    name: str,
    kind: str,
    mode: str,
    account: str,
    operator_arn: str,
    options: dict[str, Any] | None = None,
    campaign_id: str | None = None,
    world: tuple[str | None, float | None] = (None, None),
) -> str:
    """Record a confirmed plan as a campaign (journal and audit log); returns its id
    (`campaign_id`, else a new one). Training gives its shared world (snapshot, clock
    offset), saved in the same transaction: a campaign killed before its first session
    can still be resumed."""
    check_plan(targets)
    fixed = {"id": campaign_id} if campaign_id else {}
    row = engine.journal.create_campaign(
        **fixed,
        world=world[0],
        sim_offset=world[1],
        name=name,
        kind=kind,
        mode=mode,
        targets=[t.as_plan() for t in targets],
        account=account,
        actor=f"{engine.os_user} as {operator_arn}",
        options=options or {},
    )
    engine.audit.append(
        "campaign.started",
        actor=operator_arn,
        context={
            "campaign": row.id,
            "name": name,
            "kind": kind,
            "mode": mode,
            "account": account,
            "targets": [{"user": t.user, "runbook": t.runbook, "why": t.why} for t in targets],
        },
    )
    return row.id


# -- where a target stands --------------------------------------------------------------------


@dataclass
class TargetResult:
    position: int
    runbook: str
    user: str
    why: str
    state: TargetState
    session_id: str | None = None
    detail: str = ""
    facts: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "user": self.user,
            "runbook": self.runbook,
            "why": self.why,
            "state": self.state,
            "session": self.session_id,
            "detail": self.detail,
            "old_key_id": self.facts.get("old_key_id"),
            "new_key_id": self.facts.get("new_key_id"),
        }


def state_of(target: TargetRow, session: SessionRow | None) -> TargetState:
    """The session's status says where a started target stands; the target row, one without."""
    if session is not None:
        return TargetState.of(session.status)
    state = TargetState(target.state)
    return TargetState.PLANNED if state is TargetState.RUNNING else state  # a process died before it started one


def exit_code(states: Iterable[TargetState]) -> int:
    """0 when every target ended, 1 when any failed or is blocked, else 3 (waiting at a
    gate or a confirmation, refused, or not started)."""
    states = list(states)
    if any(s.failing for s in states):
        return EXIT_FAILED
    if all(s.ended for s in states):
        return EXIT_DONE
    return EXIT_STOPPED


@dataclass
class Summary:
    campaign_id: str
    name: str
    kind: str
    mode: str
    account: str
    created_at: str
    results: list[TargetResult]

    @property
    def counts(self) -> Counter[str]:
        return Counter(str(r.state) for r in self.results)

    @property
    def ended(self) -> bool:
        return all(r.state.ended for r in self.results)

    @property
    def code(self) -> int:
        return exit_code(r.state for r in self.results)

    def message(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts.items()))
        where = "ended" if self.ended else "open"
        return f"campaign {self.campaign_id}: {len(self.results)} target(s), {counts or 'none'}; {where}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "name": self.name,
            "kind": self.kind,
            "mode": self.mode,
            "account": self.account,
            "created_at": self.created_at,
            "ended": self.ended,
            "exit_code": self.code,
            "counts": dict(sorted(self.counts.items())),
            "targets": [r.as_dict() for r in self.results],
        }


def summary(journal: Journal, campaign_id: str) -> Summary:
    """Where a campaign stands, from the journal alone (three queries, whatever its size)."""
    row = journal.campaign(campaign_id)
    sessions = journal.campaign_sessions(campaign_id)
    facts = journal.campaign_facts(campaign_id, ("old_key_id", "new_key_id"))
    results = []
    for t in journal.targets(campaign_id):
        session = sessions.get(t.session_id or "")
        results.append(
            TargetResult(
                t.position, t.runbook, t.target, t.why, state_of(t, session), t.session_id, t.detail, facts.get(t.session_id or "", {})
            )
        )
    return Summary(row.id, row.name, row.kind, row.mode, row.account, row.created_at, results)


# -- running ----------------------------------------------------------------------------------


class Opener(Protocol):
    """Opens the campaign's sessions (steps.compose.CampaignOpener)."""

    @property
    def simulated(self) -> bool: ...

    def start(self, target: TargetRow) -> Session: ...

    def resume(self, session_id: str, *, recover: bool = True) -> Session: ...

    def reopen(self, row: SessionRow) -> Session: ...

    def save(self, *, force: bool = False) -> None: ...


Progress = Callable[[Counter[str], int], None]
Opened = Callable[[int, "Session"], None]


class Runner:
    """Drives a campaign's targets, `concurrency` at a time.

    `keep_open` (the app's board): every session opened stays open between drives, so a
    person can take a target on in its checklist; `drive` then runs some targets and
    `close` ends them all. `opened(position, session)` is told of each session opened."""

    def __init__(
        self,
        journal: Journal,
        campaign_id: str,
        opener: Opener,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: Progress | None = None,
        keep_open: bool = False,
        opened: Opened | None = None,
    ) -> None:
        if concurrency < 1:
            raise PlanError("--concurrency must be at least 1")
        self.journal, self.campaign_id, self.opener = journal, campaign_id, opener
        self.concurrency = concurrency
        self.keep_open = keep_open
        self._progress = progress
        self._opened = opened
        self._lock = threading.Lock()
        self._progress_lock = threading.Lock()  # one progress report at a time, each of the state it reads
        self._states: dict[int, TargetState] = {}
        self._details: dict[int, str] = {}
        self._sessions: dict[int, Session] = {}
        self._driving: set[int] = set()  # the targets a drive holds now (the board opens none of them)
        self._adopt_orphans()

    def _adopt_orphans(self) -> None:
        """A process killed between starting a target's session and recording it on the
        target left a session (and its lock) the plan does not point at: point at it, so
        the target is resumed (or rolled back), never started a second time."""
        targets = self.journal.targets(self.campaign_id)
        claimed = {t.session_id for t in targets if t.session_id}
        sessions = sorted(self.journal.campaign_sessions(self.campaign_id).values(), key=lambda s: s.created_at)
        for t in targets:
            if t.session_id:
                continue
            found = [s for s in sessions if s.target == t.target and s.id not in claimed]
            if found:
                log.info("campaign %s: target %s adopts session %s", self.campaign_id, t.target, found[-1].id)
                self.journal.update_target(self.campaign_id, t.position, session_id=found[-1].id)

    # -- progress ---------------------------------------------------------------------------

    def _set(self, target: TargetRow, state: TargetState, detail: str | None = None, session: Session | None = None) -> None:
        with self._lock:
            self._states[target.position] = state
            if detail is not None or state is TargetState.RUNNING:
                self._details[target.position] = redact(detail or "")
        fields: dict[str, Any] = {"state": str(state)}
        if detail is not None:
            fields["detail"] = redact(detail)
        if session is not None:
            fields["session_id"] = session.id
        self.journal.update_target(self.campaign_id, target.position, **fields)
        if self._progress is not None:
            # Counted under the progress lock, not before the journal write: the last
            # report is then always the latest state (threads would otherwise race to draw).
            with self._progress_lock:
                with self._lock:
                    counts = Counter(str(s) for s in self._states.values())
                self._progress(counts, len(self._states))

    def where(self) -> dict[int, tuple[TargetState, str]]:
        """Every target's state and its one-line detail, as this runner knows them (memory only)."""
        with self._lock:
            return {p: (s, self._details.get(p, "")) for p, s in self._states.items()}

    def driving(self, position: int) -> bool:
        with self._lock:
            return position in self._driving

    def session(self, position: int) -> Session | None:
        with self._lock:
            return self._sessions.get(position)

    def load(self) -> list[TargetRow]:
        """Where each target stands, from the journal (a runner that has not run yet)."""
        targets = self.journal.targets(self.campaign_id)
        sessions = self.journal.campaign_sessions(self.campaign_id)
        with self._lock:
            for t in targets:
                self._states.setdefault(t.position, state_of(t, sessions.get(t.session_id or "")))
                self._details.setdefault(t.position, t.detail)
        return targets

    def note(self, position: int, state: TargetState, detail: str = "") -> None:
        """A target moved outside a drive (a person ran its steps in the app): recorded."""
        target = next(t for t in self.journal.targets(self.campaign_id) if t.position == position)
        session = self.session(position)
        self._set(target, state, detail, session)

    def open_target(self, position: int) -> Session | None:
        """The target's session (opened, resumed or started), or None with its state and
        one-line reason recorded (refused, failed, held by another session)."""
        target = next(t for t in self.journal.targets(self.campaign_id) if t.position == position)
        return self._open(target)

    def drive(self, positions: Iterable[int], opts: DriveOptions) -> Summary:
        """Drive these targets (the board's "go on"), `concurrency` at a time; targets that
        have ended or that a drive already holds are left alone."""
        wanted = set(positions)
        with self._lock:
            todo = [
                t
                for t in self.journal.targets(self.campaign_id)
                if t.position in wanted and t.position not in self._driving and not self._states.get(t.position, TargetState.PLANNED).ended
            ]
            self._driving.update(t.position for t in todo)
        try:
            self._each(todo, lambda t: self._drive(t, opts))
        finally:
            with self._lock:
                self._driving.difference_update(t.position for t in todo)
            self.opener.save(force=True)
        return summary(self.journal, self.campaign_id)

    def fast_forward_gates(self, positions: Iterable[int] | None = None) -> set[int]:
        """Training: move the shared clock once past the gates of these targets (all by default)."""
        return self._fast_forward_gates(None if positions is None else set(positions))

    # -- the run ----------------------------------------------------------------------------

    def run(self, opts: DriveOptions) -> Summary:
        """Drive every target that has not ended; then, in training with fast-forward, move
        the shared clock once past every observation gate and drive the gated ones on."""
        targets = self.journal.targets(self.campaign_id)
        sessions = self.journal.campaign_sessions(self.campaign_id)
        todo = []
        for t in targets:
            state = state_of(t, sessions.get(t.session_id or ""))
            self._states[t.position] = state
            if not state.ended:
                todo.append(t)
        gate_later = opts.fast_forward and self.opener.simulated
        first = replace(opts, fast_forward=False) if gate_later else opts
        try:
            self._each(todo, lambda t: self._drive(t, first))
            if gate_later:
                gated = self._fast_forward_gates()
                self._each([t for t in todo if t.position in gated], lambda t: self._drive(t, opts))
        finally:
            self.close()
            self.opener.save(force=True)
        return summary(self.journal, self.campaign_id)

    def _each(self, targets: list[TargetRow], work: Callable[[TargetRow], None]) -> None:
        if not targets:
            return
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(targets)), thread_name_prefix="campaign")
        try:
            for _ in pool.map(work, targets):
                pass
        except BaseException:  # Ctrl-C: the sessions in flight drive on to their next stop; the rest never start
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _open(self, target: TargetRow) -> Session | None:
        """The target's session: already open, resumed from the journal, or started."""
        from steps.engine import BindingRefused, Refused
        from steps.journal import LockHeld, SessionBusy
        from steps.roles import RoleRefused
        from steps.wiring import NoSuchUser

        session = self._sessions.get(target.position)
        if session is not None:
            return session
        try:
            if target.session_id:
                row = self.journal.session(target.session_id)
                if row.finished:
                    self._set(target, TargetState.of(row.status))
                    return None
                session = self.opener.resume(target.session_id)
            else:
                session = self.opener.start(target)
        except (LockHeld, SessionBusy) as exc:
            self._set(target, TargetState.STOPPED, _line(exc))
            return None
        except (NoSuchUser, BindingRefused, Refused, RoleRefused) as exc:
            self._set(target, TargetState.REFUSED, _line(exc))
            return None
        except Exception as exc:  # one target's bad input or outage is its own failure
            log.debug("opening %s", target.target, exc_info=True)
            self._set(target, TargetState.FAILED, _line(exc))
            return None
        if not target.session_id:  # recorded now: a kill from here on resumes it
            self.journal.update_target(self.campaign_id, target.position, session_id=session.id)
        with self._lock:
            self._sessions[target.position] = session
        if self._opened is not None:
            self._opened(target.position, session)
        return session

    def _drive(self, target: TargetRow, opts: DriveOptions) -> None:
        from steps.driver import Asker, Printer, drive

        self._set(target, TargetState.RUNNING)
        try:
            session = self._open(target)
            if session is None:
                return
            try:
                _, message = drive(session, opts, Printer(lambda line: None), Asker())
            except Exception as exc:  # the driver maps what it knows; anything else is this target's
                log.debug("driving %s", target.target, exc_info=True)
                self._set(target, TargetState.FAILED, _line(exc), session)
                return
            finally:
                if not self.keep_open:
                    session.wiring.close()  # its adapters (connections); the world and clients stay
            self._set(target, TargetState.of(session.status), self._hint(message, session.id), session)
        finally:
            self.opener.save()

    def _hint(self, message: str, session_id: str) -> str:
        """The driver's way on is one session's; a campaign's sessions go on together."""
        return message.replace(f"`handrail resume {session_id}`", f"`handrail campaign resume {self.campaign_id}`").replace(
            f"`handrail rollback {session_id}`", f"`handrail campaign rollback {self.campaign_id}`"
        )

    def _fast_forward_gates(self, only: set[int] | None = None) -> set[int]:
        """Training: every target waiting at a gate; the shared clock is moved to each
        gate's opening in turn, earliest first, so it moves once in all (each session
        records its own fast-forward in its journal and the audit log)."""
        waiting = []
        with self._lock:
            open_sessions = [(p, s) for p, s in self._sessions.items() if only is None or p in only]
        for position, session in open_sessions:
            current = session.current()
            gate = session.gate_state(current.step) if current is not None else None
            if gate is not None and not gate.open and gate.opens_at is not None:
                waiting.append((gate.opens_at, position, session, current))
        for _, _, session, current in sorted(waiting, key=lambda w: (w[0], w[1])):
            assert current is not None
            gate = session.gate_state(current.step)
            if gate is not None and not gate.open:
                session.fast_forward(current.step.id)
        return {position for _, position, _, _ in waiting}

    # -- rollback ---------------------------------------------------------------------------

    def rollback_plans(self) -> list[tuple[TargetRow, Session | None, RollbackPlan | None, str]]:
        """Every target's way back, opened but not run: (target, session, plan, note)."""
        plans: list[tuple[TargetRow, Session | None, RollbackPlan | None, str]] = []
        for t in self.journal.targets(self.campaign_id):
            if not t.session_id:
                plans.append((t, None, None, "never started: nothing to undo"))
                continue
            row = self.journal.session(t.session_id)
            if row.status in (SessionStatus.ROLLED_BACK, SessionStatus.ABANDONED):
                plans.append((t, None, None, f"already {row.status}"))
                continue
            try:
                session = self.opener.reopen(row) if row.status is SessionStatus.DONE else self.opener.resume(row.id, recover=False)
            except Exception as exc:
                plans.append((t, None, None, f"cannot be opened: {_line(exc)}"))
                continue
            self._sessions[t.position] = session
            plans.append((t, session, session.rollback_plan(), ""))
        return plans

    def rollback(self, plans: list[tuple[TargetRow, Session | None, RollbackPlan | None, str]]) -> tuple[Summary, list[str]]:
        """Run every possible plan, `concurrency` at a time. Returns the campaign as it
        stands and, one line each, the targets that have no way back."""
        from steps.driver import Printer
        from steps.driver import rollback as drive_rollback

        impossible: list[str] = []
        runnable: list[TargetRow] = []
        for t, session, plan, note in plans:
            row = self.journal.session(t.session_id) if t.session_id else None
            self._states[t.position] = TargetState.of(row.status) if row else TargetState(t.state)
            if row is None:
                self._set(t, TargetState.ABANDONED, "nothing was started: nothing to undo")
            elif session is None:
                if note.startswith("cannot"):
                    impossible.append(f"{t.target}: {note}")
            elif plan is not None and not plan.possible:
                impossible.append(f"{t.target}: {plan.reason}")
                self._set(t, TargetState.of(session.status), f"cannot roll back: {plan.reason}", session)
            else:
                runnable.append(t)

        def undo(t: TargetRow) -> None:
            session = self._sessions[t.position]
            self._set(t, TargetState.ROLLING_BACK)
            try:
                _, message = drive_rollback(session, True, Printer(lambda line: None))
                self._set(t, TargetState.of(session.status), message, session)
            except Exception as exc:
                log.debug("rolling back %s", t.target, exc_info=True)
                self._set(t, TargetState.ROLLBACK_FAILED, _line(exc), session)
            finally:
                self.opener.save()

        try:
            self._each(runnable, undo)
        finally:
            self.close()
            self.opener.save(force=True)
        return summary(self.journal, self.campaign_id), impossible

    def close(self) -> None:
        """Close every session this runner opened (also when a rollback is not confirmed)."""
        for session in self._sessions.values():
            try:
                session.close()
            except Exception:
                log.exception("closing session %s", session.id)
        self._sessions.clear()


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)
