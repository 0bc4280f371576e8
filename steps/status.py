"""Every status and kind the engine speaks of, as enums: one place for their words.

Stdlib only: the CLI imports `Mode` for its options, and `handrail --help` stays fast.
The values are the words stored in the journal and printed in JSON, so a `StrEnum`
member compares equal to the string read back.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    TRAINING = "training"
    DRY_RUN = "dry-run"
    LIVE = "live"


MODES = tuple(m.value for m in Mode)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"
    REFUSED = "refused"
    SKIPPED = "skipped"
    UNDONE = "undone"
    WOULD_RUN = "would-run"

    @property
    def passed(self) -> bool:
        """Behind us: the session goes on to the next step."""
        return self in (StepStatus.DONE, StepStatus.SKIPPED, StepStatus.WOULD_RUN)

    @property
    def undoable(self) -> bool:
        """It may have changed something, so a rollback undoes it."""
        return self in (StepStatus.DONE, StepStatus.FAILED, StepStatus.BLOCKED)

    @property
    def stopped(self) -> bool:
        """It ran and the session cannot go on without the operator."""
        return self in (StepStatus.FAILED, StepStatus.BLOCKED, StepStatus.REFUSED)


class SessionStatus(StrEnum):
    ACTIVE = "active"
    WAITING = "waiting"
    FAILED = "failed"
    BLOCKED = "blocked"
    REFUSED = "refused"
    DONE = "done"
    ROLLING_BACK = "rolling-back"
    ROLLBACK_FAILED = "rollback-failed"
    ROLLED_BACK = "rolled-back"
    ABANDONED = "abandoned"

    @property
    def finished(self) -> bool:
        """Nothing more can happen to it: no resume, no step, no lock."""
        return self in (SessionStatus.DONE, SessionStatus.ROLLED_BACK, SessionStatus.ABANDONED)

    @property
    def passed(self) -> bool:
        """It ended the way the runbook meant."""
        return self is SessionStatus.DONE

    @property
    def rolling(self) -> bool:
        """A rollback started: no step runs any more, only the rest of the rollback."""
        return self in (SessionStatus.ROLLING_BACK, SessionStatus.ROLLBACK_FAILED)


class Needs(StrEnum):
    """What stands between the operator and running a step now (computed once, by the engine)."""

    RUN = "run"  # nothing to confirm (auto, nothing to do, or a dry run)
    YES = "yes"  # a yes
    TYPED = "typed"  # the key id (or a choice) typed
    MANUAL = "manual"  # the operator does it outside handrail, then says so
    GATE = "gate"  # a time gate is closed
    BLOCKED = "blocked"  # evidence said stop: a retry, or an audited override
    REFUSED = "refused"  # a guard said no: no skip, no override
    APPROVAL = "approval"  # waits for a second operator's `handrail approve`

    @property
    def obstacle(self) -> bool:
        return self in (Needs.GATE, Needs.BLOCKED, Needs.REFUSED, Needs.APPROVAL)


class TargetState(StrEnum):
    """Where one target of a campaign stands: its session's status, or why it has none."""

    PLANNED = "planned"  # no session yet
    RUNNING = "running"
    DONE = "done"
    WAITING = "waiting"  # at a time gate (the observation period)
    STOPPED = "stopped"  # at a confirmation, a typed answer or a manual step; or another session holds the user
    FAILED = "failed"
    BLOCKED = "blocked"
    REFUSED = "refused"
    ROLLING_BACK = "rolling-back"
    ROLLBACK_FAILED = "rollback-failed"
    ROLLED_BACK = "rolled-back"
    ABANDONED = "abandoned"

    @property
    def ended(self) -> bool:
        """Nothing more will happen to it (a campaign ends when all its targets have)."""
        return self in (TargetState.DONE, TargetState.ROLLED_BACK, TargetState.ABANDONED)

    @property
    def failing(self) -> bool:
        """Exit 1: it failed, or evidence blocked it."""
        return self in (TargetState.FAILED, TargetState.BLOCKED, TargetState.ROLLBACK_FAILED)

    @classmethod
    def of(cls, status: SessionStatus) -> TargetState:
        return {SessionStatus.ACTIVE: cls.STOPPED}.get(status) or cls(status.value)
