"""Campaigns for the app's board: what it offers, how a plan is made, confirmed and
driven, and where each target stands.

Plain Python, no textual: the board calls these from thread workers (a training fleet
imports moto and builds a world; every drive talks to AWS). What the board reads on the
UI thread (`rows`) comes from memory only, never from the journal or the network.
Sessions are composed in steps.compose and scheduled by steps.campaign; this module
only holds them together for one board.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steps.status import SessionStatus, StepStatus, TargetState

if TYPE_CHECKING:
    from steps.campaign import Runner, Summary, Target
    from steps.compose import Fleet
    from steps.engine import Engine, Session
    from tui.frozen import Frozen

DUE_CADENCE = "30d"


@dataclass(frozen=True)
class CampaignChoice:
    """A training campaign the start screen offers (`handrail offboard` / `campaign start --due`)."""

    id: str
    title: str
    description: str
    kind: str  # offboard | due
    scenario: str
    person: str | None = None

    @property
    def name(self) -> str:
        return f"offboard {self.person}" if self.kind == "offboard" else f"due at {DUE_CADENCE}"


TRAINING_CAMPAIGNS = (
    CampaignChoice(
        "offboard-dana",
        "Offboard dana",
        "dana leaves today: her own IAM user is contained, observed and removed, and the 3 pairs she "
        "could read are rotated, each in its own session (scenario offboarding).",
        "offboard",
        "offboarding",
        person="dana",
    ),
    CampaignChoice(
        "fleet-due",
        "Rotate every due key",
        f"The monthly rotation: every inventory user whose oldest Active key is {DUE_CADENCE} old or more, "
        "each in its own session (scenario fleet).",
        "due",
        "fleet",
    ),
)

KINDS = {"aws-iam-access-key": "rotate", "aws-iam-user-offboarding": "offboard"}


@dataclass(frozen=True)
class Row:
    """One target as the board shows it."""

    position: int
    kind: str
    user: str
    step: str  # where it stands: "7b Delete the old key", "all 14 steps", "-"
    state: TargetState
    detail: str  # one line: why it stopped (refused, blocked, waiting...), or empty
    consumers: str  # "2/2" verified, "0/2", "none", "-"
    why: str
    session_id: str | None
    driving: bool  # the scheduler holds it now
    runbook: str


class Board:
    """One campaign on the board: planned (nothing written) until `start`, then driven.

    `changed(position)` is called from worker threads whenever a target moves (the board
    posts a message from it); it must not block."""

    def __init__(
        self,
        engine: Engine,
        fleet: Fleet,
        *,
        name: str,
        kind: str,
        targets: list[Target] | None = None,
        campaign_id: str | None = None,
        account: str = "",
        operator_arn: str = "",
        options: dict[str, Any] | None = None,
        concurrency: int = 4,
        frozen: Frozen | None = None,
    ) -> None:
        self.engine, self.fleet = engine, fleet
        self.name, self.kind = name, kind
        self.planned = list(targets or [])
        self.campaign_id = campaign_id
        self.account, self.operator_arn = account, operator_arn
        self.options = options or {}
        self.concurrency = concurrency
        self.frozen = frozen
        self.changed: Callable[[int], None] = lambda position: None
        self.runner: Runner | None = None
        self._targets: list[Any] = []  # the journal's TargetRows, once started
        self._consumers: dict[int, int] = {}
        self._lock = threading.Lock()

    # -- making one ---------------------------------------------------------------------------

    @classmethod
    def plan_training(cls, engine: Engine, choice: CampaignChoice, frozen: Frozen | None = None) -> Board:
        """Build the training world and the plan: nothing is written until `start`."""
        from steps import campaign as campaigns
        from steps import compose
        from steps import due as dues
        from steps.model import parse_duration

        factory = frozen.fleet_world if frozen is not None else None
        fleet = compose.open_fleet("training", scenario=choice.scenario, headless=True, world_factory=factory)
        try:
            reader = fleet.wiring()
            account, arn = reader.identity()
            if choice.kind == "offboard":
                assert fleet.inventory is not None and choice.person
                targets = campaigns.offboard_targets(fleet.inventory, choice.person)
                options = {"person": choice.person}
            else:
                seconds = parse_duration(DUE_CADENCE)
                rows = dues.report(reader, cadence=seconds)
                targets = campaigns.due_targets(rows, seconds / 86400)
                options = {"cadence": DUE_CADENCE, "all_users": False}
            campaigns.check_plan(targets)
        except BaseException:
            fleet.close()
            raise
        return cls(
            engine,
            fleet,
            name=choice.name,
            kind=choice.kind,
            targets=targets,
            account=account,
            operator_arn=arn,
            options={**fleet.options(), **options},
            concurrency=frozen.concurrency if frozen is not None else 4,
            frozen=frozen,
        )

    @classmethod
    def reopen(cls, engine: Engine, ref: str, frozen: Frozen | None = None) -> Board:
        """An existing campaign (`handrail board C`): its fleet again, every target as the journal has it."""
        from steps import compose

        row = engine.journal.find_campaign(ref)
        fleet = compose.restore_fleet(row, headless=True)
        board = cls(
            engine,
            fleet,
            name=row.name,
            kind=row.kind,
            campaign_id=row.id,
            account=row.account,
            operator_arn=row.actor,
            options=row.options,
            concurrency=frozen.concurrency if frozen is not None else 4,
            frozen=frozen,
        )
        try:
            board._attach()
        except BaseException:
            fleet.close()
            raise
        return board

    @property
    def started(self) -> bool:
        return self.campaign_id is not None

    @property
    def mode(self) -> str:
        return str(self.fleet.mode)

    def start(self) -> str:
        """The plan was confirmed: record the campaign (journal and audit log)."""
        from steps import campaign as campaigns

        if self.campaign_id is None:
            self.campaign_id = campaigns.create(
                self.engine,
                self.planned,
                name=self.name,
                kind=self.kind,
                mode=self.mode,
                account=self.account,
                operator_arn=self.operator_arn,
                options=self.options,
                campaign_id=self.frozen.campaign_id if self.frozen is not None else None,
                world=self.fleet.snapshot(),
            )
            self._attach()
        return self.campaign_id

    def _attach(self) -> None:
        from steps import campaign as campaigns
        from steps import compose

        assert self.campaign_id is not None
        opener = compose.CampaignOpener(self.engine, self.fleet, self.campaign_id)
        self.runner = campaigns.Runner(
            self.engine.journal,
            self.campaign_id,
            opener,
            concurrency=self.concurrency,
            progress=lambda counts, total: self._all_changed(),
            keep_open=True,
            opened=self._opened,
        )
        self._targets = self.runner.load()

    def _opened(self, position: int, session: Session) -> None:
        """A session opened (in a worker): count its consumers once, and hear its steps."""
        try:
            self._consumers[position] = len(session.wiring.consumers_for(session.target))
        except Exception:
            self._consumers[position] = -1
        session.listen(lambda event: event.kind in ("step", "status", "rollback") and self.changed(position))

    def _all_changed(self) -> None:
        self.changed(-1)

    # -- driving (workers) --------------------------------------------------------------------

    def drive(self, positions: list[int] | None = None) -> Summary:
        """The scheduler drives these targets (all by default) with the plan's yes: each goes
        on to the first thing it may not answer (a typed confirmation, a gate, a block, a
        refusal, a manual step), `concurrency` at a time."""
        from steps.driver import DriveOptions

        assert self.runner is not None
        wanted = [t.position for t in self._targets] if positions is None else positions
        return self.runner.drive(wanted, DriveOptions(yes=True))

    def fast_forward(self) -> list[int]:
        """Training: every target waiting at its gate has it opened (the clock moves once)."""
        assert self.runner is not None
        return sorted(self.runner.fast_forward_gates())

    def session(self, position: int) -> Session | None:
        """The target's session for its checklist: open, resumed or started (None: see its row)."""
        assert self.runner is not None
        return self.runner.open_target(position)

    def settle(self, position: int) -> None:
        """A person moved this target in its checklist: record where it now stands."""
        if self.runner is None:
            return
        session = self.runner.session(position)
        if session is not None:
            self.runner.note(position, TargetState.of(session.status), _stop_line(session))

    def summary(self) -> Summary:
        from steps import campaign as campaigns

        assert self.campaign_id is not None
        return campaigns.summary(self.engine.journal, self.campaign_id)

    def save(self) -> None:
        if self.runner is not None:
            self.runner.opener.save(force=True)

    def close(self) -> None:
        """Every session closed (each stays resumable), the world saved, the fleet closed."""
        try:
            if self.runner is not None:
                self.save()
                self.runner.close()
        finally:
            self.fleet.close()

    # -- what the board shows (memory only: the UI thread calls it) -----------------------------

    def rows(self) -> list[Row]:
        if self.runner is None:
            return [
                Row(n, KINDS.get(t.runbook, t.runbook), t.user, "-", TargetState.PLANNED, "", "-", t.why, None, False, t.runbook)
                for n, t in enumerate(self.planned)
            ]
        where = self.runner.where()
        rows = []
        for t in self._targets:
            state, detail = where.get(t.position, (TargetState.PLANNED, ""))
            session = self.runner.session(t.position)
            step, consumers = "-", "-"
            if session is not None:
                state = _live_state(state, session, self.runner.driving(t.position))
                step = _step_text(session)
                consumers = self._consumers_text(t.position, session)
                if not self.runner.driving(t.position) and state not in (TargetState.RUNNING,):
                    detail = _stop_line(session) or detail
            elif state.ended:
                step = "-"
            rows.append(
                Row(
                    t.position,
                    KINDS.get(t.runbook, t.runbook),
                    t.target,
                    step,
                    state,
                    detail if not state.ended else "",
                    consumers,
                    t.why,
                    session.id if session is not None else t.session_id,
                    self.runner.driving(t.position),
                    t.runbook,
                )
            )
        return rows

    def _consumers_text(self, position: int, session: Session) -> str:
        total = self._consumers.get(position)
        if total is None or total < 0 or not any(s.run == "consumers.verify" for s in session.runbook.steps):
            return "-"
        if total == 0:
            return "none"
        verify = next(s for s in session.runbook.steps if s.run == "consumers.verify")
        status = session.states[verify.id].status
        if session.facts.get("downstream_verified_at") and status is StepStatus.DONE:
            return f"{total}/{total}"
        if status is StepStatus.FAILED:
            return f"✗ of {total}"
        return f"0/{total}"


