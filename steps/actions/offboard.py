"""Offboarding an IAM user, in the order AWS documents for deleting one.

snapshot -> contain (reversible: keys Inactive, no console password, sessions issued
before now denied, out of its groups) -> observe -> tear down everything DeleteUser
refuses to delete around -> delete the user -> audit. Each action reads the user first
and acts on what it finds, so running one twice is safe.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from steps import aws
from steps.actions import action
from steps.actions.base import ActionFailed, ActionRefused, Outcome, Preview, StepContext, WaitParams
from steps.aws import AwsCallFailed, KeyInfo, aws_error, error_code
from steps.clock import human_duration, iso, parse_iso, utc

COMPLETED = "user.offboard.completed"
DENY_POLICY = "handrail-offboard-deny-old-sessions"
DENY_SID = "HandrailOffboardDenySessionsIssuedBefore"
# What an endpoint answers for an API it does not have (a stand-in, an old partition).
_UNSUPPORTED = frozenset({"InvalidAction", "NotImplemented", "UnknownOperation", "UnknownOperationException", "UnsupportedOperation"})


def _iam(ctx: StepContext) -> Any:
    return ctx.wiring.aws_client("iam")


def _call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """One IAM call; its failure is the step's, in one line."""
    try:
        return fn(**kwargs)
    except Exception as exc:
        raise ActionFailed(f"iam {what}: {aws_error(exc)}") from None


def _pages(ctx: StepContext, operation: str, key: str, **kwargs: Any) -> list[Any]:
    what = operation.replace("_", "-")
    try:
        pages = _iam(ctx).get_paginator(operation).paginate(**kwargs)
        return [item for page in pages for item in page[key]]
    except Exception as exc:
        raise ActionFailed(f"iam {what}: {aws_error(exc)}") from None


@contextmanager
def _step_fails() -> Iterator[None]:
    try:
        yield
    except AwsCallFailed as exc:
        raise ActionFailed(str(exc)) from None


def _csv(values: list[str] | set[str]) -> str:
    return ",".join(sorted(values))


def _split(text: str | None) -> list[str]:
    return [v for v in (text or "").split(",") if v]


def _union(ctx: StepContext, fact: str, new: list[str]) -> str:
    """A fact listing what this step changed, kept across runs (a resume re-runs the step)."""
    return _csv(set(_split(ctx.facts.get(fact))) | set(new))


def _digest(document: str) -> str:
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()[:12]


# -- what is attached to the user -------------------------------------------------------------


