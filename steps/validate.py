"""`handrail validate`: the SOP's own validation method, end to end.

"sandbox-rotation (safe: create a test IAM user, rotate, delete)": create a throwaway
IAM user with one key, rotate it with the runbook, then delete the user and its keys,
cleaning up even when the rotation fails. The date and the outcome are recorded in
the journal; `handrail plan` and the app show them.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from steps.aws import aws_error
from steps.driver import DriveOptions, Printer, drive
from steps.journal import now_iso
from steps.secrets import Secret

if TYPE_CHECKING:
    from steps.engine import Engine
    from steps.journal import Journal
    from steps.model import Runbook
    from steps.wiring import Wiring

PREFIX = "handrail-validate-"


@dataclass
class Validation:
    ok: bool
    user: str
    session_id: str | None
    detail: str
    cleanup: list[str]


def throwaway_user() -> str:
    return PREFIX + datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + _random.token_hex(2)


def validate(engine: Engine, runbook_ref: str, wiring: Wiring, printer: Printer, user: str | None = None) -> Validation:
    """Create, rotate, delete. The caller has asked before anything is created."""
    from steps.loader import load

    runbook = load(runbook_ref)
    user = user or throwaway_user()
    started = now_iso()
    account, _ = wiring.identity()
    iam = wiring.aws_client("iam")
    session_id = None
    detail = ""
    ok = False
    cleanup: list[str] = []
    try:
        iam.create_user(UserName=user, Tags=[{"Key": "handrail", "Value": "sandbox-validation"}])
        printer.echo(f"created IAM user {user} (tag handrail=sandbox-validation)")
        key = iam.create_access_key(UserName=user)["AccessKey"]
        Secret(key["SecretAccessKey"], "throwaway secret")  # never shown, never kept: just scrubbed
        printer.echo(f"created its first access key {key['AccessKeyId']}")
        reason = runbook.inputs.get("reason")
        # A runbook whose reasons do not include operator-initiated (offboarding) gets its default.
        why = "operator-initiated" if reason is None or not reason.choices or "operator-initiated" in reason.choices else reason.default
        session = engine.start(runbook_ref, {"target_user": user, "reason": why}, wiring, options={"validation": True})
        session_id = session.id
        simulated = wiring.clock.simulated
        opts = DriveOptions(
            yes=True,
            fast_forward=simulated,
            override_gate=None if simulated else "sandbox validation of the runbook (throwaway user)",
            confirm_irreversible=True,  # the throwaway user's own key: the operator agreed to the whole exercise
        )
        code, detail = drive(session, opts, printer)
        ok = code == 0
        if not ok and session.current() is not None and not session.status.startswith("roll"):
            session.abandon(f"validation stopped: {detail}")
    except Exception as exc:
        detail = f"validation failed before the rotation could finish: {aws_error(exc)}"
    finally:
        cleanup = _delete_user(iam, user)
        for line in cleanup:
            printer.echo(line)
        outcome = "passed" if ok and not any(line.startswith("could not") for line in cleanup) else "failed"
        engine.journal.record_validation(runbook.id, wiring.mode, account, session_id, started, outcome, detail)
        engine.audit.append(
            "runbook.validated",
            session=session_id,
            actor=engine.os_user,
            context={"runbook": runbook.id, "mode": wiring.mode, "account": account, "user": user, "outcome": outcome, "detail": detail},
        )
    return Validation(ok, user, session_id, detail, cleanup)


def _delete_user(iam: Any, user: str) -> list[str]:  # a boto3 IAM client (untyped)
    """Delete every key, then the user. Each failure is said, none stops the others."""
    lines: list[str] = []
    try:
        keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    except Exception as exc:
        if "NoSuchEntity" in aws_error(exc):
            return [f"IAM user {user} does not exist (never created, or deleted by the runbook): nothing to clean up"]
        return [f"could not list {user}'s keys: {aws_error(exc)}; delete the user by hand"]
    for key in keys:
        try:
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
            lines.append(f"deleted key {key['AccessKeyId']} of {user}")
        except Exception as exc:
            lines.append(f"could not delete key {key['AccessKeyId']}: {aws_error(exc)}")
    try:
        iam.delete_user(UserName=user)
        lines.append(f"deleted IAM user {user}")
    except Exception as exc:
        lines.append(f"could not delete IAM user {user}: {aws_error(exc)}; delete it by hand")
    return lines


def describe_last(journal: Journal, runbook: Runbook) -> str:
    """'2026-04-24 (SOP header); handrail: 2026-11-27 training, passed' for plan and the app."""
    header = f"{runbook.header.last_validated or 'never'} (SOP header: {runbook.header.validation_method})"
    last = journal.last_validation(runbook.id)
    if last is None:
        return header + "; never validated with handrail validate"
    return header + f"; handrail validate: {last['finished_at'][:10]} {last['mode']}, {last['outcome']}"
