"""A second operator's approval of one step: checked, then recorded in the journal and
the audit log, where the session's own process reads it (steps.engine, `Needs.APPROVAL`).

The approver is another STS principal than the session's operator (self-approval is
refused); with roles in force, they must hold the role the session needed. Approvals
expire (default 1 h, the roles file's `approvals.expire_after`). Everything goes
through the journal's interface, so a shared journal carries approvals between machines.
"""

from __future__ import annotations

from dataclasses import dataclass

from steps.audit import Audit
from steps.engine import Binding, EngineError, check_reason
from steps.journal import ApprovalRow, Journal, SessionRow
from steps.loader import load
from steps.model import Step, parse_duration
from steps.roles import DEFAULT_APPROVAL_TTL, Governance, GroupsOf, approver_may
from steps.status import Mode, StepStatus

MAX_TTL = 24 * 3600.0


class ApprovalRefused(Exception):
    """This identity may not approve (its own session, or the role is missing): exit 3."""


@dataclass(frozen=True)
class Grant:
    session: SessionRow
    step_id: str
    approver: str
    account: str
    reason: str
    expires_in: float | None = None  # None: the roles' default


def needs_second_operator(row: SessionRow, step: Step) -> bool:
    """Does this step of this session wait for a second operator (as the engine decides)?"""
    if row.mode == Mode.DRY_RUN:
        return False
    governance = row.options.get("governance") or {}
    return step.approval == "second-operator" or (step.irreversible and bool(governance.get("approvals_irreversible")))


def operators(journal: Journal, row: SessionRow) -> set[str]:
    """Every identity that has driven the session: none of them is a second operator."""
    found = set()
    binding = Binding.of(row)
    if binding is not None:
        found.add(binding.operator_arn)
    for event in journal.events(row.id):
        if event.kind == "note" and event.summary.startswith("resumed by "):
            found.add(event.summary.removeprefix("resumed by ").split(", started by")[0])
    return found


def expiry(text: str | None, governance: dict[str, object]) -> float:
    if text is None:
        ttl = governance.get("approval_ttl")
        return float(ttl) if isinstance(ttl, (int, float)) else DEFAULT_APPROVAL_TTL
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise EngineError(f"--expires: {exc}") from None
    if not 0 < seconds <= MAX_TTL:
        raise EngineError(f"--expires: {text!r} must be longer than 0s and at most 24h")
    return seconds


def grant(journal: Journal, audit: Audit, request: Grant, governance: Governance, groups_of: GroupsOf | None, os_user: str) -> ApprovalRow:
    """Record the approval, or raise EngineError (bad input, exit 2) / ApprovalRefused (exit 3).
    Everything is checked before anything is written."""
    row = request.session
    reason = check_reason(request.reason, "an approval")
    if row.finished:
        raise EngineError(f"session {row.id} is {row.status}: nothing to approve")
    runbook = load(row.runbook_path)
    try:
        step = runbook.step(request.step_id)
    except KeyError:
        raise EngineError(f"session {row.id}: runbook {runbook.id} has no step {request.step_id!r}") from None
    if not needs_second_operator(row, step):
        raise EngineError(f"session {row.id}: step {step.number} ({step.id}) does not wait for a second operator")
    final = [e.status for e in journal.events(row.id) if e.step_id == step.id and e.kind in ("step", "undone", "reopened")]
    if final and final[-1] in (StepStatus.DONE, StepStatus.UNDONE):
        raise EngineError(f"session {row.id}: step {step.number} ({step.id}) has already run ({final[-1]})")
    recorded = row.options.get("governance") or {}
    expires_in = request.expires_in if request.expires_in is not None else expiry(None, recorded)
    context = {"step": step.id, "approver": request.approver, "reason": reason}
    if request.approver in operators(journal, row):
        why = (
            f"refused: {request.approver} operates session {row.id}; the approval must come from another identity "
            "(another IAM user, role or SSO user); nothing recorded"
        )
        audit.append("approval.refused", session=row.id, actor=request.approver, context={**context, "why": "self-approval"})
        raise ApprovalRefused(why)
    lacking = approver_may(governance, request.approver, recorded.get("needed"), groups_of)
    if lacking:
        audit.append("approval.refused", session=row.id, actor=request.approver, context={**context, "why": lacking})
        raise ApprovalRefused(lacking)
    approval = journal.add_approval(
        row.id, step.id, approver=request.approver, account=request.account, reason=reason, expires_in=expires_in, os_user=os_user
    )
    journal.add_event(
        row.id,
        "approval",
        step_id=step.id,
        status="approved",
        summary=f"approved by {approval.approver} until {approval.expires_at}: {reason}",
    )
    audit.append(
        "approval.granted",
        session=row.id,
        actor=request.approver,
        context={**context, "account": request.account, "expires_at": approval.expires_at, "os_user": os_user, "approval": approval.id},
    )
    return approval
