"""One rotation per IAM user, across machines: a mark on the user in AWS itself.

The journal's lock only sees sessions that share the journal. Before a key is created,
the session tags the IAM user (session, host, expiry), waits out IAM's consistency,
reads the tags back, and backs off if another session's mark won (tags have no
compare-and-set). Another unexpired mark refuses; an expired one is taken over only by
typing that session's id (audited). The mark goes when the session ends.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from steps.actions import action
from steps.actions import evidence as trail
from steps.actions.base import ActionFailed, ActionRefused, Outcome, Params, Preview, StepContext
from steps.aws import aws_error
from steps.clock import iso, parse_iso

TAG = "handrail-rotation"


@dataclass(frozen=True)
class Mark:
    session: str
    host: str
    expires: datetime

    def value(self) -> str:
        # IAM tag values allow letters, digits, spaces and _.:/=+-@ only.
        return f"session={self.session} host={self.host} expires={iso(self.expires)}"

    @classmethod
    def parse(cls, value: str) -> Mark | None:
        fields = dict(part.split("=", 1) for part in value.split() if "=" in part)
        try:
            return cls(fields["session"], fields.get("host", "?"), parse_iso(fields["expires"]))
        except (KeyError, ValueError):
            return None

    def describe(self, now: datetime) -> str:
        state = "expired" if self.expired(now) else "expires"
        return f"session {self.session} on host {self.host} ({state} {iso(self.expires)})"

    def expired(self, now: datetime) -> bool:
        return now >= self.expires


class ClaimParams(Params):
    # Long enough for the observation gate: a session waits 24 h before its delete.
    expires_after: float = 48 * 3600
    # IAM's eventual consistency before the mark is read back.
    settle: float = 5.0


def _host() -> str:
    return socket.gethostname().split(".")[0] or "unknown-host"


def _read(ctx: StepContext, user: str) -> Mark | None:
    try:
        tags = ctx.wiring.aws_client("iam").list_user_tags(UserName=user)["Tags"]
    except Exception as exc:
        raise ActionFailed(f"iam list-user-tags {user}: {aws_error(exc)}") from None
    value = next((t["Value"] for t in tags if t["Key"] == TAG), None)
    return Mark.parse(value) if value is not None else None


def _foreign(ctx: StepContext, user: str) -> Mark | None:
    mark = _read(ctx, user)
    return mark if mark is not None and mark.session != ctx.session_id else None


def _claim_preview(ctx: StepContext) -> Preview:
    user = ctx.value("target_user")
    now = ctx.now()
    other = _foreign(ctx, user)
    if other is None:
        return Preview([f"will tag {user} with {TAG}: this session, this host, an expiry"])
    if not other.expired(now):
        return Preview([f"{user} is marked by another rotation: {other.describe(now)}; this step will refuse"])
    return Preview(
        [
            f"{user} carries an expired mark: {other.describe(now)}.",
            "That session may have died; taking its mark over is recorded in the audit log.",
        ],
        confirm="typed",
        expect=other.session,
        prompt=f"type {other.session} to take over its expired mark",
    )


@action(
    "iam.claim_user",
    title="Mark the IAM user as being rotated",
    command="aws iam tag-user --user-name {target_user} --tags Key=handrail-rotation,Value='session=… host=… expires=…'",
    needs=("target_user",),
    mutates=True,
    params=ClaimParams,
    preview=_claim_preview,
)
def claim_user(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    params: ClaimParams = ctx.params
    now = ctx.now()
    evidence: list[str] = []
    other = _foreign(ctx, user)
    if other is not None and not other.expired(now):
        raise ActionRefused(
            f"another rotation of {user} is in flight: {other.describe(now)}",
            [f"tag {TAG} on {user}: {other.value()}"],
            remedy=f"let session {other.session} on {other.host} finish, or roll it back there",
        )
    if other is not None:
        if (ctx.answer or "").strip() != other.session:
            raise ActionRefused(
                f"{user} carries the expired mark of session {other.session} on {other.host}: taking it over needs its id typed",
                remedy=f"run the step again and type {other.session}",
            )
        evidence.append(f"took over the expired mark of {other.describe(now)} (typed)")
        if ctx.audit is not None:
            ctx.audit.append(
                "claim.taken_over",
                session=ctx.session_id,
                actor=ctx.actor,
                context={"iam_user": user, "previous": other.value()},
            )
    mine = Mark(ctx.session_id, _host(), now + timedelta(seconds=params.expires_after))
    iam = ctx.wiring.aws_client("iam")
    try:
        iam.tag_user(UserName=user, Tags=[{"Key": TAG, "Value": mine.value()}])
    except Exception as exc:
        raise ActionFailed(f"iam tag-user {user}: {aws_error(exc)}", evidence) from None
    trail.expect(ctx, "TagUser", user)
    evidence.append(f"tagged {user}: {TAG}={mine.value()}")
    # No compare-and-set: the last writer wins, so wait out IAM's consistency and read it back.
    ctx.clock.poll(lambda: None, deadline=params.settle, interval=1.0, until=lambda _: False, progress=ctx.progress, what="IAM consistency")
    now = ctx.now()
    winner = _read(ctx, user)
    if winner is None or winner.session != ctx.session_id:
        raise ActionRefused(
            f"another rotation of {user} marked it at the same time and won: {winner.describe(now) if winner else 'the mark is gone'}",
            evidence,
            remedy="let the other session finish; nothing of this session changed the user",
        )
    evidence.append(f"read back after {params.settle:g} s: the mark is this session's")
    return Outcome.done(f"{user} is marked by this session (tag {TAG}) until {iso(mine.expires)}", evidence, claim=mine.value())


@action(
    "iam.release_claim",
    title="Remove this session's mark from the IAM user",
    command="aws iam untag-user --user-name {target_user} --tag-keys handrail-rotation",
    needs=("target_user",),
    mutates=True,
)
def release_claim(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    try:
        mark = _read(ctx, user)
    except ActionFailed as exc:
        if "NoSuchEntity" in exc.summary:  # the user is gone (offboarded): so is its mark
            return Outcome.done(f"{user} no longer exists: no mark to remove")
        raise
    if mark is None or mark.session != ctx.session_id:
        return Outcome.done(f"{user} carries no mark of this session: nothing to remove")
    try:
        ctx.wiring.aws_client("iam").untag_user(UserName=user, TagKeys=[TAG])
    except Exception as exc:
        raise ActionFailed(f"iam untag-user {user}: {aws_error(exc)}") from None
    trail.expect(ctx, "UntagUser", user)
    return Outcome.done(f"removed the mark of this session from {user}")