def counts(rows: list[Row]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[str(r.state)] = out.get(str(r.state), 0) + 1
    return out


def _live_state(state: TargetState, session: Session, driving: bool) -> TargetState:
    """An open session says where it stands (a person may have moved it since the last drive)."""
    if driving:
        return TargetState.RUNNING
    return TargetState.of(session.status)


def _step_text(session: Session) -> str:
    if session.status is SessionStatus.DONE:
        return f"all {len(session.runbook.steps)} steps"
    if session.status.rolling or session.status in (SessionStatus.ROLLED_BACK, SessionStatus.ABANDONED):
        return str(session.status)
    current = session.current()
    if current is None:
        return "-"
    return f"{current.step.number} {current.step.title}"


def _stop_line(session: Session) -> str:
    """Why an open session stands where it does, in one line (a refusal, a block, a gate)."""
    current = session.current()
    if current is None:
        return ""
    if current.status.stopped:
        return f"step {current.step.number} {current.status}: {current.summary}".strip().rstrip(":")
    gate = session.gate_state(current.step)
    if gate is not None and not gate.open:
        return f"step {current.step.number}: {gate.describe()}"
    if session.status is SessionStatus.ACTIVE:
        step = current.step
        what = " (irreversible: its typed confirmation)" if step.irreversible else " (typed confirmation)" if step.typed else ""
        return f"step {step.number} needs you: {step.title}{what}; enter opens it"
    return ""