@dataclass
class Attached:
    """Everything attached to an IAM user that DeleteUser refuses to delete around."""

    keys: list[KeyInfo] = field(default_factory=list)
    login_profile: str | None = None  # its CreateDate, or None
    mfa_devices: list[str] = field(default_factory=list)  # serial numbers
    ssh_public_keys: list[tuple[str, str]] = field(default_factory=list)  # (id, status)
    signing_certificates: list[tuple[str, str]] = field(default_factory=list)  # (id, status)
    service_credentials: list[tuple[str, str, str]] | None = field(default_factory=list)  # (id, service, status); None: unsupported
    groups: list[str] = field(default_factory=list)
    inline_policies: dict[str, str] = field(default_factory=dict)  # name -> document (JSON)
    attached_policies: list[str] = field(default_factory=list)  # ARNs
    tags: dict[str, str] = field(default_factory=dict)

    def remaining(self) -> list[str]:
        """What still stands in DeleteUser's way, in AWS's words."""
        out = []
        if self.login_profile:
            out.append("a login profile (console password)")
        if self.keys:
            out.append(f"{len(self.keys)} access key(s)")
        if self.signing_certificates:
            out.append(f"{len(self.signing_certificates)} signing certificate(s)")
        if self.ssh_public_keys:
            out.append(f"{len(self.ssh_public_keys)} SSH public key(s)")
        if self.service_credentials:
            out.append(f"{len(self.service_credentials)} service-specific credential(s)")
        if self.mfa_devices:
            out.append(f"{len(self.mfa_devices)} MFA device(s)")
        if self.inline_policies:
            out.append(f"{len(self.inline_policies)} inline polic(ies)")
        if self.attached_policies:
            out.append(f"{len(self.attached_policies)} attached managed polic(ies)")
        if self.groups:
            out.append(f"membership of {len(self.groups)} group(s)")
        return out

    def as_fact(self) -> str:
        """The snapshot as the journal keeps it (no policy bodies: their digests)."""
        return json.dumps(
            {
                "access_keys": [
                    {"id": k.key_id, "status": k.status, "last_used": iso(k.last_used) if k.last_used else None} for k in self.keys
                ],
                "login_profile": self.login_profile,
                "mfa_devices": self.mfa_devices,
                "ssh_public_keys": [i for i, _ in self.ssh_public_keys],
                "signing_certificates": [i for i, _ in self.signing_certificates],
                "service_specific_credentials": None if self.service_credentials is None else [i for i, _, _ in self.service_credentials],
                "groups": self.groups,
                "inline_policies": {name: _digest(doc) for name, doc in self.inline_policies.items()},
                "attached_policies": self.attached_policies,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def _user_exists(ctx: StepContext, user: str) -> bool:
    try:
        _iam(ctx).get_user(UserName=user)
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return False
        raise ActionFailed(f"iam get-user {user}: {aws_error(exc)}") from None
    return True


def _login_profile(ctx: StepContext, user: str) -> str | None:
    try:
        profile = _iam(ctx).get_login_profile(UserName=user)["LoginProfile"]
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise ActionFailed(f"iam get-login-profile {user}: {aws_error(exc)}") from None
    created = profile.get("CreateDate")
    return iso(utc(created)) if created is not None else "yes"


def _service_credentials(ctx: StepContext, user: str) -> list[tuple[str, str, str]] | None:
    try:
        items = _iam(ctx).list_service_specific_credentials(UserName=user)["ServiceSpecificCredentials"]
    except Exception as exc:
        status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        # A stand-in endpoint that lacks the API answers an error code for it, a 404/501,
        # or a body botocore cannot parse as the answer.
        if error_code(exc) in _UNSUPPORTED or (status in (404, 501) and error_code(exc) != "NoSuchEntity"):
            return None
        if type(exc).__name__ == "ResponseParserError":
            return None
        raise ActionFailed(f"iam list-service-specific-credentials {user}: {aws_error(exc)}") from None
    return [(c["ServiceSpecificCredentialId"], c["ServiceName"], c["Status"]) for c in items]


def _groups(ctx: StepContext, user: str) -> list[str]:
    return sorted(g["GroupName"] for g in _pages(ctx, "list_groups_for_user", "Groups", UserName=user))


def _inline_policies(ctx: StepContext, user: str, with_documents: bool = True) -> dict[str, str]:
    names = _pages(ctx, "list_user_policies", "PolicyNames", UserName=user)
    out = {}
    for name in sorted(names):
        doc = ""
        if with_documents:
            got = _call(f"get-user-policy {name}", _iam(ctx).get_user_policy, UserName=user, PolicyName=name)["PolicyDocument"]
            doc = got if isinstance(got, str) else json.dumps(got, sort_keys=True)
        out[name] = doc
    return out


def _attached(ctx: StepContext, user: str, *, last_used: bool = True) -> Attached:
    with _step_fails():
        keys = aws.list_keys(_iam(ctx), user, with_last_used=last_used, account=ctx.facts.get("account_id", "?"))
    tags = _call(f"list-user-tags {user}", _iam(ctx).list_user_tags, UserName=user)["Tags"]
    return Attached(
        keys=keys,
        login_profile=_login_profile(ctx, user),
        mfa_devices=[d["SerialNumber"] for d in _pages(ctx, "list_mfa_devices", "MFADevices", UserName=user)],
        ssh_public_keys=[(k["SSHPublicKeyId"], k["Status"]) for k in _pages(ctx, "list_ssh_public_keys", "SSHPublicKeys", UserName=user)],
        signing_certificates=[
            (c["CertificateId"], c["Status"]) for c in _pages(ctx, "list_signing_certificates", "Certificates", UserName=user)
        ],
        service_credentials=_service_credentials(ctx, user),
        groups=_groups(ctx, user),
        inline_policies=_inline_policies(ctx, user),
        attached_policies=sorted(p["PolicyArn"] for p in _pages(ctx, "list_attached_user_policies", "AttachedPolicies", UserName=user)),
        tags={t["Key"]: t["Value"] for t in tags},
    )


def _describe(found: Attached, now: Any) -> list[str]:
    lines = [f"access keys ({len(found.keys)}):"] + [f"  {k.describe(now)}" for k in found.keys]
    lines.append(f"login profile (console password): {'created ' + found.login_profile if found.login_profile else 'none'}")
    lines.append(f"MFA devices: {', '.join(found.mfa_devices) or 'none'}")
    lines.append(f"SSH public keys: {', '.join(f'{i} ({s})' for i, s in found.ssh_public_keys) or 'none'}")
    lines.append(f"signing certificates: {', '.join(f'{i} ({s})' for i, s in found.signing_certificates) or 'none'}")
    if found.service_credentials is None:
        lines.append("service-specific credentials: not supported by this endpoint (list-service-specific-credentials)")
    else:
        creds = ", ".join(f"{i} for {svc} ({s})" for i, svc, s in found.service_credentials)
        lines.append(f"service-specific credentials: {creds or 'none'}")
    lines.append(f"groups: {', '.join(found.groups) or 'none'}")
    inline = ", ".join(f"{name} ({_digest(doc)})" for name, doc in found.inline_policies.items())
    lines.append(f"inline policies: {inline or 'none'}")
    lines.append(f"attached managed policies: {', '.join(found.attached_policies) or 'none'}")
    if found.tags:
        lines.append("tags: " + ", ".join(f"{k}={v}" for k, v in sorted(found.tags.items())))
    return lines


# -- 1: pre-checks ----------------------------------------------------------------------------


@action(
    "offboard.pre_checks",
    title="Check the operator and the user to offboard",
    command="aws sts get-caller-identity && aws iam get-user --user-name {target_user}",
    needs=("target_user",),
    produces=("account_id", "operator_arn", "target_arn"),
    mutates=False,
)
def pre_checks(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    try:
        ident = ctx.wiring.aws_client("sts").get_caller_identity()
    except Exception as exc:
        raise ActionFailed(f"cannot tell who you are: sts get-caller-identity: {aws_error(exc)}") from None
    operator, account = ident["Arn"], ident["Account"]
    evidence = [f"operator: {operator} (account {account})"]
    try:
        found = _iam(ctx).get_user(UserName=user)["User"]
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            raise ActionRefused(
                f"IAM user {user!r} does not exist in account {account}",
                evidence,
                remedy="check the user name and the account (it may be offboarded already), then start a new session",
            ) from None
        raise ActionFailed(f"iam get-user {user}: {aws_error(exc)}", evidence) from None
    target = found["Arn"]
    evidence.append(f"target:   {target} (user id {found['UserId']}, created {iso(utc(found['CreateDate']))})")
    if found.get("PasswordLastUsed"):
        evidence.append(f"console password last used {iso(utc(found['PasswordLastUsed']))}")
    if operator == target:
        raise ActionRefused(
            f"you are signed in as {user}, the user being offboarded: deactivating its keys would cut this session off",
            evidence,
            remedy="sign in as a different IAM identity (an administrator) and start a new session",
        )
    person = ctx.inputs.get("person")
    if person:
        evidence.append(f"person offboarded: {person}")
    return Outcome.done(f"offboarding {user} as {operator}", evidence, account_id=account, operator_arn=operator, target_arn=target)


# -- 2: snapshot ------------------------------------------------------------------------------


@action(
    "offboard.snapshot",
    title="Record everything attached to the user",
    command="aws iam list-access-keys / get-login-profile / list-mfa-devices / ... --user-name {target_user}",
    needs=("target_user",),
    produces=("attachments_before", "key_ids_before"),
    mutates=False,
)
def snapshot(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    found = _attached(ctx, user)
    evidence = _describe(found, ctx.now())
    standing = found.remaining()
    summary = f"{user} has " + (", ".join(standing) if standing else "nothing attached") + "; recorded in the journal"
    return Outcome.done(summary, evidence, attachments_before=found.as_fact(), key_ids_before=_csv([k.key_id for k in found.keys]))


# -- 3: contain -------------------------------------------------------------------------------


@action(
    "offboard.deactivate_keys",
    title="Deactivate every access key of the user",
    command="aws iam update-access-key --user-name {target_user} --access-key-id <each key> --status Inactive",
    needs=("target_user",),
    produces=("deactivated_keys", "deactivated_at"),
    mutates=True,
)
def deactivate_keys(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    now = ctx.now()
    keys = _attached_keys(ctx, user)
    evidence: list[str] = []
    changed: list[str] = []
    for key in keys:
        if key.status == "Active":
            with _step_fails():
                aws.set_key_status(_iam(ctx), user, key.key_id, "Inactive")
            changed.append(key.key_id)
            evidence.append(f"{key.key_id}: Active -> Inactive (last used {key.last_used_text(now)})")
        else:
            evidence.append(f"{key.key_id}: already {key.status} (last used {key.last_used_text(now)})")
    if not keys:
        evidence.append(f"{user} has no access key")
    deactivated_at = ctx.facts.get("deactivated_at") or iso(now) if not changed else iso(now)
    outcome = Outcome.done(
        f"deactivated {len(changed)} key(s); {user} has no Active key" if keys else f"{user} has no access key",
        evidence,
        deactivated_keys=_union(ctx, "deactivated_keys", changed),
        deactivated_at=deactivated_at,
    )
    outcome.changed = bool(changed)
    return outcome


def _attached_keys(ctx: StepContext, user: str, last_used: bool = True) -> list[KeyInfo]:
    with _step_fails():
        return aws.list_keys(_iam(ctx), user, with_last_used=last_used, account=ctx.facts.get("account_id", "?"))


@action(
    "offboard.reactivate_keys",
    title="Reactivate the keys this session deactivated",
    command="aws iam update-access-key --user-name {target_user} --access-key-id <each key deactivated> --status Active",
    needs=("target_user", "deactivated_keys"),
    mutates=True,
)
def reactivate_keys(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    keys = {k.key_id: k for k in _attached_keys(ctx, user, last_used=False)}
    evidence: list[str] = []
    for key_id in _split(ctx.facts.get("deactivated_keys")):
        key = keys.get(key_id)
        if key is None:
            raise ActionFailed(f"{key_id} was deleted: it cannot be reactivated", evidence)
        if key.status == "Active":
            evidence.append(f"{key_id}: already Active")
            continue
        with _step_fails():
            aws.set_key_status(_iam(ctx), user, key_id, "Active")
        evidence.append(f"{key_id}: Inactive -> Active")
    return Outcome.done(f"reactivated the keys this session deactivated ({ctx.facts.get('deactivated_keys')})", evidence)


@action(
    "offboard.delete_login_profile",
    title="Delete the console password (login profile)",
    command="aws iam delete-login-profile --user-name {target_user}",
    needs=("target_user",),
    produces=("login_profile_deleted_at",),
    mutates=True,
)
def delete_login_profile(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    created = _login_profile(ctx, user)
    if created is None:
        outcome = Outcome.done(f"{user} has no login profile: no console password to remove")
        outcome.changed = False
        return outcome
    try:
        _iam(ctx).delete_login_profile(UserName=user)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise ActionFailed(f"iam delete-login-profile {user}: {aws_error(exc)}") from None
    return Outcome.done(
        f"deleted {user}'s login profile: no console sign-in",
        [f"login profile created {created}: deleted; the password cannot be restored (a new one can be set)"],
        login_profile_deleted_at=iso(ctx.now()),
    )


def _deny_document(before: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": DENY_SID,
                    "Effect": "Deny",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"DateLessThan": {"aws:TokenIssueTime": before}},
                }
            ],
        },
        separators=(",", ":"),
    )


def _deny_before(document: str) -> str | None:
    try:
        data = json.loads(document)
        for statement in data.get("Statement", []):
            if statement.get("Sid") == DENY_SID:
                return str(statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


@action(
    "offboard.deny_sessions",
    title="Deny every session issued before now",
    command=f"aws iam put-user-policy --user-name {{target_user}} --policy-name {DENY_POLICY} --policy-document "
    '\'{{"Statement":[{{"Effect":"Deny","Action":"*","Resource":"*","Condition":{{"DateLessThan":{{"aws:TokenIssueTime":"<now>"}}}}}}]}}\'',
    needs=("target_user",),
    produces=("deny_policy", "deny_before"),
    mutates=True,
)
def deny_sessions(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    existing = _inline_policies(ctx, user)
    if DENY_POLICY in existing and _deny_before(existing[DENY_POLICY]):
        before = _deny_before(existing[DENY_POLICY]) or ""
        outcome = Outcome.done(
            f"{DENY_POLICY} is already in place (denies sessions issued before {before})",
            [f"inline policy {DENY_POLICY}: Deny * when aws:TokenIssueTime < {before}"],
            deny_policy=DENY_POLICY,
            deny_before=before,
        )
        outcome.changed = False
        return outcome
    before = iso(ctx.now())
    _call(
        f"put-user-policy {DENY_POLICY}",
        _iam(ctx).put_user_policy,
        UserName=user,
        PolicyName=DENY_POLICY,
        PolicyDocument=_deny_document(before),
    )
    return Outcome.done(
        f"denied every session of {user} issued before {before}",
        [
            f"inline policy {DENY_POLICY}: Deny * on * when aws:TokenIssueTime < {before}",
            "temporary credentials (console sessions, GetSessionToken) issued before now stop working; the keys are Inactive already",
        ],
        deny_policy=DENY_POLICY,
        deny_before=before,
    )


@action(
    "offboard.remove_deny_policy",
    title="Remove the deny-old-sessions policy",
    command=f"aws iam delete-user-policy --user-name {{target_user}} --policy-name {DENY_POLICY}",
    needs=("target_user",),
    mutates=True,
)
def remove_deny_policy(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    if DENY_POLICY not in _inline_policies(ctx, user, with_documents=False):
        return Outcome.done(f"{DENY_POLICY} is not attached to {user}: nothing to remove")
    try:
        _iam(ctx).delete_user_policy(UserName=user, PolicyName=DENY_POLICY)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise ActionFailed(f"iam delete-user-policy {DENY_POLICY}: {aws_error(exc)}") from None
    return Outcome.done(f"removed {DENY_POLICY} from {user}: its sessions are no longer denied")


@action(
    "offboard.leave_groups",
    title="Remove the user from its groups",
    command="aws iam list-groups-for-user --user-name {target_user} && aws iam remove-user-from-group --user-name {target_user} --group-name <each group>",
    needs=("target_user",),
    produces=("groups_left",),
    mutates=True,
)
def leave_groups(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    groups = _groups(ctx, user)
    evidence: list[str] = []
    for group in groups:
        try:
            _iam(ctx).remove_user_from_group(UserName=user, GroupName=group)
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise ActionFailed(f"iam remove-user-from-group {group}: {aws_error(exc)}", evidence) from None
        evidence.append(f"removed from group {group}")
    outcome = Outcome.done(
        f"removed {user} from {len(groups)} group(s)" if groups else f"{user} is in no group",
        evidence,
        groups_left=_union(ctx, "groups_left", groups),
    )
    outcome.changed = bool(groups)
    return outcome


@action(
    "offboard.rejoin_groups",
    title="Put the user back in the groups this session removed it from",
    command="aws iam add-user-to-group --user-name {target_user} --group-name <each group left>",
    needs=("target_user", "groups_left"),
    mutates=True,
)
def rejoin_groups(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    current = set(_groups(ctx, user))
    evidence: list[str] = []
    for group in _split(ctx.facts.get("groups_left")):
        if group in current:
            evidence.append(f"already in {group}")
            continue
        _call(f"add-user-to-group {group}", _iam(ctx).add_user_to_group, UserName=user, GroupName=group)
        evidence.append(f"added back to {group}")
    return Outcome.done(f"{user} is back in {ctx.facts.get('groups_left', '').replace(',', ', ')}", evidence)


# -- 4: observe -------------------------------------------------------------------------------


def _uses_after(keys: list[KeyInfo], since: str) -> list[KeyInfo]:
    moment = parse_iso(since)
    return [k for k in keys if k.last_used is not None and k.last_used > moment]


def _observe_lines(ctx: StepContext, user: str) -> tuple[list[str], list[KeyInfo], list[KeyInfo]]:
    now = ctx.now()
    keys = _attached_keys(ctx, user)
    deactivated = ctx.fact("deactivated_at")
    lines = [f"keys deactivated at {deactivated} ({human_duration((now - parse_iso(deactivated)).total_seconds())} ago):"]
    lines += [f"  {k.key_id}  {k.status:<8}  last used {k.last_used_text(now)}" for k in keys]
    return lines, _uses_after(keys, deactivated), [k for k in keys if k.status == "Active"]


def _observe_preview(ctx: StepContext) -> Preview:
    lines, used, active = _observe_lines(ctx, ctx.value("target_user"))
    if used or active:
        lines.append("a key was used after its deactivation, or is Active: this step will block")
    return Preview(lines)


@action(
    "offboard.check_last_use",
    title="Show each deactivated key's last use; stop if one was used since",
    command="aws iam get-access-key-last-used --access-key-id <each key of {target_user}>",
    needs=("target_user", "deactivated_at"),
    produces=("observed_at",),
    mutates=False,
    preview=_observe_preview,
)
def check_last_use(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    evidence, used, active = _observe_lines(ctx, user)
    found = _attached(ctx, user, last_used=False)
    if found.login_profile:
        evidence.append(f"WARNING: {user} has a login profile again (created {found.login_profile}): the teardown deletes it")
    if found.groups:
        evidence.append(f"WARNING: {user} is in group(s) again: {', '.join(found.groups)}: the teardown removes them")
    if DENY_POLICY not in found.inline_policies and ctx.facts.get("deny_policy"):
        evidence.append(f"WARNING: {DENY_POLICY} was removed since containment")
    if (used or active) and not ctx.override:
        problems = [f"{k.key_id} was used at {iso(k.last_used)}" for k in used if k.last_used] + [f"{k.key_id} is Active" for k in active]
        return Outcome.blocked(
            f"{'; '.join(problems)}, after the keys were deactivated at {ctx.fact('deactivated_at')}: something still holds "
            f"{user}'s credentials. Find it (CloudTrail shows the caller) before tearing down; override with a reason to go on",
            evidence,
        )
    if used or active:
        evidence.append(f"use after deactivation overridden: {ctx.override}")
    else:
        evidence.append("no key was used after its deactivation, and none is Active")
    return Outcome.done(f"observed {user} contained: nothing used its keys since the deactivation", evidence, observed_at=iso(ctx.now()))


# -- 5: tear down -----------------------------------------------------------------------------


def _list_preview(what: str, items: Callable[[StepContext, str], list[str]]) -> Callable[[StepContext], Preview]:
    def preview(ctx: StepContext) -> Preview:
        user = ctx.value("target_user")
        found = items(ctx, user)
        if not found:
            return Preview([f"{user} has no {what}: nothing to do"], confirm="auto", nothing_to_do=True)
        return Preview([f"will delete {len(found)} {what}: {', '.join(found)}", "IRREVERSIBLE: what is deleted cannot be brought back"])

    return preview


def _key_ids(ctx: StepContext, user: str) -> list[str]:
    return [k.key_id for k in _attached_keys(ctx, user, last_used=False)]


@action(
    "offboard.delete_access_keys",
    title="Delete every access key (after their last use)",
    command="aws iam get-access-key-last-used --access-key-id <each key> && aws iam delete-access-key --user-name {target_user} --access-key-id <each key>",
    needs=("target_user", "deactivated_at"),
    produces=("deleted_keys",),
    mutates=True,
    preview=_list_preview("access key(s)", _key_ids),
)
def delete_access_keys(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    now = ctx.now()
    keys = _attached_keys(ctx, user)
    evidence = [f"{k.key_id}  {k.status}  last used {k.last_used_text(now)}" for k in keys]
    # Uses after the observation step were not seen by anyone yet.
    since = ctx.facts.get("observed_at") or ctx.fact("deactivated_at")
    used, active = _uses_after(keys, since), [k for k in keys if k.status == "Active"]
    if (used or active) and not ctx.override:
        problems = [f"{k.key_id} was used at {iso(k.last_used)}" for k in used if k.last_used] + [
            f"{k.key_id} is Active again" for k in active
        ]
        return Outcome.blocked(
            f"{'; '.join(problems)} (since {since}): find out who before deleting; override with a reason to delete anyway", evidence
        )
    if used or active:
        evidence.append(f"overridden: {ctx.override}")
    for key in keys:
        with _step_fails():
            aws.delete_key(_iam(ctx), user, key.key_id)
        evidence.append(f"deleted {key.key_id}")
    outcome = Outcome.done(
        f"deleted {len(keys)} access key(s)" if keys else f"{user} has no access key left",
        evidence,
        deleted_keys=_union(ctx, "deleted_keys", [k.key_id for k in keys]),
    )
    outcome.changed = bool(keys)
    return outcome


def _delete_each(
    ctx: StepContext, what: str, items: list[str], delete: Callable[[str], None], fact: str, missing_ok: bool = True
) -> Outcome:
    user = ctx.value("target_user")
    evidence: list[str] = []
    for item in items:
        try:
            delete(item)
        except Exception as exc:
            if not (missing_ok and error_code(exc) == "NoSuchEntity"):
                raise ActionFailed(f"deleting {what} {item}: {aws_error(exc)}", evidence) from None
        evidence.append(f"deleted {what} {item}")
    outcome = Outcome.done(
        f"deleted {len(items)} {what}(s)" if items else f"{user} has no {what} left", evidence, **{fact: _union(ctx, fact, items)}
    )
    outcome.changed = bool(items)
    return outcome


def _certificate_ids(ctx: StepContext, user: str) -> list[str]:
    return [c["CertificateId"] for c in _pages(ctx, "list_signing_certificates", "Certificates", UserName=user)]


@action(
    "offboard.delete_signing_certificates",
    title="Delete the user's signing certificates",
    command="aws iam delete-signing-certificate --user-name {target_user} --certificate-id <each certificate>",
    needs=("target_user",),
    produces=("deleted_certificates",),
    mutates=True,
    preview=_list_preview("signing certificate(s)", _certificate_ids),
)
def delete_signing_certificates(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    iam = _iam(ctx)
    return _delete_each(
        ctx,
        "signing certificate",
        _certificate_ids(ctx, user),
        lambda cert: iam.delete_signing_certificate(UserName=user, CertificateId=cert),
        "deleted_certificates",
    )


def _ssh_key_ids(ctx: StepContext, user: str) -> list[str]:
    return [k["SSHPublicKeyId"] for k in _pages(ctx, "list_ssh_public_keys", "SSHPublicKeys", UserName=user)]


@action(
    "offboard.delete_ssh_public_keys",
    title="Delete the user's SSH public keys",
    command="aws iam delete-ssh-public-key --user-name {target_user} --ssh-public-key-id <each key>",
    needs=("target_user",),
    produces=("deleted_ssh_keys",),
    mutates=True,
    preview=_list_preview("SSH public key(s)", _ssh_key_ids),
)
def delete_ssh_public_keys(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    iam = _iam(ctx)
    return _delete_each(
        ctx,
        "SSH public key",
        _ssh_key_ids(ctx, user),
        lambda key: iam.delete_ssh_public_key(UserName=user, SSHPublicKeyId=key),
        "deleted_ssh_keys",
    )


def _service_credential_ids(ctx: StepContext, user: str) -> list[str]:
    return [c for c, _, _ in _service_credentials(ctx, user) or []]


@action(
    "offboard.delete_service_credentials",
    title="Delete the user's service-specific credentials (Git credentials, ...)",
    command="aws iam delete-service-specific-credential --user-name {target_user} --service-specific-credential-id <each credential>",
    needs=("target_user",),
    produces=("deleted_service_credentials",),
    mutates=True,
    preview=_list_preview("service-specific credential(s)", _service_credential_ids),
)
def delete_service_credentials(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    found = _service_credentials(ctx, user)
    if found is None:
        outcome = Outcome.done(
            "service-specific credentials: not supported by this endpoint",
            ["list-service-specific-credentials: not supported by this endpoint; nothing to delete here"],
        )
        outcome.changed = False
        return outcome
    iam = _iam(ctx)
    return _delete_each(
        ctx,
        "service-specific credential",
        [c for c, _, _ in found],
        lambda cred: iam.delete_service_specific_credential(UserName=user, ServiceSpecificCredentialId=cred),
        "deleted_service_credentials",
    )


def _mfa_serials(ctx: StepContext, user: str) -> list[str]:
    return [d["SerialNumber"] for d in _pages(ctx, "list_mfa_devices", "MFADevices", UserName=user)]


@action(
    "offboard.remove_mfa_devices",
    title="Deactivate the user's MFA devices, then delete the virtual ones",
    command="aws iam deactivate-mfa-device --user-name {target_user} --serial-number <each device> && aws iam delete-virtual-mfa-device --serial-number <each virtual device>",
    needs=("target_user",),
    produces=("removed_mfa_devices",),
    mutates=True,
    preview=_list_preview("MFA device(s)", _mfa_serials),
)
def remove_mfa_devices(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    iam = _iam(ctx)
    serials = _mfa_serials(ctx, user)
    evidence: list[str] = []
    for serial in serials:
        try:
            iam.deactivate_mfa_device(UserName=user, SerialNumber=serial)
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise ActionFailed(f"iam deactivate-mfa-device {serial}: {aws_error(exc)}", evidence) from None
        evidence.append(f"deactivated {serial}")
        # A virtual device's ARN has ':mfa/'; a hardware or FIDO device goes back to its owner.
        if ":mfa/" in serial:
            try:
                iam.delete_virtual_mfa_device(SerialNumber=serial)
            except Exception as exc:
                if error_code(exc) != "NoSuchEntity":
                    raise ActionFailed(f"iam delete-virtual-mfa-device {serial}: {aws_error(exc)}", evidence) from None
            evidence.append(f"deleted virtual device {serial}")
        else:
            evidence.append(f"{serial} is a hardware or FIDO device: collect it from the person")
    outcome = Outcome.done(
        f"removed {len(serials)} MFA device(s)" if serials else f"{user} has no MFA device",
        evidence,
        removed_mfa_devices=_union(ctx, "removed_mfa_devices", serials),
    )
    outcome.changed = bool(serials)
    return outcome


@action(
    "offboard.delete_inline_policies",
    title="Delete the user's inline policies (their documents kept in the journal)",
    command="aws iam get-user-policy --user-name {target_user} --policy-name <each> && aws iam delete-user-policy --user-name {target_user} --policy-name <each>",
    needs=("target_user",),
    produces=("deleted_inline_policies", "inline_policy_documents"),
    mutates=True,
)
def delete_inline_policies(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    policies = _inline_policies(ctx, user)
    kept = json.loads(ctx.facts.get("inline_policy_documents") or "{}")
    kept.update(policies)  # documents first, so the undo can put them back
    iam = _iam(ctx)
    outcome = _delete_each(
        ctx, "inline policy", list(policies), lambda name: iam.delete_user_policy(UserName=user, PolicyName=name), "deleted_inline_policies"
    )
    outcome.evidence = [f"{name}: {_digest(doc)} kept in the journal" for name, doc in policies.items()] + outcome.evidence
    outcome.facts["inline_policy_documents"] = json.dumps(kept, sort_keys=True)
    return outcome


@action(
    "offboard.restore_inline_policies",
    title="Put back the inline policies this session deleted",
    command="aws iam put-user-policy --user-name {target_user} --policy-name <each> --policy-document <as recorded>",
    needs=("target_user", "inline_policy_documents"),
    mutates=True,
)
def restore_inline_policies(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    documents: dict[str, str] = json.loads(ctx.fact("inline_policy_documents"))
    current = _inline_policies(ctx, user, with_documents=False)
    evidence: list[str] = []
    for name, doc in documents.items():
        if name in current:
            evidence.append(f"{name}: already attached")
            continue
        _call(f"put-user-policy {name}", _iam(ctx).put_user_policy, UserName=user, PolicyName=name, PolicyDocument=doc)
        evidence.append(f"{name}: put back ({_digest(doc)})")
    return Outcome.done(f"restored {len(documents)} inline polic(ies) from the journal", evidence)


@action(
    "offboard.detach_policies",
    title="Detach the managed policies attached to the user",
    command="aws iam list-attached-user-policies --user-name {target_user} && aws iam detach-user-policy --user-name {target_user} --policy-arn <each>",
    needs=("target_user",),
    produces=("detached_policies",),
    mutates=True,
)
def detach_policies(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    arns = sorted(p["PolicyArn"] for p in _pages(ctx, "list_attached_user_policies", "AttachedPolicies", UserName=user))
    iam = _iam(ctx)
    outcome = _delete_each(
        ctx, "policy attachment", arns, lambda arn: iam.detach_user_policy(UserName=user, PolicyArn=arn), "detached_policies"
    )
    outcome.summary = f"detached {len(arns)} managed polic(ies)" if arns else f"{user} has no managed policy attached"
    return outcome


@action(
    "offboard.reattach_policies",
    title="Attach again the managed policies this session detached",
    command="aws iam attach-user-policy --user-name {target_user} --policy-arn <each detached>",
    needs=("target_user", "detached_policies"),
    mutates=True,
)
def reattach_policies(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    current = {p["PolicyArn"] for p in _pages(ctx, "list_attached_user_policies", "AttachedPolicies", UserName=user)}
    evidence: list[str] = []
    for arn in _split(ctx.facts.get("detached_policies")):
        if arn in current:
            evidence.append(f"{arn}: already attached")
            continue
        _call(f"attach-user-policy {arn}", _iam(ctx).attach_user_policy, UserName=user, PolicyArn=arn)
        evidence.append(f"{arn}: attached again")
    return Outcome.done("re-attached the managed policies this session detached", evidence)


# -- 6: delete the user -----------------------------------------------------------------------


def _delete_user_preview(ctx: StepContext) -> Preview:
    user = ctx.value("target_user")
    if not _user_exists(ctx, user):
        return Preview([f"{user} no longer exists: nothing to delete"], confirm="auto", nothing_to_do=True)
    standing = _attached(ctx, user, last_used=False).remaining()
    lines = [f"will delete IAM user {user}: IRREVERSIBLE, the point of no return (a user re-created under the name is another user)"]
    if standing:
        lines.append(f"still attached, so DeleteUser will refuse: {', '.join(standing)}")
    return Preview(lines)


@action(
    "offboard.delete_user",
    title="Delete the IAM user, then confirm it is gone",
    command="aws iam delete-user --user-name {target_user} && aws iam get-user --user-name {target_user}  # expect NoSuchEntity",
    needs=("target_user",),
    produces=("target_deleted_at",),
    mutates=True,
    params=WaitParams,
    preview=_delete_user_preview,
)
def delete_user(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    params: WaitParams = ctx.params
    evidence: list[str] = []
    if _user_exists(ctx, user):
        try:
            _iam(ctx).delete_user(UserName=user)
        except Exception as exc:
            if error_code(exc) == "DeleteConflict":
                standing = _attached(ctx, user, last_used=False).remaining()
                raise ActionFailed(
                    f"iam delete-user {user}: {aws_error(exc)}",
                    [
                        f"still attached: {', '.join(standing) or 'nothing this endpoint lists'}",
                        "run the teardown step that removes it, then this one again",
                    ],
                ) from None
            if error_code(exc) != "NoSuchEntity":
                raise ActionFailed(f"iam delete-user {user}: {aws_error(exc)}") from None
        evidence.append(f"delete-user {user}: accepted")
    else:
        evidence.append(f"{user} was already deleted")
    polled = ctx.clock.poll(
        lambda: not _user_exists(ctx, user),
        deadline=params.deadline,
        interval=params.interval,
        progress=ctx.progress,
        what=f"iam get-user {user} until NoSuchEntity",
    )
    if not polled.ok:
        raise ActionFailed(f"{user} still answers get-user {human_duration(polled.elapsed)} after the delete", evidence)
    evidence.append(f"get-user {user}: NoSuchEntity (confirmed after {polled.attempts} check(s))")
    return Outcome.done(f"deleted IAM user {user}", evidence, target_deleted_at=ctx.facts.get("target_deleted_at") or iso(ctx.now()))


# -- 7: audit ---------------------------------------------------------------------------------


@action(
    "audit.offboard_completed",
    title="Write the offboarding's audit record",
    command="handrail audit show --session <session>  # action: user.offboard.completed",
    needs=("target_user", "operator_arn", "target_deleted_at"),
    produces=("audit_line",),
    mutates=True,
)
def offboard_completed(ctx: StepContext) -> Outcome:
    existing = ctx.audit.find(ctx.session_id, COMPLETED)
    if existing is not None:
        return Outcome.done(f"already recorded (audit line {existing})", audit_line=str(existing))
    removed = {
        "access_keys": _split(ctx.facts.get("deleted_keys")),
        "login_profile": bool(ctx.facts.get("login_profile_deleted_at")),
        "signing_certificates": _split(ctx.facts.get("deleted_certificates")),
        "ssh_public_keys": _split(ctx.facts.get("deleted_ssh_keys")),
        "service_specific_credentials": _split(ctx.facts.get("deleted_service_credentials")),
        "mfa_devices": _split(ctx.facts.get("removed_mfa_devices")),
        "inline_policies": _split(ctx.facts.get("deleted_inline_policies")),
        "attached_policies": _split(ctx.facts.get("detached_policies")),
        "groups": _split(ctx.facts.get("groups_left")),
    }
    context = {
        "person": ctx.inputs.get("person") or None,
        "iam_user": ctx.value("target_user"),
        "iam_user_arn": ctx.facts.get("target_arn"),
        "reason": ctx.inputs.get("reason"),
        "deleted_at": ctx.fact("target_deleted_at"),
        "removed": removed,
        "method": ctx.method,
    }
    actor = ctx.fact("operator_arn")
    line = ctx.audit.append(COMPLETED, session=ctx.session_id, actor=actor, context=context)
    evidence = [f"action: {COMPLETED}", f"actor: {actor}", f"person: {context['person'] or '-'}", f"iam_user: {context['iam_user']}"]
    evidence += [f"removed {k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in removed.items() if v]
    return Outcome.done(f"audit line {line}: {COMPLETED}", evidence, audit_line=str(line))
